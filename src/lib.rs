//! docker-credential-gcp: a Docker credential helper for Google Container Registry and
//! Artifact Registry.
//!
//! The crate is a library only so that fuzz targets (tests/fuzz) can reach the parsers; the
//! program is `src/main.rs`. Modules form layers, and every import points down
//! (ARCHITECTURE.md; `tests/architecture.rs` checks it):
//!
//! - entry points: [`run`] here, `cli`, `kubelet`
//! - `setup`: configure-docker, configure-mirror, doctor
//! - `helper`: the docker-credential-helpers protocol and the `docker login` store
//! - `token`: getting a Google access token (cache, sources, credential files)
//! - `net`: HTTP, proxies and TLS for minting tokens and the set-up commands' API calls
//! - `settings`, `hosts`: what the user configured; which hosts are Google registries
//! - `util`: files, processes, platform paths, secrets, logging, output
//!
//! Docker runs the helper as `docker-credential-gcp get` (or store, erase, list) with nothing
//! else on the command line; those calls go straight to the protocol without building the clap
//! parser, because a cached `get` should cost little more than starting a process.

mod cli;
mod helper;
mod hosts;
mod kubelet;
mod net;
mod settings;
mod setup;
mod token;
mod util;

use std::process::ExitCode;

use helper::protocol::{self, Verb};

/// The whole program: `main` calls this and exits with its code.
pub fn run() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (first, second) = (args.next(), args.next());
    if second.is_none()
        && let Some(verb) = first
            .as_ref()
            .and_then(|a| a.to_str())
            .and_then(Verb::parse)
    {
        return protocol::run(verb, setup::docker::hosts_mapped_here);
    }
    cli::run()
}

/// Entry points for the fuzz targets in tests/fuzz: the real parsers that take untrusted
/// input, and nothing that reaches the network. Built only under `cargo fuzz` (`cfg(fuzzing)`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_api {
    /// Normalises and classifies a server address: `host[:port]`, the host alone, and
    /// whether it is a Google registry.
    pub fn host_policy(input: &str) -> Option<(String, String, bool)> {
        let r = crate::hosts::normalise(input)?;
        let google = crate::hosts::classify(&r, &[]) == crate::hosts::HostClass::Google;
        Some((r.to_string(), r.host, google))
    }

    /// The URI policy for Bazel's requests: the host and path of a parsed `https` URI, and
    /// whether it may receive a token.
    pub fn uri_policy(uri: &str) -> Option<(String, String, bool)> {
        let u = crate::hosts::parse_https_uri(uri)?;
        let google = crate::hosts::classify_uri(&u, &[]) == crate::hosts::HostClass::Google;
        Some((u.registry.host, u.path, google))
    }

    /// A Bazel `get` request as the helper reads it: the URI and, when a token would be
    /// sent, its host; the message for stderr on error.
    pub fn bazel_request(input: &str) -> Result<(String, Option<String>), String> {
        use crate::helper::bazel;
        let request = bazel::parse_request(input)?;
        let host = match bazel::target(&request.uri, &[]) {
            bazel::Target::Google(u) => Some(u.registry.host),
            _ => None,
        };
        Ok((request.uri, host))
    }

    /// `store` input parsing: the validated host on success, the protocol answer on error.
    pub fn store_input(input: &str) -> Result<String, String> {
        crate::helper::protocol::parse_store(input).map(|r| r.host)
    }

    /// Parses and validates a credentials file the way a mint does, without minting.
    pub fn adc_file(bytes: &[u8]) -> Result<(), String> {
        crate::token::check_credentials_file(bytes).map_err(|e| format!("{e:#}"))
    }

    /// A config file as configure-docker reads it (repeated keys merged), rendered.
    pub fn parse_config(text: &[u8]) -> Option<Vec<u8>> {
        let root = crate::setup::json_file::parse(text, "config.json")
            .ok()?
            .root;
        crate::setup::json_file::render(&root).ok()
    }

    /// What configure-docker writes for `text`, or `None` where it refuses the file.
    pub fn add_cred_helpers(text: &[u8], hosts: &[String]) -> Option<Vec<u8>> {
        let mut root = crate::setup::json_file::parse(text, "config.json")
            .ok()?
            .root;
        crate::setup::configure::add_entries(&mut root, "gcp", hosts).ok()?;
        crate::setup::json_file::render(&root).ok()
    }
}
