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
