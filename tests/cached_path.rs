//! Regression guard for the cached `get`: it must stay a straight line of a few file opens, with
//! no threads (async runtime), no subprocess, no sockets (network, D-Bus keyring) and no TLS
//! certificate loading. Counted with strace, which does not depend on how fast the machine is.

use crate::support::peers::{Peer, need};
use crate::support::*;

/// Runs `get` under strace and returns the trace lines.
fn traced_get(env: &Env, host: &str) -> (Output, Vec<String>) {
    let trace = env.path("trace.txt");
    let mut cmd = env.program(
        "strace",
        &["-f", "-qq", "-o", &trace.display().to_string(), BIN, "get"],
    );
    cmd.env_remove("LD_PRELOAD");
    let out = run_command(cmd, host.as_bytes());
    let text = std::fs::read_to_string(&trace).unwrap();
    (out, text.lines().map(str::to_owned).collect())
}

fn calls<'a>(trace: &'a [String], name: &str) -> Vec<&'a String> {
    let needle = format!(" {name}(");
    trace.iter().filter(|l| l.contains(&needle)).collect()
}

#[test]
fn a_cached_get_spawns_nothing_connects_nowhere_and_opens_three_files() {
    if !need(&[Peer::Strace]) {
        return;
    }
    require("strace");
    let md = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", md.host());
    let warm = env.get("gcr.io");
    assert_eq!(creds(&warm).2, "ya29.metadata-1");

    let (out, trace) = traced_get(&env, "gcr.io");
    assert_eq!(creds(&out).2, "ya29.metadata-1", "served from the cache");
    assert_eq!(md.count(), 1, "no second token request");

    for forbidden in [
        "clone",
        "clone3",
        "fork",
        "vfork",
        "socket",
        "connect",
        "epoll_create1",
    ] {
        assert!(
            calls(&trace, forbidden).is_empty(),
            "{forbidden} on the cached path: {:?}",
            calls(&trace, forbidden)
        );
    }
    assert_eq!(
        calls(&trace, "execve").len(),
        1,
        "only the helper itself is executed"
    );
    let home = env.home.path().display().to_string();
    let ours: Vec<&String> = calls(&trace, "openat")
        .into_iter()
        .filter(|l| l.contains(&home))
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "config file, stored-hosts index, cache entry: {ours:#?}"
    );
    assert!(ours[0].contains("docker-credential-gcp/config.json"));
    assert!(ours[1].contains("stored-hosts.json"));
    assert!(ours[2].contains(&format!("{CACHE_DIR}/token-")));
    let certs: Vec<&String> = trace
        .iter()
        .filter(|l| l.contains("/etc/ssl") || l.contains("certs"))
        .collect();
    assert!(certs.is_empty(), "no TLS roots loaded: {certs:?}");
    assert!(
        trace.len() < 120,
        "the cached path stays short: {} syscalls",
        trace.len()
    );
}

#[test]
fn a_non_google_host_touches_no_cache_and_no_token_source() {
    if !need(&[Peer::Strace]) {
        return;
    }
    require("strace");
    let md = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", md.host());
    let (out, trace) = traced_get(&env, "index.docker.io");
    assert_eq!(out.stdout, NOT_FOUND);
    assert!(calls(&trace, "socket").is_empty());
    assert!(
        !trace.iter().any(|l| l.contains(CACHE_DIR)),
        "the cache is not read"
    );
    assert_eq!(md.count(), 0);
}
