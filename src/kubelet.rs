//! `kubelet-credential-provider`: the kubelet's image credential provider plugin protocol
//! (credentialprovider.kubelet.k8s.io v1, v1beta1, v1alpha1).
//!
//! The kubelet runs the plugin with a CredentialProviderRequest on stdin and reads a
//! CredentialProviderResponse from stdout. One Google token serves every Google registry, so
//! the answer covers all of them at once (`cacheKeyType: Global`) and the kubelet asks again
//! only when the token nears expiry. Images from other registries get an empty `auth` and
//! exit 0, uncached, so they never poison the global cache entry. Errors go to stderr.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::cache::{FRESH_MARGIN_SECS, now_secs};
use crate::hosts::{self, HostClass};
use crate::protocol::OAUTH_USERNAME;
use crate::settings::Settings;
use crate::tokens::{self, Outcome};

const GROUP: &str = "credentialprovider.kubelet.k8s.io/";
const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

/// The image globs a token is good for, as kubelet `matchImages` patterns.
pub const GOOGLE_GLOBS: [&str; 4] = [
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
    "docker.*.rep.pkg.dev",
];

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    image: String,
}

pub fn run() -> ExitCode {
    match respond() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docker-credential-gcp kubelet-credential-provider: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn respond() -> Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(1024 * 1024 + 1)
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    if input.len() > 1024 * 1024 {
        bail!("the request on stdin is larger than 1 MiB");
    }
    let request = parse_request(&input)?;
    let settings = Settings::load()?;
    crate::logging::init(settings.log_level.value, settings.log_file.value.clone());
    let registry = image_registry(&request.image)?;
    let google = hosts::normalise(&registry)
        .is_some_and(|r| hosts::classify(&r, &settings.registries.value) == HostClass::Google);
    let response = if google {
        let token = match tokens::google_token(&settings)? {
            Outcome::Token(t) => t,
            Outcome::NoSource => bail!(
                "no Google credentials on this node: give the node a service account (metadata server) or set GOOGLE_APPLICATION_CREDENTIALS in the provider's env"
            ),
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
            "cacheKeyType": "Global",
            "cacheDuration": go_duration(lifetime),
            "auth": auth,
        })
    } else {
        crate::debug!("{registry} is not a Google registry; answering with no credentials");
        json!({
            "apiVersion": request.api_version,
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Image",
            "cacheDuration": "0s",
            "auth": {},
        })
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &response)?;
    writeln!(out)?;
    Ok(())
}

fn parse_request(input: &[u8]) -> Result<Request> {
    let request: Request = serde_json::from_slice(input).map_err(|e| {
        anyhow!(
            "the request is not a CredentialProviderRequest (line {} column {}: {})",
            e.line(),
            e.column(),
            category(&e)
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

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Data => "missing or mistyped field",
        serde_json::error::Category::Eof => "unexpected end",
        _ => "syntax error",
    }
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
}
