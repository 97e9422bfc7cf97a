//! Opening, reading, writing and locking files safely. Every path this program opens goes
//! through here; nothing here knows what the files mean.
//!
//! - Opening never blocks: files are opened with `O_NONBLOCK` and refused unless `fstat` says
//!   they are regular files, so a FIFO or a device planted at any path cannot hang a `get`.
//! - Reads are bounded: nothing reads more than its caller's limit.
//! - Files another user could have written (the token cache, the stored-hosts index) are read
//!   only if they and their directory are owned by this user and not writable by others, and
//!   without following a symbolic link.
//! - Writes go to a temporary file in the target's directory that is renamed over the target,
//!   so a reader sees the old or the new content, never half.
//! - One lock primitive ([`Lock`]) serialises processes, on a lock file or on a directory.
//!
//! What differs between Unix and Windows (open flags, owner and mode bits, inodes, locking a
//! directory) is in the two `imp` modules at the end, with the same functions each; the rest
//! of this file is the same on every platform.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::util::platform::{self, Os};

/// Whether opening a path may follow a symbolic link at its last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Symlinks {
    /// User-chosen paths (credential files, config files): Kubernetes secret mounts and
    /// dotfile managers use symlinks legitimately.
    Follow,
    /// The helper's own private files: a symlink there can only have been planted.
    Refuse,
}

/// Who may have written a file for its content to be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    Anyone,
    /// Owned by this user and not writable by group or others (and the same for its directory).
    OnlyMe,
}

/// Opens `path` read-only without blocking, and refuses anything but a regular file; also
/// returns the `fstat` that decided it.
fn open_regular_with_metadata(path: &Path, symlinks: Symlinks) -> io::Result<(File, fs::Metadata)> {
    let mut options = OpenOptions::new();
    options.read(true);
    no_block(&mut options, symlinks);
    checked_with_metadata(path, options.open(path), symlinks)
}

/// Opens `path` for appending (creating it with `mode`) without blocking, and refuses anything
/// but a regular file.
pub(crate) fn open_append(path: &Path, mode: u32, symlinks: Symlinks) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    set_mode(&mut options, mode);
    no_block(&mut options, symlinks);
    checked(path, options.open(path), symlinks)
}

fn checked(path: &Path, opened: io::Result<File>, symlinks: Symlinks) -> io::Result<File> {
    checked_with_metadata(path, opened, symlinks).map(|(file, _)| file)
}

fn checked_with_metadata(
    path: &Path,
    opened: io::Result<File>,
    symlinks: Symlinks,
) -> io::Result<(File, fs::Metadata)> {
    let file = opened.map_err(|e| explain_open_error(e, path, symlinks))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    Ok((file, meta))
}

fn not_regular(path: &Path, meta: &fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {}, not a regular file",
            path.display(),
            describe_type(meta)
        ),
    )
}

use imp::{no_block, set_mode};

/// Says what is at `path` when the OS's error hides it: a refused symbolic link is reported as
/// something else (ELOOP reads like a loop), and Windows answers "Access denied" for a
/// directory.
fn explain_open_error(e: io::Error, path: &Path, symlinks: Symlinks) -> io::Error {
    if symlinks == Symlinks::Refuse && imp::is_refused_symlink(&e) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link, which is not followed here",
        );
    }
    match imp::not_openable_as_file(&e, path, symlinks) {
        Some(meta) => not_regular(path, &meta),
        None => e,
    }
}

fn describe_type(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if let Some(special) = imp::special_type(&t) {
        special
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Reads at most `max_len` bytes of the regular file at `path`; `Ok(None)` if it does not
/// exist. A larger file is an error, not a truncated read.
pub(crate) fn read_bounded(
    path: &Path,
    max_len: u64,
    symlinks: Symlinks,
    trust: Trust,
) -> Result<Option<Vec<u8>>> {
    let (mut file, meta) = match open_regular_with_metadata(path, symlinks) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    if trust == Trust::OnlyMe {
        check_trusted(path, &meta)?;
    }
    if meta.len() > max_len {
        bail!("{} is larger than {max_len} bytes", path.display());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between fstat and read: the limit holds regardless.
    (&mut file)
        .take(max_len + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max_len {
        bail!("{} is larger than {max_len} bytes", path.display());
    }
    Ok(Some(bytes))
}

/// A file only this user may have written: the token cache and the stored-hosts index.
pub(crate) fn read_trusted(path: &Path, max_len: u64) -> Result<Option<Vec<u8>>> {
    read_bounded(path, max_len, Symlinks::Refuse, Trust::OnlyMe)
}

/// Refuses a file or directory that another user owns or that group or others may write,
/// since another user could then have planted or replaced its content.
pub(crate) fn check_trusted(path: &Path, meta: &fs::Metadata) -> Result<()> {
    imp::check_trusted(path, meta)
}

/// Checks that `dir` is a directory this user owns that others cannot write; `Ok(false)` if
/// it does not exist (one `stat`).
pub(crate) fn private_dir_exists(dir: &Path) -> Result<bool> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot use directory {}", dir.display())),
        Ok(meta) => check_dir_meta(dir, &meta).map(|()| true),
    }
}

/// Checks that `dir` is a directory this user owns that others cannot write.
pub(crate) fn check_private_dir(dir: &Path) -> Result<()> {
    let meta =
        fs::metadata(dir).with_context(|| format!("cannot use directory {}", dir.display()))?;
    check_dir_meta(dir, &meta)
}

fn check_dir_meta(dir: &Path, meta: &fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    check_trusted(dir, meta)
}

/// Creates `dir` (and parents) with mode 0700 if needed, then checks it is private.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    create_dir(dir, 0o700)?;
    check_private_dir(dir)
}

/// Creates `dir` and its missing parents with `mode` (where there are mode bits).
pub(crate) fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    imp::set_dir_mode(&mut builder, mode);
    builder
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Permission bits and, when editing another user's file as root, the owner to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMode {
    pub(crate) mode: u32,
    /// `(uid, gid)` for the new file; `None` leaves it to the creating process.
    pub(crate) owner: Option<(u32, u32)>,
}

impl FileMode {
    pub(crate) const PRIVATE: FileMode = FileMode {
        mode: 0o600,
        owner: None,
    };

    /// The mode and owner of an existing file, to be kept when it is replaced.
    pub(crate) fn of(meta: &fs::Metadata) -> FileMode {
        imp::file_mode(meta)
    }
}

/// Replaces `path` with `bytes` atomically; the new file has mode 0600.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, FileMode::PRIVATE)
}

/// Replaces `path` with `bytes` atomically, giving the new file `mode` (and its owner, when
/// one is given and differs from ours, as root editing a user's file).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: FileMode) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    imp::apply_mode(tmp.as_file(), mode).with_context(|| {
        format!(
            "cannot set the mode of a temporary file in {}",
            dir.display()
        )
    })?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    persist(tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Renames the temporary file over `path` (our handle closed first). On Windows the rename
/// fails while another process (docker reading its config, an antivirus scan) holds the target
/// open without delete sharing; that passes within moments, so it is retried for up to two
/// seconds (see [`platform::replace_is_retryable`]). A failed attempt's temporary file is
/// removed.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    let tmp = tmp.into_temp_path();
    let give_up = Instant::now() + Duration::from_secs(2);
    let mut attempt = 0;
    loop {
        match fs::rename(&tmp, path) {
            Ok(()) => {
                // The temporary path is gone (renamed); nothing is left to clean up.
                let _ = tmp.keep();
                return Ok(());
            }
            Err(e)
                if platform::replace_is_retryable(Os::CURRENT, e.raw_os_error())
                    && Instant::now() < give_up =>
            {
                std::thread::sleep(platform::replace_backoff(attempt));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A cheap fingerprint of a file's version: modification time, size and inode. A changed
/// credential file or gcloud configuration gives a new cache key. Costs one `stat`.
pub(crate) fn version(path: &Path) -> String {
    let Ok(meta) = fs::metadata(path) else {
        return "absent".to_owned();
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{mtime}.{}.{}", meta.len(), imp::inode(&meta))
}

/// An exclusive inter-process lock, released when dropped or when the process exits (even if
/// it is killed), so a crashed holder cannot deadlock later runs.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

impl Lock {
    /// Locks the lock file at `path` (created 0600; a symlink there is refused, never
    /// followed or created through), waiting until `deadline`.
    ///
    /// Waiters block in the kernel (on a helper thread, so the wait can time out) rather than
    /// polling: when the process that mints a token releases the lock, every waiter wakes at
    /// once and finds the fresh token in the cache. That keeps a stampede of cold `get`s short.
    pub(crate) fn file(path: &Path, deadline: Instant) -> Result<Lock> {
        let file = open_lock_file(path)?;
        wait_for(file, deadline, path)
    }

    /// Takes the lock at `path` only if it is free right now.
    pub(crate) fn try_file(path: &Path) -> Result<Option<Lock>> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Locks the directory `dir` itself (on Unix; elsewhere a lock file in it), so editors of
    /// the files in it are serialised without leaving a lock file beside the user's config.
    pub(crate) fn dir(dir: &Path, deadline: Instant) -> Result<Lock> {
        wait_for(imp::dir_lock_file(dir)?, deadline, dir)
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    // Read and write: opening a FIFO write-only without blocking fails with ENXIO, while
    // read-write opens it, so fstat can name what it is.
    options.create(true).truncate(false).read(true).write(true);
    set_mode(&mut options, 0o600);
    no_block(&mut options, Symlinks::Refuse);
    checked(path, options.open(path), Symlinks::Refuse)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

fn wait_for(file: File, deadline: Instant, what: &Path) -> Result<Lock> {
    match file.try_lock() {
        Ok(()) => return Ok(Lock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", what.display()));
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
        Ok(Err(e)) => Err(e).with_context(|| format!("cannot lock {}", what.display())),
        Err(_) => Err(LockTimeout(what.to_path_buf()).into()),
    }
}

/// The lock stayed held by another process until the deadline.
#[derive(Debug)]
pub(crate) struct LockTimeout(PathBuf);

impl std::fmt::Display for LockTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out waiting for the lock on {}, held by another process",
            self.0.display()
        )
    }
}

impl std::error::Error for LockTimeout {}

#[cfg(unix)]
mod imp {
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::os::unix::fs::{
        DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
    };
    use std::path::Path;

    use anyhow::{Context, Result, bail};

    use super::{FileMode, Symlinks};

    /// `O_NONBLOCK` (a FIFO cannot hang the open), `O_CLOEXEC`, and `O_NOFOLLOW` to refuse a
    /// symbolic link.
    pub(super) fn no_block(options: &mut OpenOptions, symlinks: Symlinks) {
        let nofollow = match symlinks {
            Symlinks::Follow => 0,
            Symlinks::Refuse => libc::O_NOFOLLOW,
        };
        options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow);
    }

    pub(super) fn set_mode(options: &mut OpenOptions, mode: u32) {
        options.mode(mode);
    }

    pub(super) fn set_dir_mode(builder: &mut fs::DirBuilder, mode: u32) {
        builder.mode(mode);
    }

    /// `O_NOFOLLOW` met a symbolic link.
    pub(super) fn is_refused_symlink(e: &io::Error) -> bool {
        e.raw_os_error() == Some(libc::ELOOP)
    }

    /// Nothing to add: a directory opens read-only (and `fstat` names it), and opening one
    /// for writing fails with EISDIR, which names itself.
    pub(super) fn not_openable_as_file(
        _e: &io::Error,
        _path: &Path,
        _symlinks: Symlinks,
    ) -> Option<fs::Metadata> {
        None
    }

    #[cfg(test)]
    pub(super) fn symlink(target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    pub(super) fn special_type(t: &fs::FileType) -> Option<&'static str> {
        if t.is_fifo() {
            Some("a FIFO")
        } else if t.is_socket() {
            Some("a socket")
        } else if t.is_char_device() || t.is_block_device() {
            Some("a device")
        } else {
            None
        }
    }

    pub(super) fn check_trusted(path: &Path, meta: &fs::Metadata) -> Result<()> {
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

    pub(super) fn file_mode(meta: &fs::Metadata) -> FileMode {
        FileMode {
            mode: meta.mode() & 0o7777,
            owner: Some((meta.uid(), meta.gid())),
        }
    }

    pub(super) fn apply_mode(file: &File, mode: FileMode) -> io::Result<()> {
        if let Some((uid, gid)) = mode.owner {
            let meta = file.metadata()?;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
            }
        }
        // After chown: changing the owner clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(mode.mode))
    }

    pub(super) fn inode(meta: &fs::Metadata) -> u64 {
        meta.ino()
    }

    /// The directory itself: no lock file is left beside the user's config.
    pub(super) fn dir_lock_file(dir: &Path) -> Result<File> {
        File::open(dir).with_context(|| format!("cannot open {}", dir.display()))
    }
}

#[cfg(windows)]
mod imp {
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::path::Path;

    use anyhow::Result;

    use super::{FileMode, Symlinks};

    /// Opening never blocks on Windows (no FIFOs at ordinary paths), so only a refused symbolic
    /// link needs a flag: with `FILE_FLAG_OPEN_REPARSE_POINT` a link (or junction) is opened
    /// itself, not its target, and `fstat` then names it as not a regular file.
    pub(super) fn no_block(options: &mut OpenOptions, symlinks: Symlinks) {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT;
        if symlinks == Symlinks::Refuse {
            options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        }
    }

    /// No mode bits: the per-user profile directories are private by ACL.
    pub(super) fn set_mode(_options: &mut OpenOptions, _mode: u32) {}

    pub(super) fn set_dir_mode(_builder: &mut fs::DirBuilder, _mode: u32) {}

    pub(super) fn is_refused_symlink(_e: &io::Error) -> bool {
        false
    }

    /// Windows refuses to open a directory as a file with "Access denied"; the metadata says
    /// what is there (a symbolic link itself, when links are refused).
    pub(super) fn not_openable_as_file(
        e: &io::Error,
        path: &Path,
        symlinks: Symlinks,
    ) -> Option<fs::Metadata> {
        if e.kind() != io::ErrorKind::PermissionDenied {
            return None;
        }
        let meta = match symlinks {
            Symlinks::Follow => fs::metadata(path),
            Symlinks::Refuse => fs::symlink_metadata(path),
        };
        meta.ok().filter(|m| !m.is_file())
    }

    #[cfg(test)]
    pub(super) fn symlink(target: &Path, link: &Path) -> io::Result<()> {
        std::os::windows::fs::symlink_file(target, link)
    }

    pub(super) fn special_type(_t: &fs::FileType) -> Option<&'static str> {
        None
    }

    /// No owner/mode bits to check; the per-user profile directories are private by ACL.
    pub(super) fn check_trusted(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
        Ok(())
    }

    pub(super) fn file_mode(_meta: &fs::Metadata) -> FileMode {
        FileMode::PRIVATE
    }

    pub(super) fn apply_mode(_file: &File, _mode: FileMode) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn inode(_meta: &fs::Metadata) -> u64 {
        0
    }

    /// A directory cannot be locked here: a lock file in it.
    pub(super) fn dir_lock_file(dir: &Path) -> Result<File> {
        super::open_lock_file(&dir.join(".docker-credential-gcp.lock"))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    fn group_writable_files_and_directories_are_not_trusted() {
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

        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&shared).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
    }

    #[test]
    fn fifos_symlinks_and_directories_are_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let err = read_trusted(&fifo, 10).unwrap_err();
        assert!(format!("{err:#}").contains("a FIFO"), "{err:#}");
        let err = Lock::file(&fifo, Instant::now()).unwrap_err();
        assert!(format!("{err:#}").contains("a FIFO"), "{err:#}");
        assert!(open_append(&fifo, 0o600, Symlinks::Follow).is_err());
        assert!(started.elapsed() < Duration::from_secs(2));

        let target = tmp.path().join("target");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Lock::file(&link, Instant::now()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(!target.exists(), "the symlink's target is never created");
        fs::write(&target, b"x").unwrap();
        assert!(read_trusted(&link, 10).is_err());
        assert_eq!(
            read_bounded(&link, 10, Symlinks::Follow, Trust::Anyone)
                .unwrap()
                .unwrap(),
            b"x"
        );
        assert!(read_bounded(tmp.path(), 10, Symlinks::Follow, Trust::Anyone).is_err());
    }

    #[test]
    fn a_held_lock_times_out_at_the_deadline_and_frees_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let held = Lock::file(&p, Instant::now()).unwrap();
        assert!(Lock::try_file(&p).unwrap().is_none());
        let started = Instant::now();
        let err = Lock::file(&p, Instant::now() + Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(
            err.is::<LockTimeout>(),
            "a timeout is told apart by its type"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
        Lock::file(&p, Instant::now()).unwrap();
        let dir = Lock::dir(tmp.path(), Instant::now()).unwrap();
        let err = Lock::dir(tmp.path(), Instant::now()).unwrap_err();
        assert!(err.is::<LockTimeout>(), "{err:#}");
        drop(dir);
    }
}

/// What the program refuses to open, on every OS.
#[cfg(test)]
mod refusals {
    use super::*;

    /// Makes `link` a symbolic link to `target`; false where this OS cannot: Windows without
    /// the privilege (ERROR_PRIVILEGE_NOT_HELD) or developer mode, and Wine 8, whose
    /// CreateSymbolicLinkW succeeds without making anything and which shows Unix symlinks as
    /// plain files.
    #[allow(clippy::print_stdout)] // a skip the test harness shows
    fn symlink(target: &Path, link: &Path) -> bool {
        if let Err(e) = imp::symlink(target, link) {
            assert_eq!(e.raw_os_error(), Some(1314), "{e}");
        }
        let made = fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink());
        if !made {
            println!("skipped: this system cannot make a symbolic link here");
        }
        made
    }

    #[test]
    fn a_directory_is_named_as_one_whatever_opens_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for symlinks in [Symlinks::Follow, Symlinks::Refuse] {
            let err = read_bounded(dir, 10, symlinks, Trust::Anyone).unwrap_err();
            assert!(format!("{err:#}").contains("a directory"), "{err:#}");
        }
        let err = open_append(dir, 0o600, Symlinks::Follow).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let err = Lock::file(dir, Instant::now()).unwrap_err();
        assert!(format!("{err:#}").contains("a directory"), "{err:#}");
    }

    #[test]
    fn a_symlink_is_refused_for_private_files_and_followed_for_chosen_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = tmp.path().join("link");
        if !symlink(&target, &link) {
            return;
        }
        let err = read_trusted(&link, 10).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        let err = open_append(&link, 0o600, Symlinks::Refuse).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"x", "nothing appended");
        let chosen = read_bounded(&link, 10, Symlinks::Follow, Trust::Anyone).unwrap();
        assert_eq!(chosen.unwrap(), b"x");

        let absent = tmp.path().join("absent");
        let dangling = tmp.path().join("dangling");
        assert!(symlink(&absent, &dangling));
        let err = Lock::file(&dangling, Instant::now()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(!absent.exists(), "the symlink's target is never created");
    }
}
