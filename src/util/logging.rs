//! Diagnostics through the `log` facade: to stderr and, optionally, appended to a log file.
//!
//! Docker captures a helper's stdout as the protocol answer, so every human-facing message goes
//! to stderr. Callers never pass secrets: tokens travel in [`crate::util::secret::Secret`],
//! which cannot be formatted. Only this crate's messages are shown; the libraries underneath
//! (hyper, rustls) log at levels and in words meant for their own developers.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::util::files::{self, Symlinks};

/// Parses a level name as the settings accept it.
pub(crate) fn parse_level(s: &str) -> Result<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        other => bail!("{other:?} is not one of error, warn, info, debug"),
    }
}

struct Logger {
    file: Option<PathBuf>,
}

/// Lines for stderr held back while [`hold_stderr`] is in force (`None`: not holding).
static HELD: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);

/// From now on, stderr lines are kept back (the log file still gets them at once), until
/// [`release_stderr`] prints or drops them: a command that succeeds can stay silent while one
/// that fails still explains itself.
pub(crate) fn hold_stderr() {
    if let Ok(mut held) = HELD.lock() {
        held.get_or_insert_with(Vec::new);
    }
}

/// Ends [`hold_stderr`]: prints the lines kept back if `show`, else drops them.
pub(crate) fn release_stderr(show: bool) {
    let lines = HELD.lock().ok().and_then(|mut held| held.take());
    if show {
        for line in lines.unwrap_or_default() {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Sets the level and log file once per process; later calls are ignored.
pub(crate) fn init(level: LevelFilter, file: Option<PathBuf>) {
    let logger = Box::leak(Box::new(Logger { file }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with(module_root())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug | Level::Trace => "debug",
        };
        let line = format!("docker-credential-gcp: {level}: {}\n", record.args());
        let kept = match HELD.lock() {
            Ok(mut held) => match held.as_mut() {
                Some(lines) => {
                    lines.push(line.clone());
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        if !kept {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(path) = &self.file {
            let _ = append(path, &line);
        }
    }

    fn flush(&self) {}
}

/// This crate's module path root, which its log records' targets start with.
fn module_root() -> &'static str {
    module_path!().split("::").next().unwrap_or_default()
}

fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    // A FIFO at the log path must not hang the helper: open_append refuses it at once.
    let mut f = files::open_append(path, 0o600, Symlinks::Follow)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    f.write_all(format!("{stamp} pid={} {line}", std::process::id()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_reject_others() {
        assert_eq!(parse_level("DEBUG").unwrap(), LevelFilter::Debug);
        assert_eq!(parse_level(" warning ").unwrap(), LevelFilter::Warn);
        assert!(parse_level("loud").is_err());
        assert_eq!(module_root(), "docker_credential_gcp");
    }
}
