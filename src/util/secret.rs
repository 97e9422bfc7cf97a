//! A redacting wrapper for token and key material.
//!
//! Everything secret that this program handles travels in [`Secret`]. Its `Debug` prints
//! `REDACTED`, and it deliberately has no `Display`: `format!("Bearer {token}")` does not
//! compile, so a token can reach a header, a log line or an error message only through
//! [`Secret::expose`], which makes each such use visible in review. [`Secret::map`] and
//! [`Secret::as_deref`] transform a secret without taking it out of the wrapper.

use std::fmt;
use std::ops::Deref;

#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Secret<T>(T);

impl<T> Secret<T> {
    pub(crate) fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Call only where the value must leave the process (protocol
    /// output, an HTTP request, the cache file or the keyring).
    pub(crate) fn expose(&self) -> &T {
        &self.0
    }

    /// A new secret computed from this one (for example `Bearer …` from a token).
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Secret<U> {
        Secret(f(self.0))
    }
}

impl<T: Deref> Secret<T> {
    /// `Secret<String>` → `Secret<&str>`, still wrapped.
    pub(crate) fn as_deref(&self) -> Secret<&T::Target> {
        Secret(self.0.deref())
    }
}

impl<T: AsRef<str>> Secret<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_empty()
    }

    /// `message` with every run that also occurs in this secret (12 bytes or longer, or the
    /// whole secret if shorter) replaced by REDACTED: a remote error should never echo what we
    /// sent, and an echo cut short by an excerpt is caught too.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let secret = self.0.as_ref().as_bytes();
        if secret.is_empty() {
            return message.to_owned();
        }
        let window = secret.len().min(12);
        let pieces: std::collections::HashSet<&[u8]> = secret.windows(window).collect();
        let bytes = message.as_bytes();
        let mut hidden = vec![false; bytes.len()];
        for (i, w) in bytes.windows(window).enumerate() {
            if pieces.contains(w) {
                hidden[i..i + window].iter_mut().for_each(|h| *h = true);
            }
        }
        let mut out = String::with_capacity(message.len());
        let mut in_run = false;
        for (i, c) in message.char_indices() {
            if hidden[i..i + c.len_utf8()].iter().any(|h| *h) {
                if !in_run {
                    out.push_str("REDACTED");
                }
                in_run = true;
            } else {
                out.push(c);
                in_run = false;
            }
        }
        out
    }
}

/// Every secret one exchange with a server involved, in each form it may have travelled in
/// (as is, form- and percent-encoded, base64 and base64url): the one place that scrubs a
/// remote answer before it becomes a message. Shorter values than [`Secrets::MIN_LEN`] are
/// not kept: redacting them would garble ordinary words.
#[derive(Debug, Default, Clone)]
pub(crate) struct Secrets {
    forms: Vec<Secret<String>>,
}

impl Secrets {
    pub(crate) const MIN_LEN: usize = 6;

    /// Adds `value` and its encoded forms.
    pub(crate) fn add(&mut self, value: &str) {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        if value.len() < Self::MIN_LEN {
            return;
        }
        let forms = [
            value.to_owned(),
            form_urlencoded::byte_serialize(value.as_bytes()).collect(),
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            STANDARD.encode(value),
            URL_SAFE_NO_PAD.encode(value),
        ];
        for form in forms {
            if !self.forms.iter().any(|f| f.expose() == &form) {
                self.forms.push(Secret::new(form));
            }
        }
    }

    /// `message` with every echo of every secret, whole or cut short, replaced by REDACTED.
    pub(crate) fn scrub(&self, message: &str) -> String {
        self.forms
            .iter()
            .fold(message.to_owned(), |text, secret| secret.scrub(&text))
    }

    /// Each form kept (to merge into another set).
    pub(crate) fn forms(&self) -> impl Iterator<Item = &str> {
        self.forms.iter().map(|f| f.expose().as_str())
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Secrets are read from credential files and protocol input. Serialising goes through
/// [`Secret::expose`] at the one place each secret is written, so there is no `Serialize`.
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(String::from("ya29.very-secret"));
        assert_eq!(format!("{s:?}"), "REDACTED");
        assert_eq!(format!("{:?}", Some(&s)), "Some(REDACTED)");
        assert_eq!(s.expose(), "ya29.very-secret");
    }

    #[test]
    fn helpers_keep_the_value_wrapped() {
        let s = Secret::new(String::from("tok"));
        let bearer = s.as_deref().map(|t| format!("Bearer {t}"));
        assert_eq!(bearer.expose(), "Bearer tok");
        assert!(!s.is_empty());
        assert!(Secret::new(String::new()).is_empty());
    }

    #[test]
    fn token_fragments_are_redacted_even_when_cut_short() {
        let token =
            Secret::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl".to_owned());
        let whole = format!("bad subject {} (rejected)", token.expose());
        assert_eq!(token.scrub(&whole), "bad subject REDACTED (rejected)");
        let cut = format!("invalid: {}…", &token.expose()[..30]);
        assert_eq!(token.scrub(&cut), "invalid: REDACTED…");
        let tail = format!("sig {} end", &token.expose()[40..]);
        assert_eq!(token.scrub(&tail), "sig REDACTED end");
        assert_eq!(
            token.scrub("HTTP 400 invalid_grant: the audience does not match"),
            "HTTP 400 invalid_grant: the audience does not match"
        );
        assert_eq!(token.scrub("ünïcode"), "ünïcode");
        assert_eq!(
            Secret::new("abc".to_owned()).scrub("a abc b"),
            "a REDACTED b"
        );
    }

    #[test]
    fn every_encoding_of_a_secret_is_scrubbed() {
        use base64::Engine;
        let mut secrets = super::Secrets::default();
        let refresh = "1//0g-refresh+token/with=specials";
        secrets.add(refresh);
        secrets.add("abc");
        let encoded: String = form_urlencoded::byte_serialize(refresh.as_bytes()).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(refresh);
        let echo = format!(
            "invalid_grant: body was grant_type=refresh_token&refresh_token={encoded} ({b64}) raw {refresh} abc"
        );
        let scrubbed = secrets.scrub(&echo);
        assert_eq!(
            scrubbed,
            "invalid_grant: body was grant_type=refresh_token&refresh_token=REDACTED (REDACTED) raw REDACTED abc"
        );
    }

    /// `Secret` must never implement `Display`. If it did, both impls below would apply and
    /// the call would be ambiguous, so this test would stop compiling.
    #[test]
    fn secret_has_no_display() {
        trait AmbiguousIfDisplay<A> {
            fn check() {}
        }
        impl<T: ?Sized> AmbiguousIfDisplay<()> for T {}
        struct IsDisplay;
        impl<T: ?Sized + std::fmt::Display> AmbiguousIfDisplay<IsDisplay> for T {}
        <Secret<String> as AmbiguousIfDisplay<_>>::check();
    }
}
