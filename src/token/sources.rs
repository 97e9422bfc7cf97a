//! Token sources: where a Google access token can come from.
//!
//! Each source has two halves. [`probe`] is cheap (environment and `stat` only) and runs on
//! every `get`: it says whether the source is present and names its credential identity,
//! which is the cache key. [`Candidate::mint`] does the expensive part (HTTP, a subprocess)
//! and runs only when the cache cannot answer.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

use super::access::{Token, now_secs};
use super::credentials;
use super::failure::{self, FailureKind, Recalled, SourceFailure};
use super::gcloud;
use super::metadata;
use super::oauth::SCOPE;
use crate::net::http::MintContext;
use crate::settings::SourceKind;
use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};

pub(crate) const MAX_CREDENTIALS_FILE: u64 = 1024 * 1024;

/// A source that looks present, with the identity its token would belong to.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) kind: SourceKind,
    /// Cache key: the source, everything that selects its identity, and the scope.
    pub(crate) key: String,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    Adc { path: PathBuf, explicit: bool },
    Gcloud { dir: PathBuf },
    Metadata { host: String },
}

/// The advice for a failure behind a proxy: the proxy, not the credentials, is in the way.
const PROXY_ADVICE: &str = "check HTTPS_PROXY and NO_PROXY (the proxy's URL, user and password); \
     `docker-credential-gcp doctor` shows which requests use which proxy";
/// The longest failure message kept: a server's error description can be megabytes.
const MAX_MESSAGE: usize = 600;

/// The candidates for `kinds` that are present, in order.
pub(crate) fn present(kinds: &[SourceKind]) -> impl Iterator<Item = Candidate> + '_ {
    kinds.iter().filter_map(|k| probe(*k))
}

/// Returns the candidate for `kind` if that source is present, using only cheap checks.
pub(crate) fn probe(kind: SourceKind) -> Option<Candidate> {
    match kind {
        SourceKind::Adc => {
            let (path, explicit) = adc_file()?;
            // External-account files may take their identity from the environment (AWS), so
            // the variables that select it are part of the key; secrets are not.
            let var = |k| env::var(k).unwrap_or_default();
            let key = format!(
                "adc|{}|{}|{}|{}|{}|{SCOPE}",
                path.display(),
                files::version(&path),
                var("AWS_ACCESS_KEY_ID"),
                var("AWS_REGION"),
                var("AWS_DEFAULT_REGION"),
            );
            Some(Candidate {
                kind,
                key,
                what: What::Adc { path, explicit },
            })
        }
        SourceKind::Gcloud => {
            let dir = gcloud::config_dir()?;
            if !dir.is_dir() {
                return None;
            }
            let key = format!("gcloud|{}|{SCOPE}", gcloud::identity(&dir));
            Some(Candidate {
                kind,
                key,
                what: What::Gcloud { dir },
            })
        }
        SourceKind::Metadata => {
            let host = metadata::locate()?;
            Some(Candidate {
                kind,
                key: format!("metadata|{host}|{SCOPE}"),
                what: What::Metadata { host },
            })
        }
    }
}

/// The ADC file to use and whether the user named it explicitly:
/// `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's well-known file.
pub(crate) fn adc_file() -> Option<(PathBuf, bool)> {
    if let Some(p) = env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some((PathBuf::from(p), true));
    }
    let well_known = gcloud::config_dir()?.join("application_default_credentials.json");
    well_known.is_file().then_some((well_known, false))
}

impl Candidate {
    /// What to call this source in messages (a path, a host). Built only for messages: the
    /// cached `get` never needs it.
    pub(crate) fn describe(&self) -> String {
        match &self.what {
            What::Adc {
                path,
                explicit: true,
            } => {
                format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display())
            }
            What::Adc { path, .. } => path.display().to_string(),
            What::Gcloud { dir } => format!("config directory {}", dir.display()),
            What::Metadata { host } => format!("metadata server {host}"),
        }
    }

    /// Obtains a new token from this source within the context's deadline. A failure comes
    /// back typed and scrubbed of every secret the context sent or read.
    pub(crate) fn mint(&self, ctx: &mut MintContext) -> Result<Token, SourceFailure> {
        let minted = match &self.what {
            What::Adc { path, explicit } => self.mint_adc(path, *explicit, ctx).map(Some),
            What::Gcloud { .. } => gcloud::mint(ctx.deadline),
            What::Metadata { host } => metadata::mint(host, ctx).map(Some),
        };
        match minted {
            Ok(Some(token)) => Ok(token),
            Ok(None) => Err(self.failure(
                FailureKind::NoCredentials,
                "gcloud is not installed (not on PATH)".to_owned(),
                false,
            )),
            Err(e) => {
                let kind = failure::classify(&e);
                // A proxy in the way is not the credentials' fault (see net::connect).
                let behind_proxy = ctx.take_proxy_failure();
                let message = ctx.scrub(&format!("{e:#}"));
                Err(self.failure(kind, message, behind_proxy))
            }
        }
    }

    fn mint_adc(
        &self,
        path: &std::path::Path,
        explicit: bool,
        ctx: &mut MintContext,
    ) -> Result<Token> {
        let bytes =
            files::read_bounded(path, MAX_CREDENTIALS_FILE, Symlinks::Follow, Trust::Anyone)?
                .ok_or_else(|| {
                    if explicit {
                        anyhow!(
                            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
                            path.display()
                        )
                    } else {
                        anyhow!("{} disappeared", path.display())
                    }
                })?;
        credentials::mint_file(path, &bytes, ctx)
    }

    fn failure(&self, kind: FailureKind, message: String, behind_proxy: bool) -> SourceFailure {
        let fix = if behind_proxy {
            PROXY_ADVICE
        } else {
            self.advice(kind)
        };
        SourceFailure {
            source: format!("{} ({})", self.kind.name(), self.describe()),
            kind,
            message: bounded(&crate::util::text::one_line(&message)),
            fix: fix.to_owned(),
        }
    }

    /// A failure remembered from a moment ago, for this source's current identity.
    pub(crate) fn remembered(&self, r: Recalled) -> SourceFailure {
        let ago = now_secs().saturating_sub(r.at);
        let again = r.until.saturating_sub(now_secs());
        SourceFailure {
            source: format!("{} ({})", self.kind.name(), self.describe()),
            kind: r.kind,
            message: format!(
                "{} (failed {ago} s ago; tried again in {again} s or when its credentials change)",
                r.message
            ),
            fix: r.fix,
        }
    }

    /// What the user should do when this source fails this way.
    pub(crate) fn advice(&self, kind: FailureKind) -> &'static str {
        match (&self.what, kind) {
            (_, FailureKind::Unreachable) => {
                "check the network, HTTPS_PROXY and NO_PROXY; `docker-credential-gcp doctor` \
                 shows the routes"
            }
            (What::Adc { explicit: true, .. }, FailureKind::SignInNeeded) => {
                "sign in again (`gcloud auth application-default login`) and point \
                 GOOGLE_APPLICATION_CREDENTIALS at the new file, or unset it"
            }
            (What::Adc { explicit: true, .. }, _) => {
                "check the file GOOGLE_APPLICATION_CREDENTIALS names, or unset it"
            }
            (What::Adc { .. }, _) => "run `gcloud auth application-default login` again",
            (What::Gcloud { .. }, FailureKind::NoCredentials | FailureKind::SignInNeeded) => {
                "run `gcloud auth login` (or set GOOGLE_APPLICATION_CREDENTIALS)"
            }
            (What::Gcloud { .. }, _) => {
                "run `gcloud auth print-access-token` to see gcloud's own error"
            }
            (What::Metadata { .. }, _) => {
                "check that the VM or node has a service account with the cloud-platform scope"
            }
        }
    }
}

/// At most [`MAX_MESSAGE`] bytes, cut at a character boundary.
fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}
