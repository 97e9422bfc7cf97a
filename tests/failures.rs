//! When no token can be had: the kind of failure decides the answer (docker, skopeo and podman
//! pull anonymously only after "credentials not found in native keychain"), failures are
//! remembered for a short while per identity, and processes waiting for another's mint share
//! its result. Also the habits of the programs that run the helper (`-v`, `list`, a silent
//! stderr on success).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::*;

/// User credentials (`gcloud auth application-default login`) at gcloud's well-known path.
fn user_adc(env: &mut Env, token_url: &str) -> std::path::PathBuf {
    let dir = env.path("gcloud");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("application_default_credentials.json");
    std::fs::write(&path, authorized_user_json(Some(token_url))).unwrap();
    env.set("CLOUDSDK_CONFIG", dir.display().to_string());
    path
}

fn invalid_grant(subtype: Option<&str>) -> Server {
    let mut body = serde_json::json!({
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    });
    if let Some(subtype) = subtype {
        body["error_subtype"] = subtype.into();
        body["error_description"] = "reauth related error (invalid_rapt)".into();
    }
    Server::start(move |_| Reply::json(400, body.clone()))
}

fn timed(f: impl FnOnce() -> Output) -> (Output, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The kinds and their answers.

#[test]
fn expired_user_credentials_answer_not_found_with_the_sign_in_fix_on_one_line() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    let out = env.get("gcr.io");
    assert_not_found(&out);
    assert_eq!(server.count(), 1, "invalid_grant is final: no retry");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    for part in [
        "invalid_grant: Token has been expired or revoked.",
        "sign-in needed",
        "run `gcloud auth application-default login`",
        "gcr.io is tried anonymously",
    ] {
        assert!(out.stderr.contains(part), "{part:?} in {}", out.stderr);
    }
}

#[test]
fn a_reauthentication_demand_is_named_and_answers_not_found() {
    let server = invalid_grant(Some("invalid_rapt"));
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    let out = env.get("us-docker.pkg.dev");
    assert_eq!(out.stdout, NOT_FOUND, "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid_grant (invalid_rapt)")
            && out.stderr.contains("gcloud auth application-default login"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_refused_identity_fails_the_pull_unless_on_error_is_anonymous() {
    let md = Server::start(|_| {
        Reply::json(
            403,
            serde_json::json!({"error": "access_denied", "error_description": "scope revoked"}),
        )
        .with_header("Metadata-Flavor", "Google")
    });
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", md.host());
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert_ne!(out.stdout, NOT_FOUND);
    assert!(
        out.stdout.contains("HTTP 403 access_denied: scope revoked"),
        "{}",
        out.stdout
    );
    env.set("DOCKER_CREDENTIAL_GCP_ON_ERROR", "anonymous");
    env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
    let out = env.get("gcr.io");
    assert_eq!(out.stdout, NOT_FOUND, "{}", out.stderr);
    assert!(
        out.stderr.contains("on_error is anonymous") && out.stderr.contains("HTTP 403"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_invalid_on_error_setting_is_a_clear_error() {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_ON_ERROR", "ignore");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("on_error") && out.stdout.contains("fail or anonymous"),
        "{}",
        out.stdout
    );
}

/// A stand-in for gcloud that records each run; real gcloud takes over a second to say it
/// has no account (tests/gcloud.rs runs it).
fn recording_gcloud(env: &mut Env) -> std::path::PathBuf {
    let bin = env.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let runs = env.path("gcloud-runs");
    let gcloud = bin.join("gcloud");
    std::fs::write(
        &gcloud,
        format!("#!/bin/sh\necho run >> {}\nexit 1\n", runs.display()),
    )
    .unwrap();
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.set("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    runs
}

#[test]
fn gcloud_never_logged_in_and_no_gcloud_at_all_answer_alike() {
    let mut without = Env::new();
    without.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,gcloud");
    let config = without.path("gcloud-config");
    std::fs::create_dir_all(&config).unwrap();
    without.set("CLOUDSDK_CONFIG", config.display().to_string());
    without.set("PATH", "/usr/bin/does-not-exist");
    let absent = without.get("gcr.io");

    let mut never = Env::new();
    never.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,gcloud");
    let config = never.path("gcloud-config");
    std::fs::create_dir_all(config.join("configurations")).unwrap();
    std::fs::write(config.join("active_config"), "default").unwrap();
    never.set("CLOUDSDK_CONFIG", config.display().to_string());
    let runs = recording_gcloud(&mut never);
    let logged_out = never.get("gcr.io");

    for out in [&absent, &logged_out] {
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (1, NOT_FOUND),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("gcloud auth login"), "{}", out.stderr);
    }
    assert!(!runs.exists(), "gcloud without an account is not run");
}

// ---------------------------------------------------------------------------------------------
// Remembered failures.

#[test]
fn a_failure_is_remembered_until_the_credentials_change() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    let adc = user_adc(&mut env, &server.url("/token"));
    assert_eq!(env.get("gcr.io").stdout, NOT_FOUND);
    let (again, took) = timed(|| env.get("gcr.io"));
    assert_eq!(again.stdout, NOT_FOUND);
    assert_eq!(server.count(), 1, "remembered: not asked again");
    assert!(again.stderr.contains("s ago"), "{}", again.stderr);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // `gcloud auth application-default login` rewrites the file: a new identity, tried at once.
    std::fs::write(
        &adc,
        authorized_user_json(Some(&server.url("/token"))) + "\n",
    )
    .unwrap();
    assert_eq!(env.get("gcr.io").stdout, NOT_FOUND);
    assert_eq!(server.count(), 2);
}

#[test]
fn remembering_can_be_turned_off() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
    env.get("gcr.io");
    env.get("gcr.io");
    assert_eq!(server.count(), 2);
}

#[test]
fn a_sweep_against_a_hanging_endpoint_costs_one_deadline() {
    let hang = Hanging::start();
    let mut env = Env::new();
    env.use_service_account(&hang.url());
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let (first, took) = timed(|| env.get("gcr.io"));
    assert_eq!(first.code, 1);
    assert!(first.stdout.contains("timed out"), "{}", first.stdout);
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let (_, sweep) = timed(|| {
        let mut last = None;
        for host in ["gcr.io", "us.gcr.io", "eu.gcr.io", "us-docker.pkg.dev"]
            .iter()
            .cycle()
            .take(20)
        {
            let out = env.get(host);
            assert_eq!(out.code, 1);
            assert!(out.stdout.contains("timed out"), "{}", out.stdout);
            last = Some(out);
        }
        last.unwrap()
    });
    assert!(
        sweep < Duration::from_secs(4),
        "20 remembered answers took {sweep:?}"
    );
    assert_eq!(hang.connections(), 1, "one attempt for the whole sweep");
}

#[test]
fn on_error_anonymous_lets_pulls_go_on_when_the_endpoint_hangs() {
    let hang = Hanging::start();
    let mut env = Env::new();
    env.use_service_account(&hang.url());
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1");
    env.set("DOCKER_CREDENTIAL_GCP_ON_ERROR", "anonymous");
    for _ in 0..3 {
        let out = env.get("gcr.io");
        assert_eq!(out.stdout, NOT_FOUND, "{}", out.stderr);
        assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    }
    assert_eq!(hang.connections(), 1);
}

#[test]
fn a_remembered_failure_written_by_someone_else_is_not_believed() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    env.get("gcr.io");
    let record = cache::failure_in(&env.cache_dir());
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(!text.contains(USER_REFRESH_TOKEN) && !text.contains(USER_CLIENT_SECRET));
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Group-writable: anyone in the group could have planted it.
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o660)).unwrap();
    env.get("gcr.io");
    assert_eq!(server.count(), 2, "an untrusted record is ignored");
}

#[test]
fn a_failure_recorded_in_the_future_is_not_believed() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    env.get("gcr.io");
    let record = cache::failure_in(&env.cache_dir());
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let at = doc["at"].as_u64().unwrap();
    doc["at"] = (at + 3600).into();
    doc["until"] = (at + 3630).into();
    std::fs::write(&record, doc.to_string()).unwrap();
    env.get("gcr.io");
    assert_eq!(server.count(), 2, "the clock stepped back: asked again");
}

// ---------------------------------------------------------------------------------------------
// Waiting for another process's mint.

fn parallel_gets(env: &Env, n: usize) -> Vec<(Output, Duration)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| s.spawn(|| timed(|| env.get("gcr.io"))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_stampede_against_a_slow_endpoint_makes_one_request_and_all_share_its_token() {
    // Slower than half the deadline: waiting processes used to give up and mint themselves.
    let slow = Server::start({
        let inner = token_handler(3600);
        move |req| {
            std::thread::sleep(Duration::from_millis(2500));
            inner(req)
        }
    });
    let mut env = Env::new();
    env.use_service_account(&slow.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "4");
    let results = parallel_gets(&env, 12);
    assert_eq!(slow.count(), 1, "one token request for twelve cold gets");
    for (out, took) in &results {
        assert_eq!(creds(out).2, "ya29.test-1");
        assert!(out.stderr.is_empty(), "nothing alarming: {}", out.stderr);
        assert!(*took < Duration::from_secs(4), "{took:?}");
    }
}

#[test]
fn a_stampede_against_a_hanging_endpoint_shares_one_attempt() {
    let hang = Hanging::start();
    let mut env = Env::new();
    env.use_service_account(&hang.url());
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let results = parallel_gets(&env, 8);
    assert_eq!(hang.connections(), 1);
    for (out, took) in &results {
        assert_eq!(out.code, 1);
        assert!(out.stdout.contains("timed out"), "{}", out.stdout);
        assert!(*took < Duration::from_secs(5), "{took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The habits of the programs that run the helper.

#[test]
fn the_version_flags_of_the_reference_helpers_work() {
    let env = Env::new();
    let want = format!("docker-credential-gcp {}\n", env!("CARGO_PKG_VERSION"));
    for flag in ["-v", "-V", "--version", "version"] {
        let out = env.run(&[flag], b"");
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, want.as_str()),
            "{flag}"
        );
    }
}

#[test]
fn list_names_every_google_host_docker_maps_to_this_helper() {
    let mut env = Env::new();
    let docker = env.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({
            "credHelpers": {
                "gcr.io": "gcp",
                "europe-docker.pkg.dev": "gcp",
                "ghcr.io": "gcp",
                "us.gcr.io": "gcloud",
            }
        })
        .to_string(),
    )
    .unwrap();
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let out = env.run(&["list"], b"unused");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({
            "gcr.io": "oauth2accesstoken",
            "europe-docker.pkg.dev": "oauth2accesstoken",
        }),
        "ghcr.io is not Google's; us.gcr.io belongs to another helper"
    );
    // A config docker cannot read either does not break `list`.
    std::fs::write(docker.join("config.json"), "{ not json").unwrap();
    let out = env.run(&["list"], b"unused");
    assert_eq!((out.code, out.stdout.as_str()), (0, "{}\n"));
}

#[test]
fn doctor_names_the_kind_and_what_get_answers() {
    let server = invalid_grant(None);
    let mut env = Env::new();
    user_adc(&mut env, &server.url("/token"));
    let out = env.run(&["doctor"], b"");
    assert_ne!(out.code, 0);
    for part in [
        "sign-in needed",
        "answers \"not found\"",
        "gcloud auth application-default login",
    ] {
        assert!(out.stdout.contains(part), "{part:?} in {}", out.stdout);
    }
    let hang = Hanging::start();
    let mut env = Env::new();
    env.use_service_account(&hang.url());
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1");
    let out = env.run(&["doctor"], b"");
    for part in ["unreachable", "fails every pull", "on_error"] {
        assert!(out.stdout.contains(part), "{part:?} in {}", out.stdout);
    }
}
