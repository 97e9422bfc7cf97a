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
/// stay inside the host policy: a Google registry host or glob (`gcr.io`, `*.gcr.io`,
/// `*-docker.pkg.dev`, `docker.*.rep.pkg.dev` and narrower ones), or a host declared in
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
/// one [`classify`] does not call [`HostClass::Other`].
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
        if is_google_registry(host) {
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
        // REGION-docker.pkg.dev, the glob within the region.
        [first, "pkg", "dev"] => first
            .strip_suffix("-docker")
            .is_some_and(|region| region.contains('*') && is_glob_label(region)),
        // docker.REGION.rep.pkg.dev.
        ["docker", region, "rep", "pkg", "dev"] => region.contains('*'),
        _ => false,
    };
    if inside {
        Ok(())
    } else {
        Err(
            "a `*` must stay inside gcr.io (`*.gcr.io`), REGION-docker.pkg.dev \
             (`*-docker.pkg.dev`) or docker.REGION.rep.pkg.dev (`docker.*.rep.pkg.dev`)"
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
            "*-maven.pkg.dev",
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
            (part, part, "[a-z0-9.-]{0,6}", "[a-z0-9.-]{0,6}", 0..4usize).prop_map(
                |(a, b, before, after, shape)| {
                    let core = match shape {
                        0 => format!("{a}*{b}.gcr.io"),
                        1 => format!("{a}*{b}-docker.pkg.dev"),
                        2 => format!("docker.{a}*{b}.rep.pkg.dev"),
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
                prop_assert_ne!(classify(&r, &[]), HostClass::Other, "{:?} matches {:?}", text, host);
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
