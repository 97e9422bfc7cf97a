//! Facts about the user's set-up shared by `configure-docker` and `doctor`: the helper's
//! credHelpers name, whether it is on PATH, the Docker client version, the docker config path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::process;

/// The credHelpers value that selects this binary: its file name without `docker-credential-`
/// and `.exe`. The name it was invoked as counts (a symlink may rename it).
pub fn helper_suffix() -> String {
    let invoked = std::env::args_os().next().map(PathBuf::from);
    let name = invoked
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    suffix_of(&name).unwrap_or_else(|| "gcp".to_owned())
}

fn suffix_of(file_name: &str) -> Option<String> {
    let name = file_name.strip_suffix(".exe").unwrap_or(file_name);
    name.strip_prefix("docker-credential-")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The helper program docker will look for, and where it is on PATH.
pub fn helper_on_path(suffix: &str) -> (String, Option<PathBuf>) {
    let program = format!(
        "docker-credential-{suffix}{}",
        if cfg!(windows) { ".exe" } else { "" }
    );
    let found = process::find_on_path(&program);
    (program, found)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, unless given explicitly.
pub fn docker_config_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    dirs::home_dir()
        .map(|h| h.join(".docker").join("config.json"))
        .ok_or_else(|| anyhow!("cannot find the home directory; pass --config PATH"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum DockerClient {
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
pub fn docker_client() -> DockerClient {
    let Some(docker) = process::find_on_path(if cfg!(windows) {
        "docker.exe"
    } else {
        "docker"
    }) else {
        return DockerClient::Missing;
    };
    let mut cmd = Command::new(docker);
    cmd.args(["version", "--format", "{{.Client.Version}}"]);
    // Without a daemon docker still prints the client version, then fails; only stdout matters.
    match process::run(cmd, Instant::now() + Duration::from_secs(10)) {
        Ok(out) => parse_docker_version(String::from_utf8_lossy(&out.stdout).trim()),
        Err(e) => DockerClient::Unknown(format!("{e:#}")),
    }
}

fn parse_docker_version(text: &str) -> DockerClient {
    let first = text.lines().next().unwrap_or("").trim();
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
pub enum VersionVerdict {
    /// Docker < 1.6 cannot talk to Google's registries at all.
    TooOld,
    /// Docker < 18.03 slows `docker build` badly when credential helpers are configured.
    SlowBuilds,
    Fine,
}

pub fn judge(major: u32, minor: u32) -> VersionVerdict {
    if (major, minor) < (1, 6) {
        VersionVerdict::TooOld
    } else if (major, minor) < (18, 3) {
        VersionVerdict::SlowBuilds
    } else {
        VersionVerdict::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_comes_from_the_binary_name() {
        assert_eq!(suffix_of("docker-credential-gcp").as_deref(), Some("gcp"));
        assert_eq!(
            suffix_of("docker-credential-gcr.exe").as_deref(),
            Some("gcr")
        );
        assert_eq!(suffix_of("docker-credential-"), None);
        assert_eq!(suffix_of("helper"), None);
    }

    #[test]
    fn docker_versions_are_parsed_and_judged() {
        assert_eq!(
            parse_docker_version("28.2.2\n"),
            DockerClient::Version {
                major: 28,
                minor: 2,
                text: "28.2.2".into()
            }
        );
        assert!(matches!(
            parse_docker_version("17.12.1-ce"),
            DockerClient::Version {
                major: 17,
                minor: 12,
                ..
            }
        ));
        assert!(matches!(parse_docker_version(""), DockerClient::Unknown(_)));
        assert!(matches!(judge(1, 5), VersionVerdict::TooOld));
        assert!(matches!(judge(1, 6), VersionVerdict::SlowBuilds));
        assert!(matches!(judge(17, 12), VersionVerdict::SlowBuilds));
        assert!(matches!(judge(18, 3), VersionVerdict::Fine));
        assert!(matches!(judge(28, 2), VersionVerdict::Fine));
    }
}
