//! An access token and the clock it is judged by.

use std::time::{SystemTime, UNIX_EPOCH};

use super::failure::{Failure, FailureKind};
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
    /// A token an endpoint just issued, valid until `expires_at` (seconds since the epoch;
    /// negative for a date before 1970). Every source makes its tokens here, so they are
    /// judged alike: refused when the value is not a plain token (empty, or with spaces or
    /// control characters: it goes into HTTP headers and shell commands) or when it expires
    /// within [`STALE_MARGIN_SECS`]; an expiry beyond any token's life is cut to
    /// [`MAX_LIFETIME_SECS`], so the cache does not distrust it and mint again on every `get`.
    pub(crate) fn issued(
        secret: Secret<String>,
        expires_at: i64,
        now: u64,
    ) -> Result<Token, Failure> {
        if !is_plain_token(secret.expose()) {
            return Err(Failure::new(
                FailureKind::Unreachable,
                "the access token in the answer is empty or has spaces or control characters; refused",
            ));
        }
        let left = expires_at.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
        if left <= STALE_MARGIN_SECS as i64 {
            return Err(Failure::new(
                FailureKind::Unreachable,
                format!("the access token in the answer expires in {left} s; refused"),
            ));
        }
        let left = (left as u64).min(MAX_LIFETIME_SECS);
        Ok(Token {
            secret,
            expires_at: now.saturating_add(left),
        })
    }

    /// [`Token::issued`] for an OAuth `expires_in` (seconds from now).
    pub(crate) fn issued_for(secret: Secret<String>, expires_in: i64) -> Result<Token, Failure> {
        let now = now_secs();
        let at = i64::try_from(now)
            .unwrap_or(i64::MAX)
            .saturating_add(expires_in);
        Token::issued(secret, at, now)
    }

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

/// Printable ASCII without spaces: every Google token (`ya29.…`, a JWT) is, and a header
/// value or a shell word made from anything else could carry more than a token.
pub(crate) fn is_plain_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
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
    fn issued_tokens_are_judged_alike_on_every_path() {
        let now = 1_000_000;
        let s = |v: &str| Secret::new(v.to_owned());
        let t = Token::issued(s("ya29.a-b_c"), now as i64 + 3599, now).unwrap();
        assert_eq!(t.expires_at, now + 3599);
        for (value, at) in [
            ("ya29.x", now as i64 + 10),
            ("ya29.x", now as i64),
            ("ya29.x", now as i64 - 3600),
            ("ya29.x", -5),
            ("ya29.x", i64::MIN),
            ("", now as i64 + 3600),
            ("ya29.x\r\nX-Injected: 1", now as i64 + 3600),
            ("ya29 x", now as i64 + 3600),
            ("ya29.\u{7f}", now as i64 + 3600),
            ("ya29.é", now as i64 + 3600),
        ] {
            let e = Token::issued(s(value), at, now).unwrap_err();
            assert!(!e.to_string().contains("ya29"), "{e}");
        }
        let day = Token::issued(s("t"), now as i64 + 86_400, now).unwrap();
        assert_eq!(
            day.expires_at,
            now + MAX_LIFETIME_SECS,
            "cut to what the cache believes"
        );
        assert!(day.is_plausible(now));
        let far = Token::issued(s("t"), i64::MAX, now).unwrap();
        assert!(far.is_plausible(now));
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
