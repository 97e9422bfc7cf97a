//! Which proxy, if any, a request goes through: `HTTPS_PROXY` for https targets, `HTTP_PROXY`
//! for plain-http ones, `NO_PROXY` for the exceptions, as Go's net/http reads them (Google's Go
//! libraries, docker, containerd and the kubelet all do).
//!
//! A decision only: no I/O, and the environment is read once, in [`ProxyEnv::from_env`], when
//! a token is about to be minted (never on the cached `get`). The connection itself is made in
//! `connect`.
//!
//! What is hyper-util's and what is ours: hyper-util's `Matcher` parses the proxy URLs (a
//! value without a scheme is http, the user info is percent-decoded into a ready `Basic`
//! header marked sensitive). Its `NO_PROXY` filter is not used, because it misses rules the
//! issue asks for and Go has: an entry with a port never matches, `*` does not cover IP
//! addresses, `*.example.com` is not understood, and loopback is proxied (pinned down by
//! `hyper_util_matcher_gaps` below). It also silently drops a proxy URL it cannot parse,
//! which would send requests past a mandatory proxy; here that is an error. So [`NoProxy`] is
//! our own, table-tested below.
//!
//! Never proxied, whatever the variables say: loopback (`localhost`, 127.0.0.0/8, `::1`), as
//! Go does; and the link-local instance metadata addresses (the GCE metadata server by name
//! and address, AWS and Azure IMDS), which no proxy can reach. The GCE metadata source also
//! uses a client without any proxy at all.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;

use crate::util::env;

/// The raw settings: each value with the variable it came from (for messages).
#[derive(Debug, Default, Clone)]
pub(crate) struct ProxyEnv {
    pub(crate) https: Option<(&'static str, String)>,
    pub(crate) http: Option<(&'static str, String)>,
    pub(crate) no_proxy: Option<(&'static str, String)>,
}

impl ProxyEnv {
    /// `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy`, `NO_PROXY`/`no_proxy`: upper
    /// case first, an empty value counts as unset (as in Go). `ALL_PROXY` is ignored (as in Go).
    pub(crate) fn from_env() -> Result<ProxyEnv, String> {
        let get = |names: [&'static str; 2]| -> Result<Option<(&'static str, String)>, String> {
            for name in names {
                if let Some(value) = env::var_os(name) {
                    let value = value
                        .into_string()
                        .map_err(|_| format!("{name} is not valid UTF-8"))?;
                    let value = value.trim();
                    if !value.is_empty() {
                        return Ok(Some((name, value.to_owned())));
                    }
                }
            }
            Ok(None)
        };
        Ok(ProxyEnv {
            https: get(["HTTPS_PROXY", "https_proxy"])?,
            http: get(["HTTP_PROXY", "http_proxy"])?,
            no_proxy: get(["NO_PROXY", "no_proxy"])?,
        })
    }
}

/// A proxy as it may be shown: `http://host:port`, never the credentials, which live only in
/// the sensitive header value.
#[derive(Clone)]
pub(crate) struct Proxy {
    uri: Uri,
    auth: Option<HeaderValue>,
    /// The variable that named it.
    var: &'static str,
}

impl Proxy {
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The `Proxy-Authorization` value (`Basic …`, marked sensitive), if the URL had user info.
    pub(crate) fn auth(&self) -> Option<&HeaderValue> {
        self.auth.as_ref()
    }

    pub(crate) fn var(&self) -> &'static str {
        self.var
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        write!(
            f,
            "{}://{authority}",
            self.uri.scheme_str().unwrap_or("http")
        )
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self}, auth: {})", self.auth.is_some())
    }
}

/// Why a request goes direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bypass {
    /// No proxy variable for the target's scheme.
    NotSet,
    /// A `NO_PROXY` entry matches.
    NoProxy,
    Loopback,
    InstanceMetadata,
}

#[derive(Debug, Clone)]
pub(crate) enum Route {
    Direct(Bypass),
    /// An https target: CONNECT through the proxy, then TLS end to end.
    Tunnel(Proxy),
    /// A plain-http target: the request in absolute form to the proxy.
    Forward(Proxy),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_auth = |p: &Proxy| {
            if p.auth.is_some() {
                ", with the user and password from the URL"
            } else {
                ""
            }
        };
        match self {
            Route::Direct(Bypass::NotSet) => f.write_str("direct (no proxy set for it)"),
            Route::Direct(Bypass::NoProxy) => f.write_str("direct (NO_PROXY)"),
            Route::Direct(Bypass::Loopback) => f.write_str("direct (loopback is never proxied)"),
            Route::Direct(Bypass::InstanceMetadata) => {
                f.write_str("direct (instance metadata is never proxied)")
            }
            Route::Tunnel(p) => write!(f, "through proxy {p} (CONNECT; {}{})", p.var, with_auth(p)),
            Route::Forward(p) => write!(f, "through proxy {p} ({}{})", p.var, with_auth(p)),
        }
    }
}

/// Which proxy serves each destination. Cheap to clone (shared inside).
#[derive(Clone, Default)]
pub(crate) struct Proxies {
    rules: Option<Arc<Rules>>,
}

struct Rules {
    /// Parses the proxy URLs (its own NO_PROXY list is left empty).
    matcher: Matcher,
    https_var: &'static str,
    http_var: &'static str,
    no_proxy: NoProxy,
}

impl Proxies {
    /// Never a proxy.
    pub(crate) fn none() -> Proxies {
        Proxies { rules: None }
    }

    pub(crate) fn from_env() -> Result<Proxies, String> {
        Proxies::from_settings(&ProxyEnv::from_env()?)
    }

    /// Validates the proxy URLs: one that cannot be used is an error (sending the request
    /// directly instead could break a network policy). Messages never repeat credentials.
    pub(crate) fn from_settings(env: &ProxyEnv) -> Result<Proxies, String> {
        if env.https.is_none() && env.http.is_none() {
            return Ok(Proxies::none());
        }
        let mut builder = Matcher::builder();
        let (mut https_var, mut http_var) = ("", "");
        if let Some((var, url)) = &env.https {
            check_proxy_url(var, url)?;
            builder = builder.https(url.as_str());
            https_var = var;
        }
        if let Some((var, url)) = &env.http {
            check_proxy_url(var, url)?;
            builder = builder.http(url.as_str());
            http_var = var;
        }
        Ok(Proxies {
            rules: Some(Arc::new(Rules {
                matcher: builder.no("").build(),
                https_var,
                http_var,
                no_proxy: NoProxy::parse(env.no_proxy.as_ref().map_or("", |(_, v)| v)),
            })),
        })
    }

    pub(crate) fn route(&self, dst: &Uri) -> Route {
        let Some(rules) = &self.rules else {
            return Route::Direct(Bypass::NotSet);
        };
        let Some(host) = dst.host() else {
            return Route::Direct(Bypass::NotSet);
        };
        if is_instance_metadata(host) {
            return Route::Direct(Bypass::InstanceMetadata);
        }
        if is_loopback(host) {
            return Route::Direct(Bypass::Loopback);
        }
        if rules.no_proxy.matches(host, effective_port(dst)) {
            return Route::Direct(Bypass::NoProxy);
        }
        let Some(intercept) = rules.matcher.intercept(dst) else {
            return Route::Direct(Bypass::NotSet);
        };
        let https = dst.scheme_str() == Some("https");
        let proxy = Proxy {
            uri: intercept.uri().clone(),
            auth: intercept.basic_auth().cloned(),
            var: if https {
                rules.https_var
            } else {
                rules.http_var
            },
        };
        if https {
            Route::Tunnel(proxy)
        } else {
            Route::Forward(proxy)
        }
    }
}

fn check_proxy_url(var: &str, value: &str) -> Result<(), String> {
    let with_scheme;
    let value = if value.contains("://") {
        value
    } else {
        with_scheme = format!("http://{value}");
        &with_scheme
    };
    let uri: Uri = value.parse().map_err(|_| {
        format!("{var} is not a valid proxy URL (http://[user:password@]host:port)")
    })?;
    let authority = uri.authority().map_or("", |a| a.as_str());
    let shown = authority.rsplit('@').next().unwrap_or_default();
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{var}: proxies reached over TLS (https://{shown}) are not supported; use http://{shown}"
            ));
        }
        Some(other) => {
            return Err(format!(
                "{var}: proxy scheme {other}:// is not supported; use http://"
            ));
        }
        None => return Err(format!("{var} is not a valid proxy URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{var} names no proxy host"));
    }
    Ok(())
}

/// The port a request to `uri` goes to.
pub(crate) fn effective_port(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

/// A URL host without IPv6 brackets or a trailing dot, in lower case.
fn bare_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `localhost` or a loopback address, as a URL host.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = bare_host(host);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The link-local cloud instance metadata address, as a URL host: `169.254.169.254` (GCE,
/// AWS, Azure) or `fd00:ec2::254` (AWS over IPv6).
pub(crate) fn is_instance_metadata_address(host: &str) -> bool {
    let v4 = IpAddr::from([169, 254, 169, 254]);
    let v6 = IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]);
    bare_host(host)
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == v4 || ip == v6)
}

/// The instance metadata service by address, or the GCE metadata server by name.
fn is_instance_metadata(host: &str) -> bool {
    is_instance_metadata_address(host) || bare_host(host) == "metadata.google.internal"
}

/// The parsed `NO_PROXY` list.
///
/// - comma separated, whitespace around entries ignored, case-insensitive;
/// - `*` alone: every host, names and IP addresses alike;
/// - `example.com`, `.example.com` and `*.example.com`: `example.com` and every name under
///   it, never `notexample.com`;
/// - an IP address (`10.1.2.3`, `::1`, `[::1]`) matches that address, a CIDR block
///   (`10.0.0.0/8`, `fd00::/8`) every address in it; names are never resolved;
/// - any entry may carry a port (`example.com:8443`, `10.1.2.3:80`, `[::1]:8080`) and then
///   matches only requests to that port;
/// - an entry that fits none of these (`http://x`, `ex*.com`) matches nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct NoProxy {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    All,
    Ip(IpAddr, Option<u16>),
    Net(IpAddr, u8),
    Domain(String, Option<u16>),
}

impl NoProxy {
    pub(crate) fn parse(list: &str) -> NoProxy {
        NoProxy {
            entries: list
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .filter_map(parse_entry)
                .collect(),
        }
    }

    /// `host` as a URL has it (IPv6 in brackets or not); `port` the request's port.
    pub(crate) fn matches(&self, host: &str, port: u16) -> bool {
        let host = bare_host(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| match (entry, ip) {
            (Entry::All, _) => true,
            (Entry::Ip(want, want_port), Some(ip)) => *want == ip && port_ok(*want_port, port),
            (Entry::Net(net, prefix), Some(ip)) => in_net(ip, *net, *prefix),
            (Entry::Domain(domain, want_port), None) => {
                port_ok(*want_port, port)
                    && (host == *domain
                        || host
                            .strip_suffix(domain.as_str())
                            .is_some_and(|rest| rest.ends_with('.')))
            }
            _ => false,
        })
    }
}

fn port_ok(want: Option<u16>, port: u16) -> bool {
    want.is_none_or(|w| w == port)
}

fn parse_entry(entry: &str) -> Option<Entry> {
    let entry = entry.to_ascii_lowercase();
    if entry == "*" {
        return Some(Entry::All);
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        return (prefix <= max).then_some(Entry::Net(addr, prefix));
    }
    if let Ok(ip) = bare_host(&entry).parse::<IpAddr>() {
        return Some(Entry::Ip(ip, None));
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(Entry::Ip(addr.ip(), Some(addr.port())));
    }
    let (name, port) = match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port.parse::<u16>().ok()?)),
        Some(_) => return None,
        None => (entry.as_str(), None),
    };
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_prefix('.').unwrap_or(name).trim_end_matches('.');
    if name.is_empty() || name.contains(['*', '/', '@', ' ', '[', ']']) {
        return None;
    }
    Some(Entry::Domain(name.to_owned(), port))
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_net(IpAddr::V4(a), net, prefix)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NO_PROXY `list` against a request to `host` on `port`.
    fn bypass(list: &str, host: &str, port: u16) -> bool {
        NoProxy::parse(list).matches(host, port)
    }

    #[test]
    fn no_proxy_rules() {
        // (NO_PROXY, host, port, bypassed)
        let table: &[(&str, &str, u16, bool)] = &[
            // exact hosts and domain suffixes, with or without a leading dot or `*.`
            ("example.com", "example.com", 443, true),
            ("example.com", "a.b.example.com", 443, true),
            ("example.com", "notexample.com", 443, false),
            ("example.com", "example.com.evil", 443, false),
            ("example.com", "com", 443, false),
            (".example.com", "example.com", 443, true),
            (".example.com", "a.example.com", 443, true),
            (".example.com", "notexample.com", 443, false),
            ("*.example.com", "a.example.com", 443, true),
            ("*.example.com", "example.com", 443, true),
            ("*.example.com", "xexample.com", 443, false),
            // case and trailing dots
            ("EXAMPLE.com.", "A.Example.COM", 443, true),
            ("example.com", "example.com.", 443, true),
            // IP addresses and blocks; names are never resolved
            ("10.1.2.3", "10.1.2.3", 80, true),
            ("10.1.2.3", "10.1.2.4", 80, false),
            ("10.0.0.0/8", "10.200.0.1", 80, true),
            ("10.0.0.0/8", "11.0.0.1", 80, false),
            ("0.0.0.0/0", "1.2.3.4", 80, true),
            ("::1", "[::1]", 80, true),
            ("[::1]", "[::1]", 80, true),
            ("fd00::/8", "[fd12::1]", 80, true),
            ("fd00::/8", "[fe80::1]", 80, false),
            ("10.0.0.0/8", "[::ffff:10.0.0.1]", 80, true),
            ("localhost", "127.0.0.1", 80, false),
            ("127.0.0.1", "localhost", 80, false),
            ("10.0.0.0/33", "10.0.0.1", 80, false),
            // `*` is every host, names and addresses alike, but not a glob inside an entry
            ("*", "example.com", 443, true),
            ("*", "10.1.2.3", 443, true),
            ("*", "[2001:db8::1]", 8443, true),
            ("a.example, *", "b.example", 443, true),
            ("ex*.com", "example.com", 443, false),
            // ports: the entry then matches that port only (the scheme's default if none)
            ("example.com:8443", "example.com", 8443, true),
            ("example.com:8443", "example.com", 443, false),
            (".example.com:8443", "a.example.com", 8443, true),
            ("10.1.2.3:80", "10.1.2.3", 80, true),
            ("10.1.2.3:80", "10.1.2.3", 8080, false),
            ("[::1]:8080", "[::1]", 8080, true),
            ("[::1]:8080", "[::1]", 80, false),
            ("example.com:notaport", "example.com", 443, false),
            // separators and junk
            (" a.com ,, b.com ,", "b.com", 443, true),
            ("http://example.com", "example.com", 443, false),
            ("", "example.com", 443, false),
            (" , ,", "example.com", 443, false),
        ];
        for &(list, host, port, want) in table {
            assert_eq!(
                bypass(list, host, port),
                want,
                "NO_PROXY={list:?} {host}:{port}"
            );
        }
    }

    fn settings(https: Option<&str>, http: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https: https.map(|v| ("HTTPS_PROXY", v.to_owned())),
            http: http.map(|v| ("http_proxy", v.to_owned())),
            no_proxy: no.map(|v| ("NO_PROXY", v.to_owned())),
        }
    }

    fn route(p: &Proxies, url: &str) -> String {
        p.route(&url.parse().unwrap()).to_string()
    }

    #[test]
    fn each_target_gets_the_proxy_of_its_scheme_unless_bypassed() {
        let p = Proxies::from_settings(&settings(
            Some("http://u:p@sp:3128"),
            Some("hp:8080"),
            Some("internal.corp,10.0.0.0/8"),
        ))
        .unwrap();
        for (url, want) in [
            (
                "https://oauth2.googleapis.com/token",
                "through proxy http://sp:3128 (CONNECT; HTTPS_PROXY, with the user and password from the URL)",
            ),
            (
                "http://idp.example/token",
                "through proxy http://hp:8080 (http_proxy)",
            ),
            ("https://a.internal.corp/x", "direct (NO_PROXY)"),
            ("https://10.1.2.3/x", "direct (NO_PROXY)"),
            (
                "http://169.254.169.254/computeMetadata/v1/",
                "direct (instance metadata is never proxied)",
            ),
            (
                "http://METADATA.google.internal./x",
                "direct (instance metadata is never proxied)",
            ),
            (
                "http://[fd00:ec2::254]/latest/api/token",
                "direct (instance metadata is never proxied)",
            ),
            (
                "https://127.0.0.1:8443/x",
                "direct (loopback is never proxied)",
            ),
            ("https://127.9.9.9/x", "direct (loopback is never proxied)"),
            (
                "https://localhost:8443/x",
                "direct (loopback is never proxied)",
            ),
            ("http://[::1]:80/x", "direct (loopback is never proxied)"),
        ] {
            assert_eq!(route(&p, url), want, "{url}");
        }
        let https_only =
            Proxies::from_settings(&settings(Some("http://sp:1"), None, None)).unwrap();
        assert_eq!(
            route(&https_only, "http://example.com/"),
            "direct (no proxy set for it)"
        );
        assert_eq!(
            route(&Proxies::none(), "https://example.com/"),
            "direct (no proxy set for it)"
        );
        let v6 = Proxies::from_settings(&settings(Some("http://[::1]:3128"), None, None)).unwrap();
        assert_eq!(
            route(&v6, "https://[2001:db8::1]:8443/x"),
            "through proxy http://[::1]:3128 (CONNECT; HTTPS_PROXY)"
        );
    }

    #[test]
    fn proxy_credentials_are_percent_decoded_into_a_sensitive_header_and_never_shown() {
        let p = Proxies::from_settings(&settings(
            Some("http://al%40ice:p%3Ass%20w@127.0.0.1:3128"),
            None,
            None,
        ))
        .unwrap();
        let Route::Tunnel(proxy) = p.route(&"https://example.com".parse().unwrap()) else {
            panic!("tunnel expected");
        };
        let auth = proxy.auth().unwrap();
        assert!(auth.is_sensitive());
        // base64("al@ice:p:ss w")
        assert_eq!(auth, "Basic YWxAaWNlOnA6c3Mgdw==");
        assert_eq!(proxy.to_string(), "http://127.0.0.1:3128");
        assert_eq!(
            format!("{proxy:?}"),
            "Proxy(http://127.0.0.1:3128, auth: true)"
        );
        assert!(!format!("{:?}", p.route(&"https://x".parse().unwrap())).contains("ss"));
    }

    #[test]
    fn unusable_proxy_urls_are_errors_that_never_repeat_credentials() {
        let e = |v: &str| {
            Proxies::from_settings(&settings(Some(v), None, None))
                .err()
                .unwrap()
        };
        assert!(e("http://bad host:1").starts_with("HTTPS_PROXY is not a valid proxy URL"));
        assert_eq!(
            e("https://user:secret@p:443"),
            "HTTPS_PROXY: proxies reached over TLS (https://p:443) are not supported; use http://p:443"
        );
        assert_eq!(
            e("socks5://u:secret@p:1080"),
            "HTTPS_PROXY: proxy scheme socks5:// is not supported; use http://"
        );
        for bad in [
            "http://u:secret@bad host:1",
            "https://u:secret@p",
            "socks5://u:secret@p",
        ] {
            assert!(!e(bad).contains("secret"), "{bad}");
        }
        assert!(Proxies::from_settings(&settings(Some("127.0.0.1:3128"), None, None)).is_ok());
    }

    #[test]
    fn hosts_that_are_never_proxied() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "localhost.example",
            "128.0.0.1",
            "[::2]",
            "oauth2.googleapis.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        for host in [
            "169.254.169.254",
            "[fd00:ec2::254]",
            "metadata.google.internal",
        ] {
            assert!(is_instance_metadata(host), "{host}");
        }
        for host in [
            "169.254.169.253",
            "169.254.169.254.evil.com",
            "[fd00:ec2::255]",
        ] {
            assert!(!is_instance_metadata(host), "{host}");
        }
    }

    /// What hyper-util's own NO_PROXY handling does, and why `NoProxy` exists: if a future
    /// hyper-util closes these gaps, this test fails and `NoProxy` can go.
    #[test]
    fn hyper_util_matcher_gaps() {
        let proxied = |no: &str, url: &str| {
            Matcher::builder()
                .https("http://127.0.0.1:3128")
                .http("http://127.0.0.1:3128")
                .no(no)
                .build()
                .intercept(&url.parse().unwrap())
                .is_some()
        };
        // What it gets right.
        assert!(!proxied("example.com", "https://a.example.com"));
        assert!(!proxied(".example.com", "https://example.com"));
        assert!(!proxied("10.0.0.0/8", "https://10.9.9.9"));
        assert!(!proxied("*", "https://example.com"));
        // The gaps.
        assert!(proxied("*", "https://10.1.2.3"), "`*` misses IP addresses");
        assert!(
            proxied("example.com:8443", "https://example.com:8443"),
            "ports never match"
        );
        assert!(
            proxied("10.1.2.3:443", "https://10.1.2.3"),
            "ports never match"
        );
        assert!(
            proxied("*.example.com", "https://a.example.com"),
            "no `*.` suffixes"
        );
        assert!(proxied("", "https://127.0.0.1:8443"), "loopback is proxied");
        // And it silently drops a proxy URL it cannot parse (the request would go direct).
        let dropped = Matcher::builder().https("http://bad host:1").build();
        assert!(
            dropped
                .intercept(&"https://example.com".parse().unwrap())
                .is_none()
        );
    }
}
