//! The OAuth exchanges every credential type is built from: reading a token response
//! (RFC 6749 §5), the refresh-token grant, Google's STS token exchange (RFC 8693) and service
//! account impersonation (IAM Credentials `generateAccessToken`).
//!
//! Nothing here knows about credential files; callers pass the values. Tokens and secrets
//! travel in [`Secret`]. Error bodies are summarised, never echoed whole, a successful body is
//! never echoed at all, and a remote error that quotes what we sent is redacted.

use std::time::Instant;

use anyhow::{Context, Result};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::access::{Token, now_secs};
use super::failure::{Failure, FailureKind};
use crate::net::http::{self, Body, Http, Request, Response};
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

/// The OAuth scope requested for registry access (accepted by Container Registry and
/// Artifact Registry).
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub(crate) const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub(crate) const DEFAULT_STS_URL: &str = "https://sts.googleapis.com/v1/token";
pub(crate) const DEFAULT_IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// The lifetime Google's client libraries ask for when nothing says otherwise.
pub(crate) const DEFAULT_LIFETIME_SECS: u64 = 3600;
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Secret<String>>,
    expires_in: Option<Value>,
    error: Option<String>,
    error_description: Option<String>,
    /// Google's reason under `invalid_grant`: `invalid_rapt` asks for reauthentication.
    error_subtype: Option<String>,
}

/// Which exchange a token response answers: the same OAuth error means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// A user's refresh token (`authorized_user`, workforce users).
    Refresh,
    /// An STS token exchange (federation).
    Exchange,
    /// The metadata server's token endpoint.
    Metadata,
}

impl Grant {
    /// The kind of a refused token request: a refresh token that is no longer good means the
    /// user must sign in again; anything else refused is the configuration's problem.
    fn failure_kind(self, status: u16, error: Option<&str>) -> FailureKind {
        if status == 429 || status >= 500 {
            return FailureKind::Unreachable;
        }
        match (self, error) {
            (
                Grant::Refresh,
                Some("invalid_grant" | "invalid_rapt" | "invalid_client" | "unauthorized_client"),
            ) => FailureKind::SignInNeeded,
            _ if (400..500).contains(&status) => FailureKind::Denied,
            _ => FailureKind::Unreachable,
        }
    }
}

/// Interprets an OAuth 2.0 token response to a `grant`. A refusal is a typed [`Failure`]
/// whose kind follows from the grant, the status and the OAuth error code.
pub(crate) fn parse_token_response(resp: &Response, grant: Grant) -> Result<Token> {
    let parsed = serde_json::from_slice::<TokenResponse>(&resp.body);
    if !resp.is_success() {
        let (error, text) = match &parsed {
            Ok(TokenResponse {
                error: Some(error),
                error_description,
                error_subtype,
                ..
            }) => {
                let subtype = error_subtype
                    .as_deref()
                    .map(|s| format!(" ({})", excerpt(s.as_bytes())))
                    .unwrap_or_default();
                let desc = error_description
                    .as_deref()
                    .map(|d| format!(": {}", excerpt(d.as_bytes())))
                    .unwrap_or_default();
                let code = error_subtype.as_deref().unwrap_or(error);
                (
                    Some(code),
                    format!(
                        "HTTP {} {}{subtype}{desc}",
                        resp.status,
                        excerpt(error.as_bytes())
                    ),
                )
            }
            _ => (
                None,
                format!("HTTP {}: {}", resp.status, excerpt(&resp.body)),
            ),
        };
        return Err(Failure::new(grant.failure_kind(resp.status, error), text).into());
    }
    let unusable = |what: String| anyhow::Error::new(Failure::new(FailureKind::Unreachable, what));
    let parsed = parsed.map_err(|e| {
        unusable(format!(
            "the token response is not valid JSON ({})",
            json_error(&e)
        ))
    })?;
    let secret = parsed
        .access_token
        .ok_or_else(|| unusable("the token response has no access_token".to_owned()))?;
    let expires_in = match parsed.expires_in {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| unusable("the token response has no valid expires_in".to_owned()))?;
    Ok(Token::issued_for(secret, expires_in)?)
}

/// `Basic base64(id:secret)` for OAuth client authentication, when both are given.
pub(crate) fn basic_auth(
    id: Option<&str>,
    secret: Option<&Secret<String>>,
) -> Option<Secret<String>> {
    let (id, secret) = (id?, secret?);
    let pair = Secret::new(format!("{id}:{}", secret.expose()));
    Some(pair.map(|p| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(p.as_bytes())
        )
    }))
}

/// Sends a token request and reads the token; errors name the step.
fn token_request(
    http: &Http,
    req: Request,
    grant: Grant,
    deadline: Instant,
    step: &str,
) -> Result<Token> {
    let resp = http.send(&req, deadline).with_context(|| step.to_owned())?;
    parse_token_response(&resp, grant).with_context(|| step.to_owned())
}

/// The refresh-token grant. `client_auth` is HTTP Basic client authentication (workforce
/// users); otherwise the client id and secret go in the form (Google user credentials).
pub(crate) struct RefreshGrant<'a> {
    pub(crate) token_url: &'a str,
    pub(crate) refresh_token: &'a Secret<String>,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) client_secret: Option<&'a Secret<String>>,
    pub(crate) basic_client_auth: bool,
}

pub(crate) fn refresh(
    http: &Http,
    grant: &RefreshGrant<'_>,
    deadline: Instant,
    step: &str,
) -> Result<Token> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", grant.refresh_token.expose().as_str()),
    ];
    let mut auth = None;
    if grant.basic_client_auth {
        auth = basic_auth(grant.client_id, grant.client_secret);
    } else {
        if let Some(id) = grant.client_id {
            form.push(("client_id", id));
        }
        if let Some(secret) = grant.client_secret {
            form.push(("client_secret", secret.expose().as_str()));
        }
    }
    let mut req = Request::post(grant.token_url, Body::Form(&form));
    if let Some(auth) = &auth {
        req = req.secret_header("authorization", auth.as_deref());
    }
    token_request(http, req, Grant::Refresh, deadline, step)
}

/// An STS token exchange: a subject token from another identity provider for a Google
/// federated access token.
pub(crate) struct StsExchange<'a> {
    pub(crate) sts_url: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) subject_token: &'a Secret<String>,
    pub(crate) subject_token_type: &'a str,
    /// Client authentication (some workforce pools).
    pub(crate) client_auth: Option<Secret<String>>,
    /// Workforce pools bill a user project; with client authentication the client decides it.
    pub(crate) workforce_user_project: Option<&'a str>,
}

pub(crate) fn sts_exchange(http: &Http, x: &StsExchange<'_>, deadline: Instant) -> Result<Token> {
    let options = match (x.workforce_user_project, &x.client_auth) {
        (Some(project), None) => Some(serde_json::json!({ "userProject": project }).to_string()),
        _ => None,
    };
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", x.audience),
        ("scope", SCOPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", x.subject_token.expose().as_str()),
        ("subject_token_type", x.subject_token_type),
    ];
    if let Some(options) = &options {
        form.push(("options", options));
    }
    let mut req = Request::post(x.sts_url, Body::Form(&form));
    if let Some(auth) = &x.client_auth {
        req = req.secret_header("authorization", auth.as_deref());
    }
    let step = format!("STS token exchange at {}", http::redacted_url(x.sts_url));
    token_request(http, req, Grant::Exchange, deadline, &step)
}

/// Service account impersonation: `bearer` (the caller's token) for a token of the account
/// named in `url`, through the chain of `delegates` (`projects/-/serviceAccounts/…`).
pub(crate) struct Impersonation<'a> {
    pub(crate) url: &'a str,
    pub(crate) lifetime_secs: u64,
    pub(crate) delegates: &'a [String],
}

pub(crate) fn impersonate(
    http: &Http,
    target: &Impersonation<'_>,
    bearer: &Secret<String>,
    deadline: Instant,
) -> Result<Token> {
    let step = format!(
        "service account impersonation at {}",
        http::redacted_url(target.url)
    );
    http::check_url(target.url).with_context(|| step.clone())?;
    let mut body = serde_json::json!({
        "scope": [SCOPE],
        "lifetime": format!("{}s", target.lifetime_secs),
    });
    if !target.delegates.is_empty() {
        body["delegates"] = serde_json::json!(target.delegates);
    }
    let authorization = bearer.as_deref().map(|t| format!("Bearer {t}"));
    let req = Request::post(target.url, Body::Json(&body))
        .secret_header("authorization", authorization.as_deref());
    let resp = http.send(&req, deadline).with_context(|| step.clone())?;
    parse_generated_token(&resp).with_context(|| step)
}

/// The IAM Credentials API URL that impersonates `email`.
pub(crate) fn impersonation_url(endpoint: &str, email: &str) -> String {
    format!(
        "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        endpoint.trim_end_matches('/')
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: Option<Secret<String>>,
    expire_time: Option<String>,
}

fn parse_generated_token(resp: &Response) -> std::result::Result<Token, Failure> {
    if !resp.is_success() {
        return Err(api_failure(resp));
    }
    let unusable = |what: &str| Failure::new(FailureKind::Unreachable, what);
    let parsed: GeneratedToken = serde_json::from_slice(&resp.body)
        .map_err(|_| unusable("the response is not valid JSON"))?;
    let secret = parsed
        .access_token
        .ok_or_else(|| unusable("the response has no accessToken"))?;
    let expires_at = parsed
        .expire_time
        .as_deref()
        .and_then(parse_rfc3339)
        .ok_or_else(|| unusable("the response has no valid expireTime"))?;
    Token::issued(secret, expires_at, now_secs())
}

/// A Google API's refusal as a typed failure: 429 and 5xx are the service's trouble, other
/// refusals (401, 403 `PERMISSION_DENIED`, 404) are the configuration's.
pub(crate) fn api_failure(resp: &Response) -> Failure {
    let kind = if resp.status == 429 || resp.status >= 500 {
        FailureKind::Unreachable
    } else {
        FailureKind::Denied
    };
    Failure::new(kind, google_error(resp))
}

/// `HTTP 403 PERMISSION_DENIED: message` from a Google API error body
/// (`{"error":{"code","message","status"}}`), or an excerpt of anything else.
pub(crate) fn google_error(resp: &Response) -> String {
    let doc: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let error = &doc["error"];
    let text = |v: &Value| v.as_str().map(|s| excerpt(s.as_bytes()));
    match (text(&error["status"]), text(&error["message"])) {
        (Some(status), Some(message)) => format!("HTTP {} {status}: {message}", resp.status),
        (None, Some(message)) => format!("HTTP {}: {message}", resp.status),
        _ => format!("HTTP {}: {}", resp.status, excerpt(&resp.body)),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-23T10:00:00.5Z`,
/// `2026-11-23T11:00:00+01:00`), negative before 1970; `None` if it is not one.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_token_response_t(r: &Response) -> Result<Token> {
        parse_token_response(r, Grant::Refresh)
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: ::http::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn token_responses_are_parsed_with_their_lifetime() {
        let t = parse_token_response_t(&resp(
            200,
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        ))
        .unwrap();
        assert_eq!(t.secret.expose(), "ya29.x");
        assert!(t.remaining_secs(now_secs()) >= 3598);
        let t = parse_token_response_t(&resp(200, r#"{"access_token":"y","expires_in":"60"}"#))
            .unwrap();
        assert!(t.remaining_secs(now_secs()) <= 60);
    }

    #[test]
    fn token_errors_are_summarised_without_the_body() {
        let e = parse_token_response_t(&resp(
            400,
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 400 invalid_grant: Bad Request");
        let e = parse_token_response_t(&resp(500, "<html>\n<body>oops</body></html>")).unwrap_err();
        assert_eq!(e.to_string(), "HTTP 500: <html> <body>oops</body></html>");
        let e = parse_token_response_t(&resp(200, "not json")).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e =
            parse_token_response_t(&resp(200, r#"{"access_token":"secret-value"}"#)).unwrap_err();
        assert!(!e.to_string().contains("secret-value"), "{e}");
        let e = parse_token_response_t(&resp(200, r#"{"access_token":98765}"#)).unwrap_err();
        assert!(!e.to_string().contains("98765"), "{e}");
    }

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
        assert_eq!(parse_rfc3339("2026-11-23T08:21:04Z"), Some(1_795_422_064));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2015-08-30",
            "2015-13-01T00:00:00Z",
            "x-y-zT1:2:3Z",
            "2015-08-30T12:36Z",
            "2026-11-23T08:21:04",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_client_auth_is_standard_base64() {
        let secret = Secret::new("bar".to_owned());
        assert_eq!(
            basic_auth(Some("foo"), Some(&secret)).unwrap().expose(),
            "Basic Zm9vOmJhcg=="
        );
        assert!(basic_auth(Some("foo"), None).is_none());
    }

    #[test]
    fn google_api_errors_are_summarised() {
        let r = resp(
            403,
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(
            google_error(&r),
            "HTTP 403 PERMISSION_DENIED: Permission denied"
        );
        assert_eq!(
            impersonation_url("https://iam.example/", "sa@p.iam.gserviceaccount.com"),
            "https://iam.example/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
        );
    }
}
