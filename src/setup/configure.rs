//! `configure-docker`: map Google registries to this helper in docker's config.json.
//!
//! By default it maps every Google registry host this release knows (`registries`), and with
//! `--discover` also the Artifact Registry locations the API lists (`discover`). It only ever
//! adds or removes `credHelpers` entries whose value is this helper's name; every other key,
//! value and the key order survive (see `edit` and `json_file`). It refuses hosts the helper
//! would not serve (non-Google hosts, the retired bucket hosts) before touching anything.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use super::discover::{self, Discovery};
use super::docker::{self, DockerClient, VersionVerdict};
use super::edit::Edit;
use super::json_file;
use super::registries;
use crate::hosts::{self, DEPRECATED_BUCKET_MESSAGE, HostClass};
use crate::settings::Settings;
use crate::util::platform::{self, Os};
use crate::util::{text, ui};

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Configure exactly these comma-separated hosts instead of every Google registry host.
    #[arg(long, value_name = "HOST,...")]
    registries: Option<String>,
    /// Accepted for compatibility: every Artifact Registry host (REGION-docker.pkg.dev,
    /// docker.REGION.rep.pkg.dev) is now mapped by default. With --registries, adds them to
    /// that set.
    #[arg(long)]
    include_artifact_registry: bool,
    /// Also ask the Artifact Registry API which locations exist (with your Google credentials,
    /// as `get` uses them) and map LOCATION-docker.pkg.dev for each, including locations newer
    /// than this release. The endpoint is https://artifactregistry.googleapis.com unless
    /// DOCKER_CREDENTIAL_GCP_ARTIFACT_REGISTRY_ENDPOINT names another.
    #[arg(long, conflicts_with = "remove")]
    discover: bool,
    /// The project whose locations --discover lists (default: gcloud's core/project, else the
    /// ADC file's quota_project_id or project_id, else the metadata server's project). Any
    /// project with the Artifact Registry API enabled will do: the locations are normally the
    /// same for every project.
    #[arg(long, value_name = "PROJECT", requires = "discover")]
    project: Option<String>,
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

/// Legacy `docker build` runs the helper of every credHelpers entry once per build. This
/// helper answers in one or two milliseconds, so its own entries cost nothing worth a note;
/// past this many entries of *other* helpers (gcloud's takes ~0.6 s each) the delay shows.
const MANY_ENTRIES: usize = 20;

/// Plan (which entries change), render (the new file and the messages), apply (confirm and
/// write). Everything that can refuse (the hosts, the file, the docker client, a credHelpers
/// that is not an object) does so before anything is written.
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
    let file = edit.path.display().to_string();
    for key in &parsed.merged_keys {
        ui::note(format_args!(
            "note: {file} has {key:?} more than once; docker reads the copies as one, and so does this edit, which writes them as one"
        ));
    }
    let plan = plan(opts, &suffix, &wanted, parsed).map_err(|NotAnObject| {
        anyhow!(
            "\"credHelpers\" in {file} is not a JSON object; fix it by hand. Nothing was written."
        )
    })?;
    if plan.changes_nothing() {
        ui::note(format_args!("{}", plan.unchanged(&file)));
        report_path_and_size(&suffix, &plan.root);
        return Ok(ExitCode::SUCCESS);
    }
    let new = json_file::render(&plan.root)?;
    if opts.dry_run {
        edit.finish(&new, true, &mut ui::stdout())?;
        ui::note(format_args!("{}", plan.dry_run(&file)));
        return Ok(ExitCode::SUCCESS);
    }
    for warning in plan.takeovers() {
        ui::note(format_args!("{warning}"));
    }
    if !opts.yes && std::io::stdin().is_terminal() && !confirm(&edit.path, plan.changes.len())? {
        ui::note(format_args!("nothing written"));
        return Ok(ExitCode::FAILURE);
    }
    edit.finish(&new, false, &mut std::io::sink())?;
    ui::note(format_args!("{}", plan.summary(&file)));
    report_path_and_size(&suffix, &plan.root);
    Ok(ExitCode::SUCCESS)
}

/// What configure-docker is about to do to a config file.
#[derive(Debug)]
struct Plan {
    /// The file's content after the change.
    root: json_file::Document,
    changes: Vec<Change>,
    /// Keys the file repeats (written back once, which is a change by itself).
    merged_keys: Vec<String>,
    remove: bool,
    suffix: String,
    /// How many hosts the file maps to this helper afterwards (0 for --remove).
    mapped: usize,
}

/// The entries to add or remove in `parsed`, applied to its content.
fn plan(
    opts: &Options,
    suffix: &str,
    wanted: &[String],
    parsed: json_file::Parsed,
) -> Result<Plan, NotAnObject> {
    let mut root = parsed.root;
    let changes = if opts.remove {
        let only = opts.registries.is_some().then_some(wanted);
        remove_entries(&mut root, suffix, only)?
    } else {
        add_entries(&mut root, suffix, wanted)?
    };
    Ok(Plan {
        root,
        changes,
        merged_keys: parsed.merged_keys,
        remove: opts.remove,
        suffix: suffix.to_owned(),
        mapped: if opts.remove { 0 } else { wanted.len() },
    })
}

impl Plan {
    fn changes_nothing(&self) -> bool {
        self.changes.is_empty() && self.merged_keys.is_empty()
    }

    fn unchanged(&self, file: &str) -> String {
        if self.remove {
            format!("{file}: already free of our entries; nothing changed")
        } else {
            format!(
                "{file}: already configured ({} host(s) map to docker-credential-{}); nothing changed",
                self.mapped, self.suffix
            )
        }
    }

    fn dry_run(&self, file: &str) -> String {
        let mapping = if self.remove {
            String::new()
        } else {
            format!(
                "; it would map {} host(s) to docker-credential-{}",
                self.mapped, self.suffix
            )
        };
        format!(
            "dry run: {file} not written ({} change(s){mapping})",
            self.changes.len()
        )
    }

    /// A warning for each entry replaced: another helper's, or one that was not a helper name.
    fn takeovers(&self) -> Vec<String> {
        let suffix = &self.suffix;
        self.changes
            .iter()
            .filter_map(|change| match change {
                Change::Replaced {
                    host,
                    previous: Previous::Helper(previous),
                } => Some(format!(
                    "warning: {host} was handled by docker-credential-{previous}; it now uses docker-credential-{suffix}"
                )),
                Change::Replaced {
                    host,
                    previous: Previous::NotAName(shown),
                } => Some(format!(
                    "warning: {host}'s credHelpers entry was {shown}, not a helper name; it now uses docker-credential-{suffix}"
                )),
                _ => None,
            })
            .collect()
    }

    /// What was written: the hosts removed, or the new ones and those taken over from another
    /// helper (already warned about), apart.
    fn summary(&self, file: &str) -> String {
        let hosts = |group: &[&Change]| {
            let names: Vec<String> = group.iter().map(|c| c.host().to_owned()).collect();
            text::abbreviate(&names, 8)
        };
        let suffix = &self.suffix;
        if self.remove {
            let removed: Vec<&Change> = self.changes.iter().collect();
            return format!(
                "{file}: {} host(s) no longer use docker-credential-{suffix}: {}",
                removed.len(),
                hosts(&removed)
            );
        }
        let of = |wanted: fn(&Change) -> bool| -> Vec<&Change> {
            self.changes.iter().filter(|c| wanted(c)).collect()
        };
        let added = of(|c| matches!(c, Change::Added(_)));
        let taken = of(|c| {
            matches!(
                c,
                Change::Replaced {
                    previous: Previous::Helper(_),
                    ..
                }
            )
        });
        let fixed = of(|c| {
            matches!(
                c,
                Change::Replaced {
                    previous: Previous::NotAName(_),
                    ..
                }
            )
        });
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("{} new ({})", added.len(), hosts(&added)));
        }
        if !taken.is_empty() {
            parts.push(format!(
                "{} taken over from another helper ({})",
                taken.len(),
                hosts(&taken)
            ));
        }
        if !fixed.is_empty() {
            parts.push(format!(
                "{} in place of entries that were not helper names ({})",
                fixed.len(),
                hosts(&fixed)
            ));
        }
        format!(
            "{file}: mapped {} host(s) to docker-credential-{suffix}: {}",
            self.mapped,
            parts.join(", ")
        )
    }
}

/// The hosts to configure: `--registries` (plus every Artifact Registry host with
/// `--include-artifact-registry`) or every Google registry host this release knows, plus the
/// locations `--discover` found, plus the hosts the user declared in settings. Refuses hosts
/// the helper would not serve.
fn wanted_hosts(opts: &Options, settings: &Settings) -> Result<Vec<String>> {
    let mut hosts: Vec<String> = match &opts.registries {
        Some(list) => {
            let mut chosen: Vec<String> = hosts::parse_host_list(list)
                .map_err(|e| anyhow!("--registries: {e}"))?
                .iter()
                .map(ToString::to_string)
                .collect();
            if opts.include_artifact_registry {
                chosen.extend(registries::artifact_registry_hosts());
            }
            chosen
        }
        None => registries::all_hosts(),
    };
    if opts.discover {
        let found = discover::discover(opts.project.as_deref(), settings)
            .map_err(|e| anyhow!("{e:#}. Nothing was written."))?;
        report_discovery(&found);
        hosts.extend(found.hosts());
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

/// What `--discover` found, on stderr: the project and its origin, the locations this release
/// does not know, and any the API listed that are not host names.
fn report_discovery(found: &Discovery) {
    let unknown: Vec<String> = found
        .locations
        .iter()
        .filter(|l| !registries::is_known_location(l))
        .cloned()
        .collect();
    ui::note(format_args!(
        "discovered {} Artifact Registry location(s) in project {} (from {}){}",
        found.locations.len(),
        found.project.id,
        found.project.origin,
        if unknown.is_empty() {
            "; this release knows them all".to_owned()
        } else {
            format!(
                "; {} not known to this release: {}",
                unknown.len(),
                unknown.join(", ")
            )
        }
    ));
    if !found.skipped.is_empty() {
        ui::note(format_args!(
            "warning: skipped location(s) that are not DNS labels, so no registry host: {}",
            found.skipped.join(", ")
        ));
    }
}

#[derive(Debug)]
pub(crate) enum Change {
    Added(String),
    Replaced { host: String, previous: Previous },
    Removed(String),
}

/// What a replaced credHelpers entry held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Previous {
    /// Another helper's name.
    Helper(String),
    /// Something that is not a helper name, as the file showed it (`5`, `null`, `""`).
    NotAName(String),
}

impl Change {
    fn host(&self) -> &str {
        match self {
            Change::Added(h) | Change::Removed(h) | Change::Replaced { host: h, .. } => h,
        }
    }
}

/// `credHelpers` is there but not a JSON object: nothing here edits it; the user fixes it.
#[derive(Debug)]
pub(crate) struct NotAnObject;

/// The `credHelpers` object, created empty if missing.
fn cred_helpers(root: &mut Map<String, Value>) -> Result<&mut Map<String, Value>, NotAnObject> {
    match root
        .entry("credHelpers")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(map) => Ok(map),
        _ => Err(NotAnObject),
    }
}

/// Points each of `hosts` at this helper in `credHelpers` (created if missing).
pub(crate) fn add_entries(
    root: &mut Map<String, Value>,
    suffix: &str,
    hosts: &[String],
) -> Result<Vec<Change>, NotAnObject> {
    let map = cred_helpers(root)?;
    let mut changes = Vec::new();
    for host in hosts {
        match map.get(host).map(docker::helper_name) {
            Some(Ok(name)) if name == suffix => continue,
            Some(Ok(name)) => changes.push(Change::Replaced {
                host: host.clone(),
                previous: Previous::Helper(name.to_owned()),
            }),
            Some(Err(shown)) => changes.push(Change::Replaced {
                host: host.clone(),
                previous: Previous::NotAName(shown),
            }),
            None => changes.push(Change::Added(host.clone())),
        }
        map.insert(host.clone(), Value::String(suffix.to_owned()));
    }
    Ok(changes)
}

/// Removes entries that point at this helper: for `only` hosts, or all of them.
fn remove_entries(
    root: &mut Map<String, Value>,
    suffix: &str,
    only: Option<&[String]>,
) -> Result<Vec<Change>, NotAnObject> {
    if !root.contains_key("credHelpers") {
        return Ok(Vec::new());
    }
    let map = cred_helpers(root)?;
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
    Ok(ours.into_iter().map(Change::Removed).collect())
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

fn report_path_and_size(suffix: &str, root: &Map<String, Value>) {
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
    let others = root
        .get("credHelpers")
        .and_then(Value::as_object)
        .map_or(0, |m| {
            m.values().filter(|v| v.as_str() != Some(suffix)).count()
        });
    if others > MANY_ENTRIES {
        ui::note(format_args!(
            "note: {others} credHelpers entries use other helpers: the legacy builder (DOCKER_BUILDKIT=0 docker build) runs the helper of every entry on each build, and other helpers can take much longer than this one (gcloud's ~0.6 s per entry); keep only the ones you use"
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
        )
        .unwrap();
        assert_eq!(changes.len(), 2);
        assert!(
            matches!(&changes[0], Change::Replaced { host, previous: Previous::Helper(p) } if host == "gcr.io" && p == "gcr")
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
        assert_eq!(remove_entries(&mut root, "gcp", None).unwrap().len(), 2);
        assert_eq!(
            Value::Object(root.clone()),
            serde_json::json!({"credHelpers": {"quay.io": "quay"}, "x": 1})
        );
        let mut only_ours = obj(serde_json::json!({"credHelpers": {"gcr.io": "gcp"}, "x": 1}));
        remove_entries(&mut only_ours, "gcp", None).unwrap();
        assert_eq!(Value::Object(only_ours), serde_json::json!({"x": 1}));
    }

    #[test]
    fn the_summary_names_new_hosts_apart_from_those_taken_over() {
        let plan = Plan {
            root: json_file::Document::default(),
            changes: vec![
                Change::Added("gcr.io".into()),
                Change::Replaced {
                    host: "us.gcr.io".into(),
                    previous: Previous::Helper("gcloud".into()),
                },
                Change::Replaced {
                    host: "eu.gcr.io".into(),
                    previous: Previous::NotAName("5".into()),
                },
            ],
            merged_keys: Vec::new(),
            remove: false,
            suffix: "gcp".into(),
            mapped: 3,
        };
        assert_eq!(
            plan.summary("c.json"),
            "c.json: mapped 3 host(s) to docker-credential-gcp: 1 new (gcr.io), 1 taken over from another helper (us.gcr.io), 1 in place of entries that were not helper names (eu.gcr.io)"
        );
        assert_eq!(
            plan.takeovers(),
            [
                "warning: us.gcr.io was handled by docker-credential-gcloud; it now uses docker-credential-gcp",
                "warning: eu.gcr.io's credHelpers entry was 5, not a helper name; it now uses docker-credential-gcp"
            ]
        );
        assert_eq!(
            plan.dry_run("c.json"),
            "dry run: c.json not written (3 change(s); it would map 3 host(s) to docker-credential-gcp)"
        );
        assert!(!plan.changes_nothing());
    }

    #[test]
    fn an_entry_that_is_not_a_helper_name_is_replaced_as_such() {
        let mut root = obj(
            serde_json::json!({"credHelpers": {"gcr.io": 5, "us.gcr.io": null, "eu.gcr.io": "", "asia.gcr.io": [1]}}),
        );
        let hosts = ["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"].map(String::from);
        let changes = add_entries(&mut root, "gcp", &hosts).unwrap();
        let previous: Vec<&Previous> = changes
            .iter()
            .map(|c| match c {
                Change::Replaced { previous, .. } => previous,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            previous,
            ["5", "null", "\"\"", "[1]"]
                .map(|s| Previous::NotAName(s.to_owned()))
                .iter()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_cred_helpers_value_of_the_wrong_type_is_left_alone() {
        let mut root = obj(serde_json::json!({"credHelpers": "oops"}));
        assert!(add_entries(&mut root, "gcp", &["gcr.io".into()]).is_err());
        assert!(remove_entries(&mut root, "gcp", None).is_err());
        assert_eq!(
            Value::Object(root),
            serde_json::json!({"credHelpers": "oops"})
        );
        let mut none = obj(serde_json::json!({"x": 1}));
        assert!(remove_entries(&mut none, "gcp", None).unwrap().is_empty());
        assert_eq!(Value::Object(none), serde_json::json!({"x": 1}));
    }
}
