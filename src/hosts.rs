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
//!
//! Identity rules' `match` patterns ([`parse_pattern`]) are checked here too: a pattern may
//! only cover hosts these policies already serve, so a rule chooses among Google identities
//! and never adds a host.

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
    if is_google_api(host) {
        return HostClass::Google;
    }
    // gcr.io, docker.LOCATION.rep.pkg.dev, the retired bucket hosts and declared hosts.
    classify(&uri.registry, extra)
}

/// The hosts only URIs get a token for: Artifact Registry of every format, its API host and
/// Cloud Storage. `host` must be a validated lower-case DNS name.
fn is_google_api(host: &str) -> bool {
    is_artifact_registry(host)
        || host == ARTIFACT_REGISTRY_API
        || host == CLOUD_STORAGE
        || host.ends_with(".storage.googleapis.com")
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

/// The repository path a server address carries after its host (`/p/r/img` in
/// `us-docker.pkg.dev/p/r/img` or `https://gcr.io/p/img?x`), for identity rules; `None` when
/// it has none. Read as [`normalise`] reads the address.
pub(crate) fn path_of(input: &str) -> Option<&str> {
    let rest = input.trim();
    let rest = rest.find("://").map_or(rest, |i| &rest[i + 3..]);
    let start = rest.find(['/', '?', '#'])?;
    let path = &rest[start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    (path.len() > 1).then_some(path)
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

// ---------------------------------------------------------------------------------------------
// Identity rules: which addresses a rule of the `identities` setting covers.

/// A `match` pattern of an identity rule: a host whose labels may each hold one `*` (as the
/// kubelet's `matchImages` globs: `*` stays within its label), an optional port, and an
/// optional repository path prefix. [`parse_pattern`] accepts a pattern only when every host
/// it can match is one [`classify`] already serves, so a rule chooses among Google identities
/// for a Google registry and never makes another host one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Lower case; a label may hold one `*`.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    /// A path prefix that starts and ends with `/` (`/team-a/`), or `None` for the whole host.
    path: Option<String>,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}*")?;
        }
        Ok(())
    }
}

impl Pattern {
    /// Whether the address `registry` (and the repository `path` a caller passed with it, as
    /// the kubelet and crane do; docker passes none) is covered. A pattern with a path never
    /// covers an address without one.
    pub(crate) fn matches(&self, registry: &Registry, path: Option<&str>) -> bool {
        let prefix = self.path.as_deref().map(|p| &p[..p.len() - 1]);
        covers(&self.host, self.port, prefix, registry, path)
    }

    /// Whether `registry` is this pattern's host (and port), whatever the path.
    pub(crate) fn matches_host(&self, registry: &Registry) -> bool {
        covers(&self.host, self.port, None, registry, None)
    }

    /// The path prefix (`/team-a/`), if the pattern has one.
    pub(crate) fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

/// Whether the pattern as written (`text`, not yet checked by [`parse_pattern`]) covers the
/// address: the comparison of [`Pattern::matches`], read straight from the text without
/// allocating, so that choosing a rule need not parse the rules that do not cover the
/// address. A rule whose pattern covers it is then checked in full; for a pattern
/// [`parse_pattern`] accepts, the two always agree (property-tested).
pub(crate) fn pattern_covers(text: &str, registry: &Registry, path: Option<&str>) -> bool {
    let text = text.trim_ascii();
    let (authority, raw_path) = match text.bytes().position(|b| b == b'/') {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let (host, port) = if authority.bytes().any(|b| b == b':') {
        match split_port(authority) {
            Some(split) => split,
            None => return false,
        }
    } else {
        (authority, None)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let prefix = (!raw_path.is_empty()).then(|| {
        let p = raw_path.strip_suffix("/*").unwrap_or(raw_path);
        p.strip_suffix('/').unwrap_or(p)
    });
    covers(host, port, prefix, registry, path)
}

/// The one comparison: the port (any when `None`), the host label by label (a label of
/// `host_glob` may hold one `*`; ASCII case ignored), and the repository path under `prefix`
/// (`/team-a`, without its final `/`).
fn covers(
    host_glob: &str,
    port: Option<u16>,
    prefix: Option<&str>,
    registry: &Registry,
    path: Option<&str>,
) -> bool {
    (port.is_none() || port == registry.port)
        && glob_matches_host(host_glob, &registry.host)
        && match prefix {
            None => true,
            Some(prefix) => path.is_some_and(|p| is_under(repository_path(p), prefix)),
        }
}

/// A repository path without the registry API's version segment: `/v2/p/r/i/manifests/x`
/// (as Bazel asks for it) is `/p/r/i/manifests/x`, the path docker and the kubelet name.
fn repository_path(path: &str) -> &str {
    ["/v2", "/v1"]
        .iter()
        .find_map(|api| path.strip_prefix(api).filter(|rest| rest.starts_with('/')))
        .unwrap_or(path)
}

/// `path` is `prefix` (without a final `/`) or lies below it.
fn is_under(path: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `pattern` matches `host` label by label (the same number of labels), where a label of
/// `pattern` may hold one `*`, any run of characters within the label. ASCII case is
/// ignored. Compared from the last label, so most patterns for other hosts are told apart
/// by their first comparison; nothing is allocated.
fn glob_matches_host(pattern: &str, host: &str) -> bool {
    if !pattern.as_bytes().contains(&b'*') {
        return pattern.eq_ignore_ascii_case(host);
    }
    let (mut p, mut h) = (pattern, host);
    loop {
        let (p_rest, p_label) = last_label(p);
        let (h_rest, h_label) = last_label(h);
        if !glob_matches_label(p_label, h_label) {
            return false;
        }
        match (p_rest, h_rest) {
            (None, None) => return true,
            (Some(pr), Some(hr)) => (p, h) = (pr, hr),
            _ => return false,
        }
    }
}

/// The last dot-separated label of `name`, and what comes before its dot.
fn last_label(name: &str) -> (Option<&str>, &str) {
    match name.as_bytes().iter().rposition(|b| *b == b'.') {
        Some(dot) => (Some(&name[..dot]), &name[dot + 1..]),
        None => (None, name),
    }
}

fn glob_matches_label(pattern: &str, label: &str) -> bool {
    let same = |a: Option<&str>, b: &str| a.is_some_and(|a| a.eq_ignore_ascii_case(b));
    match pattern.as_bytes().iter().position(|b| *b == b'*') {
        None => pattern.eq_ignore_ascii_case(label),
        Some(star) => {
            let (pre, post) = (&pattern[..star], &pattern[star + 1..]);
            label.len() >= pre.len() + post.len()
                && same(label.get(..pre.len()), pre)
                && same(label.get(label.len() - post.len()..), post)
        }
    }
}

/// Parses one `match` pattern: `HOST`, `HOST:PORT`, `HOST/PATH` or `HOST/PATH/*` (the last
/// two alike: the repositories under PATH), where HOST may hold `*` globs. The pattern must
/// stay inside the host policy: a Google host or glob (`gcr.io`, `*.gcr.io`,
/// `*-docker.pkg.dev`, `docker.*.rep.pkg.dev`, and for Bazel's URIs `*-maven.pkg.dev`,
/// `*.storage.googleapis.com` and the like, or narrower ones), or a host declared in
/// `registries` (exactly, without globs; with its port if it was declared with one). The
/// error says what is wrong in one line.
pub(crate) fn parse_pattern(text: &str, extra: &[ExtraHost]) -> Result<Pattern, String> {
    let text = text.trim_ascii();
    let bad = |why: &str| Err(format!("{text:?}: {why}"));
    if text.is_empty() {
        return Err("an empty pattern".to_owned());
    }
    if text.contains("://") {
        return bad("write a host or host/path, without a scheme");
    }
    if text.contains(|c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '\\' | '@' | '?' | '#' | '%')
    }) {
        return bad("not a host or host/path");
    }
    let (authority, path) = match text.find('/') {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let path = match path {
        None => None,
        Some(p) => Some(parse_path_prefix(p).map_err(|why| format!("{text:?}: {why}"))?),
    };
    let Some((host, port)) = split_port(authority) else {
        return bad("not a host or host:port");
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    let glob = host.contains('*');
    let valid = if authority.starts_with('[') {
        is_ipv6(&host)
    } else {
        host.len() <= 253
            && host
                .split('.')
                .all(|l| is_label(l) || (is_glob_label(l) && l.contains('*')))
    };
    if !valid {
        return bad("not a host name (letters, digits, `-`, and `*` within a label)");
    }
    within_policy(&host, port, glob, extra).map_err(|why| format!("{text:?}: {why}"))?;
    Ok(Pattern { host, port, path })
}

/// A label with exactly one `*` that is a valid label when the `*` stands for any letter.
fn is_glob_label(label: &str) -> bool {
    label.matches('*').count() == 1 && is_label(&label.replace('*', "a"))
}

/// `/a/b`, `/a/b/` or `/a/b/*` as the prefix `/a/b/`: segments of letters, digits, `.`, `_`
/// and `-`, none empty, `.` or `..`; a `*` only as the whole last segment.
fn parse_path_prefix(path: &str) -> Result<String, &'static str> {
    let trimmed = path.strip_suffix("/*").unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments = trimmed.strip_prefix('/').unwrap_or(trimmed);
    if segments.is_empty() {
        return Err("a path pattern needs a path; write the host alone to match all of it");
    }
    for segment in segments.split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(
                "a path is segments of letters, digits, `.`, `_` and `-`, with `*` only as the last one",
            );
        }
    }
    Ok(format!("/{segments}/"))
}

/// Whether every host `host` (lower case, labels possibly with one `*`) matches on `port` is
/// one the wider of the two policies ([`classify_uri`]) does not call [`HostClass::Other`].
/// A pattern for a host only Bazel's URIs get a token for (`us-maven.pkg.dev`) never covers a
/// docker address: [`classify`] refuses those before any rule is consulted.
fn within_policy(
    host: &str,
    port: Option<u16>,
    glob: bool,
    extra: &[ExtraHost],
) -> Result<(), String> {
    if !glob {
        if is_deprecated_bucket(host) {
            return Err("a retired bucket host (b.gcr.io, bucket.gcr.io) gets no token".to_owned());
        }
        if is_google_registry(host) || is_google_api(host) {
            return Ok(());
        }
        let declared: Vec<&ExtraHost> = extra.iter().filter(|e| e.host == host).collect();
        if declared
            .iter()
            .any(|e| e.port.is_none() || (e.port == port && port.is_some()))
        {
            return Ok(());
        }
        if let Some(e) = declared.first() {
            return Err(format!(
                "`registries` declares it as {e} only; give the port in the pattern"
            ));
        }
        return Err(
            "not a Google registry host nor one declared in `registries`; a rule cannot add hosts"
                .to_owned(),
        );
    }
    let labels: Vec<&str> = host.split('.').collect();
    // The globbed labels come before the fixed Google suffix (the slice patterns name it).
    let inside = match labels.as_slice() {
        // Every subdomain of gcr.io is Container Registry's.
        [_, .., "gcr", "io"] => true,
        // LOCATION-FORMAT.pkg.dev, the glob within the location.
        [first, "pkg", "dev"] => ARTIFACT_REGISTRY_FORMATS.iter().any(|format| {
            first
                .strip_suffix(format)
                .and_then(|l| l.strip_suffix('-'))
                .is_some_and(|location| location.contains('*') && is_glob_label(location))
        }),
        // Cloud Storage buckets.
        [_, .., "storage", "googleapis", "com"] => true,
        // docker.REGION.rep.pkg.dev.
        ["docker", region, "rep", "pkg", "dev"] => region.contains('*'),
        _ => false,
    };
    if inside {
        Ok(())
    } else {
        Err(
            "a `*` must stay inside gcr.io (`*.gcr.io`), LOCATION-FORMAT.pkg.dev \
             (`*-docker.pkg.dev`, `*-maven.pkg.dev`), docker.LOCATION.rep.pkg.dev \
             (`docker.*.rep.pkg.dev`) or Cloud Storage (`*.storage.googleapis.com`)"
                .to_owned(),
        )
    }
}

/// A Google service account e-mail: `NAME@DOMAIN` where NAME is letters, digits, `-`, `_` or
/// `.`, and DOMAIN a DNS name under gserviceaccount.com. Nothing else may reach the
/// impersonation URL it is put into.
pub(crate) fn is_service_account_email(email: &str) -> bool {
    let Some((name, domain)) = email.split_once('@') else {
        return false;
    };
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let domain_ok = (domain == "gserviceaccount.com" || domain.ends_with(".gserviceaccount.com"))
        && normalise(domain).is_some_and(|r| r.port.is_none() && r.host == domain);
    name_ok && domain_ok
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
    fn the_path_after_the_host_is_kept_for_identity_rules() {
        for (input, path) in [
            ("us-docker.pkg.dev/team-a/img", Some("/team-a/img")),
            ("https://gcr.io/p/img:tag?x=1#f", Some("/p/img:tag")),
            ("https://gcr.io/v2/", Some("/v2/")),
            ("gcr.io", None),
            ("gcr.io/", None),
            ("https://gcr.io", None),
            ("gcr.io?x/y", None),
            ("gcr.io#/y", None),
        ] {
            assert_eq!(path_of(input), path, "{input}");
        }
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

    fn pattern(text: &str) -> Result<Pattern, String> {
        parse_pattern(text, &[])
    }

    #[test]
    fn rule_patterns_inside_the_google_registries_are_accepted() {
        for (text, shown) in [
            ("gcr.io", "gcr.io"),
            ("GCR.IO", "gcr.io"),
            ("gcr.io.", "gcr.io"),
            ("us.gcr.io", "us.gcr.io"),
            ("*.gcr.io", "*.gcr.io"),
            ("x*.gcr.io", "x*.gcr.io"),
            ("*.*.gcr.io", "*.*.gcr.io"),
            ("gcr.io:443", "gcr.io:443"),
            ("europe-docker.pkg.dev", "europe-docker.pkg.dev"),
            ("*-docker.pkg.dev", "*-docker.pkg.dev"),
            ("europe-*-docker.pkg.dev", "europe-*-docker.pkg.dev"),
            ("docker.*.rep.pkg.dev", "docker.*.rep.pkg.dev"),
            (
                "docker.us-central1.rep.pkg.dev",
                "docker.us-central1.rep.pkg.dev",
            ),
            ("us-docker.pkg.dev/team-a/*", "us-docker.pkg.dev/team-a/*"),
            ("us-docker.pkg.dev/team-a", "us-docker.pkg.dev/team-a/*"),
            ("us-docker.pkg.dev/team-a/", "us-docker.pkg.dev/team-a/*"),
            ("gcr.io/example.com/proj/*", "gcr.io/example.com/proj/*"),
            ("*.gcr.io:443/My_Project/*", "*.gcr.io:443/My_Project/*"),
            // Hosts only Bazel's URIs get a token for.
            ("us-maven.pkg.dev/p/repo/*", "us-maven.pkg.dev/p/repo/*"),
            ("*-maven.pkg.dev", "*-maven.pkg.dev"),
            ("europe-*-npm.pkg.dev", "europe-*-npm.pkg.dev"),
            (
                "storage.googleapis.com/my-bucket/*",
                "storage.googleapis.com/my-bucket/*",
            ),
            ("*.storage.googleapis.com", "*.storage.googleapis.com"),
            (
                "artifactregistry.googleapis.com",
                "artifactregistry.googleapis.com",
            ),
        ] {
            let p = pattern(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(p.to_string(), shown, "{text:?}");
        }
    }

    #[test]
    fn rule_patterns_never_name_a_host_outside_the_policy() {
        for text in [
            "gcr.io.evil.com",
            "*.gcr.io.evil.com",
            "gcr.io.*",
            "evilgcr.io",
            "*gcr.io",
            "*.io",
            "*",
            "*.*",
            "*.com",
            "evil.com",
            "quay.io",
            "ghcr.io",
            "index.docker.io",
            "pkg.dev",
            "docker.pkg.dev",
            "*.pkg.dev",
            "*docker.pkg.dev",
            "us-*.pkg.dev",
            "*-cargo.pkg.dev",
            "us-cargo.pkg.dev",
            "*.googleapis.com",
            "googleapis.com",
            "www.googleapis.com",
            "storage.googleapis.com.evil.com",
            "*.storage.googleapis.com.evil.com",
            "us-docker.pkg.dev.evil.com",
            "*-docker.pkg.dev.evil.com",
            "*-docker.pkg.dev.*",
            "*.rep.pkg.dev",
            "docker.*.rep.pkg.dev.evil.com",
            "x.docker.*.rep.pkg.dev",
            "evil.docker.us-central1.rep.pkg.dev",
            "b.gcr.io",
            "bucket.gcr.io",
            "x.b.gcr.io",
            "https://gcr.io",
            "http://gcr.io/p/*",
            "gcr.io@evil.com",
            "evil.com@gcr.io",
            "evil.com/gcr.io",
            "evil.com?gcr.io",
            "evil.com#gcr.io",
            "evil.com\\@gcr.io",
            "evil.com%2egcr.io",
            "gcr.io/../x",
            "gcr.io/./x",
            "gcr.io/a//b",
            "gcr.io/*",
            "gcr.io/",
            "gcr.io/a*b",
            "gcr.io/a/*/b",
            "gcr.io/a b",
            "**.gcr.io",
            "a*b*.gcr.io",
            "gcr.io:",
            "gcr.io:99999",
            "[::1]",
            "[::1]:5000",
            "localhost:5000",
            "127.0.0.1",
            "",
            " ",
            "gcr io",
            "gcr.io\n/x",
            "g\u{0441}r.io",
            "xn--gcr-io.com",
            "GCR.IO.EVIL.COM",
        ] {
            assert!(pattern(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn rule_patterns_may_name_declared_hosts_exactly() {
        let extra = parse_host_list("ar.example.com, 127.0.0.1:5000, [::1]:6000").unwrap();
        let p = |t: &str| parse_pattern(t, &extra);
        for ok in [
            "ar.example.com",
            "ar.example.com:8443",
            "ar.example.com/team/*",
            "127.0.0.1:5000",
            "127.0.0.1:5000/x/*",
            "[::1]:6000",
        ] {
            assert!(p(ok).is_ok(), "{ok}: {:?}", p(ok));
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:5001",
            "*.example.com",
            "*.com",
            "ar.example.com.evil.com",
            "x.ar.example.com",
            "[::1]",
            "[::2]:6000",
        ] {
            assert!(p(bad).is_err(), "{bad} was accepted");
        }
        assert!(
            p("127.0.0.1").unwrap_err().contains("give the port"),
            "{:?}",
            p("127.0.0.1")
        );
    }

    #[test]
    fn rule_patterns_match_hosts_label_by_label_and_ports_exactly() {
        let r = |s: &str| normalise(s).unwrap();
        let star = pattern("*.gcr.io").unwrap();
        assert!(star.matches(&r("us.gcr.io"), None));
        assert!(star.matches(&r("us.gcr.io:443"), Some("/p/i")));
        assert!(!star.matches(&r("gcr.io"), None), "one label, not zero");
        assert!(!star.matches(&r("a.b.gcr.io"), None), "one label, not two");
        let ar = pattern("*-docker.pkg.dev").unwrap();
        assert!(ar.matches(&r("us-docker.pkg.dev"), None));
        assert!(ar.matches(&r("europe-west1-docker.pkg.dev"), None));
        assert!(!ar.matches(&r("us-maven.pkg.dev"), None));
        let port = pattern("gcr.io:5000").unwrap();
        assert!(port.matches(&r("gcr.io:5000"), None));
        assert!(!port.matches(&r("gcr.io"), None));
        assert!(!port.matches(&r("gcr.io:443"), None));
        let any_port = pattern("gcr.io").unwrap();
        assert!(any_port.matches(&r("gcr.io:443"), None));
        assert!(!any_port.matches(&r("us.gcr.io"), None));
    }

    #[test]
    fn path_patterns_match_repositories_below_their_path_only() {
        let host = normalise("us-docker.pkg.dev").unwrap();
        let team = pattern("us-docker.pkg.dev/team-a/*").unwrap();
        assert_eq!(team.path(), Some("/team-a/"));
        for under in [
            "/team-a/repo/img:tag",
            "/team-a",
            "/team-a/",
            "/v2/team-a/repo/img/manifests/latest",
            "/v1/team-a/x",
        ] {
            assert!(team.matches(&host, Some(under)), "{under}");
        }
        for other in [
            "/team-ab/x",
            "/team-b/team-a/x",
            "/Team-A/x",
            "/",
            "",
            "/v2/team-b/x",
            "/v3/team-a/x",
        ] {
            assert!(!team.matches(&host, Some(other)), "{other}");
        }
        assert!(
            !team.matches(&host, None),
            "docker passes no path: no path rule applies"
        );
        assert!(!team.matches(
            &normalise("europe-docker.pkg.dev").unwrap(),
            Some("/team-a/x")
        ));
        assert!(team.matches_host(&host));
    }

    #[test]
    fn only_well_formed_service_account_emails_reach_the_url() {
        for good in [
            "builder@my-project.iam.gserviceaccount.com",
            "123456-compute@developer.gserviceaccount.com",
            "my-project@appspot.gserviceaccount.com",
        ] {
            assert!(is_service_account_email(good), "{good}");
        }
        for bad in [
            "sa@p.iam.gserviceaccount.com%2F..",
            "sa%2F..@p.iam.gserviceaccount.com",
            "../x@p.iam.gserviceaccount.com",
            "sa/x@p.iam.gserviceaccount.com",
            "sa@evil.com",
            "sa@gserviceaccount.com.evil.com",
            "sa@p.iam.gserviceaccount.com:generateIdToken",
            "sa@p.iam.gserviceaccount.com?x",
            "sa",
            "@p.iam.gserviceaccount.com",
            "",
        ] {
            assert!(!is_service_account_email(bad), "{bad}");
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
    }

    /// Rule patterns: random text, and Google globs with random text around them.
    fn pattern_text() -> impl Strategy<Value = String> {
        let part = "[a-z0-9-]{0,4}";
        prop_oneof![
            "[a-z0-9.*-]{1,24}",
            (part, part, "[a-z0-9.-]{0,6}", "[a-z0-9.-]{0,6}", 0..6usize).prop_map(
                |(a, b, before, after, shape)| {
                    let core = match shape {
                        0 => format!("{a}*{b}.gcr.io"),
                        1 => format!("{a}*{b}-docker.pkg.dev"),
                        2 => format!("docker.{a}*{b}.rep.pkg.dev"),
                        3 => format!("{a}*{b}-maven.pkg.dev"),
                        4 => format!("{a}*{b}.storage.googleapis.com"),
                        _ => format!("{a}*{b}.pkg.dev"),
                    };
                    format!("{before}{core}{after}")
                }
            ),
        ]
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
        /// A rule never widens the policy: every host an accepted pattern matches (its `*`s
        /// filled with letters and digits) is one `classify` serves.
        #[test]
        fn every_host_a_rule_pattern_matches_is_one_the_policy_serves(
            text in pattern_text(),
            fills in proptest::collection::vec("[a-z0-9]{1,6}", 4),
        ) {
            if let Ok(p) = parse_pattern(&text, &[]) {
                let mut fill = fills.iter();
                let host = p.host.split('.').map(|l| match l.split_once('*') {
                    Some((pre, post)) => format!("{pre}{}{post}", fill.next().unwrap()),
                    None => l.to_owned(),
                }).collect::<Vec<_>>().join(".");
                let r = normalise(&host).unwrap();
                prop_assert!(p.matches(&r, None));
                let uri = HttpsUri { registry: r, path: "/".to_owned() };
                prop_assert_ne!(classify_uri(&uri, &[]), HostClass::Other, "{:?} matches {:?}", text, host);
            }
        }

        /// Choosing a rule reads patterns straight from their text; a pattern that parses
        /// covers exactly the same addresses.
        #[test]
        fn a_pattern_read_as_text_covers_what_the_parsed_pattern_matches(
            text in pattern_text(),
            case in any::<bool>(),
            slash in prop_oneof![Just(""), Just("/"), Just("/*")],
            prefix in proptest::option::of("(/[a-zA-Z0-9._-]{1,5}){1,2}"),
            host in prop_oneof![google_host(), pattern_text()],
            port in proptest::option::of(prop_oneof![Just(443u16), Just(5000u16)]),
            path in proptest::option::of("(/[a-zA-Z0-9._-]{0,5}){0,3}"),
        ) {
            let mut text = if case { text.to_uppercase() } else { text };
            if let Some(prefix) = &prefix {
                text.push_str(prefix);
                text.push_str(slash);
            }
            let host = host.replace('*', "x");
            if let (Ok(p), Some(r)) = (parse_pattern(&text, &[]), normalise(&host)) {
                let r = Registry { port, ..r };
                prop_assert_eq!(pattern_covers(&text, &r, path.as_deref()), p.matches(&r, path.as_deref()));
            }
        }

        #[test]
        fn parse_pattern_never_panics(s in "\\PC{0,40}") {
            let _ = parse_pattern(&s, &[]);
        }
    }
}
