//! Getting a Google access token: the cache first, then the sources, one process at a time.
//!
//! The fast path is a straight line: probe the first present source (environment and `stat`
//! only), read its cache entry, return it if it has more than five minutes left. Only when
//! that fails does this module look at remembered failures, take the minting lock (or wait
//! for the process that holds it, watching for its token or its failure), and try the
//! sources in order within the overall deadline.
//!
//! A token minted by a later source, because the earlier ones failed (a revoked refresh token,
//! a gcloud directory without gcloud), is cached with the identities of those earlier sources.
//! Lookups walk the sources in order and serve such a token only while each earlier source
//! still has the identity it had when it failed: when the user fixes it (a new credentials
//! file, another gcloud account), its key changes and it is tried again first.
//!
//! A failed source is remembered for a short time under its identity ([`cache::Cache::remember`]),
//! so a sweep of `get`s against a hanging endpoint costs one deadline, not one per call. If
//! every source fails, a cached token with a little life left is served rather than failing
//! the pull; otherwise the caller gets a [`NoToken`] whose kind decides its answer.
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
mod failure;
mod federation;
mod gcloud;
mod metadata;
mod oauth;
mod project;
mod sources;

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::net::http::MintContext;
use crate::settings::{Settings, SourceKind};
use crate::util::secret::Secret;
use access::STALE_MARGIN_SECS;
pub(crate) use access::{FRESH_MARGIN_SECS, Token, now_secs};
use cache::Cache;
pub(crate) use failure::FailureKind;
use failure::SourceFailure;
pub(crate) use federation::{PodExchange, exchange_pod_token};
pub(crate) use oauth::{DEFAULT_IAM_ENDPOINT, DEFAULT_STS_URL, DEFAULT_TOKEN_URI, google_error};
pub(crate) use project::Project;
use sources::Candidate;

/// No token could be had: every present source failed (or none is present). The kind, the
/// worst of the sources' kinds, decides what docker is answered.
#[derive(Debug)]
pub(crate) struct NoToken {
    pub(crate) kind: FailureKind,
    /// Each source's failure, in the order they were tried (empty: no source is present).
    pub(crate) failures: Vec<SourceFailure>,
    /// The source names the settings list, for the message when none is present.
    sources: Vec<&'static str>,
}

impl NoToken {
    fn nothing_configured(settings: &Settings) -> NoToken {
        NoToken {
            kind: FailureKind::NoCredentials,
            failures: Vec::new(),
            sources: settings
                .token_sources
                .value
                .iter()
                .map(|k| k.name())
                .collect(),
        }
    }

    fn from_failures(failures: Vec<SourceFailure>) -> NoToken {
        let kind = failures
            .iter()
            .map(|f| f.kind)
            .reduce(FailureKind::worse)
            .unwrap_or(FailureKind::NoCredentials);
        NoToken {
            kind,
            failures,
            sources: Vec::new(),
        }
    }

    /// One line for stderr when the answer is "not found": what is missing and the fix.
    pub(crate) fn hint(&self) -> String {
        if self.failures.is_empty() {
            return format!(
                "no Google credentials on this machine (sources tried: {}); run `gcloud auth login` \
                 or set GOOGLE_APPLICATION_CREDENTIALS",
                self.sources.join(", ")
            );
        }
        let first = self
            .failures
            .iter()
            .find(|f| f.kind == self.kind)
            .unwrap_or(&self.failures[0]);
        format!(
            "{}: {} ({}); to fix: {}",
            first.source, first.message, first.kind, first.fix
        )
    }
}

impl fmt::Display for NoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return f.write_str(&self.hint());
        }
        f.write_str("no Google access token could be obtained")?;
        for failure in &self.failures {
            write!(
                f,
                "; {}: {} (to fix: {})",
                failure.source, failure.message, failure.fix
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NoToken {}

pub(crate) fn google_token(settings: &Settings) -> Result<Token, NoToken> {
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
        return Ok(entry.token);
    }
    // From here on, every source is probed once.
    let candidates: Vec<Candidate> = sources::present(kinds).collect();
    if candidates.is_empty() {
        return Err(NoToken::nothing_configured(settings));
    }
    log::debug!("no fresh cached token");
    let deadline = Instant::now() + settings.timeout.value;
    let mint = Mint {
        candidates: &candidates,
        cache: cache.as_ref(),
        remember_for: settings.remember_failures.value,
        deadline,
        ca_file: settings.ca_file.value.clone(),
    };
    let Some(cache) = &cache else {
        return mint.run();
    };
    if let Some(answer) = mint.remembered() {
        return answer;
    }
    match wait_for_turn(cache, &mint) {
        Turn::Mine(_lock) => {
            // Another process may have finished just before the lock came free.
            if let Some(entry) = cached(cache, candidates.iter().cloned(), |t| {
                t.is_fresh(now_secs())
            }) {
                log::debug!("another process refreshed the token meanwhile");
                return Ok(entry.token);
            }
            if let Some(answer) = mint.remembered() {
                return answer;
            }
            mint.run()
        }
        Turn::Done(answer) => answer,
        Turn::Alone => mint.run(),
    }
}

/// Whose turn it is to mint, as [`wait_for_turn`] found it.
enum Turn {
    /// This process holds the minting lock.
    Mine(crate::util::files::Lock),
    /// Another process minted (a token) or failed (remembered) while this one waited.
    Done(Result<Token, NoToken>),
    /// No lock to be had (an unusable cache directory, a holder past its own deadline): mint
    /// without it.
    Alone,
}

/// How often a process waiting for another's mint looks at the cache, at most.
const WAIT_POLL: Duration = Duration::from_millis(50);
/// A lock holder still at work this long after its own deadline has stopped (a suspended
/// `docker pull`, SIGSTOP): the others stop waiting for it.
const HOLDER_GRACE: Duration = Duration::from_secs(1);
/// How long a holder must look stuck before the others stop waiting for it.
const STUCK_CONFIRM: Duration = Duration::from_millis(200);

/// Takes the minting lock, or waits for the process that holds it: as soon as that one's
/// token or remembered failure is in the cache, this process answers with it, so a stampede of
/// cold `get`s makes one request however slow the endpoint is.
fn wait_for_turn(cache: &Cache, mint: &Mint<'_>) -> Turn {
    let mut poll = Duration::from_millis(5);
    let mut stuck_since: Option<Instant> = None;
    let half_time = Instant::now() + mint.deadline.saturating_duration_since(Instant::now()) / 2;
    loop {
        match cache.try_lock() {
            Ok(Some(lock)) => {
                cache.announce_holder(mint.deadline);
                return Turn::Mine(lock);
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("minting without the cache lock: {e:#}");
                return Turn::Alone;
            }
        }
        // The holder may have started a moment after this process: its answer, due by its
        // own deadline, is worth waiting a little past this process's.
        let now = Instant::now();
        let holder_due = cache
            .holder_time_left()
            .map_or(mint.deadline, |left| now + left + WAIT_POLL);
        let limit = holder_due.clamp(mint.deadline, mint.deadline + HOLDER_GRACE);
        if now >= limit {
            return Turn::Done(Err(NoToken::from_failures(vec![SourceFailure::waited()])));
        }
        std::thread::sleep(poll.min(limit - now));
        poll = (poll * 2).min(WAIT_POLL);
        if let Some(entry) = cached(cache, mint.candidates.iter().cloned(), |t| {
            t.is_fresh(now_secs())
        }) {
            log::debug!("served the token another process just minted");
            return Turn::Done(Ok(entry.token));
        }
        if let Some(answer) = mint.remembered() {
            log::debug!("another process just failed to mint; answering with its failure");
            return Turn::Done(answer);
        }
        // A new holder announces itself a moment after taking the lock; until then the
        // record may still be its predecessor's, so a stuck holder must be seen twice. A
        // holder that never says (an older version) gets half of this process's time.
        let unannounced_too_long = Instant::now() >= half_time;
        if cache.holder_is_stuck(HOLDER_GRACE, unannounced_too_long) {
            let since = *stuck_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STUCK_CONFIRM {
                log::warn!(
                    "minting without the cache lock: the process holding it is past its deadline"
                );
                return Turn::Alone;
            }
        } else {
            stuck_since = None;
        }
    }
}

/// One mint: the sources to try, where to cache, how long to remember failures.
struct Mint<'a> {
    candidates: &'a [Candidate],
    cache: Option<&'a Cache>,
    remember_for: Duration,
    deadline: Instant,
    ca_file: Option<std::path::PathBuf>,
}

impl Mint<'_> {
    /// The answer from remembered failures alone, when every source failed a moment ago: a
    /// token still good enough to serve, or the failures. `None` when some source must be
    /// tried again.
    fn remembered(&self) -> Option<Result<Token, NoToken>> {
        let cache = self.cache?;
        let failures: Vec<SourceFailure> = self
            .candidates
            .iter()
            .map(|c| cache.recall(&c.key).map(|r| c.remembered(r)))
            .collect::<Option<_>>()?;
        log::debug!("every source failed within the last few seconds; not trying again yet");
        Some(self.stale().ok_or_else(|| NoToken::from_failures(failures)))
    }

    /// A cached token with a little life left, for when minting failed.
    fn stale(&self) -> Option<Token> {
        let cache = self.cache?;
        let token = cached(cache, self.candidates.iter().cloned(), |t| {
            t.remaining_secs(now_secs()) > STALE_MARGIN_SECS
        })?
        .token;
        let left = token.remaining_secs(now_secs());
        log::warn!("serving the cached token, which expires in {left} s, because minting failed");
        Some(token)
    }

    /// Tries the sources in order (skipping those that failed a moment ago) and caches the
    /// first token; remembers each failure.
    fn run(&self) -> Result<Token, NoToken> {
        let mut ctx = MintContext::new(self.deadline, self.ca_file.clone());
        let mut failures: Vec<SourceFailure> = Vec::new();
        let mut tried: Vec<String> = Vec::new();
        for candidate in self.candidates {
            if let Some(recalled) = self.cache.and_then(|c| c.recall(&candidate.key)) {
                log::debug!("{} failed a moment ago; skipping it", candidate.describe());
                failures.push(candidate.remembered(recalled));
                tried.push(candidate.key.clone());
                continue;
            }
            log::info!("minting a token with {}", candidate.describe());
            match candidate.mint(&mut ctx) {
                Ok(token) => {
                    if let Some(cache) = self.cache {
                        if let Err(e) = cache.write(&candidate.key, &token, &tried) {
                            log::warn!("could not cache the token: {e:#}");
                        }
                        cache.forget(&candidate.key);
                    }
                    return Ok(token);
                }
                Err(failure) => {
                    // A source that is simply not signed in is normal (the next one may
                    // serve); one that is broken is worth a warning even when another serves.
                    let level = if failure.kind.is_absent() {
                        log::Level::Info
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        level,
                        "{} failed ({}): {}",
                        failure.source,
                        failure.kind,
                        failure.message
                    );
                    if let Some(cache) = self.cache
                        && !self.remember_for.is_zero()
                        && let Err(e) = cache.remember(&candidate.key, &failure, self.remember_for)
                    {
                        log::debug!("could not remember the failure: {e:#}");
                    }
                    tried.push(candidate.key.clone());
                    failures.push(failure);
                }
            }
        }
        match self.stale() {
            Some(token) => Ok(token),
            None => Err(NoToken::from_failures(failures)),
        }
    }
}

/// A token minted less than this long ago is not refreshed ahead, so a source that only hands
/// out short-lived tokens does not make every `get` start a refresh.
const MIN_AGE_FOR_REFRESH_SECS: u64 = 60;

/// Whether a cached, still fresh token is close enough to its expiry to be refreshed in the
/// background: less than `window` left (and the window on), and not minted a moment ago.
fn refresh_is_due(entry: &cache::Entry, window: Duration, now: u64) -> bool {
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
    cache.announce_holder(deadline);
    let mint = Mint {
        candidates: &candidates,
        cache: Some(&cache),
        remember_for: settings.remember_failures.value,
        deadline,
        ca_file: settings.ca_file.value.clone(),
    };
    match mint.run() {
        Ok(t) => log::info!(
            "refreshed ahead: the new token expires in {} s",
            t.remaining_secs(now_secs())
        ),
        Err(e) => log::info!("refresh ahead failed: {e}"),
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
