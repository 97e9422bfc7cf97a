//! The command line for humans: `--help`, the set-up commands, `version` and `config`.
//!
//! Docker's own calls (`get`, `store`, `erase`, `list` with nothing else on the command line)
//! never reach clap; `lib.rs` sends them straight to the protocol. They are declared here too
//! so that `--help` documents them and `docker-credential-gcp get --help` works.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{CommandFactory, Parser, Subcommand};

use crate::helper::login::{self, Stored};
use crate::helper::protocol::{self, Verb};
use crate::helper::store::Store;
use crate::hosts::{self, HostClass};
use crate::settings::{self, Rule, SPECS, Settings, identities};
use crate::setup::{configure, docker, doctor, mirror};
use crate::token::{self, Identity, now_secs};
use crate::util::platform::{self, Os};
use crate::util::{text, ui};

/// The text after the subcommand list: token sources, settings and paths of this platform.
fn after_help() -> String {
    let mut text = String::from(
        "Set-up: put `docker-credential-gcp` on PATH and run `docker-credential-gcp configure-docker`,
which maps the Google registries to it in docker's config.json (credHelpers).

Token sources, tried in order (DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES, default adc,gcloud,metadata):
  adc       GOOGLE_APPLICATION_CREDENTIALS, else gcloud's application_default_credentials.json
  gcloud    `gcloud config config-helper` (honours CLOUDSDK_CONFIG)
  metadata  the GCE/GKE metadata server (GCE_METADATA_HOST overrides its address)

Environment (wins over the settings file; each name is also a key there, in lower case
without the prefix):
",
    );
    for spec in SPECS {
        text.push_str(&format!("  {:<36} {}\n", spec.env, spec.help));
    }
    text.push_str(
        "  DOCKER_CREDENTIAL_GCP_CONFIG         another settings file to read instead (one per CI job)\n\
\nIdentity rules (`identities` in the settings file) choose another identity per registry
host or repository path; `config` lists them.\n",
    );
    text.push_str(
        "\nProxies: HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or in lower case) apply to every token
request except the metadata server's; SSL_CERT_FILE / SSL_CERT_DIR replace the OS certificate
store. `docker-credential-gcp doctor` shows which proxy each kind of request uses.\n",
    );
    text.push_str("\nFiles:\n");
    for (what, path) in platform::help_paths(Os::CURRENT) {
        text.push_str(&format!("  {what:<12} {path}\n"));
    }
    text.trim_end().to_owned()
}

#[derive(Parser)]
#[command(
    name = "docker-credential-gcp",
    version,
    disable_version_flag = true,
    about = "Docker credential helper for Google Container Registry and Artifact Registry",
    after_help = after_help()
)]
struct Cli {
    /// Print the version (also -V, and the `version` command)
    // `-v` as the reference helpers and the ECR helper accept it.
    #[arg(short = 'v', long = "version", short_alias = 'V', action = clap::ArgAction::Version)]
    version: Option<bool>,
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
    ///
    /// A Google access token this helper issued itself is not kept (`docker login HOST` with no
    /// user name hands it back); an access token pasted for a Google host is served for at most
    /// an hour; keys and other credentials until `docker logout`.
    Store,
    /// Remove stored credentials for the registry named on stdin (docker protocol; `docker logout`).
    Erase,
    /// Print the hosts with stored credentials as JSON (docker protocol).
    List {
        /// Show each stored credential's user name, kind and, for access tokens, remaining life.
        #[arg(long)]
        details: bool,
    },
    /// Print the version.
    Version,
    /// Show the effective settings, where each came from, which token sources are present,
    /// the identity rules, and which identity serves each host docker maps to this helper.
    Config,
    /// Map Google registries to this helper in docker's config.json (credHelpers).
    ///
    /// Adds "HOST": "gcp" entries (the name follows this binary's file name) for every Google
    /// registry host this release knows: gcr.io and its regional hosts, the Artifact Registry
    /// multi-regions and regions (REGION-docker.pkg.dev) and the regional endpoints
    /// (docker.REGION.rep.pkg.dev), 98 hosts; or exactly the hosts given with --registries.
    /// --discover also maps every location the Artifact Registry API lists, including ones
    /// newer than this release. Hosts declared in DOCKER_CREDENTIAL_GCP_REGISTRIES or the
    /// config file are always added. A long list is cheap: this helper answers the legacy
    /// builder's per-entry calls in a millisecond or two each. Every other key in the file is
    /// kept, in order; the file is replaced atomically, keeps its mode and owner, and is never
    /// written if it is malformed. Running it again changes nothing. skopeo, podman and buildah
    /// read the same credHelpers.
    ConfigureDocker(configure::Options),
    /// Use mirror.gcr.io (Google's cache of Docker Hub images) from dockerd, containerd or podman.
    ///
    /// By default adds https://mirror.gcr.io to registry-mirrors in dockerd's daemon.json.
    /// --containerd writes certs.d/docker.io/hosts.toml; --podman adds a docker.io mirror to
    /// registries.conf. Everything already in those files is kept; the mirror goes after any
    /// mirrors already listed. A registries.conf in the old v1 format is refused (with how to
    /// migrate), and daemon.json is left alone while dockerd's service files
    /// (/etc/default/docker, systemd) give it --registry-mirror: dockerd refuses both at once.
    ConfigureMirror(mirror::Options),
    /// Check the whole set-up and print one line per check with the fix for each failure.
    ///
    /// Among the checks: which Google hosts use this helper, and which Google registry hosts
    /// this release knows are missing from credHelpers (with the command that adds them).
    Doctor(doctor::Options),
    /// Print a Google access token (only the token) for other tools: helm, oras, curl.
    ///
    /// With --registry, the token of the identity `get` would answer that address with (the
    /// first identity rule that covers it, else the token sources in order).
    PrintAccessToken {
        /// A Google registry address (host, host/path or URL) whose identity to use.
        #[arg(long, value_name = "ADDRESS")]
        registry: Option<String>,
    },
    /// Act as a kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1).
    ///
    /// Reads a CredentialProviderRequest on stdin and prints the CredentialProviderResponse:
    /// for an image from a Google (or declared) registry, oauth2accesstoken and one token for
    /// the image's own host[:port], every Google registry glob and every declared registry
    /// (cacheKeyType Global, or Registry when a declared registry has no port or only the
    /// image's own key matches its host; cacheDuration the token's lifetime minus five
    /// minutes); for any other image, no credentials. Uses the same token sources, identity
    /// rules (matched against the whole image) and cache as `get`, with the read-only scope
    /// (kubelet_scopes); with identity rules an answer carries only the image's own key
    /// (cacheKeyType Image for a host that rules split by path, else Registry).
    ///
    /// When the kubelet sends the pod's service account token (its service-account-token
    /// mode), the token is exchanged at STS for the workload identity provider given with
    /// --workload-identity-audience, then, if the service account carries the annotation
    /// iam.gke.io/gcp-service-account, for that Google service account's token. With
    /// --workload-identity-annotation KEY only service accounts annotated KEY="true" are
    /// treated so; the others get the node's identity.
    KubeletCredentialProvider(crate::kubelet::Options),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these help texts.
    #[command(hide = true)]
    Manpage,
    /// Refresh the cached token in the background (started by `get` near a token's expiry).
    #[command(hide = true)]
    RefreshAhead {
        /// Do nothing if the cached token now expires later than this (seconds since the epoch).
        #[arg(long)]
        after: u64,
        /// The identity to refresh (its lock id); none: the token sources in order.
        #[arg(long)]
        identity: Option<String>,
    },
}

pub(crate) fn run() -> ExitCode {
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
        Command::Get => protocol::run(Verb::Get, docker::hosts_mapped_here),
        Command::Store => protocol::run(Verb::Store, docker::hosts_mapped_here),
        Command::Erase => protocol::run(Verb::Erase, docker::hosts_mapped_here),
        Command::List { details: false } => protocol::run(Verb::List, docker::hosts_mapped_here),
        Command::List { details: true } => ui::finish(list_details()),
        Command::Version => ui::finish(version()),
        Command::Config => ui::finish(config()),
        Command::ConfigureDocker(opts) => ui::finish(configure::run(&opts)),
        Command::ConfigureMirror(opts) => ui::finish(mirror::run(&opts)),
        Command::Doctor(opts) => ui::finish(doctor::run(&opts)),
        Command::PrintAccessToken { registry } => {
            ui::finish(print_access_token(registry.as_deref()))
        }
        Command::KubeletCredentialProvider(opts) => crate::kubelet::run(&opts),
        Command::Completions { shell } => ui::finish(completions(shell)),
        Command::Manpage => ui::finish(manpage()),
        Command::RefreshAhead { after, identity } => {
            ui::finish(refresh_ahead(after, identity.as_deref()))
        }
    }
}

fn version() -> Result<ExitCode> {
    writeln!(
        ui::stdout(),
        "docker-credential-gcp {}",
        env!("CARGO_PKG_VERSION")
    )?;
    Ok(ExitCode::SUCCESS)
}

fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "docker-credential-gcp",
        &mut out,
    );
    let mut stdout = ui::stdout();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The man page comes from the same clap definitions as `--help`, so the two cannot drift.
fn manpage() -> Result<ExitCode> {
    let cmd = Cli::command();
    let mut out = Vec::new();
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
        roff(&after_help())
    )?;
    writeln!(
        out,
        ".SH EXIT STATUS\n0 on success; 1 when a protocol verb answers \"not found\" or an error (printed on stdout, as docker expects), or when a check fails; 2 for a usage error."
    )?;
    writeln!(
        out,
        ".SH SEE ALSO\ndocker(1), gcloud(1), skopeo(1), podman(1)"
    )?;
    ui::stdout().write_all(&out)?;
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

fn refresh_ahead(after: u64, identity: Option<&str>) -> Result<ExitCode> {
    let settings = Settings::load()?;
    settings::init_logging(&settings);
    token::refresh_ahead(&settings, after, identity)?;
    Ok(ExitCode::SUCCESS)
}

fn print_access_token(registry: Option<&str>) -> Result<ExitCode> {
    let settings = Settings::load()?;
    settings::init_logging(&settings);
    let rule = match registry {
        None => None,
        Some(address) => {
            let r = hosts::normalise(address).ok_or_else(|| {
                anyhow!("{address:?} is not a registry address (host[:port], host/path or URL)")
            })?;
            if hosts::classify(&r, &settings.registries.value) != HostClass::Google {
                bail!(
                    "{r} is not a Google registry (nor declared in `registries`); no token is printed for it"
                );
            }
            settings.rule_for(&r, hosts::path_of(address))
        }
    };
    let t = token::google_token_for(&settings, Identity::for_registry(rule.as_ref()))?;
    let mut out = ui::stdout();
    writeln!(out, "{}", t.secret.expose())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn config() -> Result<ExitCode> {
    let s = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            ui::note(format_args!(
                "docker-credential-gcp: configuration error: {e:#}"
            ));
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = ui::stdout();
    match &s.config_file {
        Some((path, true)) => writeln!(out, "config file: {}", path.display())?,
        Some((path, false)) => writeln!(out, "config file: {} (not present)", path.display())?,
        None => writeln!(out, "config file: none (no config directory)")?,
    }
    for (name, value, origin) in s.rows() {
        writeln!(out, "{name:<14} {value:<40} ({origin})")?;
    }
    writeln!(out, "token sources present (in order of use):")?;
    for (kind, state) in token::source_states(&s) {
        match state {
            Some(what) => writeln!(out, "  {:<9} present: {what}", kind.name())?,
            None => writeln!(out, "  {:<9} absent", kind.name())?,
        }
    }
    let rules = s.rules();
    write_identities(&mut out, &s, &rules.valid)?;
    for warning in s.warnings.iter().chain(&rules.problems) {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The identity rules in order, what each source is on this machine, and which identity
/// serves each Google host docker's config maps to this helper.
fn write_identities(out: &mut impl Write, s: &Settings, rules: &[Rule]) -> Result<()> {
    if rules.is_empty() {
        writeln!(
            out,
            "identities: no rules (every address uses the token sources in order)"
        )?;
    } else {
        writeln!(
            out,
            "identities (the first rule that matches wins; other addresses use the token sources in order):"
        )?;
        for rule in rules {
            writeln!(out, "  {}: {}", rule.label, rule.patterns_text())?;
            writeln!(out, "      {}", rule.describe())?;
            writeln!(out, "      now: {}", token::rule_source_state(s, rule))?;
        }
    }
    let mapped = docker::hosts_mapped_here();
    let groups = identities::group_hosts(rules, &mapped, &s.registries.value);
    if !groups.is_empty() {
        writeln!(out, "docker's hosts for this helper, by identity:")?;
    }
    for (rule, hosts) in groups {
        let who = rule.map_or("the token sources in order".to_owned(), |r| {
            format!("rule {}", r.label)
        });
        writeln!(out, "  {who}: {}", text::abbreviate(&hosts, 8))?;
    }
    Ok(())
}

/// `list --details`: each stored login with its kind and, for access tokens, how long it is
/// still served.
fn list_details() -> Result<ExitCode> {
    let settings = Settings::load()?;
    let mut out = ui::stdout();
    let logins = Store::open(&settings)
        .map(|s| s.logins())
        .transpose()?
        .unwrap_or_default();
    if logins.is_empty() {
        writeln!(out, "no credentials stored with `docker login`")?;
    }
    let now = now_secs();
    for (host, login) in &logins {
        let kind = login::kind(&login.username);
        let state = match login::judge(login, protocol::is_google(host, &settings), now) {
            Stored::Kept => "kept until `docker logout`".to_owned(),
            Stored::ValidFor(left) => format!("served for {} more min", left.div_ceil(60)),
            Stored::Expired => "expired; no longer served".to_owned(),
        };
        writeln!(
            out,
            "{host}\t{}\t{}\t{state}",
            login.username,
            kind.describe()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
