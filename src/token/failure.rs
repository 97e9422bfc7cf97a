//! Why no token could be had, as typed data: the kind decides the answer docker gets, the
//! message, and how long the failure is remembered.
//!
//! Errors deep in a mint carry their kind as a type in their `anyhow` chain: a [`Failure`]
//! made where the kind is known (an OAuth error code, gcloud's verdict), or an `HttpError` (no
//! answer, a proxy in the way). [`classify`] reads the chain once, at the source boundary; nothing
//! here or anywhere else decides by an error's text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of failure, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    /// Nothing is configured: no source present, gcloud without an active account.
    NoCredentials,
    /// The credentials exist but the user must sign in again (`invalid_grant`, `invalid_rapt`,
    /// a revoked or expired refresh token).
    SignInNeeded,
    /// The identity is refused (HTTP 401/403 from STS or IAM, a disabled key): configuration.
    Denied,
    /// No usable answer: DNS, connect, TLS, deadline, 5xx or 429 after retries, a proxy.
    Unreachable,
    /// Something local is malformed: a credentials file, a setting, gcloud's output.
    Broken,
}

impl FailureKind {
    /// The kinds the user alone can fix, which answer "not found" so public images still pull.
    pub(crate) fn is_absent(self) -> bool {
        matches!(self, FailureKind::NoCredentials | FailureKind::SignInNeeded)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FailureKind::NoCredentials => "no credentials",
            FailureKind::SignInNeeded => "sign-in needed",
            FailureKind::Denied => "denied",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Broken => "broken",
        }
    }

    /// What `doctor` says a kind means for a pull.
    pub(crate) fn explain(self) -> &'static str {
        match self {
            FailureKind::NoCredentials => {
                "no Google credentials are configured; `get` answers \"not found\", so public \
                 images pull anonymously and private ones get the registry's \"unauthorized\""
            }
            FailureKind::SignInNeeded => {
                "the credentials need a new sign-in; `get` answers \"not found\" (public images \
                 still pull) until you sign in again"
            }
            FailureKind::Denied => {
                "Google refused this identity (a configuration problem); `get` fails the pull \
                 unless on_error is anonymous"
            }
            FailureKind::Unreachable => {
                "Google's endpoints could not be reached; `get` fails the pull unless on_error \
                 is anonymous"
            }
            FailureKind::Broken => {
                "a credentials file, setting or program output is malformed; `get` fails the \
                 pull unless on_error is anonymous"
            }
        }
    }

    /// Of two failures, the one that decides the answer: any failure the user did not cause
    /// by simply not signing in wins, so a broken configuration is never hidden.
    pub(crate) fn worse(self, other: FailureKind) -> FailureKind {
        fn rank(k: FailureKind) -> u8 {
            match k {
                FailureKind::NoCredentials => 0,
                FailureKind::SignInNeeded => 1,
                FailureKind::Unreachable => 2,
                FailureKind::Denied => 3,
                FailureKind::Broken => 4,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure whose kind is known where it happens. Its text is what the user reads.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    message: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Why a present source gave no token, as the user reads it: the message names files and
/// hosts, never a secret (it went through the mint context's scrubber), and is one line.
#[derive(Debug, Clone)]
pub(crate) struct SourceFailure {
    /// The source and what it is: `adc (/home/u/key.json)`.
    pub(crate) source: String,
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    /// What the user should do.
    pub(crate) fix: String,
}

impl SourceFailure {
    /// This process waited for another's mint until its own deadline.
    pub(crate) fn waited() -> SourceFailure {
        SourceFailure {
            source: "minting lock".to_owned(),
            kind: FailureKind::Unreachable,
            message: "another docker-credential-gcp process was minting a token and did not \
                      finish before the deadline"
                .to_owned(),
            fix: "retry; if it persists, raise DOCKER_CREDENTIAL_GCP_TIMEOUT".to_owned(),
        }
    }
}

/// A failure remembered for an identity.
#[derive(Debug)]
pub(crate) struct Recalled {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) fix: String,
    /// When it failed and until when it is remembered (seconds since the epoch).
    pub(crate) at: u64,
    pub(crate) until: u64,
}

/// The kind of a mint error: the innermost typed cause decides (a [`Failure`], an HTTP error
/// without an answer); an error with neither is a local problem.
pub(crate) fn classify(e: &anyhow::Error) -> FailureKind {
    let mut kind = None;
    for cause in e.chain() {
        if let Some(k) = kind_of(cause) {
            kind = Some(k);
        }
    }
    kind.unwrap_or(FailureKind::Broken)
}

fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<FailureKind> {
    if let Some(f) = cause.downcast_ref::<Failure>() {
        return Some(f.kind);
    }
    if cause
        .downcast_ref::<crate::net::http::HttpError>()
        .is_some()
    {
        return Some(FailureKind::Unreachable);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_innermost_typed_cause_decides_the_kind() {
        let e = anyhow::Error::new(Failure::new(FailureKind::SignInNeeded, "invalid_grant"))
            .context("refreshing the user credentials")
            .context("/home/u/adc.json");
        assert_eq!(classify(&e), FailureKind::SignInNeeded);
        assert_eq!(
            format!("{e:#}"),
            "/home/u/adc.json: refreshing the user credentials: invalid_grant"
        );
        let plain = anyhow::anyhow!("not valid JSON").context("/x.json");
        assert_eq!(classify(&plain), FailureKind::Broken);
        let inner_wins: anyhow::Result<()> =
            Err(Failure::new(FailureKind::Unreachable, "HTTP 503"))
                .context("source_credentials")
                .map_err(|e| e.context(Failure::new(FailureKind::Denied, "impersonation refused")));
        assert_eq!(classify(&inner_wins.unwrap_err()), FailureKind::Unreachable);
    }

    #[test]
    fn a_configuration_problem_is_never_hidden_behind_a_missing_sign_in() {
        use FailureKind::*;
        assert_eq!(NoCredentials.worse(SignInNeeded), SignInNeeded);
        assert_eq!(SignInNeeded.worse(Unreachable), Unreachable);
        assert_eq!(Broken.worse(NoCredentials), Broken);
        assert!(NoCredentials.is_absent() && SignInNeeded.is_absent());
        assert!(!Denied.is_absent() && !Unreachable.is_absent() && !Broken.is_absent());
    }
}
