//! The command line for humans: `--help`, `version` and `config`.
//!
//! Docker's own calls (`get`, `store`, `erase`, `list` with nothing else on the command line)
//! never reach clap; `main` sends them straight to the protocol. They are declared here too so
//! that `--help` documents them and `docker-credential-gcp get --help` works.

use std::process::ExitCode;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Map Google registries to this helper in docker's config.json (credHelpers).
    ///
    /// Adds "HOST": "gcp" entries (the name follows this binary's file name) for gcr.io,
    /// us.gcr.io, eu.gcr.io, asia.gcr.io, marketplace.gcr.io and staging-k8s.gcr.io, or the
    /// hosts given with --registries, plus the hosts declared in DOCKER_CREDENTIAL_GCP_REGISTRIES
    /// or the config file. Every other key in the file is kept, in order; the file is replaced
    /// atomically, keeps its mode, and is never written if it is malformed. Running it again
    /// changes nothing. skopeo, podman and buildah read the same credHelpers.
    ConfigureDocker {
        /// Comma-separated hosts to configure instead of the default Container Registry hosts.
        #[arg(long, value_name = "HOST,...")]
        registries: Option<String>,
        /// Also add every Artifact Registry host (REGION-docker.pkg.dev, docker.REGION.rep.pkg.dev).
        #[arg(long)]
        include_artifact_registry: bool,
        /// Print the change as a diff and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove this helper's entries (only those) instead of adding them.
        #[arg(long)]
        remove: bool,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// The docker config file (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
        #[arg(long, value_name = "PATH")]
        config: Option<std::path::PathBuf>,
    },
    /// Use mirror.gcr.io (Google's cache of Docker Hub images) from dockerd, containerd or podman.
    ///
    /// By default adds https://mirror.gcr.io to registry-mirrors in /etc/docker/daemon.json.
    /// --containerd writes certs.d/docker.io/hosts.toml; --podman adds a docker.io mirror to
    /// registries.conf. Everything already in those files is kept.
    ConfigureMirror {
        /// dockerd's daemon.json (default /etc/docker/daemon.json).
        #[arg(long, value_name = "PATH")]
        daemon_json: Option<std::path::PathBuf>,
        /// Configure containerd (hosts.toml) instead of dockerd.
        #[arg(long)]
        containerd: bool,
        /// containerd's registry hosts directory (default /etc/containerd/certs.d).
        #[arg(long, value_name = "DIR", requires = "containerd")]
        hosts_dir: Option<std::path::PathBuf>,
        /// Configure podman and buildah (registries.conf) instead of dockerd.
        #[arg(long)]
        podman: bool,
        /// registries.conf to edit (default /etc/containers/registries.conf).
        #[arg(long, value_name = "PATH", requires = "podman")]
        registries_conf: Option<std::path::PathBuf>,
        /// Print the changes as diffs and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove the mirror again.
        #[arg(long)]
        remove: bool,
    },
    /// Check the whole set-up and print one line per check with the fix for each failure.
    Doctor,
    /// Print a Google access token (only the token) for other tools: helm, oras, curl.
    PrintAccessToken,
    /// Act as a kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1).
    ///
    /// Reads a CredentialProviderRequest on stdin and prints the CredentialProviderResponse:
    /// for an image from a Google registry, oauth2accesstoken and a token for every Google
    /// registry (cacheKeyType Global, cacheDuration the token's lifetime minus five minutes);
    /// for any other image, no credentials. Uses the same token sources and cache as `get`.
    ///
    /// When the kubelet sends the pod's service account token (its service-account-token
    /// mode), the token is exchanged at STS for the workload identity provider given with
    /// --workload-identity-audience, then, if the service account carries the annotation
    /// iam.gke.io/gcp-service-account, for that Google service account's token.
    KubeletCredentialProvider {
        /// Workload identity provider for pod service account tokens:
        /// //iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/PROVIDER
        #[arg(long, value_name = "AUDIENCE")]
        workload_identity_audience: Option<String>,
        /// STS token endpoint.
        #[arg(
            long,
            value_name = "URL",
            default_value = "https://sts.googleapis.com/v1/token"
        )]
        sts_url: String,
        /// IAM Credentials API endpoint, for impersonating an annotated Google service account.
        #[arg(
            long,
            value_name = "URL",
            default_value = "https://iamcredentials.googleapis.com"
        )]
        iam_endpoint: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these help texts.
    #[command(hide = true)]
    Manpage,
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
        Command::ConfigureDocker {
            registries,
            include_artifact_registry,
            dry_run,
            remove,
            yes,
            config,
        } => {
            let opts = crate::configure::Options {
                registries,
                include_artifact_registry,
                dry_run,
                remove,
                yes,
                config,
            };
            report(crate::configure::run(&opts))
        }
        Command::ConfigureMirror {
            daemon_json,
            containerd,
            hosts_dir,
            podman,
            registries_conf,
            dry_run,
            remove,
        } => {
            let opts = crate::mirror::Options {
                daemon_json,
                containerd,
                hosts_dir,
                podman,
                registries_conf,
                dry_run,
                remove,
            };
            report(crate::mirror::run(&opts))
        }
        Command::Doctor => crate::doctor::run(),
        Command::PrintAccessToken => report(print_access_token()),
        Command::KubeletCredentialProvider {
            workload_identity_audience,
            sts_url,
            iam_endpoint,
        } => {
            let opts = crate::kubelet::Options {
                audience: workload_identity_audience,
                sts_url,
                iam_endpoint,
            };
            crate::kubelet::run(&opts)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "docker-credential-gcp",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Manpage => report(manpage()),
    }
}

/// Human subcommands report errors on stderr (unlike the protocol verbs).
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("docker-credential-gcp: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The man page comes from the same clap definitions as `--help`, so the two cannot drift.
fn manpage() -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        writeln!(
            out,
            ".SS \"docker\\-credential\\-gcp {}\"",
            roff(sub.get_name())
        )?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        for (i, paragraph) in about.split("\n\n").enumerate() {
            if i > 0 {
                writeln!(out, ".PP")?;
            }
            writeln!(out, "{}", roff(paragraph))?;
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            let name = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("-{s}, --{l}"),
                (None, Some(l)) => format!("--{l}"),
                _ => arg
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map_or(arg.get_id().to_string(), |v| v.to_string()),
            };
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(&name), roff(&help))?;
        }
    }
    writeln!(
        out,
        ".SH ENVIRONMENT AND TOKEN SOURCES\n.nf\n{}\n.fi",
        roff(AFTER_HELP)
    )?;
    writeln!(
        out,
        ".SH EXIT STATUS\n0 on success; 1 when a protocol verb answers \"not found\" or an error (printed on stdout, as docker expects), or when a check fails; 2 for a usage error."
    )?;
    writeln!(
        out,
        ".SH SEE ALSO\ndocker(1), gcloud(1), skopeo(1), podman(1)"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Escapes text for roff: backslashes, hyphens, and control characters at line starts.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            if escaped.starts_with(['.', '\'']) {
                format!("\\&{escaped}")
            } else {
                escaped
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_access_token() -> anyhow::Result<ExitCode> {
    let settings = Settings::load()?;
    crate::logging::init(settings.log_level.value, settings.log_file.value.clone());
    match crate::tokens::google_token(&settings)? {
        crate::tokens::Outcome::Token(t) => {
            println!("{}", t.secret.expose());
            Ok(ExitCode::SUCCESS)
        }
        crate::tokens::Outcome::NoSource => anyhow::bail!(
            "no Google credentials on this machine; run `gcloud auth login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ),
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
