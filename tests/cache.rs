//! The token cache: one mint serves many gets and processes, a token near its end is
//! replaced, a failed refresh falls back to the cached token, a token minted by a fallback
//! source is served too, the minting lock bounds a stampede and a stuck holder, and an entry
//! or directory another user could have written is neither read nor written.

use crate::support::peers::{Peer, need};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// One mint serves many gets.

#[test]
fn one_token_request_serves_many_gets_across_google_hosts() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let hosts = [
        "gcr.io",
        "us.gcr.io",
        "eu.gcr.io",
        "asia.gcr.io",
        "us-docker.pkg.dev",
        "docker.us-central1.rep.pkg.dev",
    ];
    let mut secrets = std::collections::HashSet::new();
    for i in 0..26 {
        secrets.insert(creds(&env.get(hosts[i % hosts.len()])).2);
    }
    assert_eq!(
        server.count(),
        1,
        "26 gets over 6 hosts must make one token request"
    );
    assert_eq!(secrets.len(), 1);
}

#[test]
fn parallel_cold_gets_make_one_token_request() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let env = Arc::new(env);
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                creds(&env.get(if i % 2 == 0 {
                    "gcr.io"
                } else {
                    "us-docker.pkg.dev"
                }))
                .2
            })
        })
        .collect();
    let secrets: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        server.count(),
        1,
        "32 parallel cold gets must make exactly one token request"
    );
    assert!(secrets.iter().all(|s| s == "ya29.test-1"));
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

#[test]
fn no_cache_mints_every_time() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_NO_CACHE", "1");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-2");
    assert_eq!(server.count(), 2);
    assert!(!env.cache_dir().exists(), "no cache directory is created");
}

#[test]
fn cache_files_are_private_and_in_the_configured_directory() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let dir = env.path("my-cache/sub");
    env.set("DOCKER_CREDENTIAL_GCP_CACHE_DIR", dir.display().to_string());
    creds(&env.get("gcr.io"));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.iter().any(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("token-")
    }));
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }
    assert!(!env.cache_dir().exists());
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

// ---------------------------------------------------------------------------------------------
// Expiry, identity and fallback.

#[test]
fn a_token_with_less_than_five_minutes_left_is_refreshed() {
    let server = token_endpoint(299);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-2");
    assert_eq!(server.count(), 2);
}

#[test]
fn a_changed_credentials_file_is_a_new_identity() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    let path = env.use_service_account(&server.url("/token"));
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    std::fs::write(&path, service_account_json(&server.url("/token")) + "\n").unwrap();
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-2");
}

#[test]
fn when_refresh_fails_a_still_valid_cached_token_is_served_with_a_warning() {
    let server = token_endpoint(200);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.use_service_account(&server.url("/token"));
    let first = creds(&env.get("gcr.io")).2;
    // Same file, same identity; the endpoint now goes away.
    drop(server);
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, first);
    assert!(
        out.stderr.contains("serving the cached token"),
        "{}",
        out.stderr
    );
}

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
// The minting lock.

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

// ---------------------------------------------------------------------------------------------
// Trust: what another local user could have written is not believed.

/// The `get` after the cache was tampered with: the cached token was not believed (token
/// number `n` was minted) and stderr says why.
fn assert_not_trusted(out: &Output, n: usize, why: &str, what: &str) {
    assert_eq!(
        creds(out).2,
        format!("ya29.test-{n}"),
        "{what}: the cached token was not trusted"
    );
    assert!(out.stderr.contains(why), "{what}: {}", out.stderr);
}

#[test]
fn a_cache_entry_or_directory_others_can_write_is_neither_read_nor_written() {
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    std::fs::set_permissions(env.cache_entry(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = env.get("gcr.io");
    assert_not_trusted(
        &out,
        2,
        "writable by group or others",
        "a group-writable entry",
    );

    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    std::fs::set_permissions(env.cache_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.get("gcr.io");
    assert_not_trusted(
        &out,
        2,
        "writable by group or others",
        "a world-writable directory",
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
fn a_cache_entry_or_directory_owned_by_another_user_is_not_trusted() {
    if !need(&[Peer::Root]) {
        return;
    }
    require_root("chown");
    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    std::os::unix::fs::chown(env.cache_entry(), Some(65534), None).unwrap();
    let out = env.get("gcr.io");
    assert_not_trusted(&out, 2, "owned by another user", "a foreign entry");

    let server = token_endpoint(3600);
    let mut env = sa_env(&server);
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    creds(&env.get("gcr.io"));
    std::os::unix::fs::chown(env.cache_dir(), Some(65534), Some(65534)).unwrap();
    let out = env.get("gcr.io");
    assert_not_trusted(&out, 2, "owned by another user", "a foreign directory");
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

/// The clock stepped back (an RTC in local time corrected by NTP): an entry minted "in the
/// future" would otherwise be served for up to 12 hours past the token's real end.
#[test]
fn a_cache_entry_minted_in_the_future_is_not_served() {
    let server = token_endpoint(3600);
    let env = sa_env(&server);
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    let entry = env.cache_entry();
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
    let minted = doc["minted_at"].as_u64().unwrap();
    doc["minted_at"] = (minted + 2 * 3600).into();
    std::fs::write(&entry, doc.to_string()).unwrap();
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-2");
    // Fresh from the new mint: served from the cache again.
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-2");
}
