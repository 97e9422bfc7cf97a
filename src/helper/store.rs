//! Credentials stored explicitly with `docker login` (the `store` verb), kept in the OS keyring.
//!
//! The secret lives only in the keyring (Secret Service on Linux, Keychain on macOS, Credential
//! Manager on Windows), as its raw UTF-8 bytes. Beside it, a small index file maps each stored
//! host to its user name and when it was stored. The index lets `get` know without touching
//! the keyring whether a host has stored credentials (the keyring costs a D-Bus round trip),
//! it serves `list`, which keyrings do not offer portably, and it keeps the user name out of
//! the keyring entry so a key file fits Windows' 2560-byte limit. The index holds no secrets;
//! it is still written 0600 in a 0700 directory.
//!
//! Order of writes keeps the two consistent: `store` writes the keyring and then the index (and
//! removes the keyring entry again if the index cannot be written); `erase` removes the index
//! entry and then the keyring entry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::settings::Settings;
use crate::util::files::{self, Lock};
use crate::util::platform::Os;
use crate::util::secret::Secret;

const SERVICE: &str = "docker-credential-gcp";
const MAX_INDEX: u64 = 4 * 1024 * 1024;

/// Windows Credential Manager keeps at most this many bytes of secret (`CRED_MAX_CREDENTIAL_BLOB_SIZE`).
const WINDOWS_SECRET_LIMIT: usize = 5 * 512;

#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// What the index knows of one stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Login {
    pub(crate) username: String,
    /// Seconds since the epoch; 0 for logins stored by older versions (time unknown).
    #[serde(default)]
    pub(crate) stored_at: u64,
    /// Seconds since the epoch, when the secret is an access token whose expiry is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
    /// Older versions kept `{"Username","Secret"}` JSON in the keyring; now the raw secret.
    #[serde(default = "raw_secret", skip_serializing_if = "is_raw")]
    keyring_format: KeyringFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyringFormat {
    Raw,
    Payload,
}

fn raw_secret() -> KeyringFormat {
    KeyringFormat::Raw
}

fn is_raw(f: &KeyringFormat) -> bool {
    *f == KeyringFormat::Raw
}

impl Login {
    pub(crate) fn new(username: &str, stored_at: u64, expires_at: Option<u64>) -> Login {
        Login {
            username: username.to_owned(),
            stored_at,
            expires_at,
            keyring_format: KeyringFormat::Raw,
        }
    }
}

/// An index entry as found on disk: older versions wrote only the user name.
#[derive(Deserialize)]
#[serde(untagged)]
enum IndexEntry {
    Legacy(String),
    Current(Login),
}

/// The keyring entry format of older versions.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "Secret")]
    secret: Secret<String>,
}

impl Store {
    /// The store under the user's data directory, or `None` if the platform names none.
    pub(crate) fn open(settings: &Settings) -> Option<Store> {
        settings.data_dir.clone().map(|dir| Store { dir })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("stored-hosts.json")
    }

    /// Hosts with stored credentials (no keyring access).
    pub(crate) fn logins(&self) -> Result<BTreeMap<String, Login>> {
        let path = self.index_path();
        let Some(bytes) = files::read_trusted(&path, MAX_INDEX)? else {
            return Ok(BTreeMap::new());
        };
        let raw: BTreeMap<String, IndexEntry> = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "{} is corrupt ({e}); remove it and log in again",
                path.display()
            )
        })?;
        Ok(raw
            .into_iter()
            .map(|(host, entry)| {
                let login = match entry {
                    IndexEntry::Legacy(username) => Login {
                        username,
                        stored_at: 0,
                        expires_at: None,
                        keyring_format: KeyringFormat::Payload,
                    },
                    IndexEntry::Current(login) => login,
                };
                (host, login)
            })
            .collect())
    }

    /// What the index knows about `host`, if it has stored credentials.
    pub(crate) fn login(&self, host: &str) -> Result<Option<Login>> {
        Ok(self.logins()?.remove(host))
    }

    /// The stored secret for `host`, from the keyring.
    pub(crate) fn secret(&self, host: &str, login: &Login) -> Result<Option<Secret<String>>> {
        let bytes = match entry(host)?.get_secret() {
            Ok(b) => Secret::new(b),
            Err(keyring::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(keyring_error(e)),
        };
        let text = bytes
            .map(String::from_utf8)
            .expose()
            .clone()
            .map_err(|_| anyhow!("the keyring entry for {host} is not text"))?;
        match login.keyring_format {
            KeyringFormat::Raw => Ok(Some(Secret::new(text))),
            KeyringFormat::Payload => serde_json::from_str::<Payload>(&text)
                .map(|p| Some(p.secret))
                .map_err(|_| {
                    anyhow!("the keyring entry for {host} is not in this program's format")
                }),
        }
    }

    pub(crate) fn put(&self, host: &str, login: &Login, secret: &Secret<String>) -> Result<()> {
        check_secret_size(Os::CURRENT, secret.expose().len())?;
        let entry = entry(host)?;
        entry
            .set_secret(secret.expose().as_bytes())
            .map_err(keyring_error)?;
        let indexed = self.update_index(|index| {
            index.insert(host.to_owned(), login.clone());
        });
        if let Err(e) = indexed {
            let _ = entry.delete_credential();
            return Err(e.context("the credentials were not stored"));
        }
        Ok(())
    }

    /// Removes stored credentials for `host`; erasing what is not there is not an error.
    pub(crate) fn erase(&self, host: &str) -> Result<()> {
        let was_indexed = self.login(host).map(|l| l.is_some()).unwrap_or(true);
        if was_indexed {
            self.update_index(|index| {
                index.remove(host);
            })?;
        }
        match entry(host)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) if !was_indexed => {
                log::debug!("keyring not checked for {host}: {e}");
                Ok(())
            }
            Err(e) => Err(keyring_error(e)),
        }
    }

    fn update_index(&self, change: impl FnOnce(&mut BTreeMap<String, Login>)) -> Result<()> {
        files::ensure_private_dir(&self.dir)?;
        let _lock = Lock::file(
            &self.dir.join("stored-hosts.lock"),
            Instant::now() + Duration::from_secs(10),
        )?;
        let mut index = self.logins()?;
        change(&mut index);
        let bytes = serde_json::to_vec_pretty(&index)?;
        files::write_private_atomic(&self.index_path(), &bytes)
            .with_context(|| format!("cannot update {}", self.index_path().display()))
    }
}

/// Refuses a secret the platform's keyring cannot hold, with what to do instead.
fn check_secret_size(os: Os, len: usize) -> Result<()> {
    if os == Os::Windows && len > WINDOWS_SECRET_LIMIT {
        bail!(
            "the secret is {len} bytes, and Windows Credential Manager holds at most \
             {WINDOWS_SECRET_LIMIT}; for a service account key, set GOOGLE_APPLICATION_CREDENTIALS \
             to the key file instead of `docker login -u _json_key` (this helper then mints tokens \
             from it)"
        );
    }
    Ok(())
}

/// Whether the OS keyring answers (a lookup of an entry that does not exist).
pub(crate) fn keyring_available() -> Result<()> {
    match entry("docker-credential-gcp doctor probe")?.get_secret() {
        Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(keyring_error(e)),
    }
}

fn entry(host: &str) -> Result<keyring::Entry> {
    keyring::Entry::new(SERVICE, host).map_err(keyring_error)
}

fn keyring_error(e: keyring::Error) -> anyhow::Error {
    match e {
        keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_) => anyhow!(
            "the OS keyring is not available ({e}); on Linux start a Secret Service provider \
             (gnome-keyring or KeePassXC) in this session, unlocked"
        ),
        other => anyhow!("keyring error: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_refuses_secrets_beyond_its_limit_with_the_alternative() {
        assert!(check_secret_size(Os::Windows, 2560).is_ok());
        let e = check_secret_size(Os::Windows, 2561)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2560") && e.contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{e}"
        );
        assert!(check_secret_size(Os::Linux, 100_000).is_ok());
        assert!(check_secret_size(Os::Macos, 100_000).is_ok());
    }

    #[test]
    fn index_entries_of_older_versions_are_read() {
        let raw: BTreeMap<String, IndexEntry> = serde_json::from_str(
            r#"{"a.example": "user", "b.example": {"username": "u2", "stored_at": 5}}"#,
        )
        .unwrap();
        let a = match &raw["a.example"] {
            IndexEntry::Legacy(u) => u.clone(),
            IndexEntry::Current(_) => panic!("legacy"),
        };
        assert_eq!(a, "user");
        match &raw["b.example"] {
            IndexEntry::Current(l) => {
                assert_eq!(l.username, "u2");
                assert_eq!(l.stored_at, 5);
                assert_eq!(l.keyring_format, KeyringFormat::Raw);
            }
            IndexEntry::Legacy(_) => panic!("current"),
        }
        let written = serde_json::to_string(&Login::new("u", 7, None)).unwrap();
        assert_eq!(written, r#"{"username":"u","stored_at":7}"#);
    }
}
