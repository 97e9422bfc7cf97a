//! Credentials stored explicitly with `docker login` (the `store` verb), kept in the OS keyring.
//!
//! The secret lives only in the keyring (Secret Service on Linux, Keychain on macOS, Credential
//! Manager on Windows). Beside it, a small index file maps each stored host to its user name.
//! The index lets `get` know without touching the keyring whether a host has stored
//! credentials (the keyring costs a D-Bus round trip), and it serves `list`, which keyrings do
//! not offer portably. The index holds no secrets; it is still written 0600 in a 0700 directory.
//!
//! Order of writes keeps the two consistent: `store` writes the keyring and then the index (and
//! removes the keyring entry again if the index cannot be written); `erase` removes the index
//! entry and then the keyring entry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::files;
use crate::secret::Secret;
use crate::settings::APP_DIR;

const SERVICE: &str = "docker-credential-gcp";
const MAX_INDEX: u64 = 4 * 1024 * 1024;

pub struct Store {
    dir: PathBuf,
}

/// What is kept in the keyring for one host.
#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl Store {
    /// The store under the user's data directory, or `None` if the platform names none.
    pub fn open() -> Option<Store> {
        dirs::data_local_dir().map(|d| Store {
            dir: d.join(APP_DIR),
        })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("stored-hosts.json")
    }

    /// Hosts with stored credentials and their user names (no keyring access).
    pub fn list(&self) -> Result<BTreeMap<String, String>> {
        let path = self.index_path();
        match files::read_trusted(&path, MAX_INDEX)? {
            None => Ok(BTreeMap::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow!(
                    "{} is corrupt ({e}); remove it and log in again",
                    path.display()
                )
            }),
        }
    }

    /// Whether `host` has stored credentials, by the index alone.
    pub fn has(&self, host: &str) -> Result<bool> {
        Ok(self.list()?.contains_key(host))
    }

    /// The stored user name and secret for `host`, from the keyring.
    pub fn get(&self, host: &str) -> Result<Option<(String, Secret<String>)>> {
        let entry = entry(host)?;
        let text = match entry.get_password() {
            Ok(t) => Secret::new(t),
            Err(keyring::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(keyring_error(e)),
        };
        let payload: Payload = serde_json::from_str(text.expose())
            .map_err(|_| anyhow!("the keyring entry for {host} is not in this program's format"))?;
        Ok(Some((payload.username, Secret::new(payload.secret))))
    }

    pub fn put(&self, host: &str, username: &str, secret: &Secret<String>) -> Result<()> {
        let payload = Payload {
            username: username.to_owned(),
            secret: secret.expose().clone(),
        };
        let text = Secret::new(serde_json::to_string(&payload)?);
        let entry = entry(host)?;
        entry.set_password(text.expose()).map_err(keyring_error)?;
        let indexed = self.update_index(|index| {
            index.insert(host.to_owned(), username.to_owned());
        });
        if let Err(e) = indexed {
            let _ = entry.delete_credential();
            return Err(e.context("the credentials were not stored"));
        }
        Ok(())
    }

    /// Removes stored credentials for `host`; erasing what is not there is not an error.
    pub fn erase(&self, host: &str) -> Result<()> {
        let was_indexed = self.has(host).unwrap_or(true);
        if was_indexed {
            self.update_index(|index| {
                index.remove(host);
            })?;
        }
        match entry(host)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) if !was_indexed => {
                crate::debug!("keyring not checked for {host}: {e}");
                Ok(())
            }
            Err(e) => Err(keyring_error(e)),
        }
    }

    fn update_index(&self, change: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<()> {
        files::ensure_private_dir(&self.dir)?;
        let _lock = files::lock(
            &self.dir.join("stored-hosts.lock"),
            Instant::now() + Duration::from_secs(10),
        )?;
        let mut index = self.list()?;
        change(&mut index);
        let bytes = serde_json::to_vec_pretty(&index)?;
        files::write_private_atomic(&self.index_path(), &bytes)
            .with_context(|| format!("cannot update {}", self.index_path().display()))
    }
}

/// Whether the OS keyring answers (a lookup of an entry that does not exist).
pub fn keyring_available() -> Result<()> {
    match entry("docker-credential-gcp doctor probe")?.get_password() {
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
