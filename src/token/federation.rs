//! Workload and workforce identity federation: `external_account` credentials, and
//! [`federate`], the one exchange every federated identity goes through (the kubelet's
//! [`exchange_pod_token`] with a pod's service account token held in memory).
//!
//! An `external_account` file names where a *subject token* comes from (its
//! `credential_source`: a file, a URL, an executable, or AWS), which is swapped at Google's STS
//! for a federated access token, which may in turn be swapped for a service account's token
//! (AIP-4117). Every URL the file names is honoured; credentials go over plain HTTP only to
//! loopback and, for credential sources, to the link-local instance metadata address.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::access::Token;
use super::aws::{AwsSource, RawAwsSource};
use super::executable::{self, Executable, RawExecutable};
use super::oauth::{self, DEFAULT_LIFETIME_SECS, DEFAULT_STS_URL};
use crate::net::http::{self, Http, MintContext, Request};
use crate::settings::Settings;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

const MAX_SUBJECT_FILE: u64 = 1024 * 1024;
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, Deserialize)]
pub(crate) struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    service_account_impersonation: Option<ImpersonationOptions>,
    workforce_pool_user_project: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret<String>>,
    credential_source: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ImpersonationOptions {
    token_lifetime_seconds: Option<u64>,
}

impl ExternalAccount {
    /// The secrets the file itself holds (a workforce pool's client secret).
    pub(crate) fn secrets(&self) -> Vec<&Secret<String>> {
        self.client_secret.iter().collect()
    }
}

/// Where the subject token comes from.
#[derive(Debug)]
enum Source {
    File { file: PathBuf, format: Format },
    Url(UrlSource),
    Executable(Executable),
    Aws(AwsSource),
}

#[derive(Debug)]
enum Format {
    Text,
    /// A JSON object; the subject token is the string in this field.
    Json(String),
}

#[derive(Debug)]
struct UrlSource {
    url: String,
    headers: BTreeMap<String, String>,
    format: Format,
}

/// The `credential_source` object, all kinds at once; [`Source::parse`] decides which it is.
#[derive(Deserialize)]
struct RawSource {
    file: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<RawFormat>,
    executable: Option<RawExecutable>,
    environment_id: Option<String>,
}

#[derive(Deserialize)]
struct RawFormat {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject_token_field_name: Option<String>,
}

/// One federation exchange: a subject token at STS, then optionally impersonation.
struct Federation<'a> {
    sts_url: &'a str,
    audience: &'a str,
    subject_token_type: &'a str,
    client_auth: Option<Secret<String>>,
    workforce_user_project: Option<&'a str>,
    impersonation: Option<oauth::Impersonation<'a>>,
}

/// Exchanges `subject` at STS and, if asked, for a service account's token.
fn federate(
    http: &Http,
    f: &Federation<'_>,
    subject: &Secret<String>,
    deadline: std::time::Instant,
) -> Result<Token> {
    let exchange = oauth::StsExchange {
        sts_url: f.sts_url,
        audience: f.audience,
        subject_token: subject,
        subject_token_type: f.subject_token_type,
        client_auth: f.client_auth.clone(),
        workforce_user_project: f.workforce_user_project,
    };
    let federated = oauth::sts_exchange(http, &exchange, deadline)?;
    match &f.impersonation {
        None => Ok(federated),
        Some(target) => oauth::impersonate(http, target, &federated.secret, deadline),
    }
}

/// The kubelet's service-account-token mode: a pod's Kubernetes token, held in memory, to
/// exchange at STS for the workload identity pool `audience`, and then, if the pod's service
/// account is annotated with a Google service account, for that account's token.
#[derive(Debug)]
pub(crate) struct PodExchange<'a> {
    pub(crate) sts_url: &'a str,
    pub(crate) audience: &'a str,
    /// The IAM Credentials endpoint impersonation goes to.
    pub(crate) iam_endpoint: &'a str,
    /// The Google service account to impersonate (already checked to be an email).
    pub(crate) service_account: Option<&'a str>,
}

/// Exchanges the pod's token within the settings' timeout, through the same HTTP stack (CA
/// file, proxies) as every mint.
pub(crate) fn exchange_pod_token(
    settings: &Settings,
    pod: &PodExchange<'_>,
    sa_token: &Secret<String>,
) -> Result<Token> {
    let impersonation_url = pod
        .service_account
        .map(|email| oauth::impersonation_url(pod.iam_endpoint, email));
    let federation = Federation {
        sts_url: pod.sts_url,
        audience: pod.audience,
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
    let mut ctx = MintContext::new(
        std::time::Instant::now() + settings.timeout.value,
        settings.ca_file.value.clone(),
    );
    ctx.holds(sa_token);
    let deadline = ctx.deadline;
    let exchanged = federate(ctx.http()?, &federation, sa_token, deadline);
    // The one place this exchange's errors become text: without anything it sent.
    exchanged.map_err(|e| {
        let kind = super::failure::classify(&e);
        anyhow::Error::new(super::failure::Failure::new(
            kind,
            ctx.scrub(&format!("{e:#}")),
        ))
    })
}

impl ExternalAccount {
    fn token_url(&self) -> &str {
        self.token_url.as_deref().unwrap_or(DEFAULT_STS_URL)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.source().context("credential_source")?;
        http::check_url(self.token_url()).context("token_url")?;
        if let Some(url) = &self.service_account_impersonation_url {
            http::check_url(url).context("service_account_impersonation_url")?;
        }
        Ok(())
    }

    fn source(&self) -> Result<Source> {
        Source::parse(&self.credential_source)
    }
}

/// Mints with an `external_account` file: its subject token, then [`federate`].
pub(crate) fn mint(account: &ExternalAccount, ctx: &mut MintContext) -> Result<Token> {
    let source = account.source().context("credential_source")?;
    let deadline = ctx.deadline;
    let subject = subject_token(account, &source, ctx).context("getting the subject token")?;
    let lifetime = account
        .service_account_impersonation
        .as_ref()
        .and_then(|o| o.token_lifetime_seconds)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    let federation = Federation {
        sts_url: account.token_url(),
        audience: &account.audience,
        subject_token_type: &account.subject_token_type,
        client_auth: oauth::basic_auth(
            account.client_id.as_deref(),
            account.client_secret.as_ref(),
        ),
        workforce_user_project: account.workforce_pool_user_project.as_deref(),
        impersonation: account
            .service_account_impersonation_url
            .as_deref()
            .map(|url| oauth::Impersonation {
                url,
                lifetime_secs: lifetime,
                delegates: &[],
            }),
    };
    federate(ctx.http()?, &federation, &subject, deadline)
}

impl Source {
    fn parse(value: &serde_json::Value) -> Result<Source> {
        let raw: RawSource = serde_json::from_value(value.clone())
            .map_err(|e| anyhow!("not a valid credential source ({})", json_error(&e)))?;
        if raw.environment_id.is_some() {
            let aws: RawAwsSource = serde_json::from_value(value.clone())
                .map_err(|e| anyhow!("not a valid AWS credential source ({})", json_error(&e)))?;
            return AwsSource::parse(aws).map(Source::Aws);
        }
        if let Some(exe) = raw.executable {
            return Ok(Source::Executable(Executable::parse(exe)?));
        }
        let format = Format::parse(raw.format)?;
        match (raw.file, raw.url) {
            (Some(file), None) => Ok(Source::File {
                file: PathBuf::from(file),
                format,
            }),
            (None, Some(url)) => {
                http::check_url_or_instance_metadata(&url).context("url")?;
                Ok(Source::Url(UrlSource {
                    url,
                    headers: raw.headers,
                    format,
                }))
            }
            (Some(_), Some(_)) => bail!("has both file and url; it must have exactly one"),
            (None, None) => {
                bail!("names no source: expected file, url, executable or environment_id (aws)")
            }
        }
    }
}

impl Format {
    fn parse(raw: Option<RawFormat>) -> Result<Format> {
        let Some(raw) = raw else {
            return Ok(Format::Text);
        };
        match raw.kind.as_deref().unwrap_or("text") {
            "text" => Ok(Format::Text),
            "json" => match raw.subject_token_field_name {
                Some(field) if !field.is_empty() => Ok(Format::Json(field)),
                _ => bail!("format type \"json\" needs subject_token_field_name"),
            },
            other => bail!(
                "format type {:?} is not supported (text or json)",
                excerpt(other.as_bytes())
            ),
        }
    }

    /// The subject token in `body`; errors never quote the body, which may hold a token.
    fn extract(&self, body: &[u8]) -> Result<Secret<String>> {
        let token = match self {
            Format::Text => std::str::from_utf8(body)
                .map_err(|_| anyhow!("the subject token is not UTF-8 text"))?
                .trim()
                .to_owned(),
            Format::Json(field) => {
                let doc: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| anyhow!("the response is not valid JSON"))?;
                doc.get(field)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("the JSON has no string field {field:?}"))?
            }
        };
        if token.is_empty() {
            bail!("the subject token is empty");
        }
        Ok(Secret::new(token))
    }
}

fn subject_token(
    account: &ExternalAccount,
    source: &Source,
    ctx: &mut MintContext,
) -> Result<Secret<String>> {
    let deadline = ctx.deadline;
    match source {
        Source::File { file, format } => {
            let bytes =
                files::read_bounded(file, MAX_SUBJECT_FILE, Symlinks::Follow, Trust::Anyone)
                    .and_then(|b| b.context("the file does not exist"))
                    .with_context(|| {
                        format!("reading the credential_source file {}", file.display())
                    })?;
            format
                .extract(&bytes)
                .with_context(|| format!("credential_source file {}", file.display()))
        }
        Source::Url(src) => url_subject_token(src, ctx.http()?, deadline),
        Source::Executable(exe) => {
            let req = executable::Request {
                audience: &account.audience,
                subject_token_type: &account.subject_token_type,
                impersonated_email: account
                    .service_account_impersonation_url
                    .as_deref()
                    .and_then(impersonated_email),
            };
            exe.subject_token(&req, deadline)
        }
        Source::Aws(src) => src.subject_token(&account.audience, ctx.http()?, deadline),
    }
}

fn url_subject_token(
    src: &UrlSource,
    http: &Http,
    deadline: std::time::Instant,
) -> Result<Secret<String>> {
    let step = format!("credential_source url {}", http::redacted_url(&src.url));
    let req = Request::get(&src.url)
        .headers(src.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .with_context(|| step.clone())?;
    let resp = http.send(&req, deadline).with_context(|| step.clone())?;
    if !resp.is_success() {
        bail!("{step}: HTTP {}: {}", resp.status, excerpt(&resp.body));
    }
    src.format
        .extract(&resp.body)
        .map_err(|e| anyhow!("{step}: {e}"))
}

/// The service account email in a `…/serviceAccounts/EMAIL:generateAccessToken` URL.
fn impersonated_email(url: &str) -> Option<&str> {
    let rest = &url[url.rfind("/serviceAccounts/")? + "/serviceAccounts/".len()..];
    let email = rest.split(':').next()?;
    (!email.is_empty()).then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_impersonated_email_comes_from_the_url() {
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";
        assert_eq!(
            impersonated_email(url),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(impersonated_email("https://example.com/token"), None);
    }

    #[test]
    fn credential_sources_are_told_apart_and_checked() {
        let ok = |v: serde_json::Value| Source::parse(&v).unwrap();
        assert!(matches!(
            ok(serde_json::json!({"file": "/t"})),
            Source::File {
                format: Format::Text,
                ..
            }
        ));
        assert!(matches!(
            ok(
                serde_json::json!({"url": "https://idp.example/t", "format": {"type": "json", "subject_token_field_name": "id_token"}})
            ),
            Source::Url(UrlSource {
                format: Format::Json(_),
                ..
            })
        ));
        assert!(matches!(
            ok(serde_json::json!({"executable": {"command": "/bin/idp"}})),
            Source::Executable(_)
        ));
        assert!(matches!(
            ok(serde_json::json!({"environment_id": "aws1"})),
            Source::Aws(_)
        ));
        for (bad, needle) in [
            (serde_json::json!({}), "names no source"),
            (
                serde_json::json!({"file": "/a", "url": "https://b"}),
                "exactly one",
            ),
            (
                serde_json::json!({"url": "http://idp.example/t"}),
                "plain http",
            ),
            (
                serde_json::json!({"file": "/a", "format": {"type": "xml"}}),
                "\"xml\"",
            ),
        ] {
            let e = format!("{:#}", Source::parse(&bad).unwrap_err());
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
