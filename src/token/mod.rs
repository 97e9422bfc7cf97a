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

pub(crate) mod access;
mod aws;
pub(crate) mod cache;
mod connect;
pub(crate) mod credentials;
mod executable;
pub(crate) mod federation;
mod gcloud;
pub(crate) mod http;
mod metadata;
pub(crate) mod oauth;
pub(crate) mod proxy;
pub(crate) mod sources;
pub(crate) mod tls;

use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::settings::{Settings, SourceKind};
use crate::util::secret::Secret;
use access::STALE_MARGIN_SECS;
pub(crate) use access::{Token, now_secs};
use cache::Cache;
use http::MintContext;
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
    if let Some(cache) = &cache
        && let Some(token) = cached(cache, kinds, |t| t.is_fresh(now_secs()))
    {
        return Ok(Outcome::Token(token));
    }
    if sources::present(kinds).next().is_none() {
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
        && let Some(token) = cached(cache, kinds, |t| t.is_fresh(now_secs()))
    {
        log::debug!("another process refreshed the token meanwhile");
        return Ok(Outcome::Token(token));
    }
    mint_in_order(
        kinds,
        cache.as_ref(),
        deadline,
        settings.ca_file.value.clone(),
    )
}

/// Whether `secret` is a token this helper issued for the current identity (it is in the
/// cache, as the last `get` answered it).
pub(crate) fn issued_by_us(settings: &Settings, secret: &Secret<String>) -> bool {
    let Some(dir) = settings.effective_cache_dir() else {
        return false;
    };
    let cache = Cache::new(dir);
    cached(&cache, &settings.token_sources.value, |t| {
        t.secret.expose() == secret.expose()
    })
    .is_some()
}

/// The first cached token, walking the present sources in order, that `usable` accepts and
/// that belongs to the sources' current state: a later source's token counts only if every
/// earlier source failed, with the identity it has now, when that token was minted.
fn cached(cache: &Cache, kinds: &[SourceKind], usable: impl Fn(&Token) -> bool) -> Option<Token> {
    let mut earlier: Vec<String> = Vec::new();
    for candidate in sources::present(kinds) {
        if let Some(entry) = cache.read(&candidate.key)
            && usable(&entry.token)
            && earlier.iter().all(|d| entry.shadowed.contains(d))
        {
            if !earlier.is_empty() {
                log::debug!(
                    "serving the cached token of {}, minted when the sources before it failed",
                    candidate.describe
                );
            }
            return Some(entry.token);
        }
        earlier.push(cache::digest(&candidate.key));
    }
    None
}

fn mint_in_order(
    kinds: &[SourceKind],
    cache: Option<&Cache>,
    deadline: Instant,
    ca_file: Option<std::path::PathBuf>,
) -> Result<Outcome> {
    let mut ctx = MintContext::new(deadline, ca_file);
    let mut failures: Vec<(Candidate, anyhow::Error)> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    for candidate in sources::present(kinds) {
        log::info!("minting a token with {}", candidate.describe);
        match candidate.mint(&mut ctx) {
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
                failures.push((candidate, e));
            }
        }
    }
    if let Some(stale) = cache.and_then(|c| {
        cached(c, kinds, |t| {
            t.remaining_secs(now_secs()) > STALE_MARGIN_SECS
        })
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
        .map(|(c, e)| {
            let text = format!("{e:#}");
            // A proxy in the way is not the credentials' fault (see token::connect).
            let advice = if text.contains("through proxy ") {
                PROXY_ADVICE
            } else {
                c.advice()
            };
            format!(
                "{} ({}): {text} (to fix: {advice})",
                c.kind.name(),
                c.describe
            )
        })
        .collect();
    Err(anyhow!(
        "no Google access token could be obtained; {}",
        detail.join("; ")
    ))
}
