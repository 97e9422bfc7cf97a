//! Workload and workforce identity federation: ADC files of type `external_account` and
//! `external_account_authorized_user`, and the two Google exchanges that federation and
//! `impersonated_service_account` share: the STS token exchange and service account
//! impersonation (`generateAccessToken`).
//!
//! An `external_account` file names where a *subject token* comes from (its
//! `credential_source`: a file, a URL, an executable, or AWS, see `aws.rs`), which is swapped
//! at Google's STS for a federated access token, which may in turn be swapped for a service
//! account's token (AIP-4117). Every URL the file names is honoured; credentials go over plain
//! HTTP only to loopback and, for credential sources, to the link-local instance metadata
//! address. Subject tokens, access tokens and secrets travel in [`Secret`] and never appear in
//! an error message: errors name the file, the step and the URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::adc::field_error;
use super::{MintContext, SCOPE, aws};
use crate::cache::{Token, now_secs};
use crate::http::{self, Response};
use crate::secret::Secret;

const DEFAULT_STS_URL: &str = "https://sts.googleapis.com/v1/token";
const DEFAULT_OAUTH_URL: &str = "https://sts.googleapis.com/v1/oauthtoken";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The lifetime Google's client libraries ask for when the file does not say.
pub(super) const DEFAULT_LIFETIME_SECS: u64 = 3600;
const DEFAULT_EXECUTABLE_TIMEOUT_MS: u64 = 30_000;
const ALLOW_EXECUTABLES: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
const MAX_SUBJECT_FILE: u64 = 1024 * 1024;

/// Parses a credentials file of type `kind`; errors name fields, never values. The wording
/// keeps "credential type" so a malformed file reads like an unsupported one would.
pub(super) fn parse_file<T: DeserializeOwned>(path: &Path, kind: &str, doc: Value) -> Result<T> {
    serde_json::from_value(doc).map_err(|e| {
        anyhow!(
            "{}: not a valid file of credential type {kind:?} ({})",
            path.display(),
            field_error(&e)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// external_account

#[derive(Deserialize)]
struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    service_account_impersonation: Option<ImpersonationOptions>,
    workforce_pool_user_project: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret<String>>,
    credential_source: Value,
}

#[derive(Deserialize)]
struct ImpersonationOptions {
    token_lifetime_seconds: Option<u64>,
}

/// Where the subject token comes from.
enum Source {
    File { file: PathBuf, format: Format },
    Url(UrlSource),
    Executable(Executable),
    Aws(aws::AwsSource),
}

enum Format {
    Text,
    /// A JSON object; the subject token is the string in this field.
    Json(String),
}

struct UrlSource {
    url: String,
    headers: BTreeMap<String, String>,
    format: Format,
}

struct Executable {
    command: String,
    timeout: Duration,
    output_file: Option<PathBuf>,
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

#[derive(Deserialize)]
struct RawExecutable {
    command: String,
    timeout_millis: Option<u64>,
    output_file: Option<String>,
}

pub(super) fn mint_external_account(
    path: &Path,
    doc: Value,
    ctx: &mut MintContext,
) -> Result<Token> {
    let account: ExternalAccount = parse_file(path, "external_account", doc)?;
    let source = Source::parse(&account.credential_source)
        .with_context(|| format!("{}: credential_source", path.display()))?;
    let token_url = account.token_url.as_deref().unwrap_or(DEFAULT_STS_URL);
    http::check_url(token_url).with_context(|| format!("{}: token_url", path.display()))?;
    if let Some(url) = &account.service_account_impersonation_url {
        http::check_url(url)
            .with_context(|| format!("{}: service_account_impersonation_url", path.display()))?;
    }
    let subject = subject_token(&account, &source, ctx)
        .with_context(|| format!("{}: getting the subject token", path.display()))?;
    let federated = sts_exchange(&account, token_url, &subject, ctx)?;
    let Some(url) = &account.service_account_impersonation_url else {
        return Ok(federated);
    };
    let lifetime = account
        .service_account_impersonation
        .and_then(|o| o.token_lifetime_seconds)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    impersonate(url, &federated.secret, lifetime, &[], ctx)
}

impl Source {
    fn parse(value: &Value) -> Result<Source> {
        let raw: RawSource = serde_json::from_value(value.clone())
            .map_err(|e| anyhow!("not a valid credential source ({})", field_error(&e)))?;
        if raw.environment_id.is_some() {
            return aws::AwsSource::parse(value).map(Source::Aws);
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
                http::excerpt(other.as_bytes())
            ),
        }
    }

    /// The subject token in `body`; errors never quote the body, which may hold a token.
    fn extract(&self, body: &[u8]) -> Result<Secret<String>> {
        let token = match self {
            Format::Text => String::from_utf8(body.to_vec())
                .map_err(|_| anyhow!("the subject token is not UTF-8 text"))?
                .trim()
                .to_owned(),
            Format::Json(field) => {
                let doc: Value = serde_json::from_slice(body)
                    .map_err(|_| anyhow!("the response is not valid JSON"))?;
                doc.get(field)
                    .and_then(Value::as_str)
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
    match source {
        Source::File { file, format } => {
            let bytes = read_limited(file).with_context(|| {
                format!("reading the credential_source file {}", file.display())
            })?;
            format
                .extract(&bytes)
                .with_context(|| format!("credential_source file {}", file.display()))
        }
        Source::Url(src) => url_subject_token(src, ctx),
        Source::Executable(exe) => exe.subject_token(account, ctx.deadline),
        Source::Aws(src) => src.subject_token(&account.audience, ctx),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_SUBJECT_FILE {
        bail!("the file is too large");
    }
    Ok(std::fs::read(path)?)
}

fn url_subject_token(src: &UrlSource, ctx: &mut MintContext) -> Result<Secret<String>> {
    let step = format!("credential_source url {}", src.url);
    let headers: Vec<(&str, &str)> = src
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let deadline = ctx.deadline;
    let resp = ctx
        .http()?
        .get(&src.url, &headers, deadline)
        .map_err(|e| anyhow!("{step}: {e:#}"))?;
    if !(200..300).contains(&resp.status) {
        bail!(
            "{step}: HTTP {}: {}",
            resp.status,
            http::excerpt(&resp.body)
        );
    }
    src.format
        .extract(&resp.body)
        .map_err(|e| anyhow!("{step}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Executable-sourced credentials

impl Executable {
    fn parse(raw: RawExecutable) -> Result<Executable> {
        if raw.command.split_whitespace().next().is_none() {
            bail!("executable.command is empty");
        }
        let millis = raw.timeout_millis.unwrap_or(DEFAULT_EXECUTABLE_TIMEOUT_MS);
        if millis == 0 {
            bail!("executable.timeout_millis must be positive");
        }
        Ok(Executable {
            command: raw.command,
            timeout: Duration::from_millis(millis),
            output_file: raw.output_file.filter(|f| !f.is_empty()).map(PathBuf::from),
        })
    }

    fn subject_token(
        &self,
        account: &ExternalAccount,
        deadline: Instant,
    ) -> Result<Secret<String>> {
        // Running a program named in a credentials file is opt-in, as in Google's libraries.
        if std::env::var(ALLOW_EXECUTABLES).as_deref() != Ok("1") {
            bail!("executable-sourced credentials are disabled: set {ALLOW_EXECUTABLES}=1");
        }
        if let Some(token) = self.cached_output() {
            return Ok(token);
        }
        let mut args = self.command.split_whitespace();
        let program = args.next().unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", &account.audience)
            .env(
                "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE",
                &account.subject_token_type,
            )
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0");
        if let Some(email) = account
            .service_account_impersonation_url
            .as_deref()
            .and_then(impersonated_email)
        {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(file) = &self.output_file {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", file);
        }
        self.run(cmd, program, deadline)
    }

    fn run(&self, cmd: Command, program: &str, deadline: Instant) -> Result<Secret<String>> {
        let step = format!("executable {program}");
        // Our own deadline (DOCKER_CREDENTIAL_GCP_TIMEOUT) bounds the child too.
        let deadline = deadline.min(Instant::now() + self.timeout);
        let done = crate::process::run(cmd, deadline).map_err(|e| {
            anyhow!(
                "{step}: {e:#} (timeout_millis {})",
                self.timeout.as_millis()
            )
        })?;
        if !done.status.success() {
            // Its stderr is the user's own diagnostics; stdout may hold a token, so not that.
            let stderr = match http::excerpt(&done.stderr) {
                s if s.is_empty() => "no output on stderr".to_owned(),
                s => s,
            };
            bail!("{step} failed ({}): {stderr}", done.status);
        }
        parse_executable_response(&done.stdout, self.output_file.is_some())
            .map_err(|e| anyhow!("{step}: {e}"))
    }

    /// A still-valid response the executable left in its `output_file` earlier. An absent,
    /// expired, failed or unreadable one means: run the executable.
    fn cached_output(&self) -> Option<Secret<String>> {
        let file = self.output_file.as_ref()?;
        let bytes = read_limited(file).ok()?;
        match parse_executable_response(&bytes, true) {
            Ok(token) => Some(token),
            Err(e) => {
                crate::debug!("not using the output_file {}: {e}", file.display());
                None
            }
        }
    }
}

/// The pluggable-auth response format (`version` 1). Failure responses carry the
/// executable's own `code` and `message`, which are shown; tokens never are.
#[derive(Deserialize)]
struct ExecutableResponse {
    version: Option<u64>,
    success: Option<bool>,
    token_type: Option<String>,
    id_token: Option<Secret<String>>,
    saml_response: Option<Secret<String>>,
    expiration_time: Option<i64>,
    code: Option<String>,
    message: Option<String>,
}

fn parse_executable_response(bytes: &[u8], need_expiry: bool) -> Result<Secret<String>> {
    let r: ExecutableResponse = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("the response is not valid JSON ({})", field_error(&e)))?;
    if r.version != Some(1) {
        bail!("the response must have \"version\": 1");
    }
    match r.success {
        Some(true) => {}
        Some(false) => {
            let code = r.code.unwrap_or_default();
            let message = r.message.unwrap_or_default();
            bail!(
                "the executable reported failure: {}: {}",
                http::excerpt(code.as_bytes()),
                http::excerpt(message.as_bytes())
            );
        }
        None => bail!("the response has no \"success\" field"),
    }
    match r.expiration_time {
        Some(t) if t <= now_secs() as i64 => bail!("the response has expired"),
        None if need_expiry => bail!("the response needs expiration_time when output_file is set"),
        _ => {}
    }
    let token = match r.token_type.as_deref() {
        Some(
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token",
        ) => r.id_token,
        Some("urn:ietf:params:oauth:token-type:saml2") => r.saml_response,
        Some(other) => bail!(
            "token_type {:?} is not supported",
            http::excerpt(other.as_bytes())
        ),
        None => bail!("the response has no token_type"),
    };
    token
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| anyhow!("the response has no token for its token_type"))
}

/// The service account email in a `…/serviceAccounts/EMAIL:generateAccessToken` URL.
fn impersonated_email(url: &str) -> Option<&str> {
    let rest = &url[url.rfind("/serviceAccounts/")? + "/serviceAccounts/".len()..];
    let email = rest.split(':').next()?;
    (!email.is_empty()).then_some(email)
}

// ---------------------------------------------------------------------------------------------
// The STS token exchange (RFC 8693 as Google implements it)

fn sts_exchange(
    account: &ExternalAccount,
    token_url: &str,
    subject: &Secret<String>,
    ctx: &mut MintContext,
) -> Result<Token> {
    let client_auth = basic_auth(account.client_id.as_deref(), account.client_secret.as_ref());
    // Workforce pools bill a user project; with client authentication the client decides it.
    let options = match (&account.workforce_pool_user_project, &client_auth) {
        (Some(project), None) => Some(serde_json::json!({ "userProject": project }).to_string()),
        _ => None,
    };
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", account.audience.as_str()),
        ("scope", SCOPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", subject.expose().as_str()),
        ("subject_token_type", account.subject_token_type.as_str()),
    ];
    if let Some(options) = &options {
        form.push(("options", options));
    }
    let headers: Vec<(&str, &str)> = client_auth
        .iter()
        .map(|v| ("authorization", v.expose().as_str()))
        .collect();
    let step = format!("STS token exchange at {token_url}");
    let deadline = ctx.deadline;
    let resp = ctx
        .http()?
        .post_form_with_headers(token_url, &headers, &form, deadline)
        .map_err(|e| anyhow!("{step}: {e:#}"))?;
    http::parse_token_response(&resp)
        .map_err(|e| anyhow!("{step}: {}", redact(&format!("{e}"), subject)))
}

/// `Basic base64(id:secret)`, when the file has both.
fn basic_auth(id: Option<&str>, secret: Option<&Secret<String>>) -> Option<Secret<String>> {
    let (id, secret) = (id?, secret?);
    let pair = format!("{id}:{}", secret.expose());
    Some(Secret::new(format!("Basic {}", base64(pair.as_bytes()))))
}

/// Standard base64 with padding (RFC 4648 §4), for HTTP Basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A remote error message should never echo what we sent, but make sure.
fn redact(message: &str, secret: &Secret<String>) -> String {
    let value = secret.expose();
    if value.len() >= 8 {
        message.replace(value.as_str(), "REDACTED")
    } else {
        message.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Service account impersonation (IAM Credentials generateAccessToken)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: Option<Secret<String>>,
    expire_time: Option<String>,
}

/// Exchanges `bearer` for a token of the service account named in `url`, valid for
/// `lifetime_secs`, through the chain of `delegates` (full `projects/-/serviceAccounts/…`
/// names).
pub(super) fn impersonate(
    url: &str,
    bearer: &Secret<String>,
    lifetime_secs: u64,
    delegates: &[String],
    ctx: &mut MintContext,
) -> Result<Token> {
    let step = format!("service account impersonation at {url}");
    http::check_url(url).map_err(|e| anyhow!("{step}: {e:#}"))?;
    let mut body = serde_json::json!({
        "scope": [SCOPE],
        "lifetime": format!("{lifetime_secs}s"),
    });
    if !delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegates);
    }
    let authorization = Secret::new(format!("Bearer {}", bearer.expose()));
    let deadline = ctx.deadline;
    let resp = ctx
        .http()?
        .post_json(
            url,
            &[("authorization", authorization.expose().as_str())],
            &body,
            deadline,
        )
        .map_err(|e| anyhow!("{step}: {e:#}"))?;
    parse_generated_token(&resp).map_err(|e| anyhow!("{step}: {}", redact(&e, bearer)))
}

fn parse_generated_token(resp: &Response) -> std::result::Result<Token, String> {
    if !(200..300).contains(&resp.status) {
        return Err(google_error(resp));
    }
    let parsed: GeneratedToken = serde_json::from_slice(&resp.body)
        .map_err(|_| "the response is not valid JSON".to_owned())?;
    let secret = parsed
        .access_token
        .filter(|t| !t.expose().is_empty())
        .ok_or("the response has no accessToken")?;
    let expires_at = parsed
        .expire_time
        .as_deref()
        .and_then(parse_rfc3339)
        .ok_or("the response has no valid expireTime")?;
    Ok(Token { secret, expires_at })
}

/// `HTTP 403 PERMISSION_DENIED: message` from a Google API error body
/// (`{"error":{"code","message","status"}}`), or an excerpt of anything else.
fn google_error(resp: &Response) -> String {
    let doc: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let error = &doc["error"];
    let text = |v: &Value| v.as_str().map(|s| http::excerpt(s.as_bytes()));
    match (text(&error["status"]), text(&error["message"])) {
        (Some(status), Some(message)) => format!("HTTP {} {status}: {message}", resp.status),
        (None, Some(message)) => format!("HTTP {}: {message}", resp.status),
        _ => format!("HTTP {}: {}", resp.status, http::excerpt(&resp.body)),
    }
}

/// Seconds since the epoch for an RFC 3339 time such as `2026-11-23T10:00:00.5Z` or
/// `2026-11-23T11:00:00+01:00`; `None` if it is not one.
pub(super) fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once(['T', 't'])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (clock, offset) = split_offset(time)?;
    let clock = clock.split('.').next()?;
    let mut hms = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&sec);
    if !valid {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs).ok()
}

/// Splits `HH:MM:SS[.f](Z|±HH:MM)` into the clock and the offset in seconds.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let at = time.rfind(['+', '-'])?;
    let (clock, offset) = time.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (oh, om) = offset[1..].split_once(':')?;
    Some((
        clock,
        sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// external_account_authorized_user (workforce identity federation, `gcloud auth
// application-default login --login-config`)

#[derive(Deserialize)]
struct ExternalAuthorizedUser {
    refresh_token: Secret<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret<String>>,
}

pub(super) fn mint_authorized_user(
    path: &Path,
    doc: Value,
    ctx: &mut MintContext,
) -> Result<Token> {
    let user: ExternalAuthorizedUser = parse_file(path, "external_account_authorized_user", doc)?;
    let token_url = user.token_url.as_deref().unwrap_or(DEFAULT_OAUTH_URL);
    http::check_url(token_url).with_context(|| format!("{}: token_url", path.display()))?;
    let auth = basic_auth(user.client_id.as_deref(), user.client_secret.as_ref());
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|v| ("authorization", v.expose().as_str()))
        .collect();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", user.refresh_token.expose().as_str()),
    ];
    let step = format!(
        "refreshing the workforce credentials in {} at {token_url}",
        path.display()
    );
    let deadline = ctx.deadline;
    let resp = ctx
        .http()?
        .post_form_with_headers(token_url, &headers, &form, deadline)
        .map_err(|e| anyhow!("{step}: {e:#}"))?;
    http::parse_token_response(&resp).map_err(|e| anyhow!("{step}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(
            parse_rfc3339("2015-08-30T12:36:00.123456Z"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_rfc3339("2015-08-30T13:36:00+01:00"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_rfc3339("2015-08-30T11:36:00-01:00"),
            Some(1_440_938_160)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2015-08-30",
            "2015-13-01T00:00:00Z",
            "x-y-zT1:2:3Z",
            "2015-08-30T12:36Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

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
    fn executable_responses_are_checked() {
        let now = now_secs() as i64;
        let ok = format!(
            r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"header.payload.sig","expiration_time":{}}}"#,
            now + 600
        );
        assert_eq!(
            parse_executable_response(ok.as_bytes(), true)
                .unwrap()
                .expose(),
            "header.payload.sig"
        );
        let saml = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:saml2","saml_response":"PHNhbWw+"}"#;
        assert_eq!(
            parse_executable_response(saml.as_bytes(), false)
                .unwrap()
                .expose(),
            "PHNhbWw+"
        );
        assert!(parse_executable_response(saml.as_bytes(), true).is_err());
        let failed = r#"{"version":1,"success":false,"code":"401","message":"not logged in"}"#;
        let e = parse_executable_response(failed.as_bytes(), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the executable reported failure: 401: not logged in"
        );
        let expired = ok.replace(&(now + 600).to_string(), &(now - 1).to_string());
        assert!(parse_executable_response(expired.as_bytes(), false).is_err());
        for bad in [
            "",
            "[]",
            r#"{"version":2,"success":true}"#,
            r#"{"version":1}"#,
        ] {
            assert!(
                parse_executable_response(bad.as_bytes(), false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn google_api_errors_are_summarised() {
        let resp = Response {
            status: 403,
            headers: Default::default(),
            body: br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#.to_vec(),
        };
        assert_eq!(
            google_error(&resp),
            "HTTP 403 PERMISSION_DENIED: Permission denied"
        );
    }
}
