//! docker-credential-gcp: a Docker credential helper for Google Container Registry and
//! Artifact Registry.
//!
//! `main` only routes. Docker runs the helper as `docker-credential-gcp get` (or store, erase,
//! list) with nothing else on the command line; those calls go straight to the protocol
//! without building the clap parser, because a cached `get` should cost little more than
//! starting a process. Everything else goes through clap.

mod cache;
mod checks;
mod cli;
mod config_edit;
mod configure;
mod doctor;
mod files;
mod hosts;
mod http;
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

fn main() -> ExitCode {
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
