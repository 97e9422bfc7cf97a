//! Token sources: where a Google access token can come from, and in which order.
//!
//! Each source has two halves. [`probe`] is cheap (environment and `stat` only) and runs on
//! every `get`: it says whether the source is present and names its credential identity,
//! which is the cache key. [`Candidate::mint`] does the expensive part (HTTP, a subprocess)
//! and runs only when the cache cannot answer.

mod adc;
mod aws;
mod external;
mod gcloud;
mod impersonated;
mod metadata;

use std::path::PathBuf;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::Result;

use crate::cache::Token;
use crate::http::Http;
use crate::settings::SourceKind;

/// The OAuth scope requested for registry access (accepted by Container Registry and
/// Artifact Registry).
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A source that looks present, with the identity its token would belong to.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub kind: SourceKind,
    /// Cache key: the source, the identity's location and version, and the scope.
    pub key: String,
    /// What to call this source in messages (a path, a host).
    pub describe: String,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    Adc { path: PathBuf, explicit: bool },
    Gcloud,
    Metadata { host: String },
}

/// What a mint attempt produced.
pub enum Minted {
    Token(Token),
    /// The source turned out not to be there after all (e.g. gcloud is not installed).
    Absent,
}

/// Shared, lazily built state for minting: the HTTP stack and the overall deadline.
pub struct MintContext {
    pub deadline: Instant,
    http: Option<Http>,
}

impl MintContext {
    pub fn new(deadline: Instant) -> MintContext {
        MintContext {
            deadline,
            http: None,
        }
    }

    fn http(&mut self) -> Result<&Http> {
        if self.http.is_none() {
            self.http = Some(Http::new()?);
        }
        Ok(self.http.as_ref().expect("just set"))
    }
}

/// Returns the candidate for `kind` if that source is present, using only cheap checks.
pub fn probe(kind: SourceKind) -> Option<Candidate> {
    match kind {
        SourceKind::Adc => {
            let (path, explicit) = adc::locate()?;
            // External-account files may take their identity from the environment (AWS), so
            // the variables that select it are part of the key; secrets are not.
            let env = |k| std::env::var(k).unwrap_or_default();
            let key = format!(
                "adc|{}|{}|{}|{}|{}|{SCOPE}",
                path.display(),
                file_version(&path),
                env("AWS_ACCESS_KEY_ID"),
                env("AWS_REGION"),
                env("AWS_DEFAULT_REGION"),
            );
            let describe = if explicit {
                format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display())
            } else {
                path.display().to_string()
            };
            Some(Candidate {
                kind,
                key,
                describe,
                what: What::Adc { path, explicit },
            })
        }
        SourceKind::Gcloud => {
            let dir = gcloud::config_dir()?;
            if !dir.is_dir() {
                return None;
            }
            let env = |k| std::env::var(k).unwrap_or_default();
            let key = format!(
                "gcloud|{}|{}|{}|{}|{SCOPE}",
                dir.display(),
                file_version(&dir.join("config_sentinel")),
                env("CLOUDSDK_ACTIVE_CONFIG_NAME"),
                env("CLOUDSDK_CORE_ACCOUNT"),
            );
            let describe = format!("config directory {}", dir.display());
            Some(Candidate {
                kind,
                key,
                describe,
                what: What::Gcloud,
            })
        }
        SourceKind::Metadata => {
            let host = metadata::locate()?;
            let key = format!("metadata|{host}|{SCOPE}");
            let describe = format!("metadata server {host}");
            Some(Candidate {
                kind,
                key,
                describe,
                what: What::Metadata { host },
            })
        }
    }
}

impl Candidate {
    /// Obtains a new token from this source within the context's deadline.
    pub fn mint(&self, ctx: &mut MintContext) -> Result<Minted> {
        match &self.what {
            What::Adc { path, explicit } => adc::mint(path, *explicit, ctx).map(Minted::Token),
            What::Gcloud => gcloud::mint(ctx.deadline),
            What::Metadata { host } => metadata::mint(host, ctx).map(Minted::Token),
        }
    }

    /// What the user should do when this source fails.
    pub fn advice(&self) -> &'static str {
        match (&self.what, self.kind) {
            (What::Adc { explicit: true, .. }, _) => {
                "check the file GOOGLE_APPLICATION_CREDENTIALS names, or unset it"
            }
            (What::Adc { .. }, _) => "run `gcloud auth application-default login` again",
            (_, SourceKind::Gcloud) => {
                "run `gcloud auth login` (check with `gcloud auth print-access-token`)"
            }
            _ => "check that the VM or node has a service account with the cloud-platform scope",
        }
    }
}

/// Mints from the ADC file at `path` as if GOOGLE_APPLICATION_CREDENTIALS named it.
pub fn mint_adc_file(path: &std::path::Path, ctx: &mut MintContext) -> Result<Token> {
    adc::mint(path, true, ctx)
}

/// A cheap fingerprint of a file's version: modification time, size and inode. A changed
/// credential file or gcloud configuration gives a new cache key.
fn file_version(path: &std::path::Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else {
        return "absent".to_owned();
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    format!("{mtime}.{}.{ino}", meta.len())
}

/// The user's home directory, for the well-known gcloud locations.
fn home() -> Option<PathBuf> {
    dirs::home_dir()
}
