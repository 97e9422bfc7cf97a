//! `configure-mirror`: use mirror.gcr.io, Google's cache of popular Docker Hub images, from
//! dockerd (daemon.json), containerd (certs.d/docker.io/hosts.toml) and podman/buildah
//! (registries.conf).
//!
//! daemon.json is edited as JSON through `config_edit`. The two TOML files are edited as text,
//! so comments and layout survive: our lines go between marker comments, and the result is
//! parsed before it is written, so a file is never left invalid. A malformed file is refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::config_edit::{self, JsonFile};
use crate::files;

pub const MIRROR_URL: &str = "https://mirror.gcr.io";
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";
pub const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

const BEGIN: &str = "# BEGIN docker-credential-gcp: mirror.gcr.io";
const END: &str = "# END docker-credential-gcp: mirror.gcr.io";

pub const ABOUT: &str = "\
mirror.gcr.io caches popular public Docker Hub images. Pulls of docker.io images try the
mirror first and fall back to Docker Hub when an image is not cached. Pulls served by the
mirror do not count against Docker Hub's rate limits. It holds only public Docker Hub images:
private images and other registries are not mirrored, and pushes still go to Docker Hub.";

pub struct Options {
    pub daemon_json: Option<PathBuf>,
    pub containerd: bool,
    pub hosts_dir: Option<PathBuf>,
    pub podman: bool,
    pub registries_conf: Option<PathBuf>,
    pub dry_run: bool,
    pub remove: bool,
}

pub fn run(opts: &Options) -> Result<ExitCode> {
    // Docker is the default target; --containerd / --podman choose those instead, and an
    // explicit --daemon-json adds docker back.
    let docker = opts.daemon_json.is_some() || !(opts.containerd || opts.podman);
    let mut restart = Vec::new();
    if docker {
        let path = opts
            .daemon_json
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_JSON));
        if edit_daemon_json(&path, opts)? {
            restart.push(
                "restart dockerd (`sudo systemctl restart docker`, or `sudo service docker restart`), then check `docker system info` shows Registry Mirrors: https://mirror.gcr.io/",
            );
        }
    }
    if opts.containerd {
        let dir = opts
            .hosts_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOSTS_DIR));
        let path = dir.join("docker.io").join("hosts.toml");
        if edit_text(&path, opts, add_containerd, check_containerd)? {
            restart.push("containerd reads hosts.toml on each pull when its CRI config sets config_path to the certs.d directory; no restart needed");
        }
    }
    if opts.podman {
        let path = opts
            .registries_conf
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRIES_CONF));
        if edit_text(&path, opts, add_podman, check_podman)? {
            restart
                .push("podman and buildah read registries.conf on every run; nothing to restart");
        }
    }
    if !opts.remove {
        eprintln!("{ABOUT}");
    }
    if !opts.dry_run {
        for step in restart {
            eprintln!("next: {step}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds (or removes) the mirror in daemon.json's `registry-mirrors`. Returns whether the file
/// changed (or would change, in a dry run).
fn edit_daemon_json(path: &Path, opts: &Options) -> Result<bool> {
    let target = config_edit::resolve(path)?;
    let dir = target
        .parent()
        .context("daemon.json path has no directory")?;
    let _lock = config_edit::lock_dir(dir, Duration::from_secs(30)).map_err(permission_hint)?;
    let mut file = JsonFile::load(path)?;
    let mirrors = file
        .root
        .entry("registry-mirrors")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = mirrors else {
        bail!(
            "\"registry-mirrors\" in {} is not a list; fix it by hand",
            file.path.display()
        );
    };
    let is_ours = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.trim_end_matches('/') == MIRROR_URL)
    };
    let changed = if opts.remove {
        let before = list.len();
        list.retain(|v| !is_ours(v));
        if list.is_empty() {
            file.root.shift_remove("registry-mirrors");
        }
        before
            != file
                .root
                .get("registry-mirrors")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
    } else if list.iter().any(is_ours) {
        false
    } else {
        list.push(Value::String(MIRROR_URL.to_owned()));
        true
    };
    let new = file.render()?;
    finish(
        &file.path,
        file.original.as_deref(),
        &new,
        changed,
        opts,
        || file.save(),
    )
}

type Edit = fn(&str) -> String;
type Check = fn(&str, bool) -> Result<()>;

/// Edits a TOML file as text between our markers, validating before and after.
fn edit_text(path: &Path, opts: &Options, add: Edit, check: Check) -> Result<bool> {
    let target = config_edit::resolve(path)?;
    let dir = target
        .parent()
        .context("path has no directory")?
        .to_path_buf();
    let _lock = config_edit::lock_dir(&dir, Duration::from_secs(30)).map_err(permission_hint)?;
    let original = match std::fs::read(&target) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {}", target.display()))
                .map_err(permission_hint);
        }
    };
    let old = match &original {
        Some(b) => String::from_utf8(b.clone())
            .map_err(|_| anyhow!("{} is not UTF-8 text; not touching it", target.display()))?,
        None => String::new(),
    };
    parse_toml(&old).map_err(|e| {
        anyhow!(
            "{} is not valid TOML ({e}); fix it first, it was not changed",
            target.display()
        )
    })?;
    let new = if opts.remove {
        strip_ours(&old)
    } else if check(&old, true).is_ok() {
        old.clone()
    } else {
        add(&old)
    };
    parse_toml(&new).map_err(|e| {
        anyhow!(
            "internal error: the edited {} would not be valid TOML ({e}); nothing written",
            target.display()
        )
    })?;
    check(&new, !opts.remove).with_context(|| {
        format!(
            "internal error editing {}; nothing written",
            target.display()
        )
    })?;
    let changed = new != old;
    let mode = original_mode(&target).unwrap_or(0o644);
    finish(
        &target,
        original.as_deref(),
        new.as_bytes(),
        changed,
        opts,
        || {
            if let Some(parent) = target.parent().filter(|p| !p.exists()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            files::write_atomic(&target, new.as_bytes(), mode)
        },
    )
}

/// Prints the outcome and, unless dry-running, calls `write` to put `new` in place.
fn finish(
    path: &Path,
    original: Option<&[u8]>,
    new: &[u8],
    changed: bool,
    opts: &Options,
    write: impl FnOnce() -> Result<()>,
) -> Result<bool> {
    if !changed {
        eprintln!(
            "{}: already {}; nothing changed",
            path.display(),
            if opts.remove {
                "without the mirror"
            } else {
                "set up"
            }
        );
        return Ok(false);
    }
    if opts.dry_run {
        let old = String::from_utf8_lossy(original.unwrap_or_default());
        print!(
            "--- {}\n{}",
            path.display(),
            config_edit::diff(&old, &String::from_utf8_lossy(new))
        );
        eprintln!("dry run: {} not written", path.display());
        return Ok(true);
    }
    write().map_err(permission_hint)?;
    eprintln!(
        "{}: {} {MIRROR_URL}",
        path.display(),
        if opts.remove { "removed" } else { "added" }
    );
    Ok(true)
}

fn permission_hint(e: anyhow::Error) -> anyhow::Error {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if denied {
        e.context("permission denied: these files belong to root; run the command with sudo")
    } else {
        e
    }
}

fn original_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn parse_toml(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>()
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_owned())
}

/// Removes everything between our markers (inclusive).
fn strip_ours(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        match line.trim_end() {
            BEGIN => inside = true,
            END if inside => inside = false,
            _ if !inside => out.push_str(line),
            _ => {}
        }
    }
    out
}

/// Our lines between markers; the blank line before the end marker separates them from what
/// follows, and goes away with them on removal.
fn block(body: &str) -> String {
    format!("{BEGIN}\n{body}\n{END}\n")
}

/// containerd: `server` and our `[host."https://mirror.gcr.io"]` before any other host.
fn add_containerd(text: &str) -> String {
    let parsed = parse_toml(text).unwrap_or_default();
    let mut body = String::new();
    if !parsed.contains_key("server") {
        body.push_str("server = \"https://registry-1.docker.io\"\n\n");
    }
    body.push_str(&format!(
        "[host.\"{MIRROR_URL}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    ));
    // Top-level keys must precede tables: insert before the first table header.
    let insert_at = table_start(text).unwrap_or(text.len());
    let (head, tail) = text.split_at(insert_at);
    let mut out = head.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&block(&body));
    out.push_str(tail);
    out
}

fn check_containerd(text: &str, want: bool) -> Result<()> {
    let t = parse_toml(text).map_err(|e| anyhow!(e))?;
    let has = t
        .get("host")
        .and_then(|h| h.as_table())
        .and_then(|h| h.get(MIRROR_URL))
        .and_then(|m| m.get("capabilities"))
        .and_then(|c| c.as_array())
        .is_some_and(|c| c.iter().any(|v| v.as_str() == Some("pull")));
    if has != want {
        bail!(
            "hosts.toml {} the mirror host",
            if want { "lacks" } else { "still has" }
        );
    }
    if want && t.get("server").and_then(|s| s.as_str()).is_none() {
        bail!("hosts.toml lacks a server");
    }
    Ok(())
}

/// podman/buildah: a `[[registry.mirror]]` for the docker.io registry entry, adding that entry
/// if the file has none.
fn add_podman(text: &str) -> String {
    let mirror = "[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n";
    match docker_io_block_end(text) {
        Some(end) => {
            let (head, tail) = text.split_at(end);
            let mut out = head.to_owned();
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block(mirror));
            out.push_str(tail);
            out
        }
        None => {
            let mut out = text.to_owned();
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push('\n');
            }
            out.push_str(&block(&format!(
                "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n{mirror}"
            )));
            out
        }
    }
}

fn check_podman(text: &str, want: bool) -> Result<()> {
    let t = parse_toml(text).map_err(|e| anyhow!(e))?;
    let has = t
        .get("registry")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter(|r| is_docker_io(r))
        .any(|r| {
            r.get("mirror").and_then(|m| m.as_array()).is_some_and(|m| {
                m.iter()
                    .any(|e| e.get("location").and_then(|l| l.as_str()) == Some("mirror.gcr.io"))
            })
        });
    if has != want {
        bail!(
            "registries.conf {} the docker.io mirror",
            if want { "lacks" } else { "still has" }
        );
    }
    Ok(())
}

fn is_docker_io(r: &toml::Value) -> bool {
    let field = |k: &str| r.get(k).and_then(|v| v.as_str());
    field("prefix").or(field("location")) == Some("docker.io")
}

/// Byte offset of the first line that starts a table (`[x]` or `[[x]]`).
fn table_start(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// Where the `[[registry]]` block for docker.io ends (before the next table that is not one of
/// its own sub-tables), if the file has such a block.
fn docker_io_block_end(text: &str) -> Option<usize> {
    let mut offset = 0;
    let mut in_registry = false;
    let mut block_text = String::new();
    let mut found_end = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_registry && trimmed.starts_with("[[registry.") {
                // A sub-table of the same registry entry.
            } else {
                if in_registry && is_docker_io_block(&block_text) && found_end.is_none() {
                    found_end = Some(offset);
                }
                in_registry = trimmed == "[[registry]]";
                block_text.clear();
            }
        }
        if in_registry {
            block_text.push_str(line);
        }
        offset += line.len();
    }
    if found_end.is_none() && in_registry && is_docker_io_block(&block_text) {
        found_end = Some(text.len());
    }
    found_end
}

fn is_docker_io_block(block: &str) -> bool {
    parse_toml(block)
        .ok()
        .and_then(|t| {
            t.get("registry")
                .and_then(|r| r.as_array())
                .and_then(|a| a.first())
                .cloned()
        })
        .is_some_and(|r| is_docker_io(&r))
}

/// Whether daemon.json lists the mirror.
pub fn daemon_json_has_mirror(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let file = JsonFile::load(path)?;
    Ok(file
        .root
        .get("registry-mirrors")
        .and_then(Value::as_array)
        .is_some_and(|l| {
            l.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.trim_end_matches('/') == MIRROR_URL)
            })
        }))
}

/// The mirrors the running Docker daemon reports, or `None` if no daemon answers.
pub fn daemon_mirrors() -> Option<Vec<String>> {
    let docker = crate::process::find_on_path("docker")?;
    let mut cmd = std::process::Command::new(docker);
    cmd.args([
        "system",
        "info",
        "--format",
        "{{json .RegistryConfig.Mirrors}}",
    ]);
    let out = crate::process::run(cmd, Instant::now() + Duration::from_secs(10)).ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Option<Vec<String>>>(&out.stdout)
        .ok()
        .map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_hosts_toml_round_trips() {
        let added = add_containerd("");
        check_containerd(&added, true).unwrap();
        assert!(added.contains("server = \"https://registry-1.docker.io\""));
        assert_eq!(strip_ours(&added), "");

        let theirs = "# my comment\nserver = \"https://registry-1.docker.io\"\n\n[host.\"https://other.example\"]\n  capabilities = [\"pull\"]\n";
        let added = add_containerd(theirs);
        check_containerd(&added, true).unwrap();
        assert!(added.contains("# my comment") && added.contains("other.example"));
        assert!(
            added.find("mirror.gcr.io").unwrap() < added.find("other.example").unwrap(),
            "our host is tried first"
        );
        assert_eq!(added.matches("server =").count(), 1);
        let removed = strip_ours(&added);
        check_containerd(&removed, false).unwrap();
        assert!(removed.contains("# my comment") && removed.contains("other.example"));
    }

    #[test]
    fn podman_mirror_joins_an_existing_docker_io_entry() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"other-mirror.example\"\n\n[[registry]]\nlocation = \"x.example\"\n";
        let added = add_podman(theirs);
        check_podman(&added, true).unwrap();
        let t = parse_toml(&added).unwrap();
        let regs = t["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 3, "no second docker.io entry: {added}");
        assert_eq!(regs[1]["mirror"].as_array().unwrap().len(), 2);
        assert!(regs[2].get("mirror").is_none());
        assert_eq!(strip_ours(&added), theirs);
    }

    #[test]
    fn podman_entry_is_added_when_missing() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n";
        let added = add_podman(theirs);
        check_podman(&added, true).unwrap();
        assert!(added.starts_with(theirs));
        assert_eq!(strip_ours(&added).trim_end(), theirs.trim_end());
        check_podman(&add_podman(""), true).unwrap();
    }
}
