//! `configure-docker`: map Google registries to this helper in docker's config.json.
//!
//! It only ever adds or removes `credHelpers` entries whose value is this helper's name; every
//! other key, value and the key order survive (see `edit` and `json_file`). It refuses hosts
//! the helper would not serve (non-Google hosts, the retired bucket hosts) before touching
//! anything.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use super::docker::{self, DockerClient, VersionVerdict};
use super::edit::Edit;
use super::json_file;
use super::registries;
use crate::hosts::{self, DEPRECATED_BUCKET_MESSAGE, HostClass};
use crate::settings::Settings;
use crate::util::platform::{self, Os};
use crate::util::ui;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Comma-separated hosts to configure instead of the default Container Registry hosts.
    #[arg(long, value_name = "HOST,...")]
    registries: Option<String>,
    /// Also add every Artifact Registry host (REGION-docker.pkg.dev, docker.REGION.rep.pkg.dev).
    #[arg(long)]
    include_artifact_registry: bool,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove this helper's entries (only those) instead of adding them.
    #[arg(long)]
    remove: bool,
    /// Do not ask for confirmation on a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The docker config file (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Legacy `docker build` calls every credHelpers entry once per build; past this many it shows.
const MANY_ENTRIES: usize = 20;

pub(crate) fn run(opts: &Options) -> Result<ExitCode> {
    let settings = Settings::load()?;
    let suffix = docker::helper_suffix();
    let wanted = wanted_hosts(opts, &settings)?;
    let path = docker::docker_config_path(opts.config.as_deref())?;
    // The file is read (and refused if it is not a regular file or not JSON) before docker
    // runs: the docker CLI reads it too, and would hang on a FIFO.
    let edit = Edit::open(&path, 0o700)?;
    let parsed = json_file::parse(
        edit.original.as_deref().unwrap_or_default(),
        &edit.path.display().to_string(),
    )?;
    if !opts.remove && !check_docker_client() {
        return Ok(ExitCode::FAILURE);
    }
    for key in &parsed.merged_keys {
        ui::note(format_args!(
            "note: {} has {key:?} more than once; docker reads the copies as one, and so does this edit, which writes them as one",
            edit.path.display()
        ));
    }
    let mut root = parsed.root;
    if root.get("credHelpers").is_some_and(|v| !v.is_object()) {
        bail!(
            "\"credHelpers\" in {} is not a JSON object; fix it by hand. Nothing was written.",
            edit.path.display()
        );
    }
    let changes = if opts.remove {
        remove_entries(
            &mut root,
            &suffix,
            opts.registries.is_some().then_some(&wanted),
        )
    } else {
        add_entries(&mut root, &suffix, &wanted)
    };
    let total = root
        .get("credHelpers")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if changes.is_empty() && parsed.merged_keys.is_empty() {
        ui::note(format_args!(
            "{}: already {}; nothing changed",
            edit.path.display(),
            if opts.remove {
                "free of our entries"
            } else {
                "configured"
            }
        ));
        report_path_and_size(&suffix, total);
        return Ok(ExitCode::SUCCESS);
    }
    let new = json_file::render(&root)?;
    if opts.dry_run {
        edit.finish(&new, true, &mut ui::stdout())?;
        ui::note(format_args!(
            "dry run: {} not written ({} change(s))",
            edit.path.display(),
            changes.len()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    for change in &changes {
        if let Change::Replaced { host, previous } = change {
            ui::note(format_args!(
                "warning: {host} was handled by docker-credential-{previous}; it now uses docker-credential-{suffix}"
            ));
        }
    }
    if !opts.yes && std::io::stdin().is_terminal() && !confirm(&edit.path, changes.len())? {
        ui::note(format_args!("nothing written"));
        return Ok(ExitCode::FAILURE);
    }
    edit.finish(&new, false, &mut std::io::sink())?;
    let names: Vec<&str> = changes.iter().map(Change::host).collect();
    let verb = if opts.remove {
        "no longer use"
    } else {
        "now use"
    };
    ui::note(format_args!(
        "{}: {} host(s) {verb} docker-credential-{suffix}: {}",
        edit.path.display(),
        names.len(),
        names.join(", ")
    ));
    report_path_and_size(&suffix, total);
    Ok(ExitCode::SUCCESS)
}

/// The hosts to configure: `--registries` or the default Container Registry hosts, plus every
/// Artifact Registry host with `--include-artifact-registry`, plus the hosts the user declared
/// in settings. Refuses hosts the helper would not serve.
fn wanted_hosts(opts: &Options, settings: &Settings) -> Result<Vec<String>> {
    let mut hosts: Vec<String> = match &opts.registries {
        Some(list) => hosts::parse_host_list(list)
            .map_err(|e| anyhow!("--registries: {e}"))?
            .iter()
            .map(ToString::to_string)
            .collect(),
        None => registries::GCR_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };
    if opts.include_artifact_registry {
        hosts.extend(registries::artifact_registry_hosts());
    }
    hosts.extend(settings.registries.value.iter().map(ToString::to_string));
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    for host in &hosts {
        let registry = hosts::normalise(host).ok_or_else(|| anyhow!("{host:?} is not a host"))?;
        match hosts::classify(&registry, &settings.registries.value) {
            HostClass::Google => {}
            HostClass::DeprecatedBucket => {
                bail!("{host}: {DEPRECATED_BUCKET_MESSAGE}. Nothing was written.")
            }
            HostClass::Other => bail!(
                "{host} is not a Google registry, so this helper would never answer for it; if it \
                 fronts Artifact Registry, declare it in DOCKER_CREDENTIAL_GCP_REGISTRIES or the \
                 config file's \"registries\". Nothing was written."
            ),
        }
    }
    if hosts.is_empty() {
        bail!("no registries given");
    }
    Ok(hosts)
}

#[derive(Debug)]
pub(crate) enum Change {
    Added(String),
    Replaced { host: String, previous: String },
    Removed(String),
}

impl Change {
    fn host(&self) -> &str {
        match self {
            Change::Added(h) | Change::Removed(h) | Change::Replaced { host: h, .. } => h,
        }
    }
}

/// Points each of `hosts` at this helper in `credHelpers` (created if missing). A
/// `credHelpers` that is not an object is left alone (the caller refuses it).
pub(crate) fn add_entries(
    root: &mut Map<String, Value>,
    suffix: &str,
    hosts: &[String],
) -> Vec<Change> {
    let entry = root
        .entry("credHelpers")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(map) = entry else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for host in hosts {
        match map.get(host) {
            Some(Value::String(s)) if s == suffix => continue,
            Some(Value::String(previous)) => changes.push(Change::Replaced {
                host: host.clone(),
                previous: previous.clone(),
            }),
            _ => changes.push(Change::Added(host.clone())),
        }
        map.insert(host.clone(), Value::String(suffix.to_owned()));
    }
    changes
}

/// Removes entries that point at this helper: for `only` hosts, or all of them.
fn remove_entries(
    root: &mut Map<String, Value>,
    suffix: &str,
    only: Option<&Vec<String>>,
) -> Vec<Change> {
    let Some(Value::Object(map)) = root.get_mut("credHelpers") else {
        return Vec::new();
    };
    let ours: Vec<String> = map
        .iter()
        .filter(|(host, v)| v.as_str() == Some(suffix) && only.is_none_or(|o| o.contains(host)))
        .map(|(host, _)| host.clone())
        .collect();
    for host in &ours {
        map.shift_remove(host);
    }
    if map.is_empty() && !ours.is_empty() {
        root.shift_remove("credHelpers");
    }
    ours.into_iter().map(Change::Removed).collect()
}

/// Prints the Docker client check; `false` means refuse to configure.
fn check_docker_client() -> bool {
    match docker::docker_client() {
        DockerClient::Missing => ui::note(format_args!(
            "note: the docker CLI is not installed; configuring anyway (skopeo, podman and buildah read the same file)"
        )),
        DockerClient::Unknown(why) => {
            ui::note(format_args!(
                "note: could not read the Docker client version ({why})"
            ));
        }
        DockerClient::Version { major, minor, text } => match docker::judge(major, minor) {
            VersionVerdict::TooOld => {
                ui::note(format_args!(
                    "error: Docker {text} cannot talk to Google's registries (they need Docker 1.6 or newer, and credential helpers need 18.03 or newer); upgrade Docker. Nothing was written."
                ));
                return false;
            }
            VersionVerdict::SlowBuilds => ui::note(format_args!(
                "warning: Docker {text} is older than 18.03: with credential helpers configured, `docker build` is very slow on such clients; upgrade Docker"
            )),
            VersionVerdict::Fine => {}
        },
    }
    true
}

fn report_path_and_size(suffix: &str, total: usize) {
    let (program, found) = docker::helper_on_path(suffix);
    if found.is_none() {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()));
        ui::note(format_args!(
            "warning: {program} is not on PATH, so docker cannot run it; add its directory to PATH{}",
            here.map(|d| format!(" ({})", platform::path_hint(Os::CURRENT, &d)))
                .unwrap_or_default()
        ));
    }
    if total > MANY_ENTRIES {
        ui::note(format_args!(
            "note: {total} credHelpers entries: the legacy builder (DOCKER_BUILDKIT=0 docker build) runs a helper for every entry on each build; keep only the registries you use"
        ));
    }
}

fn confirm(path: &std::path::Path, n: usize) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "Write {n} change(s) to {}? [Y/n] ", path.display())?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "" | "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn adding_keeps_other_helpers_and_reports_replacements() {
        let mut root = obj(
            serde_json::json!({"credHelpers": {"quay.io": "quay", "gcr.io": "gcr", "us.gcr.io": "gcp"}}),
        );
        let changes = add_entries(
            &mut root,
            "gcp",
            &["gcr.io".into(), "us.gcr.io".into(), "eu.gcr.io".into()],
        );
        assert_eq!(changes.len(), 2);
        assert!(
            matches!(&changes[0], Change::Replaced { host, previous } if host == "gcr.io" && previous == "gcr")
        );
        assert_eq!(
            Value::Object(root),
            serde_json::json!({"credHelpers": {"quay.io": "quay", "gcr.io": "gcp", "us.gcr.io": "gcp", "eu.gcr.io": "gcp"}})
        );
    }

    #[test]
    fn removing_takes_only_our_entries() {
        let mut root = obj(
            serde_json::json!({"credHelpers": {"quay.io": "quay", "gcr.io": "gcp", "eu.gcr.io": "gcp"}, "x": 1}),
        );
        assert_eq!(remove_entries(&mut root, "gcp", None).len(), 2);
        assert_eq!(
            Value::Object(root.clone()),
            serde_json::json!({"credHelpers": {"quay.io": "quay"}, "x": 1})
        );
        let mut only_ours = obj(serde_json::json!({"credHelpers": {"gcr.io": "gcp"}, "x": 1}));
        remove_entries(&mut only_ours, "gcp", None);
        assert_eq!(Value::Object(only_ours), serde_json::json!({"x": 1}));
    }

    #[test]
    fn a_cred_helpers_value_of_the_wrong_type_is_left_alone() {
        let mut root = obj(serde_json::json!({"credHelpers": "oops"}));
        assert!(add_entries(&mut root, "gcp", &["gcr.io".into()]).is_empty());
        assert_eq!(
            Value::Object(root),
            serde_json::json!({"credHelpers": "oops"})
        );
    }
}
