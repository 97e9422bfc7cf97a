//! Which hosts are Google registries: the security boundary of this program.
//!
//! A Google access token grants whatever the user's identity may do in Google Cloud, so it
//! must only ever be handed to a client that is about to send it to Google. This module owns
//! that decision and nothing else: it normalises what a client sends (`https://GCR.io/v2/`,
//! `user@gcr.io:443`, `gcr.io.`) to a host and port, and classifies the result. It performs no
//! I/O. Anything it cannot parse with certainty is [`HostClass::Other`], which the protocol
//! answers with "not found", so the client goes on anonymously and no token is minted.

use std::fmt;

/// A registry address reduced to what the client will connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    /// Lower-case host name, IPv4 address or IPv6 address (without brackets).
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        match (bracket, self.port) {
            (false, None) => write!(f, "{}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
        }
    }
}

/// What the helper may do for a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostClass {
    /// A Google registry (or a host the user configured as one): answer with a Google token.
    Google,
    /// A retired "bring your own bucket" host (b.gcr.io, bucket.gcr.io): explain and refuse.
    DeprecatedBucket,
    /// Anything else: never send a Google token.
    Other,
}

/// A host the user declared to be a Google registry (`DOCKER_CREDENTIAL_GCP_REGISTRIES`).
/// Without a port it matches the host on any port.
pub(crate) type ExtraHost = Registry;

/// The message for the retired bucket hosts: what happened and how to move.
pub(crate) const DEPRECATED_BUCKET_MESSAGE: &str = "b.gcr.io and bucket.gcr.io (Container Registry \"bring your own bucket\") are no longer served. \
Migrate each image: pull it from the old name while you still have a copy, re-tag it to gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io or an Artifact Registry repository (REGION-docker.pkg.dev/PROJECT/REPO/IMAGE), push it there, and update references to the new name";

/// Parses what a client sends as a server address: `host`, `host:port`, `[v6]:port`, optionally
/// with a scheme, user info, path, query or fragment, in any case, with a trailing dot or slash.
/// Returns `None` for anything that is not clearly one valid host.
pub(crate) fn normalise(input: &str) -> Option<Registry> {
    let mut rest = input.trim();
    // Browsers' URL rules read `\` as `/` (so `https://evil.com\@gcr.io` is evil.com) and drop
    // tabs and newlines anywhere; rather than guess which reading a client uses, refuse both.
    if rest.contains('\\') || rest.contains(|c: char| c.is_control()) {
        return None;
    }
    if let Some(i) = rest.find("://") {
        let scheme = &rest[..i];
        if !is_scheme(scheme) {
            return None;
        }
        rest = &rest[i + 3..];
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut authority = &rest[..end];
    if let Some(at) = authority.rfind('@') {
        authority = &authority[at + 1..];
    }
    let bracketed = authority.starts_with('[');
    let (host, port) = split_port(authority)?;
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').map(str::to_owned).unwrap_or(host);
    let valid = if bracketed {
        is_ipv6(&host)
    } else {
        is_dns_name(&host)
    };
    if !valid {
        return None;
    }
    Some(Registry { host, port })
}

/// Classifies a normalised registry. `extra` are hosts the user declared Google registries.
pub(crate) fn classify(registry: &Registry, extra: &[ExtraHost]) -> HostClass {
    let host = registry.host.as_str();
    if is_deprecated_bucket(host) {
        return HostClass::DeprecatedBucket;
    }
    if is_google_registry(host) {
        return HostClass::Google;
    }
    let declared = extra
        .iter()
        .any(|e| e.host == host && (e.port.is_none() || e.port == registry.port));
    if declared {
        HostClass::Google
    } else {
        HostClass::Other
    }
}

/// gcr.io, any subdomain of gcr.io, REGION-docker.pkg.dev and docker.REGION.rep.pkg.dev.
/// `host` must already be a validated lower-case DNS name.
pub(crate) fn is_google_registry(host: &str) -> bool {
    if host == "gcr.io" || host.ends_with(".gcr.io") {
        return true;
    }
    if let Some(region) = host.strip_suffix("-docker.pkg.dev") {
        return is_label(region);
    }
    if let Some(middle) = host.strip_prefix("docker.")
        && let Some(region) = middle.strip_suffix(".rep.pkg.dev")
    {
        return is_label(region);
    }
    false
}

fn is_deprecated_bucket(host: &str) -> bool {
    ["b.gcr.io", "bucket.gcr.io"]
        .iter()
        .any(|d| host == *d || host.strip_suffix(d).is_some_and(|p| p.ends_with('.')))
}

/// The non-empty, trimmed entries of a comma-separated list.
pub(crate) fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// One `host[:port]` entry, exactly: no scheme, user, path or anything else.
pub(crate) fn parse_host_entry(entry: &str) -> Result<ExtraHost, String> {
    match normalise(entry) {
        Some(r) if r.to_string() == entry.to_ascii_lowercase().trim_end_matches('.') => Ok(r),
        _ => Err(format!("{entry:?} is not a host or host:port")),
    }
}

/// Parses a comma-separated list of `host[:port]` entries. Empty entries are ignored; an
/// entry that is not a plain host is an error naming it.
pub(crate) fn parse_host_list(list: &str) -> Result<Vec<ExtraHost>, String> {
    split_list(list).map(parse_host_entry).collect()
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        let after = &v6[close + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&v6[..close], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// One lower-case DNS label: 1-63 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub(crate) fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Lower-case DNS names (which include dotted IPv4 addresses), at most 253 characters.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty() && host.len() <= 253 && host.split('.').all(is_label)
}

fn is_ipv6(host: &str) -> bool {
    host.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(input: &str) -> HostClass {
        match normalise(input) {
            Some(r) => classify(&r, &[]),
            None => HostClass::Other,
        }
    }

    #[test]
    fn google_registries_in_every_spelling_clients_use() {
        for input in [
            "gcr.io",
            "us.gcr.io",
            "eu.gcr.io",
            "asia.gcr.io",
            "marketplace.gcr.io",
            "staging-k8s.gcr.io",
            "k8s.gcr.io",
            "mirror.gcr.io",
            "GCR.IO",
            "Us.Gcr.Io",
            "gcr.io.",
            " gcr.io\n",
            "gcr.io/",
            "gcr.io:443",
            "https://gcr.io",
            "https://gcr.io/",
            "https://gcr.io/v2/",
            "http://gcr.io",
            "gcr.io/my-project/my-image",
            "gcr.io/my-project/my-image:tag",
            "oauth2accesstoken@gcr.io",
            "https://user:pw@gcr.io:443/v2/?q=1#frag",
            "us-docker.pkg.dev",
            "europe-docker.pkg.dev",
            "asia-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "us-central1-docker.pkg.dev",
            "northamerica-northeast2-docker.pkg.dev",
            "https://us-docker.pkg.dev/project/repo/image",
            "docker.us-central1.rep.pkg.dev",
            "docker.europe-west4.rep.pkg.dev",
            "DOCKER.ME-CENTRAL2.REP.PKG.DEV",
        ] {
            assert_eq!(class(input), HostClass::Google, "{input:?}");
        }
    }

    #[test]
    fn lookalikes_and_foreign_hosts_are_other() {
        for input in [
            "gcr.io.evil.com",
            "evilgcr.io",
            "gcr.iox",
            "xgcr.io",
            "gcr.com",
            "gcr.io-evil.com",
            "us-docker.pkg.dev.evil.com",
            "docker.pkg.dev",
            "-docker.pkg.dev",
            "a.b-docker.pkg.dev",
            "us_docker.pkg.dev",
            "pkg.dev",
            "evil-docker.pkg.dev.com",
            "docker.rep.pkg.dev",
            "docker..rep.pkg.dev",
            "docker.a.b.rep.pkg.dev",
            "docker.us-central1.rep.pkg.dev.evil.com",
            "evil.docker.us-central1.rep.pkg.dev",
            "https://gcr.io@evil.com",
            "https://gcr.io@evil.com/v2/",
            "gcr.io@evil.com",
            "https://gcr.io:443@evil.com",
            "evil.com/gcr.io",
            "evil.com?gcr.io",
            "evil.com#gcr.io",
            "https://evil.com/https://gcr.io",
            "https://evil.com\\@gcr.io",
            "https://evil.com\\.gcr.io",
            "evil.com\\@gcr.io",
            "https://evil.com\\@gcr.io/v2/",
            "https://gcr.io\\@evil.com",
            "https://evil.com\\\\@gcr.io",
            "https://evil.com\t@gcr.io",
            "https://evil.com\n@gcr.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
            "quay.io",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "ghcr.io",
            "pkg.dev.gcr",
        ] {
            assert_eq!(class(input), HostClass::Other, "{input:?}");
        }
    }

    #[test]
    fn malformed_input_is_never_a_registry() {
        for input in [
            "",
            "   ",
            "\n",
            "gcr.io:",
            "gcr.io:abc",
            "gcr.io:99999",
            "gcr.io:443:443",
            "gcr.io:+443",
            "gcr..io",
            ".gcr.io",
            "gcr.io..",
            "gcr io",
            "gcr%2eio",
            "gcr.io%00",
            "gcr.io\0",
            "gcr.io\u{0}evil.com",
            "g\u{0441}r.io",
            "gcr.\u{0131}o",
            "xn--gcr.io/",
            "[gcr.io]",
            "[::1",
            "[::1]x",
            "://gcr.io",
            "1http://gcr.io",
            "ht tp://gcr.io",
            "@",
            "https://",
            "gcr_io",
        ] {
            let c = class(input);
            assert_ne!(c, HostClass::Google, "{input:?}");
        }
        // Punycode names are valid DNS names, but not Google's.
        assert_eq!(class("xn--gcr-io.com"), HostClass::Other);
    }

    #[test]
    fn bucket_hosts_are_recognised_as_deprecated() {
        for input in [
            "b.gcr.io",
            "bucket.gcr.io",
            "https://b.gcr.io/my-bucket/image",
            "BUCKET.GCR.IO",
            "x.b.gcr.io",
        ] {
            assert_eq!(class(input), HostClass::DeprecatedBucket, "{input:?}");
        }
        assert_eq!(class("bb.gcr.io"), HostClass::Google);
        assert_eq!(class("xbucket.gcr.io"), HostClass::Google);
    }

    #[test]
    fn normalise_reduces_to_host_and_port() {
        let r = normalise("HTTPS://User:Pw@Us.GCR.io:5000/v2/x?y#z").unwrap();
        assert_eq!(r.host, "us.gcr.io");
        assert_eq!(r.port, Some(5000));
        assert_eq!(r.to_string(), "us.gcr.io:5000");
        let v6 = normalise("http://[::1]:8080/").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:8080");
        assert_eq!(normalise("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(
            normalise("127.0.0.1:5000").unwrap().to_string(),
            "127.0.0.1:5000"
        );
    }

    #[test]
    fn extra_hosts_match_host_and_optional_port() {
        let extra = parse_host_list("proxy.example.com, 127.0.0.1:5000,,[::1]:6000").unwrap();
        let c = |s: &str| classify(&normalise(s).unwrap(), &extra);
        assert_eq!(c("proxy.example.com"), HostClass::Google);
        assert_eq!(c("https://proxy.example.com:8443/v2/"), HostClass::Google);
        assert_eq!(c("127.0.0.1:5000"), HostClass::Google);
        assert_eq!(c("127.0.0.1:5001"), HostClass::Other);
        assert_eq!(c("127.0.0.1"), HostClass::Other);
        assert_eq!(c("[::1]:6000"), HostClass::Google);
        assert_eq!(c("proxy.example.com.evil.com"), HostClass::Other);
        assert_eq!(c("b.gcr.io"), HostClass::DeprecatedBucket);
    }

    #[test]
    fn host_list_rejects_anything_but_host_and_port() {
        for bad in [
            "https://x.example",
            "x.example/path",
            "u@x.example",
            "x.example:",
            "a b",
        ] {
            assert!(parse_host_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_host_list("").unwrap(), vec![]);
        assert_eq!(parse_host_list(" A.Example ").unwrap()[0].host, "a.example");
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
    }

    fn google_host() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("gcr.io".to_string()),
            label().prop_map(|l| format!("{l}.gcr.io")),
            label().prop_map(|l| format!("{l}-docker.pkg.dev")),
            label().prop_map(|l| format!("docker.{l}.rep.pkg.dev")),
        ]
    }

    proptest! {
        #[test]
        fn normalise_never_panics(s in any::<String>()) {
            let _ = normalise(&s);
        }

        #[test]
        fn normalise_is_idempotent(s in "\\PC{0,40}") {
            if let Some(r) = normalise(&s) {
                prop_assert_eq!(normalise(&r.to_string()), Some(r));
            }
        }

        #[test]
        fn spelling_variants_of_a_google_host_are_the_same_registry(
            host in google_host(),
            https in any::<bool>(),
            upper in any::<bool>(),
            user in any::<bool>(),
            port in proptest::option::of(1u16..),
            path in "(/[a-z0-9._-]{1,8}){0,3}/?",
        ) {
            let mut s = String::new();
            if https { s.push_str("https://"); }
            if user { s.push_str("oauth2accesstoken:x@"); }
            s.push_str(&if upper { host.to_uppercase() } else { host.clone() });
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            s.push_str(&path);
            let r = normalise(&s).unwrap();
            prop_assert_eq!(&r.host, &host);
            prop_assert_eq!(r.port, port);
            let expected = if host.starts_with("b.") || host.starts_with("bucket.") {
                HostClass::DeprecatedBucket
            } else {
                HostClass::Google
            };
            prop_assert_eq!(classify(&r, &[]), expected);
        }

        #[test]
        fn no_host_outside_the_google_suffixes_is_accepted(s in "[a-zA-Z0-9.:@/\\[\\]-]{0,40}") {
            if let Some(r) = normalise(&s)
                && classify(&r, &[]) == HostClass::Google
            {
                let h = r.host.as_str();
                prop_assert!(
                    h == "gcr.io" || h.ends_with(".gcr.io") || h.ends_with("-docker.pkg.dev")
                        || (h.starts_with("docker.") && h.ends_with(".rep.pkg.dev")),
                    "accepted {:?} as {:?}", s, h
                );
            }
        }

        #[test]
        fn a_google_host_followed_by_another_domain_is_never_accepted(
            host in google_host(), tail in label(), tld in "[a-z]{2,6}"
        ) {
            let s = format!("{host}.{tail}.{tld}");
            prop_assert_eq!(class(&s), HostClass::Other);
            let at = format!("https://{host}@{tail}.{tld}/v2/");
            prop_assert_eq!(class(&at), HostClass::Other);
        }
    }
}
