//! A redacting wrapper for token and key material.
//!
//! Everything secret that this program handles travels in [`Secret`], whose `Debug` and
//! `Display` print `REDACTED`, so a token cannot reach a log line or an error message by
//! accident. The only way to the value is [`Secret::expose`], which makes each use visible.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Call only where the value must leave the process
    /// (protocol output, an HTTP request body, the cache file or the keyring).
    pub fn expose(&self) -> &T {
        &self.0
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

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Secrets are read from credential files and protocol input; they are never serialised
/// through this type, so there is deliberately no `Serialize`.
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("ya29.very-secret"));
        assert_eq!(format!("{s:?}"), "REDACTED");
        assert_eq!(format!("{s}"), "REDACTED");
        assert_eq!(s.expose(), "ya29.very-secret");
    }
}
