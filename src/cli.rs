//! The command line for humans: `--help`, `version` and `config`.
//!
//! Docker's own calls (`get`, `store`, `erase`, `list` with nothing else on the command line)
//! never reach clap; `main` sends them straight to the protocol. They are declared here too so
//! that `--help` documents them and `docker-credential-gcp get --help` works.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::{self, Settings};
use crate::sources;

const AFTER_HELP: &str = "\
Set-up: put `docker-credential-gcp` on PATH and map each Google registry to it in
~/.docker/config.json, e.g. \"credHelpers\": {\"gcr.io\": \"gcp\", \"us-docker.pkg.dev\": \"gcp\"}.

Token sources, tried in order (DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES, default adc,gcloud,metadata):
  adc       GOOGLE_APPLICATION_CREDENTIALS, else gcloud's application_default_credentials.json
  gcloud    `gcloud config config-helper` (honours CLOUDSDK_CONFIG)
  metadata  the GCE/GKE metadata server (GCE_METADATA_HOST overrides its address)

Environment (wins over ~/.config/docker-credential-gcp/config.json):
  DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES  comma list of adc, gcloud, metadata
  DOCKER_CREDENTIAL_GCP_REGISTRIES     extra host[:port] list to treat as Google registries
  DOCKER_CREDENTIAL_GCP_CACHE_DIR      token cache directory
  DOCKER_CREDENTIAL_GCP_NO_CACHE=1     never cache tokens
  DOCKER_CREDENTIAL_GCP_TIMEOUT        seconds allowed for minting a token (default 15)
  DOCKER_CREDENTIAL_GCP_LOG            error, warn (default), info or debug; to stderr
  DOCKER_CREDENTIAL_GCP_LOG_FILE       also append log lines to this file";

#[derive(Parser)]
#[command(
    name = "docker-credential-gcp",
    version,
    about = "Docker credential helper for Google Container Registry and Artifact Registry",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print credentials for the registry named on stdin (docker protocol).
    ///
    /// Google registries get `oauth2accesstoken` and a Google access token; hosts with
    /// credentials stored by `docker login` get those; anything else gets "credentials not
    /// found in native keychain" and exit status 1.
    Get,
    /// Keep credentials from stdin JSON in the OS keyring (docker protocol; `docker login`).
    Store,
    /// Remove stored credentials for the registry named on stdin (docker protocol; `docker logout`).
    Erase,
    /// Print the hosts with stored credentials as JSON (docker protocol).
    List,
    /// Print the version.
    Version,
    /// Show the effective settings, where each came from, and which token sources are present.
    Config,
}

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Get => crate::protocol::run("get"),
        Command::Store => crate::protocol::run("store"),
        Command::Erase => crate::protocol::run("erase"),
        Command::List => crate::protocol::run("list"),
        Command::Version => {
            println!("docker-credential-gcp {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Config => config(),
    }
}

fn config() -> ExitCode {
    let s = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("docker-credential-gcp: configuration error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match &s.config_file {
        Some((path, true)) => println!("config file: {}", path.display()),
        Some((path, false)) => println!("config file: {} (not present)", path.display()),
        None => println!("config file: none (no config directory)"),
    }
    let path_or_none = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("(none)".to_owned(), |p| p.display().to_string())
    };
    let names: Vec<&str> = s.token_sources.value.iter().map(|k| k.name()).collect();
    let hosts: Vec<String> = s.registries.value.iter().map(|h| h.to_string()).collect();
    let rows = [
        ("token_sources", names.join(","), &s.token_sources.origin),
        ("registries", hosts.join(","), &s.registries.origin),
        (
            "cache_dir",
            path_or_none(&s.cache_dir.value),
            &s.cache_dir.origin,
        ),
        ("no_cache", s.no_cache.value.to_string(), &s.no_cache.origin),
        (
            "timeout",
            format!("{}s", s.timeout.value.as_secs_f64()),
            &s.timeout.origin,
        ),
        (
            "log",
            s.log_level.value.name().to_owned(),
            &s.log_level.origin,
        ),
        (
            "log_file",
            path_or_none(&s.log_file.value),
            &s.log_file.origin,
        ),
    ];
    for (name, value, origin) in rows {
        println!("{name:<14} {value:<40} ({origin})");
    }
    println!("token sources present (in order of use):");
    for kind in &s.token_sources.value {
        match sources::probe(*kind) {
            Some(c) => println!("  {:<9} present: {}", kind.name(), c.describe),
            None => println!("  {:<9} absent", kind.name()),
        }
    }
    if let Some((path, true)) = &s.config_file
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text)
    {
        for key in map
            .keys()
            .filter(|k| !settings::FILE_KEYS.contains(&k.as_str()))
        {
            println!(
                "warning: unknown key {key:?} in {} (ignored)",
                path.display()
            );
        }
    }
    ExitCode::SUCCESS
}
