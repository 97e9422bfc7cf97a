//! `doctor`: one line per check of the whole set-up, with the fix for each failure.
//!
//! Checks never print a token. A check that is informational (something optional is absent)
//! is marked `-` and does not fail the run; `✗` does, and the exit status is 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Map, Value};

use super::docker::{self, DockerClient, VersionVerdict};
use super::{json_file, mirror, registries};
use crate::helper::login::{self, Stored};
use crate::helper::protocol;
use crate::helper::store::{self, Store};
use crate::hosts::{self, ExtraHost, HostClass};
use crate::net::proxy::Proxies;
use crate::net::tls;
use crate::settings::{OnError, Settings, identities};
use crate::token::{self, Identity, NoToken, now_secs};
use crate::util::files::{self, Symlinks, Trust};
use crate::util::{text, ui};

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// dockerd's daemon.json to check for the mirror (default: where configure-mirror writes).
    #[arg(long, value_name = "PATH")]
    daemon_json: Option<PathBuf>,
}

struct Report<'a> {
    out: &'a mut dyn Write,
    failures: usize,
}

/// One line of the report: a check passed, failed (with its fix), or says something optional.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Pass(String),
    Fail(String, String),
    Info(String),
}

impl Report<'_> {
    fn emit(&mut self, line: Line) -> Result<()> {
        match line {
            Line::Pass(msg) => self.pass(msg),
            Line::Fail(msg, fix) => self.fail(msg, fix),
            Line::Info(msg) => self.info(msg),
        }
    }

    fn pass(&mut self, msg: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "✓ {}", msg.as_ref())?;
        Ok(())
    }

    fn fail(&mut self, msg: impl AsRef<str>, fix: impl AsRef<str>) -> Result<()> {
        self.failures += 1;
        writeln!(self.out, "✗ {}\n    fix: {}", msg.as_ref(), fix.as_ref())?;
        Ok(())
    }

    fn info(&mut self, msg: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "- {}", msg.as_ref())?;
        Ok(())
    }
}

pub(crate) fn run(opts: &Options) -> Result<ExitCode> {
    let mut stdout = ui::stdout();
    let mut r = Report {
        out: &mut stdout,
        failures: 0,
    };
    let settings = match Settings::load() {
        Ok(s) => {
            r.pass("settings are valid (see `docker-credential-gcp config`)")?;
            s
        }
        Err(e) => {
            r.fail(
                format!("settings: {e:#}"),
                "correct the variable or config file named above",
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &settings.warnings {
        r.info(format!("settings: {warning}"))?;
    }
    let suffix = docker::helper_suffix();
    check_binary(&mut r, &suffix)?;
    let helpers = check_docker_config(&mut r, &suffix, &settings)?;
    if let Some(helpers) = &helpers {
        check_known_hosts(&mut r, helpers, &suffix, &settings)?;
    }
    check_docker_client(&mut r)?;
    check_network(&mut r, &settings)?;
    check_token(&mut r, &settings)?;
    check_identities(&mut r, &settings, helpers.as_ref(), &suffix)?;
    check_cache_dir(&mut r, &settings)?;
    check_keyring(&mut r)?;
    check_stored_logins(&mut r, &settings)?;
    check_mirror(&mut r, opts.daemon_json.as_deref())?;
    if r.failures == 0 {
        writeln!(r.out, "all checks passed")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(r.out, "{} check(s) failed", r.failures)?;
        Ok(ExitCode::FAILURE)
    }
}

fn check_binary(r: &mut Report<'_>, suffix: &str) -> Result<()> {
    match docker::helper_on_path(suffix) {
        (program, Some(path)) => r.pass(format!("{program} is on PATH ({})", path.display())),
        (program, None) => r.fail(
            format!("{program} is not on PATH, so docker cannot run it"),
            "install it with ./install.sh, or add its directory to PATH",
        ),
    }
}

/// Checks docker's config.json; returns its credHelpers (empty if absent) when it could be
/// read. Read, survey (what the entries are), lines (what to say), then print them.
fn check_docker_config(
    r: &mut Report<'_>,
    suffix: &str,
    settings: &Settings,
) -> Result<Option<Map<String, Value>>> {
    let (path, root) = match read_docker_config() {
        Ok(read) => read,
        Err(line) => {
            r.emit(line)?;
            return Ok(None);
        }
    };
    let survey = CredHelpers::survey(&root, suffix, &settings.registries.value);
    for line in survey.lines(&path, suffix) {
        r.emit(line)?;
    }
    Ok(Some(survey.helpers))
}

/// docker's config.json, parsed, or the line that says why it cannot be.
fn read_docker_config() -> Result<(PathBuf, Map<String, Value>), Line> {
    let path = docker::docker_config_path(None)
        .map_err(|e| Line::Fail(format!("{e:#}"), "set HOME or DOCKER_CONFIG".into()))?;
    let bytes = match files::read_bounded(&path, 16 * 1024 * 1024, Symlinks::Follow, Trust::Anyone)
    {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(Line::Fail(
                format!("no docker config at {}", path.display()),
                "run `docker-credential-gcp configure-docker`".into(),
            ));
        }
        Err(e) => {
            return Err(Line::Fail(
                format!("{e:#}"),
                "make it a regular file docker can read".into(),
            ));
        }
    };
    match json_file::parse(&bytes, &path.display().to_string()) {
        Ok(p) => Ok((path, p.root.into_map())),
        Err(e) => Err(Line::Fail(
            format!("{e:#}"),
            "fix the JSON syntax at the position shown".into(),
        )),
    }
}

/// What a config file's credHelpers (and credsStore) hold, sorted by what matters here.
#[derive(Debug, Default)]
struct CredHelpers {
    /// The whole map (empty if absent or not an object).
    helpers: Map<String, Value>,
    /// Google hosts that use this helper.
    ours: Vec<String>,
    /// Google hosts that use another helper, as `host → docker-credential-NAME`.
    others: Vec<String>,
    /// The retired bucket hosts.
    buckets: Vec<String>,
    /// Entries whose value is not a helper name, as `host (value)`.
    not_names: Vec<String>,
    /// `credsStore` and the Google hosts it handles because credHelpers does not name them.
    store: Option<(String, Vec<String>)>,
}

impl CredHelpers {
    fn survey(root: &Map<String, Value>, suffix: &str, declared: &[ExtraHost]) -> CredHelpers {
        let helpers = root
            .get("credHelpers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut survey = CredHelpers::default();
        for (host, helper) in &helpers {
            let helper = match docker::helper_name(helper) {
                Ok(name) => name,
                Err(shown) => {
                    survey.not_names.push(format!("{host} ({shown})"));
                    continue;
                }
            };
            match hosts::normalise(host).map(|h| hosts::classify(&h, declared)) {
                Some(HostClass::DeprecatedBucket) => survey.buckets.push(host.clone()),
                Some(HostClass::Google) if helper == suffix => survey.ours.push(host.clone()),
                Some(HostClass::Google) => survey
                    .others
                    .push(format!("{host} → docker-credential-{helper}")),
                _ => {}
            }
        }
        survey.store = root.get("credsStore").and_then(Value::as_str).map(|store| {
            let routed = registries::all_hosts()
                .into_iter()
                .filter(|h| !helpers.contains_key(h))
                .collect();
            (store.to_owned(), routed)
        });
        survey.helpers = helpers;
        survey
    }

    fn lines(&self, path: &Path, suffix: &str) -> Vec<Line> {
        let mut lines = Vec::new();
        let ours = &self.ours;
        lines.push(if ours.is_empty() {
            Line::Fail(
                format!(
                    "no Google registry in {} uses docker-credential-{suffix}",
                    path.display()
                ),
                "run `docker-credential-gcp configure-docker`".into(),
            )
        } else {
            Line::Pass(format!(
                "{} Google registr{} use docker-credential-{suffix} ({})",
                ours.len(),
                if ours.len() == 1 { "y" } else { "ies" },
                abbreviate(ours)
            ))
        });
        if !self.others.is_empty() {
            lines.push(Line::Info(format!(
                "Google registries using another helper: {}",
                self.others.join(", ")
            )));
        }
        if !self.not_names.is_empty() {
            lines.push(Line::Fail(
                format!(
                    "credHelpers entries that are not helper names: {}; docker runs no helper for them",
                    self.not_names.join(", ")
                ),
                format!(
                    "name a helper for each, or remove it (`docker-credential-gcp configure-docker` sets the Google hosts to docker-credential-{suffix})"
                ),
            ));
        }
        if !self.buckets.is_empty() {
            lines.push(Line::Fail(
                format!(
                    "deprecated bucket hosts in credHelpers: {}",
                    self.buckets.join(", ")
                ),
                format!(
                    "{}; then remove these entries",
                    hosts::DEPRECATED_BUCKET_MESSAGE
                ),
            ));
        }
        if let Some((store, routed)) = &self.store {
            lines.push(Line::Info(if routed.is_empty() {
                format!(
                    "credsStore is {store:?}; it does not handle the Google registries listed in credHelpers"
                )
            } else {
                format!(
                    "credsStore {store:?} handles {} (not in credHelpers)",
                    abbreviate(routed)
                )
            }));
        }
        let total = self.helpers.len();
        let theirs = self
            .helpers
            .values()
            .filter(|v| docker::helper_name(v).is_ok_and(|name| name != suffix))
            .count();
        // Our own entries cost a millisecond or two per legacy build each; other helpers' may
        // cost much more (gcloud's ~0.6 s), so only those make a long list worth a note.
        lines.push(if theirs > 20 {
            Line::Info(format!("{total} credHelpers entries, {theirs} of them for other helpers: the legacy builder runs each entry's helper on every build; keep only what you use"))
        } else {
            Line::Pass(format!(
                "{total} credHelpers entr{} ({} for other helpers)",
                if total == 1 { "y" } else { "ies" },
                theirs
            ))
        });
        lines
    }
}

/// The Google registry hosts this release knows that credHelpers does not map (to any
/// helper), for example after an upgrade that added regions, and the command that adds
/// exactly those. Informational: a user may have chosen a smaller set on purpose.
fn check_known_hosts(
    r: &mut Report<'_>,
    helpers: &Map<String, Value>,
    suffix: &str,
    settings: &Settings,
) -> Result<()> {
    let known = registries::all_hosts();
    let missing: Vec<String> = known
        .iter()
        .filter(|h| !helpers.contains_key(h.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return r.pass(format!(
            "credHelpers maps all {} Google registry hosts this release knows",
            known.len()
        ));
    }
    // Plain configure-docker also moves Google hosts that use another helper to this one;
    // when there are such hosts, name the missing ones so nothing else changes.
    let google_elsewhere = helpers.iter().any(|(host, helper)| {
        helper.as_str() != Some(suffix)
            && hosts::normalise(host).is_some_and(|h| {
                hosts::classify(&h, &settings.registries.value) == HostClass::Google
            })
    });
    let command = if google_elsewhere {
        format!(
            "docker-credential-gcp configure-docker --registries {}",
            missing.join(",")
        )
    } else {
        "docker-credential-gcp configure-docker".to_owned()
    };
    let (noun, verb, pronoun) = if missing.len() == 1 {
        ("host", "is", "it")
    } else {
        ("hosts", "are", "them")
    };
    r.info(format!(
        "{} Google registry {noun} this release knows {verb} not in credHelpers: {}; add {pronoun} with `{command}`",
        missing.len(),
        abbreviate(&missing),
    ))
}

fn abbreviate(hosts: &[String]) -> String {
    text::abbreviate(hosts, 8)
}

fn check_docker_client(r: &mut Report<'_>) -> Result<()> {
    match docker::docker_client() {
        DockerClient::Missing => r.info(
            "the docker CLI is not installed (skopeo, podman and buildah use the same set-up)",
        ),
        DockerClient::Unknown(why) => r.info(format!("Docker client version unknown: {why}")),
        DockerClient::Version { major, minor, text } => match docker::judge(major, minor) {
            VersionVerdict::TooOld => r.fail(
                format!("Docker {text} cannot talk to Google's registries"),
                "upgrade Docker to 18.03 or newer",
            ),
            VersionVerdict::SlowBuilds => r.fail(
                format!("Docker {text} makes `docker build` slow with credential helpers"),
                "upgrade Docker to 18.03 or newer",
            ),
            VersionVerdict::Fine => r.pass(format!("Docker client {text}")),
        },
    }
}

fn check_token(r: &mut Report<'_>, settings: &Settings) -> Result<()> {
    let present: Vec<String> = token::source_states(settings)
        .into_iter()
        .filter_map(|(kind, state)| Some(format!("{} ({})", kind.name(), state?)))
        .collect();
    if present.is_empty() {
        return r.fail(
            "no token source is present",
            "run `gcloud auth login` or `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
        );
    }
    r.pass(format!("token source in use: {}", present[0]))?;
    match token::google_token(settings) {
        Ok(t) => {
            let left = t.remaining_secs(now_secs());
            r.pass(format!(
                "a Google access token is available; it expires in {} min {} s",
                left / 60,
                left % 60
            ))
        }
        Err(e) => {
            let (message, fix) = no_token(settings, &e);
            r.fail(format!("no token: {message}"), fix)
        }
    }
}

/// What `doctor` says when no token can be had, and the fix.
fn no_token(settings: &Settings, e: &NoToken) -> (String, String) {
    let answer = if e.kind.is_absent() || settings.on_error.value == OnError::Anonymous {
        "`get` answers \"not found\": public images pull anonymously, private ones get \
         the registry's \"unauthorized\""
    } else {
        "`get` fails every pull from a Google registry (set on_error to anonymous to let \
         public images pull)"
    };
    let fix = e.failures.first().map_or(
        "run `gcloud auth login` or set GOOGLE_APPLICATION_CREDENTIALS",
        |f| f.fix.as_str(),
    );
    (
        format!("{e}. Kind: {} ({}); {answer}", e.kind, e.kind.explain()),
        fix.to_owned(),
    )
}

/// The identity rules: a skipped rule is a failure; each valid rule mints now (with its fix
/// when it cannot); and which identity serves each Google host docker maps to this helper.
fn check_identities(
    r: &mut Report<'_>,
    settings: &Settings,
    helpers: Option<&Map<String, Value>>,
    suffix: &str,
) -> Result<()> {
    let rules = settings.rules();
    for problem in &rules.problems {
        r.fail(
            problem,
            "correct the rule in the config file (`docker-credential-gcp config` lists the rules)",
        )?;
    }
    for rule in &rules.valid {
        let what = format!(
            "identity rule {} ({}; {})",
            rule.label,
            rule.patterns_text(),
            rule.describe()
        );
        match token::google_token_for(settings, Identity::for_registry(Some(rule))) {
            Ok(t) => {
                let left = t.remaining_secs(now_secs());
                r.pass(format!(
                    "{what}: a token is available; it expires in {} min {} s",
                    left / 60,
                    left % 60
                ))?;
            }
            Err(e) => {
                let (message, fix) = no_token(settings, &e);
                r.fail(format!("{what}: no token: {message}"), fix)?;
            }
        }
    }
    let Some(helpers) = helpers.filter(|_| !rules.valid.is_empty()) else {
        return Ok(());
    };
    let ours: Vec<String> = helpers
        .iter()
        .filter(|(_, helper)| helper.as_str() == Some(suffix))
        .map(|(host, _)| host.clone())
        .collect();
    for (rule, hosts) in identities::group_hosts(&rules.valid, &ours, &settings.registries.value) {
        let who = rule.map_or("the token sources in order".to_owned(), |r| {
            format!("identity rule {}", r.label)
        });
        r.info(format!("served by {who}: {}", abbreviate(&hosts)))?;
    }
    Ok(())
}

/// Which way each kind of request goes (a proxy, never its credentials, or direct), and the
/// certificate authorities HTTPS trusts.
fn check_network(r: &mut Report<'_>, settings: &Settings) -> Result<()> {
    match Proxies::from_env() {
        Err(e) => r.fail(
            format!("proxy settings: {e}"),
            "set it to http://[user:password@]host:port, or unset it",
        )?,
        Ok(proxies) => {
            for (what, url) in [
                ("token endpoint", token::DEFAULT_TOKEN_URI),
                ("STS", token::DEFAULT_STS_URL),
                ("IAM credentials", token::DEFAULT_IAM_ENDPOINT),
            ] {
                let uri: http::Uri = url.parse()?;
                let host = uri.host().unwrap_or_default();
                r.info(format!("{what} {host}: {}", proxies.route(&uri)))?;
            }
            r.info("metadata server: direct (never through a proxy)")?;
        }
    }
    match tls::load_roots(settings.ca_file.value.as_deref()) {
        Ok((roots, report)) if roots.is_empty() => r.fail(
            format!("no trusted certificate authorities ({report}); HTTPS requests will fail"),
            "unset SSL_CERT_FILE/SSL_CERT_DIR or point them at readable PEM certificates",
        ),
        Ok((_, report)) => r.pass(format!("trusted certificate authorities: {report}")),
        Err(e) => r.fail(
            format!("{e:#}"),
            "point ca_file (DOCKER_CREDENTIAL_GCP_CA_FILE) at a PEM file of CA certificates, or unset it",
        ),
    }
}

fn check_cache_dir(r: &mut Report<'_>, settings: &Settings) -> Result<()> {
    let Some(dir) = settings.effective_cache_dir() else {
        return r.info("token cache is off");
    };
    if !dir.exists() {
        return r.pass(format!(
            "cache directory {} will be created (0700)",
            dir.display()
        ));
    }
    match files::check_private_dir(dir) {
        Ok(()) => r.pass(format!("cache directory {} is private", dir.display())),
        Err(e) => r.fail(
            format!("{e:#}"),
            format!(
                "make it yours and private: chown \"$(id -u)\" {0} && chmod 700 {0}",
                dir.display()
            ),
        ),
    }
}

fn check_keyring(r: &mut Report<'_>) -> Result<()> {
    match store::keyring_available() {
        Ok(()) => r.pass("the OS keyring is available for `docker login`"),
        Err(e) => r.info(format!(
            "{e:#} (only `docker login` needs it; minted tokens work without)"
        )),
    }
}

/// `docker login` credentials for Google hosts, with their kind; an expired access token is a
/// failure with its fix (it is also removed by the next `get`).
fn check_stored_logins(r: &mut Report<'_>, settings: &Settings) -> Result<()> {
    let logins = match Store::open(settings).map(|s| s.logins()).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => {
            return r.fail(
                format!("{e:#}"),
                "remove the file named and `docker login` again",
            );
        }
    };
    let now = now_secs();
    for (host, l) in logins
        .iter()
        .filter(|(h, _)| protocol::is_google(h, settings))
    {
        let kind = login::kind(&l.username).describe();
        match login::judge(l, true, now) {
            Stored::Kept => r.info(format!(
                "{host}: `docker login` credentials ({kind}, user {}) are used instead of minted tokens until `docker logout {host}`",
                l.username
            ))?,
            Stored::ValidFor(left) => r.info(format!(
                "{host}: a stored {kind} is used for {} more min, then this helper mints again",
                left.div_ceil(60)
            ))?,
            Stored::Expired => r.fail(
                format!("{host}: the {kind} stored by `docker login` has expired"),
                format!("`docker logout {host}` (the next pull also removes it); this helper mints fresh tokens for {host} by itself, no `docker login` needed"),
            )?,
        }
    }
    Ok(())
}

fn check_mirror(r: &mut Report<'_>, daemon_json: Option<&Path>) -> Result<()> {
    let path = match daemon_json {
        Some(p) => p.to_path_buf(),
        None => match mirror::default_daemon_json(crate::util::platform::Engine::for_os(
            crate::util::platform::Os::CURRENT,
            false,
        )) {
            Ok(p) => p,
            Err(e) => return r.info(format!("{e:#}")),
        },
    };
    let listed = match files::read_bounded(&path, 16 * 1024 * 1024, Symlinks::Follow, Trust::Anyone)
    {
        Ok(Some(bytes)) => json_file::parse(&bytes, &path.display().to_string())
            .map(|p| mirror::lists_our_mirror(&p.root)),
        Ok(None) => Ok(false),
        Err(e) => Err(e),
    };
    let active = docker::daemon_mirrors();
    let in_use = active
        .as_ref()
        .map(|m| m.iter().any(|m| mirror::is_our_mirror(m)));
    match (listed, in_use) {
        (Ok(true), _) => r.pass(format!("{} lists {}", path.display(), mirror::MIRROR_URL))?,
        // The daemon reads another file (or a flag): say what it uses, not that nothing is set.
        (Ok(false), Some(true)) => r.info(format!(
            "{} does not list {}, but the running daemon uses it (its daemon.json is elsewhere, or a flag sets it)",
            path.display(),
            mirror::MIRROR_URL
        ))?,
        (Ok(false), _) => r.info(format!("{} is not set up as a registry mirror in {} (optional: `docker-credential-gcp configure-mirror`)", mirror::MIRROR_URL, path.display()))?,
        (Err(e), _) => r.info(format!("{e:#}"))?,
    }
    match in_use {
        Some(true) => r.pass("the Docker daemon uses the mirror (docker system info)"),
        Some(false) => r.info("the running Docker daemon does not use the mirror"),
        None => r.info("no Docker daemon answered; the active mirror was not checked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credhelpers_survey_sorts_hosts_and_says_one_line_each() {
        let root = match serde_json::json!({
            "credHelpers": {
                "gcr.io": "gcp",
                "us-docker.pkg.dev": "gcloud",
                "quay.io": "quay",
                "b.gcr.io": "gcp"
            },
            "credsStore": "desktop"
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let survey = CredHelpers::survey(&root, "gcp", &[]);
        assert_eq!(survey.ours, ["gcr.io"]);
        assert_eq!(
            survey.others,
            ["us-docker.pkg.dev → docker-credential-gcloud"]
        );
        assert_eq!(survey.buckets, ["b.gcr.io"]);
        let lines = survey.lines(Path::new("c.json"), "gcp");
        assert_eq!(
            lines[0],
            Line::Pass("1 Google registry use docker-credential-gcp (gcr.io)".into())
        );
        assert!(matches!(&lines[2], Line::Fail(msg, _) if msg.contains("deprecated bucket")));
        assert!(
            matches!(&lines[3], Line::Info(msg) if msg.starts_with("credsStore \"desktop\" handles"))
        );
        assert_eq!(
            lines[4],
            Line::Pass("4 credHelpers entries (2 for other helpers)".into())
        );
        let empty = CredHelpers::survey(&Map::new(), "gcp", &[]);
        assert!(matches!(
            &empty.lines(Path::new("c.json"), "gcp")[0],
            Line::Fail(..)
        ));
    }
}
