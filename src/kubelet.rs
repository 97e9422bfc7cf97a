//! `kubelet-credential-provider`: the kubelet's image credential provider plugin protocol
//! (credentialprovider.kubelet.k8s.io v1, v1beta1, v1alpha1).
//!
//! The kubelet runs the plugin with a CredentialProviderRequest on stdin and reads a
//! CredentialProviderResponse from stdout. One Google token serves every Google registry, so
//! the answer covers all of them at once: the image's own `host[:port]` (the kubelet compares
//! ports and label counts exactly) plus the Google globs and the declared registries. When
//! the globs and declared hosts alone cover every host we could be asked about, the answer is
//! `cacheKeyType: Global` and the kubelet asks again only when the token nears expiry;
//! otherwise (an image host with a port or a deeper gcr.io name, a declared registry without
//! a port) it is `Registry`, so the kubelet asks once per `host[:port]` ([`cache_key_type`]).
//! Images from other registries get an empty `auth` and exit 0, uncached, so they never
//! poison the global cache entry. Errors go to stderr, which the kubelet logs: they never
//! carry the pod's token, not even a fragment of it.
//!
//! In the kubelet's service-account-token mode the request carries the pod's service account
//! token; it is exchanged at STS in memory (it never touches the disk) for the workload
//! identity provider given with `--workload-identity-audience`. With
//! `--workload-identity-annotation KEY` only service accounts annotated `KEY: "true"` get
//! their own identity; the others, like pods without a service account, get the node's.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::helper::protocol::OAUTH_USERNAME;
use crate::hosts::{self, ExtraHost, HostClass};
use crate::settings::{self, Settings};
use crate::token::{self, FRESH_MARGIN_SECS, PodExchange, Token, now_secs};
use crate::util::secret::Secret;
use crate::util::text::json_error;
use crate::util::ui;

const GROUP: &str = "credentialprovider.kubelet.k8s.io/";
const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];
const MAX_REQUEST: u64 = 1024 * 1024;

/// The image globs a token is good for, as kubelet `matchImages` patterns. Each has at most one
/// `*` per label ([`glob_covers`] relies on it).
const GOOGLE_GLOBS: [&str; 4] = [
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
    "docker.*.rep.pkg.dev",
];

/// The pod service account annotation naming a Google service account to impersonate (the
/// same annotation GKE's Workload Identity uses).
const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    image: String,
    /// Sent by kubelets configured with `tokenAttributes` (service-account-token mode).
    #[serde(rename = "serviceAccountToken", default)]
    service_account_token: Option<Secret<String>>,
    #[serde(rename = "serviceAccountAnnotations", default)]
    service_account_annotations: Map<String, Value>,
}

const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// A CredentialProviderResponse, as the kubelet reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    /// The request's own version: the kubelet insists on it.
    api_version: &'a str,
    kind: &'static str,
    cache_key_type: CacheKeyType,
    /// A Go duration (`1h2m3s`).
    cache_duration: String,
    auth: Auth<'a>,
}

/// How the kubelet may reuse an answer ([`cache_key_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum CacheKeyType {
    /// For every image the provider's `matchImages` sends here.
    Global,
    /// For images from the same `host[:port]`.
    Registry,
    /// For this image only (an answer without credentials, which is not cached at all).
    Image,
}

/// The `auth` map, in order: the image's own registry first.
struct Auth<'a>(Vec<(String, AuthConfig<'a>)>);

impl Serialize for Auth<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct AuthConfig<'a> {
    username: &'a str,
    password: &'a str,
}

/// Settings for the kubelet's service-account-token mode (Workload Identity for image pulls).
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Workload identity provider for pod service account tokens:
    /// //iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROVIDER
    #[arg(long = "workload-identity-audience", value_name = "AUDIENCE")]
    audience: Option<String>,
    /// STS token endpoint.
    #[arg(long, value_name = "URL", default_value = token::DEFAULT_STS_URL)]
    sts_url: String,
    /// IAM Credentials API endpoint, for impersonating an annotated Google service account.
    #[arg(long, value_name = "URL", default_value = token::DEFAULT_IAM_ENDPOINT)]
    iam_endpoint: String,
    /// Use a pod's service account token only when its service account carries the annotation
    /// KEY with the value "true" (list KEY in the provider's
    /// optionalServiceAccountAnnotationKeys); other pods get the node's identity.
    #[arg(
        long = "workload-identity-annotation",
        value_name = "KEY",
        requires = "audience",
        value_parser = parse_annotation_key
    )]
    opt_in_annotation: Option<String>,
}

fn parse_annotation_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(char::is_whitespace) {
        Err("an annotation key such as example.com/workload-identity".to_owned())
    } else {
        Ok(key.to_owned())
    }
}

pub(crate) fn run(opts: &Options) -> ExitCode {
    let outcome = read_request().and_then(|request| {
        respond(&request, opts).map_err(|e| {
            // The kubelet logs stderr verbatim: no error may quote the pod's token, whole or cut
            // short by an excerpt of a remote error body.
            match &request.service_account_token {
                Some(token) => anyhow!("{}", token.scrub(&format!("{e:#}"))),
                None => e,
            }
        })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui::note(format_args!(
                "docker-credential-gcp kubelet-credential-provider: {e:#}"
            ));
            ExitCode::FAILURE
        }
    }
}

fn read_request() -> Result<Request> {
    parse_request(&ui::read_stdin(MAX_REQUEST)?)
}

fn respond(request: &Request, opts: &Options) -> Result<()> {
    let settings = Settings::load()?;
    settings::init_logging(&settings);
    let declared = &settings.registries.value;
    let Some(own) = google_host(&request.image, declared)? else {
        log::debug!(
            "{} is not from a Google registry; answering with no credentials",
            request.image
        );
        return write_response(&Response {
            api_version: &request.api_version,
            kind: RESPONSE_KIND,
            cache_key_type: CacheKeyType::Image,
            cache_duration: go_duration(0),
            auth: Auth(Vec::new()),
        });
    };
    let token = match pod_token_to_use(request, opts)? {
        Some(sa_token) => pod_token(
            sa_token,
            &request.service_account_annotations,
            opts,
            &settings,
        )?,
        None => node_token(&settings)?,
    };
    let lifetime = token
        .remaining_secs(now_secs())
        .saturating_sub(FRESH_MARGIN_SECS);
    let config = || AuthConfig {
        username: OAUTH_USERNAME,
        password: token.secret.expose(),
    };
    write_response(&Response {
        api_version: &request.api_version,
        kind: RESPONSE_KIND,
        cache_key_type: cache_key_type(own, declared),
        cache_duration: go_duration(lifetime),
        auth: Auth(
            auth_keys(own, declared)
                .into_iter()
                .map(|key| (key, config()))
                .collect(),
        ),
    })
}

fn write_response(response: &Response<'_>) -> Result<()> {
    let mut out = ui::stdout();
    serde_json::to_writer(&mut out, response)?;
    writeln!(out)?;
    Ok(())
}

/// The image's registry exactly as the image names it (`host[:port]`, the key the kubelet
/// compares with the image), when that is a Google registry or a declared one.
fn google_host<'a>(image: &'a str, declared: &[ExtraHost]) -> Result<Option<&'a str>> {
    let Some(host) = image_host(image)? else {
        return Ok(None);
    };
    let google = hosts::parse_host_entry(host)
        .is_ok_and(|r| hosts::classify(&r, declared) == HostClass::Google);
    Ok(google.then_some(host))
}

/// The node's identity: the same token sources and cache as `get`.
fn node_token(settings: &Settings) -> Result<Token> {
    match token::google_token(settings) {
        Ok(t) => Ok(t),
        Err(e) if e.failures.is_empty() => bail!(
            "no Google credentials on this node: give the node a service account (metadata server) or set GOOGLE_APPLICATION_CREDENTIALS in the provider's env"
        ),
        Err(e) => Err(e.into()),
    }
}

/// The pod's service account token, when this pod is to get its own identity: always when the
/// kubelet sends one, or with `--workload-identity-annotation` only for opted-in accounts.
fn pod_token_to_use<'r>(
    request: &'r Request,
    opts: &Options,
) -> Result<Option<&'r Secret<String>>> {
    let Some(key) = &opts.opt_in_annotation else {
        return Ok(request.service_account_token.as_ref());
    };
    let opted_in = request
        .service_account_annotations
        .get(key)
        .is_some_and(|v| v.as_str() == Some("true"));
    match (&request.service_account_token, opted_in) {
        (Some(t), true) => Ok(Some(t)),
        (None, true) => bail!(
            "the service account is annotated {key}=true, but the kubelet sent no service account token: give the provider tokenAttributes in the kubelet's credential provider config"
        ),
        (_, false) => Ok(None),
    }
}

/// The keys of the answer: the image's own `host[:port]` first, then every Google glob and
/// every declared registry, each once.
fn auth_keys(own: &str, declared: &[ExtraHost]) -> Vec<String> {
    let mut keys = vec![own.to_owned()];
    let rest = GOOGLE_GLOBS
        .iter()
        .map(|g| g.to_string())
        .chain(declared.iter().map(ToString::to_string));
    for key in rest {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// How the kubelet may cache the answer. A `Global` entry serves every later image the
/// provider's `matchImages` routes here, whatever its host, until it expires; so it is only
/// right when the answer's keys without the image's own cover every host we could be asked
/// about: the image's host is covered, and no declared registry lacks a port (such a
/// declaration covers any port, which no key can express). Otherwise `Registry`: one answer per
/// `host[:port]`, each with its own key. The kubelet keys its cache by service account in its
/// service-account-token mode, so this holds there too; `Registry` for Google hosts would
/// only cost one more run and STS exchange per registry.
fn cache_key_type(own: &str, declared: &[ExtraHost]) -> CacheKeyType {
    if covered_without_own_key(own, declared) && declared.iter().all(|d| d.port.is_some()) {
        CacheKeyType::Global
    } else {
        CacheKeyType::Registry
    }
}

/// Whether images from `own` would find a key without `own` itself, as the kubelet matches
/// keys (equal ports, equal label counts, a label glob, case-sensitive).
fn covered_without_own_key(own: &str, declared: &[ExtraHost]) -> bool {
    declared.iter().any(|d| d.to_string() == own)
        || (!own.contains(':') && GOOGLE_GLOBS.iter().any(|g| glob_covers(g, own)))
}

/// `pattern` matches `host` label by label, where a label of `pattern` may hold one `*`
/// (any run of characters within the label).
fn glob_covers(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| match p.split_once('*') {
            None => p == h,
            Some((pre, post)) => {
                h.len() >= pre.len() + post.len() && h.starts_with(pre) && h.ends_with(post)
            }
        })
}

/// Exchanges the pod's service account token at STS (workload identity federation) and, if
/// the service account is annotated with a Google service account, impersonates it.
fn pod_token(
    sa_token: &Secret<String>,
    annotations: &Map<String, Value>,
    opts: &Options,
    settings: &Settings,
) -> Result<Token> {
    let audience = opts.audience.as_deref().ok_or_else(|| {
        anyhow!(
            "the kubelet sent a service account token, but --workload-identity-audience is not set in the provider's args"
        )
    })?;
    let service_account = match annotations.get(GSA_ANNOTATION) {
        None => None,
        Some(v) => {
            let email = v.as_str().filter(|e| is_service_account_email(e)).ok_or_else(|| {
                anyhow!(
                    "the {GSA_ANNOTATION} annotation {v} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"
                )
            })?;
            Some(email)
        }
    };
    let pod = PodExchange {
        sts_url: &opts.sts_url,
        audience,
        iam_endpoint: &opts.iam_endpoint,
        service_account,
    };
    token::exchange_pod_token(settings, &pod, sa_token)
        .map_err(|e| anyhow!("workload identity for the pod's service account: {e:#}"))
}

/// A Google service account email: `NAME@DOMAIN` where NAME is letters, digits, `-`, `_` or
/// `.`, and DOMAIN a DNS name under gserviceaccount.com. Nothing else may reach the
/// impersonation URL it is put into.
fn is_service_account_email(email: &str) -> bool {
    let Some((name, domain)) = email.split_once('@') else {
        return false;
    };
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let domain_ok = (domain == "gserviceaccount.com" || domain.ends_with(".gserviceaccount.com"))
        && hosts::normalise(domain).is_some_and(|r| r.port.is_none() && r.host == domain);
    name_ok && domain_ok
}

fn parse_request(input: &[u8]) -> Result<Request> {
    let request: Request = serde_json::from_slice(input).map_err(|e| {
        anyhow!(
            "the request is not a CredentialProviderRequest ({})",
            json_error(&e)
        )
    })?;
    let version = request.api_version.strip_prefix(GROUP).unwrap_or("");
    if !VERSIONS.contains(&version) {
        bail!(
            "unsupported apiVersion {:?}; expected {GROUP}v1, v1beta1 or v1alpha1",
            request.api_version
        );
    }
    if request.kind != "CredentialProviderRequest" {
        bail!(
            "unexpected kind {:?}; expected CredentialProviderRequest",
            request.kind
        );
    }
    if request.image.trim().is_empty() {
        bail!("the request has no image");
    }
    Ok(request)
}

/// The registry part of an image reference as written (`host[:port]`), as the container
/// runtimes resolve it: the first path component if it looks like a host (has a dot or a
/// port, or is localhost); `None` for Docker Hub.
fn image_host(image: &str) -> Result<Option<&str>> {
    let image = image.trim();
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains(['.', ':']) || first == "localhost") {
        Ok(Some(first))
    } else if image.is_empty() || image.contains(char::is_whitespace) {
        Err(anyhow!("{image:?} is not an image reference"))
    } else {
        Ok(None)
    }
}

/// Seconds as a Go `time.Duration` string: `55m0s`, `1h5m0s`, `45s`, `0s`.
fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_written_as_the_kubelet_reads_it() {
        let config = || AuthConfig {
            username: OAUTH_USERNAME,
            password: "ya29.t",
        };
        let response = Response {
            api_version: "credentialprovider.kubelet.k8s.io/v1",
            kind: RESPONSE_KIND,
            cache_key_type: CacheKeyType::Global,
            cache_duration: go_duration(3300),
            auth: Auth(vec![
                ("us-docker.pkg.dev".into(), config()),
                ("gcr.io".into(), config()),
            ]),
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Global","cacheDuration":"55m0s","auth":{"us-docker.pkg.dev":{"username":"oauth2accesstoken","password":"ya29.t"},"gcr.io":{"username":"oauth2accesstoken","password":"ya29.t"}}}"#
        );
    }

    #[test]
    fn durations_are_formatted_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(3300), "55m0s");
        assert_eq!(go_duration(3301), "55m1s");
        assert_eq!(go_duration(3900), "1h5m0s");
        assert_eq!(go_duration(7200), "2h0m0s");
    }

    #[test]
    fn image_references_resolve_to_their_registry_as_written() {
        for (image, host) in [
            ("us-docker.pkg.dev/p/r/img:tag", Some("us-docker.pkg.dev")),
            ("gcr.io/distroless/static@sha256:abc", Some("gcr.io")),
            ("GCR.io/x", Some("GCR.io")),
            ("localhost:5000/x", Some("localhost:5000")),
            ("localhost/x", Some("localhost")),
            ("nginx", None),
            ("library/nginx:1.27", None),
            ("bitnami/redis", None),
        ] {
            assert_eq!(image_host(image).unwrap(), host, "{image}");
        }
        assert!(image_host("").is_err());
        assert!(image_host("a b").is_err());
    }

    fn declared(list: &str) -> Vec<ExtraHost> {
        hosts::parse_host_list(list).unwrap()
    }

    #[test]
    fn only_plain_google_or_declared_hosts_are_answered() {
        let d = declared("ar-proxy.corp.example,mirror.corp.example:5000");
        for (image, own) in [
            ("gcr.io/p/i", Some("gcr.io")),
            ("GCR.io/p/i", Some("GCR.io")),
            ("x.us.gcr.io/p/i", Some("x.us.gcr.io")),
            ("gcr.io:443/p/i", Some("gcr.io:443")),
            (
                "ar-proxy.corp.example:8443/team/app",
                Some("ar-proxy.corp.example:8443"),
            ),
            (
                "mirror.corp.example:5000/x",
                Some("mirror.corp.example:5000"),
            ),
            ("mirror.corp.example/x", None),
            ("user@gcr.io/p/i", None),
            ("gcr.io.evil.com/x", None),
            ("nginx", None),
        ] {
            assert_eq!(google_host(image, &d).unwrap(), own, "{image}");
        }
    }

    #[test]
    fn answers_carry_the_image_host_and_every_glob_once() {
        let d = declared("ar-proxy.corp.example");
        assert_eq!(
            auth_keys("ar-proxy.corp.example:8443", &d),
            [
                "ar-proxy.corp.example:8443",
                "gcr.io",
                "*.gcr.io",
                "*-docker.pkg.dev",
                "docker.*.rep.pkg.dev",
                "ar-proxy.corp.example"
            ]
        );
        assert_eq!(auth_keys("gcr.io", &[]).len(), GOOGLE_GLOBS.len());
    }

    #[test]
    fn global_only_when_the_other_keys_cover_the_image_host() {
        let d = declared("ar-proxy.corp.example,mirror.corp.example:5000");
        for covered in [
            "gcr.io",
            "us.gcr.io",
            "us-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "docker.us-central1.rep.pkg.dev",
            "ar-proxy.corp.example",
            "mirror.corp.example:5000",
        ] {
            assert!(covered_without_own_key(covered, &d), "{covered}");
        }
        for own in [
            "x.us.gcr.io",
            "GCR.io",
            "gcr.io:443",
            "us-docker.pkg.dev:443",
            "ar-proxy.corp.example:8443",
        ] {
            assert!(!covered_without_own_key(own, &d), "{own}");
        }
        for g in GOOGLE_GLOBS {
            assert!(g.split('.').all(|l| l.matches('*').count() <= 1), "{g}");
        }
    }

    #[test]
    fn a_declared_registry_without_a_port_makes_every_answer_per_registry() {
        assert_eq!(cache_key_type("gcr.io", &[]), CacheKeyType::Global);
        assert_eq!(
            cache_key_type("gcr.io", &declared("ar:5000")),
            CacheKeyType::Global
        );
        assert_eq!(
            cache_key_type("ar:5000", &declared("ar:5000")),
            CacheKeyType::Global
        );
        assert_eq!(cache_key_type("gcr.io:443", &[]), CacheKeyType::Registry);
        assert_eq!(
            cache_key_type("gcr.io", &declared("ar-proxy.corp.example")),
            CacheKeyType::Registry
        );
        assert_eq!(
            cache_key_type("ar-proxy.corp.example", &declared("ar-proxy.corp.example")),
            CacheKeyType::Registry
        );
    }

    #[test]
    fn requests_must_be_of_a_known_version_and_kind() {
        for v in VERSIONS {
            let r = format!(
                r#"{{"apiVersion":"{GROUP}{v}","kind":"CredentialProviderRequest","image":"gcr.io/x"}}"#
            );
            assert!(parse_request(r.as_bytes()).is_ok(), "{v}");
        }
        for bad in [
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v2","kind":"CredentialProviderRequest","image":"x"}"#,
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Other","image":"x"}"#,
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":""}"#,
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#,
            "{}",
            "not json",
            "",
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_well_formed_service_account_emails_reach_the_url() {
        for good in [
            "builder@my-project.iam.gserviceaccount.com",
            "123456-compute@developer.gserviceaccount.com",
            "my-project@appspot.gserviceaccount.com",
        ] {
            assert!(is_service_account_email(good), "{good}");
        }
        for bad in [
            "sa@p.iam.gserviceaccount.com%2F..",
            "sa%2F..@p.iam.gserviceaccount.com",
            "../x@p.iam.gserviceaccount.com",
            "sa/x@p.iam.gserviceaccount.com",
            "sa@evil.com",
            "sa@gserviceaccount.com.evil.com",
            "sa@p.iam.gserviceaccount.com:generateIdToken",
            "sa@p.iam.gserviceaccount.com?x",
            "sa",
            "@p.iam.gserviceaccount.com",
            "",
        ] {
            assert!(!is_service_account_email(bad), "{bad}");
        }
    }
}
