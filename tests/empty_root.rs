//! The static executable users install works in an empty root: no libc, no /etc/ssl, only
//! /etc/hosts (as in scratch or distroless-static images). `get` mints through the metadata
//! server and through a service account key, with names resolved from /etc/hosts, and falls
//! back to the built-in root certificates when the OS offers none.
//!
//! The executable is the one `packaging/build-static.sh` builds (`./install.sh` and CI run it
//! first); rebuild it after changing the code.

use crate::support::peers::{self, Peer, need};
use std::path::{Path, PathBuf};

use crate::support::*;

/// packaging/build-static.sh's output for this machine.
fn static_binary() -> PathBuf {
    peers::static_binary()
        .expect("the static executable: run packaging/build-static.sh (./install.sh does) first")
}

/// A root with the executable, /etc/hosts and an empty home, nothing else.
fn empty_root(env: &Env) -> PathBuf {
    let root = env.path("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost metadata.test oauth2.test\n",
    )
    .unwrap();
    std::fs::copy(static_binary(), root.join("docker-credential-gcp")).unwrap();
    root
}

fn chroot_get(root: &Path, vars: &[(&str, String)]) -> Output {
    let chroot = SYSTEM_PATH
        .split(':')
        .map(|d| Path::new(d).join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils)");
    let mut cmd = std::process::Command::new(chroot);
    cmd.args([&root.display().to_string(), "/docker-credential-gcp", "get"])
        .env_clear()
        .env("HOME", "/home")
        .env("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_command(cmd, b"gcr.io")
}

#[test]
fn the_static_executable_mints_from_the_metadata_server_in_an_empty_root() {
    if !need(&[Peer::Root, Peer::StaticBinary]) {
        return;
    }
    require_root("chroot");
    let output = std::process::Command::new("file")
        .arg(static_binary())
        .output();
    if let Ok(out) = output {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("static"), "not a static executable: {text}");
    }
    let md = metadata_server(3600);
    let env = Env::new();
    let root = empty_root(&env);
    let port = md.host().rsplit(':').next().unwrap().to_owned();
    let out = chroot_get(
        &root,
        &[
            ("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata".into()),
            ("GCE_METADATA_HOST", format!("metadata.test:{port}")),
        ],
    );
    assert_eq!(creds(&out).2, "ya29.metadata-1", "{}", out.stderr);
    assert_eq!(md.count(), 1);
    assert!(
        root.join("home/.cache/docker-credential-gcp").is_dir(),
        "the cache was written"
    );
}

#[test]
fn the_static_executable_mints_with_a_key_file_in_an_empty_root() {
    if !need(&[Peer::Root, Peer::StaticBinary]) {
        return;
    }
    require_root("chroot");
    let endpoint = token_endpoint(3600);
    let env = Env::new();
    let root = empty_root(&env);
    let port = endpoint.host().rsplit(':').next().unwrap().to_owned();
    std::fs::write(
        root.join("home/key.json"),
        service_account_json(&format!("http://localhost:{port}/token")),
    )
    .unwrap();
    let out = chroot_get(
        &root,
        &[
            ("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc".into()),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/home/key.json".into()),
        ],
    );
    assert_eq!(creds(&out).2, "ya29.test-1", "{}", out.stderr);
    assert!(
        out.stderr.contains("no OS root certificates") && out.stderr.contains("using Mozilla's"),
        "with no OS roots the built-in set is used, with a debug line: {}",
        out.stderr
    );
}
