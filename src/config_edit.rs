//! Editing other programs' JSON config files (docker's config.json, dockerd's daemon.json)
//! without losing anything.
//!
//! The file is parsed as generic JSON with key order preserved, changed in memory, and written
//! back with tab indentation like the docker CLI, through a temporary file in the same
//! directory that is renamed over the target (which is the symlink's target if the path is a
//! symlink). The file keeps its mode; a new file is 0600 in a new 0700 directory. A malformed
//! file is never written. Concurrent editors are serialised with a lock on the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::files;

pub struct JsonFile {
    /// The file actually written (symlinks resolved).
    pub path: PathBuf,
    /// The bytes on disk when loaded, `None` if the file did not exist.
    pub original: Option<Vec<u8>>,
    pub root: Map<String, Value>,
    mode: Option<u32>,
}

/// Where a write to `path` must go: the final target of a symlink chain.
pub fn resolve(path: &Path) -> Result<PathBuf> {
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

impl JsonFile {
    /// Loads `path` (a missing file is an empty object). Errors name the file and, for
    /// malformed JSON, the line and column.
    pub fn load(path: &Path) -> Result<JsonFile> {
        let target = resolve(path)?;
        let (original, mode) = match fs::read(&target) {
            Ok(bytes) => (Some(bytes), mode_of(&target)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
        };
        let root = match &original {
            None => Map::new(),
            Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(map)) => map,
                Ok(_) => bail!(
                    "{} does not hold a JSON object; not touching it",
                    target.display()
                ),
                Err(e) => bail!(
                    "{} is not valid JSON (line {}, column {}: {}); fix or move it, it was not changed",
                    target.display(),
                    e.line(),
                    e.column(),
                    e.classify_text()
                ),
            },
        };
        Ok(JsonFile {
            path: target,
            original,
            root,
            mode,
        })
    }

    /// The bytes the file would have now, formatted like the docker CLI writes it.
    pub fn render(&self) -> Result<Vec<u8>> {
        render_map(&self.root).map_err(|e| anyhow!("cannot encode {}: {e}", self.path.display()))
    }

    /// Writes the current content atomically, keeping the file's mode (0600 for a new file,
    /// in a 0700 directory if the directory is new).
    pub fn save(&self) -> Result<()> {
        let bytes = self.render()?;
        let dir = self
            .path
            .parent()
            .context("the config file path has no directory")?;
        if !dir.exists() {
            files::ensure_private_dir(dir)?;
        }
        files::write_atomic(&self.path, &bytes, self.mode.unwrap_or(0o600))
    }
}

/// `map` as the docker CLI writes JSON: tab indentation and a final newline.
pub fn render_map(map: &Map<String, Value>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    map.serialize(&mut ser)?;
    out.push(b'\n');
    Ok(out)
}

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "unexpected end of file",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "read error",
        }
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// An exclusive lock serialising editors of the files in `dir`.
pub struct DirLock {
    _file: fs::File,
}

/// Locks `dir` (creating it 0700 if needed) for up to `wait`.
pub fn lock_dir(dir: &Path, wait: Duration) -> Result<DirLock> {
    if !dir.exists() {
        files::ensure_private_dir(dir)?;
    }
    let deadline = Instant::now() + wait;
    // On Unix the directory itself is locked (flock works on directory descriptors), so no
    // lock file is left beside the user's config.
    #[cfg(unix)]
    let file = fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    #[cfg(not(unix))]
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".docker-credential-gcp.lock"))
        .with_context(|| format!("cannot create a lock file in {}", dir.display()))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                bail!(
                    "another process is editing files in {}; try again",
                    dir.display()
                )
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", dir.display()));
            }
        }
    }
}

/// A line diff of `old` and `new` in unified style (`-`, `+`, and two lines of context).
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table; config files are small.
    if a.len() * b.len() > 4_000_000 {
        return new.lines().map(|l| format!("+{l}\n")).collect();
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(ops.len() - 1);
        (lo..=hi).any(|x| ops[x].0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped && !out.is_empty() {
                out.push_str("@@\n");
            }
            skipped = false;
            out.push_str(&format!("{op}{line}\n"));
        } else {
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_added_and_removed_lines_with_context() {
        let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nX\ne\nf\ng\n");
        assert_eq!(d, " b\n c\n-d\n+X\n e\n f\n");
        assert_eq!(diff("same\n", "same\n"), "");
        assert_eq!(diff("", "new\n"), "+new\n");
    }

    #[test]
    fn render_uses_tabs_and_keeps_key_order() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        fs::write(&p, r#"{"z":1,"a":{"y":true,"b":null},"m":[1,"x"]}"#).unwrap();
        let f = JsonFile::load(&p).unwrap();
        let text = String::from_utf8(f.render().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n\t\"z\": 1,\n\t\"a\": {\n\t\t\"y\": true,\n\t\t\"b\": null\n\t},\n\t\"m\": [\n\t\t1,\n\t\t\"x\"\n\t]\n}\n"
        );
    }

    #[test]
    fn numbers_survive_a_rewrite() {
        // Found by the config_edit fuzz target: without serde_json's float_roundtrip, a large
        // number could come back as a different f64 after render and re-parse.
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        let text = r#"{"n": [0, 2333333333333333333333333333333333333333333330000000000000000000000000000, 0.1, 1e-300, 18446744073709551615]}"#;
        fs::write(&p, text).unwrap();
        let rendered = JsonFile::load(&p).unwrap().render().unwrap();
        let before: Value = serde_json::from_str(text).unwrap();
        let after: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn malformed_files_are_errors_with_a_position() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        fs::write(&p, "{\n  \"auths\": {,\n}").unwrap();
        let e = JsonFile::load(&p).err().unwrap().to_string();
        assert!(e.contains("line 2, column 13"), "{e}");
        fs::write(&p, "[1]").unwrap();
        assert!(JsonFile::load(&p).is_err());
    }
}
