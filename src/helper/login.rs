//! What a `docker login` credential for a Google host is, and how long it may be served.
//!
//! Google registries take three kinds of password: an OAuth access token (user name
//! `oauth2accesstoken`, or a `_token`-style name other Google helpers and providers use), a
//! service account key (`_json_key`, `_json_key_base64`), or anything else a proxy in front of
//! them understands. An access token lives at most an hour, so a stored one is served for at
//! most [`ACCESS_TOKEN_MAX_AGE_SECS`] after it was stored (less when its expiry is known) and
//! then removed; the other kinds are served until `docker logout`.

use super::store::Login;

/// How long a stored access token is served: Google access tokens live at most an hour
/// unless an organisation policy extends impersonated ones.
pub(crate) const ACCESS_TOKEN_MAX_AGE_SECS: u64 = 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    AccessToken,
    Key,
    Other,
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::AccessToken => "access token",
            Kind::Key => "service account key",
            Kind::Other => "other",
        }
    }
}

/// The kind of secret a registry user name announces.
pub(crate) fn kind(username: &str) -> Kind {
    match username {
        "oauth2accesstoken" | "_token" => Kind::AccessToken,
        "_json_key" | "_json_key_base64" => Kind::Key,
        // docker-credential-gcr's `_dcgcr_2_1_32_token` and similar.
        u if u.starts_with('_') && u.ends_with("_token") => Kind::AccessToken,
        _ => Kind::Other,
    }
}

/// Whether a stored login may still be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Served until `docker logout`.
    Kept,
    /// An access token with this many seconds left.
    ValidFor(u64),
    Expired,
}

/// Judges a stored login for a Google host at `now` (seconds since the epoch). Logins for
/// other hosts are always [`Stored::Kept`]: what their user names mean is not ours to know.
pub(crate) fn judge(login: &Login, google: bool, now: u64) -> Stored {
    if !google || kind(&login.username) != Kind::AccessToken {
        return Stored::Kept;
    }
    // Stored by an older version: when is unknown, so it may be any age.
    if login.stored_at == 0 {
        return Stored::Expired;
    }
    let limit = login.stored_at.saturating_add(ACCESS_TOKEN_MAX_AGE_SECS);
    let until = login.expires_at.map_or(limit, |e| e.min(limit));
    match until.checked_sub(now) {
        Some(left) if left > 0 => Stored::ValidFor(left),
        _ => Stored::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_announce_the_kind_of_secret() {
        for (user, want) in [
            ("oauth2accesstoken", Kind::AccessToken),
            ("_token", Kind::AccessToken),
            ("_dcgcr_2_1_32_token", Kind::AccessToken),
            ("_json_key", Kind::Key),
            ("_json_key_base64", Kind::Key),
            ("alice", Kind::Other),
            ("<token>", Kind::Other),
            ("token_", Kind::Other),
        ] {
            assert_eq!(kind(user), want, "{user}");
        }
    }

    #[test]
    fn access_tokens_are_served_for_an_hour_or_until_their_known_expiry() {
        let stored = 1_000_000;
        let token = Login::new("oauth2accesstoken", stored, None);
        assert_eq!(judge(&token, true, stored + 10), Stored::ValidFor(3590));
        assert_eq!(judge(&token, true, stored + 3600), Stored::Expired);
        let known = Login::new("oauth2accesstoken", stored, Some(stored + 600));
        assert_eq!(judge(&known, true, stored + 100), Stored::ValidFor(500));
        assert_eq!(judge(&known, true, stored + 600), Stored::Expired);
        let legacy = Login::new("oauth2accesstoken", 0, None);
        assert_eq!(judge(&legacy, true, stored), Stored::Expired);
        assert_eq!(
            judge(
                &Login::new("_json_key", stored, None),
                true,
                stored + 999_999
            ),
            Stored::Kept
        );
        assert_eq!(
            judge(&Login::new("alice", 0, None), true, stored),
            Stored::Kept
        );
        assert_eq!(
            judge(&legacy, false, stored),
            Stored::Kept,
            "not a Google host"
        );
    }
}
