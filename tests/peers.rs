//! Build script (Cargo.toml `build = "tests/peers.rs"`): finds the real peer programs the
//! integration tests drive, so that outside CI a test whose peer is missing is reported as
//! *ignored* (with the reason, and counted in the run's summary) rather than as passed.
//!
//! Each group below becomes `cfg(missing_GROUP)` when one of its programs is not on PATH (or,
//! for `root`, when the build does not run as root). Tests carry
//! `#[cfg_attr(missing_GROUP, ignore = "...")]`. With `CI` set nothing is ever marked missing:
//! there every test runs, and one whose peer is absent fails.

// Tests, benchmarks and build scripts talk to the console and read the real environment;
// the house rules for the program (util::ui, util::env) do not apply here.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::path::Path;

/// Group name and the programs it needs.
const GROUPS: &[(&str, &[&str])] = &[
    ("strace", &["strace"]),
    ("docker", &["docker"]),
    ("gcloud", &["gcloud"]),
    ("keyring", &["dbus-daemon", "gnome-keyring-daemon"]),
    ("registry", &["docker-registry", "skopeo"]),
    ("secretservice", &["docker-credential-secretservice"]),
    ("podman", &["podman"]),
    ("buildah", &["buildah"]),
    ("flock", &["flock"]),
    ("dockerd", &["dockerd"]),
    ("containerd", &["containerd", "ctr"]),
    ("unshare", &["unshare", "python3", "ip"]),
    ("squid", &["squid"]),
    ("tinyproxy", &["tinyproxy"]),
    // Test names in a private mount namespace (tests/support/proxy.rs), a test CA.
    // What the daemon and proxy tests build their private namespaces, test CA and images with.
    (
        "namespaces",
        &[
            "unshare", "nsenter", "setpriv", "mount", "openssl", "busybox",
        ],
    ),
];

fn main() {
    println!("cargo::rerun-if-changed=tests/peers.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path).collect();
    // A peer installed later changes its directory: re-detect then.
    for dir in &dirs {
        if dir.is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let found = |program: &str| dirs.iter().any(|d| d.join(program).is_file());
    for (group, programs) in GROUPS {
        println!("cargo::rustc-check-cfg=cfg(missing_{group})");
        if !in_ci && !programs.iter().all(|p| found(p)) {
            println!("cargo::rustc-cfg=missing_{group}");
        }
    }
    // The static executable packaging/build-static.sh builds (install.sh and CI run it first).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let static_bins: Vec<_> = ["musl", "gnu"]
        .iter()
        .map(|libc| {
            Path::new(&manifest).join(format!(
                "target/{arch}-unknown-linux-{libc}/release/docker-credential-gcp"
            ))
        })
        .collect();
    for bin in &static_bins {
        println!("cargo::rerun-if-changed={}", bin.display());
    }
    println!("cargo::rustc-check-cfg=cfg(missing_static_binary)");
    if !in_ci && !static_bins.iter().any(|b| b.is_file()) {
        println!("cargo::rustc-cfg=missing_static_binary");
    }
    println!("cargo::rustc-check-cfg=cfg(missing_root)");
    if !in_ci && !is_root() {
        println!("cargo::rustc-cfg=missing_root");
    }
}

/// Whether the build runs as root (the Uid line of /proc/self/status on Linux).
fn is_root() -> bool {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}
