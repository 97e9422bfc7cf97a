//! Google credential files (Application Default Credentials) as data: one enum tagged by the
//! file's `type`, and the mint that follows from each variant.
//!
//! - `service_account`: a key; yup-oauth2 signs the JWT bearer grant and posts it to the key's
//!   own `token_uri`.
//! - `authorized_user`: a user's refresh token (`gcloud auth application-default login`),
//!   refreshed here because yup-oauth2 posts to a fixed URL and ignores the file's `token_uri`.
//! - `external_account`: workload or workforce identity federation (see `federation`).
//! - `external_account_authorized_user`: a workforce user's refresh token.
//! - `impersonated_service_account`: any of the above as `source_credentials`, whose token is
//!   exchanged for a service account's.
//!
//! Parsing and validation touch nothing (the fuzzer runs them); only [`CredentialFile::mint`]
//! reaches the network. Error messages name the file, the field and the step, never a value.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use super::access::{Token, now_secs};
use super::failure::{Failure, FailureKind};
use super::federation::{self, ExternalAccount};
use super::oauth::{self, DEFAULT_LIFETIME_SECS, DEFAULT_TOKEN_URI, SCOPE};
use crate::net::http::{self, Http, MintContext, Retry, Retryable};
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

const DEFAULT_OAUTH_URL: &str = "https://sts.googleapis.com/v1/oauthtoken";

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum CredentialFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
    ExternalAccount(ExternalAccount),
    ExternalAccountAuthorizedUser(ExternalAuthorizedUser),
    ImpersonatedServiceAccount(ImpersonatedServiceAccount),
}

const TYPES: [&str; 5] = [
    "service_account",
    "authorized_user",
    "external_account",
    "external_account_authorized_user",
    "impersonated_service_account",
];

#[derive(Debug, Deserialize)]
pub(crate) struct ServiceAccountKey {
    client_email: String,
    private_key: Secret<String>,
    private_key_id: Option<String>,
    project_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizedUser {
    client_id: String,
    client_secret: Secret<String>,
    refresh_token: Secret<String>,
    token_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExternalAuthorizedUser {
    refresh_token: Secret<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ImpersonatedServiceAccount {
    service_account_impersonation_url: String,
    source_credentials: Box<CredentialFile>,
    #[serde(default)]
    delegates: Vec<String>,
}

impl CredentialFile {
    /// Parses a credentials file's bytes. Errors name the problem (no JSON, no or an unknown
    /// `type`, a missing or mistyped field), never a value.
    pub(crate) fn parse(bytes: &[u8]) -> Result<CredentialFile> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| anyhow!("not valid JSON ({})", json_error(&e)))?;
        Self::from_doc(doc)
    }

    fn from_doc(doc: Value) -> Result<CredentialFile> {
        let kind = match doc.get("type").and_then(Value::as_str) {
            None | Some("") => {
                bail!("has no \"type\" field; it is not a Google credentials file")
            }
            Some(k) if TYPES.contains(&k) => k.to_owned(),
            Some(other) => bail!("unknown credential type {:?}", excerpt(other.as_bytes())),
        };
        if kind == "impersonated_service_account" {
            check_impersonation_source(&doc)?;
        }
        serde_json::from_value(doc).map_err(|e| {
            anyhow!(
                "not a valid file of credential type {kind:?} ({})",
                json_error(&e)
            )
        })
    }

    /// Checks everything that can be checked without the network: the URLs the file names
    /// (https, or plain http to loopback) and the shape of a federation credential source.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            CredentialFile::ServiceAccount(key) => {
                if key.private_key.is_empty() {
                    bail!("the service account key has an empty private_key");
                }
                http::check_url(key.token_uri()).context("token_uri")
            }
            CredentialFile::AuthorizedUser(user) => {
                http::check_url(user.token_uri()).context("token_uri")
            }
            CredentialFile::ExternalAccount(account) => account.validate(),
            CredentialFile::ExternalAccountAuthorizedUser(user) => {
                http::check_url(user.token_url()).context("token_url")
            }
            CredentialFile::ImpersonatedServiceAccount(file) => {
                http::check_url(&file.service_account_impersonation_url)
                    .context("service_account_impersonation_url")?;
                file.source_credentials
                    .validate()
                    .context("source_credentials")
            }
        }
    }

    /// Obtains a token with these credentials within the context's deadline.
    pub(crate) fn mint(&self, ctx: &mut MintContext) -> Result<Token> {
        self.validate()?;
        for secret in self.secrets() {
            ctx.holds(secret);
        }
        match self {
            CredentialFile::ServiceAccount(key) => key.mint(ctx),
            CredentialFile::AuthorizedUser(user) => user.mint(ctx),
            CredentialFile::ExternalAccount(account) => federation::mint(account, ctx),
            CredentialFile::ExternalAccountAuthorizedUser(user) => user.mint(ctx),
            CredentialFile::ImpersonatedServiceAccount(file) => file.mint(ctx),
        }
    }
}

impl CredentialFile {
    /// The secrets this file holds, so that no message can quote them.
    fn secrets(&self) -> Vec<&Secret<String>> {
        match self {
            CredentialFile::ServiceAccount(key) => vec![&key.private_key],
            CredentialFile::AuthorizedUser(user) => vec![&user.client_secret, &user.refresh_token],
            CredentialFile::ExternalAccount(account) => account.secrets(),
            CredentialFile::ExternalAccountAuthorizedUser(user) => {
                let mut all = vec![&user.refresh_token];
                all.extend(user.client_secret.as_ref());
                all
            }
            CredentialFile::ImpersonatedServiceAccount(file) => file.source_credentials.secrets(),
        }
    }
}

/// Source credentials may be any type except another impersonation.
fn check_impersonation_source(doc: &Value) -> Result<()> {
    let Some(source) = doc.get("source_credentials") else {
        return Ok(()); // serde names the missing field
    };
    match source.get("type").and_then(Value::as_str) {
        None | Some("") => bail!("source_credentials has no \"type\""),
        Some(kind) if TYPES.contains(&kind) && kind != "impersonated_service_account" => Ok(()),
        Some(other) => bail!(
            "source_credentials of credential type {:?} are not supported \
             (service_account, authorized_user, external_account or \
             external_account_authorized_user)",
            excerpt(other.as_bytes())
        ),
    }
}

/// Reads and parses the credentials file at `path` and mints with it; errors start with the
/// path.
pub(crate) fn mint_file(path: &Path, bytes: &[u8], ctx: &mut MintContext) -> Result<Token> {
    CredentialFile::parse(bytes)
        .and_then(|file| file.mint(ctx))
        .with_context(|| path.display().to_string())
}

impl ServiceAccountKey {
    fn token_uri(&self) -> &str {
        self.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI)
    }

    fn mint(&self, ctx: &mut MintContext) -> Result<Token> {
        let token_uri = self.token_uri().to_owned();
        let step = format!(
            "service account {} at {}",
            self.client_email,
            http::redacted_url(&token_uri)
        );
        // yup-oauth2 requires token_uri, which Google's libraries default: give it ours.
        let key = yup_oauth2::ServiceAccountKey {
            key_type: Some("service_account".to_owned()),
            project_id: self.project_id.clone(),
            private_key_id: self.private_key_id.clone(),
            private_key: self.private_key.expose().clone(),
            client_email: self.client_email.clone(),
            client_id: None,
            auth_uri: None,
            token_uri,
            auth_provider_x509_cert_url: None,
            client_x509_cert_url: None,
        };
        let deadline = ctx.deadline;
        let http = ctx.http()?;
        let client = yup_oauth2::CustomHyperClientBuilder::from(
            http.client().map_err(|e| anyhow!("{step}: {e}"))?,
        );
        let auth = http
            .block_on(
                &step,
                deadline,
                yup_oauth2::ServiceAccountAuthenticator::with_client(key, client).build(),
            )?
            .map_err(|e| anyhow!("{step}: cannot load the private key ({e})"))?;
        let token = http::with_retries(&step, deadline, || yup_token(http, &auth, &step, deadline))
            .map_err(|e| anyhow::Error::new(e.into_failure()))
            .with_context(|| format!("{step}: token request failed"))?;
        let unusable = |what: &str| Failure::new(FailureKind::Unreachable, what);
        let secret = token
            .token()
            .ok_or_else(|| unusable("the token response has no access_token"))
            .with_context(|| step.clone())?;
        let expires_at = token
            .expiration_time()
            .ok_or_else(|| unusable("the token response has no expiry"))
            .with_context(|| step.clone())?;
        Token::issued(
            Secret::new(secret.to_owned()),
            expires_at.unix_timestamp(),
            now_secs(),
        )
        .with_context(|| step)
    }
}

/// One token request through yup-oauth2, its failure classified for the shared retry policy.
fn yup_token<C>(
    http: &Http,
    auth: &yup_oauth2::authenticator::Authenticator<C>,
    step: &str,
    deadline: Instant,
) -> Result<yup_oauth2::AccessToken, YupFailure>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    match http.block_on(step, deadline, auth.token(&[SCOPE])) {
        Ok(Ok(token)) => Ok(token),
        Ok(Err(e)) => Err(YupFailure::Yup(e)),
        Err(e) => Err(YupFailure::Http(e)),
    }
}

/// yup-oauth2 hides the HTTP status, so a failure is classified by its kind: no connection
/// (`HttpError`) and a non-JSON body (an HTML 5xx page, `JSONError`) are transient; an OAuth
/// error such as `invalid_grant` is final.
enum YupFailure {
    Http(http::HttpError),
    Yup(yup_oauth2::Error),
}

impl YupFailure {
    /// yup-oauth2's error mapped once, here at the boundary, to a typed failure: its kind
    /// from the error's variant and OAuth code, its text an excerpt (a server's description
    /// can be megabytes). The whole message is scrubbed of what was sent by the mint context.
    fn into_failure(self) -> Failure {
        use yup_oauth2::error::AuthErrorCode as Code;
        match self {
            YupFailure::Http(e) => Failure::new(FailureKind::Unreachable, e.to_string()),
            YupFailure::Yup(yup_oauth2::Error::AuthError(e)) => {
                let kind = match &e.error {
                    Code::Other(code)
                        if matches!(
                            code.as_str(),
                            "temporarily_unavailable" | "server_error" | "internal_failure"
                        ) =>
                    {
                        FailureKind::Unreachable
                    }
                    _ => FailureKind::Denied,
                };
                let desc = e
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {}", excerpt(d.as_bytes())))
                    .unwrap_or_default();
                Failure::new(
                    kind,
                    format!("{}{desc}", excerpt(e.error.as_str().as_bytes())),
                )
            }
            YupFailure::Yup(yup_oauth2::Error::JSONError(_)) => Failure::new(
                FailureKind::Unreachable,
                "the token endpoint's answer is not a token response (not valid JSON)",
            ),
            YupFailure::Yup(yup_oauth2::Error::MissingAccessToken) => Failure::new(
                FailureKind::Unreachable,
                "the token response has no access_token",
            ),
            YupFailure::Yup(
                e @ (yup_oauth2::Error::HttpError(_) | yup_oauth2::Error::HttpClientError(_)),
            ) => Failure::new(
                FailureKind::Unreachable,
                excerpt(http::describe(&e).as_bytes()),
            ),
            YupFailure::Yup(e) => {
                Failure::new(FailureKind::Broken, excerpt(http::describe(&e).as_bytes()))
            }
        }
    }
}

impl std::fmt::Display for YupFailure {
    /// For the retry log line: the kind of failure only, never what the server said (it is
    /// scrubbed later, in one place, before anyone reads it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            YupFailure::Http(e) => e.fmt(f),
            YupFailure::Yup(yup_oauth2::Error::AuthError(e)) => {
                write!(f, "refused ({})", excerpt(e.error.as_str().as_bytes()))
            }
            YupFailure::Yup(yup_oauth2::Error::JSONError(_)) => f.write_str("an unreadable answer"),
            YupFailure::Yup(_) => f.write_str("no answer"),
        }
    }
}

impl Retryable for YupFailure {
    fn retry(&self) -> Retry {
        match self {
            YupFailure::Http(e) => e.retry(),
            YupFailure::Yup(e) if http::is_final_proxy_refusal(e) => Retry::No,
            YupFailure::Yup(
                yup_oauth2::Error::HttpError(_)
                | yup_oauth2::Error::HttpClientError(_)
                | yup_oauth2::Error::JSONError(_),
            ) => Retry::Backoff,
            YupFailure::Yup(_) => Retry::No,
        }
    }
}

impl AuthorizedUser {
    fn token_uri(&self) -> &str {
        self.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI)
    }

    fn mint(&self, ctx: &mut MintContext) -> Result<Token> {
        let token_uri = self.token_uri();
        let step = format!(
            "refreshing the user credentials at {}",
            http::redacted_url(token_uri)
        );
        let grant = oauth::RefreshGrant {
            token_url: token_uri,
            refresh_token: &self.refresh_token,
            client_id: Some(&self.client_id),
            client_secret: Some(&self.client_secret),
            basic_client_auth: false,
        };
        let deadline = ctx.deadline;
        oauth::refresh(ctx.http()?, &grant, deadline, &step)
    }
}

impl ExternalAuthorizedUser {
    fn token_url(&self) -> &str {
        self.token_url.as_deref().unwrap_or(DEFAULT_OAUTH_URL)
    }

    fn mint(&self, ctx: &mut MintContext) -> Result<Token> {
        let step = format!(
            "refreshing the workforce credentials at {}",
            http::redacted_url(self.token_url())
        );
        let grant = oauth::RefreshGrant {
            token_url: self.token_url(),
            refresh_token: &self.refresh_token,
            client_id: self.client_id.as_deref(),
            client_secret: self.client_secret.as_ref(),
            basic_client_auth: true,
        };
        let deadline = ctx.deadline;
        oauth::refresh(ctx.http()?, &grant, deadline, &step)
    }
}

impl ImpersonatedServiceAccount {
    fn mint(&self, ctx: &mut MintContext) -> Result<Token> {
        let source = self
            .source_credentials
            .mint(ctx)
            .context("source_credentials")?;
        let target = oauth::Impersonation {
            url: &self.service_account_impersonation_url,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            delegates: &self.delegates,
        };
        let deadline = ctx.deadline;
        oauth::impersonate(ctx.http()?, &target, &source.secret, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<CredentialFile> {
        CredentialFile::parse(v.to_string().as_bytes())
    }

    #[test]
    fn the_type_field_selects_the_variant() {
        let key = parse(serde_json::json!({"type": "service_account", "client_email": "a@b", "private_key": "k"})).unwrap();
        assert!(matches!(key, CredentialFile::ServiceAccount(_)));
        let user = parse(serde_json::json!({"type": "authorized_user", "client_id": "i", "client_secret": "s", "refresh_token": "r"})).unwrap();
        assert!(matches!(user, CredentialFile::AuthorizedUser(_)));
        let nested = parse(serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": "https://iam.example/x",
            "source_credentials": {"type": "authorized_user", "client_id": "i", "client_secret": "s", "refresh_token": "r"}
        }))
        .unwrap();
        match nested {
            CredentialFile::ImpersonatedServiceAccount(f) => {
                assert!(matches!(
                    *f.source_credentials,
                    CredentialFile::AuthorizedUser(_)
                ));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn type_errors_say_what_is_wrong_without_values() {
        for (doc, needle) in [
            (serde_json::json!({}), "no \"type\" field"),
            (serde_json::json!({"type": 5}), "no \"type\" field"),
            (
                serde_json::json!({"type": "x509"}),
                "unknown credential type \"x509\"",
            ),
            (
                serde_json::json!({"type": "service_account", "client_email": "a@b"}),
                "credential type \"service_account\" (missing field `private_key`)",
            ),
            (
                serde_json::json!({"type": "authorized_user", "client_id": "secret-id", "client_secret": 5, "refresh_token": "r"}),
                "wrong type",
            ),
            (
                serde_json::json!({"type": "impersonated_service_account", "service_account_impersonation_url": "https://x", "source_credentials": {"type": "impersonated_service_account"}}),
                "are not supported",
            ),
        ] {
            let e = format!("{:#}", parse(doc.clone()).unwrap_err());
            assert!(e.contains(needle), "{doc}: {e}");
            assert!(!e.contains("secret-id"));
        }
    }

    #[test]
    fn validation_refuses_plain_http_off_loopback_without_sending_anything() {
        let key = parse(serde_json::json!({"type": "service_account", "client_email": "a@b", "private_key": "k", "token_uri": "http://oauth2.example.com/token"})).unwrap();
        let e = format!("{:#}", key.validate().unwrap_err());
        assert!(e.contains("token_uri") && e.contains("plain http"), "{e}");
        let local = parse(serde_json::json!({"type": "service_account", "client_email": "a@b", "private_key": "k", "token_uri": "http://127.0.0.1:1/token"})).unwrap();
        local.validate().unwrap();
    }

    /// Every way a credentials file can be wrong that shows before any request: the message
    /// names what is wrong (the caller adds the file's path) and never a value.
    #[test]
    fn malformed_files_of_every_type_are_refused_before_any_request() {
        let audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/gh";
        let jwt = "urn:ietf:params:oauth:token-type:jwt";
        let ok_source = serde_json::json!({"file": "/nonexistent/token"});
        let account = |extra: Value| {
            let mut doc = serde_json::json!({"type": "external_account", "audience": audience, "subject_token_type": jwt});
            for (k, v) in extra.as_object().unwrap() {
                doc[k] = v.clone();
            }
            doc.to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "not valid JSON"),
            ("\u{feff}{}".to_owned(), "not valid JSON"),
            ("[".repeat(100_000), "not valid JSON"),
            ("[]".to_owned(), "no \"type\" field"),
            (r#"{"type": 5}"#.to_owned(), "no \"type\" field"),
            (r#"{"type":"service_account"}"#.to_owned(), "missing field"),
            (r#"{"type":"service_account","client_email":7,"private_key":"x"}"#.to_owned(), "wrong type"),
            (r#"{"type":"authorized_user","client_id":"x"}"#.to_owned(), "missing field"),
            (r#"{"type":"authorized_user","client_id":"x","client_secret":"s","refresh_token":"r","token_uri":"ftp://x"}"#.to_owned(), "token_uri"),
            (r#"{"type":"something_new"}"#.to_owned(), "unknown credential type \"something_new\""),
            (r#"{"type":"external_account"}"#.to_owned(), "credential type \"external_account\" (missing field `audience`)"),
            (r#"{"type":"external_account_authorized_user"}"#.to_owned(), "credential type \"external_account_authorized_user\" (missing field `refresh_token`)"),
            (r#"{"type":"impersonated_service_account"}"#.to_owned(), "credential type \"impersonated_service_account\" (missing field `service_account_impersonation_url`)"),
            (account(serde_json::json!({})), "missing field `credential_source`"),
            (account(serde_json::json!({"audience": 7, "credential_source": ok_source})), "wrong type"),
            (account(serde_json::json!({"credential_source": {}})), "names no source"),
            (account(serde_json::json!({"credential_source": {"file": "/x", "format": {"type": "json"}}})), "subject_token_field_name"),
            (account(serde_json::json!({"credential_source": {"file": "/x", "format": {"type": "xml"}}})), "format type \"xml\" is not supported"),
            (account(serde_json::json!({"credential_source": {"environment_id": "aws9"}})), "environment_id \"aws9\" is not supported"),
            (account(serde_json::json!({"credential_source": {"executable": {"command": ""}}})), "executable.command is empty"),
            (
                r#"{"type": "impersonated_service_account", "service_account_impersonation_url": "https://iam.example.com/x", "source_credentials": {"type": "impersonated_service_account"}}"#.to_owned(),
                "source_credentials of credential type \"impersonated_service_account\" are not supported",
            ),
            (
                r#"{"type": "impersonated_service_account", "service_account_impersonation_url": "https://iam.example.com/x", "source_credentials": {"type": "authorized_user"}}"#.to_owned(),
                "missing field `client_id`",
            ),
        ];
        for (text, needle) in &cases {
            let e = CredentialFile::parse(text.as_bytes())
                .and_then(|f| f.validate())
                .map(|()| "accepted".to_owned())
                .unwrap_or_else(|e| format!("{e:#}"));
            assert!(e.contains(needle), "{text:.80}: expected {needle:?} in {e}");
            assert!(!e.contains("/nonexistent"), "{text:.80}: {e}");
        }
    }
}
