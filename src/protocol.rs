//! The docker-credential-helpers wire protocol: `get`, `store`, `erase`, `list`.
//!
//! One verb per process, input on stdin, the answer on stdout, exit 0 or 1. Errors go to
//! stdout too (that is where docker looks for them), except that a registry we have nothing
//! for gets exactly [`NOT_FOUND`]: docker, skopeo and podman then go on anonymously, while any
//! other error aborts the pull. Diagnostics for humans go to stderr through the logger.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::hosts::{self, DEPRECATED_BUCKET_MESSAGE, HostClass};
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::Store;
use crate::tokens::{self, Outcome};

pub const NOT_FOUND: &str = "credentials not found in native keychain";
pub const NO_SERVER_URL: &str = "no credentials server URL";
pub const NO_USERNAME: &str = "no credentials username";
/// The registry user name that tells Google registries the password is an OAuth access token.
pub const OAUTH_USERNAME: &str = "oauth2accesstoken";
/// Inputs are a host name or a small JSON object; anything bigger is a mistake.
const MAX_INPUT: u64 = 1024 * 1024;

/// What a verb answers.
enum Answer {
    /// Printed on stdout, exit 0 (may be empty).
    Output(String),
    NotFound,
    /// Printed on stdout, exit 1.
    Error(String),
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

/// Runs one protocol verb with stdin and stdout and returns the exit code.
pub fn run(verb: &str) -> ExitCode {
    let answer = match read_stdin() {
        Ok(input) => answer(verb, &input),
        Err(e) => Answer::Error(e.to_string()),
    };
    let (text, code) = match answer {
        Answer::Output(text) => (text, ExitCode::SUCCESS),
        Answer::NotFound => (format!("{NOT_FOUND}\n"), ExitCode::FAILURE),
        Answer::Error(text) => (format!("{}\n", one_line(&text)), ExitCode::FAILURE),
    };
    // A closed stdout (the client went away) is not worth a panic or a second error.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    code
}

fn read_stdin() -> Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("cannot read stdin: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(anyhow!("input on stdin is larger than {MAX_INPUT} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("input on stdin is not valid UTF-8"))
}

fn answer(verb: &str, input: &str) -> Answer {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => return Answer::Error(format!("docker-credential-gcp configuration: {e:#}")),
    };
    crate::logging::init(settings.log_level.value, settings.log_file.value.clone());
    let result = match verb {
        "get" => get(input, &settings),
        "store" => store(input),
        "erase" => erase(input),
        "list" => list(),
        other => Err(anyhow!("unknown verb {other:?}")),
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
        crate::debug!("{server:?} is not a registry host; not found");
        return Ok(Answer::NotFound);
    };
    let host = registry.to_string();
    if let Some(answer) = stored(server, &host)? {
        return Ok(answer);
    }
    match hosts::classify(&registry, &settings.registries.value) {
        HostClass::Google => {}
        HostClass::DeprecatedBucket => {
            return Ok(Answer::Error(DEPRECATED_BUCKET_MESSAGE.to_owned()));
        }
        HostClass::Other => {
            crate::debug!("{host} is not a Google registry; not found");
            return Ok(Answer::NotFound);
        }
    }
    match tokens::google_token(settings)? {
        Outcome::Token(token) => Ok(credentials(server, OAUTH_USERNAME, token.secret.expose())),
        Outcome::NoSource => {
            crate::warn!(
                "no Google credentials on this machine (sources tried: {}); run `gcloud auth login` \
                 or set GOOGLE_APPLICATION_CREDENTIALS. Answering \"not found\" so {host} is tried anonymously",
                settings
                    .token_sources
                    .value
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(Answer::NotFound)
        }
    }
}

/// Explicitly stored credentials for `host` win over minted tokens.
fn stored(server: &str, host: &str) -> Result<Option<Answer>> {
    let Some(store) = Store::open() else {
        return Ok(None);
    };
    match store.has(host) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => {
            crate::warn!("ignoring stored credentials: {e:#}");
            return Ok(None);
        }
    }
    match store.get(host)? {
        Some((username, secret)) => Ok(Some(credentials(server, &username, secret.expose()))),
        None => {
            crate::warn!(
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
pub struct StoreRequest {
    pub host: String,
    pub username: String,
    pub secret: Secret<String>,
}

/// Parses and validates `store` input; the error is the protocol's answer text. Pure: it
/// touches nothing, so it is what the fuzzer exercises.
pub fn parse_store(input: &str) -> std::result::Result<StoreRequest, String> {
    if input.trim().is_empty() {
        return Err(
            "no credentials on stdin (expected a JSON object with ServerURL, Username and Secret)"
                .to_owned(),
        );
    }
    let creds: StoreInput = serde_json::from_str(input).map_err(|e| {
        format!(
            "invalid credentials JSON on stdin (line {} column {}); expected an object with ServerURL, Username and Secret",
            e.line(),
            e.column()
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

fn store(input: &str) -> Result<Answer> {
    let req = match parse_store(input) {
        Ok(req) => req,
        Err(message) => return Ok(Answer::Error(message)),
    };
    let host = &req.host;
    if req.username == OAUTH_USERNAME {
        crate::warn!(
            "storing an access token for {host}: it expires within an hour and is used instead of fresh tokens until `docker logout {host}`"
        );
    }
    let store = Store::open()
        .ok_or_else(|| anyhow!("no data directory for stored credentials (is HOME set?)"))?;
    store.put(host, &req.username, &req.secret)?;
    Ok(Answer::Output(String::new()))
}

fn erase(input: &str) -> Result<Answer> {
    if input.trim().is_empty() {
        return Ok(Answer::Error(NO_SERVER_URL.to_owned()));
    }
    let host = registry_key(input)?;
    let store = Store::open()
        .ok_or_else(|| anyhow!("no data directory for stored credentials (is HOME set?)"))?;
    store.erase(&host)?;
    Ok(Answer::Output(String::new()))
}

fn list() -> Result<Answer> {
    let listed = match Store::open() {
        Some(store) => store.list()?,
        None => Default::default(),
    };
    Ok(Answer::Output(serde_json::to_string(&listed)? + "\n"))
}

/// Stored credentials are keyed by normalised `host[:port]`, so `https://gcr.io/` and `gcr.io`
/// are the same entry.
fn registry_key(server: &str) -> Result<String> {
    hosts::normalise(server)
        .map(|r| r.to_string())
        .ok_or_else(|| {
            anyhow!(
                "{:?} is not a registry host or URL",
                crate::http::excerpt(server.trim().as_bytes())
            )
        })
}

/// Protocol answers are one line: clients print only the first.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
