//! The docker-credential-helpers wire protocol: `get`, `store`, `erase`, `list`.
//!
//! One verb per process, input on stdin, the answer on stdout, exit 0 or 1. Errors go to
//! stdout too (that is where docker looks for them), except that a registry we have nothing
//! for gets exactly [`NOT_FOUND`]: docker, skopeo and podman then go on anonymously, while any
//! other error aborts the pull. Diagnostics for humans go to stderr through the logger.
//!
//! A `get` whose input is a JSON object is Bazel's instead (`super::bazel`): its errors go to
//! stderr, where Bazel looks for them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use super::bazel;
use super::login::{self, Kind, Stored};
use super::store::{self, Login, Store};
use crate::hosts::{self, DEPRECATED_BUCKET_MESSAGE, HostClass};
use crate::settings::{self, OnError, Rule, Settings};
use crate::token::{self, Identity, NoToken, now_secs};
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error, one_line};
use crate::util::{logging, ui};

pub(crate) const NOT_FOUND: &str = "credentials not found in native keychain";
pub(crate) const NO_SERVER_URL: &str = "no credentials server URL";
pub(crate) const NO_USERNAME: &str = "no credentials username";
/// The registry user name that tells Google registries the password is an OAuth access token.
pub(crate) const OAUTH_USERNAME: &str = "oauth2accesstoken";
/// Inputs are a host name or a small JSON object; anything bigger is a mistake.
const MAX_INPUT: u64 = 1024 * 1024;

/// The protocol verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Store,
    Erase,
    List,
}

impl Verb {
    pub(crate) fn parse(s: &str) -> Option<Verb> {
        match s {
            "get" => Some(Verb::Get),
            "store" => Some(Verb::Store),
            "erase" => Some(Verb::Erase),
            "list" => Some(Verb::List),
            _ => None,
        }
    }
}

/// What a verb answers.
enum Answer {
    /// Printed on stdout, exit 0 (may be empty).
    Output(String),
    /// Printed on stdout, exit 0, with what was held back from stderr: a Bazel `{}` for a
    /// Google host, given because there is no token (the hint says why).
    OutputWithNotes(String),
    NotFound,
    /// Printed on stdout, exit 1.
    Error(String),
    /// Printed on stderr, exit 1: an error for Bazel, which reads stderr when a helper fails.
    ErrorOnStderr(String),
}

#[derive(Serialize)]
struct GetOutput<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

#[derive(Deserialize)]
struct StoreInput {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: Secret<String>,
}

/// The registries docker's config maps to this helper (`credHelpers`), which `list` names
/// as docker-credential-gcloud does: the set-up layer, which knows docker's files, reads them.
pub(crate) type MappedHosts = fn() -> Vec<String>;

/// Runs one protocol verb with stdin and stdout and returns the exit code.
pub(crate) fn run(verb: Verb, mapped: MappedHosts) -> ExitCode {
    // A `get` that answers says nothing on stderr at the default log level (older
    // testcontainers-java reads stderr as part of the answer); what it would have said is
    // shown when it does not answer, or at once when the user chose a log level.
    if verb == Verb::Get {
        logging::hold_stderr();
    }
    let bytes = ui::read_stdin(MAX_INPUT);
    let bazel = verb == Verb::Get && bytes.as_ref().is_ok_and(|b| bazel::is_request(b));
    let answer = match bytes.and_then(text_of) {
        Ok(input) if bazel => bazel_answer(&input),
        Ok(input) => answer(verb, &input, mapped),
        // Input that is not text, or too large to read, is no request Bazel sends and was
        // always refused on stdout for docker; the message goes to stderr too, for Bazel.
        Err(e) if verb == Verb::Get => {
            ui::note(format_args!("docker-credential-gcp: error: {e}"));
            Answer::Error(e.to_string())
        }
        Err(e) => Answer::Error(e.to_string()),
    };
    if verb == Verb::Get {
        logging::release_stderr(!matches!(answer, Answer::Output(_)));
    }
    let (text, code) = match answer {
        Answer::Output(text) | Answer::OutputWithNotes(text) => (text, ExitCode::SUCCESS),
        Answer::NotFound => (format!("{NOT_FOUND}\n"), ExitCode::FAILURE),
        Answer::Error(text) => (format!("{}\n", one_line(&text)), ExitCode::FAILURE),
        Answer::ErrorOnStderr(text) => {
            ui::note(format_args!(
                "docker-credential-gcp: error: {}",
                one_line(&text)
            ));
            return ExitCode::FAILURE;
        }
    };
    let mut out = ui::stdout();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        // An answer nobody received is not a success (a closed pipe, a full disk).
        Err(_) if !text.is_empty() => ExitCode::FAILURE,
        Err(_) => code,
    }
}

fn text_of(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| anyhow!("input on stdin is not valid UTF-8"))
}

/// A Bazel `get`: the settings and logging as for docker, the answer from `bazel::get`.
fn bazel_answer(input: &str) -> Answer {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            return Answer::ErrorOnStderr(format!("docker-credential-gcp configuration: {e:#}"));
        }
    };
    settings::init_logging(&settings);
    if settings.log_level.origin != settings::Origin::Default {
        logging::release_stderr(true);
    }
    match bazel::get(input, &settings) {
        bazel::Reply::Headers(json) => Answer::Output(json + "\n"),
        bazel::Reply::Anonymous(json) => Answer::OutputWithNotes(json + "\n"),
        bazel::Reply::Failure(message) => Answer::ErrorOnStderr(message),
        bazel::Reply::NotARequest(message) => {
            ui::note(format_args!("docker-credential-gcp: error: {message}"));
            Answer::NotFound
        }
    }
}

fn answer(verb: Verb, input: &str, mapped: MappedHosts) -> Answer {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => return Answer::Error(format!("docker-credential-gcp configuration: {e:#}")),
    };
    settings::init_logging(&settings);
    if settings.log_level.origin != settings::Origin::Default {
        logging::release_stderr(true);
    }
    let result = match verb {
        Verb::Get => get(input, &settings),
        Verb::Store => store(input, &settings),
        Verb::Erase => erase(input, &settings),
        Verb::List => list(&settings, mapped),
    };
    result.unwrap_or_else(|e| Answer::Error(format!("{e:#}")))
}

fn get(input: &str, settings: &Settings) -> Result<Answer> {
    let server = input.trim();
    if server.is_empty() {
        return Ok(Answer::Error(NO_SERVER_URL.to_owned()));
    }
    if server.contains('\0') {
        return Ok(Answer::Error(
            "the server URL contains a NUL byte".to_owned(),
        ));
    }
    let Some(registry) = hosts::normalise(server) else {
        log::debug!("{server:?} is not a registry host; not found");
        return Ok(Answer::NotFound);
    };
    let host = registry.to_string();
    let class = hosts::classify(&registry, &settings.registries.value);
    if let Some(answer) = stored(server, &host, class == HostClass::Google, settings)? {
        return Ok(answer);
    }
    match class {
        HostClass::Google => {}
        HostClass::DeprecatedBucket => {
            return Ok(Answer::Error(DEPRECATED_BUCKET_MESSAGE.to_owned()));
        }
        HostClass::Other => {
            log::debug!("{host} is not a Google registry; not found");
            return Ok(Answer::NotFound);
        }
    }
    // The identity: the first rule that covers the address (docker passes only the host;
    // other callers may add a repository path), else the token sources in order.
    let rule = settings.rule_for(&registry, hosts::path_of(server));
    match token::google_token_for(settings, Identity::for_registry(rule.as_ref())) {
        Ok(token) => Ok(credentials(server, OAUTH_USERNAME, token.secret.expose())),
        Err(no) => Ok(no_token(&no, &host, settings)),
    }
}

/// The answer when no token can be had: "not found" when the user simply has no (valid)
/// credentials, so public images pull anonymously, and then one line on stderr naming the
/// fix; the error otherwise, unless `on_error` is `anonymous`.
fn no_token(no: &NoToken, host: &str, settings: &Settings) -> Answer {
    if no.kind.is_absent() {
        log::warn!(
            "{}. Answering \"not found\" so {host} is tried anonymously",
            no.hint()
        );
        return Answer::NotFound;
    }
    if settings.on_error.value == OnError::Anonymous {
        log::warn!(
            "{no}. Answering \"not found\" (on_error is anonymous) so {host} is tried anonymously"
        );
        return Answer::NotFound;
    }
    Answer::Error(no.to_string())
}

/// Explicitly stored credentials for `host` win over minted tokens, except an access token
/// stored for a Google host that can no longer be valid: that one is removed, and the token
/// sources mint as usual.
fn stored(server: &str, host: &str, google: bool, settings: &Settings) -> Result<Option<Answer>> {
    let Some(store) = Store::open(settings) else {
        return Ok(None);
    };
    let login = match store.login(host) {
        Ok(Some(login)) => login,
        Ok(None) => return Ok(None),
        Err(e) => {
            log::warn!("ignoring stored credentials: {e:#}");
            return Ok(None);
        }
    };
    if let Stored::Expired = login::judge(&login, google, now_secs()) {
        log::warn!(
            "the access token stored for {host} by `docker login` has expired; removing it and minting a fresh one"
        );
        if let Err(e) = store.erase(host, store::LOOKUP_WAIT) {
            log::warn!("could not remove it: {e:#}");
        }
        return Ok(None);
    }
    match store.secret(host, &login)? {
        Some(secret) => Ok(Some(credentials(server, &login.username, secret.expose()))),
        None => {
            log::warn!(
                "{host} is listed as stored but the keyring has no entry; run `docker login {host}` again or `docker logout {host}`"
            );
            Ok(None)
        }
    }
}

fn credentials(server: &str, username: &str, secret: &str) -> Answer {
    let out = GetOutput {
        server_url: server,
        username,
        secret,
    };
    match serde_json::to_string(&out) {
        Ok(json) => Answer::Output(json + "\n"),
        Err(e) => Answer::Error(format!("cannot encode the answer: {e}")),
    }
}

/// A validated `store` request.
pub(crate) struct StoreRequest {
    pub(crate) host: String,
    pub(crate) username: String,
    pub(crate) secret: Secret<String>,
}

/// Parses and validates `store` input; the error is the protocol's answer text. Pure: it
/// touches nothing, so it is what the fuzzer exercises.
pub(crate) fn parse_store(input: &str) -> std::result::Result<StoreRequest, String> {
    if input.trim().is_empty() {
        return Err(
            "no credentials on stdin (expected a JSON object with ServerURL, Username and Secret)"
                .to_owned(),
        );
    }
    let creds: StoreInput = serde_json::from_str(input).map_err(|e| {
        format!(
            "invalid credentials JSON on stdin ({}); expected an object with ServerURL, Username and Secret",
            json_error(&e)
        )
    })?;
    if creds.server_url.trim().is_empty() {
        return Err(NO_SERVER_URL.to_owned());
    }
    if creds.username.is_empty() {
        return Err(NO_USERNAME.to_owned());
    }
    let host = registry_key(&creds.server_url).map_err(|e| e.to_string())?;
    Ok(StoreRequest {
        host,
        username: creds.username,
        secret: creds.secret,
    })
}

fn store(input: &str, settings: &Settings) -> Result<Answer> {
    let req = match parse_store(input) {
        Ok(req) => req,
        Err(message) => return Ok(Answer::Error(message)),
    };
    let host = &req.host;
    let google = is_google(host, settings);
    let kind = login::kind(&req.username);
    if google
        && kind == Kind::AccessToken
        && token::issued_by_us(
            settings,
            Identity::for_registry(rule_of(host, settings).as_ref()),
            &req.secret,
        )
    {
        // `docker login HOST` asked us (get) and hands our own token back: keeping it would
        // pin an hour-long token over the fresh ones this helper mints.
        ui::note(format_args!(
            "docker-credential-gcp mints fresh tokens for {host} by itself; the token it just issued was not stored (nothing to log in to)"
        ));
        return Ok(Answer::Output(String::new()));
    }
    let store = Store::open(settings)
        .ok_or_else(|| anyhow!("no data directory for stored credentials (is HOME set?)"))?;
    if google && kind == Kind::AccessToken {
        log::warn!(
            "storing an access token for {host}: it is used for at most {} minutes, then this helper mints fresh tokens again",
            login::ACCESS_TOKEN_MAX_AGE_SECS / 60
        );
    }
    store.put(
        host,
        &Login::new(&req.username, now_secs(), None),
        &req.secret,
    )?;
    Ok(Answer::Output(String::new()))
}

fn erase(input: &str, settings: &Settings) -> Result<Answer> {
    if input.trim().is_empty() {
        return Ok(Answer::Error(NO_SERVER_URL.to_owned()));
    }
    let host = registry_key(input)?;
    let store = Store::open(settings)
        .ok_or_else(|| anyhow!("no data directory for stored credentials (is HOME set?)"))?;
    store.erase(&host, store::CHANGE_WAIT)?;
    Ok(Answer::Output(String::new()))
}

/// Every host this helper answers for: the Google registries docker's config maps to it
/// (user `oauth2accesstoken`; some clients ask `get` only for hosts `list` names), and the
/// hosts with `docker login` credentials (their own user names).
fn list(settings: &Settings, mapped: MappedHosts) -> Result<Answer> {
    let mut listed: std::collections::BTreeMap<String, String> = mapped()
        .into_iter()
        .filter_map(|h| hosts::normalise(&h))
        .filter(|r| hosts::classify(r, &settings.registries.value) == HostClass::Google)
        .map(|r| (r.to_string(), OAUTH_USERNAME.to_owned()))
        .collect();
    if let Some(store) = Store::open(settings) {
        listed.extend(
            store
                .logins()?
                .into_iter()
                .map(|(host, login)| (host, login.username)),
        );
    }
    Ok(Answer::Output(serde_json::to_string(&listed)? + "\n"))
}

/// The identity rule that serves `host` (a stored login's key) under these settings.
fn rule_of(host: &str, settings: &Settings) -> Option<Rule> {
    hosts::normalise(host).and_then(|r| settings.rule_for(&r, None))
}

/// Whether `host` (a stored login's key) is a Google registry under these settings.
pub(crate) fn is_google(host: &str, settings: &Settings) -> bool {
    hosts::normalise(host)
        .is_some_and(|r| hosts::classify(&r, &settings.registries.value) == HostClass::Google)
}

/// Stored credentials are keyed by normalised `host[:port]`, so `https://gcr.io/` and `gcr.io`
/// are the same entry.
fn registry_key(server: &str) -> Result<String> {
    hosts::normalise(server)
        .map(|r| r.to_string())
        .ok_or_else(|| {
            anyhow!(
                "{:?} is not a registry host or URL",
                excerpt(server.trim().as_bytes())
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_input_is_refused_with_what_is_wrong() {
        for (input, needle) in [
            ("", "no credentials on stdin"),
            ("not json", "invalid credentials JSON"),
            ("[1,2,3]", "invalid credentials JSON"),
            ("42", "invalid credentials JSON"),
            (
                r#"{"ServerURL": 5, "Username": "u", "Secret": "s"}"#,
                "invalid credentials JSON",
            ),
            (
                r#"{"ServerURL":"gcr.io","Username":"u","Secret":"s""#,
                "invalid credentials JSON",
            ),
            (
                r#"{"ServerURL":"","Username":"u","Secret":"s"}"#,
                "no credentials server URL",
            ),
            (
                r#"{"ServerURL":"gcr.io","Username":"","Secret":"s"}"#,
                "no credentials username",
            ),
            (
                r#"{"ServerURL":"not a host!","Username":"u","Secret":"s"}"#,
                "is not a registry host",
            ),
        ] {
            let e = parse_store(input).err().unwrap_or_default();
            assert!(e.contains(needle), "{input:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{input:?}: one line");
        }
    }
}
