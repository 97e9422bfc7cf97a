//! Conformance with the kubelet: the provider and the shipped example configs held to the rules
//! the kubelet applies, as tests/support/kubelet.rs writes them down from the kubelet's source
//! (each rule names its kubelet function there and below). The plugin runs as the kubelet runs
//! it: `<bin dir>/<provider name>` with the config's args, the request on stdin, and an
//! environment of the provider's `env` only (no HOME, no PATH). Against that baseline the
//! tests change only what must not touch the test machine: the cache directory (a temporary
//! one), GCE_METADATA_HOST (the metadata stand-in), CLOUDSDK_CONFIG and XDG_CONFIG_HOME (empty
//! temporary directories, so the machine's own gcloud or helper files cannot answer), and
//! `--sts-url`/`--iam-endpoint` appended for the STS and IAM stand-ins.

use std::collections::BTreeMap;

use crate::support::go::{filepath_match, parse_duration};
use crate::support::kubelet::{
    self, AuthConfig, Kubelet, Pod, Provider, Release, decode_config, decode_response,
    example_config, is_qualified_name, keyring_lookup, urls_match_str, validate_config,
};
use crate::support::*;

const NODE_CONFIG: &str = "credential-provider-config.json";
const SA_CONFIG: &str = "credential-provider-config-service-account.json";
const GOOGLE_GLOBS: [&str; 4] = [
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
    "docker.*.rep.pkg.dev",
];

/// Every form of Google registry host the shipped `matchImages` route to the plugin, as the
/// kubelet passes images (normalised, no tag: `makeLookupPullCredentialsFunc`).
const GOOGLE_IMAGES: [&str; 10] = [
    "gcr.io/proj/app",
    "us.gcr.io/proj/app",
    "eu.gcr.io/proj/team/app",
    "asia.gcr.io/proj/app",
    "marketplace.gcr.io/google/debian12",
    "us-docker.pkg.dev/proj/repo/app",
    "europe-west1-docker.pkg.dev/proj/repo/app",
    "northamerica-northeast2-docker.pkg.dev/proj/repo/team/app",
    "docker.us-central1.rep.pkg.dev/proj/repo/app",
    "docker.europe-west4.rep.pkg.dev/proj/repo/app",
];

fn provider(file: &str, release: Release) -> Provider {
    let mut providers = decode_config(&example_config(file), release).unwrap();
    assert_eq!(providers.len(), 1, "{file}");
    providers.remove(0)
}

/// The kubelet and the stand-ins for one test, with the test-only environment described above.
struct Node {
    kubelet: Kubelet,
    metadata: Server,
    dirs: tempfile::TempDir,
    cache: std::path::PathBuf,
}

fn start_node(provider: Provider) -> Node {
    let dirs = tempfile::tempdir().unwrap();
    let metadata = metadata_server(3600);
    let cache = dirs.path().join("cache");
    std::fs::create_dir(dirs.path().join("gcloud")).unwrap();
    std::fs::create_dir(dirs.path().join("xdg")).unwrap();
    let mut kubelet = Kubelet::new(provider);
    kubelet
        .set_env("DOCKER_CREDENTIAL_GCP_CACHE_DIR", cache.to_str().unwrap())
        .set_env("GCE_METADATA_HOST", &metadata.host())
        .set_env(
            "CLOUDSDK_CONFIG",
            dirs.path().join("gcloud").to_str().unwrap(),
        )
        .set_env("XDG_CONFIG_HOME", dirs.path().join("xdg").to_str().unwrap());
    Node {
        kubelet,
        metadata,
        dirs,
        cache,
    }
}

/// The value after `flag` in a provider's args.
fn arg_of(p: &Provider, flag: &str) -> String {
    p.args
        .iter()
        .skip_while(|a| *a != flag)
        .nth(1)
        .unwrap_or_else(|| panic!("{flag} in the config's args"))
        .clone()
}

fn static_pod() -> Pod {
    Pod::default()
}

fn passwords(creds: &[(String, AuthConfig)]) -> Vec<&str> {
    creds.iter().map(|(_, a)| a.password.as_str()).collect()
}

/// The one password every credential offered for a pull carries (the image's own key and a
/// glob may both match, as with auth-provider-gcp; the pull tries them in turn).
fn offered(creds: &[(String, AuthConfig)]) -> Option<&str> {
    let mut all = passwords(creds);
    all.dedup();
    match all[..] {
        [one] => Some(one),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The Go behaviours the rules rest on.

#[test]
fn durations_are_read_as_go_time_parse_duration_reads_them() {
    // metav1.Duration.UnmarshalJSON → time.ParseDuration: cacheDuration and
    // defaultCacheDuration.
    let s = 1_000_000_000i128;
    for (text, ns) in [
        ("55m0s", 3300 * s),
        ("54m59s", 3299 * s),
        ("1h5m0s", 3900 * s),
        ("0s", 0),
        ("0", 0),
        ("50m", 3000 * s),
        ("1.5h", 5400 * s),
        (".5s", s / 2),
        ("-1s", -s),
        ("+2m", 120 * s),
        ("300ms", 3 * s / 10),
        ("1h1m1s1ms1us1ns", 3661 * s + 1_001_001),
        ("2\u{b5}s", 2000),
    ] {
        assert_eq!(parse_duration(text), Ok(ns), "{text}");
    }
    for bad in [
        "", "55", "5x", "1..5s", "s", "1h 5m", "+", "-", ".s", "1.5.5s", "3300 ",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn labels_are_matched_as_go_filepath_match_matches() {
    // URLsMatch matches each host label with path/filepath.Match.
    for (pattern, name, matched) in [
        ("*-docker", "us-docker", true),
        ("*-docker", "europe-west1-docker", true),
        ("*-docker", "docker", false),
        ("*", "gcr", true),
        ("*", "", true),
        ("gcr", "GCR", false),
        ("?s", "us", true),
        ("?", "", false),
        ("[a-c]x", "bx", true),
        ("[^a-c]x", "bx", false),
        ("[!a]", "!", true),
        ("\\*", "*", true),
        ("\\*", "x", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("*x", "ab", false),
    ] {
        assert_eq!(
            filepath_match(pattern, name),
            Ok(matched),
            "{pattern} {name}"
        );
    }
    for bad in ["[", "a[", "[]a]", "[a-]", "\\", "[x-"] {
        assert!(filepath_match(bad, "a").is_err(), "{bad}");
    }
    assert!(
        filepath_match("b[", "a").is_err(),
        "a mismatch still reports a bad pattern"
    );
}

#[test]
fn image_keys_match_as_urls_match_decides() {
    // URLsMatchStr → ParseSchemelessURL, SplitURL, URLsMatch: equal ports (as strings), equal
    // label counts, a path prefix, then filepath.Match per label.
    for (key, image, matched) in [
        ("gcr.io", "gcr.io/p/i", true),
        ("*.gcr.io", "us.gcr.io/p/i", true),
        ("*.gcr.io", "gcr.io/p/i", false),
        ("*.gcr.io", "x.us.gcr.io/p/i", false),
        ("*-docker.pkg.dev", "us-docker.pkg.dev/p/r/i", true),
        (
            "*-docker.pkg.dev",
            "europe-west1-docker.pkg.dev/p/r/i",
            true,
        ),
        ("*-docker.pkg.dev", "us-docker.pkg.dev.evil.com/x", false),
        ("*-docker.pkg.dev", "docker.pkg.dev/x", false),
        (
            "docker.*.rep.pkg.dev",
            "docker.us-central1.rep.pkg.dev/p/r/i",
            true,
        ),
        ("*.pkg.dev", "docker.us-central1.rep.pkg.dev/p/r/i", false),
        ("gcr.io", "gcr.io.evil.com/x", false),
        ("gcr.io", "gcr.io:443/p/i", false),
        ("gcr.io:443", "gcr.io:443/p/i", true),
        ("gcr.io:443", "gcr.io/p/i", false),
        (
            "ar-proxy.corp.example",
            "ar-proxy.corp.example:8443/team/app",
            false,
        ),
        (
            "ar-proxy.corp.example:8443",
            "ar-proxy.corp.example:8443/team/app",
            true,
        ),
        (
            "ar-proxy.corp.example:8443",
            "ar-proxy.corp.example:9443/team/app",
            false,
        ),
        ("gcr.io/p", "gcr.io/project-x/app", true),
        ("gcr.io/p/", "gcr.io/p/app", true),
        ("gcr.io/q", "gcr.io/p/app", false),
        ("GCR.io", "gcr.io/p/i", false),
        ("gcr.io", "GCR.io/p/i", false),
        ("*", "localhost/app", true),
        ("https://gcr.io", "gcr.io/p/i", false),
    ] {
        assert_eq!(urls_match_str(key, image), Ok(matched), "{key} vs {image}");
    }
    assert!(
        urls_match_str("gcr.io:*", "gcr.io:443/p").is_err(),
        "invalid port"
    );
    assert!(
        urls_match_str("[.gcr.io", "x.gcr.io/p").is_err(),
        "missing ']'"
    );
}

#[test]
fn answer_keys_go_through_the_keyring_as_add_and_lookup_treat_them() {
    // BasicDockerKeyring.Add: schemes and /v1/, /v2/ are dropped, unparsable keys skipped;
    // Lookup: every matching key, most specific (reverse-sorted) first.
    let a = |p: &str| AuthConfig {
        username: "u".into(),
        password: p.into(),
    };
    let answer = vec![
        ("gcr.io".to_owned(), a("host")),
        ("https://gcr.io/v2/p".to_owned(), a("path")),
        ("gcr.io:bad".to_owned(), a("skipped")),
        ("*.gcr.io".to_owned(), a("glob")),
    ];
    assert_eq!(
        passwords(&keyring_lookup(&answer, "gcr.io/p/app")),
        ["path", "host"]
    );
    assert_eq!(
        passwords(&keyring_lookup(&answer, "us.gcr.io/p/app")),
        ["glob"]
    );
    assert!(keyring_lookup(&answer, "gcr.io:443/p/app").is_empty());
}

// ---------------------------------------------------------------------------------------------
// The shipped example configs: decodeConfig and validateCredentialProviderConfig.

#[test]
fn both_example_configs_pass_the_kubelets_config_validation() {
    for release in [Release::V1_33, Release::V1_34Plus] {
        let p = provider(NODE_CONFIG, release);
        for gate in [false, true] {
            assert_eq!(
                validate_config(std::slice::from_ref(&p), gate, release),
                Vec::<String>::new(),
                "node identity: any kubelet from 1.26, gate {gate}, {release:?}"
            );
        }
    }
    let sa = provider(SA_CONFIG, Release::V1_34Plus);
    assert_eq!(
        validate_config(std::slice::from_ref(&sa), true, Release::V1_34Plus),
        Vec::<String>::new(),
        "service-account-token mode on 1.34+ (the gate is on by default)"
    );
    let t = sa.token_attributes.as_ref().unwrap();
    assert_eq!(sa.api_version, "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(t.cache_type, "ServiceAccount");
    assert_eq!(t.require_service_account, Some(false));
    assert!(t.required_keys.is_empty());
    let opt_in = arg_of(&sa, "--workload-identity-annotation");
    for key in ["iam.gke.io/gcp-service-account", opt_in.as_str()] {
        assert!(
            t.optional_keys.iter().any(|k| k == key),
            "{key} is listed, so the kubelet sends it"
        );
    }
}

#[test]
fn the_service_account_config_needs_the_gate_and_on_1_33_no_cache_type() {
    // validateCredentialProviderConfig: tokenAttributes is Forbidden with the gate off (the
    // 1.33 default); the 1.33 type has no cacheType, so strict decoding refuses it.
    let sa = provider(SA_CONFIG, Release::V1_34Plus);
    let errs = validate_config(std::slice::from_ref(&sa), false, Release::V1_34Plus);
    assert!(
        errs.iter().any(|e| e.contains("feature gate is disabled")),
        "{errs:?}"
    );
    let err = decode_config(&example_config(SA_CONFIG), Release::V1_33).unwrap_err();
    assert!(err.contains("unknown field \"cacheType\""), "{err}");

    let mut json: serde_json::Value = serde_json::from_slice(&example_config(SA_CONFIG)).unwrap();
    json["providers"][0]["tokenAttributes"]
        .as_object_mut()
        .unwrap()
        .remove("cacheType");
    let for_1_33 = decode_config(json.to_string().as_bytes(), Release::V1_33).unwrap();
    assert_eq!(
        validate_config(&for_1_33, true, Release::V1_33),
        Vec::<String>::new(),
        "1.33: without cacheType and with the gate enabled (docs/kubelet.md)"
    );
}

#[test]
fn the_config_rules_reject_what_the_kubelet_rejects() {
    // The validator is not vacuous: each variant breaks one rule of decode or
    // validateCredentialProviderConfig / validateServiceAccountAnnotationKeys.
    let base: serde_json::Value = serde_json::from_slice(&example_config(SA_CONFIG)).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 14] = [
        ("name with /", |c| c["providers"][0]["name"] = "a/b".into()),
        ("name ..", |c| c["providers"][0]["name"] = "..".into()),
        ("duplicate name", |c| {
            let p = c["providers"][0].clone();
            c["providers"].as_array_mut().unwrap().push(p);
        }),
        ("no matchImages", |c| {
            c["providers"][0]["matchImages"] = serde_json::json!([])
        }),
        ("bad port", |c| {
            c["providers"][0]["matchImages"] = serde_json::json!(["gcr.io:*"])
        }),
        ("no defaultCacheDuration", |c| {
            c["providers"][0]
                .as_object_mut()
                .unwrap()
                .remove("defaultCacheDuration");
        }),
        ("negative duration", |c| {
            c["providers"][0]["defaultCacheDuration"] = "-1m".into()
        }),
        ("v1beta1 with tokenAttributes", |c| {
            c["providers"][0]["apiVersion"] = "credentialprovider.kubelet.k8s.io/v1beta1".into()
        }),
        ("no requireServiceAccount", |c| {
            c["providers"][0]["tokenAttributes"]
                .as_object_mut()
                .unwrap()
                .remove("requireServiceAccount");
        }),
        ("cacheType Pod", |c| {
            c["providers"][0]["tokenAttributes"]["cacheType"] = "Pod".into()
        }),
        ("bad annotation key", |c| {
            c["providers"][0]["tokenAttributes"]["optionalServiceAccountAnnotationKeys"] =
                serde_json::json!(["-bad-/x"])
        }),
        ("required and optional", |c| {
            c["providers"][0]["tokenAttributes"]["requireServiceAccount"] = true.into();
            c["providers"][0]["tokenAttributes"]["requiredServiceAccountAnnotationKeys"] =
                serde_json::json!(["iam.gke.io/gcp-service-account"]);
        }),
        ("required keys without requireServiceAccount", |c| {
            c["providers"][0]["tokenAttributes"]["requiredServiceAccountAnnotationKeys"] =
                serde_json::json!(["example.com/x"]);
        }),
        ("no audience", |c| {
            c["providers"][0]["tokenAttributes"]["serviceAccountTokenAudience"] = "".into()
        }),
    ];
    for (what, edit) in edits {
        let mut c = base.clone();
        edit(&mut c);
        let outcome = decode_config(c.to_string().as_bytes(), Release::V1_34Plus)
            .map(|p| validate_config(&p, true, Release::V1_34Plus));
        assert!(
            !matches!(&outcome, Ok(errs) if errs.is_empty()),
            "{what}: {outcome:?}"
        );
    }
    let text = String::from_utf8(example_config(NODE_CONFIG)).unwrap();
    for (what, bad) in [
        (
            "unknown field",
            text.replacen("\"matchImages\"", "\"matchImage\"", 1),
        ),
        (
            "wrong case",
            text.replacen("\"defaultCacheDuration\"", "\"DefaultCacheDuration\"", 1),
        ),
        (
            "duplicate key",
            text.replacen("\"args\"", "\"name\": \"x\", \"args\"", 1),
        ),
        (
            "wrong kind",
            text.replacen(
                "\"CredentialProviderConfig\"",
                "\"KubeletConfiguration\"",
                1,
            ),
        ),
        (
            "wrong group",
            text.replacen("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v2", 1),
        ),
    ] {
        assert!(
            decode_config(bad.as_bytes(), Release::V1_34Plus).is_err(),
            "{what}"
        );
    }
    for (key, ok) in [
        ("iam.gke.io/gcp-service-account", true),
        ("iam.gke.io/enable-wi-image-pull", true),
        ("example.com/pull-as-pod", true),
        ("plain", true),
        ("a/b/c", false),
        ("/x", false),
        ("Example.com/x", false),
        ("example.com/", false),
        ("example.com/-x", false),
    ] {
        assert_eq!(is_qualified_name(key), ok, "{key}");
    }
}

// ---------------------------------------------------------------------------------------------
// Answers: ExecPlugin, decodeResponse, provide.

#[test]
fn the_response_decoder_is_as_strict_as_the_kubelets() {
    // decodeResponse (strict) and ExecPlugin's apiVersion check reject each of these.
    let v1 = "credentialprovider.kubelet.k8s.io/v1";
    let good = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","cacheDuration":"55m0s","auth":{"gcr.io":{"username":"oauth2accesstoken","password":"t"}}}"#;
    assert!(decode_response(good.as_bytes(), v1).is_ok());
    for (what, bad, version) in [
        (
            "apiVersion of another version",
            good,
            "credentialprovider.kubelet.k8s.io/v1beta1",
        ),
        (
            "unknown field in an entry",
            &good.replace(r#""password":"t""#, r#""password":"t","email":"e""#) as &str,
            v1,
        ),
        (
            "unknown top-level field",
            &good.replace(r#""auth""#, r#""expiresAt":"x","auth""#),
            v1,
        ),
        (
            "duplicate key",
            &good.replace(
                r#""cacheKeyType":"Global""#,
                r#""cacheKeyType":"Global","cacheKeyType":"Image""#,
            ),
            v1,
        ),
        (
            "duplicate auth key",
            &good.replace(r#""auth":{"#, r#""auth":{"gcr.io":{},"#),
            v1,
        ),
        (
            "wrong case",
            &good.replace("cacheKeyType", "CacheKeyType"),
            v1,
        ),
        ("not a duration", &good.replace("55m0s", "3300"), v1),
        ("a number duration", &good.replace(r#""55m0s""#, "3300"), v1),
        (
            "wrong kind",
            &good.replace("CredentialProviderResponse", "CredentialProviderRequest"),
            v1,
        ),
        (
            "wrong group",
            &good.replace("credentialprovider.kubelet.k8s.io/v1", "v1"),
            "v1",
        ),
        ("trailing text", &format!("{good}\nlog line"), v1),
        ("two documents", &format!("{good}{good}"), v1),
    ] {
        assert!(decode_response(bad.as_bytes(), version).is_err(), "{what}");
    }
}

#[test]
fn every_answer_decodes_strictly_in_each_api_version() {
    for version in kubelet::VERSIONS {
        let mut p = provider(NODE_CONFIG, Release::V1_34Plus);
        p.api_version = format!("credentialprovider.kubelet.k8s.io/{version}");
        assert_eq!(
            validate_config(std::slice::from_ref(&p), true, Release::V1_34Plus),
            Vec::<String>::new()
        );
        let mut node = start_node(p);
        let nothing = BTreeMap::new();
        for image in GOOGLE_IMAGES.iter().chain(&[
            "quay.io/prometheus/node-exporter",
            "docker.io/library/nginx",
            "gcr.io.evil.com/x",
        ]) {
            let exec = node.kubelet.exec(image, "", &nothing);
            assert_eq!(exec.code, Some(0), "{version} {image}: {}", exec.stderr);
            assert!(
                exec.request.contains(&format!("/{version}\"")),
                "{}",
                exec.request
            );
            let r = exec
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{version} {image}: {e}\n{}", exec.stdout));
            // pluginProvider.provide: a valid cacheKeyType, else the answer is ignored.
            assert!(
                ["Image", "Registry", "Global"].contains(&r.cache_key_type.as_str()),
                "{r:?}"
            );
            assert!(
                r.cache_duration_ns.is_some(),
                "we always say how long: {r:?}"
            );
            assert_eq!(
                exec.stdout.lines().count(),
                1,
                "one JSON document: {}",
                exec.stdout
            );
            for (_, a) in &r.auth {
                assert_eq!(a.username, "oauth2accesstoken");
                assert_eq!(a.password, "ya29.metadata-1");
            }
        }
    }
}

#[test]
fn every_google_image_form_reaches_the_plugin_and_finds_its_credential() {
    // isImageAllowed (matchImages) → getCachedCredentials → ExecPlugin → provide's cache
    // (Global: one run serves them all) → BasicDockerKeyring Add + Lookup.
    let mut node = start_node(provider(NODE_CONFIG, Release::V1_34Plus));
    for image in GOOGLE_IMAGES {
        let creds = node.kubelet.lookup(image, &static_pod());
        assert_eq!(
            offered(&creds),
            Some("ya29.metadata-1"),
            "{image}: {creds:?}"
        );
        let key = &creds[0].0;
        assert!(
            key == kubelet::parse_registry(image) || GOOGLE_GLOBS.contains(&key.as_str()),
            "{image} matched {key}"
        );
    }
    assert_eq!(
        node.kubelet.execs.len(),
        1,
        "one Global answer serves every Google image"
    );
    assert_eq!(
        node.kubelet.execs[0]
            .result
            .as_ref()
            .unwrap()
            .cache_key_type,
        "Global"
    );
    assert_eq!(node.metadata.count(), 1);
    assert!(
        node.cache.is_dir(),
        "the provider's cache directory is used without HOME"
    );
    for not_routed in [
        "quay.io/prometheus/node-exporter",
        "gcr.io.evil.com/x",
        "us-docker.pkg.dev.evil.com/x",
        "x.us.gcr.io/proj/app",
        "gcr.io:443/proj/app",
    ] {
        assert!(
            node.kubelet.lookup(not_routed, &static_pod()).is_empty(),
            "{not_routed}"
        );
    }
    assert_eq!(
        node.kubelet.execs.len(),
        1,
        "images outside matchImages never run the plugin"
    );
}

#[test]
fn declared_registries_with_and_without_ports_find_their_credential() {
    // DOCKER_CREDENTIAL_GCP_REGISTRIES hosts must be in matchImages (isImageAllowed), and the
    // answer must hold a key URLsMatch accepts: equal ports, so the image's own host:port.
    let mut p = provider(NODE_CONFIG, Release::V1_34Plus);
    p.match_images.extend(
        [
            "ar-proxy.corp.example",
            "ar-proxy.corp.example:8443",
            "mirror.corp.example:5000",
        ]
        .map(String::from),
    );
    let mut node = start_node(p);
    node.kubelet.set_env(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "ar-proxy.corp.example,mirror.corp.example:5000",
    );
    let images = [
        "gcr.io/proj/app",
        "ar-proxy.corp.example/team/app",
        "ar-proxy.corp.example:8443/team/app",
        "mirror.corp.example:5000/library/nginx",
        "us-docker.pkg.dev/proj/repo/app",
        "ar-proxy.corp.example:8443/team/other",
    ];
    for image in images {
        assert_eq!(
            offered(&node.kubelet.lookup(image, &static_pod())),
            Some("ya29.metadata-1"),
            "{image}"
        );
    }
    assert!(
        node.kubelet
            .lookup("ar-proxy.corp.example:9443/team/app", &static_pod())
            .is_empty()
    );
    let key_types: Vec<&str> = node
        .kubelet
        .execs
        .iter()
        .map(|e| e.result.as_ref().unwrap().cache_key_type.as_str())
        .collect();
    assert_eq!(
        key_types, ["Registry"; 5],
        "a declared host without a port: one answer per host[:port], none cached for all"
    );

    // Declared with their ports only, every key is exact: one Global answer serves all.
    let mut p = provider(NODE_CONFIG, Release::V1_34Plus);
    p.match_images.push("mirror.corp.example:5000".into());
    let mut node = start_node(p);
    node.kubelet.set_env(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "mirror.corp.example:5000",
    );
    for image in [
        "gcr.io/proj/app",
        "mirror.corp.example:5000/library/nginx",
        "docker.us-central1.rep.pkg.dev/p/r/i",
    ] {
        assert_eq!(
            offered(&node.kubelet.lookup(image, &static_pod())),
            Some("ya29.metadata-1"),
            "{image}"
        );
    }
    assert_eq!(node.kubelet.execs.len(), 1);
}

#[test]
fn with_adc_first_an_adc_file_in_the_gcloud_directory_wins_over_the_node() {
    // docs/kubelet.md: with `adc,metadata`, the well-known ADC file (root's, under the kubelet) is used
    // before the node's service account.
    let mut node = start_node(provider(NODE_CONFIG, Release::V1_34Plus));
    let tokens = token_endpoint(3600);
    let sources = node
        .kubelet
        .provider
        .env
        .iter()
        .find(|(k, _)| k == "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES")
        .map(|(_, v)| v.clone());
    assert_eq!(sources.as_deref(), Some("adc,metadata"));
    let gcloud = node.dirs.path().join("gcloud");
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        service_account_json(&tokens.url("/token")),
    )
    .unwrap();
    let creds = node.kubelet.lookup("gcr.io/proj/app", &static_pod());
    assert_eq!(offered(&creds), Some("ya29.test-1"));
    assert_eq!(node.metadata.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Service-account-token mode (KEP-4412) with the shipped config.

const POD_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwcyJ9.c2ln";
const GSA: &str = "puller@proj.iam.gserviceaccount.com";

fn sa_pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        namespace: "apps".into(),
        service_account: Some(name.into()),
        service_account_uid: format!("uid-{name}"),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        token: POD_TOKEN.into(),
    }
}

#[test]
fn service_account_mode_follows_the_kubelets_rules_with_the_shipped_config() {
    let p = provider(SA_CONFIG, Release::V1_34Plus);
    let audience: &'static str =
        Box::leak(arg_of(&p, "--workload-identity-audience").into_boxed_str());
    let opt_in = arg_of(&p, "--workload-identity-annotation");
    let (sts, iam) = (kubelet::pod_sts(POD_TOKEN, audience), kubelet::pod_iam(GSA));
    let mut node = start_node(p);
    let (sts_url, iam_url) = (sts.url("/v1/token"), iam.url(""));
    node.kubelet
        .add_args(&["--sts-url", &sts_url, "--iam-endpoint", &iam_url]);

    let opted_in = sa_pod(
        "builder",
        &[(opt_in.as_str(), "true"), ("other.example/x", "y")],
    );
    let impersonating = sa_pod(
        "deployer",
        &[
            (opt_in.as_str(), "true"),
            ("iam.gke.io/gcp-service-account", GSA),
        ],
    );
    let not_opted_in = sa_pod("default", &[]);
    let cases = [
        ("static pod", static_pod(), "ya29.metadata-1"),
        (
            "service account not opted in",
            not_opted_in,
            "ya29.metadata-1",
        ),
        ("opted in", opted_in, "ya29.federated-pod"),
        (
            "opted in, impersonating",
            impersonating,
            "ya29.impersonated-gsa",
        ),
    ];
    for (what, pod, password) in &cases {
        for image in ["us-docker.pkg.dev/proj/repo/app", "gcr.io/proj/app"] {
            let creds = node.kubelet.lookup(image, pod);
            assert_eq!(offered(&creds), Some(*password), "{what}: {image}");
        }
    }
    assert_eq!(
        node.kubelet.execs.len(),
        cases.len(),
        "one Global answer per service account"
    );
    for exec in &node.kubelet.execs {
        let r = exec.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.cache_key_type, "Global");
        assert!(exec.stderr.is_empty(), "{}", exec.stderr);
        assert!(
            !exec.stdout.contains(POD_TOKEN),
            "never the pod token as a password"
        );
        assert!(
            !exec.request.contains("other.example/x"),
            "only listed annotations are sent"
        );
    }
    assert!(
        node.kubelet.execs[1].request.contains(POD_TOKEN),
        "the kubelet sends every pod with a service account its token"
    );
    assert!(
        !node.kubelet.execs[0]
            .request
            .contains("serviceAccountToken")
    );
    assert_eq!((sts.count(), iam.count(), node.metadata.count()), (2, 1, 1));
}

#[test]
fn a_failed_exchange_is_logged_without_the_pod_token() {
    // runPlugin: on a non-zero exit the kubelet logs stderr; the pull goes on without
    // credentials from this provider.
    let p = provider(SA_CONFIG, Release::V1_34Plus);
    let opt_in = arg_of(&p, "--workload-identity-annotation");
    let sts = kubelet::pod_sts(
        POD_TOKEN,
        "//iam.googleapis.com/an/audience/the/config/does/not/name",
    );
    let mut node = start_node(p);
    let sts_url = sts.url("/v1/token");
    node.kubelet.add_args(&[
        "--sts-url",
        &sts_url,
        "--iam-endpoint",
        "http://127.0.0.1:1",
    ]);
    let pod = sa_pod("builder", &[(opt_in.as_str(), "true")]);
    assert!(node.kubelet.lookup("gcr.io/proj/app", &pod).is_empty());
    let exec = &node.kubelet.execs[0];
    let logged = exec.result.as_ref().unwrap_err();
    assert_eq!(exec.code, Some(1));
    assert!(
        logged.contains("workload identity for the pod's service account"),
        "{logged}"
    );
    for window in POD_TOKEN.as_bytes().windows(12) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(!logged.contains(piece), "{piece} in {logged}");
    }
}

#[test]
fn the_kubelet_guide_shows_both_example_configs_as_shipped() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kubelet.md"),
    )
    .unwrap();
    for file in [NODE_CONFIG, SA_CONFIG] {
        let text = String::from_utf8(example_config(file)).unwrap();
        assert!(
            guide.contains(text.trim()),
            "docs/kubelet.md shows {file} verbatim"
        );
    }
}
