//! Getting a Google access token: the cache first, then the sources, one process at a time.
//!
//! The fast path is a straight line: probe the first present source (environment and `stat`
//! only), read its cache entry, return it if it has more than five minutes left. Only when
//! that fails does this module take the cache lock, check again (another process may have just
//! minted), and try the sources in order within the overall deadline.
//!
//! A token minted by a later source, because the earlier ones failed (a revoked refresh token,
//! a gcloud directory without gcloud), is cached with the identities of those earlier sources.
//! Lookups walk the sources in order and serve such a token only while each earlier source
//! still has the identity it had when it failed: when the user fixes it (a new credentials
//! file, another gcloud account), its key changes and it is tried again first.
//!
//! If every source fails, a cached token with a little life left is served with a warning
//! rather than failing the pull.
//!
//! What the rest of the crate may use is re-exported or defined here: a token for the
//! configured sources ([`google_token`]), the background refresh ([`refresh_ahead`]), whether
//! a token is ours ([`issued_by_us`]), the kubelet's pod-token exchange
//! ([`exchange_pod_token`]), the user's default project ([`default_project`]) and which
//! sources are present ([`source_states`]). The sources, the cache and the credential files
//! stay private to this folder (`tests/architecture.rs` checks it).

mod access;
mod aws;
mod cache;
mod credentials;
mod executable;
mod federation;
mod gcloud;
mod metadata;
mod oauth;
mod project;
mod sources;

use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::net::http::MintContext;
use crate::settings::{Settings, SourceKind};
use crate::util::secret::Secret;
use access::STALE_MARGIN_SECS;
pub(crate) use access::{FRESH_MARGIN_SECS, Token, now_secs};
use cache::Cache;
pub(crate) use federation::{PodExchange, exchange_pod_token};
pub(crate) use oauth::{DEFAULT_IAM_ENDPOINT, DEFAULT_STS_URL, DEFAULT_TOKEN_URI, google_error};
pub(crate) use project::Project;
use sources::{Candidate, Minted};

const PROXY_ADVICE: &str = "check HTTPS_PROXY and NO_PROXY (the proxy's URL, user and password); \
     `docker-credential-gcp doctor` shows which requests use which proxy";

pub(crate) enum Outcome {
    Token(Token),
    /// No source is configured on this machine at all.
    NoSource,
}

pub(crate) fn google_token(settings: &Settings) -> Result<Outcome> {
    let kinds = &settings.token_sources.value;
    let cache = settings.effective_cache_dir().map(Cache::new);
    // The fast path probes lazily: when the first source's token is cached, the later
    // sources are never looked at.
    if let Some(cache) = &cache
        && let Some(entry) = cached(cache, sources::present(kinds), |t| t.is_fresh(now_secs()))
    {
        if refresh_is_due(&entry, settings.refresh_ahead.value, now_secs()) {
            refresh_in_background(cache, &entry.token);
        }
        return Ok(Outcome::Token(entry.token));
    }
    // From here on, every source is probed once.
    let candidates: Vec<Candidate> = sources::present(kinds).collect();
    if candidates.is_empty() {
        return Ok(Outcome::NoSource);
    }
    log::debug!("no fresh cached token");
    let started = Instant::now();
    let deadline = started + settings.timeout.value;
    // Another process minting normally finishes in milliseconds. One that is stuck may hold
    // the lock for at most half the time; then this process mints on its own.
    let lock_deadline = started + settings.timeout.value / 2;
    let _lock = match cache.as_ref().map(|c| c.lock(lock_deadline)) {
        Some(Err(e)) => {
            log::warn!("minting without the cache lock: {e:#}");
            None
        }
        other => other.and_then(Result::ok),
    };
    if let Some(cache) = &cache
        && let Some(entry) = cached(cache, candidates.iter().cloned(), |t| {
            t.is_fresh(now_secs())
        })
    {
        log::debug!("another process refreshed the token meanwhile");
        return Ok(Outcome::Token(entry.token));
    }
    mint_in_order(
        &candidates,
        cache.as_ref(),
        deadline,
        settings.ca_file.value.clone(),
    )
}

/// A token minted less than this long ago is not refreshed ahead, so a source that only hands
/// out short-lived tokens does not make every `get` start a refresh.
const MIN_AGE_FOR_REFRESH_SECS: u64 = 60;

/// Whether a cached, still fresh token is close enough to its expiry to be refreshed in the
/// background: less than `window` left (and the window on), and not minted a moment ago.
fn refresh_is_due(entry: &cache::Entry, window: std::time::Duration, now: u64) -> bool {
    !window.is_zero()
        && entry.token.remaining_secs(now) < window.as_secs()
        && now.saturating_sub(entry.minted_at) >= MIN_AGE_FOR_REFRESH_SECS
}

/// Starts one detached `docker-credential-gcp refresh-ahead` unless another process holds the
/// minting lock (then a refresh, or a mint, is already under way). The caller answers at once:
/// the child has its own session and no stdin, stdout or stderr, so docker's pipe ends when
/// the caller exits.
fn refresh_in_background(cache: &Cache, token: &Token) {
    match cache.try_lock() {
        Ok(Some(lock)) => drop(lock),
        Ok(None) => return,
        Err(e) => {
            log::debug!("not refreshing ahead: {e:#}");
            return;
        }
    }
    let expires = token.expires_at.to_string();
    match crate::util::process::spawn_detached(&["refresh-ahead", "--after", &expires]) {
        Ok(()) => log::debug!("refreshing the token in the background"),
        Err(e) => log::warn!("could not start a background refresh: {e:#}"),
    }
}

/// The background refresh (hidden `refresh-ahead` subcommand): under the minting lock, and
/// unless another process refreshed since the token that expires at `after` was served, mint
/// as a cold `get` would and cache the result. Failures go to the log file only.
pub(crate) fn refresh_ahead(settings: &Settings, after: u64) -> Result<()> {
    let Some(cache) = settings.effective_cache_dir().map(Cache::new) else {
        return Ok(());
    };
    let Some(_lock) = cache.try_lock()? else {
        log::debug!("another process is minting; no background refresh");
        return Ok(());
    };
    let candidates: Vec<Candidate> = sources::present(&settings.token_sources.value).collect();
    if let Some(entry) = cached(&cache, candidates.iter().cloned(), |t| {
        t.is_fresh(now_secs())
    }) && entry.token.expires_at > after
    {
        log::debug!("already refreshed by another process");
        return Ok(());
    }
    let deadline = Instant::now() + settings.timeout.value;
    match mint_in_order(
        &candidates,
        Some(&cache),
        deadline,
        settings.ca_file.value.clone(),
    )? {
        Outcome::Token(t) => log::info!(
            "refreshed ahead: the new token expires in {} s",
            t.remaining_secs(now_secs())
        ),
        Outcome::NoSource => log::info!("refresh ahead: no token source is present any more"),
    }
    Ok(())
}

/// Whether `secret` is a token this helper issued for the current identity (it is in the
/// cache, as the last `get` answered it).
pub(crate) fn issued_by_us(settings: &Settings, secret: &Secret<String>) -> bool {
    let Some(dir) = settings.effective_cache_dir() else {
        return false;
    };
    let cache = Cache::new(dir);
    cached(
        &cache,
        sources::present(&settings.token_sources.value),
        |t| t.secret.expose() == secret.expose(),
    )
    .is_some()
}

/// Each configured source in order, with what it is when present (a path, a host) or `None`
/// when absent; environment and `stat` only (for `config` and `doctor`).
pub(crate) fn source_states(settings: &Settings) -> Vec<(SourceKind, Option<String>)> {
    settings
        .token_sources
        .value
        .iter()
        .map(|kind| (*kind, sources::probe(*kind).map(|c| c.describe())))
        .collect()
}

/// The user's default project (gcloud's `core/project`, the ADC file, the metadata server),
/// for the set-up commands; `ctx` carries the deadline and the HTTP stack.
pub(crate) fn default_project(settings: &Settings, ctx: &mut MintContext) -> Result<Project> {
    project::find(settings, ctx)
}

/// Parses and validates a credentials file the way a mint does, without minting (the fuzz
/// entry point).
#[cfg(fuzzing)]
pub(crate) fn check_credentials_file(bytes: &[u8]) -> Result<()> {
    credentials::CredentialFile::parse(bytes).and_then(|f| f.validate())
}

/// The first cached entry, walking the present sources in order, whose token `usable` accepts
/// and that belongs to the sources' current state: a later source's token counts only if every
/// earlier source failed, with the identity it has now, when that token was minted.
fn cached(
    cache: &Cache,
    candidates: impl IntoIterator<Item = Candidate>,
    usable: impl Fn(&Token) -> bool,
) -> Option<cache::Entry> {
    let mut earlier: Vec<String> = Vec::new();
    for candidate in candidates {
        if let Some(entry) = cache.read(&candidate.key)
            && usable(&entry.token)
            && earlier.iter().all(|d| entry.shadowed.contains(d))
        {
            if !earlier.is_empty() {
                log::debug!(
                    "serving the cached token of {}, minted when the sources before it failed",
                    candidate.describe()
                );
            }
            return Some(entry);
        }
        earlier.push(cache::digest(&candidate.key));
    }
    None
}

fn mint_in_order(
    candidates: &[Candidate],
    cache: Option<&Cache>,
    deadline: Instant,
    ca_file: Option<std::path::PathBuf>,
) -> Result<Outcome> {
    let mut ctx = MintContext::new(deadline, ca_file);
    let mut failures: Vec<(Candidate, anyhow::Error, bool)> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    for candidate in candidates {
        log::info!("minting a token with {}", candidate.describe());
        let minted = candidate.mint(&mut ctx);
        // A proxy in the way is not the credentials' fault (see net::connect).
        let at_proxy = ctx.take_proxy_failure();
        match minted {
            Ok(Minted::Token(token)) => {
                if let Some(cache) = cache
                    && let Err(e) = cache.write(&candidate.key, &token, &tried)
                {
                    log::warn!("could not cache the token: {e:#}");
                }
                return Ok(Outcome::Token(token));
            }
            Ok(Minted::Absent) => tried.push(candidate.key.clone()),
            Err(e) => {
                log::warn!("{} failed: {e:#}", candidate.kind.name());
                tried.push(candidate.key.clone());
                failures.push((candidate.clone(), e, at_proxy));
            }
        }
    }
    if let Some(stale) = cache.and_then(|c| {
        cached(c, candidates.iter().cloned(), |t| {
            t.remaining_secs(now_secs()) > STALE_MARGIN_SECS
        })
        .map(|e| e.token)
    }) {
        let left = stale.remaining_secs(now_secs());
        log::warn!("serving the cached token, which expires in {left} s, because minting failed");
        return Ok(Outcome::Token(stale));
    }
    if failures.is_empty() {
        return Ok(Outcome::NoSource);
    }
    let detail: Vec<String> = failures
        .iter()
        .map(|(c, e, at_proxy)| {
            let advice = if *at_proxy { PROXY_ADVICE } else { c.advice() };
            format!(
                "{} ({}): {e:#} (to fix: {advice})",
                c.kind.name(),
                c.describe()
            )
        })
        .collect();
    Err(anyhow!(
        "no Google access token could be obtained; {}",
        detail.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(expires_at: u64, minted_at: u64) -> cache::Entry {
        cache::Entry {
            token: Token {
                secret: Secret::new("t".to_owned()),
                expires_at,
            },
            shadowed: Vec::new(),
            minted_at,
        }
    }

    #[test]
    fn a_refresh_is_due_inside_the_window_for_a_token_not_minted_a_moment_ago() {
        let now = 1_000_000;
        let window = Duration::from_secs(15 * 60);
        assert!(refresh_is_due(&entry(now + 600, now - 3000), window, now));
        assert!(
            !refresh_is_due(&entry(now + 1000, now - 3000), window, now),
            "outside the window"
        );
        assert!(
            !refresh_is_due(&entry(now + 600, now - 10), window, now),
            "just minted"
        );
        assert!(
            refresh_is_due(&entry(now + 600, 0), window, now),
            "older entries"
        );
        assert!(
            !refresh_is_due(&entry(now + 600, now - 3000), Duration::ZERO, now),
            "off"
        );
    }
}
