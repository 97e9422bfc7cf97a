//! Token sources: where a Google access token can come from.
//!
//! Each source has two halves. [`probe`] is cheap (environment and `stat` only) and runs on
//! every `get`: it says whether the source is present and names its credential identity,
//! which is the cache key. [`Candidate::mint`] does the expensive part (HTTP, a subprocess)
//! and runs only when the cache cannot answer.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

use super::access::Token;
use super::credentials;
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

/// What a mint attempt produced.
pub(crate) enum Minted {
    Token(Token),
    /// The source turned out not to be there after all (e.g. gcloud is not installed).
    Absent,
}

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

    /// Obtains a new token from this source within the context's deadline.
    pub(crate) fn mint(&self, ctx: &mut MintContext) -> Result<Minted> {
        match &self.what {
            What::Adc { path, explicit } => {
                let bytes = files::read_bounded(
                    path,
                    MAX_CREDENTIALS_FILE,
                    Symlinks::Follow,
                    Trust::Anyone,
                )?
                .ok_or_else(|| {
                    if *explicit {
                        anyhow!(
                            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
                            path.display()
                        )
                    } else {
                        anyhow!("{} disappeared", path.display())
                    }
                })?;
                credentials::mint_file(path, &bytes, ctx).map(Minted::Token)
            }
            What::Gcloud { .. } => {
                Ok(gcloud::mint(ctx.deadline)?.map_or(Minted::Absent, Minted::Token))
            }
            What::Metadata { host } => metadata::mint(host, ctx).map(Minted::Token),
        }
    }

    /// What the user should do when this source fails.
    pub(crate) fn advice(&self) -> &'static str {
        match &self.what {
            What::Adc { explicit: true, .. } => {
                "check the file GOOGLE_APPLICATION_CREDENTIALS names, or unset it"
            }
            What::Adc { .. } => "run `gcloud auth application-default login` again",
            What::Gcloud { .. } => {
                "run `gcloud auth login` (check with `gcloud auth print-access-token`)"
            }
            What::Metadata { .. } => {
                "check that the VM or node has a service account with the cloud-platform scope"
            }
        }
    }
}
