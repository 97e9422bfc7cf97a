//! The gcloud CLI as a token source: `gcloud config config-helper --format=json`.
//!
//! gcloud keeps its own credentials and refreshes them, so this source inherits whatever the
//! user did with `gcloud auth login` (and `CLOUDSDK_CONFIG`). It costs about half a second per
//! call, which is why its tokens are cached like any other. The process is killed if it outlives
//! the deadline.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::Minted;
use crate::cache::{Token, now_secs};
use crate::http::excerpt;
use crate::process;
use crate::secret::Secret;

/// gcloud may print tokens without an expiry (e.g. with `auth/access_token_file`); such a token
/// is treated as expiring this many seconds from now, which keeps it cached for one minute.
const UNKNOWN_EXPIRY_SECS: u64 = crate::cache::FRESH_MARGIN_SECS + 60;

/// gcloud's configuration directory: `CLOUDSDK_CONFIG`, else gcloud's own default.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLOUDSDK_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if cfg!(windows) {
        dirs::config_dir().map(|d| d.join("gcloud"))
    } else {
        super::home().map(|h| h.join(".config").join("gcloud"))
    }
}

fn find_gcloud() -> Option<PathBuf> {
    process::find_on_path(if cfg!(windows) {
        "gcloud.cmd"
    } else {
        "gcloud"
    })
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

pub fn mint(deadline: Instant) -> Result<Minted> {
    let Some(gcloud) = find_gcloud() else {
        crate::debug!("gcloud is not installed (not on PATH); skipping it");
        return Ok(Minted::Absent);
    };
    crate::debug!("running {} config config-helper", gcloud.display());
    let mut cmd = Command::new(&gcloud);
    cmd.args(["config", "config-helper", "--format=json"]);
    let finished = process::run(cmd, deadline).map_err(|e| anyhow!("{e:#}"))?;
    if !finished.status.success() {
        bail!(
            "gcloud config config-helper failed ({}): {}",
            finished.status,
            excerpt(&finished.stderr)
        );
    }
    let stdout = finished.stdout;
    let out: HelperOutput = serde_json::from_slice(&stdout).map_err(|e| {
        anyhow!(
            "gcloud printed unexpected output (line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let secret = out
        .credential
        .access_token
        .filter(|t| !t.expose().is_empty())
        .context("gcloud has no credentials")?;
    let expires_at = match out.credential.token_expiry.as_deref() {
        Some(s) => parse_expiry(s)
            .with_context(|| format!("gcloud printed an unreadable token_expiry {s:?}"))?,
        None => now_secs() + UNKNOWN_EXPIRY_SECS,
    };
    Ok(Minted::Token(Token { secret, expires_at }))
}

/// gcloud prints `%Y-%m-%dT%H:%M:%SZ`, a subset of RFC 3339.
fn parse_expiry(s: &str) -> Option<u64> {
    super::external::parse_rfc3339(s)
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn expiry_timestamps_convert_to_unix_seconds() {
        assert_eq!(parse_expiry("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_expiry("2000-03-01T00:00:00Z"), Some(951868800));
        assert_eq!(parse_expiry("2026-11-23T08:21:04Z"), Some(1795422064));
        assert_eq!(
            parse_expiry("2024-02-29T23:59:59.123456Z"),
            Some(1709251199)
        );
    }

    #[test]
    fn malformed_expiry_timestamps_are_rejected() {
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T08:21:04",
            "2026-13-01T00:00:00Z",
            "x-1-1T0:0:0Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_expiry(bad), None, "{bad:?}");
        }
    }
}
