//! Token endpoints and metadata servers that misbehave on purpose, and a DNS server that never
//! answers. Transient failures are retried a bounded number of times; final ones are not;
//! every mint ends within DOCKER_CREDENTIAL_GCP_TIMEOUT; an answer that is not a token is
//! reported, not trusted; errors name the source and the next step.

use crate::support::peers::{Peer, need};
use std::io::{Read, Write};
use std::net::TcpListener;
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
fn invalid_grant_is_not_retried_and_says_to_log_in_again() {
    let server = flaky(usize::MAX, || {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        )
    });
    let mut env = user_env(&server.url("/token"));
    // The well-known file, not an explicit path: the advice is to log in again.
    let dir = env.path("gcloud");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(
        env.path("user.json"),
        dir.join("application_default_credentials.json"),
    )
    .unwrap();
    env.unset("GOOGLE_APPLICATION_CREDENTIALS");
    env.set("CLOUDSDK_CONFIG", dir.display().to_string());
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert_eq!(server.count(), 1, "no retry for invalid_grant");
    assert!(
        out.stdout
            .contains("invalid_grant: Token has been expired or revoked."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("gcloud auth application-default login"),
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
    assert_fails_saying(&out, "timed out");
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

// A slow name lookup ends with the deadline (real getaddrinfo against a DNS server that never
// answers, inside a private mount and network namespace where only loopback exists).

#[test]
fn a_slow_name_lookup_does_not_hold_the_process_past_the_deadline() {
    if !need(&[Peer::Root, Peer::Unshare]) {
        return;
    }
    require_root("the slow-DNS namespace");
    require("unshare");
    require("python3");
    let mut env = Env::new();
    env.use_service_account("https://oauth2.slow-dns.test/token");
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "1");
    let resolv = env.path("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:4 attempts:2\n",
    )
    .unwrap();
    let blackhole = env.path("blackhole.py");
    std::fs::write(
        &blackhole,
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 53))\nprint('ready', flush=True)\nwhile True:\n    s.recvfrom(4096)\n",
    )
    .unwrap();
    // Inside the namespace: loopback up, our resolv.conf, the silent DNS server, then `get`
    // timed by the shell (the lookup alone would take 8 s).
    let script = format!(
        "set -eu; ip link set lo up; mount -n --bind {resolv} /etc/resolv.conf; \
         python3 {bh} > {home}/bh.out & bh=$!; \
         for i in $(seq 50); do grep -q ready {home}/bh.out && break; sleep 0.1; done; \
         s=$(date +%s%N); echo gcr.io | {bin} get > {home}/get.out || true; e=$(date +%s%N); \
         kill $bh; echo $(( (e - s) / 1000000 ))",
        resolv = resolv.display(),
        bh = blackhole.display(),
        home = env.home.path().display(),
        bin = BIN,
    );
    let out = run_command(env.program("unshare", &["-mn", "sh", "-c", &script]), b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let millis: u64 = out.stdout.trim().parse().unwrap();
    let answer = std::fs::read_to_string(env.path("get.out")).unwrap();
    assert!(answer.contains("timed out"), "{answer}");
    assert!(
        millis < 4000,
        "get answered after {millis} ms with a 1 s deadline"
    );
}
