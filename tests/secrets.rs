//! Secrets stay where they belong: the access token only on `get`'s stdout, and neither it, a
//! private key nor a stored secret on stderr, in the log file (at debug level, which must
//! stay private) or in another verb's output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

#[test]
fn the_token_never_appears_outside_get_output_even_at_debug_level() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let log = env.path("helper.log");
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    env.set("DOCKER_CREDENTIAL_GCP_LOG_FILE", log.display().to_string());
    let out = env.get("gcr.io");
    let token = creds(&out).2;
    let second = env.get("gcr.io");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("minting a token"),
        "the log file is written: {logged}"
    );
    let key = std::fs::read_to_string(fixture("test-sa-key.pem")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    for text in [&out.stderr, &second.stderr, &logged] {
        assert!(!text.contains(&token), "token leaked: {text}");
        assert!(!text.contains(key_line), "key leaked: {text}");
    }
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
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
