//! The real peer programs the integration tests drive (docker, skopeo, gnome-keyring, ...),
//! checked when a test runs, not when it is built: the package has no build script.
//!
//! A test that needs peers starts with `if !need(&[Peer::Registry]) { return; }`. When one is
//! missing, outside CI the test says so on the console (past libtest's capture, so the
//! message shows in a passing run) and returns; in CI (`CI` set) it fails, because `.ci/run`
//! must have installed everything.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A group of programs (or a condition) that some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Strace,
    Docker,
    Gcloud,
    /// A headless Secret Service.
    Keyring,
    /// The distribution registry and skopeo to fill it.
    Registry,
    SecretService,
    Podman,
    Buildah,
    Flock,
    Dockerd,
    Containerd,
    Unshare,
    Squid,
    Tinyproxy,
    /// What the daemon and proxy tests build private namespaces, a test CA and images with.
    Namespaces,
    /// Running as root (daemons, podman storage, chown).
    Root,
    /// The static executable `packaging/build-static.sh` builds (`./install.sh` and CI run it).
    StaticBinary,
    /// What makes and enters the current test root (`tests/roots/current.sh`, support/root.rs):
    /// mmdebstrap, and the namespace and chroot tools.
    CurrentRoot,
}

impl Peer {
    fn programs(self) -> &'static [&'static str] {
        match self {
            Peer::Strace => &["strace"],
            Peer::Docker => &["docker"],
            Peer::Gcloud => &["gcloud"],
            Peer::Keyring => &["dbus-daemon", "gnome-keyring-daemon"],
            Peer::Registry => &["docker-registry", "skopeo"],
            Peer::SecretService => &["docker-credential-secretservice"],
            Peer::Podman => &["podman"],
            Peer::Buildah => &["buildah"],
            Peer::Flock => &["flock"],
            Peer::Dockerd => &["dockerd"],
            Peer::Containerd => &["containerd", "ctr"],
            Peer::Unshare => &["unshare", "python3", "ip"],
            Peer::Squid => &["squid"],
            Peer::Tinyproxy => &["tinyproxy"],
            Peer::Namespaces => &[
                "unshare", "nsenter", "setpriv", "mount", "openssl", "busybox",
            ],
            Peer::CurrentRoot => &[
                "mmdebstrap",
                "unshare",
                "nsenter",
                "setpriv",
                "mount",
                "chroot",
                "flock",
            ],
            Peer::Root | Peer::StaticBinary => &[],
        }
    }

    /// What is missing for this peer, if anything.
    fn missing(self) -> Option<String> {
        match self {
            Peer::Root => (!is_root()).then(|| "root".to_owned()),
            Peer::StaticBinary => static_binary()
                .is_none()
                .then(|| "the static executable (run packaging/build-static.sh)".to_owned()),
            _ => {
                let absent: Vec<&str> = self
                    .programs()
                    .iter()
                    .copied()
                    .filter(|p| !on_path(p))
                    .collect();
                (!absent.is_empty()).then(|| absent.join(", "))
            }
        }
    }
}

/// Whether every peer in `peers` is here. Outside CI a missing one is reported on the console
/// and the caller returns (the test is skipped); in CI it fails the test.
#[must_use]
pub(crate) fn need(peers: &[Peer]) -> bool {
    let missing: Vec<String> = peers.iter().filter_map(|p| p.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join("; ");
    assert!(!in_ci(), "this test needs {what}: .ci/run must install it");
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    // Straight to the stream: libtest captures only the print macros, and a skip must show.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {what}");
    false
}

/// Whether the tests run in CI, where a missing peer is a failure.
pub(crate) fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(unix)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Nothing here needs an administrator on Windows; the tests that need root are Unix-only.
#[cfg(windows)]
pub(crate) fn is_root() -> bool {
    false
}

/// packaging/build-static.sh's output for this machine, if it has been built.
pub(crate) fn static_binary() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let arch = std::env::consts::ARCH;
    ["musl", "gnu"]
        .iter()
        .map(|libc| {
            target.join(format!(
                "{arch}-unknown-linux-{libc}/release/docker-credential-gcp"
            ))
        })
        .find(|p| p.is_file())
}
