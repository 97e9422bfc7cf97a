//! The effective settings: environment variables over the config file over defaults.
//!
//! Each setting is one row of the `settings!` table below: its field, config-file key,
//! variable, help, parser, default and how `config` shows it. Every value remembers where it
//! came from, so `docker-credential-gcp config` can explain itself. The identity rules
//! (`identities`, a list of objects) live in the config file only, beside the table
//! ([`identities`]). This module reads the environment and at most one small file; it must
//! stay cheap because it runs on every `get`.

pub(crate) mod identities;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use log::LevelFilter;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::hosts::{self, ExtraHost};
use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::BaseDirs;
use crate::util::text::json_error;
use crate::util::{env, logging};
pub(crate) use identities::{Rule, SCOPE_CLOUD_PLATFORM, SCOPE_READ_ONLY};

/// One setting as `--help` and the config file know it: its key in the config file, its
/// environment variable and what it does.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) key: &'static str,
    pub(crate) env: &'static str,
    pub(crate) help: &'static str,
}

/// Declares the settings from one table (invoked once, below): each row becomes a field of
/// [`Settings`], an entry of [`SPECS`], a line of `Settings::from_inputs` and a row of
/// [`Settings::rows`]. A row gives the field and its type, the key, the variable, the help,
/// how to parse the value (the variable's bytes as the OS gives them, or the config file's
/// text; with the warnings list, for entries skipped rather than refused),
/// the default, and how `config` shows the value.
macro_rules! settings {
    ($(
        $(#[$doc:meta])*
        $field:ident: $ty:ty {
            key: $key:literal,
            env: $env:literal,
            help: $help:literal,
            parse: $parse:expr,
            default: $default:expr,
            show: $show:expr $(,)?
        }
    )*) => {
        /// Every setting, in the order `config` and `--help` show them.
        pub(crate) const SPECS: &[Spec] = &[$(Spec { key: $key, env: $env, help: $help }),*];

        #[derive(Debug, Clone)]
        pub(crate) struct Settings {
            $($(#[$doc])* pub(crate) $field: Setting<$ty>,)*
            /// The config file consulted, and whether it existed.
            pub(crate) config_file: Option<(PathBuf, bool)>,
            /// Problems that did not stop the program: invalid list entries that were skipped,
            /// unknown keys in the config file.
            pub(crate) warnings: Vec<String>,
            /// The identity rules as written (`identities` in the config file), read when an
            /// address needs one ([`Settings::rule_for`]) or in full ([`Settings::rules`]).
            identities: Option<Box<RawValue>>,
            /// Where the index of `docker login` credentials lives (the platform's user data
            /// directory; not a setting, but resolved here once with the other directories).
            pub(crate) data_dir: Option<PathBuf>,
        }

        impl Settings {
            /// Each setting from `inputs`, else its default.
            fn from_inputs(
                inputs: &Inputs<'_>,
                dirs: &BaseDirs,
                config_file: Option<(PathBuf, bool)>,
            ) -> Result<Settings> {
                let mut warnings = Vec::new();
                // SPECS has the rows in this order (one static table, not a copy per row).
                let mut specs = SPECS.iter();
                // Built in place, field by field in table order.
                Ok(Settings {
                    $($field: {
                        let parse: fn(&OsStr, &mut Vec<String>) -> Result<$ty> = $parse;
                        let default: fn(&BaseDirs) -> $ty = $default;
                        inputs.get(
                            specs.next().expect("one spec per row"),
                            |text| parse(text, &mut warnings),
                            || default(dirs),
                        )?
                    },)*
                    config_file,
                    warnings,
                    identities: None,
                    data_dir: dirs.data_dir(),
                })
            }

            /// Each setting's key, value as text and origin, in [`SPECS`] order.
            pub(crate) fn rows(&self) -> Vec<(&'static str, String, &Origin)> {
                vec![$({
                    let show: fn(&$ty) -> String = $show;
                    ($key, show(&self.$field.value), &self.$field.origin)
                }),*]
            }
        }
    };
}

settings! {
    token_sources: Vec<SourceKind> {
        key: "token_sources",
        env: "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES",
        help: "comma list of adc, gcloud, metadata, tried in order (default adc,gcloud,metadata)",
        parse: |v, _| parse_sources(text(v)?),
        default: |_| DEFAULT_SOURCES.to_vec(),
        show: |v| v.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
    }
    registries: Vec<ExtraHost> {
        key: "registries",
        env: "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        help: "extra host[:port] list to treat as Google registries (e.g. a proxy in front of Artifact Registry)",
        parse: |v, warnings| Ok(lenient_hosts(text(v)?, warnings)),
        default: |_| Vec::new(),
        show: |v| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
    }
    /// `None` when neither a setting nor the platform names a cache directory.
    cache_dir: Option<PathBuf> {
        key: "cache_dir",
        env: "DOCKER_CREDENTIAL_GCP_CACHE_DIR",
        help: "token cache directory",
        parse: |v, _| absolute_path(v).map(Some),
        default: BaseDirs::cache_dir,
        show: show_path,
    }
    no_cache: bool {
        key: "no_cache",
        env: "DOCKER_CREDENTIAL_GCP_NO_CACHE",
        help: "1 to never cache tokens",
        parse: |v, _| parse_bool(text(v)?),
        default: |_| false,
        show: ToString::to_string,
    }
    timeout: Duration {
        key: "timeout",
        env: "DOCKER_CREDENTIAL_GCP_TIMEOUT",
        help: "seconds allowed for minting a token (default 15)",
        parse: |v, _| parse_timeout(text(v)?),
        default: |_| DEFAULT_TIMEOUT,
        show: |v| format!("{}s", v.as_secs_f64()),
    }
    /// Zero turns refreshing ahead off.
    refresh_ahead: Duration {
        key: "refresh_ahead",
        env: "DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD",
        help: "minutes before expiry to refresh a cached token in the background (default 15; 0 off)",
        parse: |v, _| parse_minutes(text(v)?),
        default: |_| DEFAULT_REFRESH_AHEAD,
        show: |v| format!("{}m", v.as_secs() / 60),
    }
    on_error: OnError {
        key: "on_error",
        env: "DOCKER_CREDENTIAL_GCP_ON_ERROR",
        help: "fail (default) or anonymous: what `get` answers when Google cannot be reached or refuses (anonymous: \"not found\", so public images still pull)",
        parse: |v, _| OnError::parse(text(v)?),
        default: |_| OnError::Fail,
        show: |v| v.name().to_owned(),
    }
    /// How long a failed mint is remembered per identity; zero: not at all.
    remember_failures: Duration {
        key: "remember_failures",
        env: "DOCKER_CREDENTIAL_GCP_REMEMBER_FAILURES",
        help: "seconds a failed mint is remembered per identity, so repeated gets answer at once (default 30; 0 off)",
        parse: |v, _| parse_remember(text(v)?),
        default: |_| DEFAULT_REMEMBER_FAILURES,
        show: |v| format!("{}s", v.as_secs()),
    }
    /// Space-separated, as OAuth sends them.
    kubelet_scopes: String {
        key: "kubelet_scopes",
        env: "DOCKER_CREDENTIAL_GCP_KUBELET_SCOPES",
        help: "OAuth scopes of the kubelet provider's tokens, comma list (default cloud-platform.read-only: the kubelet only pulls)",
        parse: |v, _| identities::parse_scopes(&hosts::split_list(text(v)?).collect::<Vec<_>>()).map_err(anyhow::Error::msg),
        default: |_| SCOPE_READ_ONLY.to_owned(),
        show: |v| v.replace(' ', ","),
    }
    log_level: LevelFilter {
        key: "log",
        env: "DOCKER_CREDENTIAL_GCP_LOG",
        help: "error, warn (default), info or debug; to stderr",
        parse: |v, _| logging::parse_level(text(v)?),
        default: |_| LevelFilter::Warn,
        show: |v| v.as_str().to_ascii_lowercase(),
    }
    log_file: Option<PathBuf> {
        key: "log_file",
        env: "DOCKER_CREDENTIAL_GCP_LOG_FILE",
        help: "also append log lines to this file",
        parse: |v, _| absolute_path(v).map(Some),
        default: |_| None,
        show: show_path,
    }
    /// Extra certificate authorities (read only when a token is minted).
    ca_file: Option<PathBuf> {
        key: "ca_file",
        env: "DOCKER_CREDENTIAL_GCP_CA_FILE",
        help: "extra CA certificates (PEM) for HTTPS, added to the OS roots (e.g. a TLS-inspecting proxy's)",
        parse: |v, _| absolute_path(v).map(Some),
        default: |_| None,
        show: show_path,
    }
}

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

    pub(crate) fn parse(s: &str) -> Option<SourceKind> {
        [SourceKind::Adc, SourceKind::Gcloud, SourceKind::Metadata]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// What `get` answers when no token can be had for a reason other than missing credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// The error, which aborts the pull.
    Fail,
    /// "not found", so the pull goes on anonymously (public images pull).
    Anonymous,
}

impl OnError {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Anonymous => "anonymous",
        }
    }

    fn parse(v: &str) -> Result<OnError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(OnError::Fail),
            "anonymous" => Ok(OnError::Anonymous),
            other => bail!("{other:?} is not fail or anonymous"),
        }
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

/// The variable that names another config file (one per CI job, say).
pub(crate) const CONFIG_VAR: &str = "DOCKER_CREDENTIAL_GCP_CONFIG";
/// The config file key of the identity rules.
pub(crate) const IDENTITIES_KEY: &str = "identities";

pub(crate) const DEFAULT_SOURCES: [SourceKind; 3] =
    [SourceKind::Adc, SourceKind::Gcloud, SourceKind::Metadata];
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(15 * 60);
pub(crate) const DEFAULT_REMEMBER_FAILURES: Duration = Duration::from_secs(30);
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Where raw values come from: a variable lookup and the parsed config file.
struct Inputs<'a> {
    env: &'a dyn Fn(&str) -> Option<OsString>,
    file: Option<&'a Map<String, Value>>,
}

/// The config file, read in one pass: the settings' values, and the identity rules as written
/// (on the cached path only the rules that cover an address are checked).
struct ConfigFile {
    values: Map<String, Value>,
    identities: Option<Box<RawValue>>,
}

impl<'de> serde::Deserialize<'de> for ConfigFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ConfigFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ConfigFile, A::Error> {
                let mut file = ConfigFile {
                    values: Map::new(),
                    identities: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == IDENTITIES_KEY {
                        file.identities = Some(map.next_value()?);
                    } else {
                        file.values.insert(key, map.next_value()?);
                    }
                }
                Ok(file)
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Inputs<'_> {
    /// The raw value of `spec` and its origin: the variable (its bytes as the OS gives them:
    /// a path need not be UTF-8), else the config file's key.
    fn raw(&self, spec: &Spec) -> Result<Option<(OsString, Origin)>> {
        if let Some(v) = (self.env)(spec.env) {
            return Ok(Some((v, Origin::Env(spec.env))));
        }
        match self.file.and_then(|f| f.get(spec.key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some((
                file_value_as_text(spec.key, v)?.into(),
                Origin::File,
            ))),
        }
    }

    /// The parsed value of `spec`, or `default` when it is set nowhere.
    fn get<T>(
        &self,
        spec: &Spec,
        parse: impl FnOnce(&OsStr) -> Result<T>,
        default: impl FnOnce() -> T,
    ) -> Result<Setting<T>> {
        match self.raw(spec)? {
            Some((raw, origin)) => {
                let value =
                    parse(&raw).with_context(|| format!("invalid {} ({origin})", spec.key))?;
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
        let named = env::var_os(CONFIG_VAR);
        let explicit = named.is_some();
        let path = dirs.config_file(named);
        let file = match &path {
            Some(p) => read_config_file(p)?,
            None => None,
        };
        if explicit && file.is_none() {
            let p = path.as_deref().unwrap_or(std::path::Path::new(""));
            bail!("{CONFIG_VAR} names {}, which does not exist", p.display());
        }
        let config_file = path.map(|p| (p, file.is_some()));
        Self::resolve(&env::var_os, file, config_file, &dirs)
    }

    fn resolve(
        env: &dyn Fn(&str) -> Option<OsString>,
        file: Option<ConfigFile>,
        config_file: Option<(PathBuf, bool)>,
        dirs: &BaseDirs,
    ) -> Result<Settings> {
        let inputs = Inputs {
            env,
            file: file.as_ref().map(|f| &f.values),
        };
        let mut settings = Settings::from_inputs(&inputs, dirs, config_file)?;
        if let Some(file) = file {
            let known = |k: &str| SPECS.iter().any(|s| s.key == k);
            for key in file.values.keys().filter(|k| !known(k)) {
                settings
                    .warnings
                    .push(format!("unknown key {key:?} in the config file (ignored)"));
            }
            settings.identities = file.identities;
        }
        Ok(settings)
    }

    /// Every identity rule, read in full: the valid ones in order and what is wrong with the
    /// others (for `config`, `doctor`, the kubelet provider).
    pub(crate) fn rules(&self) -> identities::Rules {
        match &self.identities {
            Some(raw) => identities::parse(raw, &self.registries.value),
            None => identities::Rules::default(),
        }
    }

    /// The identity rule that covers `registry` (with the repository `path` a caller passed),
    /// if any: the first valid one. Only the rules whose patterns cover the address are read
    /// in full; what is wrong with them is logged.
    pub(crate) fn rule_for(&self, registry: &hosts::Registry, path: Option<&str>) -> Option<Rule> {
        let raw = self.identities.as_ref()?;
        let (rule, problems) = identities::choose(raw, &self.registries.value, registry, path);
        for problem in problems {
            log::warn!("{problem}");
        }
        rule
    }

    /// The cache directory to use, or `None` when caching is off or impossible.
    pub(crate) fn effective_cache_dir(&self) -> Option<&std::path::Path> {
        if self.no_cache.value {
            None
        } else {
            self.cache_dir.value.as_deref()
        }
    }
}

/// A setting's value as text (every setting but the paths is text).
fn text(v: &OsStr) -> Result<&str> {
    v.to_str().context("not valid UTF-8")
}

/// A path setting, as the OS gives it (any bytes). It must be absolute: one relative to
/// wherever docker runs the helper would name a different file each time.
fn absolute_path(v: &OsStr) -> Result<PathBuf> {
    let path = PathBuf::from(v);
    if !path.is_absolute() {
        bail!(
            "{path:?} is not an absolute path; give the full path (`~` is not expanded), or \
             leave it unset for the default"
        );
    }
    Ok(path)
}

fn show_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or("(none)".to_owned(), |p| p.display().to_string())
}

/// Sets up logging from these settings and reports their warnings through it.
pub(crate) fn init_logging(settings: &Settings) {
    logging::init(settings.log_level.value, settings.log_file.value.clone());
    for w in &settings.warnings {
        log::warn!("{w}");
    }
}

fn read_config_file(path: &std::path::Path) -> Result<Option<ConfigFile>> {
    let Some(bytes) = files::read_bounded(path, MAX_CONFIG_FILE, Symlinks::Follow, Trust::Anyone)?
    else {
        return Ok(None);
    };
    parse_config(&bytes)
        .map(Some)
        .with_context(|| path.display().to_string())
}

/// The config file's values, and the identity rules kept as written beside them (a long list
/// of rules costs one scan here, not a tree of maps).
fn parse_config(bytes: &[u8]) -> Result<ConfigFile> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            anyhow::anyhow!("the config file must hold a JSON object")
        }
        _ => anyhow::anyhow!("invalid JSON ({})", json_error(&e)),
    })
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
            Err(e) => warnings.push(format!("registries: skipping {e}")),
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

/// Whole seconds from 0 (off) to 3600.
fn parse_remember(v: &str) -> Result<Duration> {
    let secs: u64 = v
        .trim()
        .trim_end_matches('s')
        .parse()
        .ok()
        .filter(|s| *s <= 3600)
        .with_context(|| format!("{v:?} is not a whole number of seconds from 0 to 3600"))?;
    Ok(Duration::from_secs(secs))
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
        let file = file.map(|f| parse_config(f.as_bytes()).unwrap());
        let dirs = BaseDirs {
            cache: Some("/home/a/.cache".into()),
            ..BaseDirs::default()
        };
        Settings::resolve(&lookup, file, None, &dirs)
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
    fn path_settings_must_be_absolute() {
        let paths = SPECS
            .iter()
            .filter(|s| s.key.ends_with("_dir") || s.key.ends_with("_file"));
        assert_eq!(paths.clone().count(), 3);
        for spec in paths {
            for relative in ["cache", "./x", "~/x", "../x"] {
                let e = format!("{:#}", resolve(&[(spec.env, relative)], None).unwrap_err());
                assert!(e.contains(spec.env) && e.contains("absolute"), "{e}");
                let file = serde_json::json!({ spec.key: relative }).to_string();
                let e = format!("{:#}", resolve(&[], Some(&file)).unwrap_err());
                assert!(
                    e.contains(spec.key) && e.contains("config file") && e.contains("absolute"),
                    "{e}"
                );
            }
            // Absolute on the OS the tests run on (`/abs/x` is not, on Windows).
            let abs = std::env::temp_dir().join("x");
            let s = resolve(&[(spec.env, abs.to_str().unwrap())], None).unwrap();
            let value = match spec.key {
                "cache_dir" => s.cache_dir.value,
                "log_file" => s.log_file.value,
                _ => s.ca_file.value,
            };
            assert_eq!(value.as_deref(), Some(abs.as_path()));
        }
    }

    #[test]
    fn env_wins_over_the_config_file() {
        let s = resolve(
            &[
                ("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata,adc"),
                ("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2.5"),
            ],
            Some(r#"{"token_sources":["gcloud"],"timeout":30,"no_cache":true,"registries":"a.example,b.example:5000"}"#),
        )
        .unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Metadata, SourceKind::Adc]
        );
        assert_eq!(
            s.token_sources.origin,
            Origin::Env("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES")
        );
        assert_eq!(s.timeout.value, Duration::from_millis(2500));
        assert!(s.no_cache.value);
        assert_eq!(s.no_cache.origin, Origin::File);
        assert_eq!(s.registries.value.len(), 2);
        assert_eq!(s.registries.value[1].port, Some(5000));
    }

    #[test]
    fn invalid_values_are_errors_that_name_the_setting() {
        for (env, needle) in [
            (
                ("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "adc,keychain"),
                "keychain",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", ","),
                "no token source",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_TIMEOUT", "soon"),
                "DOCKER_CREDENTIAL_GCP_TIMEOUT",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_TIMEOUT", "-1"),
                "DOCKER_CREDENTIAL_GCP_TIMEOUT",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_NO_CACHE", "maybe"),
                "DOCKER_CREDENTIAL_GCP_NO_CACHE",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_LOG", "loud"),
                "DOCKER_CREDENTIAL_GCP_LOG",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD", "61"),
                "DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD",
            ),
            (
                ("DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD", "soon"),
                "DOCKER_CREDENTIAL_GCP_REFRESH_AHEAD",
            ),
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
                "DOCKER_CREDENTIAL_GCP_REGISTRIES",
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
    fn identity_rules_are_read_from_the_file_and_bad_ones_reported_apart() {
        let s = resolve(
            &[],
            Some(
                r#"{"registries": "ar.corp.example", "identities": [
                    {"match": ["ar.corp.example", "gcr.io"], "source": "metadata"},
                    {"match": ["quay.io"], "source": "adc"}
                ]}"#,
            ),
        )
        .unwrap();
        let rules = s.rules();
        assert_eq!(rules.valid.len(), 1);
        assert_eq!(rules.problems.len(), 1, "{:?}", rules.problems);
        assert!(
            rules.problems[0].contains("\"quay.io\""),
            "{:?}",
            rules.problems
        );
        assert!(
            s.warnings.is_empty(),
            "identities is a known key: {:?}",
            s.warnings
        );
        let ar = hosts::normalise("ar.corp.example").unwrap();
        assert_eq!(s.rule_for(&ar, None), Some(rules.valid[0].clone()));
        assert!(resolve(&[], None).unwrap().rules().valid.is_empty());
    }

    #[test]
    fn the_config_file_must_be_a_json_object() {
        for (text, needle) in [
            ("[1]", "must hold a JSON object"),
            ("5", "must hold a JSON object"),
            ("{", "invalid JSON"),
            (r#"{"timeout": }"#, "invalid JSON"),
        ] {
            let e = format!("{:#}", parse_config(text.as_bytes()).err().unwrap());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_kubelet_pulls_with_the_read_only_scope_unless_widened() {
        let s = resolve(&[], None).unwrap();
        assert_eq!(s.kubelet_scopes.value, SCOPE_READ_ONLY);
        let s = resolve(
            &[(
                "DOCKER_CREDENTIAL_GCP_KUBELET_SCOPES",
                "cloud-platform, https://www.googleapis.com/auth/devstorage.read_only",
            )],
            None,
        )
        .unwrap();
        assert_eq!(
            s.kubelet_scopes.value,
            "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/devstorage.read_only"
        );
        let err = format!(
            "{:#}",
            resolve(&[("DOCKER_CREDENTIAL_GCP_KUBELET_SCOPES", "a b")], None).unwrap_err()
        );
        assert!(
            err.contains("DOCKER_CREDENTIAL_GCP_KUBELET_SCOPES"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_sources_are_tried_once() {
        let s = resolve(
            &[("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud, GCLOUD ,adc")],
            None,
        )
        .unwrap();
        assert_eq!(
            s.token_sources.value,
            vec![SourceKind::Gcloud, SourceKind::Adc]
        );
    }

    #[test]
    fn no_cache_turns_the_cache_directory_off() {
        // Absolute on the OS the tests run on (`/tmp/x` is not, on Windows).
        let dir = std::env::temp_dir().join("x");
        let dir_text = dir.to_str().unwrap();
        let s = resolve(
            &[
                ("DOCKER_CREDENTIAL_GCP_CACHE_DIR", dir_text),
                ("DOCKER_CREDENTIAL_GCP_NO_CACHE", "1"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.effective_cache_dir(), None);
        let s = resolve(&[("DOCKER_CREDENTIAL_GCP_CACHE_DIR", dir_text)], None).unwrap();
        assert_eq!(s.effective_cache_dir(), Some(dir.as_path()));
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
