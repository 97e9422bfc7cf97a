//! The engines people run today, from the current test root (Debian unstable, made and cached
//! by `tests/roots/current.sh`; see `support::root`): Docker 28 with buildx, containerd 2,
//! podman 5, buildah and skopeo 1.22, each run by chroot in the test's private namespaces with
//! the helper's static executable. The machine's own Debian 12 engines are `daemons`' tests.
//!
//! Run them alone with `cargo test --test tests current_engines`. Each test prints the versions
//! it ran against.

use crate::support::peers::{Peer, need};
use crate::support::root::*;
use crate::support::*;

/// `program args…` in the shared root session; it must succeed. Returns stdout.
fn inside_ok(program: &str, args: &[&str]) -> String {
    let out = run_command(root_session().command(program, args, false), b"");
    assert_eq!(
        out.code, 0,
        "{program} {args:?} in the current root: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// The first `N.N…` word of a version line (`Docker version 28.5.2+dfsg4, build …` → `28.5.2+dfsg4`).
fn version_in(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            w.split('.')
                .next()
                .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
                && w.contains('.')
        })
        .unwrap_or_default()
        .to_owned()
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_current_root_holds_the_engines_of_today() {
    if !need(&[Peer::CurrentRoot, Peer::StaticBinary, Peer::Root]) {
        return;
    }
    let checks: [(&str, &[&str], u32); 10] = [
        ("dockerd", &["--version"], 28),
        ("docker", &["--version"], 28),
        ("docker", &["buildx", "version"], 0),
        ("containerd", &["--version"], 2),
        ("ctr", &["--version"], 2),
        ("podman", &["--version"], 5),
        ("buildah", &["--version"], 1),
        ("skopeo", &["--version"], 1),
        ("bazel", &["--version"], 7),
        (ROOT_HELPER, &["version"], 0),
    ];
    for (program, args, at_least) in checks {
        let said = inside_ok(program, args);
        let version = version_in(&said);
        eprintln!("current root: {program} {}: {version}", args.join(" "));
        assert!(
            major(&version) >= at_least && !version.is_empty(),
            "{program} {version}: {said}"
        );
    }
}
