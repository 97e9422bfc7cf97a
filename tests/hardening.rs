//! Reliability: bad input on every subcommand, a cache that cannot be trusted or written,
//! concurrency while a token expires, and configure-docker killed at random points.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn human_subcommands_reject_bad_arguments_without_panicking() {
    let env = Env::new();
    let cases: &[&[&str]] = &[
        &["configure-docker", "--registries", ""],
        &["configure-docker", "--registries", "https://gcr.io/x"],
        &["configure-docker", "--registries", "gcr.io,,,%%%"],
        &[
            "configure-docker",
            "--config",
            "/proc/self/nonexistent/dir/config.json",
        ],
        &["configure-docker", "--bogus"],
        &["configure-mirror", "--hosts-dir", "/tmp"],
        &["configure-mirror", "--daemon-json", "/proc/version"],
        &["completions", "tcsh"],
        &["print-access-token", "extra"],
        &["doctor", "--x"],
    ];
    for args in cases {
        let out = env.run(args, b"");
        assert_ne!(out.code, 0, "{args:?} should fail: {}", out.stdout);
        assert_ne!(out.code, 101, "{args:?} panicked: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.trim().is_empty(),
            "{args:?} explains itself on stderr"
        );
    }
}

#[test]
fn malformed_credential_files_of_every_type_give_clear_errors() {
    let files: &[(&str, &str)] = &[
        ("", "not valid JSON"),
        ("\u{feff}{}", "not valid JSON"),
        ("[]", "no \"type\" field"),
        ("{\"type\": 5}", "no \"type\" field"),
        ("{\"type\":\"service_account\"}", "missing field"),
        (
            "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"not a key\"}",
            "private key",
        ),
        (
            "{\"type\":\"service_account\",\"client_email\":7,\"private_key\":\"x\"}",
            "wrong type",
        ),
        (
            "{\"type\":\"authorized_user\",\"client_id\":\"x\"}",
            "missing field",
        ),
        (
            "{\"type\":\"authorized_user\",\"client_id\":\"x\",\"client_secret\":\"s\",\"refresh_token\":\"r\",\"token_uri\":\"ftp://x\"}",
            "token_uri",
        ),
        (&"[".repeat(100_000), "not valid JSON"),
    ];
    for (content, needle) in files {
        let mut env = Env::new();
        let path = env.path("adc.json");
        std::fs::write(&path, content).unwrap();
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        let out = env.get("gcr.io");
        assert_eq!(out.code, 1, "{content:.60}");
        assert!(
            !out.stderr.contains("panicked"),
            "{content:.60}: {}",
            out.stderr
        );
        assert!(
            out.stdout.contains(needle),
            "{content:.60}: expected {needle:?} in {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("adc.json"),
            "names the file: {}",
            out.stdout
        );
    }
}

#[test]
fn a_cache_entry_owned_by_another_user_is_not_trusted() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    let entry = env.cache_entry();
    std::os::unix::fs::chown(&entry, Some(65534), None).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(
        creds(&out).2,
        "ya29.test-2",
        "the foreign entry was ignored and a token minted"
    );
    assert!(
        out.stderr.contains("owned by another user"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_group_writable_cache_entry_is_not_trusted() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    creds(&env.get("gcr.io"));
    std::fs::set_permissions(env.cache_entry(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-2");
    assert!(
        out.stderr.contains("writable by group or others"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unusable_cache_directory_still_answers() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    // A directory below a regular file cannot be created, not even by root.
    let file = env.path("plain-file");
    std::fs::write(&file, "x").unwrap();
    env.set(
        "DOCKER_CREDENTIAL_GCP_CACHE_DIR",
        file.join("cache").display().to_string(),
    );
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert!(
        out.stderr.contains("could not cache the token"),
        "{}",
        out.stderr
    );
    assert_eq!(
        creds(&env.get("gcr.io")).2,
        "ya29.test-2",
        "no cache: each get mints"
    );
}

#[test]
fn many_concurrent_gets_while_the_token_expires_refresh_once() {
    // The first token has 302 s: fresh (more than 300 s left) for about two seconds. Gets
    // keep starting for four seconds, so the token goes stale in the middle of the run.
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let server = Server::start(move |req| {
        if req.form().get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Reply::json(400, serde_json::json!({"error": "invalid_request"}));
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let lifetime = if n == 1 { 302 } else { 3600 };
        Reply::json(
            200,
            serde_json::json!({"access_token": format!("ya29.gen-{n}"), "expires_in": lifetime}),
        )
    });
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let env = Arc::new(env);
    let start = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(i * 4000 / 64));
                creds(&env.get("gcr.io")).2
            })
        })
        .collect();
    let tokens: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one initial mint and exactly one refresh"
    );
    assert!(
        tokens
            .iter()
            .all(|t| t == "ya29.gen-1" || t == "ya29.gen-2")
    );
    assert!(
        tokens.contains(&"ya29.gen-2".to_owned()),
        "the refresh happened during the run"
    );
}

/// configure-docker killed with SIGKILL at random moments, many times: config.json is always
/// the old or the new content, valid JSON, and no temporary file is ever left as config.json.
#[test]
fn configure_docker_killed_at_random_points_never_corrupts_the_config() {
    let mut env = Env::new();
    let dir = env.path("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    let original =
        r#"{"auths": {"registry.example.com": {"auth": "eDp5"}}, "credsStore": "desktop"}"#;
    std::fs::write(&config, original).unwrap();
    env.set("DOCKER_CONFIG", dir.display().to_string());
    env.set("PATH", "/usr/bin:/bin");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut completed = 0;
    for round in 0..60 {
        let registries = format!("r{round}-docker.pkg.dev");
        let mut child = env
            .command(&["configure-docker", "--registries", &registries])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(next() % 4000));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            completed += 1;
        }
        let text = std::fs::read_to_string(&config).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: corrupt config ({e}): {text}"));
        assert_eq!(
            v["auths"]["registry.example.com"]["auth"], "eDp5",
            "round {round}"
        );
        assert_eq!(v["credsStore"], "desktop");
    }
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config.json" && !n.starts_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    eprintln!("{completed} of 60 runs completed before the kill");
}

#[test]
fn secrets_never_reach_stderr_logs_or_other_verbs_at_debug_level() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    let key_path = env.use_service_account(&server.url("/token"));
    let log = env.path("debug.log");
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    env.set("DOCKER_CREDENTIAL_GCP_LOG_FILE", log.display().to_string());
    let token = creds(&env.get("gcr.io")).2;
    let mut channels = Vec::new();
    for args in [&["config"][..], &["doctor"], &["list"], &["version"]] {
        let out = env.run(args, b"unused");
        channels.push(out.stdout);
        channels.push(out.stderr);
    }
    let bad = env.run(
        &["store"],
        br#"{"ServerURL":"gcr.io","Username":"u","Secret":"hunter2-secret"}"#,
    );
    channels.push(bad.stdout);
    channels.push(bad.stderr);
    channels.push(std::fs::read_to_string(&log).unwrap());
    let key = std::fs::read_to_string(Path::new(&key_path)).unwrap();
    let key_json: serde_json::Value = serde_json::from_str(&key).unwrap();
    let private = key_json["private_key"].as_str().unwrap();
    let key_body = private.lines().nth(3).unwrap();
    for text in &channels {
        assert!(!text.contains(&token), "token leaked: {text}");
        assert!(!text.contains(key_body), "private key leaked: {text}");
        assert!(
            !text.contains("hunter2-secret"),
            "stored secret leaked: {text}"
        );
    }
}
