//! podman's and buildah's registries.conf (v2): a `[[registry.mirror]]` for the docker.io
//! entry, after its other mirrors. A file in the v1 format, which has no mirrors, is refused
//! with how to migrate.

use anyhow::{Result, bail};
use toml_edit::{ArrayOfTables, Item, Table, value};

use super::{MIRROR_HOST, is_our_mirror, toml_file};

/// podman/buildah: a `[[registry.mirror]]` for the docker.io registry entry, after its other
/// mirrors, adding that entry if the file has none.
pub(super) fn edit(old: &str, remove: bool) -> Result<String> {
    let mut doc = toml_file::parse(old)?;
    if doc.contains_key("registries") {
        bail!(
            "is in the v1 format ([registries.search] and similar tables), which has no mirrors, \
             and podman refuses files that mix v1 and v2. Migrate it to v2 first: \
             `unqualified-search-registries = [...]` for [registries.search], and a \
             `[[registry]]` table with `insecure = true` or `blocked = true` for each entry of \
             [registries.insecure] and [registries.block] (see containers-registries.conf(5)); \
             then run this again"
        );
    }
    let registries = match doc.get_mut("registry") {
        None => None,
        Some(Item::ArrayOfTables(a)) => Some(a),
        Some(_) => bail!("\"registry\" is not a list of [[registry]] tables"),
    };
    let entry = registries.and_then(|regs| regs.iter_mut().find(|r| is_docker_io(r)));
    if remove {
        let Some(entry) = entry else {
            return Ok(old.to_owned());
        };
        let Some(Item::ArrayOfTables(mirrors)) = entry.get_mut("mirror") else {
            return Ok(old.to_owned());
        };
        let before = mirrors.len();
        mirrors.retain(|m| !is_ours(m));
        if mirrors.len() == before {
            return Ok(old.to_owned());
        }
        if mirrors.is_empty() {
            entry.remove("mirror");
        }
        // An entry this helper added goes too once it holds nothing but the docker.io name.
        let mut prefix = None;
        if let Some(Item::ArrayOfTables(regs)) = doc.get_mut("registry") {
            regs.retain(|r| {
                let ours = is_docker_io(r) && added_by_us(r) && holds_only_names(r);
                if ours {
                    prefix = toml_file::decor_prefix(r);
                }
                !ours
            });
            if regs.is_empty() {
                doc.remove("registry");
            }
        }
        toml_file::give_back_trailer(&mut doc, prefix);
        return Ok(doc.to_string());
    }
    let mut mirror = Table::new();
    mirror.insert("location", value(MIRROR_HOST));
    match entry {
        Some(entry) => {
            let mirrors = entry
                .entry("mirror")
                .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
            let Item::ArrayOfTables(mirrors) = mirrors else {
                bail!(
                    "the docker.io entry's \"mirror\" is not a list of [[registry.mirror]] tables"
                );
            };
            if mirrors.iter().any(is_ours) {
                return Ok(old.to_owned());
            }
            mirrors.push(mirror);
        }
        None => {
            let mut entry = Table::new();
            entry.decor_mut().set_suffix(format!(" {ADDED_BY_US}"));
            entry.insert("prefix", value("docker.io"));
            entry.insert("location", value("docker.io"));
            let mut mirrors = ArrayOfTables::new();
            mirrors.push(mirror);
            entry.insert("mirror", Item::ArrayOfTables(mirrors));
            toml_file::take_trailer_into(&mut doc, &mut entry);
            let regs = doc
                .entry("registry")
                .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
            match regs {
                Item::ArrayOfTables(regs) => regs.push(entry),
                _ => bail!("\"registry\" is not a list of [[registry]] tables"),
            }
        }
    }
    Ok(doc.to_string())
}

/// Whether a `[[registry.mirror]]` is mirror.gcr.io, however its `location` spells it.
fn is_ours(mirror: &Table) -> bool {
    mirror
        .get("location")
        .and_then(Item::as_str)
        .is_some_and(is_our_mirror)
}

/// Whether the mirror for docker.io belongs in this file rather than in a drop-in: it has a
/// docker.io entry (which a drop-in's would replace), or it is one `edit` refuses (v1, not
/// TOML), so that the refusal names it.
pub(super) fn keeps_docker_io(text: &str) -> bool {
    let Ok(doc) = toml_file::parse(text) else {
        return true;
    };
    doc.contains_key("registries")
        || doc
            .get("registry")
            .and_then(Item::as_array_of_tables)
            .is_some_and(|regs| regs.iter().any(is_docker_io))
}

/// The comment on a `[[registry]]` header this helper wrote, so `--remove` takes only that.
const ADDED_BY_US: &str = "# added by docker-credential-gcp for mirror.gcr.io";

fn added_by_us(r: &Table) -> bool {
    r.decor()
        .suffix()
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.contains(ADDED_BY_US))
}

fn holds_only_names(r: &Table) -> bool {
    r.iter()
        .all(|(k, v)| matches!(k, "prefix" | "location") && v.as_str() == Some("docker.io"))
}

/// The `[[registry]]` entry for Docker Hub: `prefix`, else `location`, is docker.io.
fn is_docker_io(r: &Table) -> bool {
    let field = |k: &str| r.get(k).and_then(Item::as_str);
    field("prefix").or(field("location")) == Some("docker.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::DocumentMut;

    #[test]
    fn registries_conf_joins_the_docker_io_entry_in_any_header_form() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry]] # Docker Hub\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"other-mirror.example\"\n\n[[registry]]\nlocation = \"x.example\"\n";
        let added = edit(theirs, false).unwrap();
        let doc: DocumentMut = added.parse().unwrap();
        let regs = doc["registry"].as_array_of_tables().unwrap();
        assert_eq!(regs.len(), 3, "no second docker.io entry: {added}");
        let mirrors: Vec<&str> = regs
            .get(1)
            .unwrap()
            .get("mirror")
            .and_then(Item::as_array_of_tables)
            .unwrap()
            .iter()
            .map(|m| m["location"].as_str().unwrap())
            .collect();
        assert_eq!(mirrors, ["other-mirror.example", "mirror.gcr.io"]);
        assert!(
            added.contains("[[registry]] # Docker Hub"),
            "comments kept: {added}"
        );
        assert_eq!(edit(&added, false).unwrap(), added);
        assert_eq!(edit(&added, true).unwrap(), theirs);
    }

    #[test]
    fn registries_conf_gets_a_docker_io_entry_when_it_has_none() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n";
        let added = edit(theirs, false).unwrap();
        assert!(added.starts_with(theirs), "{added}");
        assert!(
            added.contains("[[registry.mirror]]\nlocation = \"mirror.gcr.io\""),
            "{added}"
        );
        assert_eq!(edit(&added, true).unwrap(), theirs);
        let fresh = edit("", false).unwrap();
        assert!(fresh.contains("prefix = \"docker.io\""), "{fresh}");
    }

    #[test]
    fn a_file_of_comments_gets_the_new_table_at_its_end_and_back_on_remove() {
        // Debian's registries.conf is all comments, as is many a hosts.toml template.
        let comments = "# For more information on this configuration file, see containers-registries.conf(5).\n#\n# unqualified-search-registries = [\"example.com\"]\n\n# [[registry]]\n# location = \"example.com\"\n";
        let added = edit(comments, false).unwrap();
        assert!(added.starts_with(comments), "{added}");
        assert!(
            added.ends_with("[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n"),
            "{added}"
        );
        assert_eq!(edit(&added, false).unwrap(), added);
        assert_eq!(edit(&added, true).unwrap(), comments);
        let no_newline = "# only a comment";
        let added = edit(no_newline, false).unwrap();
        assert!(
            added.starts_with("# only a comment\n\n[[registry]]"),
            "{added}"
        );
        // ...which then ends with a newline.
        assert_eq!(edit(&added, true).unwrap(), "# only a comment\n");
    }

    #[test]
    fn only_a_file_with_a_docker_io_entry_keeps_the_mirror_from_a_drop_in() {
        // Debian's registries.conf (all comments) and shortnames.conf (aliases) do not.
        assert!(!keeps_docker_io(
            "# unqualified-search-registries = [\"example.com\"]\n"
        ));
        assert!(!keeps_docker_io(
            "[aliases]\n  \"alpine\" = \"docker.io/library/alpine\"\n"
        ));
        assert!(!keeps_docker_io("[[registry]]\nlocation = \"quay.io\"\n"));
        assert!(keeps_docker_io(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"corp-mirror.test\"\n"
        ));
        // Files `edit` refuses stay the target, so that the refusal names them.
        assert!(keeps_docker_io(
            "[registries.search]\nregistries = ['docker.io']\n"
        ));
        assert!(keeps_docker_io("[[registry]\n"));
    }

    #[test]
    fn a_v1_registries_conf_is_refused_with_how_to_migrate() {
        let v1 = "[registries.search]\nregistries = ['docker.io', 'quay.io']\n";
        let e = format!("{:#}", edit(v1, false).unwrap_err());
        assert!(
            e.contains("v1") && e.contains("unqualified-search-registries"),
            "{e}"
        );
    }

    #[test]
    fn files_edited_by_older_versions_are_recognised() {
        let old = "unqualified-search-registries = [\"docker.io\"]\n\n# BEGIN docker-credential-gcp: mirror.gcr.io\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n\n# END docker-credential-gcp: mirror.gcr.io\n";
        let removed = edit(old, true).unwrap();
        assert!(
            !removed.contains("mirror.gcr.io") && !removed.contains("BEGIN"),
            "{removed}"
        );
        assert_eq!(edit(old, false).unwrap(), old, "already set up");
    }
}
