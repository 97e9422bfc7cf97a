//! The gcloud CLI as a token source: `gcloud config config-helper --format=json`.
//!
//! gcloud keeps its own credentials and refreshes them, so this source inherits whatever the
//! user did with `gcloud auth login`. It costs about half a second per call, which is why its
//! tokens are cached like any other, under a key made of every input that changes gcloud's
//! answer (see [`identity`]). The process is killed if it outlives the deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;

use super::access::{FRESH_MARGIN_SECS, Token, now_secs};
use super::failure::{Failure, FailureKind};
use super::oauth::parse_rfc3339;
use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::{self, BaseDirs, Os};
use crate::util::process;
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

/// gcloud may print tokens without an expiry (e.g. with `auth/access_token_file`); such a token
/// is treated as expiring this many seconds from now, which keeps it cached for one minute.
const UNKNOWN_EXPIRY_SECS: u64 = FRESH_MARGIN_SECS + 60;
const MAX_CONFIG: u64 = 64 * 1024;

/// gcloud's configuration directory: `CLOUDSDK_CONFIG`, else gcloud's own default.
pub(crate) fn config_dir() -> Option<PathBuf> {
    if let Some(p) = env::var_os("CLOUDSDK_CONFIG") {
        return Some(PathBuf::from(p));
    }
    BaseDirs::current().gcloud_dir(Os::CURRENT)
}

/// Everything that decides which identity gcloud answers for, as a cache key part: the
/// configuration directory and its sentinel (gcloud touches it when the account or
/// configuration changes), the active configuration's file and the access-token file it may
/// name, and the `CLOUDSDK_*` variables that override auth, account, impersonation and the
/// active configuration (with the files they name). Costs a few `stat`s and two small reads.
pub(crate) fn identity(dir: &Path) -> String {
    let mut parts = vec![
        dir.display().to_string(),
        files::version(&dir.join("config_sentinel")),
    ];
    let (active, config) = active_configuration(dir);
    parts.push(format!("active={active}"));
    parts.push(files::version(&config));
    if let Some(file) =
        read_small(&config).and_then(|text| ini_value(&text, "auth", "access_token_file"))
    {
        parts.push(format!(
            "token_file={file}:{}",
            files::version(Path::new(&file))
        ));
    }
    for (name, value) in identity_variables() {
        let named_file = name.ends_with("_FILE") || name.ends_with("_OVERRIDE");
        let version = if named_file {
            files::version(Path::new(&value))
        } else {
            String::new()
        };
        parts.push(format!("{name}={value}:{version}"));
    }
    parts.join("|")
}

/// The active configuration's name and file: `CLOUDSDK_ACTIVE_CONFIG_NAME`, else the name in
/// `active_config`, else `default`.
fn active_configuration(dir: &Path) -> (String, PathBuf) {
    let active = env::var("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| read_small(&dir.join("active_config")).map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let config = dir.join("configurations").join(format!("config_{active}"));
    (active, config)
}

/// gcloud's `core/project` as gcloud itself resolves it, without running gcloud:
/// `CLOUDSDK_CORE_PROJECT`, else `project` in `[core]` of the active configuration. Returns
/// the project and where it was found, for messages.
pub(crate) fn core_project() -> Option<(String, String)> {
    if let Some(p) = env::var("CLOUDSDK_CORE_PROJECT").filter(|p| !p.trim().is_empty()) {
        return Some((p.trim().to_owned(), "CLOUDSDK_CORE_PROJECT".to_owned()));
    }
    let dir = config_dir()?;
    let (active, config) = active_configuration(&dir);
    let project = ini_value(&read_small(&config)?, "core", "project")?;
    Some((
        project,
        format!(
            "gcloud's core/project in configuration {active:?} at {}",
            config.display()
        ),
    ))
}

/// The variables that change which credentials gcloud uses.
fn identity_variables() -> Vec<(String, String)> {
    let mut vars = env::with_prefix("CLOUDSDK_AUTH_");
    for name in ["CLOUDSDK_CORE_ACCOUNT", "CLOUDSDK_ACTIVE_CONFIG_NAME"] {
        if let Some(v) = env::var(name) {
            vars.push((name.to_owned(), v));
        }
    }
    vars
}

fn read_small(path: &Path) -> Option<String> {
    let bytes = files::read_bounded(path, MAX_CONFIG, Symlinks::Follow, Trust::Anyone).ok()??;
    String::from_utf8(bytes).ok()
}

/// `key` in `[section]` of an INI file as gcloud writes its configurations.
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
        } else if current == section
            && let Some((k, v)) = line.split_once(['=', ':'])
            && k.trim() == key
        {
            return Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }
    None
}

fn find_gcloud() -> Option<PathBuf> {
    process::find_on_path(&platform::program_file(Os::CURRENT, "gcloud"))
}

#[derive(Deserialize)]
struct HelperOutput {
    credential: Credential,
}

#[derive(Deserialize)]
struct Credential {
    access_token: Option<Secret<String>>,
    token_expiry: Option<String>,
}

/// A token from gcloud, or `None` when gcloud is not installed.
pub(crate) fn mint(deadline: Instant) -> Result<Option<Token>> {
    let Some(gcloud) = find_gcloud() else {
        log::debug!("gcloud is not installed (not on PATH); skipping it");
        return Ok(None);
    };
    if let Some(dir) = config_dir()
        && !may_have_credentials(&dir)
    {
        // gcloud would say so after a second or two; it is known without running it.
        return Err(Failure::new(
            FailureKind::NoCredentials,
            "gcloud has no active account (`gcloud auth login` was never run in this configuration)",
        )
        .into());
    }
    log::debug!("running {} config config-helper", gcloud.display());
    let mut cmd = Command::new(&gcloud);
    cmd.args(["config", "config-helper", "--format=json"]);
    let finished = process::run(cmd, deadline).map_err(|e| {
        let kind = match e {
            process::ProcessError::TimedOut => FailureKind::Unreachable,
            _ => FailureKind::Broken,
        };
        Failure::new(kind, format!("gcloud {e}"))
    })?;
    if !finished.status.success() {
        return Err(Failure::new(
            verdict(&finished.stderr),
            format!(
                "gcloud config config-helper failed ({}): {}",
                finished.status,
                excerpt(&finished.stderr)
            ),
        )
        .into());
    }
    let out: HelperOutput = serde_json::from_slice(&finished.stdout)
        .map_err(|e| anyhow!("gcloud printed unexpected output ({})", json_error(&e)))?;
    let secret = out
        .credential
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::new(FailureKind::NoCredentials, "gcloud has no credentials"))?;
    let now = now_secs();
    let expires_at = match out.credential.token_expiry.as_deref() {
        // gcloud prints `%Y-%m-%dT%H:%M:%SZ`, a subset of RFC 3339.
        Some(s) => parse_rfc3339(s).with_context(|| {
            format!(
                "gcloud printed an unreadable token_expiry {:?}",
                excerpt(s.as_bytes())
            )
        })?,
        None => now.saturating_add(UNKNOWN_EXPIRY_SECS) as i64,
    };
    Ok(Some(
        Token::issued(secret, expires_at, now).context("gcloud config config-helper")?,
    ))
}

/// Whether gcloud could have credentials in configuration directory `dir`: an account (the
/// active configuration's `core/account` or `CLOUDSDK_CORE_ACCOUNT`), an access-token or
/// credential file, any `CLOUDSDK_AUTH_*` override, or a GCE/GKE machine (where gcloud uses
/// the metadata server's account without a login). Files and environment only.
fn may_have_credentials(dir: &Path) -> bool {
    if env::var("CLOUDSDK_CORE_ACCOUNT").is_some_and(|a| !a.trim().is_empty())
        || !env::with_prefix("CLOUDSDK_AUTH_").is_empty()
        || super::metadata::locate().is_some()
    {
        return true;
    }
    let (_, config) = active_configuration(dir);
    let Some(text) = read_small(&config) else {
        return false;
    };
    ini_value(&text, "core", "account").is_some()
        || ini_value(&text, "auth", "access_token_file").is_some()
        || ini_value(&text, "auth", "credential_file_override").is_some()
}

/// What gcloud's failure means, read from what it printed. gcloud's exit status is 1 for
/// every failure, so its own words are the only signal; this is the one place they are read,
/// at the boundary with gcloud, and turned into a kind.
fn verdict(stderr: &[u8]) -> FailureKind {
    let text = String::from_utf8_lossy(stderr);
    let says = |phrase: &str| text.contains(phrase);
    if says("do not currently have an active account") {
        FailureKind::NoCredentials
    } else if says("Unable to find the server")
        || says("Failed to establish a new connection")
        || says("timed out")
        || says("Temporary failure in name resolution")
    {
        FailureKind::Unreachable
    } else if says("gcloud auth login")
        || says("invalid_grant")
        || says("invalid_rapt")
        || says("Reauthentication")
        || says("does not have any valid credentials")
    {
        FailureKind::SignInNeeded
    } else {
        FailureKind::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_gcloud_printed_decides_the_kind_of_its_failure() {
        let cases: [(&str, FailureKind); 5] = [
            (
                "ERROR: (gcloud.config.config-helper) You do not currently have an active account selected.\nPlease run:\n\n  $ gcloud auth login\n",
                FailureKind::NoCredentials,
            ),
            (
                "ERROR: (gcloud.config.config-helper) Your current active account [a@b.c] does not have any valid credentials\nPlease run:\n\n  $ gcloud auth login\n",
                FailureKind::SignInNeeded,
            ),
            (
                "ERROR: (gcloud.config.config-helper) There was a problem refreshing your current auth tokens: ('invalid_grant: Bad Request', {'error': 'invalid_grant'})\nPlease run:\n\n  $ gcloud auth login\n",
                FailureKind::SignInNeeded,
            ),
            (
                "ERROR: (gcloud.config.config-helper) There was a problem refreshing your current auth tokens: Unable to find the server at oauth2.googleapis.com\nPlease run:\n\n  $ gcloud auth login\n",
                FailureKind::Unreachable,
            ),
            (
                "Traceback (most recent call last):\n  ...",
                FailureKind::Broken,
            ),
        ];
        for (stderr, kind) in cases {
            assert_eq!(verdict(stderr.as_bytes()), kind, "{stderr}");
        }
    }

    #[test]
    fn a_configuration_without_an_account_cannot_have_credentials() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("configurations")).unwrap();
        let with_env = !env::with_prefix("CLOUDSDK_AUTH_").is_empty()
            || env::var("CLOUDSDK_CORE_ACCOUNT").is_some()
            || super::super::metadata::locate().is_some();
        if with_env {
            return; // the test's own environment decides; the integration tests cover it
        }
        assert!(!may_have_credentials(dir));
        std::fs::write(
            dir.join("configurations/config_default"),
            "[core]\nproject = p\n",
        )
        .unwrap();
        assert!(!may_have_credentials(dir));
        std::fs::write(
            dir.join("configurations/config_default"),
            "[core]\naccount = a@b.c\n",
        )
        .unwrap();
        assert!(may_have_credentials(dir));
        std::fs::write(dir.join("active_config"), "other").unwrap();
        assert!(
            !may_have_credentials(dir),
            "the account is in another configuration"
        );
        std::fs::write(
            dir.join("configurations/config_other"),
            "[auth]\naccess_token_file = /t\n",
        )
        .unwrap();
        assert!(may_have_credentials(dir));
    }

    #[test]
    fn ini_values_are_found_in_their_section() {
        let text = "[core]\naccount = a@b\n\n[auth]\naccess_token_file = /t/token\nother=x\n";
        assert_eq!(
            ini_value(text, "auth", "access_token_file").as_deref(),
            Some("/t/token")
        );
        assert_eq!(ini_value(text, "core", "account").as_deref(), Some("a@b"));
        assert_eq!(ini_value(text, "core", "access_token_file"), None);
        assert_eq!(ini_value("", "auth", "x"), None);
    }

    #[test]
    fn the_core_project_is_read_from_the_named_configuration() {
        let text = "[core]\naccount = a@b\nproject = my-proj\n[compute]\nregion = x\n";
        assert_eq!(
            ini_value(text, "core", "project").as_deref(),
            Some("my-proj")
        );
        assert_eq!(ini_value("[core]\nproject =\n", "core", "project"), None);
        assert_eq!(
            ini_value("[compute]\nproject = p\n", "core", "project"),
            None
        );
    }

    #[test]
    fn the_identity_changes_with_the_active_configuration_and_its_token_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("configurations")).unwrap();
        let before = identity(dir);
        std::fs::write(dir.join("active_config"), "work").unwrap();
        let switched = identity(dir);
        assert_ne!(before, switched);
        let token = dir.join("token");
        std::fs::write(&token, "a").unwrap();
        std::fs::write(
            dir.join("configurations/config_work"),
            format!("[auth]\naccess_token_file = {}\n", token.display()),
        )
        .unwrap();
        let with_file = identity(dir);
        assert_ne!(switched, with_file);
        std::fs::write(&token, "bb").unwrap();
        assert_ne!(
            with_file,
            identity(dir),
            "a rewritten token file is a new identity"
        );
    }
}
