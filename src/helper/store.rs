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
//! The index never names a host whose secret is gone. `store` and `erase` each hold one lock
//! (`stored-hosts.lock`) across their keyring call and their index update, so concurrent ones
//! end as one or the other. `store` writes the keyring and then the index (and removes the
//! keyring entry again if the index cannot be written); `erase` removes the index entry and
//! then the keyring entry. A keyring entry the index does not name is never served.
//!
//! Every keyring call has a deadline. The Secret Service is a D-Bus peer and zbus has no
//! method timeout, so a hung gnome-keyring, or an unlock prompt nobody answers, would hold
//! `docker pull` forever, silently. Each call runs on its own thread and is abandoned at its
//! deadline (the process exits with the thread still waiting). An abandoned call may still be
//! carried out when the keyring wakes up, so its outcome counts as unknown: an unanswered
//! `store` drops the host from the index (the old login must not be paired with a new
//! secret), an unanswered `erase` has already dropped it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::settings::Settings;
use crate::util::files::{self, Lock};
use crate::util::platform::Os;
use crate::util::secret::Secret;

const SERVICE: &str = "docker-credential-gcp";
const MAX_INDEX: u64 = 4 * 1024 * 1024;

/// How long a lookup may wait for the keyring: `get` serves `docker pull`, which shows nothing
/// while it waits. A D-Bus round trip takes milliseconds.
pub(crate) const LOOKUP_WAIT: Duration = Duration::from_secs(5);
/// How long `store` and `erase` (`docker login` / `logout`, a person at the terminal) may wait,
/// lock included: long enough to answer an unlock prompt.
pub(crate) const CHANGE_WAIT: Duration = Duration::from_secs(30);

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
        let read = call(host, Deadline::after(LOOKUP_WAIT), |entry| {
            entry.get_secret().map(Secret::new)
        })
        .with_context(|| format!("cannot read the credentials stored for {host}"))?;
        let bytes = match read {
            Ok(b) => b,
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
        let deadline = Deadline::after(CHANGE_WAIT);
        let lock = self.lock(deadline)?;
        let bytes = secret.clone().map(String::into_bytes);
        match call(host, deadline, move |entry| {
            entry.set_secret(bytes.expose())
        }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(keyring_error(e).context("the credentials were not stored")),
            Err(unanswered) => {
                // The keyring may still write the new secret when it wakes up.
                let mut had_login = false;
                let dropped = self.change_index(&lock, |index| {
                    had_login = index.remove(host).is_some();
                });
                let previous = match (dropped, had_login) {
                    (Err(e), _) => format!(
                        "; its previous login could not be set aside ({e:#}): run `docker logout {host}`"
                    ),
                    (Ok(()), true) => " and its previous login is no longer used".to_owned(),
                    (Ok(()), false) => String::new(),
                };
                bail!("{unanswered}; the credentials for {host} were not stored{previous}");
            }
        }
        let indexed = self.change_index(&lock, |index| {
            index.insert(host.to_owned(), login.clone());
        });
        if let Err(e) = indexed {
            let _ = call(host, deadline, |entry| entry.delete_credential());
            return Err(e.context("the credentials were not stored"));
        }
        Ok(())
    }

    /// Removes stored credentials for `host`, waiting at most `wait` for the keyring (and the
    /// lock); erasing what is not there is not an error.
    pub(crate) fn erase(&self, host: &str, wait: Duration) -> Result<()> {
        let deadline = Deadline::after(wait);
        let lock = self.lock(deadline)?;
        let was_indexed = self.login(host).map(|l| l.is_some()).unwrap_or(true);
        if was_indexed {
            self.change_index(&lock, |index| {
                index.remove(host);
            })?;
        } else {
            // Only an entry left behind by a crash or an unanswered call can be there: not
            // worth more than a lookup's wait.
            let deadline = Deadline::after(LOOKUP_WAIT).not_after(deadline);
            match call(host, deadline, |entry| entry.delete_credential()) {
                Ok(Ok(())) | Ok(Err(keyring::Error::NoEntry)) => {}
                Ok(Err(e)) => log::debug!("keyring not checked for {host}: {e}"),
                Err(e) => log::debug!("keyring not checked for {host}: {e}"),
            }
            return Ok(());
        }
        match call(host, deadline, |entry| entry.delete_credential()) {
            Ok(Ok(())) | Ok(Err(keyring::Error::NoEntry)) => Ok(()),
            Ok(Err(e)) => Err(keyring_error(e)),
            Err(unanswered) => bail!(
                "{unanswered}; the credentials stored for {host} are no longer used, but the \
                 keyring may still hold the secret: run `docker logout {host}` again once it answers"
            ),
        }
    }

    /// The lock that serialises changes to the keyring entries and the index.
    fn lock(&self, deadline: Deadline) -> Result<Lock> {
        files::ensure_private_dir(&self.dir)?;
        Lock::file(&self.dir.join("stored-hosts.lock"), deadline.at).with_context(|| {
            format!(
                "another docker-credential-gcp is changing stored credentials, and may itself be \
                 waiting for {}",
                keyring_words(Os::CURRENT).0
            )
        })
    }

    /// Rewrites the index; `_lock` is the proof that the caller holds [`Store::lock`].
    fn change_index(
        &self,
        _lock: &Lock,
        change: impl FnOnce(&mut BTreeMap<String, Login>),
    ) -> Result<()> {
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
    let probe = call(
        "docker-credential-gcp doctor probe",
        Deadline::after(LOOKUP_WAIT),
        |entry| entry.get_secret().map(drop),
    )?;
    match probe {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(keyring_error(e)),
    }
}

/// How long (ms) the keyring call that went unanswered waited, once one did: later calls in
/// this process then fail at once instead of queueing behind it.
static UNANSWERED_MS: AtomicU64 = AtomicU64::new(0);

/// When an operation (its lock and its keyring calls together) must be done, and how long
/// that was from its start: what an error reports.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    wait: Duration,
}

impl Deadline {
    fn after(wait: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + wait,
            wait,
        }
    }

    fn not_after(self, other: Deadline) -> Deadline {
        Deadline {
            at: self.at.min(other.at),
            ..self
        }
    }
}

/// A keyring call that did not finish by its deadline (how long its operation waited).
#[derive(Debug)]
struct Unanswered(Duration);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (_, keyring, what_to_do) = keyring_words(Os::CURRENT);
        write!(
            f,
            "{keyring} did not answer within {} s; {what_to_do}",
            self.0.as_secs_f64().round()
        )
    }
}

impl std::error::Error for Unanswered {}

/// What the platform's keyring is called (short, then with examples), and what to do when it
/// does not answer.
fn keyring_words(os: Os) -> (&'static str, &'static str, &'static str) {
    match os {
        Os::Linux => (
            "the Secret Service",
            "the Secret Service (gnome-keyring, KeePassXC or another org.freedesktop.secrets \
             provider on the session D-Bus)",
            "it may be waiting at an unlock prompt (unlock the keyring and try again) or hung \
             (restart it, e.g. log out and in)",
        ),
        Os::Macos => (
            "the Keychain",
            "the macOS Keychain",
            "it may be waiting at a prompt to unlock it or to allow access (answer it and try again)",
        ),
        Os::Windows => (
            "Credential Manager",
            "Windows Credential Manager",
            "try again; if it keeps happening, restart the Credential Manager service",
        ),
    }
}

/// Runs `op` on the keyring entry for `host` on a thread of its own and waits for it until
/// the deadline. On time-out the thread is left waiting (it holds nothing of ours but its copy
/// of the arguments) and ends with the process.
fn call<T: Send + 'static>(
    host: &str,
    deadline: Deadline,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> std::result::Result<keyring::Result<T>, Unanswered> {
    let waited = UNANSWERED_MS.load(Ordering::Relaxed);
    if waited > 0 {
        return Err(Unanswered(Duration::from_millis(waited)));
    }
    let host = host.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("keyring".to_owned())
        .spawn(move || {
            let _ = tx.send(keyring::Entry::new(SERVICE, &host).and_then(|e| op(&e)));
        });
    if let Err(e) = spawned {
        return Ok(Err(keyring::Error::PlatformFailure(Box::new(e))));
    }
    match rx.recv_timeout(deadline.at.saturating_duration_since(Instant::now())) {
        Ok(result) => Ok(result),
        Err(RecvTimeoutError::Disconnected) => Ok(Err(keyring::Error::PlatformFailure(
            "the keyring call ended without an answer".into(),
        ))),
        Err(RecvTimeoutError::Timeout) => {
            let ms = u64::try_from(deadline.wait.as_millis()).unwrap_or(u64::MAX);
            UNANSWERED_MS.store(ms.max(1), Ordering::Relaxed);
            Err(Unanswered(deadline.wait))
        }
    }
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
