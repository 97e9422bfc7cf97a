//! HTTP for minting tokens: a single-threaded tokio runtime and hyper clients with rustls,
//! built only when a token must actually be minted, and the one retry policy every request
//! (ours and yup-oauth2's) goes through.
//!
//! Two clients share the runtime and the TLS roots (`tls`): one goes through the proxy the
//! environment names (`proxy`, `connect`), and is also the one yup-oauth2 sends through; the
//! other never uses a proxy, for requests marked [`Request::direct`] (the metadata server).
//!
//! Building them loads the root certificates and reads the proxy variables, which costs
//! milliseconds; the cached `get` never gets here. Every call is bounded by the caller's
//! deadline, and the runtime is shut down without waiting for a name lookup still running on
//! its blocking pool, so a slow resolver cannot hold the process past the deadline either.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;

use super::connect::{self, Connector, ProxyError, ProxyErrorKind};
use super::proxy::{self, Bypass, Proxies, Route};
use super::tap::Sent;
use super::tls;
use crate::util::secret::{Secret, Secrets};

pub(crate) type HttpClient = Client<Connector, String>;

/// Largest response body accepted from any endpoint.
const MAX_BODY: usize = 1024 * 1024;
/// Attempts per request, counting the first.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// A request to send. Header values that carry credentials are marked sensitive, so hyper
/// never logs them.
#[derive(Debug)]
pub(crate) struct Request {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: String,
    /// Never through a proxy (the metadata server, as in Google's client libraries).
    direct: bool,
    /// What in this request is secret (credential headers, secret form fields), so that no
    /// answer can echo it into a message.
    secrets: Secrets,
}

/// Form fields whose values are credentials in the OAuth exchanges (RFC 6749, RFC 7523,
/// RFC 8693): their values never appear in a message, whatever the server echoes.
const SECRET_FORM_FIELDS: [&str; 7] = [
    "refresh_token",
    "client_secret",
    "assertion",
    "subject_token",
    "actor_token",
    "password",
    "code",
];

/// What a POST carries.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a serde_json::Value),
}

impl Request {
    pub(crate) fn get(url: &str) -> Request {
        Request::without_body(Method::GET, url)
    }

    pub(crate) fn put(url: &str) -> Request {
        Request::without_body(Method::PUT, url)
    }

    /// A POST of a form (`application/x-www-form-urlencoded`) or JSON, asking for JSON back.
    pub(crate) fn post(url: &str, body: Body<'_>) -> Request {
        let mut req = Request::without_body(Method::POST, url);
        let (content_type, body) = match body {
            Body::Form(pairs) => {
                for (name, value) in pairs {
                    if SECRET_FORM_FIELDS.contains(name) {
                        req.secrets.add(value);
                    }
                }
                (
                    "application/x-www-form-urlencoded",
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish(),
                )
            }
            Body::Json(value) => ("application/json", value.to_string()),
        };
        req.body = body;
        req.header("content-type", content_type)
            .header("accept", "application/json")
    }

    fn without_body(method: Method, url: &str) -> Request {
        Request {
            method,
            url: url.to_owned(),
            headers: HeaderMap::new(),
            body: String::new(),
            direct: false,
            secrets: Secrets::default(),
        }
    }

    /// Sends this request directly, never through a proxy.
    pub(crate) fn direct(mut self) -> Request {
        self.direct = true;
        self
    }

    /// Adds a header. A name or value that is not valid HTTP is dropped here and reported by
    /// the server's answer; the names are this program's own constants.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Request {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.append(HeaderName::from_static(name), value);
        }
        self
    }

    /// Adds headers from a credentials file (a credential source URL's `headers`).
    pub(crate) fn headers<'a>(
        mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Request> {
        for (name, value) in pairs {
            let name = HeaderName::try_from(name)
                .with_context(|| format!("{name:?} is not a valid HTTP header name"))?;
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("the value of header {name} is not valid HTTP"))?;
            self.headers.append(name, value);
        }
        Ok(self)
    }

    /// Adds a credential header (`authorization`, a session token), marked sensitive.
    pub(crate) fn secret_header(mut self, name: &'static str, value: Secret<&str>) -> Request {
        // `Bearer TOKEN`, `Basic CREDENTIALS`: the credential is the secret.
        let value_text = *value.expose();
        self.secrets
            .add(value_text.split_once(' ').map_or(value_text, |(_, c)| c));
        if let Ok(mut value) = HeaderValue::from_str(value.expose()) {
            value.set_sensitive(true);
            self.headers.append(HeaderName::from_static(name), value);
        }
        self
    }

    fn build(&self) -> Result<http::Request<String>, HttpError> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        if let Some(headers) = builder.headers_mut() {
            headers.extend(self.headers.clone());
        }
        builder
            .body(self.body.clone())
            .map_err(|e| HttpError::new(ErrorKind::Invalid, &self.url, e.to_string()))
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 429 and 5xx: the server may answer differently in a moment.
    fn is_transient(&self) -> bool {
        self.status == 429 || self.status >= 500
    }

    /// A `Retry-After` in seconds (the HTTP-date form is treated as absent), capped at 10 s.
    fn retry_after(&self) -> Option<Duration> {
        let secs: u64 = self
            .headers
            .get("retry-after")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Duration::from_secs(secs.min(10)))
    }
}

/// What kind of failure a request met; the kind decides whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The deadline passed: final.
    Timeout,
    /// No answer: connection refused or reset, TLS failure, a truncated response. Retried.
    Transport,
    /// The request could not be built (a malformed URL, an unusable proxy setting): final.
    Invalid,
    /// The proxy refused for good (a policy refusal, missing or wrong proxy credentials): final.
    Proxy,
}

/// A request that got no HTTP answer.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub(crate) kind: ErrorKind,
    /// Scheme, host and path only (queries may carry credentials).
    url: String,
    detail: String,
}

impl HttpError {
    fn new(kind: ErrorKind, url: &str, detail: String) -> HttpError {
        HttpError {
            kind,
            url: redacted_url(url),
            detail,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::Timeout => write!(f, "{}: timed out", self.url),
            _ => write!(f, "{}: {}", self.url, self.detail),
        }
    }
}

impl std::error::Error for HttpError {}

/// Whether and when to try again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    No,
    /// After the standard backoff for the attempt.
    Backoff,
    /// After the server's `Retry-After`.
    After(Duration),
}

/// A failure that knows whether it is worth another attempt.
pub(crate) trait Retryable: std::fmt::Display {
    fn retry(&self) -> Retry;
}

impl Retryable for HttpError {
    fn retry(&self) -> Retry {
        match self.kind {
            ErrorKind::Transport => Retry::Backoff,
            ErrorKind::Timeout | ErrorKind::Invalid | ErrorKind::Proxy => Retry::No,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, [`MAX_ATTEMPTS`] are used, or the next
/// wait would pass `deadline`. The one retry policy: 200 ms, then 400 ms, or the server's
/// `Retry-After`.
pub(crate) fn with_retries<T, E: Retryable>(
    what: &str,
    deadline: Instant,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut n = 1;
    loop {
        let err = match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let wait = match err.retry() {
            Retry::No => return Err(err),
            Retry::Backoff => Duration::from_millis(200 << (n - 1).min(4)),
            Retry::After(d) => d,
        };
        if n >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
            return Err(err);
        }
        log::info!("{what}: {err}; retrying in {} ms", wait.as_millis());
        std::thread::sleep(wait);
        n += 1;
    }
}

/// One attempt's failure inside [`Http::send`]: no answer, or an answer worth retrying.
enum Attempt {
    Failed(HttpError),
    Transient(Box<Response>),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Failed(e) => e.fmt(f),
            Attempt::Transient(r) => write!(f, "HTTP {}", r.status),
        }
    }
}

impl Retryable for Attempt {
    fn retry(&self) -> Retry {
        match self {
            Attempt::Failed(e) => e.retry(),
            Attempt::Transient(r) => r.retry_after().map_or(Retry::Backoff, Retry::After),
        }
    }
}

pub(crate) struct Http {
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    /// Through the proxy the environment names, if any; an unusable proxy setting fails only
    /// the requests that would have used it.
    proxied: Result<(HttpClient, Proxies), String>,
    /// Never through a proxy.
    direct: HttpClient,
    /// Every secret the requests sent so far carried (see [`Http::scrub`]).
    sent: std::sync::Mutex<Secrets>,
    /// What the connections wrote, for requests built elsewhere (yup-oauth2's).
    tapped: Sent,
    /// Whether the last connection (of either client, for our requests and yup-oauth2's)
    /// failed at a proxy, or a forwarding proxy refused the last request.
    at_proxy: Arc<AtomicBool>,
}

impl Http {
    /// Loads the trusted roots (plus `ca_file`) and reads the proxy variables.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Http> {
        let (roots, report) = tls::load_roots(ca_file)?;
        log::debug!("trusted root certificates: {report}");
        Http::with(Proxies::from_env(), tls::client_config(roots)?)
    }

    fn with(proxies: Result<Proxies, String>, tls: rustls::ClientConfig) -> Result<Http> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // hyper's connector registers timers with the runtime it is built in.
        let _entered = runtime.enter();
        let tapped = Sent::default();
        let at_proxy = Arc::new(AtomicBool::new(false));
        // No idle connections: each carries one exchange, which the tap's read cap relies on.
        let client = |proxies: Proxies| {
            Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connect::connector(
                    proxies,
                    tls.clone(),
                    at_proxy.clone(),
                    tapped.clone(),
                ))
        };
        Ok(Http {
            proxied: proxies.map(|p| (client(p.clone()), p)),
            direct: client(Proxies::none()),
            runtime: Some(runtime),
            sent: std::sync::Mutex::new(Secrets::default()),
            tapped,
            at_proxy,
        })
    }

    /// Whether the last request failed at a proxy (it could not connect to the proxy, the
    /// proxy refused the tunnel, or a forwarding proxy asked for credentials), and forgets it.
    /// The advice for such a failure is about the proxy settings, not the credentials; the
    /// failure itself may have reached the caller only as text.
    pub(crate) fn take_proxy_failure(&self) -> bool {
        self.at_proxy.swap(false, Ordering::Relaxed)
    }

    /// The client that honours the proxy settings, for yup-oauth2 (which sends its requests
    /// through it).
    pub(crate) fn client(&self) -> Result<HttpClient> {
        match &self.proxied {
            Ok((client, _)) => Ok(client.clone()),
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    /// Runs `future` to completion or fails when `deadline` passes.
    pub(crate) fn block_on<F: Future>(
        &self,
        what: &str,
        deadline: Instant,
        future: F,
    ) -> Result<F::Output, HttpError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // Not even one poll: a future polled once may already have sent a request.
            return Err(HttpError::new(ErrorKind::Timeout, what, String::new()));
        }
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        // The timer must be created inside the runtime, hence the async block.
        runtime
            .block_on(async { tokio::time::timeout(remaining, future).await })
            .map_err(|_| HttpError::new(ErrorKind::Timeout, what, String::new()))
    }

    /// Sends `req`, retrying transient failures (no answer, HTTP 5xx and 429) within
    /// `deadline`. Any HTTP answer, including an error status after the last attempt, is
    /// returned for the caller to interpret; a 400 `invalid_grant` is final at once.
    pub(crate) fn send(&self, req: &Request, deadline: Instant) -> Result<Response, HttpError> {
        if let Ok(mut sent) = self.sent.lock() {
            for form in req.secrets.forms() {
                sent.add(form);
            }
        }
        let (client, route) = if req.direct {
            (&self.direct, None)
        } else {
            let (client, proxies) = self
                .proxied
                .as_ref()
                .map_err(|e| HttpError::new(ErrorKind::Invalid, &req.url, e.clone()))?;
            let route = req.url.parse().ok().map(|uri| proxies.route(&uri));
            (client, route)
        };
        let what = format!("{} {}", req.method, redacted_url(&req.url));
        match &route {
            None => log::debug!("{what} (direct, never through a proxy)"),
            Some(Route::Direct(Bypass::NotSet)) => log::debug!("{what}"),
            Some(route) => log::debug!("{what}: {route}"),
        }
        let result = with_retries(&what, deadline, || {
            let mut built = req.build().map_err(Attempt::Failed)?;
            if let Some(Route::Forward(proxy)) = &route
                && let Some(auth) = proxy.auth()
            {
                // The connector cannot add headers; a forwarded request carries them itself.
                built
                    .headers_mut()
                    .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
            }
            match self.send_once(client, built, &req.url, deadline) {
                Ok(resp) if resp.status == 407 => match &route {
                    Some(Route::Forward(proxy)) => {
                        self.at_proxy.store(true, Ordering::Relaxed);
                        Err(Attempt::Failed(HttpError::new(
                            ErrorKind::Proxy,
                            &req.url,
                            proxy_auth_required(proxy).to_string(),
                        )))
                    }
                    _ => Ok(resp),
                },
                Ok(resp) if resp.is_transient() => Err(Attempt::Transient(Box::new(resp))),
                Ok(resp) => Ok(resp),
                Err(e) => Err(Attempt::Failed(e)),
            }
        });
        match result {
            Ok(resp) => Ok(resp),
            Err(Attempt::Transient(resp)) => Ok(*resp),
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    fn send_once(
        &self,
        client: &HttpClient,
        req: http::Request<String>,
        url: &str,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let transport = |detail: String| HttpError::new(ErrorKind::Transport, url, detail);
        self.block_on(url, deadline, async move {
            let resp = client.request(req).await.map_err(|e| {
                let kind = if is_final_proxy_refusal(&e) {
                    ErrorKind::Proxy
                } else {
                    ErrorKind::Transport
                };
                HttpError::new(kind, url, describe(&e))
            })?;
            let (parts, body) = resp.into_parts();
            let bytes = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: bytes.to_vec(),
            })
        })?
    }
}

/// Whether `e` was caused by a proxy that refused for good (see `ProxyError::is_final`).
pub(crate) fn is_final_proxy_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    connect::proxy_error(e).is_some_and(ProxyError::is_final)
}

/// A forwarding proxy's 407: only the proxy sends it.
fn proxy_auth_required(proxy: &proxy::Proxy) -> ProxyError {
    let kind = ProxyErrorKind::AuthRequired {
        status: 407,
        reason: "Proxy Authentication Required".to_owned(),
    };
    ProxyError::new(proxy, kind, None)
}

impl Http {
    /// `message` without any secret a request sent through this client carried: the one
    /// scrubber every message made from a remote answer goes through.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let message = self.tapped.secrets(&SECRET_FORM_FIELDS).scrub(message);
        match self.sent.lock() {
            Ok(sent) => sent.scrub(&message),
            // A poisoned lock means a panic elsewhere; say nothing remote at all.
            Err(_) => "(details withheld)".to_owned(),
        }
    }
}

/// The deadline of one mint, the HTTP stack (built on first use: a gcloud mint needs none),
/// and every secret the mint read or sent, so its errors can be scrubbed in one place.
pub(crate) struct MintContext {
    pub(crate) deadline: Instant,
    /// Extra certificate authorities to trust (the `ca_file` setting).
    ca_file: Option<PathBuf>,
    http: Option<Http>,
    /// Secrets read from credential files (a private key, a client secret).
    read: Secrets,
}

impl MintContext {
    pub(crate) fn new(deadline: Instant, ca_file: Option<PathBuf>) -> MintContext {
        MintContext {
            deadline,
            ca_file,
            http: None,
            read: Secrets::default(),
        }
    }

    /// Notes a secret read from a credentials file, so no message can quote it.
    pub(crate) fn holds(&mut self, secret: &Secret<String>) {
        self.read.add(secret.expose());
    }

    /// `message` without any secret this mint read or sent (in any of their encodings).
    pub(crate) fn scrub(&self, message: &str) -> String {
        let message = self.read.scrub(message);
        match &self.http {
            Some(http) => http.scrub(&message),
            None => message,
        }
    }

    pub(crate) fn http(&mut self) -> Result<&Http> {
        if self.http.is_none() {
            self.http = Some(Http::new(self.ca_file.as_deref())?);
        }
        Ok(self.http.as_ref().expect("just set"))
    }

    /// Whether the last request failed at a proxy ([`Http::take_proxy_failure`]); false when
    /// nothing was sent.
    pub(crate) fn take_proxy_failure(&mut self) -> bool {
        self.http.as_ref().is_some_and(Http::take_proxy_failure)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // Dropping a runtime waits for its blocking threads, where hyper resolves names with
        // getaddrinfo; a lookup that takes longer than our deadline must not hold the exit.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An error and its sources, joined: hyper's top-level messages ("client error (Connect)")
/// say little without the cause underneath.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// An HTTP failure for a message: its chain of causes, without hyper's bare "client error
/// (Connect)" in front of the cause that says what went wrong (a proxy's answer, a refused
/// connection, a certificate), and with the fix for a certificate nobody here trusts.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = error_chain(e).replace("client error (Connect): ", "");
    if connect::causes(e).any(is_unknown_issuer) {
        msg.push_str(
            " (if a proxy or firewall inspects TLS, point DOCKER_CREDENTIAL_GCP_CA_FILE at its \
             certificate authority's PEM file)",
        );
    }
    msg
}

/// A server certificate signed by no authority we trust: rustls's error, which arrives inside
/// the `io::Error` of the TLS stream.
fn is_unknown_issuer(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    )
}

/// A URL for messages: scheme, host and path only (queries may carry credentials).
pub(crate) fn redacted_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() => format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        ),
        _ => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Credentials may go over plain HTTP only to this machine (tests, local proxies); anywhere
/// else they need HTTPS.
pub(crate) fn check_url(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if proxy::is_loopback(host) => Ok(()),
        Some("http") => bail!("refusing to send credentials over plain http to {host}; use https"),
        _ => bail!("{url:?} is not an https URL"),
    }
}

/// Like [`check_url`], but plain HTTP is also accepted to the link-local cloud instance
/// metadata addresses (`169.254.169.254`, and AWS's IPv6 `fd00:ec2::254`). Real workload
/// identity files point there over http (AWS IMDS, Azure IMDS), and the address is only
/// reachable from inside the VM, so there is no network path to protect.
pub(crate) fn check_url_or_instance_metadata(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    if uri.scheme_str() == Some("http") && proxy::is_instance_metadata_address(host) {
        return Ok(());
    }
    check_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

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
    fn urls_in_messages_lose_their_query() {
        assert_eq!(
            redacted_url("https://sts.example/v1/token?key=secret#x"),
            "https://sts.example/v1/token"
        );
        assert_eq!(redacted_url("not a url?key=secret"), "not a url");
    }

    struct Failure(Retry);
    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for Failure {
        fn retry(&self) -> Retry {
            self.0
        }
    }

    #[test]
    fn the_retry_policy_is_decided_by_the_failure_kind() {
        let far = Instant::now() + Duration::from_secs(30);
        let calls = Cell::new(0);
        let final_at_once = with_retries("t", far, || -> Result<(), _> {
            calls.set(calls.get() + 1);
            Err(Failure(Retry::No))
        });
        assert!(final_at_once.is_err());
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let r = with_retries("t", far, || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(Failure(Retry::After(Duration::ZERO)))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls.get(), 3);

        calls.set(0);
        let r = with_retries("t", far, || -> Result<(), _> {
            calls.set(calls.get() + 1);
            Err(Failure(Retry::After(Duration::ZERO)))
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), MAX_ATTEMPTS as usize, "bounded");

        calls.set(0);
        let soon = Instant::now() + Duration::from_millis(50);
        let r = with_retries("t", soon, || -> Result<(), _> {
            calls.set(calls.get() + 1);
            Err(Failure(Retry::Backoff))
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), 1, "no wait past the deadline");
    }

    /// A forwarding proxy on loopback for one request: returns the request head it got.
    fn forward_proxy(answer: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = conn.write_all(answer.as_bytes());
            String::from_utf8_lossy(&head).into_owned()
        });
        (port, handle)
    }

    fn http_through(proxy_url: &str) -> Http {
        let env = proxy::ProxyEnv {
            http: Some(("HTTP_PROXY", proxy_url.to_owned())),
            ..proxy::ProxyEnv::default()
        };
        let tls = tls::client_config(rustls::RootCertStore::empty()).unwrap();
        Http::with(Proxies::from_settings(&env), tls).unwrap()
    }

    #[test]
    fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
        let (port, proxy) =
            forward_proxy("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let http = http_through(&format!("http://alice:pa55@127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let resp = http
            .send(&Request::get("http://idp.test:8080/subject?x=1"), deadline)
            .unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
        let head = proxy.join().unwrap();
        assert!(
            head.starts_with("GET http://idp.test:8080/subject?x=1 HTTP/1.1\r\n"),
            "{head}"
        );
        // base64("alice:pa55")
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic ywxpy2u6cge1nq==\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_forwarding_proxy_asking_for_credentials_is_a_final_proxy_error() {
        let (port, proxy) = forward_proxy(
            "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let http = http_through(&format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = http
            .send(&Request::get("http://idp.test/subject"), deadline)
            .unwrap_err();
        proxy.join().unwrap();
        assert_eq!(e.kind, ErrorKind::Proxy);
        assert!(http.take_proxy_failure(), "recorded");
        assert!(!http.take_proxy_failure(), "and forgotten once taken");
        assert_eq!(
            e.to_string(),
            format!(
                "http://idp.test/subject: through proxy http://127.0.0.1:{port}: proxy authentication required (407 Proxy Authentication Required); put user:password@ into HTTP_PROXY"
            )
        );
    }

    #[test]
    fn an_unusable_proxy_setting_fails_proxied_requests_only() {
        let tls = tls::client_config(rustls::RootCertStore::empty()).unwrap();
        let http = Http::with(Err("HTTPS_PROXY is not a valid proxy URL".into()), tls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = http
            .send(&Request::get("https://oauth2.test/token"), deadline)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(
            e.to_string()
                .ends_with("HTTPS_PROXY is not a valid proxy URL")
        );
        assert!(http.client().is_err());
        let (port, server) =
            forward_proxy("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}/direct");
        let resp = http.send(&Request::get(&url).direct(), deadline).unwrap();
        assert_eq!(resp.status, 200);
        assert!(server.join().unwrap().starts_with("GET /direct HTTP/1.1"));
    }

    /// A failure with `inner` as its cause, as hyper reports a failed connection.
    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + Send + Sync>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn an_untrusted_certificate_comes_with_the_ca_file_hint() {
        // As tokio-rustls reports it: rustls's error inside an io::Error.
        let tls = |e: rustls::CertificateError| {
            Wrapped(Box::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(e),
            )))
        };
        let msg = describe(&tls(rustls::CertificateError::UnknownIssuer));
        assert!(msg.starts_with("invalid peer certificate: UnknownIssuer (if a proxy"));
        assert!(msg.contains("DOCKER_CREDENTIAL_GCP_CA_FILE"));
        let msg = describe(&tls(rustls::CertificateError::Expired));
        assert!(!msg.contains("DOCKER_CREDENTIAL_GCP_CA_FILE"), "{msg}");
        // The words alone are not the kind.
        let said = Wrapped("the server said: UnknownIssuer".into());
        assert!(!describe(&said).contains("DOCKER_CREDENTIAL_GCP_CA_FILE"));
    }

    #[test]
    fn transport_failures_are_retried_and_timeouts_are_not() {
        let e = HttpError::new(ErrorKind::Transport, "https://x/y?q", "reset".into());
        assert_eq!(e.retry(), Retry::Backoff);
        assert_eq!(e.to_string(), "https://x/y: reset");
        let e = HttpError::new(ErrorKind::Timeout, "https://x/y", String::new());
        assert_eq!(e.retry(), Retry::No);
        assert_eq!(e.to_string(), "https://x/y: timed out");
    }
}
