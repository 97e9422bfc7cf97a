//! The one place that reads environment variables (clippy.toml bans `std::env::var` elsewhere).
//!
//! An empty variable counts as unset everywhere in this program, as it does for most tools
//! (`GOOGLE_APPLICATION_CREDENTIALS=` must not name the current directory).

#![allow(clippy::disallowed_methods)]

use std::ffi::OsString;

/// The variable's value, unless it is unset or empty.
pub(crate) fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The variable's value as text, unless it is unset, empty or not UTF-8.
pub(crate) fn var(name: &str) -> Option<String> {
    var_os(name).and_then(|v| v.into_string().ok())
}

/// Whether the variable is set to exactly `value`.
pub(crate) fn is(name: &str, value: &str) -> bool {
    var(name).as_deref() == Some(value)
}

/// Every variable whose name starts with `prefix`, sorted by name (values lossily decoded).
pub(crate) fn with_prefix(prefix: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with(prefix)
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    vars.sort();
    vars
}
