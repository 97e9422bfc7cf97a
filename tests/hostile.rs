//! Hostile files and environments (issue "Hardening II"): nothing the helper opens or runs can
//! hang it past its deadline, another local user cannot redirect or poison it through the
//! cache directory, a token minted by a fallback source is served from the cache, gcloud's
//! identity includes every input that changes its answer, edits of other programs' files keep
//! everything, and no subcommand panics on a closed or full stdout.

use crate::support::peers::{Peer, need};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// Generous: "did not hang" means well below the minutes a blocked open or pipe would take.
const PROMPTLY: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}

fn timed(f: impl FnOnce() -> Output) -> (Output, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

fn sa_env(server: &Server) -> Env {
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "3");
    env
}

// ---------------------------------------------------------------------------------------------
// A FIFO, device or other non-regular file at any path the helper opens never blocks it.

#[test]
fn a_fifo_at_the_token_cache_entry_is_ignored_and_a_token_minted() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    mkfifo(&env.cache_entry());
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(creds(&out).2, "ya29.test-2");
    assert!(out.stderr.contains("a FIFO"), "{}", out.stderr);
}

#[test]
fn a_fifo_at_the_lock_file_does_not_block_minting() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    mkfifo(&env.cache_dir().join("mint.lock"));
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert!(
        out.stderr.contains("without the cache lock") && out.stderr.contains("a FIFO"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_fifo_at_the_settings_file_is_a_prompt_clear_error() {
    let env = Env::new();
    mkfifo(&env.path(&format!("{CONFIG_DIR}/config.json")));
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("config.json is a FIFO, not a regular file"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_fifo_at_the_stored_hosts_index_is_ignored_with_a_warning() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    mkfifo(&env.path(&format!("{DATA_DIR}/stored-hosts.json")));
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert!(
        out.stderr.contains("ignoring stored credentials"),
        "{}",
        out.stderr
    );
    let (list, took) = timed(|| env.run(&["list"], b"unused"));
    assert!(
        took < PROMPTLY && list.code == 1 && list.stdout.contains("a FIFO"),
        "{}",
        list.stdout
    );
}

#[test]
fn a_fifo_or_device_as_the_credentials_file_is_refused_at_once() {
    for special in ["fifo", "/dev/zero", "/dev/null"] {
        let mut env = Env::new();
        let path = if special == "fifo" {
            let p = env.path("adc.json");
            mkfifo(&p);
            p
        } else {
            PathBuf::from(special)
        };
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        let (out, took) = timed(|| env.get("gcr.io"));
        assert!(took < PROMPTLY, "{special}: {took:?}");
        assert_eq!(out.code, 1, "{special}");
        assert!(
            out.stdout.contains("not a regular file"),
            "{special}: {}",
            out.stdout
        );
    }
}

#[test]
fn a_fifo_as_the_log_file_neither_blocks_nor_fails_the_get() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    let log = env.path("log");
    mkfifo(&log);
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    env.set("DOCKER_CREDENTIAL_GCP_LOG_FILE", log.display().to_string());
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(creds(&out).2, "ya29.test-1");
}

#[test]
fn a_fifo_in_gclouds_configuration_does_not_block_the_probe() {
    let mut env = Env::new();
    let dir = env.path("gcloud");
    mkfifo(&dir.join("active_config"));
    mkfifo(&dir.join("configurations/config_default"));
    env.set("CLOUDSDK_CONFIG", dir.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env.set("PATH", env.path("no-gcloud").display().to_string());
    let (out, took) = timed(|| env.run(&["config"], b""));
    assert!(took < PROMPTLY, "{took:?}");
    assert!(out.stdout.contains("gcloud    present"), "{}", out.stdout);
}

#[test]
fn a_fifo_as_a_credential_source_file_is_a_prompt_error() {
    let sts = Server::start(|_| Reply::json(500, serde_json::json!({})));
    let mut env = Env::new();
    let token = env.path("subject-token");
    mkfifo(&token);
    let adc = env.path("adc.json");
    std::fs::write(
        &adc,
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": sts.url("/v1/token"),
            "credential_source": {"file": token},
        })
        .to_string(),
    )
    .unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string());
    let (out, took) = timed(|| env.get("gcr.io"));
    assert!(took < PROMPTLY, "{took:?}");
    assert!(out.stdout.contains("a FIFO"), "{}", out.stdout);
    assert_eq!(sts.count(), 0);
}

#[test]
fn a_fifo_as_docker_config_json_or_daemon_json_is_refused_at_once() {
    let mut env = Env::new();
    let docker = env.path("docker");
    mkfifo(&docker.join("config.json"));
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let (out, took) = timed(|| env.run(&["configure-docker", "--yes"], b""));
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("a FIFO"), "{}", out.stderr);
    let daemon = env.path("etc/daemon.json");
    mkfifo(&daemon);
    let (out, took) = timed(|| {
        env.run(
            &[
                "configure-mirror",
                "--daemon-json",
                &daemon.display().to_string(),
            ],
            b"",
        )
    });
    assert!(took < PROMPTLY, "{took:?}");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("a FIFO"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Children: a leftover holding stdout, too much output.

fn fake_gcloud(env: &mut Env, script: &str) {
    let bin = env.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let gcloud = bin.join("gcloud");
    std::fs::write(&gcloud, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = env.path("gcloud-config");
    signed_in_gcloud_config(&config);
    env.set("CLOUDSDK_CONFIG", config.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud");
    env.set("PATH", format!("{}:/usr/bin:/bin", bin.display()));
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
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("printed more than 1 MiB on stdout"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("did not finish in time"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
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
// Shared or planted cache directories.

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(
        creds(&out).2,
        "ya29.test-2",
        "the cached token was not trusted"
    );
    assert!(
        out.stderr.contains("writable by group or others"),
        "{}",
        out.stderr
    );
    let entry_mtime = std::fs::metadata(env.cache_entry()).unwrap().mtime();
    let out = env.get("gcr.io");
    assert_eq!(
        creds(&out).2,
        "ya29.test-3",
        "nothing was written there either"
    );
    assert_eq!(
        std::fs::metadata(env.cache_entry()).unwrap().mtime(),
        entry_mtime
    );
}

#[test]
fn a_cache_directory_owned_by_another_user_is_not_used() {
    if !need(&[Peer::Root]) {
        return;
    }
    require_root("chown");
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    std::os::unix::fs::chown(env.cache_dir(), Some(65534), Some(65534)).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-2");
    assert!(
        out.stderr.contains("owned by another user"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_symlink_planted_at_the_lock_path_is_never_followed() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    std::fs::create_dir_all(env.cache_dir()).unwrap();
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = env.path("victim-file");
    std::os::unix::fs::symlink(&target, env.cache_dir().join("mint.lock")).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert!(!target.exists(), "the link's target was created");
}

#[test]
fn a_cache_entry_claiming_more_life_than_any_token_has_is_ignored() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    let entry = env.cache_entry();
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
    doc["expires_at"] = serde_json::json!(doc["expires_at"].as_u64().unwrap() + 30 * 24 * 3600);
    std::fs::write(&entry, doc.to_string()).unwrap();
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-2");
    assert!(
        out.stderr.contains("further ahead than any token lives"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// The cache serves whichever source minted.

/// An authorized_user ADC file whose refresh token the endpoint rejects (or accepts, once the
/// user "logs in again").
fn revoked_user_and_metadata(env: &mut Env, endpoint: &Server, md: &Server) -> PathBuf {
    let adc = env.path("adc.json");
    let mut user: serde_json::Value =
        serde_json::from_str(&authorized_user_json(Some(&endpoint.url("/token")))).unwrap();
    user["refresh_token"] = "1//revoked".into();
    std::fs::write(&adc, user.to_string()).unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,metadata");
    env.set("GCE_METADATA_HOST", md.host());
    adc
}

#[test]
fn a_token_from_a_fallback_source_is_served_from_the_cache() {
    let endpoint = token_endpoint(3600);
    let md = metadata_server(3600);
    let mut env = Env::new();
    let adc = revoked_user_and_metadata(&mut env, &endpoint, &md);
    for _ in 0..3 {
        assert_eq!(creds(&env.get("gcr.io")).2, "ya29.metadata-1");
    }
    assert_eq!(md.count(), 1, "one metadata request for three gets");
    assert_eq!(endpoint.count(), 1, "the revoked source was tried once");

    // The user logs in again: the ADC file changes, so it is tried first again.
    std::fs::write(&adc, authorized_user_json(Some(&endpoint.url("/token")))).unwrap();
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    assert_eq!(md.count(), 1);
}

#[test]
fn parallel_cold_gets_through_a_fallback_source_make_one_request() {
    let endpoint = token_endpoint(3600);
    let md = metadata_server(3600);
    let mut env = Env::new();
    revoked_user_and_metadata(&mut env, &endpoint, &md);
    let env = Arc::new(env);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || creds(&env.get("gcr.io")).2)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "ya29.metadata-1");
    }
    assert_eq!(md.count(), 1);
    assert_eq!(endpoint.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// gcloud's identity is the whole of its inputs.

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
// Edits of other programs' files keep everything.

#[test]
fn editing_a_users_files_as_root_keeps_their_owner() {
    if !need(&[Peer::Root]) {
        return;
    }
    require_root("chown");
    let mut env = Env::new();
    let docker = env.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    std::fs::write(&config, r#"{"auths": {}}"#).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65533)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let out = env.run(&["configure-docker", "--yes"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65533, 0o640)
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("\"gcr.io\": \"gcp\"")
    );

    let daemon = env.path("etc/daemon.json");
    std::fs::create_dir_all(daemon.parent().unwrap()).unwrap();
    std::fs::write(&daemon, "{}").unwrap();
    std::os::unix::fs::chown(&daemon, Some(65534), Some(65533)).unwrap();
    let out = env.run(
        &[
            "configure-mirror",
            "--daemon-json",
            &daemon.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let meta = std::fs::metadata(&daemon).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65533));
}

#[test]
fn repeated_cred_helpers_objects_are_merged_as_docker_reads_them() {
    let mut env = Env::new();
    let docker = env.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    std::fs::write(
        &config,
        r#"{"credHelpers": {"quay.io": "quay"}, "auths": {}, "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}"#,
    )
    .unwrap();
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let out = env.run(&["configure-docker", "--yes"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("\"credHelpers\" more than once"),
        "{}",
        out.stderr
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        v["credHelpers"]["quay.io"], "quay",
        "the first object's mapping is kept"
    );
    assert_eq!(
        v["credHelpers"]["123.dkr.ecr.us-east-1.amazonaws.com"],
        "ecr-login"
    );
    assert_eq!(v["credHelpers"]["gcr.io"], "gcp");
}

// ---------------------------------------------------------------------------------------------
// Output and input edges.

/// Runs the helper with `args` and stdout as a pipe whose reader is already gone.
fn with_closed_stdout(env: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = env
        .command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs the helper with stdout on /dev/full (every write fails with ENOSPC).
fn with_full_stdout(env: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut cmd = env.command(args);
    cmd.stdout(full);
    run_command_keep_stdout(cmd, stdin)
}

fn run_command_keep_stdout(mut cmd: std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn no_subcommand_panics_on_a_closed_or_full_stdout() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CONFIG", env.path("docker").display().to_string());
    let cases: &[(&[&str], &[u8], bool)] = &[
        (&["doctor"], b"", false),
        (&["version"], b"", false),
        (&["config"], b"", false),
        (&["completions", "bash"], b"", false),
        (&["manpage"], b"", false),
        (&["print-access-token"], b"", false),
        (&["configure-docker", "--dry-run"], b"", false),
        (&["list", "--details"], b"", false),
        (&["--help"], b"", false),
        (&["get"], b"gcr.io", true),
        (&["list"], b"unused", true),
    ];
    for (args, stdin, must_fail) in cases {
        for (how, out) in [
            ("closed", with_closed_stdout(&env, args, stdin)),
            ("full", with_full_stdout(&env, args, stdin)),
        ] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("panicked"),
                "{args:?} with a {how} stdout: {stderr}"
            );
            assert_ne!(out.status.code(), Some(101), "{args:?} {how}");
            assert!(
                out.status.code().is_some(),
                "{args:?} {how}: killed by a signal"
            );
            if *must_fail {
                assert_ne!(
                    out.status.code(),
                    Some(0),
                    "{args:?}: an answer nobody received is not a success"
                );
            }
        }
    }
}

#[test]
fn backslash_forms_of_a_google_host_are_not_google() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for address in [
        "https://evil.com\\@gcr.io",
        "evil.com\\@gcr.io",
        "https://evil.com\\.gcr.io/v2/",
        "https://evil.com\\\\@us-docker.pkg.dev",
    ] {
        let out = env.get(address);
        assert_eq!(out.stdout, NOT_FOUND, "{address}");
    }
    assert_eq!(server.count(), 0, "no token was minted for them");
}

#[test]
fn one_invalid_registry_entry_is_reported_and_the_valid_ones_used() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    env.set(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "ar-proxy.corp.example, https://typo.example/x",
    );
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert!(
        out.stderr.contains("https://typo.example/x"),
        "{}",
        out.stderr
    );
    assert_eq!(creds(&env.get("ar-proxy.corp.example")).2, "ya29.test-1");
    let config = env.run(&["config"], b"");
    assert!(
        config.stdout.contains("warning: registries: skipping"),
        "{}",
        config.stdout
    );
    let doctor = env.run(&["doctor"], b"");
    assert!(
        doctor.stdout.contains("settings: registries: skipping"),
        "{}",
        doctor.stdout
    );

    let mut file_env = Env::new();
    file_env.use_service_account(&server.url("/token"));
    let settings = file_env.path(&format!("{CONFIG_DIR}/config.json"));
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, r#"{"registries": ["ok.example", "bad host"]}"#).unwrap();
    assert_eq!(creds(&file_env.get("ok.example")).1, "oauth2accesstoken");
}

/// The pod's service account token is exchanged in memory: a provider terminated in the
/// middle of the exchange leaves it nowhere on disk.
#[test]
fn the_pod_token_never_touches_the_disk_even_when_the_provider_is_terminated() {
    const POD_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.pod-token-on-disk-check.sig";
    let sts = Server::start(|_| {
        std::thread::sleep(Duration::from_secs(3));
        Reply::json(500, serde_json::json!({}))
    });
    let mut env = Env::new();
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    let request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "us-docker.pkg.dev/p/r/i:1",
        "serviceAccountToken": POD_TOKEN,
        "serviceAccountAnnotations": {},
    })
    .to_string();
    let sts_url = sts.url("/v1/token");
    let mut child = env
        .command(&[
            "kubelet-credential-provider",
            "--workload-identity-audience",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
            "--sts-url",
            &sts_url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + PROMPTLY;
    while sts.count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sts.count(), 1, "the exchange started");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let mut found = Vec::new();
    let mut dirs = vec![env.home.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(POD_TOKEN))
            {
                found.push(path);
            }
        }
    }
    assert!(found.is_empty(), "the pod token is on disk: {found:?}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing left in TMPDIR"
    );
}
