//! The kubelet image credential provider mode, driven as the kubelet drives it: the binary
//! with `kubelet-credential-provider` (from the provider config's args) and a
//! CredentialProviderRequest on stdin.

use crate::support::go::parse_duration;
use crate::support::kubelet::urls_match_str;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

fn request(version: &str, image: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": format!("credentialprovider.kubelet.k8s.io/{version}"),
        "kind": "CredentialProviderRequest",
        "image": image,
    })
    .to_string()
    .into_bytes()
}

fn provider(env: &Env, input: &[u8]) -> (Output, Value) {
    let out = env.run(&["kubelet-credential-provider"], input);
    let v = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

/// A Go duration such as "54m59s" in whole seconds, as the kubelet reads it.
fn go_duration_secs(d: &str) -> u64 {
    let nanos = parse_duration(d).unwrap_or_else(|e| panic!("{e}"));
    u64::try_from(nanos / 1_000_000_000).unwrap()
}

#[test]
fn google_images_get_one_token_for_every_google_registry_in_each_api_version() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let (out, v) = provider(
            &env,
            &request(version, "us-docker.pkg.dev/proj/repo/app:1.0"),
        );
        assert_eq!(out.code, 0, "{version}: {}", out.stderr);
        assert_eq!(
            v["apiVersion"],
            format!("credentialprovider.kubelet.k8s.io/{version}")
        );
        assert_eq!(v["kind"], "CredentialProviderResponse");
        assert_eq!(v["cacheKeyType"], "Global");
        let secs = go_duration_secs(v["cacheDuration"].as_str().unwrap());
        assert!(
            (3290..=3300).contains(&secs),
            "token lifetime minus 5 minutes: {}",
            v["cacheDuration"]
        );
        let auth = v["auth"].as_object().unwrap();
        let keys: Vec<&str> = auth.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "us-docker.pkg.dev",
                "gcr.io",
                "*.gcr.io",
                "*-docker.pkg.dev",
                "docker.*.rep.pkg.dev"
            ],
            "the image's own host, then every Google glob"
        );
        for entry in auth.values() {
            assert_eq!(entry["username"], "oauth2accesstoken");
            assert_eq!(entry["password"], "ya29.test-1");
        }
    }
    assert_eq!(server.count(), 1, "the token cache is shared with get");
}

#[test]
fn a_registry_declared_without_a_port_answers_for_the_images_port() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_REGISTRIES", "ar-proxy.corp.example");
    let (out, v) = provider(&env, &request("v1", "ar-proxy.corp.example:8443/team/app"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        v["auth"]["ar-proxy.corp.example:8443"]["password"], "ya29.test-1",
        "the kubelet compares ports: the image's own host:port must be a key"
    );
    assert_eq!(
        v["auth"]["ar-proxy.corp.example"]["password"],
        "ya29.test-1"
    );
    assert_eq!(
        v["cacheKeyType"], "Registry",
        "a Global entry would serve images on other ports without their key"
    );
}

#[test]
fn declared_registries_are_included_in_the_answer() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "ar-proxy.corp.example:8443",
    );
    let (out, v) = provider(&env, &request("v1", "ar-proxy.corp.example:8443/team/app"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        v["auth"]["ar-proxy.corp.example:8443"]["password"],
        "ya29.test-1"
    );
}

#[test]
fn other_images_get_no_credentials_and_no_token_is_minted() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for image in [
        "nginx:1.27",
        "docker.io/library/redis",
        "quay.io/prometheus/node-exporter",
        "gcr.io.evil.com/x",
        "localhost:5000/app",
    ] {
        let (out, v) = provider(&env, &request("v1", image));
        assert_eq!(out.code, 0, "{image}: {}", out.stderr);
        assert_eq!(v["auth"], serde_json::json!({}), "{image}");
        assert_eq!(
            v["cacheDuration"], "0s",
            "{image}: not cached, so a later Google image is asked again"
        );
        assert_ne!(v["cacheKeyType"], "Global");
    }
    assert_eq!(server.count(), 0);
}

#[test]
fn malformed_requests_fail_on_stderr_with_nothing_on_stdout() {
    let env = Env::new();
    // Each malformed request is unit-tested in src/kubelet.rs; here the refusal reaches the
    // kubelet on stderr with nothing on stdout.
    for input in [
        &b""[..],
        br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","image":"gcr.io/x"}"#,
    ] {
        let out = env.run(&["kubelet-credential-provider"], input);
        assert_eq!(out.code, 1, "{:?}", String::from_utf8_lossy(input));
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(out.stderr.contains("kubelet-credential-provider:") && !out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn no_credentials_on_the_node_is_an_error_the_kubelet_logs() {
    let env = Env::new();
    let out = env.run(
        &["kubelet-credential-provider"],
        &request("v1", "gcr.io/p/app"),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no Google credentials on this node"),
        "{}",
        out.stderr
    );
}

/// Whether the kubelet sends an image on `host` to a provider with `match_images`
/// (`URLsMatchStr`, as tests/support/kubelet.rs writes it down).
fn routed(match_images: &[&str], host: &str) -> bool {
    let image = format!("{host}/proj/app");
    match_images
        .iter()
        .any(|m| urls_match_str(m, &image).unwrap_or_else(|e| panic!("{m}: {e}")))
}

#[test]
fn the_example_provider_config_matches_what_the_provider_answers_for() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/kubelet/credential-provider-config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let p = &config["providers"][0];
    assert_eq!(
        p["name"], "docker-credential-gcp",
        "the provider name is the binary's file name"
    );
    assert_eq!(p["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(
        p["args"],
        serde_json::json!(["kubelet-credential-provider"])
    );
    assert!(go_duration_secs(p["defaultCacheDuration"].as_str().unwrap()) > 0);
    let match_images: Vec<&str> = p["matchImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for host in [
        "gcr.io",
        "us.gcr.io",
        "us-docker.pkg.dev",
        "europe-west1-docker.pkg.dev",
        "docker.us-central1.rep.pkg.dev",
    ] {
        assert!(routed(&match_images, host), "{host} is matched");
    }
    for host in [
        "gcr.io.evil.com",
        "quay.io",
        "docker.io",
        "us-docker.pkg.dev.evil.com",
    ] {
        assert!(!routed(&match_images, host), "{host} is not matched");
    }
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    for e in p["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        if name == "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES" {
            env.set(name, e["value"].as_str().unwrap());
        }
    }
    let (out, v) = provider(&env, &request("v1", "gcr.io/p/app"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answered: Vec<&str> = v["auth"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        answered, match_images,
        "the answer covers exactly what the config routes to the provider"
    );
}

// ---------------------------------------------------------------------------------------------
// The kubelet's service-account-token mode: per-pod workload identity.

const POD_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.pod-service-account-token.sig";
const AUDIENCE: &str = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/cluster/providers/k8s";
const GSA: &str = "puller@proj.iam.gserviceaccount.com";

fn sts() -> Server {
    kubelet::pod_sts(POD_TOKEN, AUDIENCE)
}

fn iam() -> Server {
    kubelet::pod_iam(GSA)
}

fn pod_request(annotations: Value) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "europe-west1-docker.pkg.dev/proj/repo/app:2",
        "serviceAccountToken": POD_TOKEN,
        "serviceAccountAnnotations": annotations,
    })
    .to_string()
    .into_bytes()
}

fn pod_args<'a>(sts: &'a str, iam: &'a str) -> Vec<&'a str> {
    vec![
        "kubelet-credential-provider",
        "--workload-identity-audience",
        AUDIENCE,
        "--sts-url",
        sts,
        "--iam-endpoint",
        iam,
    ]
}

#[test]
fn a_pod_service_account_token_is_federated_at_sts() {
    let (sts, iam) = (sts(), iam());
    let node = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&node.url("/token"));
    let (sts_url, iam_url) = (sts.url("/v1/token"), iam.url(""));
    let out = env.run(
        &pod_args(&sts_url, &iam_url),
        &pod_request(serde_json::json!({})),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["auth"]["*-docker.pkg.dev"]["password"],
        "ya29.federated-pod"
    );
    assert_eq!(
        v["cacheKeyType"], "Global",
        "the kubelet already keys its cache by service account"
    );
    assert_eq!(
        (sts.count(), iam.count(), node.count()),
        (1, 0, 0),
        "the node's own identity is not used"
    );
    assert!(
        !env.cache_dir().exists(),
        "pod tokens are not written to the node's cache"
    );
}

#[test]
fn an_annotated_google_service_account_is_impersonated() {
    let (sts, iam) = (sts(), iam());
    let env = Env::new();
    let (sts_url, iam_url) = (sts.url("/v1/token"), iam.url(""));
    let out = env.run(
        &pod_args(&sts_url, &iam_url),
        &pod_request(serde_json::json!({"iam.gke.io/gcp-service-account": GSA})),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["auth"]["gcr.io"]["password"], "ya29.impersonated-gsa");
    assert_eq!((sts.count(), iam.count()), (1, 1));
}

#[test]
fn pod_tokens_without_a_configured_audience_or_accepted_by_sts_are_clear_errors() {
    let env = Env::new();
    let out = env.run(
        &["kubelet-credential-provider"],
        &pod_request(serde_json::json!({})),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("--workload-identity-audience is not set"),
        "{}",
        out.stderr
    );

    let refusing = Server::start(|_| {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "The audience does not match."}),
        )
    });
    let (sts_url, iam_url) = (refusing.url("/v1/token"), "http://127.0.0.1:1".to_owned());
    let out = env.run(
        &pod_args(&sts_url, &iam_url),
        &pod_request(serde_json::json!({})),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("workload identity for the pod's service account")
            && out.stderr.contains("The audience does not match."),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(POD_TOKEN) && out.stdout.is_empty(),
        "the pod token never appears: {}",
        out.stderr
    );

    let bad = env.run(
        &pod_args(&sts_url, &iam_url),
        &pod_request(serde_json::json!({"iam.gke.io/gcp-service-account": "x/../../evil"})),
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("is not a service account email"),
        "{}",
        bad.stderr
    );
}

#[test]
fn with_an_opt_in_annotation_only_annotated_service_accounts_use_their_token() {
    let (sts, iam) = (sts(), iam());
    let node = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&node.url("/token"));
    let (sts_url, iam_url) = (sts.url("/v1/token"), iam.url(""));
    let mut args = pod_args(&sts_url, &iam_url);
    args.extend(["--workload-identity-annotation", "example.com/pull-as-pod"]);
    let cases = [
        (serde_json::json!({}), "ya29.test-1", (0, 0)),
        (
            serde_json::json!({"example.com/pull-as-pod": "false"}),
            "ya29.test-1",
            (0, 0),
        ),
        (
            serde_json::json!({"example.com/pull-as-pod": "true"}),
            "ya29.federated-pod",
            (1, 0),
        ),
        (
            serde_json::json!({"example.com/pull-as-pod": "true", "iam.gke.io/gcp-service-account": GSA}),
            "ya29.impersonated-gsa",
            (2, 1),
        ),
    ];
    for (annotations, password, exchanges) in cases {
        let out = env.run(&args, &pod_request(annotations.clone()));
        assert_eq!(out.code, 0, "{annotations}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["auth"]["gcr.io"]["password"], password, "{annotations}");
        assert_eq!(v["cacheKeyType"], "Global", "{annotations}");
        assert_eq!((sts.count(), iam.count()), exchanges, "{annotations}");
    }
    assert_eq!(
        node.count(),
        1,
        "the node's token comes from the node's cache"
    );
}

#[test]
fn an_opt_in_annotation_needs_an_audience_and_a_token() {
    let env = Env::new();
    let out = env.run(
        &[
            "kubelet-credential-provider",
            "--workload-identity-annotation",
            "example.com/pull-as-pod",
        ],
        &request("v1", "gcr.io/p/app"),
    );
    assert_eq!(out.code, 2, "a usage error: {}", out.stderr);
    assert!(
        out.stderr.contains("--workload-identity-audience"),
        "{}",
        out.stderr
    );

    let annotated_without_token = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "gcr.io/p/app",
        "serviceAccountAnnotations": {"example.com/pull-as-pod": "true"},
    });
    let out = env.run(
        &[
            "kubelet-credential-provider",
            "--workload-identity-audience",
            AUDIENCE,
            "--workload-identity-annotation",
            "example.com/pull-as-pod",
        ],
        annotated_without_token.to_string().as_bytes(),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("sent no service account token"),
        "{}",
        out.stderr
    );
}

#[test]
fn errors_never_repeat_the_pod_token_even_cut_short() {
    // A real pod token is a JWT of about a kilobyte; error bodies are excerpted to 200
    // characters, which cuts a quoted token short.
    let long: &'static str = Box::leak(
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.sig",
            "eyJpc3MiOiJrdWJlcm5ldGVzIn0".repeat(40)
        )
        .into_boxed_str(),
    );
    let sts = kubelet::pod_sts(long, "//iam.googleapis.com/another/audience");
    let env = Env::new();
    let sts_url = sts.url("/v1/token");
    let out = env.run(
        &pod_args(&sts_url, "http://127.0.0.1:1"),
        serde_json::json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": "gcr.io/p/app",
            "serviceAccountToken": long,
        })
        .to_string()
        .as_bytes(),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("bad subject REDACTED"),
        "{}",
        out.stderr
    );
    for window in long.as_bytes().windows(12) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !out.stderr.contains(piece),
            "a fragment of the pod token reached stderr: {piece} in {}",
            out.stderr
        );
    }
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
