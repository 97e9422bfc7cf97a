//! Several Google identities on one machine: identity rules in the config file map registry
//! hosts and image paths to credential files, gcloud configurations, the metadata server,
//! impersonation and self-signed JWTs. Each identity has its own cache entries, lock and
//! remembered failures; the stand-ins here issue a different token per identity and record
//! who asked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::kubelet::{self, Kubelet, Pod, Release};
use crate::support::peers::{Peer, need};
use crate::support::*;

const EMAIL_A: &str = "puller@project-a.iam.gserviceaccount.com";
const EMAIL_B: &str = "pusher@project-b.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const READ_ONLY: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";

/// The two fixture keys: A's e-mail signs with the first, B's with the second.
fn key_pem(email: &str) -> String {
    let name = if email == EMAIL_B {
        "test-sa-key-2.pem"
    } else {
        "test-sa-key.pem"
    };
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn public_key(email: &str) -> Vec<u8> {
    let name = if email == EMAIL_B {
        "test-sa-key-2.pub.der"
    } else {
        "test-sa-key.pub.der"
    };
    std::fs::read(fixture(name)).unwrap()
}

/// Writes a service-account key file for `email` whose token endpoint is `token_uri`.
fn key_file(env: &Env, name: &str, email: &str, token_uri: &str) -> PathBuf {
    let path = env.path(name);
    let doc = json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": format!("kid-{name}"),
        "private_key": key_pem(email),
        "client_email": email,
        "token_uri": token_uri,
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

fn b64(part: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .unwrap_or_default()
}

/// A JWT's header and claims, after checking its RS256 signature with `email`'s public key.
fn verified(jwt: &str, email: &str) -> Option<(Value, Value)> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key(email),
    );
    key.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &b64(parts[2]),
    )
    .ok()?;
    Some((
        serde_json::from_slice(&b64(parts[0])).ok()?,
        serde_json::from_slice(&b64(parts[1])).ok()?,
    ))
}

/// The claims of the JWT bearer assertion in a token request.
fn assertion_claims(req: &Request) -> Value {
    let form = req.form();
    let jwt = form.get("assertion").cloned().unwrap_or_default();
    let part = jwt.split('.').nth(1).unwrap_or("");
    serde_json::from_slice(&b64(part)).unwrap_or_default()
}

/// A token endpoint for both keys: an assertion signed with its issuer's key gets
/// `ya29.LOCAL-N`, where LOCAL is the e-mail's name and N counts that identity's tokens;
/// anything else `invalid_grant`. Each answer takes `delay`.
fn identity_endpoint(delay: Duration) -> Server {
    let issued = std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new());
    Server::start(move |req| {
        std::thread::sleep(delay);
        let form = req.form();
        let jwt = form.get("assertion").cloned().unwrap_or_default();
        let iss = assertion_claims(req)["iss"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let ok = form.get("grant_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            && [EMAIL_A, EMAIL_B].contains(&iss.as_str())
            && verified(&jwt, &iss).is_some();
        if !ok {
            return Reply::json(400, json!({"error": "invalid_grant"}));
        }
        let mut issued = issued.lock().unwrap();
        let n = issued.entry(iss.clone()).or_default();
        *n += 1;
        let local = iss.split('@').next().unwrap();
        Reply::json(
            200,
            json!({"access_token": format!("ya29.{local}-{n}"), "expires_in": 3600, "token_type": "Bearer"}),
        )
    })
}

/// Who asked `endpoint` for a token, in order (the assertions' `iss`).
fn who_asked(endpoint: &Server) -> Vec<String> {
    endpoint
        .requests()
        .iter()
        .map(|r| {
            assertion_claims(r)["iss"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

/// The scopes each assertion asked for, in order.
fn scopes_asked(endpoint: &Server) -> Vec<String> {
    endpoint
        .requests()
        .iter()
        .map(|r| {
            assertion_claims(r)["scope"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Writes the helper's config file (where it looks by default) with these rules.
fn write_rules(env: &Env, rules: Value) {
    let dir = env.path(CONFIG_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        json!({ "identities": rules }).to_string(),
    )
    .unwrap();
}

/// The secret `get` answers for `server`.
fn token(env: &Env, server: &str) -> String {
    creds(&env.get(server)).2
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The token cache entries and minting locks in `dir`.
fn cache_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn gcloud_set(env: &Env, args: &[&str]) {
    let out = run_command(env.program("gcloud", args), b"");
    assert_eq!(out.code, 0, "gcloud {args:?}: {}", out.stderr);
}

#[test]
fn two_keys_a_gcloud_configuration_and_the_metadata_server_each_serve_their_own_host() {
    if !need(&[Peer::Gcloud]) {
        return;
    }
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("GCE_METADATA_HOST", metadata.host());
    env.set("CLOUDSDK_CONFIG", path_str(&env.path("gcloud")));
    // Real gcloud, offline: the active configuration and "work" name different token files.
    let work_token = env.path("work-token");
    let active_token = env.path("active-token");
    std::fs::write(&work_token, "ya29.gcloud-work\n").unwrap();
    std::fs::write(&active_token, "ya29.gcloud-active\n").unwrap();
    gcloud_set(
        &env,
        &[
            "config",
            "set",
            "auth/access_token_file",
            &path_str(&active_token),
        ],
    );
    gcloud_set(
        &env,
        &[
            "config",
            "configurations",
            "create",
            "work",
            "--no-activate",
        ],
    );
    gcloud_set(
        &env,
        &[
            "--configuration",
            "work",
            "config",
            "set",
            "auth/access_token_file",
            &path_str(&work_token),
        ],
    );
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["gcr.io"], "credentials_file": a},
            {"match": ["europe-docker.pkg.dev"], "credentials_file": b},
            {"match": ["us-docker.pkg.dev"], "gcloud_configuration": "work"},
            {"match": ["asia.gcr.io"], "source": "metadata"},
        ]),
    );
    for _ in 0..2 {
        assert_eq!(token(&env, "gcr.io"), "ya29.puller-1");
        assert_eq!(token(&env, "europe-docker.pkg.dev"), "ya29.pusher-1");
        assert_eq!(token(&env, "us-docker.pkg.dev"), "ya29.gcloud-work");
        assert_eq!(token(&env, "asia.gcr.io"), "ya29.metadata-1");
    }
    // One request per identity; the second round came from each identity's cache entry.
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_B]);
    assert_eq!(metadata.count(), 1);
    assert_eq!(cache_files(&env.cache_dir(), "token-", ".json").len(), 4);
    // An address no rule covers uses the token sources in order (here `adc`, absent).
    assert_eq!(env.get("eu.gcr.io").stdout, NOT_FOUND);
}

#[test]
fn a_token_minted_for_one_identity_is_never_served_for_an_address_mapped_to_another() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["gcr.io", "*.gcr.io"], "credentials_file": a},
            {"match": ["*-docker.pkg.dev"], "credentials_file": b},
        ]),
    );
    // Alternating addresses: each answer is its own identity's token, minted once.
    for _ in 0..2 {
        for (host, expected) in [
            ("gcr.io", "ya29.puller-1"),
            ("us-docker.pkg.dev", "ya29.pusher-1"),
            ("eu.gcr.io", "ya29.puller-1"),
            ("docker.us-central1.rep.pkg.dev", "ya29.metadata-1"),
            ("europe-west1-docker.pkg.dev", "ya29.pusher-1"),
        ] {
            assert_eq!(token(&env, host), expected, "{host}");
        }
    }
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_B]);
    assert_eq!(metadata.count(), 1);
    // Moving a host to the other rule moves it to the other identity at once.
    write_rules(
        &env,
        json!([
            {"match": ["*-docker.pkg.dev", "gcr.io"], "credentials_file": b},
            {"match": ["*.gcr.io"], "credentials_file": a},
        ]),
    );
    assert_eq!(token(&env, "gcr.io"), "ya29.pusher-1");
    assert_eq!(token(&env, "eu.gcr.io"), "ya29.puller-1");
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_B]);
}

#[test]
fn a_failing_identity_neither_holds_up_nor_poisons_another() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let hanging = Hanging::start();
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2");
    let a = key_file(&env, "a.json", EMAIL_A, &hanging.url());
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["gcr.io"], "credentials_file": a},
            {"match": ["us-docker.pkg.dev"], "credentials_file": b},
        ]),
    );
    // A's mint hangs until its deadline, holding A's lock; B's get does not wait for it.
    let slow = {
        let cmd = env.command(&["get"]);
        std::thread::spawn(move || run_command(cmd, b"gcr.io"))
    };
    let started = Instant::now();
    while hanging.connections() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "A never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (out, took) = timed(|| env.get("us-docker.pkg.dev"));
    assert_eq!(creds(&out).2, "ya29.pusher-1");
    assert!(
        took < Duration::from_millis(1500),
        "B waited for A: {took:?}"
    );
    let failed = slow.join().unwrap();
    assert_fails_saying(&failed, "no Google access token could be obtained");
    // A's failure is remembered for A only: answered at once, without asking again.
    let asked = hanging.connections();
    let (again, took) = timed(|| env.get("gcr.io"));
    assert_fails_saying(&again, "s ago; tried again in");
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(hanging.connections(), asked);
    assert_eq!(token(&env, "us-docker.pkg.dev"), "ya29.pusher-1");
    assert_eq!(who_asked(&endpoint), [EMAIL_B]);
    // Each identity has its own lock and its own remembered failure.
    assert_eq!(cache_files(&env.cache_dir(), "mint-", ".lock").len(), 2);
    assert_eq!(cache_files(&env.cache_dir(), "fail-", ".json").len(), 1);
}

#[test]
fn parallel_cold_gets_for_two_identities_make_one_request_each() {
    let endpoint = identity_endpoint(Duration::from_millis(400));
    let mut env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["gcr.io"], "credentials_file": a},
            {"match": ["us-docker.pkg.dev"], "credentials_file": b},
        ]),
    );
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "10");
    let gets: Vec<_> = (0..16)
        .map(|i| {
            let host = if i % 2 == 0 {
                "gcr.io"
            } else {
                "us-docker.pkg.dev"
            };
            let cmd = env.command(&["get"]);
            std::thread::spawn(move || (host, run_command(cmd, host.as_bytes())))
        })
        .collect();
    for get in gets {
        let (host, out) = get.join().unwrap();
        let expected = if host == "gcr.io" {
            "ya29.puller-1"
        } else {
            "ya29.pusher-1"
        };
        assert_eq!(creds(&out).2, expected, "{host}");
    }
    let mut asked = who_asked(&endpoint);
    asked.sort();
    assert_eq!(asked, [EMAIL_A, EMAIL_B], "one request per identity");
}

#[test]
fn path_rules_choose_each_images_identity_and_the_kubelet_never_offers_one_for_another() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    let config = env.path("provider-identities.json");
    std::fs::write(
        &config,
        json!({"identities": [
            {"match": ["us-docker.pkg.dev/team-a/*"], "credentials_file": a},
            {"match": ["us-docker.pkg.dev", "gcr.io"], "credentials_file": b},
        ]})
        .to_string(),
    )
    .unwrap();
    let provider = kubelet::decode_config(
        &kubelet::example_config("credential-provider-config.json"),
        Release::V1_34Plus,
    )
    .unwrap()
    .remove(0);
    let mut kubelet = Kubelet::new(provider);
    kubelet
        .set_env("DOCKER_CREDENTIAL_GCP_CONFIG", &path_str(&config))
        .set_env(
            "DOCKER_CREDENTIAL_GCP_CACHE_DIR",
            &path_str(&env.path("kubelet-cache")),
        )
        .set_env("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc");
    let pod = Pod::default();
    // Each pull is offered exactly its own identity's token, whatever the kubelet cached
    // from the pulls before it.
    for (image, expected) in [
        ("us-docker.pkg.dev/team-a/app:1", "ya29.puller-1"),
        ("us-docker.pkg.dev/team-b/app:1", "ya29.pusher-1"),
        ("us-docker.pkg.dev/team-a/other:2", "ya29.puller-1"),
        ("us-docker.pkg.dev/team-ab/x:1", "ya29.pusher-1"),
        ("gcr.io/p/app:1", "ya29.pusher-1"),
        ("us-docker.pkg.dev/team-a/app:1", "ya29.puller-1"),
        ("gcr.io/p/other:1", "ya29.pusher-1"),
        ("us-docker.pkg.dev/team-b/app:2", "ya29.pusher-1"),
    ] {
        let offered = kubelet.lookup(image, &pod);
        let passwords: Vec<&str> = offered.iter().map(|(_, a)| a.password.as_str()).collect();
        assert_eq!(passwords, [expected], "{image}: {offered:?}");
    }
    // Images of a host split by path are answered for that image only; a host without path
    // rules for its own key only, per registry.
    let answers: Vec<(String, Vec<String>)> = kubelet
        .execs
        .iter()
        .map(|e| {
            let r = e.result.as_ref().unwrap();
            (
                r.cache_key_type.clone(),
                r.auth.iter().map(|(k, _)| k.clone()).collect(),
            )
        })
        .collect();
    let expect = |kind: &str, key: &str| (kind.to_owned(), vec![key.to_owned()]);
    assert_eq!(
        answers,
        [
            expect("Image", "us-docker.pkg.dev/team-a/"),
            expect("Image", "us-docker.pkg.dev"),
            expect("Image", "us-docker.pkg.dev/team-a/"),
            expect("Image", "us-docker.pkg.dev"),
            expect("Registry", "gcr.io"),
            expect("Image", "us-docker.pkg.dev"),
        ],
        "six runs: the repeated team-a image and the second gcr.io image came from the kubelet's cache"
    );
    // The kubelet only pulls: both identities were asked for the read-only scope.
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_B]);
    assert_eq!(scopes_asked(&endpoint), [READ_ONLY, READ_ONLY]);
}

#[test]
fn kubelet_scopes_widens_the_providers_tokens_and_a_rules_scopes_win() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([{"match": ["gcr.io"], "credentials_file": a, "scopes": ["cloud-platform"]}]),
    );
    let request = |image: &str| {
        json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest", "image": image})
            .to_string()
    };
    let out = env.run(
        &["kubelet-credential-provider"],
        request("gcr.io/p/i").as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(scopes_asked(&endpoint), [CLOUD_PLATFORM]);
    let out = env.run(
        &["kubelet-credential-provider"],
        request("us-docker.pkg.dev/p/i").as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    env.set("DOCKER_CREDENTIAL_GCP_KUBELET_SCOPES", "cloud-platform");
    let out = env.run(
        &["kubelet-credential-provider"],
        request("us-docker.pkg.dev/p/i").as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let targets: Vec<String> = metadata
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        targets,
        [
            "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform.read-only",
            "/computeMetadata/v1/instance/service-accounts/default/token",
        ],
        "read-only by default; kubelet_scopes widens it"
    );
}

#[test]
fn a_self_signed_jwt_rule_mints_without_any_token_endpoint() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([{"match": ["gcr.io"], "credentials_file": a, "self_signed_jwt": true}]),
    );
    let jwt = token(&env, "gcr.io");
    let (header, claims) = verified(&jwt, EMAIL_A).expect("signed with A's key");
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "kid-a.json"})
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now).abs() < 30, "{claims}");
    assert_eq!(
        claims,
        json!({"iss": EMAIL_A, "scope": CLOUD_PLATFORM, "exp": iat + 3600, "iat": iat, "aud": "", "sub": EMAIL_A})
    );
    let order: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        order,
        ["iss", "scope", "exp", "iat", "aud", "sub"],
        "gcr's order"
    );
    assert_eq!(token(&env, "gcr.io"), jwt, "cached like any token");
    assert_eq!(endpoint.count(), 0, "no token endpoint at all");
}

#[test]
fn a_self_signed_jwt_rule_refuses_credentials_that_are_not_a_key() {
    let env = Env::new();
    let user = env.path("user.json");
    std::fs::write(&user, authorized_user_json(None)).unwrap();
    write_rules(
        &env,
        json!([{"match": ["gcr.io"], "credentials_file": user, "self_signed_jwt": true}]),
    );
    let out = env.get("gcr.io");
    assert_fails_saying(&out, "self_signed_jwt needs a service_account key");
    assert!(!out.stdout.contains(USER_REFRESH_TOKEN) && !out.stdout.contains(USER_CLIENT_SECRET));
}

#[test]
fn impersonation_rules_exchange_their_base_identitys_token() {
    const TARGET: &str = "deployer@project-c.iam.gserviceaccount.com";
    const DELEGATE: &str = "relay@project-c.iam.gserviceaccount.com";
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let iam = Server::start(|req| {
        let email = req
            .path()
            .strip_prefix("/v1/projects/-/serviceAccounts/")
            .and_then(|p| p.strip_suffix(":generateAccessToken"))
            .unwrap_or("?");
        let bearer = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("?");
        let local = email.split('@').next().unwrap();
        Reply::json(
            200,
            json!({"accessToken": format!("ya29.{local}-as-{bearer}"), "expireTime": "2126-01-01T00:00:00Z"}),
        )
    });
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"name": "ci-key", "credentials_file": a},
            {"match": ["gcr.io"], "impersonate_service_account": TARGET, "via": "ci-key",
             "delegates": [DELEGATE], "iam_endpoint": iam.url(""), "scopes": ["cloud-platform.read-only"]},
            {"match": ["us-docker.pkg.dev"], "impersonate_service_account": TARGET, "iam_endpoint": iam.url("")},
        ]),
    );
    for _ in 0..2 {
        assert_eq!(token(&env, "gcr.io"), "ya29.deployer-as-ya29.puller-1");
        assert_eq!(
            token(&env, "us-docker.pkg.dev"),
            "ya29.deployer-as-ya29.metadata-1"
        );
    }
    assert_eq!(iam.count(), 2, "each impersonated token is cached");
    let bodies: Vec<Value> = iam
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        bodies[0]["delegates"],
        json!([format!("projects/-/serviceAccounts/{DELEGATE}")])
    );
    assert_eq!(bodies[0]["scope"], json!([READ_ONLY]));
    assert_eq!(bodies[1]["scope"], json!([CLOUD_PLATFORM]));
    // The base identities were asked for cloud-platform, which the IAM API takes.
    assert_eq!(who_asked(&endpoint), [EMAIL_A]);
    assert_eq!(scopes_asked(&endpoint), [CLOUD_PLATFORM]);
    // The base rule matches nothing itself: other addresses get the token sources' token.
    assert_eq!(token(&env, "eu.gcr.io"), "ya29.metadata-1");
}

#[test]
fn print_access_token_for_a_registry_uses_the_rule_get_uses() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["us-docker.pkg.dev/team-a/*"], "credentials_file": a},
            {"match": ["europe-docker.pkg.dev"], "credentials_file": b},
        ]),
    );
    let print = |args: &[&str]| {
        let mut all = vec!["print-access-token"];
        all.extend(args);
        env.run(&all, b"")
    };
    let out = print(&["--registry", "europe-docker.pkg.dev"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "ya29.pusher-1\n"),
        "{}",
        out.stderr
    );
    let out = print(&["--registry", "https://us-docker.pkg.dev/team-a/app"]);
    assert_eq!(out.stdout, "ya29.puller-1\n", "{}", out.stderr);
    let out = print(&["--registry", "us-docker.pkg.dev"]);
    assert_eq!(out.stdout, "ya29.metadata-1\n", "{}", out.stderr);
    let out = print(&[]);
    assert_eq!(out.stdout, "ya29.metadata-1\n", "{}", out.stderr);
    // And get agrees.
    assert_eq!(token(&env, "europe-docker.pkg.dev"), "ya29.pusher-1");
    assert_eq!(token(&env, "us-docker.pkg.dev/team-a/app"), "ya29.puller-1");
    for bad in ["gcr.io.evil.com", "quay.io", "not a host"] {
        let out = print(&["--registry", bad]);
        assert_ne!(out.code, 0, "{bad}");
        assert!(out.stdout.is_empty(), "{bad}: {}", out.stdout);
        assert!(
            out.stderr.contains("not a Google registry")
                || out.stderr.contains("not a registry address"),
            "{bad}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_bad_rule_is_reported_and_skipped_and_the_others_still_apply() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let mut env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["gcr.io.evil.com"], "credentials_file": a},
            {"match": ["gcr.io"], "credentials_file": a},
            {"match": ["eu.gcr.io"], "credential_file": a},
        ]),
    );
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.puller-1");
    assert_eq!(env.get("gcr.io.evil.com").stdout, NOT_FOUND);
    assert_eq!(
        env.get("eu.gcr.io").stdout,
        NOT_FOUND,
        "the skipped rule serves nothing"
    );
    // A rule is checked when it covers the address asked for; what is wrong is said on
    // stderr (a get that answers says nothing at the default log level).
    let out = env.get("eu.gcr.io");
    assert!(
        out.stderr
            .contains("identities #3: unknown key `credential_file`"),
        "{}",
        out.stderr
    );
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "warn");
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "ya29.puller-1");
    assert!(!out.stderr.contains("identities #"), "{}", out.stderr);
    let out = env.run(&["config"], b"");
    assert!(
        out.stdout
            .contains("warning: identities #1: match \"gcr.io.evil.com\"")
            && out.stdout.contains("a rule cannot add hosts")
            && out
                .stdout
                .contains("warning: identities #3: unknown key `credential_file`"),
        "{}",
        out.stdout
    );
}

#[test]
fn config_lists_the_rules_their_problems_and_the_identity_of_each_docker_host() {
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(
        &env,
        "a.json",
        EMAIL_A,
        "https://oauth2.googleapis.com/token",
    );
    write_rules(
        &env,
        json!([
            {"name": "ci", "match": ["gcr.io", "us-docker.pkg.dev/team-a/*"], "credentials_file": a, "self_signed_jwt": true},
            {"match": ["*.gcr.io"], "source": "metadata"},
            {"match": ["evil.example.com"], "source": "adc"},
        ]),
    );
    std::fs::create_dir_all(env.path(".docker")).unwrap();
    std::fs::write(
        env.path(".docker/config.json"),
        json!({"credHelpers": {"gcr.io": "gcp", "eu.gcr.io": "gcp", "us-docker.pkg.dev": "gcp", "quay.io": "quay"}}).to_string(),
    )
    .unwrap();
    let out = env.run(&["config"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for needle in [
        "  ci: gcr.io, us-docker.pkg.dev/team-a/*\n",
        &format!("      credentials_file {}, self-signed JWT\n", a.display()),
        &format!("      now: identity rule ci: {}\n", a.display()),
        "  #2: *.gcr.io\n",
        "      source metadata\n",
        &format!(
            "      now: identity rule #2: metadata server {}\n",
            metadata.host()
        ),
        "docker's hosts for this helper, by identity:\n",
        "  rule ci: gcr.io\n",
        "  rule #2: eu.gcr.io\n",
        "  the token sources in order: us-docker.pkg.dev\n",
        "warning: identities #3: match \"evil.example.com\"",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("quay.io"), "{}", out.stdout);
}

#[test]
fn doctor_mints_with_every_rule_and_fails_on_a_bad_one() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"name": "ci", "match": ["gcr.io"], "credentials_file": a},
            {"match": ["eu.gcr.io"], "source": "metadata"},
            {"match": ["*"], "source": "adc"},
        ]),
    );
    std::fs::create_dir_all(env.path(".docker")).unwrap();
    std::fs::write(
        env.path(".docker/config.json"),
        json!({"credHelpers": {"gcr.io": "gcp", "eu.gcr.io": "gcp"}}).to_string(),
    )
    .unwrap();
    let out = env.run(&["doctor"], b"");
    assert_eq!(out.code, 1, "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let has = |start: &str, needle: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(start) && l.contains(needle))
    };
    assert!(
        has(
            "✓ identity rule ci (gcr.io; credentials_file",
            "a token is available"
        ),
        "{}",
        out.stdout
    );
    assert!(
        has(
            "✗ identity rule #2 (eu.gcr.io; source metadata)",
            "the metadata source is not present"
        ),
        "{}",
        out.stdout
    );
    assert!(
        has("✗ identities #3: match \"*\"", "must stay inside"),
        "{}",
        out.stdout
    );
    assert!(
        has("- served by identity rule ci:", "gcr.io"),
        "{}",
        out.stdout
    );
    assert!(
        has("- served by identity rule #2:", "eu.gcr.io"),
        "{}",
        out.stdout
    );
    assert_eq!(who_asked(&endpoint), [EMAIL_A]);
}

#[test]
fn docker_credential_gcp_config_names_another_config_file() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let mut env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(&env, json!([{"match": ["gcr.io"], "credentials_file": a}]));
    let job = env.path("job-7.json");
    std::fs::write(
        &job,
        json!({"identities": [{"match": ["gcr.io"], "credentials_file": b}]}).to_string(),
    )
    .unwrap();
    assert_eq!(token(&env, "gcr.io"), "ya29.puller-1");
    env.set("DOCKER_CREDENTIAL_GCP_CONFIG", path_str(&job));
    assert_eq!(token(&env, "gcr.io"), "ya29.pusher-1");
    let out = env.run(&["config"], b"");
    assert!(
        out.stdout
            .starts_with(&format!("config file: {}\n", job.display())),
        "{}",
        out.stdout
    );
    env.set(
        "DOCKER_CREDENTIAL_GCP_CONFIG",
        path_str(&env.path("missing.json")),
    );
    let out = env.get("gcr.io");
    assert_fails_saying(&out, "DOCKER_CREDENTIAL_GCP_CONFIG names");
    assert!(
        out.stdout.contains("missing.json, which does not exist"),
        "{}",
        out.stdout
    );
}

#[test]
fn refresh_ahead_refreshes_the_identity_whose_token_nears_expiry() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    write_rules(&env, json!([{"match": ["gcr.io"], "credentials_file": a}]));
    assert_eq!(token(&env, "gcr.io"), "ya29.puller-1");
    cache::age_entry_in(&env.cache_dir());
    assert_eq!(
        token(&env, "gcr.io"),
        "ya29.puller-1",
        "answered from the cache"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while token(&env, "gcr.io") != "ya29.puller-2" {
        assert!(
            Instant::now() < until,
            "the background refresh never minted for the rule's identity: {:?}",
            who_asked(&endpoint)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_A]);
}

#[test]
fn bazel_uris_choose_their_identity_by_host_and_path() {
    let endpoint = identity_endpoint(Duration::ZERO);
    let metadata = metadata_server(3600);
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", metadata.host());
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let b = key_file(&env, "b.json", EMAIL_B, &endpoint.url("/token"));
    write_rules(
        &env,
        json!([
            {"match": ["us-maven.pkg.dev/team-a/*"], "credentials_file": a},
            {"match": ["*.storage.googleapis.com", "us-docker.pkg.dev"], "credentials_file": b},
        ]),
    );
    let bazel = |uri: &str| {
        let out = env.run(&["get"], json!({ "uri": uri }).to_string().as_bytes());
        assert_eq!(out.code, 0, "{uri}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["headers"]["Authorization"][0]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    for (uri, token) in [
        (
            "https://us-maven.pkg.dev/team-a/repo/com/x/1.0/x-1.0.jar",
            "ya29.puller-1",
        ),
        (
            "https://us-maven.pkg.dev/team-b/repo/com/x/1.0/x-1.0.jar",
            "ya29.metadata-1",
        ),
        (
            "https://my-bucket.storage.googleapis.com/archive.tar.gz",
            "ya29.pusher-1",
        ),
        (
            "https://us-docker.pkg.dev/v2/p/r/i/manifests/latest",
            "ya29.pusher-1",
        ),
    ] {
        assert_eq!(bazel(uri), format!("Bearer {token}"), "{uri}");
    }
    assert_eq!(who_asked(&endpoint), [EMAIL_A, EMAIL_B]);
    // Docker addresses never get a token for a host only URIs get one for, rule or not.
    assert_eq!(env.get("us-maven.pkg.dev").stdout, NOT_FOUND);
}

#[test]
fn a_cached_get_with_rules_stays_a_straight_line() {
    if !need(&[Peer::Strace]) {
        return;
    }
    let endpoint = identity_endpoint(Duration::ZERO);
    let env = Env::new();
    let a = key_file(&env, "a.json", EMAIL_A, &endpoint.url("/token"));
    let mut rules: Vec<Value> = (0..19)
        .map(|i| json!({"match": [format!("r{i}-docker.pkg.dev"), format!("eu.gcr.io/p{i}/*")], "source": "metadata"}))
        .collect();
    rules.push(json!({"match": ["gcr.io"], "credentials_file": a}));
    write_rules(&env, Value::Array(rules));
    assert_eq!(token(&env, "gcr.io"), "ya29.puller-1");
    let trace = env.path("trace.txt");
    let mut cmd = env.program(
        "strace",
        &["-f", "-qq", "-o", &path_str(&trace), BIN, "get"],
    );
    cmd.env_remove("LD_PRELOAD");
    let out = run_command(cmd, b"gcr.io");
    assert_eq!(creds(&out).2, "ya29.puller-1", "served from the cache");
    let text = std::fs::read_to_string(&trace).unwrap();
    for forbidden in ["clone(", "clone3(", "fork(", "socket(", "connect("] {
        assert!(
            !text.contains(forbidden),
            "{forbidden} on the cached path:\n{text}"
        );
    }
    // The rule's key file is looked at (its version is part of the identity), never read.
    // (By its whole path: the cache entry's name is a hex digest, which ends in "a.json" one
    // time in sixteen.)
    let key_opened = format!("\"{}\"", path_str(&a));
    let opened: Vec<&str> = text.lines().filter(|l| l.contains("openat(")).collect();
    assert!(
        opened.iter().any(|l| l.contains("/token-")),
        "the cache entry is read: {opened:#?}"
    );
    assert!(
        !opened.iter().any(|l| l.contains(&key_opened)),
        "{opened:#?}"
    );
    assert_eq!(who_asked(&endpoint), [EMAIL_A]);
}
