//! Token endpoints, metadata servers, gcloud and lock holders that misbehave on purpose.
//! Transient failures are retried a bounded number of times; final ones are not; every mint
//! ends within DOCKER_CREDENTIAL_GCP_TIMEOUT; errors name the source and the next step.

use crate::support::peers::{Peer, need};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// An authorized_user ADC file whose token_uri is `server`'s /token.
fn user_env(token_url: &str) -> Env {
    let mut env = Env::new();
    let path = env.path("user.json");
    std::fs::write(&path, authorized_user_json(Some(token_url))).unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    env
}

/// A server that answers the first `failures` requests with `failure`, then issues a token.
fn flaky(failures: usize, failure: fn() -> Reply) -> Server {
    let n = AtomicUsize::new(0);
    Server::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) < failures {
            failure()
        } else {
            Reply::json(
                200,
                serde_json::json!({"access_token": "ya29.after-retry", "expires_in": 3600}),
            )
        }
    })
}

fn html(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: b"<html><body><h1>Server Error</h1></body></html>".to_vec(),
    }
}

#[test]
fn a_500_is_retried_and_the_retry_succeeds() {
    let server = flaky(1, || html(500));
    let env = user_env(&server.url("/token"));
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.after-retry");
    assert_eq!(server.count(), 2);
}

#[test]
fn a_429_waits_for_retry_after() {
    let server = flaky(1, || {
        Reply::json(429, serde_json::json!({"error": "rate_limit_exceeded"}))
            .with_header("Retry-After", "1")
    });
    let env = user_env(&server.url("/token"));
    let start = Instant::now();
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.after-retry");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(server.count(), 2);
}

#[test]
fn persistent_server_errors_stop_after_three_attempts_with_the_status() {
    let server = flaky(usize::MAX, || html(502));
    let env = user_env(&server.url("/token"));
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert_eq!(server.count(), 3);
    assert!(
        out.stdout.contains("HTTP 502") && out.stdout.contains("Server Error"),
        "{}",
        out.stdout
    );
}

#[test]
fn malformed_json_and_html_answers_are_reported_not_trusted() {
    for (reply, needle) in [
        (
            Reply {
                status: 200,
                headers: vec![],
                body: b"{\"access_token\": ".to_vec(),
            },
            "not valid JSON",
        ),
        (
            Reply {
                status: 200,
                headers: vec![],
                body: b"<html>hello</html>".to_vec(),
            },
            "not valid JSON",
        ),
        (
            Reply::json(200, serde_json::json!({"token_type": "Bearer"})),
            "no access_token",
        ),
        (
            Reply::json(
                200,
                serde_json::json!({"access_token": "x", "expires_in": "soon"}),
            ),
            "no valid expires_in",
        ),
    ] {
        let reply = Arc::new(reply);
        let r = reply.clone();
        let server = Server::start(move |_| Reply {
            status: r.status,
            headers: r.headers.clone(),
            body: r.body.clone(),
        });
        let env = user_env(&server.url("/token"));
        let out = env.get("gcr.io");
        assert_eq!(out.code, 1);
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
        assert_eq!(server.count(), 1, "a 200 is final");
    }
}

#[test]
fn connection_refused_is_retried_then_reported() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = user_env(&format!("http://127.0.0.1:{port}/token"));
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("Connection refused") || out.stdout.contains("connection refused"),
        "{}",
        out.stdout
    );
}

/// A raw TCP server: for each connection, `behave` gets the stream after the request was read.
fn raw_server(behave: fn(std::net::TcpStream)) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(20) {
            let Ok(mut conn) = conn else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                behave(conn);
            });
        }
    });
    (url, count)
}

#[test]
fn a_reset_in_the_middle_of_the_response_is_retried_and_reported() {
    let (url, count) = raw_server(|mut conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"access_tok");
        // Dropping the stream closes it before the promised 100 bytes.
    });
    let env = user_env(&url);
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert_eq!(count.load(Ordering::SeqCst), 3, "retried as transient");
    assert!(out.stdout.contains("adc"), "{}", out.stdout);
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_timeout() {
    let (url, _) = raw_server(|conn| {
        std::thread::sleep(Duration::from_secs(30));
        drop(conn);
    });
    let mut env = user_env(&url);
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("timed out"), "{}", out.stdout);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "ended at the 2 s deadline, took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_server_that_trickles_bytes_is_bounded_by_the_timeout() {
    let (url, _) = raw_server(|mut conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
        for _ in 0..300 {
            if conn.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut env = user_env(&url);
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn the_service_account_flow_retries_transient_failures_but_not_invalid_grant() {
    // The yup-oauth2 path: an HTML 503 page (not JSON) is transient.
    let server = flaky(1, || html(503));
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.after-retry");
    assert_eq!(server.count(), 2);

    let refusing = flaky(usize::MAX, || {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
    });
    let mut env = Env::new();
    env.use_service_account(&refusing.url("/token"));
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert_eq!(refusing.count(), 1, "invalid_grant is final");
    assert!(
        out.stdout.contains("Invalid JWT Signature"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_slow_metadata_server_is_bounded_by_the_timeout() {
    let slow = Server::start(|_| {
        std::thread::sleep(Duration::from_secs(20));
        Reply::json(200, serde_json::json!({}))
    });
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", slow.host());
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1.5");
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("metadata") && out.stdout.contains("timed out"),
        "{}",
        out.stdout
    );
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn a_hanging_gcloud_is_killed_at_the_deadline_with_its_children() {
    // Real gcloud cannot be made to hang on demand; this stand-in does, and starts a child.
    let mut env = Env::new();
    let bin = env.path("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = format!("{}", 40 + std::process::id() % 1000);
    let script = bin.join("gcloud");
    std::fs::write(&script, format!("#!/bin/sh\nsleep {marker}.123 &\nwait\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = env.path("gcloud-config");
    signed_in_gcloud_config(&config);
    env.set("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1");
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("did not finish in time"),
        "{}",
        out.stdout
    );
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
fn a_lock_held_by_a_stuck_process_delays_but_does_not_block_and_a_dead_holder_frees_it() {
    if !need(&[Peer::Flock]) {
        return;
    }
    require("flock");
    let server = token_endpoint(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let cache = env.cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let lock = cache.join("mint.lock");
    let mut holder = std::process::Command::new("flock");
    holder.arg(&lock).args(["sleep", "60"]);
    std::os::unix::process::CommandExt::process_group(&mut holder, 0);
    let mut holder = holder.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let out = env.get("gcr.io");
    assert_eq!(
        creds(&out).2,
        "ya29.test-1",
        "minted without the lock after waiting: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("minting without the cache lock"),
        "{}",
        out.stderr
    );
    assert!(start.elapsed() < Duration::from_secs(8));

    // The holder dies (with the sleep that inherited the lock): the kernel releases the lock.
    // SAFETY: kill has no memory-safety preconditions; -pid is the holder's process group.
    unsafe { libc::kill(-(holder.id() as i32), libc::SIGKILL) };
    holder.wait().unwrap();
    std::fs::remove_file(
        cache.join(
            std::fs::read_dir(&cache)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .find(|n| n.to_string_lossy().starts_with("token-"))
                .unwrap(),
        ),
    )
    .unwrap();
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-2");
    assert!(
        !out.stderr.contains("without the cache lock"),
        "a dead holder's lock is free: {}",
        out.stderr
    );
}
