//! Refresh ahead: a `get` near a token's expiry answers from the cache at once and leaves one
//! detached background refresh behind, so no `docker pull` waits for a mint once an hour.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// A metadata server whose every answer after the first takes `delay`.
fn slow_metadata_server(delay: Duration) -> (Server, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = Server::start(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 {
            std::thread::sleep(delay);
        }
        Reply::json(
            200,
            serde_json::json!({"access_token": format!("ya29.md-{n}"), "expires_in": 3600}),
        )
        .with_header("Metadata-Flavor", "Google")
    });
    (server, issued)
}

fn metadata_env(server: &Server) -> Env {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", server.host());
    env
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_get_near_expiry_answers_at_once_and_one_background_refresh_replaces_the_token() {
    let delay = Duration::from_secs(3);
    let (server, issued) = slow_metadata_server(delay);
    let env = metadata_env(&server);
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.md-1");
    cache::age_entry_in(&env.cache_dir());

    // The caller is not held by the refresh: its stdout ends when it exits (run_command
    // reads it to the end, as docker does), well before the 3 s token request returns.
    let started = Instant::now();
    let out = env.get("gcr.io");
    let took = started.elapsed();
    assert_eq!(creds(&out).2, "ya29.md-1", "answered from the cache");
    assert!(took < delay, "the caller waited for the refresh: {took:?}");

    // More gets while the refresh runs: still the cached token, and no second request.
    for _ in 0..5 {
        assert_eq!(creds(&env.get("gcr.io")).2, "ya29.md-1");
    }
    wait_until(
        "the refresh asked for a token",
        Duration::from_secs(10),
        || issued.load(Ordering::SeqCst) >= 2,
    );
    wait_until(
        "the refreshed token is served",
        Duration::from_secs(10),
        || creds(&env.get("gcr.io")).2 == "ya29.md-2",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.count(),
        2,
        "one background refresh for seven gets in the window"
    );
}

#[test]
fn refresh_ahead_can_be_turned_off() {
    let (server, _) = slow_metadata_server(Duration::ZERO);
    let mut env = metadata_env(&server);
    env.set("DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD", "0");
    creds(&env.get("gcr.io"));
    cache::age_entry_in(&env.cache_dir());
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.md-1");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.count(), 1, "no background refresh");
}

#[test]
fn a_failed_background_refresh_only_reaches_the_log_file() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let server = Server::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json(
                200,
                serde_json::json!({"access_token": "ya29.md-1", "expires_in": 3600}),
            )
            .with_header("Metadata-Flavor", "Google")
        } else {
            Reply::json(
                403,
                serde_json::json!({"error": "access_denied", "error_description": "scope revoked"}),
            )
        }
    });
    let mut env = metadata_env(&server);
    let log = env.path("helper.log");
    env.set("DOCKER_CREDENTIAL_GCP_LOG_FILE", log.display().to_string());
    creds(&env.get("gcr.io"));
    cache::age_entry_in(&env.cache_dir());
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.md-1");
    assert!(
        out.stderr.is_empty(),
        "nothing on the caller's stderr: {}",
        out.stderr
    );
    wait_until("the failure is logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("access_denied"))
    });
    assert_eq!(
        creds(&env.get("gcr.io")).2,
        "ya29.md-1",
        "the cached token still serves"
    );
}
