//! The outermost layer of every connection: it bounds what a server may send and notes what
//! was sent, for requests this program does not build itself (yup-oauth2 signs and posts the
//! service-account assertion with the client we hand it, and reads whole bodies).
//!
//! - Reading: a connection carries one exchange (the clients keep no idle connections), so a
//!   cap on the bytes read from it bounds the answer, headers and body, however it is
//!   framed. An endless or huge answer fails with a transport error at the cap.
//! - Writing: the plaintext written (the tap sits above TLS) is kept, up to a bound, so the
//!   secrets of those requests are known and can be scrubbed from whatever the server
//!   answers ([`Sent::secrets`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use tower_service::Service;

use crate::util::secret::Secrets;

/// The most read from one connection: the largest body any endpoint may send, plus headers.
pub(crate) const MAX_READ: u64 = 1024 * 1024 + 64 * 1024;
/// The most kept of what was written (requests are a few kilobytes).
const MAX_KEPT: usize = 256 * 1024;

/// What was written on the tapped connections, shared by the connector and its streams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent(Arc<Mutex<Vec<u8>>>);

impl Sent {
    fn record(&self, bytes: &[u8]) {
        if let Ok(mut kept) = self.0.lock() {
            let room = MAX_KEPT.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    /// The credentials in the requests written so far: `Authorization` header values and
    /// the secret fields of form bodies.
    pub(crate) fn secrets(&self, secret_fields: &[&str]) -> Secrets {
        let kept = match self.0.lock() {
            Ok(kept) => kept.clone(),
            Err(_) => Vec::new(),
        };
        secrets_in(&kept, secret_fields)
    }
}

/// The credentials in a stream of HTTP/1.1 requests (heads and bodies, as written).
fn secrets_in(stream: &[u8], secret_fields: &[&str]) -> Secrets {
    let mut secrets = Secrets::default();
    let mut rest = stream;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]);
        let mut length = 0usize;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "authorization" | "proxy-authorization" => {
                    // `Bearer TOKEN`, `Basic CREDENTIALS`: the credential is the secret.
                    secrets.add(value.split_once(' ').map_or(value, |(_, c)| c));
                }
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        let body_start = end + 4;
        let body_end = (body_start + length).min(rest.len());
        for (name, value) in form_urlencoded::parse(&rest[body_start..body_end]) {
            if secret_fields.contains(&name.as_ref()) {
                secrets.add(&value);
            }
        }
        rest = &rest[body_end..];
    }
    secrets
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A connector whose connections are tapped.
#[derive(Clone)]
pub(crate) struct Tap<C> {
    inner: C,
    sent: Sent,
}

impl<C> Tap<C> {
    pub(crate) fn new(inner: C, sent: Sent) -> Tap<C> {
        Tap { inner, sent }
    }
}

impl<C> Service<Uri> for Tap<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
    C::Error: 'static,
{
    type Response = Tapped<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let sent = self.sent.clone();
        Box::pin(async move {
            Ok(Tapped {
                io: connecting.await?,
                read: 0,
                sent,
            })
        })
    }
}

/// A tapped connection.
pub(crate) struct Tapped<S> {
    io: S,
    read: u64,
    sent: Sent,
}

impl<S: Connection> Connection for Tapped<S> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<S: hyper::rt::Read + Unpin> hyper::rt::Read for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read >= MAX_READ {
            return Poll::Ready(Err(io::Error::other(format!(
                "the answer is larger than {} KiB; not read further",
                MAX_READ / 1024
            ))));
        }
        // Read into a buffer of our own (a copy of a few kilobytes per read) so the count is
        // known without unsafe code: the cursor is consumed by the read it is passed to.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
        let room = buf.remaining().min(chunk.len());
        let mut inner = hyper::rt::ReadBuf::uninit(&mut chunk[..room]);
        match Pin::new(&mut self.io).poll_read(cx, inner.unfilled()) {
            Poll::Ready(Ok(())) => {
                let filled = inner.filled();
                self.read += filled.len() as u64;
                buf.put_slice(filled);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: hyper::rt::Write + Unpin> hyper::rt::Write for Tapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.sent.record(&buf[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_of_written_requests_are_found_in_every_form() {
        let body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=eyJh.eyJz.c2ln";
        let stream = format!(
            "POST /token HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             content-length: {}\r\n\r\n{body}\
             GET /x HTTP/1.1\r\nAuthorization: Bearer ya29.pod-token-value\r\n\r\n",
            body.len()
        );
        let secrets = secrets_in(stream.as_bytes(), &["assertion"]);
        let echo = "invalid_grant: bad assertion eyJh.eyJz.c2ln for ya29.pod-token-value";
        assert_eq!(
            secrets.scrub(echo),
            "invalid_grant: bad assertion REDACTED for REDACTED"
        );
        assert!(!secrets.scrub("grant_type jwt-bearer").contains("REDACTED"));
    }
}
