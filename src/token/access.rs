//! An access token and the clock it is judged by.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::secret::Secret;

/// A token is served from the cache while more than this many seconds remain.
pub(crate) const FRESH_MARGIN_SECS: u64 = 300;
/// When minting fails, a cached token with more than this many seconds left is still served.
pub(crate) const STALE_MARGIN_SECS: u64 = 10;
/// No Google access token lives longer than 12 hours (the most `generateAccessToken` grants
/// with an organisation policy that extends it); a cache entry claiming more is not believed.
pub(crate) const MAX_LIFETIME_SECS: u64 = 12 * 3600;

/// An OAuth access token and when it expires.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) secret: Secret<String>,
    /// Seconds since the Unix epoch.
    pub(crate) expires_at: u64,
}

impl Token {
    pub(crate) fn remaining_secs(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    pub(crate) fn is_fresh(&self, now: u64) -> bool {
        self.remaining_secs(now) > FRESH_MARGIN_SECS
    }

    /// The second from which the cache no longer serves this token and a `get` mints anew.
    pub(crate) fn fresh_until(&self) -> u64 {
        self.expires_at.saturating_sub(FRESH_MARGIN_SECS)
    }

    /// Whether the expiry could be a real token's: not further ahead than any token lives.
    pub(crate) fn is_plausible(&self, now: u64) -> bool {
        self.expires_at <= now.saturating_add(MAX_LIFETIME_SECS + 60)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: u64) -> Token {
        Token {
            secret: Secret::new("t".to_owned()),
            expires_at,
        }
    }

    #[test]
    fn freshness_uses_the_five_minute_margin() {
        let t = token(1000);
        assert!(t.is_fresh(1000 - 301));
        assert!(!t.is_fresh(1000 - 300));
        assert_eq!(t.fresh_until(), 1000 - 300);
        assert!(!t.is_fresh(t.fresh_until()));
        assert_eq!(t.remaining_secs(2000), 0);
    }

    #[test]
    fn expiries_beyond_any_token_lifetime_are_implausible() {
        let now = 1_000_000;
        assert!(token(now + 3600).is_plausible(now));
        assert!(token(now + 12 * 3600).is_plausible(now));
        assert!(!token(now + 13 * 3600).is_plausible(now));
        assert!(!token(u64::MAX).is_plausible(now));
    }
}
