//! Token endpoints and metadata servers that misbehave on purpose, and a DNS server that never
//! answers. Transient failures are retried a bounded number of times; final ones are not;
//! every mint ends within DOCKER_CREDENTIAL_GCP_TIMEOUT; an answer that is not a token is
//! reported, not trusted; errors name the source and the next step.

use crate::support::peers::{Peer, need};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;

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

// ---------------------------------------------------------------------------------------------
// What comes back: nothing the helper sent ever comes back out (in any encoding, on any
// output), token values are data and never text to paste, every answer is read within bounds,
// and every lifetime is judged alike.

/// Every 12-byte run of `secret` (the scrubber's window), so an echo cut short is caught too.
fn fragments(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    if bytes.len() <= 12 {
        return vec![secret.to_owned()];
    }
    bytes
        .windows(12)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

fn assert_never_printed(what: &str, secret: &str, outputs: &[(&str, &str)]) {
    let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    for form in [secret.to_owned(), encoded, b64] {
        for fragment in fragments(&form) {
            for (name, text) in outputs {
                assert!(
                    !text.contains(&fragment),
                    "{what} ({fragment:?}) came out on {name}: {text}"
                );
            }
        }
    }
}

/// An endpoint that refuses every request, quoting it back: the body as sent, decoded, and
/// in base64url, as a misbehaving gateway might.
fn echoing(status: u16) -> Server {
    Server::start(move |req| {
        let raw = String::from_utf8_lossy(&req.body).into_owned();
        let decoded: Vec<String> = req
            .form()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&req.body);
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        Reply::json(
            status,
            serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("bad request {raw} ({}) [{b64}] auth {auth}", decoded.join(" ")),
            }),
        )
    })
}

/// `get`, `print-access-token` and `doctor` with `env`: everything they print.
fn every_output(env: &Env) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    for (args, stdin) in [
        (&["get"][..], &b"gcr.io"[..]),
        (&["print-access-token"], b""),
        (&["doctor"], b""),
    ] {
        let out = env.run(args, stdin);
        outputs.push((format!("{args:?} stdout"), out.stdout));
        outputs.push((format!("{args:?} stderr"), out.stderr));
    }
    outputs
}

fn as_refs(outputs: &[(String, String)]) -> Vec<(&str, &str)> {
    outputs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

#[test]
fn an_echoed_refresh_grant_never_prints_the_refresh_token_or_client_secret() {
    for status in [400, 500] {
        let server = echoing(status);
        let mut env = Env::new();
        let path = env.path("user.json");
        std::fs::write(&path, authorized_user_json(Some(&server.url("/token")))).unwrap();
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
        env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
        let outputs = every_output(&env);
        assert!(server.count() >= 3, "every command asked the endpoint");
        let outputs = as_refs(&outputs);
        assert_never_printed("the refresh token", USER_REFRESH_TOKEN, &outputs);
        assert_never_printed("the client secret", USER_CLIENT_SECRET, &outputs);
        assert!(
            outputs.iter().any(|(_, t)| t.contains("bad request")),
            "the echo itself is reported, scrubbed: {outputs:?}"
        );
    }
}

#[test]
fn an_echoed_service_account_grant_never_prints_the_signed_assertion() {
    let server = echoing(400);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    let outputs = every_output(&env);
    let assertions: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.form().get("assertion").cloned())
        .collect();
    assert!(!assertions.is_empty());
    for assertion in &assertions {
        // The JWT's header and claims are public knowledge (they name the account); its
        // signature is what makes it a credential.
        let signature = assertion.rsplit('.').next().unwrap();
        assert_never_printed(
            "the JWT assertion's signature",
            signature,
            &as_refs(&outputs),
        );
        assert!(outputs.iter().all(|(_, t)| !t.contains(assertion.as_str())));
    }
}

#[test]
fn an_echoed_workforce_refresh_never_prints_its_secrets() {
    let server = echoing(400);
    let mut env = Env::new();
    let path = env.path("workforce.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "type": "external_account_authorized_user",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
            "refresh_token": "workforce-refresh-token-value",
            "token_url": server.url("/v1/oauthtoken"),
            "client_id": "workforce-client",
            "client_secret": "workforce-secret-value",
        })
        .to_string(),
    )
    .unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
    let outputs = every_output(&env);
    let outputs = as_refs(&outputs);
    assert_never_printed(
        "the refresh token",
        "workforce-refresh-token-value",
        &outputs,
    );
    assert_never_printed("the client secret", "workforce-secret-value", &outputs);
    // The Basic client credentials, as the header carried them.
    let basic =
        base64::engine::general_purpose::STANDARD.encode("workforce-client:workforce-secret-value");
    for (name, text) in &outputs {
        assert!(!text.contains(&basic[..16]), "{name}: {text}");
    }
}

/// A token endpoint (refresh grant, and the service account path through yup-oauth2) and a
/// metadata server that issue `token` with `expires_in`.
fn issuing(token: &'static str, expires_in: serde_json::Value) -> Server {
    Server::start(move |_| {
        Reply::json(
            200,
            serde_json::json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
        )
        .with_header("Metadata-Flavor", "Google")
    })
}

/// Each token path pointed at `server`.
fn paths(server: &Server) -> Vec<(&'static str, Env)> {
    let mut user = Env::new();
    let path = user.path("user.json");
    std::fs::write(&path, authorized_user_json(Some(&server.url("/token")))).unwrap();
    user.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    let mut sa = Env::new();
    sa.use_service_account(&server.url("/token"));
    let mut md = Env::new();
    md.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    md.set("GCE_METADATA_HOST", server.host());
    vec![
        ("authorized_user", user),
        ("service_account", sa),
        ("metadata", md),
    ]
}

#[test]
fn an_access_token_with_control_characters_or_spaces_is_refused_on_every_path() {
    for token in ["ya29.a\r\nX-Injected: 1", "ya29.a b", "ya29.\u{1b}[31mred"] {
        let server = issuing(token, 3600.into());
        for (path, env) in paths(&server) {
            let out = env.get("gcr.io");
            assert_eq!(out.code, 1, "{path}: {}", out.stdout);
            assert!(
                out.stdout.contains("control characters") && !out.stdout.contains("ya29.a"),
                "{path}: {}",
                out.stdout
            );
            let printed = env.run(&["print-access-token"], b"");
            assert_eq!(printed.code, 1, "{path}");
            assert_eq!(printed.stdout, "", "{path}: nothing to paste into a header");
        }
    }
}

#[test]
fn lifetimes_are_judged_alike_on_every_path() {
    // Expired, or about to: refused everywhere (the metadata path alone refused them before).
    for expires_in in [
        serde_json::json!(0),
        serde_json::json!(-5),
        serde_json::json!(8),
    ] {
        let server = issuing("ya29.short", expires_in.clone());
        for (path, env) in paths(&server) {
            let out = env.get("gcr.io");
            assert_eq!(out.code, 1, "{path} {expires_in}: {}", out.stdout);
            assert!(out.stdout.contains("expires in"), "{path}: {}", out.stdout);
        }
    }
    // A day: longer than any Google token lives; served, cached as 12 hours, and not minted
    // again on the next `get` (it used to be distrusted by the cache and minted every time).
    let server = issuing("ya29.day", 86_400.into());
    for (path, env) in paths(&server) {
        let before = server.count();
        assert_eq!(creds(&env.get("gcr.io")).2, "ya29.day", "{path}");
        assert_eq!(creds(&env.get("gcr.io")).2, "ya29.day", "{path}");
        assert_eq!(
            server.count(),
            before + 1,
            "{path}: the second get is cached"
        );
    }
}

/// A server that answers 200 with an endless body (no length, chunked or not), counting what
/// it manages to send before the client stops reading.
fn endless(chunked: bool, json_error: bool) -> (u16, Arc<AtomicU64>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let (total, count) = (sent.clone(), conns.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().take(20) {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let total = total.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_millis(300))).ok();
                let _ = conn.read(&mut [0u8; 8192]);
                let (status, head) = if json_error {
                    (400, "{\"error\":\"invalid_grant\",\"error_description\":\"")
                } else {
                    (200, "{\"access_token\":\"")
                };
                let framing = if chunked {
                    "Transfer-Encoding: chunked\r\n"
                } else {
                    "Connection: close\r\n"
                };
                let start = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\n"
                );
                if conn.write_all(start.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'a'; 64 * 1024];
                let mut first = head.as_bytes().to_vec();
                first.extend_from_slice(&chunk);
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut piece = first;
                // Bounded: 20 s or 512 MiB, whichever comes first.
                while Instant::now() < deadline && total.load(Ordering::SeqCst) < 512 << 20 {
                    let wire = if chunked {
                        let mut w = format!("{:x}\r\n", piece.len()).into_bytes();
                        w.extend_from_slice(&piece);
                        w.extend_from_slice(b"\r\n");
                        w
                    } else {
                        piece.clone()
                    };
                    if conn.write_all(&wire).is_err() {
                        return;
                    }
                    total.fetch_add(piece.len() as u64, Ordering::SeqCst);
                    piece = chunk.clone();
                }
            });
        }
    });
    (port, sent, conns)
}

#[test]
fn an_endless_answer_is_cut_off_on_every_path() {
    for (chunked, json_error) in [(true, false), (false, false), (true, true)] {
        let (port, sent, _) = endless(chunked, json_error);
        let url = format!("http://127.0.0.1:{port}/token");
        let mut sa = Env::new();
        sa.use_service_account(&url);
        let mut user = Env::new();
        let path = user.path("user.json");
        std::fs::write(&path, authorized_user_json(Some(&url))).unwrap();
        user.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        for (name, env) in [("service_account", &mut sa), ("authorized_user", &mut user)] {
            env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "30");
            let before = sent.load(Ordering::SeqCst);
            let started = Instant::now();
            let out = env.get("gcr.io");
            let took = started.elapsed();
            assert_eq!(out.code, 1, "{name}");
            assert!(
                took < Duration::from_secs(15),
                "{name}: read until the deadline ({took:?})"
            );
            // Let the server notice the closed connection.
            std::thread::sleep(Duration::from_millis(300));
            let read = sent.load(Ordering::SeqCst) - before;
            // The helper reads about 1 MiB per attempt (three attempts at most); socket
            // buffers hold a few MiB more.
            assert!(
                read < 24 << 20,
                "{name}: {read} bytes were sent before it stopped reading"
            );
            assert!(
                out.stdout.len() < 2048,
                "{name}: {} bytes on stdout",
                out.stdout.len()
            );
        }
    }
}

#[test]
fn a_huge_error_description_is_cut_short_on_every_path() {
    let description = "x".repeat(500_000);
    let server = Server::start(move |_| {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": description}),
        )
    });
    for (path, mut env) in paths(&server).into_iter().take(2) {
        env.set("DOCKER_CREDENTIAL_GCP_ON_ERROR", "fail");
        let out = env.get("gcr.io");
        assert_eq!(out.code, 1, "{path}");
        assert!(
            out.stdout.len() < 2048,
            "{path}: {} bytes on stdout",
            out.stdout.len()
        );
        assert!(
            out.stderr.len() < 4096,
            "{path}: {} bytes on stderr",
            out.stderr.len()
        );
        let printed = env.run(&["print-access-token"], b"");
        assert!(
            printed.stderr.len() < 4096,
            "{path}: {}",
            printed.stderr.len()
        );
    }
}
