//! The effective settings: environment variables over the config file over defaults.
//!
//! Every setting remembers where its value came from, so `docker-credential-gcp config` can
//! explain itself. This module reads the environment and at most one small file; it must stay
//! cheap because it runs on every `get`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::hosts::{self, ExtraHost};
use crate::logging::Level;

pub const ENV_TOKEN_SOURCES: &str = "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES";
pub const ENV_REGISTRIES: &str = "DOCKER_CREDENTIAL_GCP_REGISTRIES";
pub const ENV_CACHE_DIR: &str = "DOCKER_CREDENTIAL_GCP_CACHE_DIR";
pub const ENV_NO_CACHE: &str = "DOCKER_CREDENTIAL_GCP_NO_CACHE";
pub const ENV_TIMEOUT: &str = "DOCKER_CREDENTIAL_GCP_TIMEOUT";
pub const ENV_LOG: &str = "DOCKER_CREDENTIAL_GCP_LOG";
pub const ENV_LOG_FILE: &str = "DOCKER_CREDENTIAL_GCP_LOG_FILE";

/// Name of this program's directory under the user's config, cache and data directories.
pub const APP_DIR: &str = "docker-credential-gcp";

/// The token sources, in the order the user wants them tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Adc,
    Gcloud,
    Metadata,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Adc => "adc",
            SourceKind::Gcloud => "gcloud",
            SourceKind::Metadata => "metadata",
        }
    }

    fn parse(s: &str) -> Option<SourceKind> {
        match s {
            "adc" => Some(SourceKind::Adc),
            "gcloud" => Some(SourceKind::Gcloud),
            "metadata" => Some(SourceKind::Metadata),
            _ => None,
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    Env(&'static str),
    File,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::File => f.write_str("config file"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub token_sources: Setting<Vec<SourceKind>>,
    pub registries: Setting<Vec<ExtraHost>>,
    /// `None` when neither a setting nor the platform names a cache directory.
    pub cache_dir: Setting<Option<PathBuf>>,
    pub no_cache: Setting<bool>,
    pub timeout: Setting<Duration>,
    pub log_level: Setting<Level>,
    pub log_file: Setting<Option<PathBuf>>,
    /// The config file consulted, and whether it existed.
    pub config_file: Option<(PathBuf, bool)>,
}

pub const DEFAULT_SOURCES: [SourceKind; 3] =
    [SourceKind::Adc, SourceKind::Gcloud, SourceKind::Metadata];
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Settings {
    /// Reads the environment and the config file. Invalid values are errors that name the
    /// variable or key, so a typo is not silently ignored.
    pub fn load() -> Result<Settings> {
        let path = dirs::config_dir().map(|d| d.join(APP_DIR).join("config.json"));
        let file = match &path {
            Some(p) => read_config_file(p)?,
            None => None,
        };
        let config_file = path.map(|p| (p, file.is_some()));
        let env = |name: &'static str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self::resolve(&env, file.as_ref(), config_file)
    }

    fn resolve(
        env: &dyn Fn(&'static str) -> Option<std::ffi::OsString>,
        file: Option<&serde_json::Map<String, Value>>,
        config_file: Option<(PathBuf, bool)>,
    ) -> Result<Settings> {
        let pick = |name: &'static str, key: &str| -> Result<Option<(String, Origin)>> {
            if let Some(v) = env(name) {
                let v = v
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
                return Ok(Some((v, Origin::Env(name))));
            }
            match file.and_then(|f| f.get(key)) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some((file_value_as_text(key, v)?, Origin::File))),
            }
        };

        let token_sources = match pick(ENV_TOKEN_SOURCES, "token_sources")? {
            Some((v, origin)) => Setting {
                value: parse_sources(&v)
                    .with_context(|| format!("invalid token sources ({origin})"))?,
                origin,
            },
            None => Setting {
                value: DEFAULT_SOURCES.to_vec(),
                origin: Origin::Default,
            },
        };
        let registries = match pick(ENV_REGISTRIES, "registries")? {
            Some((v, origin)) => Setting {
                value: hosts::parse_host_list(&v)
                    .map_err(|e| anyhow::anyhow!("invalid registries ({origin}): {e}"))?,
                origin,
            },
            None => Setting {
                value: Vec::new(),
                origin: Origin::Default,
            },
        };
        let cache_dir = match pick(ENV_CACHE_DIR, "cache_dir")? {
            Some((v, origin)) => Setting {
                value: Some(PathBuf::from(v)),
                origin,
            },
            None => Setting {
                value: dirs::cache_dir().map(|d| d.join(APP_DIR)),
                origin: Origin::Default,
            },
        };
        let no_cache = match pick(ENV_NO_CACHE, "no_cache")? {
            Some((v, origin)) => Setting {
                value: parse_bool(&v)
                    .with_context(|| format!("invalid no_cache value ({origin})"))?,
                origin,
            },
            None => Setting {
                value: false,
                origin: Origin::Default,
            },
        };
        let timeout = match pick(ENV_TIMEOUT, "timeout")? {
            Some((v, origin)) => Setting {
                value: parse_timeout(&v).with_context(|| format!("invalid timeout ({origin})"))?,
                origin,
            },
            None => Setting {
                value: DEFAULT_TIMEOUT,
                origin: Origin::Default,
            },
        };
        let log_level = match pick(ENV_LOG, "log")? {
            Some((v, origin)) => Setting {
                value: Level::parse(&v).with_context(|| format!("invalid log level ({origin})"))?,
                origin,
            },
            None => Setting {
                value: Level::Warn,
                origin: Origin::Default,
            },
        };
        let log_file = match pick(ENV_LOG_FILE, "log_file")? {
            Some((v, origin)) => Setting {
                value: Some(PathBuf::from(v)),
                origin,
            },
            None => Setting {
                value: None,
                origin: Origin::Default,
            },
        };
        Ok(Settings {
            token_sources,
            registries,
            cache_dir,
            no_cache,
            timeout,
            log_level,
            log_file,
            config_file,
        })
    }

    /// The cache directory to use, or `None` when caching is off or impossible.
    pub fn effective_cache_dir(&self) -> Option<&Path> {
        if self.no_cache.value {
            None
        } else {
            self.cache_dir.value.as_deref()
        }
    }
}

/// Keys the config file understands; anything else is reported by `config`.
pub const FILE_KEYS: [&str; 7] = [
    "token_sources",
    "registries",
    "cache_dir",
    "no_cache",
    "timeout",
    "log",
    "log_file",
];

fn read_config_file(path: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => bail!(
            "{}: the config file must hold a JSON object",
            path.display()
        ),
        Err(e) => bail!("{}: invalid JSON: {e}", path.display()),
    }
}

/// Lists may be written as a JSON array or a comma-separated string; numbers and booleans as
/// themselves or as strings.
fn file_value_as_text(key: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.as_str()),
                _ => bail!("config file key {key:?}: list items must be strings"),
            })
            .collect::<Result<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => bail!("config file key {key:?}: unexpected value"),
    }
}

fn parse_sources(v: &str) -> Result<Vec<SourceKind>> {
    let mut out = Vec::new();
    for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = SourceKind::parse(&name.to_ascii_lowercase()).with_context(|| {
            format!("unknown token source {name:?}; expected a comma list of adc, gcloud, metadata")
        })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        bail!("no token source given; expected a comma list of adc, gcloud, metadata");
    }
    Ok(out)
}

fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => bail!("{other:?} is not a boolean (use 1 or 0)"),
    }
}

fn parse_timeout(v: &str) -> Result<Duration> {
    let secs: f64 = v
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .with_context(|| format!("{v:?} is not a number of seconds between 0 and 3600"))?;
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn resolve(env: &[(&'static str, &str)], file: Option<&str>) -> Result<Settings> {
        let env: HashMap<&str, OsString> =
            env.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
        let lookup = move |k: &'static str| env.get(k).cloned();
        let file = file.map(|f| match serde_json::from_str(f).unwrap() {
            Value::Object(m) => m,
            _ => panic!("test file must be an object"),
        });
        Settings::resolve(&lookup, file.as_ref(), None)
    }

    #[test]
    fn defaults_apply_without_env_or_file() {
        let s = resolve(&[], None).unwrap();
        assert_eq!(s.token_sources.value, DEFAULT_SOURCES.to_vec());
        assert_eq!(s.token_sources.origin, Origin::Default);
        assert_eq!(s.timeout.value, Duration::from_secs(15));
        assert!(!s.no_cache.value);
        assert_eq!(s.log_level.value, Level::Warn);
        assert!(s.registries.value.is_empty());
    }

    #[test]
    fn env_wins_over_the_config_file() {
        let s = resolve(
            &[(ENV_TOKEN_SOURCES, "metadata,adc"), (ENV_TIMEOUT, "2.5")],
            Some(r#"{"token_sources":["gcloud"],"timeout":30,"no_cache":true,"registries":"a.example,b.example:5000"}"#),
        )
        .unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Metadata, SourceKind::Adc]
        );
        assert_eq!(s.token_sources.origin, Origin::Env(ENV_TOKEN_SOURCES));
        assert_eq!(s.timeout.value, Duration::from_millis(2500));
        assert!(s.no_cache.value);
        assert_eq!(s.no_cache.origin, Origin::File);
        assert_eq!(s.registries.value.len(), 2);
        assert_eq!(s.registries.value[1].port, Some(5000));
    }

    #[test]
    fn invalid_values_are_errors_that_name_the_setting() {
        for (env, needle) in [
            ((ENV_TOKEN_SOURCES, "adc,keychain"), "keychain"),
            ((ENV_TOKEN_SOURCES, ","), "no token source"),
            ((ENV_TIMEOUT, "soon"), ENV_TIMEOUT),
            ((ENV_TIMEOUT, "-1"), ENV_TIMEOUT),
            ((ENV_NO_CACHE, "maybe"), ENV_NO_CACHE),
            ((ENV_LOG, "loud"), ENV_LOG),
            ((ENV_REGISTRIES, "https://x.example"), ENV_REGISTRIES),
        ] {
            let err = format!("{:#}", resolve(&[env], None).unwrap_err());
            assert!(err.contains(needle), "{env:?}: {err}");
        }
        let err = format!("{:#}", resolve(&[], Some(r#"{"timeout":{}}"#)).unwrap_err());
        assert!(err.contains("timeout"), "{err}");
    }

    #[test]
    fn duplicate_sources_are_tried_once() {
        let s = resolve(&[(ENV_TOKEN_SOURCES, "gcloud, GCLOUD ,adc")], None).unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Gcloud, SourceKind::Adc]
        );
    }

    #[test]
    fn no_cache_turns_the_cache_directory_off() {
        let s = resolve(&[(ENV_CACHE_DIR, "/tmp/x"), (ENV_NO_CACHE, "1")], None).unwrap();
        assert_eq!(s.effective_cache_dir(), None);
        let s = resolve(&[(ENV_CACHE_DIR, "/tmp/x")], None).unwrap();
        assert_eq!(s.effective_cache_dir(), Some(Path::new("/tmp/x")));
    }
}
