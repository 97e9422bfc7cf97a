//! The token cache: one small JSON file per credential identity and scope.
//!
//! The cache is what makes a `get` cheap, so reading it is one `open`, one `fstat` and one
//! `read` of a few hundred bytes. Entries record the full identity key they belong to, so a
//! hash collision or a renamed file can never serve another identity's token. A cache that is
//! missing, corrupt, of another version or not trustworthy is treated as empty.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::files;
use crate::secret::Secret;

const VERSION: u32 = 1;
const MAX_ENTRY_LEN: u64 = 64 * 1024;

/// A token is served from the cache while more than this many seconds remain.
pub const FRESH_MARGIN_SECS: u64 = 300;
/// When minting fails, a cached token with more than this many seconds left is still served.
pub const STALE_MARGIN_SECS: u64 = 10;

/// An access token and when it expires.
#[derive(Debug, Clone)]
pub struct Token {
    pub secret: Secret<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Token {
    pub fn remaining_secs(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        self.remaining_secs(now) > FRESH_MARGIN_SECS
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    v: u32,
    key: String,
    token: String,
    expires_at: u64,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    /// The cached token for `key`, fresh or not, or `None`. Never fails: an unusable cache
    /// is an empty cache (the reason is logged at debug level).
    pub fn read(&self, key: &str) -> Option<Token> {
        let path = self.entry_path(key);
        let bytes = match files::read_trusted(&path, MAX_ENTRY_LEN) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                crate::warn!("ignoring the token cache: {e:#}");
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e) if e.v == VERSION && e.key == key && !e.token.is_empty() => Some(Token {
                secret: Secret::new(e.token),
                expires_at: e.expires_at,
            }),
            Ok(_) => {
                crate::debug!(
                    "cache entry {} is for another key or version",
                    path.display()
                );
                None
            }
            Err(e) => {
                crate::debug!("cache entry {} is corrupt: {e}", path.display());
                None
            }
        }
    }

    pub fn write(&self, key: &str, token: &Token) -> Result<()> {
        files::ensure_private_dir(&self.dir)?;
        let entry = Entry {
            v: VERSION,
            key: key.to_owned(),
            token: token.secret.expose().clone(),
            expires_at: token.expires_at,
        };
        let bytes = serde_json::to_vec(&entry)?;
        files::write_private_atomic(&self.entry_path(key), &bytes)
    }

    /// Serialises minting across processes, so a stampede of cold `get`s mints once.
    pub fn lock(&self, deadline: Instant) -> Result<files::Lock> {
        files::ensure_private_dir(&self.dir)?;
        files::lock(&self.dir.join("mint.lock"), deadline)
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!("token-{:016x}.json", fnv1a64(key.as_bytes())))
    }
}

/// FNV-1a: a stable, dependency-free name for a key. Collisions are harmless because the
/// entry stores and checks its full key.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str, expires_at: u64) -> Token {
        Token {
            secret: Secret::new(s.to_owned()),
            expires_at,
        }
    }

    #[test]
    fn a_written_token_reads_back_under_its_key_only() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(&tmp.path().join("c"));
        cache.write("adc|a", &token("t1", 1000)).unwrap();
        let t = cache.read("adc|a").unwrap();
        assert_eq!(t.secret.expose(), "t1");
        assert_eq!(t.expires_at, 1000);
        assert!(cache.read("adc|b").is_none());
    }

    #[test]
    fn corrupt_truncated_or_foreign_entries_read_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        cache.write("k", &token("t", 5)).unwrap();
        let path = cache.entry_path("k");
        let good = std::fs::read(&path).unwrap();
        for bad in [
            &good[..good.len() / 2],
            b"" as &[u8],
            b"\xff\xfe\x00",
            br#"{"v":2,"key":"k","token":"t","expires_at":5}"#,
            br#"{"v":1,"key":"other","token":"t","expires_at":5}"#,
            br#"{"v":1,"key":"k","token":"","expires_at":5}"#,
            br#"[1,2,3]"#,
        ] {
            files::write_private_atomic(&path, bad).unwrap();
            assert!(
                cache.read("k").is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn freshness_uses_the_five_minute_margin() {
        let t = token("t", 1000);
        assert!(t.is_fresh(1000 - 301));
        assert!(!t.is_fresh(1000 - 300));
        assert_eq!(t.remaining_secs(2000), 0);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }
}
