//! The effective settings: environment variables over the config file over defaults.
//!
//! Each setting is one row of [`SPECS`] (its config-file key, its variable and its help), and
//! one line of [`Settings::resolve`] that names how to parse it and its default. Every value
//! remembers where it came from, so `docker-credential-gcp config` can explain itself. This
//! module reads the environment and at most one small file; it must stay cheap because it runs
//! on every `get`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use log::LevelFilter;
use serde_json::{Map, Value};

use crate::hosts::{self, ExtraHost};
use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::BaseDirs;
use crate::util::{env, logging};

/// One setting: its key in the config file, its environment variable and what it does.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) key: &'static str,
    pub(crate) env: &'static str,
    pub(crate) help: &'static str,
}

pub(crate) const TOKEN_SOURCES: Spec = Spec {
    key: "token_sources",
    env: "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES",
    help: "comma list of adc, gcloud, metadata, tried in order (default adc,gcloud,metadata)",
};
pub(crate) const REGISTRIES: Spec = Spec {
    key: "registries",
    env: "DOCKER_CREDENTIAL_GCP_REGISTRIES",
    help: "extra host[:port] list to treat as Google registries (e.g. a proxy in front of Artifact Registry)",
};
pub(crate) const CACHE_DIR: Spec = Spec {
    key: "cache_dir",
    env: "DOCKER_CREDENTIAL_GCP_CACHE_DIR",
    help: "token cache directory",
};
pub(crate) const NO_CACHE: Spec = Spec {
    key: "no_cache",
    env: "DOCKER_CREDENTIAL_GCP_NO_CACHE",
    help: "1 to never cache tokens",
};
pub(crate) const TIMEOUT: Spec = Spec {
    key: "timeout",
    env: "DOCKER_CREDENTIAL_GCP_TIMEOUT",
    help: "seconds allowed for minting a token (default 15)",
};
pub(crate) const LOG: Spec = Spec {
    key: "log",
    env: "DOCKER_CREDENTIAL_GCP_LOG",
    help: "error, warn (default), info or debug; to stderr",
};
pub(crate) const LOG_FILE: Spec = Spec {
    key: "log_file",
    env: "DOCKER_CREDENTIAL_GCP_LOG_FILE",
    help: "also append log lines to this file",
};
pub(crate) const CA_FILE: Spec = Spec {
    key: "ca_file",
    env: "DOCKER_CREDENTIAL_GCP_CA_FILE",
    help: "extra CA certificates (PEM) for HTTPS, added to the OS roots (e.g. a TLS-inspecting proxy's)",
};

pub(crate) const REFRESH_AHEAD: Spec = Spec {
    key: "refresh_ahead",
    env: "DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD",
    help: "minutes before expiry to refresh a cached token in the background (default 15; 0 off)",
};

/// Every setting, in the order `config` and `--help` show them.
pub(crate) const SPECS: [&Spec; 9] = [
    &TOKEN_SOURCES,
    &REGISTRIES,
    &CACHE_DIR,
    &NO_CACHE,
    &TIMEOUT,
    &REFRESH_AHEAD,
    &LOG,
    &LOG_FILE,
    &CA_FILE,
];

/// The token sources, in the order the user wants them tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Adc,
    Gcloud,
    Metadata,
}

impl SourceKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SourceKind::Adc => "adc",
            SourceKind::Gcloud => "gcloud",
            SourceKind::Metadata => "metadata",
        }
    }

    fn parse(s: &str) -> Option<SourceKind> {
        [SourceKind::Adc, SourceKind::Gcloud, SourceKind::Metadata]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
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
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) token_sources: Setting<Vec<SourceKind>>,
    pub(crate) registries: Setting<Vec<ExtraHost>>,
    /// `None` when neither a setting nor the platform names a cache directory.
    pub(crate) cache_dir: Setting<Option<PathBuf>>,
    pub(crate) no_cache: Setting<bool>,
    pub(crate) timeout: Setting<Duration>,
    /// Zero turns refreshing ahead off.
    pub(crate) refresh_ahead: Setting<Duration>,
    pub(crate) log_level: Setting<LevelFilter>,
    pub(crate) log_file: Setting<Option<PathBuf>>,
    /// Extra certificate authorities (read only when a token is minted).
    pub(crate) ca_file: Setting<Option<PathBuf>>,
    /// The config file consulted, and whether it existed.
    pub(crate) config_file: Option<(PathBuf, bool)>,
    /// Problems that did not stop the program: invalid list entries that were skipped,
    /// unknown keys in the config file.
    pub(crate) warnings: Vec<String>,
    /// Where the index of `docker login` credentials lives (the platform's user data
    /// directory; not a setting, but resolved here once with the other directories).
    pub(crate) data_dir: Option<PathBuf>,
}

pub(crate) const DEFAULT_SOURCES: [SourceKind; 3] =
    [SourceKind::Adc, SourceKind::Gcloud, SourceKind::Metadata];
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(15 * 60);
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Where raw values come from: a variable lookup and the parsed config file.
struct Inputs<'a> {
    env: &'a dyn Fn(&str) -> Option<OsString>,
    file: Option<&'a Map<String, Value>>,
}

impl Inputs<'_> {
    /// The raw text of `spec` and its origin: the variable, else the config file's key.
    fn raw(&self, spec: &Spec) -> Result<Option<(String, Origin)>> {
        if let Some(v) = (self.env)(spec.env) {
            let v = v
                .into_string()
                .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", spec.env))?;
            return Ok(Some((v, Origin::Env(spec.env))));
        }
        match self.file.and_then(|f| f.get(spec.key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some((file_value_as_text(spec.key, v)?, Origin::File))),
        }
    }

    /// A path-valued setting, or `default` when it is set nowhere. The variable is taken as
    /// the OS gives it (any bytes, like HOME); the path must be absolute, as one relative to
    /// wherever docker runs the helper would name a different file each time.
    fn path(
        &self,
        spec: &Spec,
        default: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Setting<Option<PathBuf>>> {
        let (path, origin) = match (self.env)(spec.env) {
            Some(v) => (PathBuf::from(v), Origin::Env(spec.env)),
            None => match self.file.and_then(|f| f.get(spec.key)) {
                None | Some(Value::Null) => {
                    return Ok(Setting {
                        value: default(),
                        origin: Origin::Default,
                    });
                }
                Some(v) => (
                    PathBuf::from(file_value_as_text(spec.key, v)?),
                    Origin::File,
                ),
            },
        };
        if !path.is_absolute() {
            let or_default = match origin {
                Origin::Env(var) => format!("unset {var}"),
                _ => format!("remove {:?} from the config file", spec.key),
            };
            bail!(
                "invalid {} ({origin}): {path:?} is not an absolute path; give the full path (`~` \
                 is not expanded), or {or_default} for the default",
                spec.key,
            );
        }
        Ok(Setting {
            value: Some(path),
            origin,
        })
    }

    /// The parsed value of `spec`, or `default` when it is set nowhere.
    fn get<T>(
        &self,
        spec: &Spec,
        parse: impl FnOnce(&str) -> Result<T>,
        default: impl FnOnce() -> T,
    ) -> Result<Setting<T>> {
        match self.raw(spec)? {
            Some((text, origin)) => {
                let value =
                    parse(&text).with_context(|| format!("invalid {} ({origin})", spec.key))?;
                Ok(Setting { value, origin })
            }
            None => Ok(Setting {
                value: default(),
                origin: Origin::Default,
            }),
        }
    }
}

impl Settings {
    /// Reads the environment and the config file. Invalid values are errors that name the
    /// variable or key, so a typo is not silently ignored; an invalid entry in a list of
    /// registries is skipped with a warning, so one typo does not break every pull.
    pub(crate) fn load() -> Result<Settings> {
        let dirs = BaseDirs::current();
        let path = dirs.config_file();
        let file = match &path {
            Some(p) => read_config_file(p)?,
            None => None,
        };
        let config_file = path.map(|p| (p, file.is_some()));
        Self::resolve(&env::var_os, file.as_ref(), config_file, &dirs)
    }

    fn resolve(
        env: &dyn Fn(&str) -> Option<OsString>,
        file: Option<&Map<String, Value>>,
        config_file: Option<(PathBuf, bool)>,
        dirs: &BaseDirs,
    ) -> Result<Settings> {
        let inputs = Inputs { env, file };
        let mut warnings = Vec::new();
        let registries = inputs.get(
            &REGISTRIES,
            |v| Ok(lenient_hosts(v, &mut warnings)),
            Vec::new,
        )?;
        if let Some(file) = file {
            for key in file.keys().filter(|k| !SPECS.iter().any(|s| s.key == *k)) {
                warnings.push(format!("unknown key {key:?} in the config file (ignored)"));
            }
        }
        Ok(Settings {
            token_sources: inputs
                .get(&TOKEN_SOURCES, parse_sources, || DEFAULT_SOURCES.to_vec())?,
            registries,
            cache_dir: inputs.path(&CACHE_DIR, || dirs.cache_dir())?,
            no_cache: inputs.get(&NO_CACHE, parse_bool, || false)?,
            timeout: inputs.get(&TIMEOUT, parse_timeout, || DEFAULT_TIMEOUT)?,
            refresh_ahead: inputs.get(&REFRESH_AHEAD, parse_minutes, || DEFAULT_REFRESH_AHEAD)?,
            log_level: inputs.get(&LOG, logging::parse_level, || LevelFilter::Warn)?,
            log_file: inputs.path(&LOG_FILE, || None)?,
            ca_file: inputs.path(&CA_FILE, || None)?,
            config_file,
            warnings,
            data_dir: dirs.data_dir(),
        })
    }

    /// The cache directory to use, or `None` when caching is off or impossible.
    pub(crate) fn effective_cache_dir(&self) -> Option<&std::path::Path> {
        if self.no_cache.value {
            None
        } else {
            self.cache_dir.value.as_deref()
        }
    }

    /// Each setting's key, value as text and origin, in [`SPECS`] order.
    pub(crate) fn rows(&self) -> Vec<(&'static str, String, &Origin)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(none)".to_owned(), |p| p.display().to_string())
        };
        let sources: Vec<&str> = self.token_sources.value.iter().map(|k| k.name()).collect();
        let hosts: Vec<String> = self
            .registries
            .value
            .iter()
            .map(|h| h.to_string())
            .collect();
        vec![
            (
                TOKEN_SOURCES.key,
                sources.join(","),
                &self.token_sources.origin,
            ),
            (REGISTRIES.key, hosts.join(","), &self.registries.origin),
            (
                CACHE_DIR.key,
                path(&self.cache_dir.value),
                &self.cache_dir.origin,
            ),
            (
                NO_CACHE.key,
                self.no_cache.value.to_string(),
                &self.no_cache.origin,
            ),
            (
                TIMEOUT.key,
                format!("{}s", self.timeout.value.as_secs_f64()),
                &self.timeout.origin,
            ),
            (
                REFRESH_AHEAD.key,
                format!("{}m", self.refresh_ahead.value.as_secs() / 60),
                &self.refresh_ahead.origin,
            ),
            (
                LOG.key,
                self.log_level.value.as_str().to_ascii_lowercase(),
                &self.log_level.origin,
            ),
            (
                LOG_FILE.key,
                path(&self.log_file.value),
                &self.log_file.origin,
            ),
            (CA_FILE.key, path(&self.ca_file.value), &self.ca_file.origin),
        ]
    }
}

/// Sets up logging from these settings and reports their warnings through it.
pub(crate) fn init_logging(settings: &Settings) {
    logging::init(settings.log_level.value, settings.log_file.value.clone());
    for w in &settings.warnings {
        log::warn!("{w}");
    }
}

fn read_config_file(path: &std::path::Path) -> Result<Option<Map<String, Value>>> {
    let Some(bytes) = files::read_bounded(path, MAX_CONFIG_FILE, Symlinks::Follow, Trust::Anyone)?
    else {
        return Ok(None);
    };
    match serde_json::from_slice::<Value>(&bytes) {
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

/// The valid `host[:port]` entries of a list; each invalid one becomes a warning.
fn lenient_hosts(list: &str, warnings: &mut Vec<String>) -> Vec<ExtraHost> {
    let mut valid = Vec::new();
    for entry in hosts::split_list(list) {
        match hosts::parse_host_entry(entry) {
            Ok(h) => valid.push(h),
            Err(e) => warnings.push(format!("{}: skipping {e}", REGISTRIES.key)),
        }
    }
    valid
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

pub(crate) fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => bail!("{other:?} is not a boolean (use 1 or 0)"),
    }
}

/// Whole minutes from 0 (off) to 60: a Google token lives an hour.
fn parse_minutes(v: &str) -> Result<Duration> {
    let minutes: u64 = v
        .trim()
        .parse()
        .ok()
        .filter(|m| *m <= 60)
        .with_context(|| format!("{v:?} is not a whole number of minutes from 0 to 60"))?;
    Ok(Duration::from_secs(minutes * 60))
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
    use std::path::Path;

    fn resolve(env: &[(&'static str, &str)], file: Option<&str>) -> Result<Settings> {
        let env: HashMap<&str, OsString> =
            env.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
        let lookup = move |k: &str| env.get(k).cloned();
        let file = file.map(|f| match serde_json::from_str(f).unwrap() {
            Value::Object(m) => m,
            _ => panic!("test file must be an object"),
        });
        let dirs = BaseDirs {
            cache: Some("/home/a/.cache".into()),
            ..BaseDirs::default()
        };
        Settings::resolve(&lookup, file.as_ref(), None, &dirs)
    }

    #[test]
    fn defaults_apply_without_env_or_file() {
        let s = resolve(&[], None).unwrap();
        assert_eq!(s.token_sources.value, DEFAULT_SOURCES.to_vec());
        assert_eq!(s.token_sources.origin, Origin::Default);
        assert_eq!(s.timeout.value, Duration::from_secs(15));
        assert!(!s.no_cache.value);
        assert_eq!(s.log_level.value, LevelFilter::Warn);
        assert!(s.registries.value.is_empty());
        assert_eq!(
            s.cache_dir.value.as_deref(),
            Some(Path::new("/home/a/.cache/docker-credential-gcp"))
        );
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn path_settings_take_any_bytes_and_must_be_absolute() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let raw = std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9").to_owned();
            let lookup = move |k: &str| (k == CACHE_DIR.env).then(|| raw.clone());
            let s = Settings::resolve(&lookup, None, None, &BaseDirs::default()).unwrap();
            assert_eq!(
                s.cache_dir.value.unwrap().as_os_str().as_bytes(),
                b"/tmp/caf\xe9"
            );
        }
        for spec in [&CACHE_DIR, &LOG_FILE, &CA_FILE] {
            for relative in ["cache", "./x", "~/x", "../x"] {
                let e = resolve(&[(spec.env, relative)], None)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(spec.env) && e.contains("absolute"), "{e}");
                let file = serde_json::json!({ spec.key: relative }).to_string();
                let e = resolve(&[], Some(&file)).unwrap_err().to_string();
                assert!(
                    e.contains(spec.key) && e.contains("config file") && e.contains("absolute"),
                    "{e}"
                );
            }
            let s = resolve(&[(spec.env, "/abs/x")], None).unwrap();
            let value = match spec.key {
                "cache_dir" => s.cache_dir.value,
                "log_file" => s.log_file.value,
                _ => s.ca_file.value,
            };
            assert_eq!(value.as_deref(), Some(Path::new("/abs/x")));
        }
    }

    #[test]
    fn env_wins_over_the_config_file() {
        let s = resolve(
            &[
                (TOKEN_SOURCES.env, "metadata,adc"),
                (TIMEOUT.env, "2.5"),
            ],
            Some(r#"{"token_sources":["gcloud"],"timeout":30,"no_cache":true,"registries":"a.example,b.example:5000"}"#),
        )
        .unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Metadata, SourceKind::Adc]
        );
        assert_eq!(s.token_sources.origin, Origin::Env(TOKEN_SOURCES.env));
        assert_eq!(s.timeout.value, Duration::from_millis(2500));
        assert!(s.no_cache.value);
        assert_eq!(s.no_cache.origin, Origin::File);
        assert_eq!(s.registries.value.len(), 2);
        assert_eq!(s.registries.value[1].port, Some(5000));
    }

    #[test]
    fn invalid_values_are_errors_that_name_the_setting() {
        for (env, needle) in [
            ((TOKEN_SOURCES.env, "adc,keychain"), "keychain"),
            ((TOKEN_SOURCES.env, ","), "no token source"),
            ((TIMEOUT.env, "soon"), TIMEOUT.env),
            ((TIMEOUT.env, "-1"), TIMEOUT.env),
            ((NO_CACHE.env, "maybe"), NO_CACHE.env),
            ((LOG.env, "loud"), LOG.env),
            ((REFRESH_AHEAD.env, "61"), REFRESH_AHEAD.env),
            ((REFRESH_AHEAD.env, "soon"), REFRESH_AHEAD.env),
        ] {
            let err = format!("{:#}", resolve(&[env], None).unwrap_err());
            assert!(err.contains(needle), "{env:?}: {err}");
        }
        let err = format!("{:#}", resolve(&[], Some(r#"{"timeout":{}}"#)).unwrap_err());
        assert!(err.contains("timeout"), "{err}");
    }

    #[test]
    fn an_invalid_registry_entry_is_skipped_with_a_warning_and_the_rest_kept() {
        let s = resolve(
            &[(
                REGISTRIES.env,
                "good.example, https://bad.example ,ok.example:5000",
            )],
            None,
        )
        .unwrap();
        let hosts: Vec<String> = s.registries.value.iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["good.example", "ok.example:5000"]);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].contains("https://bad.example"),
            "{:?}",
            s.warnings
        );
        let s = resolve(
            &[],
            Some(r#"{"registries":["x.example","a b"],"colour":1}"#),
        )
        .unwrap();
        assert_eq!(s.registries.value.len(), 1);
        assert!(
            s.warnings.iter().any(|w| w.contains("\"a b\"")),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("unknown key \"colour\""))
        );
    }

    #[test]
    fn duplicate_sources_are_tried_once() {
        let s = resolve(&[(TOKEN_SOURCES.env, "gcloud, GCLOUD ,adc")], None).unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Gcloud, SourceKind::Adc]
        );
    }

    #[test]
    fn no_cache_turns_the_cache_directory_off() {
        let s = resolve(&[(CACHE_DIR.env, "/tmp/x"), (NO_CACHE.env, "1")], None).unwrap();
        assert_eq!(s.effective_cache_dir(), None);
        let s = resolve(&[(CACHE_DIR.env, "/tmp/x")], None).unwrap();
        assert_eq!(s.effective_cache_dir(), Some(Path::new("/tmp/x")));
    }

    #[test]
    fn every_setting_has_a_row_and_a_unique_key_and_variable() {
        let s = resolve(&[], None).unwrap();
        let keys: Vec<&str> = s.rows().iter().map(|r| r.0).collect();
        let specs: Vec<&str> = SPECS.iter().map(|s| s.key).collect();
        assert_eq!(keys, specs);
        let mut vars: Vec<&str> = SPECS.iter().map(|s| s.env).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), SPECS.len());
    }
}
