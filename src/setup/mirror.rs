//! `configure-mirror`: use mirror.gcr.io, Google's cache of popular Docker Hub images, from
//! dockerd (daemon.json), containerd (certs.d/docker.io/hosts.toml) and podman/buildah
//! (registries.conf).
//!
//! daemon.json is edited as JSON (see `json_file`); the TOML files with `toml_edit`, which
//! keeps comments and layout and understands every header form (`[[registry]] # Docker Hub`).
//! One rule places the mirror in all three files: after the mirrors already there, which keep
//! their priority; Docker Hub itself stays the last resort. A file is never left in a form its
//! program refuses: a registries.conf in the old v1 format (which has no mirrors) is refused
//! with how to migrate, and daemon.json is not touched while the system dockerd that reads it
//! gets `--registry-mirror` from its service files (`/etc/default/docker`, systemd units and
//! drop-ins): dockerd refuses to start with both. A running dockerd whose command line has the
//! flag only draws a warning, since its next start is decided by those files. The decisions
//! are plain functions (`DockerdFlags`, `service_conflict`, `live_conflicts`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::edit::{self, Edit, Outcome};
use super::{docker, json_file};
use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::{self, BaseDirs, Engine, Os};
use crate::util::{env, ui};

pub(crate) const MIRROR_URL: &str = "https://mirror.gcr.io";
const MIRROR_HOST: &str = "mirror.gcr.io";
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";
pub(crate) const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";
pub(crate) const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// Where Debian's and Ubuntu's init scripts read dockerd's flags from (`DOCKER_OPTS`).
const ETC_DEFAULT_DOCKER: &str = "/etc/default/docker";
const SYSTEMD_DROP_INS: &str = "/etc/systemd/system/docker.service.d";

/// Marker lines the first versions of this helper wrapped their TOML edits in.
const OLD_MARKERS: [&str; 2] = [
    "# BEGIN docker-credential-gcp: mirror.gcr.io",
    "# END docker-credential-gcp: mirror.gcr.io",
];

pub(crate) const ABOUT: &str = "\
mirror.gcr.io caches popular public Docker Hub images. Pulls of docker.io images try the
mirror first and fall back to Docker Hub when an image is not cached. Pulls served by the
mirror do not count against Docker Hub's rate limits. It holds only public Docker Hub images:
private images and other registries are not mirrored, and pushes still go to Docker Hub.";

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// dockerd's daemon.json (default: /etc/docker/daemon.json on Linux, ~/.docker/daemon.json
    /// for Docker Desktop, %ProgramData%\docker\config\daemon.json for a Windows service).
    #[arg(long, value_name = "PATH")]
    daemon_json: Option<PathBuf>,
    /// Configure containerd (hosts.toml) instead of dockerd.
    #[arg(long)]
    containerd: bool,
    /// containerd's registry hosts directory (default /etc/containerd/certs.d).
    #[arg(long, value_name = "DIR", requires = "containerd")]
    hosts_dir: Option<PathBuf>,
    /// Configure podman and buildah (registries.conf) instead of dockerd.
    #[arg(long)]
    podman: bool,
    /// registries.conf to edit (default /etc/containers/registries.conf).
    #[arg(long, value_name = "PATH", requires = "podman")]
    registries_conf: Option<PathBuf>,
    /// Print the changes as diffs and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove the mirror again.
    #[arg(long)]
    remove: bool,
}

pub(crate) fn run(opts: &Options) -> Result<ExitCode> {
    // Docker is the default target; --containerd / --podman choose those instead, and an
    // explicit --daemon-json adds docker back.
    let docker = opts.daemon_json.is_some() || !(opts.containerd || opts.podman);
    let mut next = Vec::new();
    if docker {
        let engine = local_engine();
        let path = match &opts.daemon_json {
            Some(p) => p.clone(),
            None => default_daemon_json(engine)?,
        };
        // Only the system dockerd is started from service files (and found among processes).
        let system_default = (engine == Engine::SystemDockerd)
            .then(|| default_daemon_json(engine).ok())
            .flatten();
        if let (false, Some(default)) = (opts.remove, &system_default) {
            refuse_if_flag_given(service_conflict(&service_lines(), &path, default).as_ref())?;
        }
        let changed = edit_file(&path, opts, edit_daemon_json)?;
        if let (false, false, Some(default)) = (opts.remove, opts.dry_run, &system_default) {
            let running = docker::running_dockerds();
            warn_about_live_flags(&live_conflicts(&running, &path, default), &path);
        }
        if changed {
            next.push(format!(
                "{}, then check that `docker system info` shows Registry Mirrors: {MIRROR_URL}/",
                engine.restart_advice()
            ));
        }
    }
    if opts.containerd {
        let dir = opts
            .hosts_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOSTS_DIR));
        if edit_file(
            &dir.join("docker.io").join("hosts.toml"),
            opts,
            edit_hosts_toml,
        )? {
            next.push("containerd reads hosts.toml on each pull when its CRI config sets config_path to the certs.d directory (`ctr` needs --hosts-dir); no restart needed".to_owned());
        }
    }
    if opts.podman {
        let path = opts
            .registries_conf
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRIES_CONF));
        if edit_file(&path, opts, edit_registries_conf)? {
            next.push(
                "podman and buildah read registries.conf on every run; nothing to restart"
                    .to_owned(),
            );
        }
    }
    if !opts.remove {
        ui::note(format_args!("{ABOUT}"));
    }
    if !opts.dry_run {
        for step in next {
            ui::note(format_args!("next: {step}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The engine on this machine whose daemon.json is the default.
fn local_engine() -> Engine {
    let desktop = env::var_os("ProgramFiles")
        .is_some_and(|p| platform::docker_desktop_marker(Path::new(&p)).is_file());
    Engine::for_os(Os::CURRENT, desktop)
}

pub(crate) fn default_daemon_json(engine: Engine) -> Result<PathBuf> {
    let program_data = env::var_os("ProgramData").map(PathBuf::from);
    engine
        .daemon_json(&BaseDirs::current(), program_data.as_deref())
        .context("cannot tell where daemon.json is; pass --daemon-json PATH")
}

/// A file's new content from its old (as text), or an error that leaves it untouched.
type Change = fn(&str, bool) -> Result<String>;

/// Applies `change` to `path` (adding, or removing with --remove); returns whether the file
/// changed (or would, in a dry run).
fn edit_file(path: &Path, opts: &Options, change: Change) -> Result<bool> {
    let edit = Edit::open(path, 0o755).map_err(edit::permission_hint)?;
    let old = edit.text()?;
    let new = change(&old, opts.remove)
        .with_context(|| format!("{}: nothing was changed", edit.path.display()))?;
    match edit
        .finish(new.as_bytes(), opts.dry_run, &mut ui::stdout())
        .map_err(edit::permission_hint)?
    {
        Outcome::Unchanged => {
            ui::note(format_args!(
                "{}: already {}; nothing changed",
                edit.path.display(),
                if opts.remove {
                    "without the mirror"
                } else {
                    "set up"
                }
            ));
            Ok(false)
        }
        Outcome::Shown => {
            ui::note(format_args!("dry run: {} not written", edit.path.display()));
            Ok(true)
        }
        Outcome::Written => {
            ui::note(format_args!(
                "{}: {} {MIRROR_URL}",
                edit.path.display(),
                if opts.remove { "removed" } else { "added" }
            ));
            Ok(true)
        }
    }
}

fn is_ours(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.trim_end_matches('/') == MIRROR_URL)
}

/// daemon.json: the mirror at the end of `registry-mirrors`.
fn edit_daemon_json(old: &str, remove: bool) -> Result<String> {
    if old.trim().is_empty() && remove {
        return Ok(old.to_owned());
    }
    let parsed = json_file::parse(old.as_bytes(), "daemon.json")?;
    let mut root = parsed.root;
    let list = match root.get_mut("registry-mirrors") {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => bail!("\"registry-mirrors\" is not a list; fix it by hand"),
    };
    match (list, remove) {
        (Some(list), true) => {
            list.retain(|v| !is_ours(v));
            if list.is_empty() {
                root.shift_remove("registry-mirrors");
            }
        }
        (None, true) => return Ok(old.to_owned()),
        (Some(list), false) if list.iter().any(is_ours) => return Ok(old.to_owned()),
        (Some(list), false) => list.push(Value::String(MIRROR_URL.to_owned())),
        (None, false) => {
            root.insert(
                "registry-mirrors".to_owned(),
                Value::Array(vec![Value::String(MIRROR_URL.to_owned())]),
            );
        }
    }
    Ok(String::from_utf8(json_file::render(&root)?)?)
}

fn parse_toml(text: &str) -> Result<DocumentMut> {
    let cleaned: String = text
        .split_inclusive('\n')
        .filter(|line| !OLD_MARKERS.contains(&line.trim_end()))
        .collect();
    cleaned.parse::<DocumentMut>().map_err(|e| {
        anyhow!(
            "is not valid TOML ({}); fix it first",
            e.to_string().lines().next().unwrap_or_default().trim()
        )
    })
}

/// containerd: our `[host."https://mirror.gcr.io"]` after any other host, and the Docker Hub
/// `server` as the fallback if the file names none.
fn edit_hosts_toml(old: &str, remove: bool) -> Result<String> {
    let mut doc = parse_toml(old)?;
    let has_mirror = doc
        .get("host")
        .and_then(Item::as_table_like)
        .is_some_and(|h| h.contains_key(MIRROR_URL));
    if remove {
        if !has_mirror {
            return Ok(old.to_owned());
        }
        let mut prefix = None;
        if let Some(hosts) = doc.get_mut("host").and_then(Item::as_table_like_mut) {
            prefix = hosts
                .remove(MIRROR_URL)
                .and_then(|m| m.as_table().and_then(decor_prefix));
            if hosts.is_empty() {
                doc.remove("host");
            }
        }
        give_back_trailer(&mut doc, prefix);
        // The server line this helper added goes too when nothing else is left.
        if doc.len() == 1 && doc.get("server").and_then(Item::as_str) == Some(DOCKER_HUB_SERVER) {
            doc.remove("server");
        }
        return Ok(doc.to_string());
    }
    if has_mirror {
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
    take_trailer_into(&mut doc, &mut mirror);
    let Some(hosts) = doc.get_mut("host").and_then(Item::as_table_like_mut) else {
        bail!("\"host\" is not a table");
    };
    hosts.insert(MIRROR_URL, Item::Table(mirror));
    Ok(doc.to_string())
}

/// podman/buildah: a `[[registry.mirror]]` for the docker.io registry entry, after its other
/// mirrors, adding that entry if the file has none.
fn edit_registries_conf(old: &str, remove: bool) -> Result<String> {
    let mut doc = parse_toml(old)?;
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
        mirrors.retain(|m| m.get("location").and_then(Item::as_str) != Some(MIRROR_HOST));
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
                    prefix = decor_prefix(r);
                }
                !ours
            });
            if regs.is_empty() {
                doc.remove("registry");
            }
        }
        give_back_trailer(&mut doc, prefix);
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
            if mirrors
                .iter()
                .any(|m| m.get("location").and_then(Item::as_str) == Some(MIRROR_HOST))
            {
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
            take_trailer_into(&mut doc, &mut entry);
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

/// A table this command adds goes at the very end of the file, after the comments that end
/// it: toml_edit keeps those as the document's trailing decor and would print the new table
/// before them, which puts it at the top of a file that is all comments (Debian's
/// registries.conf). They become the new table's leading decor instead (`give_back_trailer`
/// undoes this on `--remove`).
fn take_trailer_into(doc: &mut DocumentMut, table: &mut Table) {
    let trailer = doc.trailing().as_str().unwrap_or_default().to_owned();
    if trailer.trim().is_empty() {
        return;
    }
    let separator = if trailer.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    table
        .decor_mut()
        .set_prefix(format!("{trailer}{separator}"));
    doc.set_trailing("");
}

/// When a table this command added is removed, the comments it carried (`take_trailer_into`)
/// end the file again.
fn give_back_trailer(doc: &mut DocumentMut, prefix: Option<String>) {
    let Some(prefix) = prefix.filter(|p| !p.trim().is_empty()) else {
        return;
    };
    let comments = prefix.strip_suffix('\n').unwrap_or(&prefix);
    let rest = doc.trailing().as_str().unwrap_or_default().to_owned();
    doc.set_trailing(format!("{comments}{rest}"));
}

fn decor_prefix(table: &Table) -> Option<String> {
    table
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .map(str::to_owned)
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

/// The files the system dockerd's command line comes from: Debian's and Ubuntu's
/// `/etc/default/docker` (`DOCKER_OPTS`, read by the init script and by docker.service), systemd
/// drop-ins, and the unit files themselves.
fn service_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(ETC_DEFAULT_DOCKER)];
    if let Ok(dir) = std::fs::read_dir(SYSTEMD_DROP_INS) {
        let mut drop_ins: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    files.extend(
        [
            "/etc/systemd/system/docker.service",
            "/lib/systemd/system/docker.service",
        ]
        .map(PathBuf::from),
    );
    files
}

/// Each uncommented line of the service files, with the file it is in.
fn service_lines() -> Vec<(PathBuf, String)> {
    let mut lines = Vec::new();
    for path in service_files() {
        let Ok(Some(bytes)) =
            files::read_bounded(&path, 1024 * 1024, Symlinks::Follow, Trust::Anyone)
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                lines.push((path.clone(), line.to_owned()));
            }
        }
    }
    lines
}

/// What a dockerd command line says about the two options that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DockerdFlags {
    /// `--registry-mirror` is given: dockerd then refuses to start, and to reload, with
    /// `registry-mirrors` in its config file ("specified both as a flag and in the
    /// configuration file").
    registry_mirror: bool,
    /// `--config-file PATH`; without it dockerd reads the system default daemon.json.
    config_file: Option<PathBuf>,
}

impl DockerdFlags {
    /// Reads dockerd's arguments (`--name value` and `--name=value` forms).
    pub(crate) fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> DockerdFlags {
        let mut flags = DockerdFlags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            match name {
                "--registry-mirror" => flags.registry_mirror = true,
                "--config-file" => {
                    flags.config_file = inline.or_else(|| args.next()).map(PathBuf::from);
                }
                _ => {}
            }
        }
        flags
    }

    /// Reads the arguments out of shell and systemd lines such as
    /// `DOCKER_OPTS="--registry-mirror=https://m.example"` or
    /// `ExecStart=/usr/bin/dockerd --config-file /etc/docker/x.json`.
    fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> DockerdFlags {
        let words: Vec<&str> = lines
            .into_iter()
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '"' || c == '\''))
            .filter(|w| !w.is_empty())
            // `DOCKER_OPTS=--flag`: the flag starts after the variable's name.
            .map(|w| match w.find("=--") {
                Some(at) if !w.starts_with('-') => &w[at + 1..],
                _ => w,
            })
            .collect();
        DockerdFlags::parse(words)
    }

    /// Whether a dockerd started with these flags reads `target` (the daemon.json being edited;
    /// `default` is the one it reads without `--config-file`) and so would refuse a
    /// `registry-mirrors` list in it.
    fn conflicts_with(&self, target: &Path, default: &Path) -> bool {
        self.registry_mirror && same_file(self.config_file.as_deref().unwrap_or(default), target)
    }
}

/// Whether two paths name the same file, also when it does not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    fn resolved(p: &Path) -> PathBuf {
        if let Ok(full) = std::fs::canonicalize(p) {
            return full;
        }
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| p.to_path_buf()),
            _ => p.to_path_buf(),
        }
    }
    a == b || resolved(a) == resolved(b)
}

/// The service-file line that gives the system dockerd `--registry-mirror`, if that dockerd
/// reads `target`: writing `registry-mirrors` there would stop it from starting.
fn service_conflict(
    lines: &[(PathBuf, String)],
    target: &Path,
    default: &Path,
) -> Option<(PathBuf, String)> {
    let flags = DockerdFlags::parse_lines(lines.iter().map(|(_, l)| l.as_str()));
    if !flags.conflicts_with(target, default) {
        return None;
    }
    lines
        .iter()
        .find(|(_, l)| l.contains("--registry-mirror"))
        .cloned()
}

fn refuse_if_flag_given(conflict: Option<&(PathBuf, String)>) -> Result<()> {
    let Some((path, line)) = conflict else {
        return Ok(());
    };
    bail!(
        "dockerd already gets --registry-mirror from {} ({line}); dockerd refuses to start when \
         registry-mirrors is set both as a flag and in daemon.json, so daemon.json was not \
         changed. Either add --registry-mirror={MIRROR_URL} to that line, or remove the flag \
         there, move its mirrors to daemon.json and run this again",
        path.display()
    )
}

/// The running dockerd processes that read `target` and were started with
/// `--registry-mirror`: their process ids.
fn live_conflicts(running: &[(u32, Vec<String>)], target: &Path, default: &Path) -> Vec<u32> {
    running
        .iter()
        .filter(|(_, argv)| {
            DockerdFlags::parse(argv.iter().skip(1).map(String::as_str))
                .conflicts_with(target, default)
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// Only a warning: the running daemon's command line may be gone by its next start, which is
/// what the service files (checked above, and refused) decide.
fn warn_about_live_flags(pids: &[u32], target: &Path) {
    for pid in pids {
        ui::note(format_args!(
            "warning: the running dockerd (pid {pid}) was started with --registry-mirror and \
             reads {}; started that way again it will refuse to start (and a reload is refused) \
             now that registry-mirrors is in the file. Start it without --registry-mirror, or \
             run `docker-credential-gcp configure-mirror --remove` to undo this",
            target.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors_of(json: &str) -> Value {
        serde_json::from_str::<Value>(json).unwrap()["registry-mirrors"].clone()
    }

    #[test]
    fn daemon_json_gets_the_mirror_after_existing_ones_and_loses_only_ours() {
        let added = edit_daemon_json(
            r#"{"registry-mirrors": ["https://corp.example"], "x": 1}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            mirrors_of(&added),
            serde_json::json!(["https://corp.example", MIRROR_URL])
        );
        assert_eq!(
            edit_daemon_json(&added, false).unwrap(),
            added,
            "idempotent"
        );
        let removed = edit_daemon_json(&added, true).unwrap();
        assert_eq!(
            mirrors_of(&removed),
            serde_json::json!(["https://corp.example"])
        );
        let fresh = edit_daemon_json("", false).unwrap();
        assert_eq!(mirrors_of(&fresh), serde_json::json!([MIRROR_URL]));
        assert_eq!(edit_daemon_json("", true).unwrap(), "");
        assert!(edit_daemon_json(r#"{"registry-mirrors": "x"}"#, false).is_err());
    }

    #[test]
    fn hosts_toml_round_trips_with_the_mirror_after_other_hosts() {
        let added = edit_hosts_toml("", false).unwrap();
        assert!(
            added.contains("server = \"https://registry-1.docker.io\""),
            "{added}"
        );
        assert!(
            added.contains("[host.\"https://mirror.gcr.io\"]"),
            "{added}"
        );
        assert_eq!(edit_hosts_toml(&added, true).unwrap(), "");

        let theirs = "# my comment\nserver = \"https://registry-1.docker.io\"\n\n[host.\"https://other.example\"]\n  capabilities = [\"pull\"]\n";
        let added = edit_hosts_toml(theirs, false).unwrap();
        assert!(added.contains("# my comment") && added.contains("other.example"));
        assert!(
            added.find("other.example").unwrap() < added.find("mirror.gcr.io").unwrap(),
            "existing mirrors keep their priority: {added}"
        );
        assert_eq!(added.matches("server =").count(), 1);
        assert_eq!(edit_hosts_toml(&added, false).unwrap(), added);
        assert_eq!(edit_hosts_toml(&added, true).unwrap(), theirs);
    }

    #[test]
    fn registries_conf_joins_the_docker_io_entry_in_any_header_form() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry]] # Docker Hub\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"other-mirror.example\"\n\n[[registry]]\nlocation = \"x.example\"\n";
        let added = edit_registries_conf(theirs, false).unwrap();
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
        assert_eq!(edit_registries_conf(&added, false).unwrap(), added);
        assert_eq!(edit_registries_conf(&added, true).unwrap(), theirs);
    }

    #[test]
    fn registries_conf_gets_a_docker_io_entry_when_it_has_none() {
        let theirs = "unqualified-search-registries = [\"docker.io\"]\n";
        let added = edit_registries_conf(theirs, false).unwrap();
        assert!(added.starts_with(theirs), "{added}");
        assert!(
            added.contains("[[registry.mirror]]\nlocation = \"mirror.gcr.io\""),
            "{added}"
        );
        assert_eq!(edit_registries_conf(&added, true).unwrap(), theirs);
        let fresh = edit_registries_conf("", false).unwrap();
        assert!(fresh.contains("prefix = \"docker.io\""), "{fresh}");
    }

    #[test]
    fn a_file_of_comments_gets_the_new_table_at_its_end_and_back_on_remove() {
        // Debian's registries.conf is all comments, as is many a hosts.toml template.
        let comments = "# For more information on this configuration file, see containers-registries.conf(5).\n#\n# unqualified-search-registries = [\"example.com\"]\n\n# [[registry]]\n# location = \"example.com\"\n";
        let added = edit_registries_conf(comments, false).unwrap();
        assert!(added.starts_with(comments), "{added}");
        assert!(
            added.ends_with("[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n"),
            "{added}"
        );
        assert_eq!(edit_registries_conf(&added, false).unwrap(), added);
        assert_eq!(edit_registries_conf(&added, true).unwrap(), comments);
        let no_newline = "# only a comment";
        let added = edit_registries_conf(no_newline, false).unwrap();
        assert!(
            added.starts_with("# only a comment\n\n[[registry]]"),
            "{added}"
        );
        // ...which then ends with a newline.
        assert_eq!(
            edit_registries_conf(&added, true).unwrap(),
            "# only a comment\n"
        );

        let hosts = "server = \"https://registry-1.docker.io\"\nskip_verify = false\n\n# [host.\"https://example\"]\n#   capabilities = [\"pull\"]\n";
        let added = edit_hosts_toml(hosts, false).unwrap();
        assert!(added.starts_with(hosts), "{added}");
        assert!(
            added.ends_with("capabilities = [\"pull\", \"resolve\"]\n"),
            "{added}"
        );
        assert_eq!(edit_hosts_toml(&added, true).unwrap(), hosts);
    }

    #[test]
    fn a_v1_registries_conf_is_refused_with_how_to_migrate() {
        let v1 = "[registries.search]\nregistries = ['docker.io', 'quay.io']\n";
        let e = format!("{:#}", edit_registries_conf(v1, false).unwrap_err());
        assert!(
            e.contains("v1") && e.contains("unqualified-search-registries"),
            "{e}"
        );
    }

    #[test]
    fn files_edited_by_older_versions_are_recognised() {
        let old = "unqualified-search-registries = [\"docker.io\"]\n\n# BEGIN docker-credential-gcp: mirror.gcr.io\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\n\n# END docker-credential-gcp: mirror.gcr.io\n";
        let removed = edit_registries_conf(old, true).unwrap();
        assert!(
            !removed.contains("mirror.gcr.io") && !removed.contains("BEGIN"),
            "{removed}"
        );
        assert_eq!(
            edit_registries_conf(old, false).unwrap(),
            old,
            "already set up"
        );
    }

    fn lines(file: &str, text: &str) -> Vec<(PathBuf, String)> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| (PathBuf::from(file), l.to_owned()))
            .collect()
    }

    const DEFAULT: &str = "/etc/docker/daemon.json";

    #[test]
    fn dockerd_flags_are_read_in_both_forms() {
        let f = DockerdFlags::parse([
            "--registry-mirror",
            "https://m.example",
            "--config-file=/x.json",
        ]);
        assert!(f.registry_mirror);
        assert_eq!(f.config_file.as_deref(), Some(Path::new("/x.json")));
        let f = DockerdFlags::parse(["-H", "fd://", "--config-file", "/y.json"]);
        assert!(!f.registry_mirror);
        assert_eq!(f.config_file.as_deref(), Some(Path::new("/y.json")));
        assert_eq!(
            DockerdFlags::parse(["--registry-mirrors-x"]),
            DockerdFlags::default()
        );
        let f = DockerdFlags::parse_lines([
            "DOCKER_OPTS=\"--registry-mirror=https://m.example --dns 8.8.8.8\"",
            "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS",
        ]);
        assert!(f.registry_mirror && f.config_file.is_none(), "{f:?}");
        let f = DockerdFlags::parse_lines(["DOCKER_OPTS='--config-file=/etc/docker/other.json'"]);
        assert_eq!(
            f.config_file.as_deref(),
            Some(Path::new("/etc/docker/other.json"))
        );
    }

    #[test]
    fn a_registry_mirror_flag_in_dockerds_files_is_refused_for_the_file_that_dockerd_reads() {
        let debian = lines(
            "/etc/default/docker",
            "# DOCKER_OPTS=\"--registry-mirror=x\"\nDOCKER_OPTS=\"--registry-mirror=https://m.example\"\n",
        );
        let (path, line) = service_conflict(&debian, Path::new(DEFAULT), Path::new(DEFAULT))
            .expect("the default daemon.json conflicts");
        assert_eq!(path, Path::new("/etc/default/docker"));
        assert_eq!(line, "DOCKER_OPTS=\"--registry-mirror=https://m.example\"");
        // The system dockerd does not read another file: no conflict there.
        assert_eq!(
            service_conflict(
                &debian,
                Path::new("/srv/other/daemon.json"),
                Path::new(DEFAULT)
            ),
            None
        );
        // ...unless its command line names that file.
        let mut moved = debian.clone();
        moved.extend(lines(
            "/etc/systemd/system/docker.service.d/override.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --config-file /srv/other/daemon.json\n",
        ));
        assert!(
            service_conflict(
                &moved,
                Path::new("/srv/other/daemon.json"),
                Path::new(DEFAULT)
            )
            .is_some()
        );
        assert!(service_conflict(&moved, Path::new(DEFAULT), Path::new(DEFAULT)).is_none());
        // Commented lines and other flags say nothing.
        let quiet = lines(
            "/etc/default/docker",
            "#DOCKER_OPTS=\"--registry-mirror=x\"\nDOCKER_OPTS=\"--dns 8.8.8.8\"\n",
        );
        assert_eq!(
            service_conflict(&quiet, Path::new(DEFAULT), Path::new(DEFAULT)),
            None
        );

        let e = refuse_if_flag_given(Some(&(
            PathBuf::from("/etc/default/docker"),
            "DOCKER_OPTS=\"--registry-mirror=x\"".into(),
        )))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/default/docker") && e.contains("refuses to start"),
            "{e}"
        );
        assert!(refuse_if_flag_given(None).is_ok());
    }

    #[test]
    fn a_running_dockerd_conflicts_only_if_it_reads_the_file_and_has_the_flag() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let running = vec![
            (
                10,
                argv(&[
                    "/usr/sbin/dockerd",
                    "-H",
                    "fd://",
                    "--registry-mirror=https://m.example",
                ]),
            ),
            (
                11,
                argv(&[
                    "dockerd",
                    "--config-file",
                    "/srv/a/daemon.json",
                    "--registry-mirror",
                    "https://m",
                ]),
            ),
            (
                12,
                argv(&["dockerd", "--config-file", "/srv/b/daemon.json"]),
            ),
            // The program name is not an argument.
            (13, argv(&["--registry-mirror"])),
        ];
        let default = Path::new(DEFAULT);
        assert_eq!(live_conflicts(&running, default, default), [10]);
        assert_eq!(
            live_conflicts(&running, Path::new("/srv/a/daemon.json"), default),
            [11]
        );
        assert!(live_conflicts(&running, Path::new("/srv/b/daemon.json"), default).is_empty());
    }
}
