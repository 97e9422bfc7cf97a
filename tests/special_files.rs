//! A FIFO, a device or a planted symbolic link where the helper expects a regular file: at
//! every path it opens (cache entry, lock, settings, stored-hosts index, credentials, log,
//! gcloud's configuration, a credential source, docker's config.json and daemon.json) it is
//! refused or skipped at once with a message that names it, and never blocks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
