//! The wire protocol's edges: bad input on every verb gives a clear error and exit 1, never a
//! panic; the command line for humans; and conformance with the reference implementation,
//! Debian's docker-credential-secretservice, for the cases both must answer alike.

#[cfg(target_os = "linux")]
use crate::support::peers::{Peer, need};
use crate::support::*;

/// A panic exits with 101 and writes "panicked" to stderr; no input may cause one.
fn assert_clean_failure(out: &Output, what: &str) {
    assert_eq!(
        out.code, 1,
        "{what}: stdout={:?} stderr={:?}",
        out.stdout, out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    assert!(
        out.stdout.ends_with('\n') && out.stdout.lines().count() == 1,
        "{what}: one line: {:?}",
        out.stdout
    );
}

#[test]
fn empty_or_blank_input_names_the_missing_server_url() {
    let env = Env::new();
    for verb in ["get", "erase"] {
        for input in [&b""[..], b"   ", b"\n\t\n"] {
            let out = env.run(&[verb], input);
            assert_clean_failure(&out, verb);
            assert_eq!(out.stdout, "no credentials server URL\n");
        }
    }
}

#[test]
fn store_rejects_bad_json_with_a_clear_message() {
    // Every refusal of the parser is unit-tested in src/helper/protocol.rs; here the answer
    // reaches docker as one line and exit status 1.
    let env = Env::new();
    for (input, needle) in [
        (&b"not json"[..], "invalid credentials JSON"),
        (
            br#"{"ServerURL":"gcr.io","Username":"","Secret":"s"}"#,
            "no credentials username",
        ),
    ] {
        let out = env.run(&["store"], input);
        assert_clean_failure(&out, &String::from_utf8_lossy(input));
        assert!(
            out.stdout.contains(needle),
            "{:?}: {}",
            String::from_utf8_lossy(input),
            out.stdout
        );
    }
}

#[test]
fn store_errors_never_echo_the_secret() {
    let env = Env::new();
    let out = env.run(
        &["store"],
        br#"{"ServerURL":"gcr.io","Username":"u","Secret":12345678}"#,
    );
    assert_clean_failure(&out, "secret of the wrong type");
    assert!(!out.stdout.contains("12345678"), "{}", out.stdout);
    let out = env.run(
        &["store"],
        br#"{"ServerURL":"gcr.io","Username":"u","Secret":"hunter2", "#,
    );
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
}

#[test]
fn huge_input_is_refused_without_reading_it_all() {
    let env = Env::new();
    let huge = vec![b'a'; 4 * 1024 * 1024];
    for verb in ["get", "store", "erase", "list"] {
        let out = env.run(&[verb], &huge);
        assert_clean_failure(&out, verb);
        assert!(out.stdout.contains("larger than"), "{verb}: {}", out.stdout);
    }
}

#[test]
fn binary_and_invalid_utf8_input_is_an_error_not_a_panic() {
    let env = Env::new();
    for verb in ["get", "store", "erase"] {
        let out = env.run(&[verb], b"\xff\xfe\x00gcr.io");
        assert_clean_failure(&out, verb);
        assert!(
            out.stdout.contains("not valid UTF-8"),
            "{verb}: {}",
            out.stdout
        );
    }
    let out = env.get("gcr.io\0evil.com");
    assert_clean_failure(&out, "NUL in host");
}

#[test]
fn odd_but_valid_text_for_get_is_simply_not_found() {
    let env = Env::new();
    for input in [
        "{\"ServerURL\":\"gcr.io\"}",
        "[[[[[[[[",
        "a b c",
        "https://",
        "\u{202e}gcr.io",
        &"x".repeat(100_000),
    ] {
        let out = env.get(input);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (1, NOT_FOUND),
            "{input:.40}"
        );
    }
}

#[test]
fn list_ignores_its_input_and_prints_an_empty_object() {
    let env = Env::new();
    for input in [&b"unused"[..], b"", b"anything"] {
        let out = env.run(&["list"], input);
        assert_eq!((out.code, out.stdout.as_str()), (0, "{}\n"));
    }
}

#[test]
fn unknown_verbs_and_missing_verbs_fail_with_usage() {
    let env = Env::new();
    for args in [&["bogus"][..], &[], &["get", "extra"], &["--no-such-flag"]] {
        let out = env.run(args, b"gcr.io");
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains("Usage"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"));
    }
}

#[test]
fn version_and_help_work_for_every_subcommand() {
    let env = Env::new();
    let expected = format!("docker-credential-gcp {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(env.run(&["version"], b"").stdout, expected);
    assert_eq!(env.run(&["--version"], b"").stdout, expected);
    for sub in ["get", "store", "erase", "list", "version", "config"] {
        let out = env.run(&[sub, "--help"], b"");
        assert_eq!(out.code, 0, "{sub}: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage: docker-credential-gcp"),
            "{sub}: {}",
            out.stdout
        );
    }
    let help = env.run(&["--help"], b"").stdout;
    for var in [
        "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES",
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "DOCKER_CREDENTIAL_GCP_TIMEOUT",
        "GCE_METADATA_HOST",
    ] {
        assert!(help.contains(var), "--help documents {var}");
    }
}

#[test]
fn config_shows_each_setting_and_its_origin() {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "7");
    let out = env.run(&["config"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("timeout")
            && out.stdout.contains("7s")
            && out.stdout.contains("(env DOCKER_CREDENTIAL_GCP_TIMEOUT)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(default)"), "{}", out.stdout);
    assert!(out.stdout.contains("adc       absent"), "{}", out.stdout);
}

#[test]
fn a_closed_stdout_does_not_crash_the_helper() {
    let env = Env::new();
    let mut child = spawn(
        env.command(&["get"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    drop(child.stdout.take());
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"quay.io").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[cfg(target_os = "linux")]
/// The reference implementation and ours, in the same Secret Service session, must print the
/// same bytes and exit codes for the cases the protocol defines.
#[test]
fn matches_the_reference_helper_for_the_shared_cases() {
    if !need(&[Peer::Keyring, Peer::SecretService]) {
        return;
    }
    require("docker-credential-secretservice");
    let mut env = Env::new();
    let ss = SecretService::start(env.home.path());
    env.set("DBUS_SESSION_BUS_ADDRESS", ss.address.clone());
    let cases: &[(&str, &[u8])] = &[
        ("get", b""),
        ("erase", b""),
        ("get", b"nohost.example.com"),
        ("get", b"quay.io"),
        ("list", b"unused"),
        ("store", br#"{"ServerURL":"","Username":"u","Secret":"s"}"#),
        (
            "store",
            br#"{"ServerURL":"h.example","Username":"","Secret":"s"}"#,
        ),
        (
            "store",
            br#"{"ServerURL":"h.example","Username":"u","Secret":"s"}"#,
        ),
        ("list", b"unused"),
        ("get", b"h.example"),
        ("erase", b"h.example"),
        ("list", b"unused"),
        ("get", b"h.example"),
    ];
    for (verb, input) in cases {
        let ours = env.run(&[verb], input);
        let reference = run_command(
            env.program("docker-credential-secretservice", &[verb]),
            input,
        );
        assert_eq!(
            (ours.code, ours.stdout.as_str()),
            (reference.code, reference.stdout.as_str()),
            "{verb} {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_man_page_and_completions_come_from_the_command_definitions() {
    let env = Env::new();
    let man = env.run(&["manpage"], b"");
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH docker-credential-gcp 1"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    for sub in [
        "get",
        "store",
        "erase",
        "list",
        "configure\\-docker",
        "configure\\-mirror",
        "doctor",
        "print\\-access\\-token",
        "kubelet\\-credential\\-provider",
    ] {
        assert!(
            man.stdout
                .contains(&format!(".SS \"docker\\-credential\\-gcp {sub}\"")),
            "man page documents {sub}"
        );
    }
    assert!(man.stdout.contains("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES"));
    for (shell, needle) in [
        ("bash", "configure-docker"),
        ("zsh", "configure-docker"),
        ("fish", "configure-docker"),
    ] {
        let out = env.run(&["completions", shell], b"");
        assert_eq!(out.code, 0, "{shell}");
        assert!(
            out.stdout.contains(needle) && out.stdout.contains("include-artifact-registry"),
            "{shell}"
        );
    }
}

#[test]
fn server_url_is_echoed_as_the_client_sent_it() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let (url, _, _) = creds(&env.get("https://us-docker.pkg.dev/v2/\n"));
    assert_eq!(url, "https://us-docker.pkg.dev/v2/");
}

#[test]
fn invalid_settings_are_reported_not_ignored() {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "soon");
    let out = env.get("gcr.io");
    assert_fails_saying(&out, "DOCKER_CREDENTIAL_GCP_TIMEOUT");
}

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

/// Runs the helper with `args` and stdout as a pipe whose reader is already gone.
fn with_closed_stdout(env: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = env.command(args);
    cmd.stdout(writer);
    run_command_keep_stdout(cmd, stdin)
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
    let mut child = spawn(
        cmd.stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
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
