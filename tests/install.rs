//! `./install.sh` as a user runs it on a fresh machine: a failed build says so and installs
//! nothing.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

#[test]
fn a_failed_build_is_reported_as_a_failed_build_and_nothing_is_installed() {
    let env = Env::new();
    // A cargo that fails the way a compile error does: messages on stderr, exit 101.
    let fake = env.path("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let cargo = fake.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho 'error: could not compile' >&2\nexit 101\n",
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = env.path("prefix");

    let out = Command::new("sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--no-configure")
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", fake.display()))
        .env("HOME", env.path("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: could not compile"), "{stderr}");
    assert!(
        stderr.contains("install.sh: the build failed"),
        "says what failed, not an empty path: {stderr}"
    );
    assert!(!prefix.join("bin/docker-credential-gcp").exists());
}
