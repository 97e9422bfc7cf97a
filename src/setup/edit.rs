//! Editing other programs' config files (docker's config.json, dockerd's daemon.json,
//! containerd's hosts.toml, podman's registries.conf) without losing anything.
//!
//! An edit resolves symlinks (the link stays, its target is written), locks the directory so
//! concurrent editors are serialised, reads the file without blocking on a FIFO, and then either
//! prints a diff (dry run) or replaces the file atomically, keeping its mode and owner (root
//! editing a user's file leaves it the user's, as the docker CLI does). A new file is 0600.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::files::{self, FileMode, Lock, LockTimeout, Symlinks, Trust};

const MAX_CONFIG: u64 = 16 * 1024 * 1024;
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// A config file opened for editing, its directory locked until this is dropped.
pub(crate) struct Edit {
    /// The file actually written (symlinks resolved).
    pub(crate) path: PathBuf,
    /// The bytes on disk when opened, `None` if the file did not exist.
    pub(crate) original: Option<Vec<u8>>,
    mode: FileMode,
    _lock: Lock,
}

/// How a finished edit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Unchanged,
    Written,
    /// Dry run: the diff was printed, nothing written.
    Shown,
}

impl Edit {
    /// Opens `path` for editing. A missing directory is created with `new_dir_mode`.
    pub(crate) fn open(path: &Path, new_dir_mode: u32) -> Result<Edit> {
        let target = resolve(path)?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            files::create_dir(&dir, new_dir_mode)?;
        }
        let lock = Lock::dir(&dir, Instant::now() + LOCK_WAIT).map_err(|e| busy_hint(e, &dir))?;
        let original = files::read_bounded(&target, MAX_CONFIG, Symlinks::Follow, Trust::Anyone)?;
        let mode = match fs::metadata(&target) {
            Ok(meta) if original.is_some() => FileMode::of(&meta),
            _ => FileMode::PRIVATE,
        };
        Ok(Edit {
            path: target,
            original,
            mode,
            _lock: lock,
        })
    }

    /// The original content as text (empty for a new file).
    pub(crate) fn text(&self) -> Result<String> {
        match &self.original {
            None => Ok(String::new()),
            Some(bytes) => String::from_utf8(bytes.clone()).with_context(|| {
                format!("{} is not UTF-8 text; not touching it", self.path.display())
            }),
        }
    }

    /// Shows (dry run) or writes `new`, unless it equals what is on disk.
    pub(crate) fn finish(
        &self,
        new: &[u8],
        dry_run: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<Outcome> {
        if self.original.as_deref() == Some(new) || (self.original.is_none() && new.is_empty()) {
            return Ok(Outcome::Unchanged);
        }
        if dry_run {
            let old = String::from_utf8_lossy(self.original.as_deref().unwrap_or_default());
            let new = String::from_utf8_lossy(new);
            out.write_all(diff(&self.path, &old, &new).as_bytes())?;
            return Ok(Outcome::Shown);
        }
        files::write_atomic(&self.path, new, self.mode)?;
        Ok(Outcome::Written)
    }
}

/// A unified diff of `old` and `new` with two lines of context.
pub(crate) fn diff(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&name, &name)
        .to_string()
}

/// Where a write to `path` must go: the final target of a symlink chain.
pub(crate) fn resolve(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)
                    .with_context(|| format!("cannot read the symlink {}", current.display()))?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// Says who holds the lock when waiting for it timed out.
fn busy_hint(e: anyhow::Error, dir: &Path) -> anyhow::Error {
    if e.is::<LockTimeout>() {
        e.context(format!(
            "another process is editing files in {}; try again",
            dir.display()
        ))
    } else {
        e
    }
}

/// Adds the fix to a permission error on a system file.
pub(crate) fn permission_hint(e: anyhow::Error) -> anyhow::Error {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if denied {
        e.context("permission denied: these files belong to root; run the command with sudo")
    } else {
        e
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn diffs_mark_added_and_removed_lines_with_context() {
        let d = diff(
            Path::new("f"),
            "a\nb\nc\nd\ne\nf\ng\n",
            "a\nb\nc\nX\ne\nf\ng\n",
        );
        assert!(d.contains(" b\n c\n-d\n+X\n e\n f\n"), "{d}");
        assert_eq!(diff(Path::new("f"), "same\n", "same\n"), "");
    }

    #[test]
    fn an_edit_keeps_mode_and_follows_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = tmp.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let edit = Edit::open(&link, 0o700).unwrap();
        assert_eq!(edit.path, real);
        let mut shown = Vec::new();
        assert_eq!(
            edit.finish(b"{}", false, &mut shown).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            edit.finish(b"{\"a\":1}", true, &mut shown).unwrap(),
            Outcome::Shown
        );
        assert_eq!(fs::read(&real).unwrap(), b"{}", "a dry run writes nothing");
        assert_eq!(
            edit.finish(b"{\"a\":1}", false, &mut shown).unwrap(),
            Outcome::Written
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let meta = fs::metadata(&real).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
    }

    #[test]
    fn a_lock_held_past_the_wait_names_the_other_editor() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = Lock::dir(tmp.path(), Instant::now()).unwrap();
        let timeout = Lock::dir(tmp.path(), Instant::now()).unwrap_err();
        let e = busy_hint(timeout, tmp.path());
        assert!(
            format!("{e:#}").starts_with("another process is editing files in"),
            "{e:#}"
        );
        // Decided by the kind, not the words.
        let other = busy_hint(anyhow::anyhow!("timed out elsewhere"), tmp.path());
        assert_eq!(format!("{other:#}"), "timed out elsewhere");
    }

    #[test]
    fn a_fifo_at_the_config_path_is_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("config.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = Edit::open(&fifo, 0o700).err().unwrap();
        assert!(format!("{err:#}").contains("FIFO"), "{err:#}");
    }
}
