//! End to end: real clients (skopeo, the docker CLI, podman, buildah) talk to a real registry
//! (distribution 2.8) behind gcr.io-style token authentication, and get their credentials from
//! the helper, configured as a `credHelpers` entry exactly as users configure it. Every test
//! checks what the client achieved and the helper calls and token requests it caused.

use crate::support::peers::{Peer, need};
use crate::support::registry::*;
use crate::support::*;

const USER: &str = "oauth2accesstoken";

fn skopeo(rig: &Rig, args: &[&str]) -> Output {
    rig.ok("skopeo", args, b"")
}

fn inspect_args(image: &str) -> Vec<String> {
    vec![
        "inspect".into(),
        "--tls-verify=false".into(),
        format!("docker://{image}"),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// All token requests since `mark` presented `oauth2accesstoken` with an issued token that the
/// helper handed out since `mark`; returns the distinct tokens.
fn access_tokens_used(rig: &Rig, mark: Mark) -> Vec<String> {
    let logins = rig.realm_logins_since(mark);
    assert!(!logins.is_empty(), "the client asked the realm for a token");
    let calls = rig.helper_calls_since(mark);
    let mut tokens = Vec::new();
    for login in logins {
        let (user, token) = login.expect("no anonymous token request");
        assert_eq!(user, USER);
        assert!(
            rig.issued.lock().unwrap().contains(&token),
            "{token} was issued"
        );
        let secret = format!("\"Secret\":\"{token}\"");
        assert!(
            calls.iter().any(|c| c.output.contains(&secret)),
            "{token} came from the helper: {calls:?}"
        );
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    tokens
}

/// Every helper call since `mark` was a successful `get` for the registry host.
fn assert_gets_for(rig: &Rig, mark: Mark, host: &str) -> usize {
    let calls = rig.helper_calls_since(mark);
    assert!(!calls.is_empty(), "the client ran the helper");
    for call in &calls {
        assert_eq!(
            (call.verb.as_str(), call.input.as_str(), call.code),
            ("get", host, 0),
            "{call:?}"
        );
        assert!(call.output.contains("\"Username\":\"oauth2accesstoken\""));
    }
    calls.len()
}

#[test]
fn skopeo_pushes_inspects_lists_and_pulls_with_a_minted_token() {
    if !need(&[Peer::Registry]) {
        return;
    }
    let rig = Rig::start();
    let layout = rig.env.path("layout");
    let image = write_oci_image(&layout, "v1", "hello from the e2e test\n");

    // Anonymous access is refused: the rig is not open.
    let anonymous = http(&rig.host, "GET", "/v2/test/img/tags/list", &[], b"").unwrap();
    assert_eq!(anonymous.status, 401);

    // Push.
    let mark = rig.mark();
    skopeo(
        &rig,
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}", rig.image_ref("test/img:v1")),
        ],
    );
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(rig.google_requests_since(mark), 1);
    let pushed_with = access_tokens_used(&rig, mark);
    assert_eq!(pushed_with, ["ya29.test-1"]);

    // Inspect: the digest is the one built here (the layer was kept as is).
    let mark = rig.mark();
    let out = skopeo(&rig, &strs(&inspect_args(&rig.image_ref("test/img:v1"))));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], image.manifest_digest.as_str());
    assert_eq!(v["Layers"][0], image.layer_digest.as_str());
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(
        rig.google_requests_since(mark),
        0,
        "the cached token is reused"
    );
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);

    // List tags.
    let mark = rig.mark();
    let out = skopeo(
        &rig,
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}", rig.image_ref("test/img")),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Tags"], serde_json::json!(["v1"]));
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);

    // Pull into a new OCI layout: the same manifest and config.
    let mark = rig.mark();
    let pulled = rig.env.path("pulled");
    skopeo(
        &rig,
        &[
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}", rig.image_ref("test/img:v1")),
            &format!("oci:{}:copy", pulled.display()),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.as_str()
    );
    let config = &image.config_digest["sha256:".len()..];
    assert!(pulled.join("blobs/sha256").join(config).is_file());
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(rig.google_requests_since(mark), 0);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);
    assert_eq!(
        rig.google.count(),
        1,
        "one token request for the whole session"
    );
}

fn docker_manifest_inspect(rig: &Rig, image: &str) -> serde_json::Value {
    let out = rig.ok("docker", &["manifest", "inspect", "--insecure", image], b"");
    serde_json::from_str(&out.stdout).expect("docker manifest inspect prints JSON")
}

#[test]
fn docker_cli_inspects_a_manifest_with_a_minted_token() {
    if !need(&[Peer::Docker, Peer::Registry]) {
        return;
    }
    require("docker");
    let rig = Rig::start();
    let image = rig.seed_image("test/img:v1");

    let mark = rig.mark();
    let manifest = docker_manifest_inspect(&rig, &rig.image_ref("test/img:v1"));
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
    assert_eq!(manifest["layers"][0]["digest"], image.layer_digest.as_str());
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);
}

/// The clients that read a manifest here: skopeo and the docker CLI.
fn readers() -> Vec<&'static str> {
    require("docker");
    vec!["skopeo", "docker"]
}

/// `client` reads the manifest of `image` and must be refused by the registry.
fn assert_refused(rig: &Rig, client: &str, image: &str) {
    let out = match client {
        "skopeo" => rig.run("skopeo", &strs(&inspect_args(image)), b""),
        _ => rig.run("docker", &["manifest", "inspect", "--insecure", image], b""),
    };
    assert_ne!(out.code, 0, "{client} must be refused: {}", out.stdout);
    let said = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(said.contains("unauthorized"), "{client}: {said}");
}

#[test]
fn without_the_helper_the_registry_refuses_the_client() {
    if !need(&[Peer::Docker, Peer::Registry]) {
        return;
    }
    let rig = Rig::start();
    rig.seed_image("test/img:v1");
    rig.set_cred_helpers(&[]);

    for client in readers() {
        let mark = rig.mark();
        assert_refused(&rig, client, &rig.image_ref("test/img:v1"));
        assert!(rig.helper_calls_since(mark).is_empty());
        assert_eq!(rig.google_requests_since(mark), 0);
        let logins = rig.realm_logins_since(mark);
        assert!(
            !logins.is_empty() && logins.iter().all(Option::is_none),
            "{client} asked anonymously: {logins:?}"
        );
    }
}

#[test]
fn a_token_the_registry_does_not_know_is_refused() {
    if !need(&[Peer::Docker, Peer::Registry]) {
        return;
    }
    let mut rig = Rig::start();
    rig.seed_image("test/img:v1");
    // The helper now mints at a token endpoint the registry's token server does not trust.
    let rogue = token_endpoint(3600);
    rig.env.use_service_account(&rogue.url("/token"));

    for client in readers() {
        let mark = rig.mark();
        assert_refused(&rig, client, &rig.image_ref("test/img:v1"));
        let calls = rig.helper_calls_since(mark);
        assert!(!calls.is_empty(), "{client} ran the helper");
        for call in &calls {
            assert_eq!((call.verb.as_str(), call.code), ("get", 0), "{call:?}");
            assert!(
                call.output.contains("\"Secret\":\"ya29.test-1\""),
                "{call:?}"
            );
        }
        let logins = rig.realm_logins_since(mark);
        assert!(!logins.is_empty());
        for login in logins {
            let (user, token) = login.expect("the client sent the helper's credentials");
            assert_eq!((user.as_str(), token.as_str()), (USER, "ya29.test-1"));
            assert!(!rig.issued.lock().unwrap().contains(&token));
        }
    }
    assert_eq!(rogue.count(), 1, "one token, minted once and cached");
    assert_eq!(rig.google.count(), 0);
}

/// Tokens with less than the helper's 5-minute margin left are minted anew on every `get`:
/// each client run then presents a new token, and the registry accepts each of them.
#[test]
fn a_token_about_to_expire_is_replaced_and_the_new_one_is_accepted() {
    if !need(&[Peer::Registry]) {
        return;
    }
    let rig = Rig::start_with_token_lifetime(200);
    let image = rig.seed_image("test/img:v1");
    let mut seen = Vec::new();
    for round in 1..=2 {
        let mark = rig.mark();
        let out = skopeo(&rig, &strs(&inspect_args(&rig.image_ref("test/img:v1"))));
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["Digest"], image.manifest_digest.as_str());
        let gets = assert_gets_for(&rig, mark, &rig.host);
        assert_eq!(rig.google_requests_since(mark), gets, "one mint per get");
        let tokens = access_tokens_used(&rig, mark);
        assert!(!tokens.is_empty(), "round {round}");
        for token in tokens {
            assert!(!seen.contains(&token), "{token} was not reused");
            seen.push(token);
        }
    }
}

#[test]
fn a_host_the_helper_does_not_serve_is_accessed_anonymously() {
    if !need(&[Peer::Docker, Peer::Registry]) {
        return;
    }
    let rig = Rig::start();
    // A second registry, open to anyone, also routed to the helper (as a too-wide credHelpers
    // configuration would); it is not a Google registry for the helper.
    let open = Registry::start(None);
    rig.set_cred_helpers(&[&rig.host, &open.host]);
    let layout = rig.env.path("layout");
    let image = write_oci_image(&layout, "v1", "hello, open registry\n");

    let mark = rig.mark();
    skopeo(
        &rig,
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/test/open:v1", open.host),
        ],
    );
    let out = skopeo(
        &rig,
        &strs(&inspect_args(&format!("{}/test/open:v1", open.host))),
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], image.manifest_digest.as_str());
    let calls = rig.helper_calls_since(mark);
    assert!(!calls.is_empty(), "the clients asked the helper");
    for call in &calls {
        assert_eq!(
            (call.verb.as_str(), call.input.as_str(), call.code),
            ("get", open.host.as_str(), 1),
            "{call:?}"
        );
        assert_eq!(call.output, NOT_FOUND.trim_end());
    }
    assert_eq!(rig.google_requests_since(mark), 0, "no token is minted");
    assert!(
        rig.realm_logins_since(mark).is_empty(),
        "the token server was not involved"
    );

    {
        require("docker");
        let mark = rig.mark();
        let manifest = docker_manifest_inspect(&rig, &format!("{}/test/open:v1", open.host));
        assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
        let calls = rig.helper_calls_since(mark);
        assert!(!calls.is_empty(), "docker asked the helper");
        assert!(calls.iter().all(|c| c.input == open.host && c.code == 1));
        assert_eq!(rig.google.count(), 0);
    }
}

#[test]
fn docker_login_credentials_win_until_logout() {
    if !need(&[Peer::Docker, Peer::Registry, Peer::Keyring]) {
        return;
    }
    require("docker");
    let mut rig = Rig::start();
    let ss = SecretService::start(rig.env.home.path());
    rig.env.set("DBUS_SESSION_BUS_ADDRESS", ss.address.clone());
    let image = rig.seed_image("test/img:v1");
    let key = service_account_json(&rig.google.token_uri());

    // docker login: the registry checks the key (through its token server), docker stores it.
    let mark = rig.mark();
    rig.docker_login("_json_key", key.as_bytes());
    let calls = rig.helper_calls_since(mark);
    let stores: Vec<_> = calls.iter().filter(|c| c.verb == "store").collect();
    assert_eq!(stores.len(), 1, "{calls:?}");
    let stored: serde_json::Value = serde_json::from_str(&stores[0].input).unwrap();
    assert_eq!(stored["Username"], "_json_key");
    assert_eq!(stored["ServerURL"], rig.host.as_str());
    assert_eq!(stores[0].code, 0);
    assert!(calls.iter().all(|c| c.verb == "get" || c.verb == "store"));
    let logins = rig.realm_logins_since(mark);
    assert!(!logins.is_empty());
    assert!(
        logins
            .iter()
            .all(|l| l.as_ref().is_some_and(|(u, _)| u == "_json_key"))
    );
    assert_eq!(rig.google_requests_since(mark), 0);
    let config = std::fs::read_to_string(rig.docker_config.join("config.json")).unwrap();
    assert!(!config.contains("PRIVATE KEY"), "{config}");

    // The stored key is used: no Google token request at all.
    let mark = rig.mark();
    let manifest = docker_manifest_inspect(&rig, &rig.image_ref("test/img:v1"));
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
    let calls = rig.helper_calls_since(mark);
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!((call.verb.as_str(), call.code), ("get", 0));
        assert!(
            call.output.contains("\"Username\":\"_json_key\""),
            "{call:?}"
        );
    }
    let logins = rig.realm_logins_since(mark);
    assert!(!logins.is_empty());
    for login in logins {
        let (user, password) = login.unwrap();
        assert_eq!(
            (user.as_str(), password.as_str()),
            ("_json_key", key.as_str())
        );
    }
    assert_eq!(rig.google.count(), 0);

    // docker logout erases; then the helper mints again for this (declared Google) host.
    let mark = rig.mark();
    rig.ok("docker", &["logout", &rig.host], b"");
    let calls = rig.helper_calls_since(mark);
    assert!(
        calls
            .iter()
            .any(|c| c.verb == "erase" && c.input == rig.host && c.code == 0)
    );
    assert_eq!(
        rig.env.run(&["list", "--details"], b"").stdout,
        "no credentials stored with `docker login`\n"
    );

    let mark = rig.mark();
    docker_manifest_inspect(&rig, &rig.image_ref("test/img:v1"));
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);
}

#[test]
fn gcloud_supplies_the_token_end_to_end() {
    if !need(&[Peer::Registry, Peer::Gcloud]) {
        return;
    }
    require("gcloud");
    let mut rig = Rig::start();
    let image = rig.seed_image("test/img:v1");
    let gcloud_config = rig.env.path("gcloud-config");
    rig.env
        .set("CLOUDSDK_CONFIG", gcloud_config.display().to_string())
        .set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud")
        .unset("GOOGLE_APPLICATION_CREDENTIALS");
    let token = "ya29.from-gcloud-e2e";
    let token_file = rig.env.path("access-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    rig.ok(
        "gcloud",
        &[
            "config",
            "set",
            "auth/access_token_file",
            &token_file.display().to_string(),
        ],
        b"",
    );
    // The token stands for one Google issued to the gcloud user.
    rig.issued.lock().unwrap().insert(token.to_owned());

    let mark = rig.mark();
    let out = skopeo(&rig, &strs(&inspect_args(&rig.image_ref("test/img:v1"))));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], image.manifest_digest.as_str());
    assert_gets_for(&rig, mark, &rig.host);
    for call in rig.helper_calls_since(mark) {
        assert!(call.output.contains(token), "{call:?}");
    }
    assert_eq!(access_tokens_used(&rig, mark), [token]);
    assert_eq!(rig.google.count(), 0, "the adc source was not used");
}

/// Global options that keep podman and buildah inside the test's temporary directories.
fn storage_args(rig: &Rig, tool: &str) -> Vec<String> {
    let root = rig.env.path(&format!("{tool}-root"));
    let runroot = rig.env.path(&format!("{tool}-runroot"));
    let mut args = vec![
        "--root".to_owned(),
        root.display().to_string(),
        "--runroot".to_owned(),
        runroot.display().to_string(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    if tool == "podman" {
        // Podman's own state (normally under /run/libpod) also goes to the test's directory.
        let tmpdir = rig.env.path("podman-tmp");
        args.extend([
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=none".to_owned(),
            "--tmpdir".to_owned(),
            tmpdir.display().to_string(),
        ]);
    }
    args
}

/// `tool` (podman or buildah) pulls the seeded image and pushes it under a new name, with
/// credentials from the helper for both.
fn pull_and_push_with(tool: &str) {
    require(tool);
    // Rootless podman and buildah would need subordinate ids and user namespaces.
    require_root(tool);
    let rig = Rig::start();
    let image = rig.seed_image("test/img:v1");
    let global = storage_args(&rig, tool);
    let run = |args: &[&str]| {
        let mut all = strs(&global);
        all.extend_from_slice(args);
        rig.ok(tool, &all, b"")
    };

    let mark = rig.mark();
    let source = rig.image_ref("test/img:v1");
    run(&["pull", "--tls-verify=false", &source]);
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);

    let mark = rig.mark();
    let target = rig.image_ref(&format!("test/{tool}:v2"));
    run(&[
        "push",
        "--tls-verify=false",
        &source,
        &format!("docker://{target}"),
    ]);
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(
        rig.google_requests_since(mark),
        0,
        "the cached token is reused"
    );
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);

    // What was pushed is the same image (layers may have been recompressed).
    let out = skopeo(
        &rig,
        &[
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
    );
    let config: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([image.diff_id])
    );
}

#[test]
fn podman_pulls_and_pushes_with_a_minted_token() {
    if !need(&[Peer::Podman, Peer::Root, Peer::Registry]) {
        return;
    }
    pull_and_push_with("podman");
}

#[test]
fn buildah_pulls_and_pushes_with_a_minted_token() {
    if !need(&[Peer::Buildah, Peer::Root, Peer::Registry]) {
        return;
    }
    pull_and_push_with("buildah");
}

/// Google registry hosts for a long `credHelpers` list, as `gcloud auth configure-docker`
/// writes for every region.
fn google_hosts(count: usize) -> Vec<String> {
    const REGIONS: [&str; 44] = [
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "northamerica-south1",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-east7",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
        "us-west8",
    ];
    let mut hosts: Vec<String> = ["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"]
        .iter()
        .chain(&["marketplace.gcr.io", "staging-k8s.gcr.io"])
        .chain(&[
            "us-docker.pkg.dev",
            "europe-docker.pkg.dev",
            "asia-docker.pkg.dev",
        ])
        .map(|h| h.to_string())
        .collect();
    for region in REGIONS {
        hosts.push(format!("{region}-docker.pkg.dev"));
        hosts.push(format!("docker.{region}.rep.pkg.dev"));
    }
    hosts.truncate(count);
    assert_eq!(hosts.len(), count);
    hosts
}

/// Legacy `docker build` runs `get` once for every `credHelpers` key before it starts. With 98
/// keys that is 98 helper processes; all of them share one token request.
#[test]
fn a_legacy_build_sweep_over_98_cred_helpers_makes_one_token_request() {
    if !need(&[Peer::Registry]) {
        return;
    }
    let rig = Rig::start();
    let mut hosts = google_hosts(97);
    hosts.push(rig.host.clone());
    rig.set_cred_helpers(&strs(&hosts));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rig.docker_config.join("config.json")).unwrap(),
    )
    .unwrap();
    let keys: Vec<String> = config["credHelpers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 98);

    let mut times = Vec::new();
    for round in 0..2 {
        let started = std::time::Instant::now();
        for key in &keys {
            let (url, user, secret) = creds(&rig.env.get(key));
            assert_eq!((url.as_str(), user.as_str()), (key.as_str(), USER));
            assert_eq!(secret, "ya29.test-1", "round {round}, {key}");
        }
        times.push(started.elapsed());
    }
    eprintln!(
        "credential sweep over {} credHelpers: {:?} cold (one token minted), {:?} cached",
        keys.len(),
        times[0],
        times[1]
    );
    assert_eq!(rig.google.count(), 1, "192 gets, one token request");

    // The token works at the registry: a real client with this configuration gets in.
    let image = rig.seed_image("test/img:v1");
    let mark = rig.mark();
    let out = skopeo(&rig, &strs(&inspect_args(&rig.image_ref("test/img:v1"))));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], image.manifest_digest.as_str());
    assert_gets_for(&rig, mark, &rig.host);
    assert_eq!(access_tokens_used(&rig, mark), ["ya29.test-1"]);
}
