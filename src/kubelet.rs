//! `kubelet-credential-provider`: the kubelet's image credential provider plugin protocol
//! (credentialprovider.kubelet.k8s.io v1, v1beta1, v1alpha1).
//!
//! The kubelet runs the plugin with a CredentialProviderRequest on stdin and reads a
//! CredentialProviderResponse from stdout. One Google token serves every Google registry, so
//! the answer covers all of them at once (`cacheKeyType: Global`) and the kubelet asks again
//! only when the token nears expiry. Images from other registries get an empty `auth` and
//! exit 0, uncached, so they never poison the global cache entry. Errors go to stderr.
//!
//! In the kubelet's service-account-token mode the request carries the pod's service account
//! token; it is exchanged at STS in memory (it never touches the disk) for the workload
//! identity provider given with `--workload-identity-audience`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::helper::protocol::OAUTH_USERNAME;
use crate::hosts::{self, HostClass};
use crate::settings::{self, Settings};
use crate::token::access::FRESH_MARGIN_SECS;
use crate::token::federation::{self, Federation, JWT_TOKEN_TYPE};
use crate::token::http::Http;
use crate::token::oauth::{self, DEFAULT_LIFETIME_SECS};
use crate::token::{self, Outcome, Token, now_secs};
use crate::util::secret::Secret;
use crate::util::ui;

const GROUP: &str = "credentialprovider.kubelet.k8s.io/";
const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];
const MAX_REQUEST: u64 = 1024 * 1024;

/// The image globs a token is good for, as kubelet `matchImages` patterns.
pub(crate) const GOOGLE_GLOBS: [&str; 4] = [
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
    "docker.*.rep.pkg.dev",
];

/// The pod service account annotation naming a Google service account to impersonate (the
/// same annotation GKE's Workload Identity uses).
pub(crate) const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

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

/// Settings for the kubelet's service-account-token mode (Workload Identity for image pulls).
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Workload identity provider for pod service account tokens:
    /// //iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROVIDER
    #[arg(long = "workload-identity-audience", value_name = "AUDIENCE")]
    audience: Option<String>,
    /// STS token endpoint.
    #[arg(long, value_name = "URL", default_value = oauth::DEFAULT_STS_URL)]
    sts_url: String,
    /// IAM Credentials API endpoint, for impersonating an annotated Google service account.
    #[arg(long, value_name = "URL", default_value = oauth::DEFAULT_IAM_ENDPOINT)]
    iam_endpoint: String,
}

pub(crate) fn run(opts: &Options) -> ExitCode {
    match respond(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui::note(format_args!(
                "docker-credential-gcp kubelet-credential-provider: {e:#}"
            ));
            ExitCode::FAILURE
        }
    }
}

fn respond(opts: &Options) -> Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST + 1)
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    if input.len() as u64 > MAX_REQUEST {
        bail!("the request on stdin is larger than 1 MiB");
    }
    let request = parse_request(&input)?;
    let settings = Settings::load()?;
    settings::init_logging(&settings);
    let registry = image_registry(&request.image)?;
    let google = hosts::normalise(&registry)
        .is_some_and(|r| hosts::classify(&r, &settings.registries.value) == HostClass::Google);
    let response = if google {
        // A pod's service account token means per-pod identity; the kubelet caches the answer
        // per service account, so our own (node-wide) cache is not used for it.
        let (token, key_type) = match &request.service_account_token {
            Some(sa_token) => (
                pod_token(
                    sa_token,
                    &request.service_account_annotations,
                    opts,
                    &settings,
                )?,
                "Registry",
            ),
            None => match token::google_token(&settings)? {
                Outcome::Token(t) => (t, "Global"),
                Outcome::NoSource => bail!(
                    "no Google credentials on this node: give the node a service account (metadata server) or set GOOGLE_APPLICATION_CREDENTIALS in the provider's env"
                ),
            },
        };
        let keys = GOOGLE_GLOBS
            .iter()
            .map(|g| g.to_string())
            .chain(settings.registries.value.iter().map(ToString::to_string));
        let auth: Map<String, Value> = keys
            .map(|k| {
                (
                    k,
                    json!({"username": OAUTH_USERNAME, "password": token.secret.expose()}),
                )
            })
            .collect();
        let lifetime = token
            .remaining_secs(now_secs())
            .saturating_sub(FRESH_MARGIN_SECS);
        json!({
            "apiVersion": request.api_version,
            "kind": "CredentialProviderResponse",
            "cacheKeyType": key_type,
            "cacheDuration": go_duration(lifetime),
            "auth": auth,
        })
    } else {
        log::debug!("{registry} is not a Google registry; answering with no credentials");
        json!({
            "apiVersion": request.api_version,
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Image",
            "cacheDuration": "0s",
            "auth": {},
        })
    };
    let mut out = ui::stdout();
    serde_json::to_writer(&mut out, &response)?;
    writeln!(out)?;
    Ok(())
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
    let impersonation_url = match annotations.get(GSA_ANNOTATION) {
        None => None,
        Some(v) => {
            let email = v.as_str().filter(|e| is_service_account_email(e)).ok_or_else(|| {
                anyhow!(
                    "the {GSA_ANNOTATION} annotation {v} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"
                )
            })?;
            Some(oauth::impersonation_url(&opts.iam_endpoint, email))
        }
    };
    let federation = Federation {
        sts_url: &opts.sts_url,
        audience,
        subject_token_type: JWT_TOKEN_TYPE,
        client_auth: None,
        workforce_user_project: None,
        impersonation: impersonation_url
            .as_deref()
            .map(|url| oauth::Impersonation {
                url,
                lifetime_secs: DEFAULT_LIFETIME_SECS,
                delegates: &[],
            }),
    };
    let deadline = Instant::now() + settings.timeout.value;
    let http = Http::new(settings.ca_file.value.as_deref())?;
    federation::federate(&http, &federation, sa_token, deadline)
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
            "the request is not a CredentialProviderRequest (line {} column {}: {})",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Data => "missing or mistyped field",
                serde_json::error::Category::Eof => "unexpected end",
                _ => "syntax error",
            }
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

/// The registry host of an image reference, as the container runtimes resolve it: the first
/// path component if it looks like a host (has a dot or a port, or is localhost), else
/// Docker Hub.
fn image_registry(image: &str) -> Result<String> {
    let image = image.trim();
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains(['.', ':']) || first == "localhost") {
        Ok(first.to_ascii_lowercase())
    } else if image.is_empty() || image.contains(char::is_whitespace) {
        Err(anyhow!("{image:?} is not an image reference"))
    } else {
        Ok("docker.io".to_owned())
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
    fn durations_are_formatted_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(3300), "55m0s");
        assert_eq!(go_duration(3301), "55m1s");
        assert_eq!(go_duration(3900), "1h5m0s");
        assert_eq!(go_duration(7200), "2h0m0s");
    }

    #[test]
    fn image_references_resolve_to_their_registry() {
        for (image, host) in [
            ("us-docker.pkg.dev/p/r/img:tag", "us-docker.pkg.dev"),
            ("gcr.io/distroless/static@sha256:abc", "gcr.io"),
            ("GCR.io/x", "gcr.io"),
            ("localhost:5000/x", "localhost:5000"),
            ("localhost/x", "localhost"),
            ("nginx", "docker.io"),
            ("library/nginx:1.27", "docker.io"),
            ("bitnami/redis", "docker.io"),
        ] {
            assert_eq!(image_registry(image).unwrap(), host, "{image}");
        }
        assert!(image_registry("").is_err());
        assert!(image_registry("a b").is_err());
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
