//! `get` for Google registries: each token source against loopback stand-ins, the cache, the
//! lock, fallthrough and failure reporting. Every test drives the built binary like docker.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use crate::support::*;

#[test]
fn service_account_key_mints_with_a_signed_jwt_at_its_own_token_uri() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let out = env.get("gcr.io");
    let (url, user, secret) = creds(&out);
    assert_eq!(url, "gcr.io");
    assert_eq!(user, "oauth2accesstoken");
    assert_eq!(secret, "ya29.test-1");
    assert_eq!(server.count(), 1);
    let req = &server.requests()[0];
    assert_eq!(
        req.form()["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
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
fn authorized_user_refreshes_at_the_files_token_uri() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    let path = env.path("user.json");
    std::fs::write(&path, authorized_user_json(Some(&server.url("/token")))).unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    let (_, user, secret) = creds(&env.get("europe-west1-docker.pkg.dev"));
    assert_eq!(
        (user.as_str(), secret.as_str()),
        ("oauth2accesstoken", "ya29.test-1")
    );
    let form = server.requests()[0].form();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], USER_REFRESH_TOKEN);
}

#[test]
fn the_well_known_adc_file_under_cloudsdk_config_is_used() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    let dir = env.path("gcloud-config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("application_default_credentials.json"),
        authorized_user_json(Some(&server.url("/token"))),
    )
    .unwrap();
    env.set("CLOUDSDK_CONFIG", dir.display().to_string());
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
}

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

#[test]
fn metadata_server_is_used_with_the_metadata_flavor_header() {
    let md = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", md.host());
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.metadata-1");
    assert_eq!(md.requests()[0].header("metadata-flavor"), Some("Google"));
    creds(&env.get("gcr.io"));
    assert_eq!(md.count(), 1, "metadata tokens are cached too");
}

#[test]
fn a_server_without_the_metadata_flavor_header_is_not_trusted() {
    let impostor = Server::start(|_| {
        Reply::json(
            200,
            serde_json::json!({"access_token": "ya29.fake", "expires_in": 3600}),
        )
    });
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", impostor.host());
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("Metadata-Flavor"), "{}", out.stdout);
    assert!(!out.stdout.contains("ya29.fake"));
}

#[test]
fn a_present_but_failing_source_is_reported_and_the_next_one_used() {
    let md = metadata_server(3600);
    let mut env = Env::new();
    // Warnings on a successful `get` show when the user chooses a log level.
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    let bad = env.path("broken.json");
    std::fs::write(&bad, "{ not json").unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", bad.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,metadata");
    env.set("GCE_METADATA_HOST", md.host());
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.metadata-1");
    assert!(
        out.stderr.contains("failed (broken)") && out.stderr.contains("broken.json"),
        "{}",
        out.stderr
    );
}

#[test]
fn source_order_is_precedence() {
    let server = token_endpoint(3600);
    let md = metadata_server(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("GCE_METADATA_HOST", md.host());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata,adc");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.metadata-1");
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,metadata");
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.test-1");
    assert_eq!((server.count(), md.count()), (1, 1));
}

#[test]
fn when_every_source_fails_the_error_lists_each_with_a_fix() {
    let server = Server::start(|_| {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
    });
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,metadata");
    env.set("GCE_METADATA_HOST", "127.0.0.1:1");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    let msg = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1, "one line: {msg}");
    assert!(
        msg.starts_with("no Google access token could be obtained"),
        "{msg}"
    );
    assert!(
        msg.contains("adc (GOOGLE_APPLICATION_CREDENTIALS=")
            && msg.contains("invalid_grant")
            && msg.contains("Invalid JWT Signature"),
        "{msg}"
    );
    assert!(
        msg.contains("metadata (metadata server 127.0.0.1:1): ") && msg.contains("to fix:"),
        "{msg}"
    );
    assert!(!msg.contains("PRIVATE KEY"), "{msg}");
}

#[test]
fn no_credentials_at_all_answers_not_found_so_public_images_still_pull() {
    let env = Env::new();
    let out = env.get("gcr.io");
    assert_eq!(out.stdout, NOT_FOUND);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("gcloud auth login"), "{}", out.stderr);
}

#[test]
fn a_missing_explicit_credentials_file_is_an_error_naming_it() {
    let mut env = Env::new();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "GOOGLE_APPLICATION_CREDENTIALS names /nonexistent/key.json, which does not exist"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn unknown_or_incomplete_credential_types_get_a_clear_error() {
    for kind in [
        "external_account",
        "impersonated_service_account",
        "external_account_authorized_user",
        "something_new",
    ] {
        let mut env = Env::new();
        let path = env.path("adc.json");
        std::fs::write(&path, serde_json::json!({"type": kind}).to_string()).unwrap();
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        let out = env.get("gcr.io");
        assert_eq!(out.code, 1, "{kind}");
        assert!(
            out.stdout.contains(kind) && out.stdout.contains("credential type"),
            "{kind}: {}",
            out.stdout
        );
    }
}

#[test]
fn plain_http_token_uris_are_refused_off_loopback() {
    let mut env = Env::new();
    env.use_service_account("http://oauth2.example.com/token");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("refusing to send credentials over plain http"),
        "{}",
        out.stdout
    );
}

#[test]
fn non_google_hosts_never_cause_a_token_request() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for host in [
        "gcr.io.evil.com",
        "evilgcr.io",
        "us-docker.pkg.dev.evil.com",
        "https://gcr.io@evil.com",
        "index.docker.io",
        "https://index.docker.io/v1/",
        "quay.io",
        server.host().as_str(),
    ] {
        let out = env.get(host);
        assert_eq!((out.code, out.stdout.as_str()), (1, NOT_FOUND), "{host}");
    }
    assert_eq!(server.count(), 0);
}

#[test]
fn extra_registries_are_treated_as_google() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "registry.internal.example:5000",
    );
    assert_eq!(
        creds(&env.get("registry.internal.example:5000")).2,
        "ya29.test-1"
    );
    assert_eq!(env.get("registry.internal.example:5001").stdout, NOT_FOUND);
}

#[test]
fn extra_registries_can_come_from_the_config_file() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let cfg = env.path(CONFIG_DIR);
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        r#"{"registries": ["proxy.example"], "future_key": 1}"#,
    )
    .unwrap();
    assert_eq!(creds(&env.get("proxy.example")).2, "ya29.test-1");
    let shown = env.run(&["config"], b"");
    assert_eq!(shown.code, 0);
    assert!(
        shown.stdout.contains("proxy.example") && shown.stdout.contains("(config file)"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("unknown key \"future_key\""),
        "{}",
        shown.stdout
    );
}

#[test]
fn bucket_hosts_get_the_migration_explanation() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for host in ["b.gcr.io", "bucket.gcr.io"] {
        let out = env.get(host);
        assert_eq!(out.code, 1);
        assert!(
            out.stdout.contains("no longer served") && out.stdout.contains("re-tag"),
            "{}",
            out.stdout
        );
    }
    assert_eq!(server.count(), 0);
}

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
fn invalid_settings_are_reported_not_ignored() {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "soon");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("DOCKER_CREDENTIAL_GCP_TIMEOUT"),
        "{}",
        out.stdout
    );
}

/// The clock stepped back (an RTC in local time corrected by NTP): an entry minted "in the
/// future" would otherwise be served for up to 12 hours past the token's real end.
#[test]
fn a_cache_entry_minted_in_the_future_is_not_served() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
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
