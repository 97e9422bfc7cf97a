//! The gcloud token source with the real gcloud CLI, offline: its `auth/access_token_file`
//! property makes `gcloud config config-helper` print a token without any network.

use crate::support::peers::{Peer, need};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::*;

fn gcloud_env() -> Env {
    require("gcloud");
    let mut env = Env::new();
    let config = env.path("gcloud-config");
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env
}

fn gcloud_set(env: &Env, args: &[&str]) {
    let out = run_command(env.program("gcloud", args), b"");
    assert_eq!(out.code, 0, "gcloud {args:?}: {}", out.stderr);
}

#[test]
fn gcloud_tokens_are_used_and_cached_until_its_configuration_changes() {
    if !need(&[Peer::Gcloud]) {
        return;
    }
    let env = gcloud_env();
    let token_file = env.path("access-token");
    std::fs::write(&token_file, "ya29.from-gcloud-1\n").unwrap();
    gcloud_set(
        &env,
        &[
            "config",
            "set",
            "auth/access_token_file",
            &token_file.display().to_string(),
        ],
    );

    let (_, user, secret) = creds(&env.get("gcr.io"));
    assert_eq!(
        (user.as_str(), secret.as_str()),
        ("oauth2accesstoken", "ya29.from-gcloud-1")
    );

    // The same configuration: the cached token is served without running gcloud again.
    assert_eq!(creds(&env.get("us-docker.pkg.dev")).2, "ya29.from-gcloud-1");

    // The token file the active configuration names is part of gcloud's identity: a
    // rewritten file is seen at once.
    std::fs::write(&token_file, "ya29.from-gcloud-2\n").unwrap();
    assert_eq!(creds(&env.get("us-docker.pkg.dev")).2, "ya29.from-gcloud-2");

    // Any gcloud configuration change touches its sentinel file, a new identity.
    std::fs::write(&token_file, "ya29.from-gcloud-3\n").unwrap();
    gcloud_set(&env, &["config", "set", "core/project", "another-project"]);
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.from-gcloud-3");
}

/// gcloud installed but never logged in (a common laptop; CI images that ship the SDK):
/// "not found" at once, so public images pull, with the fix on stderr.
#[test]
fn gcloud_never_logged_in_answers_not_found_at_once_with_the_fix() {
    if !need(&[Peer::Gcloud]) {
        return;
    }
    let env = gcloud_env();
    std::fs::create_dir_all(env.path("gcloud-config")).unwrap();
    let started = Instant::now();
    let out = env.get("gcr.io");
    let took = started.elapsed();
    assert_not_found(&out);
    assert!(
        out.stderr.contains("gcloud has no active account")
            && out.stderr.contains("run `gcloud auth login`")
            && out.stderr.contains("tried anonymously"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    // gcloud itself takes over a second to say the same; it is not run.
    assert!(took < Duration::from_millis(800), "{took:?}");
}

/// Logged in once, credentials gone (`gcloud auth revoke`, or a configured account whose
/// refresh token was removed): gcloud's own verdict is read, and the answer is "not found".
#[test]
fn gcloud_with_an_account_but_no_credentials_answers_not_found() {
    if !need(&[Peer::Gcloud]) {
        return;
    }
    let env = gcloud_env();
    std::fs::create_dir_all(env.path("gcloud-config")).unwrap();
    gcloud_set(&env, &["config", "set", "account", "someone@example.com"]);
    let out = env.get("gcr.io");
    assert_not_found(&out);
    assert!(
        out.stderr.contains("does not have any valid credentials")
            && out.stderr.contains("sign-in needed")
            && out.stderr.contains("gcloud auth login"),
        "{}",
        out.stderr
    );
}

#[test]
fn gcloud_not_installed_is_skipped_without_an_error() {
    let mut env = Env::new();
    let config = env.path("gcloud-config");
    std::fs::create_dir_all(&config).unwrap();
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env.set("PATH", "/nonexistent");
    let out = env.get("gcr.io");
    assert_eq!(out.stdout, NOT_FOUND);
    assert!(!out.stderr.contains("gcloud failed"), "{}", out.stderr);
}

#[test]
fn gclouds_environment_overrides_are_part_of_its_identity() {
    if !need(&[Peer::Gcloud]) {
        return;
    }
    require("gcloud");
    let mut env = Env::new();
    let config = env.path("gcloud-config");
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    let (a, b) = (env.path("token-a"), env.path("token-b"));
    std::fs::write(&a, "ya29.identity-a\n").unwrap();
    std::fs::write(&b, "ya29.identity-b\n").unwrap();
    std::fs::create_dir_all(&config).unwrap();
    env.set("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", a.display().to_string());
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.identity-a");
    env.set("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", b.display().to_string());
    assert_eq!(
        creds(&env.get("gcr.io")).2,
        "ya29.identity-b",
        "gcloud answers B, so must we"
    );
    env.set("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", a.display().to_string());
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.identity-a");
}

// ---------------------------------------------------------------------------------------------
// Stand-ins for what the real gcloud cannot be made to do: hang, leave a child behind,
// print too much.

fn fake_gcloud(env: &mut Env, script: &str) {
    let bin = env.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let gcloud = bin.join("gcloud");
    std::fs::write(&gcloud, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = env.path("gcloud-config");
    // Signed in: the helper runs gcloud only when it could have credentials.
    signed_in_gcloud_config(&config);
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env.set("PATH", format!("{}:/usr/bin:/bin", bin.display()));
}

#[test]
fn a_hanging_gcloud_is_killed_at_the_deadline_with_its_children() {
    // Real gcloud cannot be made to hang on demand; this stand-in does, and starts a child.
    let mut env = Env::new();
    let marker = format!("{}", 40 + std::process::id() % 1000);
    fake_gcloud(&mut env, &format!("sleep {marker}.123 &\nwait"));
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1");
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_fails_saying(&out, "did not finish in time");
    assert!(start.elapsed() < Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(200));
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let leftover = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .any(|l| l.contains(&format!("sleep {marker}.123")));
    assert!(!leftover, "the stand-in's child was killed with it");
}

#[test]
fn a_gcloud_wrapper_leaving_a_background_process_on_stdout_does_not_hold_the_get() {
    let mut env = Env::new();
    fake_gcloud(
        &mut env,
        r#"echo '{"credential": {"access_token": "ya29.wrapped", "token_expiry": null}}'; sleep 30 &"#,
    );
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "20");
    let (out, took) = timed(|| env.get("gcr.io"));
    assert_eq!(creds(&out).2, "ya29.wrapped");
    assert!(
        took < Duration::from_secs(5),
        "waited for the leftover's pipe: {took:?}"
    );
}

#[test]
fn a_child_printing_too_much_is_reported_as_such_not_as_a_timeout() {
    let mut env = Env::new();
    fake_gcloud(&mut env, "head -c 3000000 /dev/zero; sleep 30");
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "20");
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_fails_saying(&out, "printed more than 1 MiB on stdout");
    assert!(
        !out.stdout.contains("did not finish in time"),
        "{}",
        out.stdout
    );
}
