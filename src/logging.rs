//! Diagnostics on stderr and, optionally, appended to a log file.
//!
//! Docker captures a helper's stdout as the protocol answer, so every human-facing message goes
//! to stderr. Callers pass messages that never contain secrets: tokens travel in
//! [`crate::secret::Secret`], whose formatting prints `REDACTED`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Result<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            other => bail!("{other:?} is not one of error, warn, info, debug"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

struct Logger {
    level: Level,
    file: Option<PathBuf>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the level and log file once per process; later calls are ignored.
pub fn init(level: Level, file: Option<PathBuf>) {
    let _ = LOGGER.set(Logger { level, file });
}

pub fn enabled(level: Level) -> bool {
    level <= LOGGER.get().map_or(Level::Warn, |l| l.level)
}

/// Writes one line at `level` if that level is enabled.
pub fn log(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    let line = format!("docker-credential-gcp: {}: {message}\n", level.name());
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = LOGGER.get().and_then(|l| l.file.as_ref()) {
        let _ = append(path, &line);
    }
}

fn append(path: &PathBuf, line: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    f.write_all(format!("{stamp} pid={} {line}", std::process::id()).as_bytes())
}

/// `warn!("...", args)`: formats only when the level is enabled.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::logging::log_fmt($crate::logging::Level::Warn, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::logging::log_fmt($crate::logging::Level::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::logging::log_fmt($crate::logging::Level::Debug, format_args!($($arg)*)) };
}

pub fn log_fmt(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        log(level, &args.to_string());
    }
}
