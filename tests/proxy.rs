//! Corporate networks: every request of a mint goes through the proxy that HTTPS_PROXY /
//! https_proxy name, except what NO_PROXY exempts and the metadata server; proxy credentials
//! stay secret; certificate authorities can be added. Against real proxies (tinyproxy, and
//! squid where its behaviour differs or matters: authentication, refusals), a loopback HTTPS
//! stand-in for Google's endpoints with a certificate from a test CA, and test names that
//! resolve to 127.0.0.1 only inside the tests' private mount namespaces (see
//! `support::proxy` for why names).

use crate::support::peers::{Peer, need};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use crate::support::proxy::{Kind, Names, Pki, Proxy, ProxyOpts};
use crate::support::*;

const SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.subject-from-the-idp.sig";
const POD_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.pod-service-account-token.sig";
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/corp/providers/p";
const IMPERSONATED: &str = "deployer@test-project.iam.gserviceaccount.com";

/// Google's token endpoint (oauth2.test), STS (sts.test), IAM Credentials (iam.test) and an
/// identity provider's subject token URL (idp.test), over HTTPS with the test CA's certificate.
fn google(pki: &Pki) -> Server {
    let token = token_handler(3600);
    Server::start_tls(pki.server_config(), move |req| {
        let host = req.header("host").unwrap_or("");
        let name = host.split(':').next().unwrap_or("");
        let iam_path = format!("/v1/projects/-/serviceAccounts/{IMPERSONATED}:generateAccessToken");
        match (name, req.path()) {
            ("oauth2.test", "/token") => token(req),
            ("idp.test", "/subject") => Reply {
                status: 200,
                headers: vec![],
                body: SUBJECT_TOKEN.into(),
            },
            ("sts.test", "/v1/token") => {
                let form = req.form();
                let subject = form.get("subject_token").map(String::as_str);
                if form.get("audience").map(String::as_str) == Some(AUDIENCE)
                    && matches!(subject, Some(SUBJECT_TOKEN | POD_TOKEN))
                {
                    Reply::json(
                        200,
                        json!({"access_token": "ya29.federated", "expires_in": 3600, "token_type": "Bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
                    )
                } else {
                    Reply::json(400, json!({"error": "invalid_grant"}))
                }
            }
            ("iam.test", path)
                if path == iam_path
                    && req.header("authorization") == Some("Bearer ya29.federated") =>
            {
                Reply::json(
                    200,
                    json!({"accessToken": "ya29.impersonated", "expireTime": "2126-01-01T00:00:00Z"}),
                )
            }
            _ => Reply::json(
                404,
                json!({"error": format!("nothing at {host}{}", req.path())}),
            ),
        }
    })
}

/// A test CA, the HTTPS stand-in, a real proxy, and a helper environment with a service
/// account key for oauth2.test and the CA in `ca_file`. No proxy variable is set yet.
struct Lab {
    names: Names,
    pki: Pki,
    google: Server,
    proxy: Proxy,
    env: Env,
}

impl Lab {
    fn new(kind: Kind, opts: ProxyOpts) -> Lab {
        let names = Names::new();
        let pki = Pki::new();
        let google = google(&pki);
        let proxy = Proxy::start(kind, opts, &names);
        let mut env = Env::new();
        env.set("DOCKER_CREDENTIAL_GCP_NO_CACHE", "1");
        env.set(
            "DOCKER_CREDENTIAL_GCP_CA_FILE",
            pki.ca_file().display().to_string(),
        );
        let mut lab = Lab {
            names,
            pki,
            google,
            proxy,
            env,
        };
        let token_uri = lab.url("oauth2.test", "/token");
        lab.env.use_service_account(&token_uri);
        lab
    }

    fn url(&self, name: &str, path: &str) -> String {
        format!("https://{name}:{}{path}", self.google.port())
    }

    /// What the proxy logs for a tunnel to `name`.
    fn connect_line(&self, name: &str) -> String {
        format!("CONNECT {name}:{}", self.google.port())
    }

    fn get(&self) -> Output {
        self.names.run(&self.env, &["get"], b"us-docker.pkg.dev")
    }

    /// How many requests the stand-in got for `name`.
    fn requests_to(&self, name: &str) -> usize {
        let host = format!("{name}:{}", self.google.port());
        self.google
            .requests()
            .iter()
            .filter(|r| r.header("host") == Some(host.as_str()))
            .count()
    }
}

#[test]
fn a_token_is_minted_through_the_proxy_in_https_proxy() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let proxy_url = lab.proxy.url();
    lab.env.set("HTTPS_PROXY", proxy_url);
    let out = lab.get();
    assert_eq!(creds(&out).2, "ya29.test-1");
    let log = lab.proxy.wait_log(&lab.connect_line("oauth2.test"));
    // The closing note of the issue quotes these lines (`cargo test proxy:: -- --nocapture`).
    println!("tinyproxy log:\n{log}");
    assert!(
        log.contains(&format!("CONNECT {}:", "oauth2.test"))
            && log.contains(&lab.connect_line("oauth2.test")),
        "{log}"
    );
    assert_eq!(
        lab.requests_to("oauth2.test"),
        1,
        "TLS end to end, one request"
    );
}

#[test]
fn lowercase_proxy_variables_are_honoured() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let proxy_url = lab.proxy.url();
    lab.env.set("https_proxy", proxy_url);
    assert_eq!(creds(&lab.get()).2, "ya29.test-1");
    assert_eq!(
        lab.proxy.lines_for(&lab.connect_line("oauth2.test")).len(),
        1
    );

    lab.env.set("no_proxy", "oauth2.test");
    assert_eq!(creds(&lab.get()).2, "ya29.test-2");
    assert_eq!(
        lab.proxy.lines_for(&lab.connect_line("oauth2.test")).len(),
        1,
        "no_proxy: the second token came directly"
    );
    assert_eq!(lab.requests_to("oauth2.test"), 2);
}

#[test]
fn no_proxy_entries_send_requests_directly() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let proxy_url = lab.proxy.url();
    lab.env.set("HTTPS_PROXY", proxy_url);
    let port = lab.google.port();
    let exact_port = format!("oauth2.test:{port}");
    let other_port = format!("oauth2.test:{}", port.wrapping_add(1).max(1));
    // (NO_PROXY, goes through the proxy)
    let cases = [
        ("oauth2.test", false),
        (".test", false),
        ("test", false),
        ("*.test", false),
        ("*", false),
        ("example.com, OAUTH2.TEST ,", false),
        (exact_port.as_str(), false),
        (other_port.as_str(), true),
        ("auth2.test", true),
        ("127.0.0.1", true),
        ("sts.test,iam.test", true),
    ];
    for (n, (no_proxy, proxied)) in cases.into_iter().enumerate() {
        lab.env.set("NO_PROXY", no_proxy);
        let before = lab.proxy.lines_for(&lab.connect_line("oauth2.test")).len();
        assert_eq!(
            creds(&lab.get()).2,
            format!("ya29.test-{}", n + 1),
            "{no_proxy}"
        );
        let after = lab.proxy.lines_for(&lab.connect_line("oauth2.test")).len();
        assert_eq!(
            after - before,
            usize::from(proxied),
            "NO_PROXY={no_proxy:?}"
        );
    }
}

#[test]
fn proxy_credentials_reach_the_proxy_and_nothing_else() {
    if !need(&[Peer::Squid, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let password = "pa55:w@rd";
    let encoded = "pa55%3Aw%40rd";
    let mut lab = Lab::new(
        Kind::Squid,
        ProxyOpts {
            auth: Some(("alice", password)),
            ..ProxyOpts::default()
        },
    );
    let log_file = lab.env.path("helper.log");
    let proxy_url = lab.proxy.url_with(&format!("alice:{encoded}"));
    lab.env
        .set("HTTPS_PROXY", proxy_url)
        .set("DOCKER_CREDENTIAL_GCP_LOG", "debug")
        .set(
            "DOCKER_CREDENTIAL_GCP_LOG_FILE",
            log_file.display().to_string(),
        );
    let out = lab.get();
    assert_eq!(creds(&out).2, "ya29.test-1");
    let log = lab.proxy.wait_log(&lab.connect_line("oauth2.test"));
    println!("squid access.log:\n{log}");
    let line = lab
        .proxy
        .lines_for(&lab.connect_line("oauth2.test"))
        .pop()
        .unwrap_or_else(|| panic!("no CONNECT in {log}"));
    assert!(
        line.contains("TCP_TUNNEL/200") && line.contains(" alice "),
        "squid saw the user: {line}"
    );

    let wrong = lab.proxy.url_with("alice:wrong-pa55");
    lab.env.set("HTTPS_PROXY", wrong);
    let refused = lab.get();
    assert_ne!(refused.code, 0);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains(&format!(
            "through proxy {}: proxy authentication required (407 Proxy Authentication Required); the proxy rejected the user name and password in HTTPS_PROXY",
            lab.proxy.url()
        )),
        "{text}"
    );
    let right = lab.proxy.url_with(&format!("alice:{encoded}"));
    lab.env.set("HTTPS_PROXY", right);
    let doctor = lab.names.run(&lab.env, &["doctor"], b"");
    assert!(
        doctor.stdout.contains(&format!(
            "- token endpoint oauth2.googleapis.com: through proxy {} (CONNECT; HTTPS_PROXY, with the user and password from the URL)",
            lab.proxy.url()
        )),
        "{}",
        doctor.stdout
    );
    let config = lab.names.run(&lab.env, &["config"], b"");
    assert_eq!(config.code, 0);

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let helper_log = std::fs::read_to_string(&log_file).unwrap();
    assert!(helper_log.contains("through proxy"), "{helper_log}");
    for (channel, text) in [
        ("get stdout", out.stdout.as_str()),
        ("get stderr", &out.stderr),
        ("refused get", &text),
        ("debug log file", &helper_log),
        ("doctor", &format!("{}{}", doctor.stdout, doctor.stderr)),
        ("config", &format!("{}{}", config.stdout, config.stderr)),
    ] {
        for secret in ["pa55", "w@rd", encoded, basic.as_str()] {
            assert!(!text.contains(secret), "{secret} in {channel}: {text}");
        }
    }
}

#[test]
fn a_proxy_that_wants_credentials_says_where_they_go() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(
        Kind::Tinyproxy,
        ProxyOpts {
            auth: Some(("alice", "pa55-w.rd")),
            ..ProxyOpts::default()
        },
    );
    let proxy_url = lab.proxy.url();
    lab.env.set("https_proxy", proxy_url);
    let out = lab.get();
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains(&format!(
            "through proxy {}: proxy authentication required (407 Proxy Authentication Required); put user:password@ into https_proxy",
            lab.proxy.url()
        )),
        "{}",
        out.stdout
    );
    let with_credentials = lab.proxy.url_with("alice:pa55-w.rd");
    lab.env.set("https_proxy", with_credentials);
    assert_eq!(creds(&lab.get()).2, "ya29.test-1");
}

#[test]
fn a_proxy_refusing_connect_is_a_clear_error_within_the_deadline() {
    if !need(&[Peer::Squid, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(
        Kind::Squid,
        ProxyOpts {
            deny_connect: true,
            ..ProxyOpts::default()
        },
    );
    let proxy_url = lab.proxy.url();
    lab.env
        .set("HTTPS_PROXY", proxy_url)
        .set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "10");
    let started = Instant::now();
    let out = lab.get();
    let took = started.elapsed();
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains(&format!(
            "through proxy {}: CONNECT refused (403 Forbidden)",
            lab.proxy.url()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("to fix: check HTTPS_PROXY and NO_PROXY"),
        "{}",
        out.stdout
    );
    assert!(
        took < Duration::from_secs(10),
        "within the deadline: {took:?}"
    );
    let log = lab.proxy.wait_log("TCP_DENIED/403");
    println!("squid access.log:\n{log}");
    assert_eq!(
        log.matches("TCP_DENIED/403").count(),
        1,
        "a refusal is final, not retried: {log}"
    );
    assert_eq!(lab.requests_to("oauth2.test"), 0);
}

#[test]
fn the_metadata_server_is_reached_directly_while_proxy_variables_are_set() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let metadata = metadata_server(3600);
    let proxy_url = lab.proxy.url();
    lab.env
        .set("HTTPS_PROXY", proxy_url.clone())
        .set("HTTP_PROXY", proxy_url.clone())
        .set("https_proxy", proxy_url.clone())
        .set("http_proxy", proxy_url)
        .set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata")
        .set(
            "GCE_METADATA_HOST",
            format!("metadata.test:{}", metadata.port()),
        );
    assert_eq!(creds(&lab.get()).2, "ya29.metadata-1");
    let requests = metadata.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].target.starts_with("/computeMetadata/"),
        "origin form, not a proxy's absolute form: {}",
        requests[0].target
    );
    let log = lab.proxy.log();
    assert!(!log.contains("metadata.test"), "{log}");
}

#[test]
fn an_unknown_certificate_authority_fails_until_it_is_added() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let proxy_url = lab.proxy.url();
    lab.env
        .set("HTTPS_PROXY", proxy_url)
        .unset("DOCKER_CREDENTIAL_GCP_CA_FILE");
    let out = lab.get();
    assert_ne!(out.code, 0);
    assert!(
        out.stdout
            .contains("invalid peer certificate: UnknownIssuer")
            && out.stdout.contains("DOCKER_CREDENTIAL_GCP_CA_FILE"),
        "{}",
        out.stdout
    );
    assert!(
        !lab.proxy
            .lines_for(&lab.connect_line("oauth2.test"))
            .is_empty(),
        "the tunnel was open; the certificate was checked through it"
    );
    assert_eq!(lab.requests_to("oauth2.test"), 0, "nothing was sent");

    let ca = lab.pki.ca_file().display().to_string();
    lab.env.set("DOCKER_CREDENTIAL_GCP_CA_FILE", ca.clone());
    assert_eq!(creds(&lab.get()).2, "ya29.test-1");

    lab.env.unset("DOCKER_CREDENTIAL_GCP_CA_FILE");
    let config = lab.env.path(".config/docker-credential-gcp/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, json!({"ca_file": ca}).to_string()).unwrap();
    assert_eq!(
        creds(&lab.get()).2,
        "ya29.test-2",
        "ca_file in the config file"
    );
    let shown = lab.env.run(&["config"], b"");
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("ca_file") && l.contains(&ca) && l.contains("(config file)")),
        "{}",
        shown.stdout
    );
    std::fs::remove_file(&config).unwrap();

    // SSL_CERT_FILE replaces the OS roots (rustls-native-certs, as OpenSSL).
    lab.env.set("SSL_CERT_FILE", ca);
    assert_eq!(creds(&lab.get()).2, "ya29.test-3", "SSL_CERT_FILE");
}

#[test]
fn external_account_federation_and_impersonation_go_through_the_proxy() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let adc = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": lab.url("sts.test", "/v1/token"),
        "service_account_impersonation_url": lab.url(
            "iam.test",
            &format!("/v1/projects/-/serviceAccounts/{IMPERSONATED}:generateAccessToken"),
        ),
        "credential_source": {"url": lab.url("idp.test", "/subject")},
    });
    let path = lab.env.path("federation.json");
    std::fs::write(&path, adc.to_string()).unwrap();
    let proxy_url = lab.proxy.url();
    lab.env
        .set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string())
        .set("HTTPS_PROXY", proxy_url);
    assert_eq!(creds(&lab.get()).2, "ya29.impersonated");
    for name in ["idp.test", "sts.test", "iam.test"] {
        assert_eq!(
            lab.proxy.lines_for(&lab.connect_line(name)).len(),
            1,
            "{name}: {}",
            lab.proxy.log()
        );
        assert_eq!(lab.requests_to(name), 1, "{name}");
    }
}

#[test]
fn the_kubelet_provider_uses_the_proxy_in_its_environment() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    // The kubelet's environment under systemd: no HOME; the provider config's env adds the rest.
    let proxy_url = lab.proxy.url();
    lab.env
        .unset("HOME")
        .unset("GOOGLE_APPLICATION_CREDENTIALS")
        .set("HTTPS_PROXY", proxy_url)
        .set("NO_PROXY", "localhost,127.0.0.1,.svc,.cluster.local");
    let request = json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "europe-west1-docker.pkg.dev/proj/repo/app:2",
        "serviceAccountToken": POD_TOKEN,
        "serviceAccountAnnotations": {"iam.gke.io/gcp-service-account": IMPERSONATED},
    });
    let (sts, iam) = (lab.url("sts.test", "/v1/token"), lab.url("iam.test", ""));
    let out = lab.names.run(
        &lab.env,
        &[
            "kubelet-credential-provider",
            "--workload-identity-audience",
            AUDIENCE,
            "--sts-url",
            &sts,
            "--iam-endpoint",
            &iam,
        ],
        request.to_string().as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["auth"]["*-docker.pkg.dev"]["password"],
        "ya29.impersonated"
    );
    for name in ["sts.test", "iam.test"] {
        assert_eq!(
            lab.proxy.lines_for(&lab.connect_line(name)).len(),
            1,
            "{name}: {}",
            lab.proxy.log()
        );
    }
}

#[test]
fn a_cached_get_does_no_proxy_work() {
    if !need(&[Peer::Tinyproxy, Peer::Namespaces, Peer::Root]) {
        return;
    }
    let mut lab = Lab::new(Kind::Tinyproxy, ProxyOpts::default());
    let proxy_url = lab.proxy.url();
    lab.env
        .unset("DOCKER_CREDENTIAL_GCP_NO_CACHE")
        .set("HTTPS_PROXY", proxy_url);
    assert_eq!(creds(&lab.get()).2, "ya29.test-1");
    // Settings that would fail any mint: the cached answer never looks at them.
    lab.env
        .set("HTTPS_PROXY", "http://not a proxy")
        .set("DOCKER_CREDENTIAL_GCP_CA_FILE", "/nonexistent/ca.pem");
    let out = lab.names.run(&lab.env, &["get"], b"gcr.io");
    assert_eq!(creds(&out).2, "ya29.test-1");
    assert_eq!(lab.requests_to("oauth2.test"), 1);
}

#[test]
fn ca_file_adds_to_the_os_roots_and_mozillas_roots_stand_in_only_for_none() {
    if !need(&[Peer::Namespaces, Peer::Root]) {
        return;
    }
    require("unshare");
    require_root("hiding /etc/ssl in a private mount namespace");
    let pki = Pki::new();
    let mut env = Env::new();
    let ca = pki.ca_file().display().to_string();
    env.set("DOCKER_CREDENTIAL_GCP_CA_FILE", ca.clone());
    let line = |out: &Output| {
        out.stdout
            .lines()
            .find(|l| l.contains("certificate authorities"))
            .unwrap_or_else(|| panic!("{}", out.stdout))
            .to_owned()
    };
    let with_os = line(&env.run(&["doctor"], b""));
    assert!(
        with_os.starts_with("✓ trusted certificate authorities: ")
            && !with_os.contains(": 0 from the OS")
            && with_os.ends_with(&format!(" from the OS, 1 from ca_file {ca}")),
        "{with_os}"
    );

    // No OS certificates at all, as for a static binary in an empty chroot.
    let without_os = |env: &Env| {
        let script = r#"mount -t tmpfs none /etc/ssl && exec "$@""#;
        let cmd = env.program(
            "unshare",
            &[
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                BIN,
                "doctor",
            ],
        );
        line(&run_command(cmd, b""))
    };
    let fallback = without_os(&env);
    assert!(
        fallback.starts_with("✓ trusted certificate authorities: 0 from the OS, ")
            && fallback.contains(" built in (Mozilla's, as the OS has none), 1 from ca_file"),
        "{fallback}"
    );
    // A user who names the roots keeps their choice: no silent fallback.
    env.unset("DOCKER_CREDENTIAL_GCP_CA_FILE")
        .set("SSL_CERT_FILE", "/nonexistent/roots.pem");
    let chosen = without_os(&env);
    assert_eq!(
        chosen,
        "✗ no trusted certificate authorities (0 from SSL_CERT_FILE/SSL_CERT_DIR); HTTPS requests will fail"
    );
}
