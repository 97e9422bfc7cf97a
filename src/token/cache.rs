//! The token cache: one small JSON file per credential identity and scope.
//!
//! The cache is what makes a `get` cheap, so reading it is one `stat` of the directory and one
//! `open`, `fstat` and `read` of a few hundred bytes. Entries are named and checked by the
//! SHA-256 of their identity key, so a renamed file can never serve another identity's token,
//! and the key (which holds paths and environment values) is never written down. A cache that
//! is missing, corrupt, of another version, implausible or not trustworthy (owned by someone
//! else, writable by others, a symlink, a FIFO) is treated as empty.
//!
//! Beside the tokens it keeps, under the same rules, each identity's last failure for a short
//! while (`fail-*.json`: the kind and the scrubbed message, never a secret) and who holds the
//! minting lock until when (`mint.owner`), so processes waiting for a mint know when to stop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::access::{Token, now_secs};
use super::failure::{FailureKind, Recalled, SourceFailure};
use crate::util::files::{self, Lock};
use crate::util::secret::Secret;

const VERSION: u32 = 2;
const MAX_ENTRY_LEN: u64 = 64 * 1024;
/// A time recorded this far or more in the future means the clock stepped back since it was
/// written (an RTC in local time corrected by NTP): what was recorded then is not believed.
const CLOCK_SLACK_SECS: u64 = 5;

/// A cached token, and the identities that were tried before it and failed when it was
/// minted (see `token::google_token`).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) token: Token,
    pub(crate) shadowed: Vec<String>,
    /// Seconds since the epoch; 0 for entries written before this was recorded.
    pub(crate) minted_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    key: String,
    token: String,
    expires_at: u64,
    #[serde(default)]
    shadowed: Vec<String>,
    #[serde(default)]
    minted_at: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredFailure {
    v: u32,
    key: String,
    kind: FailureKind,
    message: String,
    fix: String,
    at: u64,
    until: u64,
}

/// Who holds the minting lock, and until when it may work (milliseconds since the epoch).
#[derive(Serialize, Deserialize)]
struct Owner {
    pid: u32,
    deadline_ms: u128,
}

#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
}

/// The SHA-256 of an identity key, in hex: how entries name and check their identity.
pub(crate) fn digest(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    // Two table lookups a byte: `format!("{b:02x}")` per byte was a quarter of a cached get.
    d.as_ref()
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

impl Cache {
    pub(crate) fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    /// The cached entry for `key`, fresh or not, or `None`. Never fails: an unusable cache
    /// is an empty cache (the reason is logged).
    pub(crate) fn read(&self, key: &str) -> Option<Entry> {
        match self.dir_is_private() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                log::warn!("ignoring the token cache: {e:#}");
                return None;
            }
        }
        let digest = digest(key);
        let path = self.entry_path(&digest);
        let bytes = match files::read_trusted(&path, MAX_ENTRY_LEN) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("ignoring the token cache: {e:#}");
                return None;
            }
        };
        let stored = match serde_json::from_slice::<Stored>(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("cache entry {} is corrupt: {e}", path.display());
                return None;
            }
        };
        let token = Token {
            secret: Secret::new(stored.token),
            expires_at: stored.expires_at,
        };
        if stored.v != VERSION || stored.key != digest || token.secret.is_empty() {
            log::debug!(
                "cache entry {} is for another key or version",
                path.display()
            );
            return None;
        }
        let now = now_secs();
        if !token.is_plausible(now) {
            log::warn!(
                "ignoring the cache entry {}: its expiry is further ahead than any token lives",
                path.display()
            );
            return None;
        }
        if stored.minted_at > now + CLOCK_SLACK_SECS {
            log::debug!(
                "ignoring the cache entry {}: it was minted in the future (the clock stepped back)",
                path.display()
            );
            return None;
        }
        Some(Entry {
            token,
            shadowed: stored.shadowed,
            minted_at: stored.minted_at,
        })
    }

    /// Stores `token` for `key`; `shadowed` are the keys of the sources tried before it.
    pub(crate) fn write(&self, key: &str, token: &Token, shadowed: &[String]) -> Result<()> {
        files::ensure_private_dir(&self.dir)?;
        let digest = digest(key);
        let stored = Stored {
            v: VERSION,
            key: digest.clone(),
            token: token.secret.expose().clone(),
            expires_at: token.expires_at,
            shadowed: shadowed.iter().map(|k| self::digest(k)).collect(),
            minted_at: now_secs(),
        };
        let bytes = serde_json::to_vec(&stored)?;
        files::write_private_atomic(&self.entry_path(&digest), &bytes)
    }

    /// Remembers that the source with identity `key` failed, until `for_` from now.
    pub(crate) fn remember(
        &self,
        key: &str,
        failure: &SourceFailure,
        for_: std::time::Duration,
    ) -> Result<()> {
        files::ensure_private_dir(&self.dir)?;
        let digest = digest(key);
        let at = now_secs();
        let stored = StoredFailure {
            v: VERSION,
            key: digest.clone(),
            kind: failure.kind,
            message: failure.message.clone(),
            fix: failure.fix.clone(),
            at,
            until: at.saturating_add(for_.as_secs().max(1)),
        };
        files::write_private_atomic(&self.failure_path(&digest), &serde_json::to_vec(&stored)?)
    }

    /// The failure remembered for `key`, while it is remembered. One recorded in the future
    /// (the clock stepped back) is not believed.
    pub(crate) fn recall(&self, key: &str) -> Option<Recalled> {
        if !self.dir_is_private().unwrap_or(false) {
            return None;
        }
        let digest = digest(key);
        let bytes = files::read_trusted(&self.failure_path(&digest), MAX_ENTRY_LEN)
            .ok()
            .flatten()?;
        let stored: StoredFailure = serde_json::from_slice(&bytes).ok()?;
        let now = now_secs();
        if stored.v != VERSION
            || stored.key != digest
            || stored.at > now + CLOCK_SLACK_SECS
            || stored.until <= now
        {
            return None;
        }
        Some(Recalled {
            kind: stored.kind,
            message: stored.message,
            fix: stored.fix,
            at: stored.at,
            until: stored.until,
        })
    }

    /// Forgets the failure remembered for `key` (its source just minted).
    pub(crate) fn forget(&self, key: &str) {
        let path = self.failure_path(&digest(key));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::debug!("could not remove {}: {e}", path.display());
        }
    }

    /// Records, for processes waiting on the minting lock, that this process holds it until
    /// `deadline`.
    pub(crate) fn announce_holder(&self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let owner = Owner {
            pid: std::process::id(),
            deadline_ms: now_millis() + left.as_millis(),
        };
        let written = serde_json::to_vec(&owner)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| files::write_private_atomic(&self.owner_path(), &bytes));
        if let Err(e) = written {
            log::debug!("could not record the lock holder: {e:#}");
        }
    }

    /// How long until the lock holder's deadline, if it said (zero once passed).
    pub(crate) fn holder_time_left(&self) -> Option<std::time::Duration> {
        let owner = self.owner()?;
        let left = owner.deadline_ms.saturating_sub(now_millis());
        Some(std::time::Duration::from_millis(
            u64::try_from(left).unwrap_or(u64::MAX),
        ))
    }

    fn owner(&self) -> Option<Owner> {
        files::read_trusted(&self.owner_path(), 1024)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())
    }

    /// Whether the lock holder is still at work `grace` after its own deadline (a stopped
    /// process): then waiting for it is pointless. A holder that never said until when (an
    /// older version) counts as stuck when `unannounced_is_stuck`.
    pub(crate) fn holder_is_stuck(
        &self,
        grace: std::time::Duration,
        unannounced_is_stuck: bool,
    ) -> bool {
        match self.owner() {
            Some(owner) => now_millis() > owner.deadline_ms + grace.as_millis(),
            None => unannounced_is_stuck,
        }
    }

    /// The minting lock if no other process holds it right now (a background refresh that
    /// finds it taken leaves the work to the holder).
    pub(crate) fn try_lock(&self) -> Result<Option<Lock>> {
        files::ensure_private_dir(&self.dir)?;
        Lock::try_file(&self.lock_path())
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("mint.lock")
    }

    fn owner_path(&self) -> PathBuf {
        self.dir.join("mint.owner")
    }

    fn failure_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("fail-{}.json", &digest[..16]))
    }

    /// `Ok(false)` if the directory does not exist yet; an error if someone else controls it.
    fn dir_is_private(&self) -> Result<bool> {
        files::private_dir_exists(&self.dir)
    }

    fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("token-{}.json", &digest[..16]))
    }
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
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
        let soon = now_secs() + 1000;
        cache
            .write("adc|a", &token("t1", soon), &["gcloud|x".to_owned()])
            .unwrap();
        let e = cache.read("adc|a").unwrap();
        assert_eq!(e.token.secret.expose(), "t1");
        assert_eq!(e.token.expires_at, soon);
        assert_eq!(e.shadowed, [digest("gcloud|x")]);
        assert!(cache.read("adc|b").is_none());
        let text = std::fs::read_to_string(cache.entry_path(&digest("adc|a"))).unwrap();
        assert!(
            !text.contains("adc|a") && !text.contains("gcloud|x"),
            "keys are not written: {text}"
        );
    }

    #[test]
    fn corrupt_truncated_foreign_or_implausible_entries_read_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        cache
            .write("k", &token("t", now_secs() + 100), &[])
            .unwrap();
        let path = cache.entry_path(&digest("k"));
        let good = std::fs::read(&path).unwrap();
        let d = digest("k");
        let far = now_secs() + 13 * 3600;
        for bad in [
            good[..good.len() / 2].to_vec(),
            b"".to_vec(),
            b"\xff\xfe\x00".to_vec(),
            format!(r#"{{"v":1,"key":"{d}","token":"t","expires_at":5}}"#).into_bytes(),
            br#"{"v":2,"key":"other","token":"t","expires_at":5}"#.to_vec(),
            format!(r#"{{"v":2,"key":"{d}","token":"","expires_at":5}}"#).into_bytes(),
            format!(r#"{{"v":2,"key":"{d}","token":"t","expires_at":{far}}}"#).into_bytes(),
            b"[1,2,3]".to_vec(),
        ] {
            files::write_private_atomic(&path, &bad).unwrap();
            assert!(
                cache.read("k").is_none(),
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn digests_are_stable_sha256() {
        assert_eq!(
            digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
