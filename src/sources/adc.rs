//! Application Default Credentials files: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's
//! well-known `application_default_credentials.json`.
//!
//! `service_account` keys are minted by yup-oauth2 (JWT bearer grant at the key's own
//! `token_uri`). `authorized_user` files are refreshed here, because yup-oauth2 posts them to a
//! fixed Google URL and ignores the file's `token_uri`. `external_account`,
//! `external_account_authorized_user` and `impersonated_service_account` files are handed to
//! `external.rs` and `impersonated.rs`; this module only dispatches on the file's `type`.
//! Error messages name the file and the step, never a key, secret or token.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use super::{MintContext, SCOPE, external, gcloud, impersonated};
use crate::cache::Token;
use crate::http::{self, Http};
use crate::secret::Secret;

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const MAX_FILE: u64 = 1024 * 1024;

/// The ADC file to use and whether the user named it explicitly.
pub fn locate() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let well_known = gcloud::config_dir()?.join("application_default_credentials.json");
    well_known.is_file().then_some((well_known, false))
}

pub fn mint(path: &Path, explicit: bool, ctx: &mut MintContext) -> Result<Token> {
    let bytes = read_credentials_file(path, explicit)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{} is not valid JSON ({e})", path.display()))?;
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "service_account" => service_account(path, &bytes, ctx),
        "authorized_user" => authorized_user(path, doc, ctx),
        "external_account" => external::mint_external_account(path, doc, ctx),
        "external_account_authorized_user" => external::mint_authorized_user(path, doc, ctx),
        "impersonated_service_account" => impersonated::mint(path, doc, ctx),
        "" => bail!(
            "{} has no \"type\" field; it is not a Google credentials file",
            path.display()
        ),
        other => bail!(
            "{}: unknown credential type {:?}",
            path.display(),
            http::excerpt(other.as_bytes())
        ),
    }
}

fn read_credentials_file(path: &Path, explicit: bool) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && explicit {
            anyhow!(
                "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
                path.display()
            )
        } else {
            anyhow!("cannot read {}: {e}", path.display())
        }
    })?;
    if meta.len() > MAX_FILE {
        bail!("{} is too large to be a credentials file", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The fields a service account key must have, checked before yup-oauth2 sees the file, so
/// that a malformed key gives a message that names fields, not values.
#[derive(Deserialize)]
struct ServiceAccountFields {
    client_email: String,
    private_key: Secret<String>,
    token_uri: Option<String>,
}

pub(super) fn service_account(path: &Path, bytes: &[u8], ctx: &mut MintContext) -> Result<Token> {
    let fields: ServiceAccountFields = serde_json::from_slice(bytes).map_err(|e| {
        anyhow!(
            "{}: not a valid service account key ({})",
            path.display(),
            field_error(&e)
        )
    })?;
    if fields.private_key.expose().is_empty() {
        bail!(
            "{}: the service account key has an empty private_key",
            path.display()
        );
    }
    let token_uri = fields
        .token_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
    http::check_url(&token_uri).with_context(|| format!("{}: token_uri", path.display()))?;
    // yup-oauth2 requires token_uri, which Google's libraries default: give it ours.
    let mut doc: Value = serde_json::from_slice(bytes)?;
    doc["token_uri"] = Value::String(token_uri.clone());
    let key = yup_oauth2::parse_service_account_key(doc.to_string())
        .map_err(|_| anyhow!("{}: not a valid service account key", path.display()))?;
    let deadline = ctx.deadline;
    let http = ctx.http()?;
    let client = yup_oauth2::CustomHyperClientBuilder::from(http.client());
    let step = format!("service account {} at {token_uri}", fields.client_email);
    let auth = http
        .block_on(
            deadline,
            yup_oauth2::ServiceAccountAuthenticator::with_client(key, client).build(),
        )
        .and_then(|r| r.map_err(|e| anyhow!("{e}")))
        .map_err(|e| anyhow!("{step}: cannot load the private key ({e})"))?;
    let token = token_with_retries(http, deadline, &auth, &step)?;
    let secret = token
        .token()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("{step}: the token response has no access_token"))?;
    let expires_at = token
        .expiration_time()
        .map(|t| t.unix_timestamp().max(0) as u64)
        .ok_or_else(|| anyhow!("{step}: the token response has no expiry"))?;
    Ok(Token {
        secret: Secret::new(secret.to_owned()),
        expires_at,
    })
}

/// yup-oauth2 does not retry, and it hides the HTTP status, so transient failures are told
/// apart by the error kind: connection errors and non-JSON bodies (an HTML 5xx page) are
/// retried with backoff within the deadline; an OAuth error such as invalid_grant is final.
fn token_with_retries<C>(
    http: &Http,
    deadline: Instant,
    auth: &yup_oauth2::authenticator::Authenticator<C>,
    step: &str,
) -> Result<yup_oauth2::AccessToken>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut attempt = 1;
    loop {
        let result = http.block_on(deadline, auth.token(&[SCOPE]));
        let transient = match &result {
            Ok(Ok(_)) | Err(_) => false,
            Ok(Err(e)) => matches!(
                e,
                yup_oauth2::Error::HttpError(_)
                    | yup_oauth2::Error::HttpClientError(_)
                    | yup_oauth2::Error::JSONError(_)
            ),
        };
        let wait = std::time::Duration::from_millis(200 << (attempt - 1));
        if !transient || attempt >= http::MAX_ATTEMPTS || Instant::now() + wait >= deadline {
            return result
                .and_then(|r| r.map_err(|e| anyhow!("{e}")))
                .map_err(|e| anyhow!("{step}: token request failed: {e}"));
        }
        crate::info!(
            "{step}: transient failure; retrying in {} ms",
            wait.as_millis()
        );
        std::thread::sleep(wait);
        attempt += 1;
    }
}

#[derive(Deserialize)]
struct AuthorizedUser {
    client_id: String,
    client_secret: Secret<String>,
    refresh_token: Secret<String>,
    token_uri: Option<String>,
}

pub(super) fn authorized_user(path: &Path, doc: Value, ctx: &mut MintContext) -> Result<Token> {
    let user: AuthorizedUser = serde_json::from_value(doc).map_err(|e| {
        anyhow!(
            "{}: not a valid authorized_user file ({})",
            path.display(),
            field_error(&e)
        )
    })?;
    let token_uri = user.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
    http::check_url(token_uri).with_context(|| format!("{}: token_uri", path.display()))?;
    let deadline = ctx.deadline;
    let resp = ctx.http()?.post_form(
        token_uri,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &user.client_id),
            ("client_secret", user.client_secret.expose()),
            ("refresh_token", user.refresh_token.expose()),
        ],
        deadline,
    );
    let step = format!(
        "refreshing the user credentials in {} at {token_uri}",
        path.display()
    );
    let resp = resp.map_err(|e| anyhow!("{step}: {e:#}"))?;
    http::parse_token_response(&resp).map_err(|e| anyhow!("{step}: {e}"))
}

/// A serde error reduced to its category and position: serde's messages can quote values.
pub(super) fn field_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if let Some(field) = text.strip_prefix("missing field ") {
        return format!(
            "missing field {}",
            field.split_whitespace().next().unwrap_or("")
        );
    }
    match e.classify() {
        serde_json::error::Category::Data => "a field has the wrong type".to_owned(),
        _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
    }
}
