//! The gcloud token source with the real gcloud CLI, offline: its `auth/access_token_file`
//! property makes `gcloud config config-helper` print a token without any network.

use crate::support::peers::{Peer, need};
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
    let started = std::time::Instant::now();
    let out = env.get("gcr.io");
    let took = started.elapsed();
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (1, NOT_FOUND),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("gcloud has no active account")
            && out.stderr.contains("run `gcloud auth login`")
            && out.stderr.contains("tried anonymously"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    // gcloud itself takes over a second to say the same; it is not run.
    assert!(took < std::time::Duration::from_millis(800), "{took:?}");
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
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (1, NOT_FOUND),
        "{}",
        out.stderr
    );
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
