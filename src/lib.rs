//! docker-credential-gcp: a Docker credential helper for Google Container Registry and
//! Artifact Registry.
//!
//! The crate is a library only so that fuzz targets (tests/fuzz) can reach the parsers; the
//! program is `src/main.rs`. [`run`] only routes. Docker runs the helper as
//! `docker-credential-gcp get` (or store, erase, list) with nothing else on the command line;
//! those calls go straight to the protocol without building the clap parser, because a cached
//! `get` should cost little more than starting a process. Everything else goes through clap.

mod cache;
mod checks;
mod cli;
mod config_edit;
mod configure;
mod doctor;
mod files;
mod hosts;
mod http;
mod kubelet;
mod logging;
mod mirror;
mod process;
mod protocol;
mod registries;
mod secret;
mod settings;
mod sources;
mod store;
mod tokens;

use std::process::ExitCode;

/// The whole program: `main` calls this and exits with its code.
pub fn run() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (first, second) = (args.next(), args.next());
    if second.is_none()
        && let Some(verb) = first.as_ref().and_then(|a| a.to_str())
        && matches!(verb, "get" | "store" | "erase" | "list")
    {
        return protocol::run(verb);
    }
    cli::run()
}

/// Entry points for the fuzz targets in tests/fuzz: the parsers that take untrusted input.
/// Not a stable API.
#[doc(hidden)]
pub mod fuzz_api {
    use std::path::Path;
    use std::time::Instant;

    pub use crate::hosts::{HostClass, Registry, classify, normalise};

    /// `store` input parsing: the validated host on success, the protocol answer on error.
    pub fn store_input(input: &str) -> Result<String, String> {
        crate::protocol::parse_store(input).map(|r| r.host)
    }

    /// Reads and mints from an ADC file with a deadline that has already passed, so every
    /// parser runs and nothing reaches the network.
    pub fn adc_file(path: &Path) -> anyhow::Result<()> {
        let mut ctx = crate::sources::MintContext::new(Instant::now());
        crate::sources::mint_adc_file(path, &mut ctx).map(|_| ())
    }

    /// Adds our credHelpers entries to a config.json text and renders it; `None` if the text
    /// is not a JSON object (configure-docker refuses those).
    pub fn add_cred_helpers(text: &[u8], hosts: &[String]) -> Option<Vec<u8>> {
        let serde_json::Value::Object(mut root) = serde_json::from_slice(text).ok()? else {
            return None;
        };
        if root.get("credHelpers").is_some_and(|v| !v.is_object()) {
            return None;
        }
        crate::configure::add_entries(&mut root, "gcp", hosts);
        crate::config_edit::render_map(&root).ok()
    }
}
