//! The connector under the HTTP client: TLS (hyper-rustls) over [`ProxyConnector`], which
//! gives each destination one of the routes `proxy` decides:
//! - direct: a TCP connection to the destination;
//! - tunnel (https targets): a TCP connection to the proxy, a CONNECT, and then TLS end to end
//!   with the destination, so the proxy sees the host name and nothing else;
//! - forward (plain-http targets): a TCP connection to the proxy marked as proxied, so hyper
//!   sends the request in absolute form. A connector cannot add headers: the sender adds
//!   `Proxy-Authorization` (`Http::send` does; see there for yup-oauth2).
//!
//! The CONNECT handshake is ours (about 80 lines) rather than hyper-util's `Tunnel`, because
//! `Tunnel` reports every refusal except 407 as "tunnel error: unsuccessful", dropping the
//! status the user needs ("403 Forbidden" is a proxy policy, "502" an unreachable upstream), and
//! its error type is private, so it cannot even be told apart from other failures.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;

use super::proxy::{self, Proxies, Proxy, Route};
use super::tap::{Sent, Tap};

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;
pub(crate) type Connector = Tap<hyper_rustls::HttpsConnector<ProxyConnector>>;

/// Largest CONNECT response head accepted from a proxy.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// The connector for a client: TLS with `tls` over the routes of `proxies`, tapped (bounded
/// reads, written requests noted in `sent`). `at_proxy` is set when a connection fails at the
/// proxy and cleared when one is made (see [`ProxyConnector`]).
pub(crate) fn connector(
    proxies: Proxies,
    tls: rustls::ClientConfig,
    at_proxy: Arc<AtomicBool>,
    sent: Sent,
) -> Connector {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector::new(proxies, at_proxy));
    Tap::new(https, sent)
}

/// Connects to each destination directly or through its proxy.
///
/// It also records whether its last connection failed at the proxy, as a fact beside the
/// error: the failure travels on through yup-oauth2 and through messages that are rewritten
/// on the way (secrets scrubbed), where no typed cause survives, and the advice a user gets
/// depends on it (a proxy setting to fix, not credentials).
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    tcp: HttpConnector,
    proxies: Proxies,
    at_proxy: Arc<AtomicBool>,
}

impl ProxyConnector {
    fn new(proxies: Proxies, at_proxy: Arc<AtomicBool>) -> ProxyConnector {
        let mut tcp = HttpConnector::new();
        // It is handed https destinations too: TLS is added on top by hyper-rustls.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        ProxyConnector {
            tcp,
            proxies,
            at_proxy,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let route = self.proxies.route(&dst);
        let mut tcp = self.tcp.clone();
        let at_proxy = self.at_proxy.clone();
        Box::pin(async move {
            let stream = match route {
                Route::Direct(_) => {
                    at_proxy.store(false, Ordering::Relaxed);
                    return Ok(ProxyStream {
                        io: tcp.call(dst).await?,
                        forwarding: false,
                    });
                }
                Route::Forward(proxy) => {
                    log::debug!("{dst}: through proxy {proxy}");
                    connect_proxy(&mut tcp, &proxy).await.map(|io| ProxyStream {
                        io,
                        forwarding: true,
                    })
                }
                Route::Tunnel(proxy) => {
                    log::debug!("{dst}: CONNECT through proxy {proxy}");
                    match connect_proxy(&mut tcp, &proxy).await {
                        Ok(io) => {
                            connect_tunnel(io.into_inner(), &dst, &proxy)
                                .await
                                .map(|tunnel| ProxyStream {
                                    io: TokioIo::new(tunnel),
                                    forwarding: false,
                                })
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            at_proxy.store(stream.is_err(), Ordering::Relaxed);
            Ok(stream?)
        })
    }
}

async fn connect_proxy(
    tcp: &mut HttpConnector,
    proxy: &Proxy,
) -> Result<TokioIo<TcpStream>, ProxyError> {
    tcp.call(proxy.uri().clone())
        .await
        .map_err(|e| ProxyError::new(proxy, ProxyErrorKind::Connect, Some(e.into())))
}

/// Sends `CONNECT host:port` on `tcp` and returns it once the proxy answered 2xx.
async fn connect_tunnel(
    mut tcp: TcpStream,
    dst: &Uri,
    proxy: &Proxy,
) -> Result<TcpStream, ProxyError> {
    let err = |kind| ProxyError::new(proxy, kind, None);
    let io_err = |e: io::Error| ProxyError::new(proxy, ProxyErrorKind::Io, Some(e.into()));
    let host = dst
        .host()
        .ok_or_else(|| err(ProxyErrorKind::BadResponse("the URL has no host".into())))?;
    // An IPv6 host keeps its brackets, as CONNECT's authority form requires.
    let target = format!("{host}:{}", proxy::effective_port(dst));
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = proxy.auth() {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    tcp.write_all(&head).await.map_err(io_err)?;

    // The TLS client speaks first, so nothing may follow the response head.
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(err(ProxyErrorKind::BadResponse(
                if buf.is_empty() {
                    "the proxy closed the connection without answering"
                } else {
                    "the proxy closed the connection in the middle of its answer"
                }
                .into(),
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        let end = find(&buf, b"\r\n\r\n").map(|pos| pos + 4);
        if end.unwrap_or(buf.len()) > MAX_CONNECT_HEAD {
            return Err(err(ProxyErrorKind::BadResponse(
                "response head too long".into(),
            )));
        }
        if let Some(end) = end {
            break end;
        }
    };
    let Some((status, reason)) = parse_status_line(&buf) else {
        let start = printable(&buf[..buf.len().min(60)]);
        return Err(err(ProxyErrorKind::BadResponse(format!(
            "not HTTP: {start}"
        ))));
    };
    match status {
        200..=299 if buf.len() == end => Ok(tcp),
        200..=299 => Err(err(ProxyErrorKind::BadResponse(
            "unexpected data after the response head".into(),
        ))),
        // tinyproxy answers wrong credentials with 401.
        401 | 407 => Err(err(ProxyErrorKind::AuthRequired { status, reason })),
        _ => Err(err(ProxyErrorKind::Refused { status, reason })),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.x NNN reason` → (NNN, the reason as printable text).
fn parse_status_line(buf: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(&buf[..find(buf, b"\r\n")?]).ok()?;
    let mut parts = line.strip_prefix("HTTP/1.")?.splitn(3, ' ');
    parts.next().filter(|minor| minor.len() == 1)?;
    let status = parts.next().filter(|c| c.len() == 3)?.parse().ok()?;
    Some((status, printable(parts.next().unwrap_or("").as_bytes())))
}

/// At most 80 characters of text from a peer, without control characters.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A failure on the way through a proxy: `through proxy http://host:port: what happened`.
#[derive(Debug)]
pub(crate) struct ProxyError {
    /// The proxy as shown (no credentials).
    proxy: String,
    var: &'static str,
    sent_credentials: bool,
    kind: ProxyErrorKind,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxyErrorKind {
    /// No TCP connection to the proxy (refused, unreachable, its name does not resolve).
    Connect,
    /// The proxy answered the CONNECT with a status other than 2xx.
    Refused {
        status: u16,
        reason: String,
    },
    /// 407, or 401 from tinyproxy: credentials missing or wrong.
    AuthRequired {
        status: u16,
        reason: String,
    },
    /// Not an HTTP answer, cut short, or too long.
    BadResponse(String),
    Io,
}

impl ProxyError {
    pub(crate) fn new(proxy: &Proxy, kind: ProxyErrorKind, source: Option<BoxError>) -> ProxyError {
        ProxyError {
            proxy: proxy.to_string(),
            var: proxy.var(),
            sent_credentials: proxy.auth().is_some(),
            kind,
            source,
        }
    }

    /// The proxy said no for good: asking again within the same mint would get the same answer
    /// (a policy refusal, missing or wrong credentials). A 5xx (the proxy could not reach the
    /// destination) and connection failures may pass.
    pub(crate) fn is_final(&self) -> bool {
        match &self.kind {
            ProxyErrorKind::AuthRequired { .. } => true,
            ProxyErrorKind::Refused { status, .. } => *status < 500,
            ProxyErrorKind::Connect | ProxyErrorKind::BadResponse(_) | ProxyErrorKind::Io => false,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "through proxy {}: ", self.proxy)?;
        match &self.kind {
            ProxyErrorKind::Connect => f.write_str("cannot connect to the proxy"),
            ProxyErrorKind::Refused { status, reason } => {
                write!(f, "CONNECT refused ({status} {reason})")
            }
            ProxyErrorKind::AuthRequired { status, reason } => {
                write!(f, "proxy authentication required ({status} {reason}); ")?;
                if self.sent_credentials {
                    write!(
                        f,
                        "the proxy rejected the user name and password in {}",
                        self.var
                    )
                } else {
                    write!(f, "put user:password@ into {}", self.var)
                }
            }
            ProxyErrorKind::BadResponse(what) => write!(f, "bad CONNECT response: {what}"),
            ProxyErrorKind::Io => f.write_str("the connection to the proxy failed"),
        }
    }
}

impl StdError for ProxyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The first [`ProxyError`] in `e`'s chain of causes.
pub(crate) fn proxy_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a ProxyError> {
    causes(e).find_map(|e| e.downcast_ref::<ProxyError>())
}

/// `e` and its causes, one by one. An `io::Error` that wraps another error (TLS failures
/// arrive as an `io::Error` around rustls's) is followed into that error, which its `source`
/// skips.
pub(crate) fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| {
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map(|inner| inner as &(dyn StdError + 'static));
        inner.or_else(|| e.source())
    })
}

/// A TCP stream to the destination, through a CONNECT tunnel, or to a forwarding proxy.
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    forwarding: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        // `proxy(true)` makes hyper write the request target in absolute form.
        self.io.connected().proxy(self.forwarding)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::proxy::ProxyEnv;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-connection fake proxy on loopback: records what it was sent, answers `answer`.
    fn fake_proxy(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            // The client may hang up first (an over-long answer).
            let _ = conn.write_all(answer);
            String::from_utf8_lossy(&head).into_owned()
        });
        (port, handle)
    }

    /// Connects to `dst` with HTTPS_PROXY pointing at the fake proxy on `port`.
    fn connect(proxy_url: &str, dst: &str) -> Result<ProxyStream, BoxError> {
        let (result, at_proxy) = connect_recorded(proxy_url, dst);
        assert_eq!(at_proxy, result.is_err(), "the record follows the outcome");
        result
    }

    /// [`connect`], and whether the connector recorded a failure at the proxy (it starts out
    /// recorded, so a success must clear it).
    fn connect_recorded(proxy_url: &str, dst: &str) -> (Result<ProxyStream, BoxError>, bool) {
        let env = ProxyEnv {
            https: Some(("HTTPS_PROXY", proxy_url.to_owned())),
            ..ProxyEnv::default()
        };
        let at_proxy = Arc::new(AtomicBool::new(true));
        let mut connector =
            ProxyConnector::new(Proxies::from_settings(&env).unwrap(), at_proxy.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(connector.call(dst.parse().unwrap()));
        (result, at_proxy.load(Ordering::Relaxed))
    }

    #[test]
    fn the_connector_records_whether_its_last_connection_failed_at_the_proxy() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (result, at_proxy) =
            connect_recorded(&format!("http://127.0.0.1:{port}"), "https://oauth2.test/");
        assert!(result.is_err() && at_proxy, "a proxy that is down");
        // NO_PROXY's loopback rule: a direct connection, refused by nobody listening.
        let (result, at_proxy) = connect_recorded(
            &format!("http://127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}/"),
        );
        assert!(result.is_err(), "nothing listens there");
        assert!(!at_proxy, "a direct failure is not the proxy's");
    }

    fn message(e: &BoxError) -> String {
        e.to_string()
    }

    #[test]
    fn a_tunnel_sends_connect_with_the_credentials_and_keeps_the_stream() {
        let (port, proxy) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let url = format!("http://al%40ice:pa55%3Aword@127.0.0.1:{port}");
        let stream = connect(&url, "https://oauth2.test:8443/token").unwrap();
        assert!(!stream.forwarding);
        let head = proxy.join().unwrap();
        assert_eq!(
            head,
            // base64("al@ice:pa55:word")
            "CONNECT oauth2.test:8443 HTTP/1.1\r\nHost: oauth2.test:8443\r\n\
             Proxy-Authorization: Basic YWxAaWNlOnBhNTU6d29yZA==\r\n\r\n"
        );
        let (port, proxy) = fake_proxy(b"HTTP/1.0 200 OK\r\nProxy-agent: x\r\n\r\n");
        connect(&format!("127.0.0.1:{port}"), "https://[2001:db8::1]/x").unwrap();
        assert!(
            proxy
                .join()
                .unwrap()
                .starts_with("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n")
        );
    }

    #[test]
    fn what_the_proxy_answered_is_in_the_error() {
        let cases: &[(&[u8], &str, bool)] = &[
            (
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                "CONNECT refused (403 Forbidden)",
                true,
            ),
            (
                b"HTTP/1.0 502 Bad Gateway\r\n\r\n",
                "CONNECT refused (502 Bad Gateway)",
                false,
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "proxy authentication required (407 Proxy Authentication Required); put user:password@ into HTTPS_PROXY",
                true,
            ),
            (
                b"",
                "bad CONNECT response: the proxy closed the connection without answering",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\n",
                "bad CONNECT response: the proxy closed the connection in the middle of its answer",
                false,
            ),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                "bad CONNECT response: not HTTP: SSH-2.0-OpenSSH_9.2",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nextra",
                "bad CONNECT response: unexpected data after the response head",
                false,
            ),
        ];
        for &(answer, want, is_final) in cases {
            let (port, proxy) = fake_proxy(answer);
            let e = connect(&format!("http://127.0.0.1:{port}"), "https://oauth2.test/")
                .err()
                .unwrap();
            proxy.join().unwrap();
            assert_eq!(
                message(&e),
                format!("through proxy http://127.0.0.1:{port}: {want}")
            );
            let p = proxy_error(&*e).unwrap();
            assert_eq!(p.is_final(), is_final, "{want}");
        }
    }

    #[test]
    fn rejected_credentials_are_named_without_their_value() {
        let (port, proxy) = fake_proxy(b"HTTP/1.1 401 Unauthorized\r\n\r\n");
        let e = connect(
            &format!("http://alice:s3cret@127.0.0.1:{port}"),
            "https://oauth2.test/",
        )
        .err()
        .unwrap();
        proxy.join().unwrap();
        assert_eq!(
            message(&e),
            format!(
                "through proxy http://127.0.0.1:{port}: proxy authentication required (401 Unauthorized); the proxy rejected the user name and password in HTTPS_PROXY"
            )
        );
    }

    #[test]
    fn an_over_long_answer_is_cut_off() {
        static LONG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', 9000));
            v
        });
        let (port, proxy) = fake_proxy(LONG.as_slice());
        let e = connect(&format!("http://127.0.0.1:{port}"), "https://oauth2.test/")
            .err()
            .unwrap();
        proxy.join().unwrap();
        assert!(message(&e).ends_with("bad CONNECT response: response head too long"));
    }

    #[test]
    fn a_proxy_that_is_down_is_named() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = connect(&format!("http://127.0.0.1:{port}"), "https://oauth2.test/")
            .err()
            .unwrap();
        assert_eq!(
            message(&e),
            format!("through proxy http://127.0.0.1:{port}: cannot connect to the proxy")
        );
        assert!(!proxy_error(&*e).unwrap().is_final());
        assert!(e.source().is_some(), "the cause is kept for the chain");
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Some((403, "Forbidden".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 200\r\n\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(
            parse_status_line(b"HTTP/1.1 403 \x1b[31mred\r\n\r\n"),
            Some((403, "[31mred".into()))
        );
    }

    #[test]
    fn the_connector_fits_yup_oauth2() {
        fn needs<C>()
        where
            C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
        {
        }
        needs::<Connector>();
    }
}
