//! Token sources: where a Google access token can come from.
//!
//! Each source has two halves. [`probe`] is cheap (environment and `stat` only) and runs on
//! every `get`: it says whether the source is present and names its credential identity,
//! which is the cache key. [`Candidate::mint`] does the expensive part (HTTP, a subprocess)
//! and runs only when the cache cannot answer. An identity rule's source is a candidate too
//! ([`for_rule`]), always present: when what it names is missing, its mint says so.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

use super::access::{Token, now_secs};
use super::credentials;
use super::failure::{self, FailureKind, Recalled, SourceFailure};
use super::gcloud;
use super::metadata;
use super::oauth::{self, DEFAULT_IAM_ENDPOINT, DEFAULT_LIFETIME_SECS, SCOPE};
use crate::net::http::MintContext;
use crate::settings::SourceKind;
use crate::settings::identities::{Rule, RuleSource};
use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::secret::Secret;

pub(crate) const MAX_CREDENTIALS_FILE: u64 = 1024 * 1024;

/// A source that looks present, with the identity its token would belong to.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Cache key: the source, everything that selects its identity, and the scope.
    pub(crate) key: String,
    what: What,
    /// The identity rule this source is, for messages (`None`: the token sources in order).
    rule: Option<String>,
}

#[derive(Debug, Clone)]
enum What {
    Adc {
        path: PathBuf,
        origin: FileOrigin,
        /// Sign a JWT with the key instead of asking its token endpoint.
        self_signed: bool,
    },
    Gcloud {
        dir: PathBuf,
        /// A named configuration (`gcloud_configuration`); `None`: the active one.
        configuration: Option<String>,
    },
    Metadata {
        host: String,
    },
    /// A service account impersonated with a base identity's token.
    Impersonate {
        service_account: String,
        delegates: Vec<String>,
        endpoint: String,
        /// The base identity: `None` the token sources in order, else that rule's.
        base: Option<Box<Rule>>,
    },
    /// A rule's source that is not present on this machine.
    Absent {
        source: SourceKind,
    },
}

/// Who named a credentials file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOrigin {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    Env,
    /// gcloud's well-known `application_default_credentials.json`.
    WellKnown,
    /// An identity rule's `credentials_file`.
    Rule,
}

/// The advice for a failure behind a proxy: the proxy, not the credentials, is in the way.
const PROXY_ADVICE: &str = "check HTTPS_PROXY and NO_PROXY (the proxy's URL, user and password); \
     `docker-credential-gcp doctor` shows which requests use which proxy";
/// The longest failure message kept: a server's error description can be megabytes.
const MAX_MESSAGE: usize = 600;

/// The candidates for `kinds` that are present, in order, for tokens of `scope`.
pub(crate) fn present<'a>(
    kinds: &'a [SourceKind],
    scope: &'a str,
) -> impl Iterator<Item = Candidate> + 'a {
    kinds.iter().filter_map(move |k| probe(*k, scope))
}

/// Returns the candidate for `kind` if that source is present, using only cheap checks.
pub(crate) fn probe(kind: SourceKind, scope: &str) -> Option<Candidate> {
    let what = match kind {
        SourceKind::Adc => {
            let (path, explicit) = adc_file()?;
            let origin = if explicit {
                FileOrigin::Env
            } else {
                FileOrigin::WellKnown
            };
            What::Adc {
                path,
                origin,
                self_signed: false,
            }
        }
        SourceKind::Gcloud => {
            let dir = gcloud::config_dir()?;
            if !dir.is_dir() {
                return None;
            }
            What::Gcloud {
                dir,
                configuration: None,
            }
        }
        SourceKind::Metadata => What::Metadata {
            host: metadata::locate()?,
        },
    };
    Some(Candidate::new(what, scope, None))
}

/// The candidate of an identity rule, for tokens of `scope`; `kinds` are the token sources in
/// order (the base of an impersonation without `via`). Always a candidate: a source that is
/// missing fails its mint with what is missing.
pub(crate) fn for_rule(rule: &Rule, kinds: &[SourceKind], scope: &str) -> Candidate {
    let label = Some(rule.label.clone());
    let what = match &rule.source {
        RuleSource::CredentialsFile(path) => What::Adc {
            path: path.clone(),
            origin: FileOrigin::Rule,
            self_signed: rule.self_signed_jwt,
        },
        RuleSource::Source(kind) => match probe(*kind, scope) {
            Some(Candidate {
                what: What::Adc { path, origin, .. },
                ..
            }) => What::Adc {
                path,
                origin,
                self_signed: rule.self_signed_jwt,
            },
            Some(c) => c.what,
            None => What::Absent { source: *kind },
        },
        RuleSource::GcloudConfiguration(name) => match gcloud::config_dir() {
            Some(dir) if dir.is_dir() => What::Gcloud {
                dir,
                configuration: Some(name.clone()),
            },
            _ => What::Absent {
                source: SourceKind::Gcloud,
            },
        },
        RuleSource::Impersonate(imp) => What::Impersonate {
            service_account: imp.service_account.clone(),
            delegates: imp.delegates.clone(),
            endpoint: imp
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_IAM_ENDPOINT.to_owned()),
            base: imp.via.as_ref().map(|v| v.rule.clone()),
        },
    };
    let mut candidate = Candidate::new(what, scope, label);
    if let What::Impersonate { base, .. } = &candidate.what {
        // The impersonated token belongs to the base identity as it is now: a new key file or
        // gcloud account under it is a new identity here too.
        let base_keys: Vec<String> = match base {
            Some(base) => vec![for_rule(base, kinds, SCOPE).key],
            None => present(kinds, SCOPE).map(|c| c.key).collect(),
        };
        candidate
            .key
            .push_str(&format!("|base=[{}]", base_keys.join(";")));
    }
    candidate
}

/// The ADC file to use and whether the user named it explicitly:
/// `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's well-known file.
pub(crate) fn adc_file() -> Option<(PathBuf, bool)> {
    if let Some(p) = env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some((PathBuf::from(p), true));
    }
    let well_known = gcloud::config_dir()?.join("application_default_credentials.json");
    well_known.is_file().then_some((well_known, false))
}

impl Candidate {
    fn new(what: What, scope: &str, rule: Option<String>) -> Candidate {
        let key = match &what {
            What::Adc {
                path, self_signed, ..
            } => {
                // External-account files may take their identity from the environment (AWS),
                // so the variables that select it are part of the key; secrets are not.
                let var = |k| env::var(k).unwrap_or_default();
                format!(
                    "adc|{}|{}|{}|{}|{}|{scope}{}",
                    path.display(),
                    files::version(path),
                    var("AWS_ACCESS_KEY_ID"),
                    var("AWS_REGION"),
                    var("AWS_DEFAULT_REGION"),
                    if *self_signed { "|self-signed" } else { "" },
                )
            }
            What::Gcloud {
                dir,
                configuration: None,
            } => format!("gcloud|{}|{scope}", gcloud::identity(dir, None)),
            What::Gcloud {
                dir,
                configuration: Some(name),
            } => format!(
                "gcloud|{}|configuration={name}|{scope}",
                gcloud::identity(dir, Some(name))
            ),
            What::Metadata { host } => format!("metadata|{host}|{scope}"),
            What::Impersonate {
                service_account,
                delegates,
                endpoint,
                ..
            } => format!(
                "impersonate|{service_account}|{}|{endpoint}|{scope}",
                delegates.join(",")
            ),
            What::Absent { source } => format!(
                "absent|{}|{}|{scope}",
                source.name(),
                rule.as_deref().unwrap_or("")
            ),
        };
        Candidate { key, what, rule }
    }

    /// The source's name as `token_sources` and messages know it.
    fn name(&self) -> &'static str {
        match &self.what {
            What::Adc {
                origin: FileOrigin::Rule,
                ..
            } => "credentials_file",
            What::Adc { .. } => "adc",
            What::Gcloud { .. } => "gcloud",
            What::Metadata { .. } => "metadata",
            What::Impersonate { .. } => "impersonation",
            What::Absent { source } => source.name(),
        }
    }

    /// What to call this source in messages (a path, a host). Built only for messages: the
    /// cached `get` never needs it.
    pub(crate) fn describe(&self) -> String {
        let what = match &self.what {
            What::Adc {
                path,
                origin: FileOrigin::Env,
                ..
            } => format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display()),
            What::Adc { path, .. } => path.display().to_string(),
            What::Gcloud {
                dir,
                configuration: None,
            } => format!("config directory {}", dir.display()),
            What::Gcloud {
                dir,
                configuration: Some(name),
            } => format!("configuration {name} in {}", dir.display()),
            What::Metadata { host } => format!("metadata server {host}"),
            What::Impersonate {
                service_account, ..
            } => format!("service account {service_account}"),
            What::Absent { .. } => "not present on this machine".to_owned(),
        };
        match &self.rule {
            Some(rule) => format!("identity rule {rule}: {what}"),
            None => what,
        }
    }

    /// For an impersonation, the identity whose token it impersonates with: `Some(None)` the
    /// token sources in order, `Some(Some(rule))` that rule's. `None` for other sources.
    pub(crate) fn base(&self) -> Option<Option<&Rule>> {
        match &self.what {
            What::Impersonate { base, .. } => Some(base.as_deref()),
            _ => None,
        }
    }

    /// Obtains a new token from this source within the context's deadline (and with its
    /// scopes); an impersonation is given its base identity's token. A failure comes back
    /// typed and scrubbed of every secret the context sent or read.
    pub(crate) fn mint(
        &self,
        ctx: &mut MintContext,
        base: Option<&Secret<String>>,
    ) -> Result<Token, SourceFailure> {
        let minted = match &self.what {
            What::Adc {
                path,
                origin,
                self_signed,
            } => self.mint_file(path, *origin, *self_signed, ctx).map(Some),
            What::Gcloud { configuration, .. } => {
                gcloud::mint(ctx.deadline, configuration.as_deref())
            }
            What::Metadata { host } => metadata::mint(host, ctx).map(Some),
            What::Impersonate {
                service_account,
                delegates,
                endpoint,
                ..
            } => match base {
                Some(base) => {
                    impersonate(service_account, delegates, endpoint, base, ctx).map(Some)
                }
                None => Err(anyhow!("no token of the base identity to impersonate with")),
            },
            What::Absent { source } => {
                return Err(self.failure(
                    FailureKind::NoCredentials,
                    format!(
                        "the {} source is not present on this machine",
                        source.name()
                    ),
                    false,
                ));
            }
        };
        match minted {
            Ok(Some(token)) => Ok(token),
            Ok(None) => Err(self.failure(
                FailureKind::NoCredentials,
                "gcloud is not installed (not on PATH)".to_owned(),
                false,
            )),
            Err(e) => {
                let kind = failure::classify(&e);
                // A proxy in the way is not the credentials' fault (see net::connect).
                let behind_proxy = ctx.take_proxy_failure();
                let message = ctx.scrub(&format!("{e:#}"));
                Err(self.failure(kind, message, behind_proxy))
            }
        }
    }

    /// The failure of an impersonation whose base identity gave no token: the base's kind
    /// decides, and its message (already scrubbed) says why.
    pub(crate) fn base_failed(&self, kind: FailureKind, message: &str) -> SourceFailure {
        self.failure(
            kind,
            format!("its base identity gave no token: {message}"),
            false,
        )
    }

    fn mint_file(
        &self,
        path: &std::path::Path,
        origin: FileOrigin,
        self_signed: bool,
        ctx: &mut MintContext,
    ) -> Result<Token> {
        let bytes =
            files::read_bounded(path, MAX_CREDENTIALS_FILE, Symlinks::Follow, Trust::Anyone)?
                .ok_or_else(|| match origin {
                    FileOrigin::Env => anyhow!(
                        "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
                        path.display()
                    ),
                    FileOrigin::Rule => anyhow!(
                        "credentials_file names {}, which does not exist",
                        path.display()
                    ),
                    FileOrigin::WellKnown => anyhow!("{} disappeared", path.display()),
                })?;
        if self_signed {
            credentials::self_signed_file(path, &bytes, ctx)
        } else {
            credentials::mint_file(path, &bytes, ctx)
        }
    }

    fn failure(&self, kind: FailureKind, message: String, behind_proxy: bool) -> SourceFailure {
        let fix = if behind_proxy {
            PROXY_ADVICE.to_owned()
        } else {
            self.advice(kind)
        };
        SourceFailure {
            source: format!("{} ({})", self.name(), self.describe()),
            kind,
            message: bounded(&crate::util::text::one_line(&message)),
            fix,
        }
    }

    /// A failure remembered from a moment ago, for this source's current identity.
    pub(crate) fn remembered(&self, r: Recalled) -> SourceFailure {
        let ago = now_secs().saturating_sub(r.at);
        let again = r.until.saturating_sub(now_secs());
        SourceFailure {
            source: format!("{} ({})", self.name(), self.describe()),
            kind: r.kind,
            message: format!(
                "{} (failed {ago} s ago; tried again in {again} s or when its credentials change)",
                r.message
            ),
            fix: r.fix,
        }
    }

    /// What the user should do when this source fails this way.
    pub(crate) fn advice(&self, kind: FailureKind) -> String {
        let fixed = match (&self.what, kind) {
            (_, FailureKind::Unreachable) => {
                "check the network, HTTPS_PROXY and NO_PROXY; `docker-credential-gcp doctor` \
                 shows the routes"
            }
            (
                What::Adc {
                    origin: FileOrigin::Rule,
                    ..
                },
                _,
            ) => {
                "check the credentials_file of this identity rule (`docker-credential-gcp config` \
                 lists the rules)"
            }
            (
                What::Adc {
                    origin: FileOrigin::Env,
                    ..
                },
                FailureKind::SignInNeeded,
            ) => {
                "sign in again (`gcloud auth application-default login`) and point \
                 GOOGLE_APPLICATION_CREDENTIALS at the new file, or unset it"
            }
            (
                What::Adc {
                    origin: FileOrigin::Env,
                    ..
                },
                _,
            ) => "check the file GOOGLE_APPLICATION_CREDENTIALS names, or unset it",
            (What::Adc { .. }, _) => "run `gcloud auth application-default login` again",
            (
                What::Gcloud {
                    configuration: Some(name),
                    ..
                },
                FailureKind::NoCredentials | FailureKind::SignInNeeded,
            ) => return format!("run `gcloud --configuration {name} auth login`"),
            (
                What::Gcloud {
                    configuration: Some(name),
                    ..
                },
                _,
            ) => {
                return format!(
                    "run `gcloud --configuration {name} auth print-access-token` to see gcloud's own error"
                );
            }
            (What::Gcloud { .. }, FailureKind::NoCredentials | FailureKind::SignInNeeded) => {
                "run `gcloud auth login` (or set GOOGLE_APPLICATION_CREDENTIALS)"
            }
            (What::Gcloud { .. }, _) => {
                "run `gcloud auth print-access-token` to see gcloud's own error"
            }
            (What::Metadata { .. }, _) => {
                "check that the VM or node has a service account with the cloud-platform scope"
            }
            (
                What::Impersonate {
                    service_account, ..
                },
                FailureKind::Denied,
            ) => {
                return format!(
                    "grant the base identity roles/iam.serviceAccountTokenCreator on {service_account}"
                );
            }
            (What::Impersonate { .. }, _) => {
                "fix the base identity first (`docker-credential-gcp doctor` checks every rule)"
            }
            (
                What::Absent {
                    source: SourceKind::Adc,
                },
                _,
            ) => {
                "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
            }
            (
                What::Absent {
                    source: SourceKind::Gcloud,
                },
                _,
            ) => {
                "install gcloud and sign in, or set CLOUDSDK_CONFIG to its configuration directory"
            }
            (
                What::Absent {
                    source: SourceKind::Metadata,
                },
                _,
            ) => "run on Google Cloud, or set GCE_METADATA_HOST",
        };
        fixed.to_owned()
    }
}

/// Exchanges `base` (the base identity's token) for `service_account`'s at the IAM
/// Credentials API `endpoint`, through `delegates`, for the context's scopes.
fn impersonate(
    service_account: &str,
    delegates: &[String],
    endpoint: &str,
    base: &Secret<String>,
    ctx: &mut MintContext,
) -> Result<Token> {
    ctx.holds(base);
    let url = oauth::impersonation_url(endpoint, service_account);
    let scope = oauth::scope_of(ctx).to_owned();
    let target = oauth::Impersonation {
        url: &url,
        lifetime_secs: DEFAULT_LIFETIME_SECS,
        delegates,
        scope: &scope,
    };
    let deadline = ctx.deadline;
    oauth::impersonate(ctx.http()?, &target, base, deadline)
}

/// At most [`MAX_MESSAGE`] bytes, cut at a character boundary.
fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}
