//! containerd's `certs.d/docker.io/hosts.toml`: the mirror as a `[host."https://mirror.gcr.io"]`
//! table after any other host, with Docker Hub as the `server` to fall back to.

use anyhow::{Result, bail};
use toml_edit::{Item, Table, value};

use super::{MIRROR_URL, is_our_mirror, toml_file};

const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";

/// containerd: our `[host."https://mirror.gcr.io"]` after any other host, and the Docker Hub
/// `server` as the fallback if the file names none.
pub(super) fn edit(old: &str, remove: bool) -> Result<String> {
    let mut doc = toml_file::parse(old)?;
    // Our mirror under any spelling of its URL (`[host."https://mirror.gcr.io/"]`, ...).
    let ours: Vec<String> = doc
        .get("host")
        .and_then(Item::as_table_like)
        .map(|h| {
            h.iter()
                .filter(|(k, _)| is_our_mirror(k))
                .map(|(k, _)| k.to_owned())
                .collect()
        })
        .unwrap_or_default();
    if remove {
        if ours.is_empty() {
            return Ok(old.to_owned());
        }
        let mut prefix = None;
        if let Some(hosts) = doc.get_mut("host").and_then(Item::as_table_like_mut) {
            for key in &ours {
                let removed = hosts.remove(key);
                prefix = prefix.or_else(|| {
                    removed.and_then(|m| m.as_table().and_then(toml_file::decor_prefix))
                });
            }
            if hosts.is_empty() {
                doc.remove("host");
            }
        }
        toml_file::give_back_trailer(&mut doc, prefix);
        // The server line this helper added goes too when nothing else is left.
        if doc.len() == 1 && doc.get("server").and_then(Item::as_str) == Some(DOCKER_HUB_SERVER) {
            doc.remove("server");
        }
        return Ok(doc.to_string());
    }
    if !ours.is_empty() {
        return Ok(old.to_owned());
    }
    if !doc.contains_key("server") {
        doc.insert("server", value(DOCKER_HUB_SERVER));
    }
    let hosts = doc.entry("host").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if hosts.as_table_like().is_none() {
        bail!("\"host\" is not a table");
    }
    let mut mirror = Table::new();
    let mut caps = toml_edit::Array::new();
    caps.push("pull");
    caps.push("resolve");
    mirror.insert("capabilities", value(caps));
    toml_file::take_trailer_into(&mut doc, &mut mirror);
    let Some(hosts) = doc.get_mut("host").and_then(Item::as_table_like_mut) else {
        bail!("\"host\" is not a table");
    };
    hosts.insert(MIRROR_URL, Item::Table(mirror));
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_round_trips_with_the_mirror_after_other_hosts() {
        let added = edit("", false).unwrap();
        assert!(
            added.contains("server = \"https://registry-1.docker.io\""),
            "{added}"
        );
        assert!(
            added.contains("[host.\"https://mirror.gcr.io\"]"),
            "{added}"
        );
        assert_eq!(edit(&added, true).unwrap(), "");

        let theirs = "# my comment\nserver = \"https://registry-1.docker.io\"\n\n[host.\"https://other.example\"]\n  capabilities = [\"pull\"]\n";
        let added = edit(theirs, false).unwrap();
        assert!(added.contains("# my comment") && added.contains("other.example"));
        assert!(
            added.find("other.example").unwrap() < added.find("mirror.gcr.io").unwrap(),
            "existing mirrors keep their priority: {added}"
        );
        assert_eq!(added.matches("server =").count(), 1);
        assert_eq!(edit(&added, false).unwrap(), added);
        assert_eq!(edit(&added, true).unwrap(), theirs);
    }

    #[test]
    fn the_mirror_under_another_spelling_is_kept_and_every_spelling_removed() {
        let theirs = "server = \"https://registry-1.docker.io\"\n\n[host.\"https://corp.example\"]\n  capabilities = [\"pull\"]\n";
        let spelled = format!(
            "{theirs}\n[host.\"HTTPS://Mirror.gcr.io:443/\"]\n  capabilities = [\"pull\"]\n\n[host.\"mirror.gcr.io\"]\n  capabilities = [\"pull\"]\n"
        );
        assert_eq!(edit(&spelled, false).unwrap(), spelled);
        assert_eq!(edit(&spelled, true).unwrap(), theirs);
    }

    #[test]
    fn a_file_of_comments_gets_the_mirror_at_its_end_and_back_on_remove() {
        // As many a hosts.toml template is.
        let hosts = "server = \"https://registry-1.docker.io\"\nskip_verify = false\n\n# [host.\"https://example\"]\n#   capabilities = [\"pull\"]\n";
        let added = edit(hosts, false).unwrap();
        assert!(added.starts_with(hosts), "{added}");
        assert!(
            added.ends_with("capabilities = [\"pull\", \"resolve\"]\n"),
            "{added}"
        );
        assert_eq!(edit(&added, true).unwrap(), hosts);
    }
}
