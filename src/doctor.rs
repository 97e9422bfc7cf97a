//! `doctor`: one line per check of the whole set-up, with the fix for each failure.
//!
//! Checks never print a token. A check that is informational (something optional is absent)
//! is marked `-` and does not fail the run; `✗` does, and the exit status is 1.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use crate::cache::now_secs;
use crate::checks::{self, DockerClient, VersionVerdict};
use crate::config_edit::JsonFile;
use crate::hosts::{self, HostClass};
use crate::mirror;
use crate::settings::Settings;
use crate::sources;
use crate::store;
use crate::tokens::{self, Outcome};

#[derive(Default)]
struct Report {
    failures: usize,
}

impl Report {
    fn pass(&mut self, msg: impl AsRef<str>) {
        println!("✓ {}", msg.as_ref());
    }

    fn fail(&mut self, msg: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failures += 1;
        println!("✗ {}\n    fix: {}", msg.as_ref(), fix.as_ref());
    }

    fn info(&mut self, msg: impl AsRef<str>) {
        println!("- {}", msg.as_ref());
    }
}

pub fn run() -> ExitCode {
    let mut r = Report::default();
    let settings = match Settings::load() {
        Ok(s) => {
            r.pass("settings are valid (see `docker-credential-gcp config`)");
            s
        }
        Err(e) => {
            r.fail(
                format!("settings: {e:#}"),
                "correct the variable or config file named above",
            );
            return ExitCode::FAILURE;
        }
    };
    let suffix = checks::helper_suffix();
    check_binary(&mut r, &suffix);
    check_docker_config(&mut r, &suffix, &settings);
    check_docker_client(&mut r);
    check_token(&mut r, &settings);
    check_cache_dir(&mut r, &settings);
    check_keyring(&mut r);
    check_mirror(&mut r);
    if r.failures == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", r.failures);
        ExitCode::FAILURE
    }
}

fn check_binary(r: &mut Report, suffix: &str) {
    match checks::helper_on_path(suffix) {
        (program, Some(path)) => r.pass(format!("{program} is on PATH ({})", path.display())),
        (program, None) => r.fail(
            format!("{program} is not on PATH, so docker cannot run it"),
            "install it with ./install.sh, or add its directory to PATH",
        ),
    }
}

fn check_docker_config(r: &mut Report, suffix: &str, settings: &Settings) {
    let path = match checks::docker_config_path(None) {
        Ok(p) => p,
        Err(e) => return r.fail(format!("{e:#}"), "set HOME or DOCKER_CONFIG"),
    };
    if !path.exists() {
        return r.fail(
            format!("no docker config at {}", path.display()),
            "run `docker-credential-gcp configure-docker`",
        );
    }
    let file = match JsonFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            return r.fail(
                format!("{e:#}"),
                "fix the JSON syntax at the position shown",
            );
        }
    };
    let helpers = file.root.get("credHelpers").and_then(Value::as_object);
    let (mut ours, mut others, mut buckets) = (Vec::new(), Vec::new(), Vec::new());
    for (host, helper) in helpers.into_iter().flatten() {
        let helper = helper.as_str().unwrap_or("");
        let class = hosts::normalise(host).map(|h| hosts::classify(&h, &settings.registries.value));
        match class {
            Some(HostClass::DeprecatedBucket) => buckets.push(host.clone()),
            Some(HostClass::Google) if helper == suffix => ours.push(host.clone()),
            Some(HostClass::Google) => others.push(format!("{host} → docker-credential-{helper}")),
            _ => {}
        }
    }
    if ours.is_empty() {
        r.fail(
            format!(
                "no Google registry in {} uses docker-credential-{suffix}",
                path.display()
            ),
            "run `docker-credential-gcp configure-docker`",
        );
    } else {
        r.pass(format!(
            "{} Google registr{} use docker-credential-{suffix} ({})",
            ours.len(),
            if ours.len() == 1 { "y" } else { "ies" },
            abbreviate(&ours)
        ));
    }
    if !others.is_empty() {
        r.info(format!(
            "Google registries using another helper: {}",
            others.join(", ")
        ));
    }
    if !buckets.is_empty() {
        r.fail(
            format!(
                "deprecated bucket hosts in credHelpers: {}",
                buckets.join(", ")
            ),
            format!(
                "{}; then remove these entries",
                hosts::DEPRECATED_BUCKET_MESSAGE
            ),
        );
    }
    if let Some(store) = file.root.get("credsStore").and_then(Value::as_str) {
        let routed: Vec<&str> = crate::registries::GCR_HOSTS
            .iter()
            .copied()
            .filter(|h| !helpers.is_some_and(|m| m.contains_key(*h)))
            .collect();
        if routed.is_empty() {
            r.info(format!("credsStore is {store:?}; it does not handle the Google registries listed in credHelpers"));
        } else {
            r.info(format!(
                "credsStore {store:?} handles {} (not in credHelpers)",
                routed.join(", ")
            ));
        }
    }
    let total = helpers.map_or(0, |m| m.len());
    if total > 20 {
        r.info(format!("{total} credHelpers entries: the legacy builder runs a helper per entry on every build; keep only what you use"));
    } else {
        r.pass(format!(
            "{total} credHelpers entr{}",
            if total == 1 { "y" } else { "ies" }
        ));
    }
}

fn abbreviate(hosts: &[String]) -> String {
    if hosts.len() <= 4 {
        hosts.join(", ")
    } else {
        format!("{}, … and {} more", hosts[..3].join(", "), hosts.len() - 3)
    }
}

fn check_docker_client(r: &mut Report) {
    match checks::docker_client() {
        DockerClient::Missing => r.info(
            "the docker CLI is not installed (skopeo, podman and buildah use the same set-up)",
        ),
        DockerClient::Unknown(why) => r.info(format!("Docker client version unknown: {why}")),
        DockerClient::Version { major, minor, text } => match checks::judge(major, minor) {
            VersionVerdict::TooOld => r.fail(
                format!("Docker {text} cannot talk to Google's registries"),
                "upgrade Docker to 18.03 or newer",
            ),
            VersionVerdict::SlowBuilds => r.fail(
                format!("Docker {text} makes `docker build` slow with credential helpers"),
                "upgrade Docker to 18.03 or newer",
            ),
            VersionVerdict::Fine => r.pass(format!("Docker client {text}")),
        },
    }
}

fn check_token(r: &mut Report, settings: &Settings) {
    let present: Vec<String> = settings
        .token_sources
        .value
        .iter()
        .filter_map(|k| sources::probe(*k).map(|c| format!("{} ({})", k.name(), c.describe)))
        .collect();
    if present.is_empty() {
        return r.fail(
            "no token source is present",
            "run `gcloud auth login` or `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
        );
    }
    r.pass(format!("token source in use: {}", present[0]));
    match tokens::google_token(settings) {
        Ok(Outcome::Token(t)) => {
            let left = t.remaining_secs(now_secs());
            r.pass(format!(
                "a Google access token is available; it expires in {} min {} s",
                left / 60,
                left % 60
            ));
        }
        Ok(Outcome::NoSource) => r.fail("no token source could be used", "run `gcloud auth login`"),
        Err(e) => r.fail(
            format!("{e:#}"),
            "follow the fix named for each source above",
        ),
    }
}

fn check_cache_dir(r: &mut Report, settings: &Settings) {
    let Some(dir) = settings.effective_cache_dir() else {
        return r.info("token cache is off");
    };
    if !dir.exists() {
        return r.pass(format!(
            "cache directory {} will be created (0700)",
            dir.display()
        ));
    }
    match private_dir_problem(dir) {
        None => r.pass(format!("cache directory {} is private", dir.display())),
        Some(problem) => r.fail(
            format!("cache directory {}: {problem}", dir.display()),
            format!("chmod 700 {}", dir.display()),
        ),
    }
}

#[cfg(unix)]
fn private_dir_problem(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        Some(format!("owned by uid {}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("mode {:o} lets others in", meta.mode() & 0o777))
    } else {
        None
    }
}

#[cfg(not(unix))]
fn private_dir_problem(_dir: &Path) -> Option<String> {
    None
}

fn check_keyring(r: &mut Report) {
    match store::keyring_available() {
        Ok(()) => r.pass("the OS keyring is available for `docker login`"),
        Err(e) => r.info(format!(
            "{e:#} (only `docker login` needs it; minted tokens work without)"
        )),
    }
}

fn check_mirror(r: &mut Report) {
    let path = Path::new(mirror::DEFAULT_DAEMON_JSON);
    match mirror::daemon_json_has_mirror(path) {
        Ok(true) => r.pass(format!("{} lists {}", path.display(), mirror::MIRROR_URL)),
        Ok(false) => r.info(format!("{} is not set up as a registry mirror (optional: `docker-credential-gcp configure-mirror`)", mirror::MIRROR_URL)),
        Err(e) => r.info(format!("{e:#}")),
    }
    match mirror::daemon_mirrors() {
        Some(active)
            if active
                .iter()
                .any(|m| m.trim_end_matches('/') == mirror::MIRROR_URL) =>
        {
            r.pass("the Docker daemon uses the mirror (docker system info)")
        }
        Some(_) => r.info("the running Docker daemon does not use the mirror"),
        None => r.info("no Docker daemon answered; the active mirror was not checked"),
    }
}
