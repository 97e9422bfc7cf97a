//! Which hosts are Google registries: the security boundary of this program.
//!
//! A Google access token grants whatever the user's identity may do in Google Cloud, so it
//! must only ever be handed to a client that is about to send it to Google. This module owns
//! that decision and nothing else: it normalises what a client sends (`https://GCR.io/v2/`,
//! `user@gcr.io:443`, `gcr.io.`) to a host and port, and classifies the result. It performs no
//! I/O. Anything it cannot parse with certainty is [`HostClass::Other`], which the protocol
//! answers with "not found", so the client goes on anonymously and no token is minted.
//!
//! Two policies share the parsing: [`classify`] for docker's server addresses (container
//! registries only), and [`classify_uri`] for the URIs Bazel asks about, which are stricter
//! (`https` only, no user info) and wider (Artifact Registry's other formats, Cloud Storage).

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
    parse_authority(authority)
}

/// `host`, `host:port` or `[v6]:port`, validated and lower-cased, without a trailing dot.
fn parse_authority(authority: &str) -> Option<Registry> {
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

/// An `https` URI as Bazel sends it, reduced to where the request goes and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpsUri {
    pub(crate) registry: Registry,
    /// The path as sent (`/` when there is none), without query or fragment: what an identity
    /// rule for a repository matches.
    pub(crate) path: String,
}

/// Parses a URI from a Bazel request: `https://host[:port][/path][?query][#fragment]`, the
/// scheme in any case. `None` for every other scheme, for user info (`https://gcr.io@evil.com`
/// and `https://user@gcr.io` alike: Bazel never sends it for a host we serve, so it can only be
/// a trick), for whitespace, control characters and backslashes anywhere, and for anything
/// that is not clearly one valid host.
pub(crate) fn parse_https_uri(uri: &str) -> Option<HttpsUri> {
    if uri.contains(|c: char| c == '\\' || c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let registry = parse_authority(authority)?;
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let path = match &tail[..path_end] {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    Some(HttpsUri { registry, path })
}

/// Artifact Registry's package formats, each served at `LOCATION-FORMAT.pkg.dev` (its
/// `Repository.Format` values; remote and virtual repositories use their format's host). Files
/// of every format, generic ones included, can also be fetched from the API host
/// [`ARTIFACT_REGISTRY_API`].
pub(crate) const ARTIFACT_REGISTRY_FORMATS: [&str; 8] = [
    "docker", "maven", "npm", "python", "go", "apt", "yum", "kfp",
];

/// The Artifact Registry API, whose `files.download` method serves any repository's files.
pub(crate) const ARTIFACT_REGISTRY_API: &str = "artifactregistry.googleapis.com";

/// Cloud Storage: `storage.googleapis.com/BUCKET/OBJECT` and `BUCKET.storage.googleapis.com`.
pub(crate) const CLOUD_STORAGE: &str = "storage.googleapis.com";

/// Classifies the host of a URI Bazel asks about: everything [`classify`] accepts, plus
/// Artifact Registry of every format, its API host and Cloud Storage. `extra` are hosts the
/// user declared Google's (the port, if declared, must match).
pub(crate) fn classify_uri(uri: &HttpsUri, extra: &[ExtraHost]) -> HostClass {
    let host = uri.registry.host.as_str();
    let google_api = is_artifact_registry(host)
        || host == ARTIFACT_REGISTRY_API
        || host == CLOUD_STORAGE
        || host.ends_with(".storage.googleapis.com");
    if google_api {
        return HostClass::Google;
    }
    // gcr.io, docker.LOCATION.rep.pkg.dev, the retired bucket hosts and declared hosts.
    classify(&uri.registry, extra)
}

/// `LOCATION-FORMAT.pkg.dev` for a format in [`ARTIFACT_REGISTRY_FORMATS`]. `host` must be a
/// validated lower-case DNS name.
fn is_artifact_registry(host: &str) -> bool {
    let Some(name) = host.strip_suffix(".pkg.dev") else {
        return false;
    };
    ARTIFACT_REGISTRY_FORMATS.iter().any(|format| {
        name.strip_suffix(format)
            .and_then(|l| l.strip_suffix('-'))
            .is_some_and(is_label)
    })
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

    fn uri_class(uri: &str) -> HostClass {
        match parse_https_uri(uri) {
            Some(u) => classify_uri(&u, &[]),
            None => HostClass::Other,
        }
    }

    #[test]
    fn uris_of_every_google_host_class_get_a_token() {
        for uri in [
            "https://us-maven.pkg.dev/my-project/my-repo/com/example/lib/1.0/lib-1.0.jar",
            "https://europe-west1-npm.pkg.dev/my-project/my-repo/@scope/pkg/-/pkg-1.0.0.tgz",
            "https://us-central1-python.pkg.dev/my-project/my-repo/simple/pkg/",
            "https://us-go.pkg.dev/my-project/my-repo/example.com/mod/@v/v1.0.0.zip",
            "https://us-central1-apt.pkg.dev/projects/my-project/dists/my-repo/InRelease",
            "https://us-central1-yum.pkg.dev/projects/my-project/my-repo/repodata/repomd.xml",
            "https://us-central1-kfp.pkg.dev/my-project/my-repo/my-pipeline/v1",
            "https://us-docker.pkg.dev/v2/my-project/my-repo/image/manifests/latest",
            "https://northamerica-northeast2-docker.pkg.dev/v2/",
            "https://docker.us-central1.rep.pkg.dev/v2/my-project/my-repo/image/blobs/sha256:00",
            "https://artifactregistry.googleapis.com/download/v1/projects/p/locations/us/repositories/r/files/f:download?alt=media",
            "https://gcr.io/v2/my-project/image/manifests/latest",
            "https://us.gcr.io/v2/",
            "https://storage.googleapis.com/my-bucket/archive.tar.gz",
            "https://my-bucket.storage.googleapis.com/archive.tar.gz",
            "https://my.dotted.bucket.storage.googleapis.com/archive.tar.gz",
            "https://storage.googleapis.com",
            "https://storage.googleapis.com?alt=media",
            "HTTPS://US-MAVEN.PKG.DEV/Project/Repo",
            "Https://Storage.GoogleApis.Com/b/o",
            "https://us-maven.pkg.dev:443/p/r",
            "https://us-maven.pkg.dev:8443/p/r",
            "https://us-maven.pkg.dev./p/r",
            "https://storage.googleapis.com/b/o#fragment",
        ] {
            assert_eq!(uri_class(uri), HostClass::Google, "{uri:?}");
        }
    }

    #[test]
    fn plain_http_and_other_schemes_never_get_a_token() {
        for uri in [
            "http://us-maven.pkg.dev/p/r/a.jar",
            "http://storage.googleapis.com/b/o",
            "http://gcr.io/v2/",
            "grpcs://storage.googleapis.com",
            "grpc://us-maven.pkg.dev",
            "ftp://us-maven.pkg.dev/",
            "file:///etc/passwd",
            "https+unix://us-maven.pkg.dev/",
            "httpss://us-maven.pkg.dev/",
            "us-maven.pkg.dev/p/r",
            "us-maven.pkg.dev",
            "//us-maven.pkg.dev/p",
            "https:/us-maven.pkg.dev/p",
            "https:us-maven.pkg.dev",
            "https//us-maven.pkg.dev",
            "https://",
            "https:///p/r",
            "",
        ] {
            assert_eq!(uri_class(uri), HostClass::Other, "{uri:?}");
        }
    }

    #[test]
    fn user_info_lookalikes_and_tricks_never_get_a_token() {
        for uri in [
            "https://us-maven.pkg.dev@evil.com/p/r",
            "https://user@us-maven.pkg.dev/p/r",
            "https://user:pw@storage.googleapis.com/b/o",
            "https://oauth2accesstoken@gcr.io/v2/",
            "https://:@storage.googleapis.com/",
            "https://storage.googleapis.com:443@evil.com/",
            "https://evil.com\\@storage.googleapis.com/b",
            "https://evil.com\\.storage.googleapis.com/b",
            "https://storage.googleapis.com\\@evil.com/b",
            "https://evil.com\t@storage.googleapis.com/",
            "https://evil.com\n.storage.googleapis.com/",
            " https://storage.googleapis.com/b/o",
            "https://storage.googleapis.com/b/o ",
            "https://storage.googleapis.com /b",
            "https://storage.googleapis.com.evil.com/b",
            "https://storage.googleapis.com-evil.com/b",
            "https://evilstorage.googleapis.com/b",
            "https://storage-googleapis.com/b",
            "https://storage.googleapis.co/b",
            "https://googleapis.com/b",
            "https://www.googleapis.com/download/storage/v1/b/x/o/y",
            "https://artifactregistry.googleapis.com.evil.com/",
            "https://evil-artifactregistry.googleapis.com/",
            "https://us-maven.pkg.dev.evil.com/p",
            "https://us-maven.pkg.devx/p",
            "https://maven.pkg.dev/p",
            "https://-maven.pkg.dev/p",
            "https://a.b-maven.pkg.dev/p",
            "https://us-mavenx.pkg.dev/p",
            "https://us-maven-.pkg.dev/p",
            "https://us--maven.pkg.dev/p",
            "https://us-cargo.pkg.dev/p",
            "https://us-argo.pkg.dev/p",
            "https://us_maven.pkg.dev/p",
            "https://pkg.dev/p",
            "https://evil.com/https://us-maven.pkg.dev/p",
            "https://evil.com?https://us-maven.pkg.dev/p",
            "https://evil.com#@us-maven.pkg.dev/p",
            "https://evil.com/@us-maven.pkg.dev/p",
            "https://evil.com/us-maven.pkg.dev",
            "https://us-maven.pkg.dev%2eevil.com/p",
            "https://us-maven%2epkg.dev/p",
            "https://us-maven.pkg.dev%00.evil.com/p",
            "https://us-maven.pkg.dev\0.evil.com/p",
            "https://us-m\u{0430}ven.pkg.dev/p",
            "https://xn--us-maven-pkg-dev.com/p",
            "https://[::1]/p",
            "https://127.0.0.1/p",
            "https://localhost/p",
            "https://us-maven.pkg.dev:/p",
            "https://us-maven.pkg.dev:99999/p",
            "https://us-maven.pkg.dev:443:443/p",
            "https://[us-maven.pkg.dev]/p",
        ] {
            assert_eq!(uri_class(uri), HostClass::Other, "{uri:?}");
        }
    }

    #[test]
    fn retired_bucket_hosts_are_recognised_in_uris() {
        assert_eq!(
            uri_class("https://b.gcr.io/my-bucket/image"),
            HostClass::DeprecatedBucket
        );
        assert_eq!(
            uri_class("https://bucket.gcr.io/v2/"),
            HostClass::DeprecatedBucket
        );
    }

    #[test]
    fn a_uri_keeps_its_path_for_identity_rules() {
        let u =
            parse_https_uri("https://US-Maven.pkg.dev:8443/My-Project/repo/a.jar?x=1#y").unwrap();
        assert_eq!(u.registry.host, "us-maven.pkg.dev");
        assert_eq!(u.registry.port, Some(8443));
        assert_eq!(u.path, "/My-Project/repo/a.jar");
        assert_eq!(parse_https_uri("https://gcr.io").unwrap().path, "/");
        assert_eq!(parse_https_uri("https://gcr.io?q").unwrap().path, "/");
        assert_eq!(parse_https_uri("https://gcr.io#f").unwrap().path, "/");
    }

    #[test]
    fn declared_hosts_get_a_token_over_https_only() {
        let extra = parse_host_list("proxy.example.com, 127.0.0.1:8443").unwrap();
        let c = |s: &str| parse_https_uri(s).map(|u| classify_uri(&u, &extra));
        assert_eq!(c("https://proxy.example.com/p"), Some(HostClass::Google));
        assert_eq!(
            c("https://proxy.example.com:9000/p"),
            Some(HostClass::Google)
        );
        assert_eq!(c("https://127.0.0.1:8443/p"), Some(HostClass::Google));
        assert_eq!(c("https://127.0.0.1:8444/p"), Some(HostClass::Other));
        assert_eq!(c("https://127.0.0.1/p"), Some(HostClass::Other));
        assert_eq!(
            c("https://proxy.example.com.evil.com/p"),
            Some(HostClass::Other)
        );
        assert_eq!(c("http://proxy.example.com/p"), None);
        assert_eq!(c("https://u@proxy.example.com/p"), None);
    }

    #[test]
    fn docker_addresses_of_the_other_formats_stay_other() {
        // A docker `get` answers as before: only container registries get a token there.
        for host in [
            "us-maven.pkg.dev",
            "us-npm.pkg.dev",
            "storage.googleapis.com",
            "b.storage.googleapis.com",
            "artifactregistry.googleapis.com",
        ] {
            assert_eq!(class(host), HostClass::Other, "{host}");
            assert_eq!(
                class(&format!("https://{host}/x")),
                HostClass::Other,
                "{host}"
            );
        }
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

    fn uri_google_host() -> impl Strategy<Value = String> {
        let format = proptest::sample::select(ARTIFACT_REGISTRY_FORMATS.to_vec());
        prop_oneof![
            google_host().prop_filter("not a retired bucket host", |h| {
                !h.starts_with("b.") && !h.starts_with("bucket.")
            }),
            (label(), format).prop_map(|(l, f)| format!("{l}-{f}.pkg.dev")),
            Just(CLOUD_STORAGE.to_string()),
            Just(ARTIFACT_REGISTRY_API.to_string()),
            proptest::collection::vec(label(), 1..3)
                .prop_map(|ls| format!("{}.storage.googleapis.com", ls.join("."))),
        ]
    }

    /// The URI policy restated independently: the hosts that may receive a token.
    fn is_allowed_uri_host(h: &str) -> bool {
        let ar = ARTIFACT_REGISTRY_FORMATS.iter().any(|f| {
            h.strip_suffix(&format!("-{f}.pkg.dev"))
                .is_some_and(|r| !r.is_empty() && !r.contains('.'))
        });
        ar || h == "gcr.io"
            || h.ends_with(".gcr.io")
            || (h.starts_with("docker.") && h.ends_with(".rep.pkg.dev"))
            || h == "storage.googleapis.com"
            || h.ends_with(".storage.googleapis.com")
            || h == "artifactregistry.googleapis.com"
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

        #[test]
        fn parse_https_uri_never_panics(s in any::<String>()) {
            let _ = parse_https_uri(&s);
        }

        #[test]
        fn spelling_variants_of_a_google_uri_are_the_same_host(
            host in uri_google_host(),
            upper_scheme in any::<bool>(),
            upper_host in any::<bool>(),
            port in proptest::option::of(1u16..),
            path in "(/[A-Za-z0-9._~%:@!$&'()*+,;=-]{1,8}){0,3}/?",
            query in proptest::option::of("[A-Za-z0-9=&%._-]{0,12}"),
            fragment in proptest::option::of("[A-Za-z0-9@/?._-]{0,12}"),
        ) {
            let mut s = String::from(if upper_scheme { "HTTPS://" } else { "https://" });
            s.push_str(&if upper_host { host.to_uppercase() } else { host.clone() });
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            s.push_str(&path);
            if let Some(q) = &query { s.push('?'); s.push_str(q); }
            if let Some(f) = &fragment { s.push('#'); s.push_str(f); }
            let u = parse_https_uri(&s).unwrap();
            prop_assert_eq!(&u.registry.host, &host);
            prop_assert_eq!(u.registry.port, port);
            let expected_path = if path.is_empty() { "/".to_owned() } else { path.clone() };
            prop_assert_eq!(&u.path, &expected_path);
            prop_assert_eq!(classify_uri(&u, &[]), HostClass::Google);
        }

        #[test]
        fn no_uri_host_outside_the_policy_gets_a_token(
            s in "(https?://)?[a-zA-Z0-9.:@/?#\\[\\]%_-]{0,40}"
        ) {
            if let Some(u) = parse_https_uri(&s)
                && classify_uri(&u, &[]) == HostClass::Google
            {
                prop_assert!(s.to_ascii_lowercase().starts_with("https://"), "{:?}", s);
                let authority = s[8..].split(['/', '?', '#']).next().unwrap_or("");
                prop_assert!(!authority.contains('@'), "{:?}", s);
                prop_assert!(is_allowed_uri_host(&u.registry.host), "accepted {:?} as {:?}", s, u.registry.host);
            }
        }

        #[test]
        fn only_https_uris_are_parsed(
            scheme in "[a-zA-Z][a-zA-Z0-9+.-]{0,8}",
            host in uri_google_host(),
        ) {
            let s = format!("{scheme}://{host}/p");
            prop_assert_eq!(
                parse_https_uri(&s).is_some(),
                scheme.eq_ignore_ascii_case("https")
            );
        }

        #[test]
        fn a_google_uri_host_as_user_info_or_before_another_domain_gets_nothing(
            host in uri_google_host(), tail in label(), tld in "[a-z]{2,6}"
        ) {
            prop_assert_eq!(uri_class(&format!("https://{host}.{tail}.{tld}/p")), HostClass::Other);
            prop_assert_eq!(uri_class(&format!("https://{host}@{tail}.{tld}/p")), HostClass::Other);
            prop_assert_eq!(uri_class(&format!("https://{tail}.{tld}/{host}")), HostClass::Other);
            prop_assert_eq!(uri_class(&format!("https://u@{host}/p")), HostClass::Other);
            prop_assert_eq!(uri_class(&format!("http://{host}/p")), HostClass::Other);
        }
    }
}
