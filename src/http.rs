//! The HTTP stack for minting tokens: a single-threaded tokio runtime and a hyper client with
//! rustls, built only when a token must actually be minted.
//!
//! This is the same stack yup-oauth2 runs on (it is handed our client), so every flow shares
//! one connector. Building it loads the OS root certificates, which costs milliseconds; the
//! cached `get` path never gets here. Every call is bounded by the caller's deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use crate::cache::{Token, now_secs};
use crate::secret::Secret;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
pub type HttpClient = Client<Connector, String>;

/// Largest response body accepted from any endpoint.
const MAX_BODY: usize = 1024 * 1024;

pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: HttpClient,
}

pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Http {
    pub fn new() -> Result<Http> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // hyper's connector registers timers with the runtime it is built in.
        let _entered = runtime.enter();
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                crate::warn!("no usable OS root certificates ({e}); HTTPS requests will fail");
                let roots = rustls_empty_roots();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(roots)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Http { runtime, client })
    }

    pub fn client(&self) -> HttpClient {
        self.client.clone()
    }

    /// Runs `future` to completion or fails when `deadline` passes.
    pub fn block_on<F: Future>(&self, deadline: Instant, future: F) -> Result<F::Output> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // The timer must be created inside the runtime, hence the async block.
        self.runtime
            .block_on(async { tokio::time::timeout(remaining, future).await })
            .map_err(|_| anyhow!("timed out"))
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)], deadline: Instant) -> Result<Response> {
        self.without_body(http::Method::GET, url, headers, deadline)
    }

    fn without_body(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Response> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(String::new()).context("invalid request")?;
        self.send(req, deadline)
    }

    /// POSTs `form` as `application/x-www-form-urlencoded`.
    pub fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Response> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .context("invalid request")?;
        self.send(req, deadline)
    }

    /// POSTs `form` as `application/x-www-form-urlencoded` with extra `headers` (for example
    /// HTTP Basic client authentication).
    pub fn post_form_with_headers(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Response> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(body).context("invalid request")?, deadline)
    }

    /// POSTs `body` as `application/json` with extra `headers` (for example a bearer token).
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
        deadline: Instant,
    ) -> Result<Response> {
        let mut req = http::Request::post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.to_string()).context("invalid request")?;
        self.send(req, deadline)
    }

    /// Sends an empty-bodied PUT (the AWS IMDSv2 session-token request).
    pub fn put(&self, url: &str, headers: &[(&str, &str)], deadline: Instant) -> Result<Response> {
        self.without_body(http::Method::PUT, url, headers, deadline)
    }

    /// Sends `req`, retrying transient failures (connection errors, HTTP 5xx and 429) with
    /// backoff, at most [`MAX_ATTEMPTS`] times and never past `deadline`. Anything else,
    /// including a 400 `invalid_grant`, is final at once: retrying cannot fix it.
    fn send(&self, req: http::Request<String>, deadline: Instant) -> Result<Response> {
        let (parts, body) = req.into_parts();
        let rebuild = || {
            let mut builder = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone());
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            builder.body(body.clone()).context("invalid request")
        };
        let mut attempt = 1;
        loop {
            let result = self.send_once(rebuild()?, deadline);
            let wait = match &result {
                Ok(resp) if resp.status == 429 || resp.status >= 500 => {
                    retry_after(resp).unwrap_or(backoff(attempt))
                }
                Err(e) if !e.to_string().starts_with("timed out") => backoff(attempt),
                _ => return result,
            };
            if attempt >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                return result;
            }
            let what = match &result {
                Ok(resp) => format!("HTTP {}", resp.status),
                Err(e) => format!("{e:#}"),
            };
            crate::info!(
                "{} {}: {what}; retrying in {} ms",
                parts.method,
                redacted_url(&parts.uri),
                wait.as_millis()
            );
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    fn send_once(&self, req: http::Request<String>, deadline: Instant) -> Result<Response> {
        let client = &self.client;
        self.block_on(deadline, async move {
            let resp = client.request(req).await.map_err(describe_hyper_error)?;
            let (parts, body) = resp.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_BODY);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| anyhow!("reading the response failed: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: bytes.to_vec(),
            })
        })?
    }
}

/// Attempts per request, counting the first.
pub const MAX_ATTEMPTS: u32 = 3;

/// 200 ms, then 400 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 << (attempt - 1).min(4))
}

/// A `Retry-After` in seconds (the HTTP-date form is treated as absent), capped at 10 s.
fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// A URL for logs: scheme, host and path only (queries may carry credentials).
fn redacted_url(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

fn rustls_empty_roots() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth()
}

fn describe_hyper_error(e: hyper_util::client::legacy::Error) -> anyhow::Error {
    use std::error::Error;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    anyhow!(msg)
}

/// Credentials may go over plain HTTP only to this machine (tests, local proxies); anywhere
/// else they need HTTPS.
pub fn check_url(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => bail!("refusing to send credentials over plain http to {host}; use https"),
        _ => bail!("{url:?} is not an https URL"),
    }
}

/// Like [`check_url`], but plain HTTP is also accepted to the link-local cloud instance
/// metadata addresses (`169.254.169.254`, and AWS's IPv6 `fd00:ec2::254`). Real workload
/// identity files point there over http (AWS IMDS, Azure IMDS), and the address is only
/// reachable from inside the VM, so there is no network path to protect.
pub fn check_url_or_instance_metadata(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    if uri.scheme_str() == Some("http") && is_instance_metadata(host) {
        return Ok(());
    }
    check_url(url)
}

fn is_instance_metadata(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let metadata_v4 = std::net::IpAddr::from([169, 254, 169, 254]);
    let metadata_v6 = std::net::IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]);
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == metadata_v4 || ip == metadata_v6)
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Interprets an OAuth 2.0 token response (RFC 6749 §5). Error bodies are summarised, never
/// echoed whole, and a successful body is never echoed at all.
pub fn parse_token_response(resp: &Response) -> Result<Token> {
    let parsed = serde_json::from_slice::<TokenResponse>(&resp.body);
    if !(200..300).contains(&resp.status) {
        return Err(match parsed {
            Ok(TokenResponse {
                error: Some(error),
                error_description,
                ..
            }) => {
                let desc = error_description.map(|d| format!(": {}", excerpt(d.as_bytes())));
                anyhow!(
                    "HTTP {} {}{}",
                    resp.status,
                    excerpt(error.as_bytes()),
                    desc.unwrap_or_default()
                )
            }
            _ => anyhow!("HTTP {}: {}", resp.status, excerpt(&resp.body)),
        });
    }
    let parsed = parsed.map_err(|e| anyhow!("the token response is not valid JSON ({e})"))?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .context("the token response has no access_token")?;
    let expires_in = match parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .context("the token response has no valid expires_in")?;
    Ok(Token {
        secret: Secret::new(token),
        expires_at: now_secs().saturating_add(expires_in),
    })
}

/// A short, single-line, printable excerpt of a response body for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: http::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(check_url("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_url("http://127.0.0.1:8080/token").is_ok());
        assert!(check_url("http://[::1]:8080/token").is_ok());
        assert!(check_url("http://localhost/token").is_ok());
        assert!(check_url("http://oauth2.googleapis.com/token").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/token").is_err());
        assert!(check_url("ftp://x/token").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn plain_http_to_instance_metadata_is_allowed_only_where_asked() {
        for url in [
            "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://127.0.0.1:9/x",
            "https://sts.amazonaws.com",
        ] {
            assert!(check_url_or_instance_metadata(url).is_ok(), "{url}");
        }
        assert!(check_url("http://169.254.169.254/x").is_err());
        for url in [
            "http://169.254.169.253/x",
            "http://169.254.169.254.evil.com/x",
            "http://[fd00:ec2::255]/x",
            "ftp://169.254.169.254/x",
        ] {
            assert!(check_url_or_instance_metadata(url).is_err(), "{url}");
        }
    }

    #[test]
    fn token_responses_are_parsed_with_their_lifetime() {
        let t = parse_token_response(&resp(
            200,
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        ))
        .unwrap();
        assert_eq!(t.secret.expose(), "ya29.x");
        assert!(t.remaining_secs(now_secs()) >= 3598);
        let t =
            parse_token_response(&resp(200, r#"{"access_token":"y","expires_in":"60"}"#)).unwrap();
        assert!(t.remaining_secs(now_secs()) <= 60);
    }

    #[test]
    fn token_errors_are_summarised_without_the_body() {
        let e = parse_token_response(&resp(
            400,
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 400 invalid_grant: Bad Request");
        let e = parse_token_response(&resp(500, "<html>\n<body>oops</body></html>")).unwrap_err();
        assert_eq!(e.to_string(), "HTTP 500: <html> <body>oops</body></html>");
        let e = parse_token_response(&resp(200, "not json")).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = parse_token_response(&resp(200, r#"{"access_token":"secret-value"}"#)).unwrap_err();
        assert!(!e.to_string().contains("secret-value"), "{e}");
        let long = "x".repeat(1000);
        assert!(excerpt(long.as_bytes()).chars().count() <= 201);
    }
}
