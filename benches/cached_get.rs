//! Whole-process benchmark of the cached `get` against the process floor (`/bin/true`).
//!
//! Run with `cargo bench --bench cached_get`. Each round runs the baseline and the helper
//! back to back (alternating which goes first), so machine noise hits both alike; the table
//! reports medians and the median of the per-round ratios. A loopback metadata-server stand-in
//! mints the one token that the warm-up caches; the request count proves the cache served the rest.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 1000;

fn main() {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/release/docker-credential-gcp");
    assert!(
        bin.is_file(),
        "build the release binary first: cargo build --release"
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let addr = metadata_stand_in(requests.clone());
    let home = tempfile::tempdir().unwrap();
    let input = home.path().join("input");
    std::fs::write(&input, "gcr.io\n").unwrap();

    let helper = |verb: &str| {
        let mut cmd = Command::new(&bin);
        cmd.arg(verb)
            .env_clear()
            .env("HOME", home.path())
            .env("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata")
            .env("GCE_METADATA_HOST", addr.to_string());
        cmd
    };
    let warm = run(helper("get"), &input);
    assert!(warm.1, "warm-up get failed");
    let mut floor = Vec::with_capacity(ROUNDS);
    let mut get = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let (t, g) = if i % 2 == 0 {
            let t = run(Command::new("/bin/true"), &input).0;
            (t, run(helper("get"), &input).0)
        } else {
            let g = run(helper("get"), &input).0;
            (run(Command::new("/bin/true"), &input).0, g)
        };
        floor.push(t);
        get.push(g);
        ratios.push(g.as_secs_f64() / t.as_secs_f64());
    }
    let ms = |v: &mut Vec<Duration>| {
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[v.len() * 9 / 10].as_secs_f64() * 1e3,
        )
    };
    let (tm, tp) = ms(&mut floor);
    let (gm, gp) = ms(&mut get);
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("| measurement | median ms | p90 ms |");
    println!("|---|---|---|");
    println!("| /bin/true (process floor) | {tm:.3} | {tp:.3} |");
    println!("| cached get | {gm:.3} | {gp:.3} |");
    println!(
        "median per-round ratio cached get / true: {:.2} ({ROUNDS} paired rounds)",
        ratios[ROUNDS / 2]
    );
    println!(
        "token requests made: {} (1 expected: the warm-up)",
        requests.load(Ordering::SeqCst)
    );
}

fn run(mut cmd: Command, input: &std::path::Path) -> (Duration, bool) {
    let stdin = std::fs::File::open(input).unwrap();
    let start = Instant::now();
    let status = cmd
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    (start.elapsed(), status.success())
}

fn metadata_stand_in(requests: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(10_000) {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            requests.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"access_token":"ya29.bench","expires_in":3600,"token_type":"Bearer"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
