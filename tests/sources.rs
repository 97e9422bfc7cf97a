//! `get` for Google registries, source by source: service account keys and authorized-user
//! files (named or gcloud's well-known file), the metadata server, the order of the sources,
//! falling through a failing one, and how a missing, malformed or unusable credentials file is
//! reported. Every test drives the built binary like docker, against loopback stand-ins.

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
    assert_fails_saying(&out, "Metadata-Flavor");
    assert!(!out.stdout.contains("ya29.fake"));
}

#[test]
fn a_present_but_failing_source_is_reported_and_the_next_one_used() {
    let md = metadata_server(3600);
    let mut env = Env::new();
    let bad = env.path("broken.json");
    std::fs::write(&bad, "{ not json").unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", bad.display().to_string());
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,metadata");
    env.set("GCE_METADATA_HOST", md.host());
    env.set("DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES", "0");
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.metadata-1");
    // At the default log level a `get` that answers says nothing on stderr: older
    // testcontainers-java reads stderr as part of the answer.
    assert_eq!(out.stderr, "");
    // Warnings on a successful `get` show when the user chooses a log level (no cache: the
    // cached token would answer without trying the broken file again).
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    env.set("DOCKER_CREDENTIAL_GCP_NO_CACHE", "1");
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.metadata-2");
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
    assert_fails_saying(
        &out,
        "GOOGLE_APPLICATION_CREDENTIALS names /nonexistent/key.json, which does not exist",
    );
}

/// Every way a credentials file can be malformed is unit-tested in src/token/credentials.rs;
/// here a bad file fails the `get` with its path and the problem, and a key that only fails
/// when it is used is reported the same way.
#[test]
fn a_malformed_credentials_file_fails_the_get_naming_the_file_and_the_problem() {
    let files: &[(&str, &str)] = &[
        ("", "not valid JSON"),
        (
            "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"not a key\"}",
            "private key",
        ),
        (
            "{\"type\":\"external_account\"}",
            "credential type \"external_account\"",
        ),
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
