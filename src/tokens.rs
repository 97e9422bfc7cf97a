//! Obtaining a Google access token: the cache first, then the sources, one process at a time.
//!
//! The fast path is a straight line: find the first present source (environment and `stat`
//! only), read its cache entry, return it if it has more than five minutes left. Only when that
//! fails does this module take the cache lock, check again (another process may have just
//! minted), and try the sources in order within the overall deadline. If every source fails, a
//! cached token with a little life left is served with a warning rather than failing the pull.

use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::cache::{Cache, STALE_MARGIN_SECS, Token, now_secs};
use crate::settings::{Settings, SourceKind};
use crate::sources::{self, Candidate, MintContext, Minted};

pub enum Outcome {
    Token(Token),
    /// No source is configured on this machine at all.
    NoSource,
}

pub fn google_token(settings: &Settings) -> Result<Outcome> {
    let kinds = &settings.token_sources.value;
    let Some(first) = first_candidate(kinds) else {
        return Ok(Outcome::NoSource);
    };
    let cache = settings.effective_cache_dir().map(Cache::new);
    if let Some(t) = fresh(cache.as_ref(), &first) {
        return Ok(Outcome::Token(t));
    }
    crate::debug!("no fresh cached token for {}", first.describe);
    let started = Instant::now();
    let deadline = started + settings.timeout.value;
    // Another process minting normally finishes in milliseconds. One that is stuck may hold
    // the lock for at most half the time; then this process mints on its own.
    let lock_deadline = started + settings.timeout.value / 2;
    let _lock = match cache.as_ref().map(|c| c.lock(lock_deadline)) {
        Some(Err(e)) => {
            crate::warn!("minting without the cache lock: {e:#}");
            None
        }
        other => other.and_then(Result::ok),
    };
    if let Some(t) = fresh(cache.as_ref(), &first) {
        crate::debug!("another process refreshed the token meanwhile");
        return Ok(Outcome::Token(t));
    }
    mint_in_order(kinds, cache.as_ref(), &first, deadline)
}

fn first_candidate(kinds: &[SourceKind]) -> Option<Candidate> {
    kinds.iter().find_map(|k| sources::probe(*k))
}

fn fresh(cache: Option<&Cache>, candidate: &Candidate) -> Option<Token> {
    cache?
        .read(&candidate.key)
        .filter(|t| t.is_fresh(now_secs()))
}

fn mint_in_order(
    kinds: &[SourceKind],
    cache: Option<&Cache>,
    first: &Candidate,
    deadline: Instant,
) -> Result<Outcome> {
    let mut ctx = MintContext::new(deadline);
    let mut failures: Vec<(Candidate, anyhow::Error)> = Vec::new();
    for candidate in kinds.iter().filter_map(|k| sources::probe(*k)) {
        crate::info!("minting a token with {}", candidate.describe);
        match candidate.mint(&mut ctx) {
            Ok(Minted::Token(token)) => {
                if let Some(cache) = cache
                    && let Err(e) = cache.write(&candidate.key, &token)
                {
                    crate::warn!("could not cache the token: {e:#}");
                }
                return Ok(Outcome::Token(token));
            }
            Ok(Minted::Absent) => continue,
            Err(e) => {
                crate::warn!("{} failed: {e:#}", candidate.kind.name());
                failures.push((candidate, e));
            }
        }
    }
    if let Some(stale) = cache.and_then(|c| c.read(&first.key)) {
        let left = stale.remaining_secs(now_secs());
        if left > STALE_MARGIN_SECS {
            crate::warn!(
                "serving the cached token, which expires in {left} s, because minting failed"
            );
            return Ok(Outcome::Token(stale));
        }
    }
    if failures.is_empty() {
        return Ok(Outcome::NoSource);
    }
    let detail: Vec<String> = failures
        .iter()
        .map(|(c, e)| {
            format!(
                "{} ({}): {e:#} (to fix: {})",
                c.kind.name(),
                c.describe,
                c.advice()
            )
        })
        .collect();
    Err(anyhow!(
        "no Google access token could be obtained; {}",
        detail.join("; ")
    ))
}
