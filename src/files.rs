//! File safety shared by the token cache and the stored-credentials index: private
//! directories, atomic replacement, ownership checks and inter-process locks.
//!
//! Nothing here knows what the files mean. Every write goes to a temporary file in the target's
//! directory and is renamed over it, so a reader sees the old or the new content, never half.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Replaces `path` with `bytes` atomically; the new file has mode 0600.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Replaces `path` with `bytes` atomically, giving the new file `mode` (Unix permission bits).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .context("a file path needs a parent directory")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // tempfile creates files with mode 0600 on Unix; widen or keep as asked before renaming.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| {
                format!(
                    "cannot set the mode of a temporary file in {}",
                    dir.display()
                )
            })?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Reads a small file that only this user may have written. Returns `Ok(None)` when it does
/// not exist; an error when it is owned by someone else or writable by group or others, since
/// another user could then have planted its content.
pub fn read_trusted(path: &Path, max_len: u64) -> Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    check_trusted(path, &meta)?;
    if meta.len() > max_len {
        bail!("{} is larger than {max_len} bytes", path.display());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(bytes))
}

#[cfg(unix)]
fn check_trusted(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "{} is owned by another user (uid {}); not trusting it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {:o}); not trusting it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_trusted(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// An exclusive inter-process lock, released when dropped or when the process exits (even if it
/// is killed), so a crashed holder cannot deadlock later runs.
pub struct Lock {
    _file: File,
}

/// Takes the exclusive lock on `path` (creating it, mode 0600), waiting until `deadline`.
///
/// Waiters block in the kernel (on a helper thread, so the wait can time out) rather than
/// polling: when the process that mints a token releases the lock, every waiter wakes at once
/// and finds the fresh token in the cache. This is what keeps a stampede of cold `get`s short.
pub fn lock(path: &Path, deadline: Instant) -> Result<Lock> {
    let mut options = fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(Lock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = file.lock().map(|()| file);
        // The receiver may have given up; then the lock is released when this thread's file
        // handle is dropped (or when the process exits).
        let _ = tx.send(result);
    });
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(Ok(file)) => Ok(Lock { _file: file }),
        Ok(Err(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        Err(_) => bail!(
            "timed out waiting for the lock {} held by another process",
            path.display()
        ),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn atomic_write_creates_a_private_file_in_a_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = dir.join("f.json");
        write_private_atomic(&f, b"one").unwrap();
        write_private_atomic(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("f.json")],
            "no temp file left behind"
        );
    }

    #[test]
    fn group_writable_files_are_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o620)).unwrap();
        let err = read_trusted(&f, 10).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_trusted(&f, 10).unwrap().unwrap(), b"x");
        assert!(
            read_trusted(&tmp.path().join("missing"), 10)
                .unwrap()
                .is_none()
        );
        assert!(read_trusted(&f, 0).is_err(), "size limit enforced");
    }

    #[test]
    fn a_held_lock_times_out_at_the_deadline_and_frees_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let held = lock(&p, Instant::now()).unwrap();
        let started = Instant::now();
        let err = lock(&p, Instant::now() + Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
        lock(&p, Instant::now()).unwrap();
    }
}
