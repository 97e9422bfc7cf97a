//! Facts about the user's Docker set-up shared by `configure-docker`, `configure-mirror` and
//! `doctor`: this helper's credHelpers name and whether docker can find it, the docker client
//! program and its version, the docker config path, what the running daemon reports, and the
//! dockerd processes on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::{self, BaseDirs, Os};
use crate::util::{env, process, text};

/// The credHelpers value that selects this binary: its file name without `docker-credential-`
/// (and `.exe`). The name it was invoked as counts (a symlink may rename it).
pub(crate) fn helper_suffix() -> String {
    let invoked = std::env::args_os().next().map(PathBuf::from);
    let name = invoked
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    platform::helper_suffix(Os::CURRENT, &name).unwrap_or_else(|| "gcp".to_owned())
}

/// A credHelpers value as docker uses it: the name of a helper (docker runs
/// `docker-credential-NAME`), or, for anything else (a number, null, an object, `""`), the
/// value as the file shows it. docker runs no helper for those (a number or an object it
/// skips, warning about the whole file on every command).
pub(crate) fn helper_name(value: &serde_json::Value) -> Result<&str, String> {
    match value {
        serde_json::Value::String(name) if !name.is_empty() => Ok(name),
        other => Err(text::excerpt(other.to_string().as_bytes())),
    }
}

/// The helper program docker will look for, and where it is on PATH.
pub(crate) fn helper_on_path(suffix: &str) -> (String, Option<PathBuf>) {
    let program = platform::program_file(Os::CURRENT, &format!("docker-credential-{suffix}"));
    let found = process::find_on_path(&program);
    (program, found)
}

/// The docker CLI on PATH, if any (one lookup for every command that runs it).
pub(crate) fn docker_program() -> Option<PathBuf> {
    process::find_on_path(&platform::program_file(Os::CURRENT, "docker"))
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, unless given explicitly.
pub(crate) fn docker_config_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    BaseDirs::current()
        .docker_config(env::var_os("DOCKER_CONFIG"))
        .ok_or_else(|| anyhow!("cannot find the home directory; pass --config PATH"))
}

/// The registries docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`)
/// maps to this helper in `credHelpers`; none when the file is missing or unreadable (`list`
/// must answer whatever the file holds).
pub(crate) fn hosts_mapped_here() -> Vec<String> {
    const MAX_CONFIG: u64 = 4 * 1024 * 1024;
    let Ok(path) = docker_config_path(None) else {
        return Vec::new();
    };
    let Ok(Some(bytes)) = files::read_bounded(&path, MAX_CONFIG, Symlinks::Follow, Trust::Anyone)
    else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(root)) = serde_json::from_slice(&bytes) else {
        return Vec::new();
    };
    let suffix = helper_suffix();
    match root.get("credHelpers") {
        Some(serde_json::Value::Object(helpers)) => helpers
            .iter()
            .filter(|(_, helper)| helper.as_str() == Some(suffix.as_str()))
            .map(|(host, _)| host.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DockerClient {
    Missing,
    /// docker ran but its version could not be read (the text says why).
    Unknown(String),
    Version {
        major: u32,
        minor: u32,
        text: String,
    },
}

/// Asks the docker CLI for its client version (no daemon needed).
pub(crate) fn docker_client() -> DockerClient {
    let Some(docker) = docker_program() else {
        return DockerClient::Missing;
    };
    let mut cmd = Command::new(docker);
    cmd.args(["version", "--format", "{{.Client.Version}}"]);
    // Without a daemon docker still prints the client version, then fails; only stdout matters.
    match process::run(cmd, Instant::now() + Duration::from_secs(10)) {
        Ok(out) => parse_docker_version(&out.stdout, &out.stderr),
        Err(e) => DockerClient::Unknown(format!("docker {e}")),
    }
}

/// Reads `docker version`'s output. When it printed no version, what it said on stderr is
/// the reason (e.g. a `currentContext` that no longer exists).
fn parse_docker_version(stdout: &[u8], stderr: &[u8]) -> DockerClient {
    let stdout = String::from_utf8_lossy(stdout);
    let first = stdout.trim().lines().next().unwrap_or("").trim();
    if first.is_empty() && !stderr.trim_ascii().is_empty() {
        return DockerClient::Unknown(format!(
            "`docker version` failed: {}",
            text::excerpt(stderr.trim_ascii())
        ));
    }
    let mut parts = first.split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.parse().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => DockerClient::Version {
            major,
            minor,
            text: first.to_owned(),
        },
        _ => DockerClient::Unknown(format!("docker printed {first:?} as its version")),
    }
}

/// What the Docker client version means for this helper.
pub(crate) enum VersionVerdict {
    /// Docker < 1.6 cannot talk to Google's registries at all.
    TooOld,
    /// Docker < 18.03 slows `docker build` badly when credential helpers are configured.
    SlowBuilds,
    Fine,
}

pub(crate) fn judge(major: u32, minor: u32) -> VersionVerdict {
    if (major, minor) < (1, 6) {
        VersionVerdict::TooOld
    } else if (major, minor) < (18, 3) {
        VersionVerdict::SlowBuilds
    } else {
        VersionVerdict::Fine
    }
}

/// The registry mirrors the running Docker daemon reports, or `None` if no daemon answers.
pub(crate) fn daemon_mirrors() -> Option<Vec<String>> {
    let mut cmd = Command::new(docker_program()?);
    cmd.args([
        "system",
        "info",
        "--format",
        "{{json .RegistryConfig.Mirrors}}",
    ]);
    let out = process::run(cmd, Instant::now() + Duration::from_secs(10)).ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Option<Vec<String>>>(&out.stdout)
        .ok()
        .map(Option::unwrap_or_default)
}

/// The dockerd processes running on this machine (Linux `/proc`; nothing elsewhere): process
/// id and command line. Processes that end meanwhile, or whose command line cannot be read,
/// are left out.
pub(crate) fn running_dockerds() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let read = |path: PathBuf| {
        files::read_bounded(&path, 256 * 1024, Symlinks::Follow, Trust::Anyone)
            .ok()
            .flatten()
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if read(entry.path().join("comm")).as_deref() != Some(b"dockerd\n") {
            continue;
        }
        let Some(cmdline) = read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push((pid, argv));
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_versions_are_parsed_and_judged() {
        assert_eq!(
            parse_docker_version(b"28.2.2\n", b""),
            DockerClient::Version {
                major: 28,
                minor: 2,
                text: "28.2.2".into()
            }
        );
        assert!(matches!(
            parse_docker_version(b"17.12.1-ce", b""),
            DockerClient::Version {
                major: 17,
                minor: 12,
                ..
            }
        ));
        assert!(matches!(
            parse_docker_version(b"", b""),
            DockerClient::Unknown(_)
        ));
        assert_eq!(
            parse_docker_version(b"", b"Failed to initialize: context \"colima\": context not found\n"),
            DockerClient::Unknown(
                "`docker version` failed: Failed to initialize: context \"colima\": context not found"
                    .into()
            ),
            "docker's own reason, not an empty version"
        );
        assert!(matches!(judge(1, 5), VersionVerdict::TooOld));
        assert!(matches!(judge(1, 6), VersionVerdict::SlowBuilds));
        assert!(matches!(judge(17, 12), VersionVerdict::SlowBuilds));
        assert!(matches!(judge(18, 3), VersionVerdict::Fine));
        assert!(matches!(judge(28, 2), VersionVerdict::Fine));
    }
}
