//! Which addresses get a Google token, end to end (the rules themselves are unit-tested in
//! src/hosts.rs): never a non-Google host, a lookalike or a backslash trick, nor a retired bucket
//! host (which gets the migration explanation); the registries declared in the environment or
//! the config file do, and an invalid declaration is skipped with a warning.

use crate::support::*;

#[test]
fn non_google_hosts_and_lookalikes_never_cause_a_token_request() {
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
        // Backslash forms: what a URL parser reads as the user info or a path is not the host.
        "https://evil.com\\@gcr.io",
        "evil.com\\@gcr.io",
        "https://evil.com\\.gcr.io/v2/",
        "https://evil.com\\\\@us-docker.pkg.dev",
    ] {
        let out = env.get(host);
        assert_eq!((out.code, out.stdout.as_str()), (1, NOT_FOUND), "{host}");
    }
    assert_eq!(server.count(), 0);
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
