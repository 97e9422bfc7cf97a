//! Executable-sourced subject tokens for workload identity federation ("pluggable auth"): a
//! program named in the credentials file prints an OIDC or SAML token in Google's response
//! format (version 1), optionally leaving it in an `output_file` to be reused while valid.
//!
//! Running a program named in a file is opt-in (`GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`),
//! as in Google's libraries. The program gets its documented environment and our deadline;
//! its stdout, which holds the token, is never quoted in a message.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::access::now_secs;
use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::process;
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const ALLOW_EXECUTABLES: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
const MAX_OUTPUT_FILE: u64 = 1024 * 1024;

/// The `credential_source.executable` object, as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawExecutable {
    command: String,
    timeout_millis: Option<u64>,
    output_file: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Executable {
    command: String,
    timeout: Duration,
    output_file: Option<PathBuf>,
}

/// What the program is told about the exchange it serves.
pub(crate) struct Request<'a> {
    pub(crate) audience: &'a str,
    pub(crate) subject_token_type: &'a str,
    pub(crate) impersonated_email: Option<&'a str>,
}

impl Executable {
    pub(crate) fn parse(raw: RawExecutable) -> Result<Executable> {
        if raw.command.split_whitespace().next().is_none() {
            bail!("executable.command is empty");
        }
        let millis = raw.timeout_millis.unwrap_or(DEFAULT_TIMEOUT_MS);
        if millis == 0 {
            bail!("executable.timeout_millis must be positive");
        }
        Ok(Executable {
            command: raw.command,
            timeout: Duration::from_millis(millis),
            output_file: raw.output_file.filter(|f| !f.is_empty()).map(PathBuf::from),
        })
    }

    pub(crate) fn subject_token(
        &self,
        req: &Request<'_>,
        deadline: Instant,
    ) -> Result<Secret<String>> {
        if !env::is(ALLOW_EXECUTABLES, "1") {
            bail!("executable-sourced credentials are disabled: set {ALLOW_EXECUTABLES}=1");
        }
        if let Some(token) = self.cached_output() {
            return Ok(token);
        }
        // The command is split on whitespace, not shell-parsed (documented).
        let mut args = self.command.split_whitespace();
        let program = args.next().unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", req.audience)
            .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", req.subject_token_type)
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0");
        if let Some(email) = req.impersonated_email {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(file) = &self.output_file {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", file);
        }
        let step = format!("executable {program}");
        // Our own deadline (DOCKER_CREDENTIAL_GCP_TIMEOUT) bounds the child too.
        let deadline = deadline.min(Instant::now() + self.timeout);
        let done = process::run(cmd, deadline)
            .map_err(|e| anyhow!("{step}: {e} (timeout_millis {})", self.timeout.as_millis()))?;
        if !done.status.success() {
            // Its stderr is the user's own diagnostics; stdout may hold a token, so not that.
            let stderr = match excerpt(&done.stderr) {
                s if s.is_empty() => "no output on stderr".to_owned(),
                s => s,
            };
            bail!("{step} failed ({}): {stderr}", done.status);
        }
        parse_response(&done.stdout, self.output_file.is_some()).map_err(|e| anyhow!("{step}: {e}"))
    }

    /// A still-valid response the program left in its `output_file` earlier. An absent,
    /// expired, failed or unreadable one means: run the program.
    fn cached_output(&self) -> Option<Secret<String>> {
        let file = self.output_file.as_ref()?;
        let bytes = files::read_bounded(file, MAX_OUTPUT_FILE, Symlinks::Follow, Trust::Anyone)
            .ok()
            .flatten()?;
        match parse_response(&bytes, true) {
            Ok(token) => Some(token),
            Err(e) => {
                log::debug!("not using the output_file {}: {e}", file.display());
                None
            }
        }
    }
}

/// The pluggable-auth response format (`version` 1). Failure responses carry the program's own
/// `code` and `message`, which are shown; tokens never are.
#[derive(Deserialize)]
struct Response {
    version: Option<u64>,
    success: Option<bool>,
    token_type: Option<String>,
    id_token: Option<Secret<String>>,
    saml_response: Option<Secret<String>>,
    expiration_time: Option<i64>,
    code: Option<String>,
    message: Option<String>,
}

fn parse_response(bytes: &[u8], need_expiry: bool) -> Result<Secret<String>> {
    let r: Response = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("the response is not valid JSON ({})", json_error(&e)))?;
    if r.version != Some(1) {
        bail!("the response must have \"version\": 1");
    }
    match r.success {
        Some(true) => {}
        Some(false) => {
            let code = r.code.unwrap_or_default();
            let message = r.message.unwrap_or_default();
            bail!(
                "the executable reported failure: {}: {}",
                excerpt(code.as_bytes()),
                excerpt(message.as_bytes())
            );
        }
        None => bail!("the response has no \"success\" field"),
    }
    match r.expiration_time {
        Some(t) if t <= now_secs() as i64 => bail!("the response has expired"),
        None if need_expiry => bail!("the response needs expiration_time when output_file is set"),
        _ => {}
    }
    let token = match r.token_type.as_deref() {
        Some(
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token",
        ) => r.id_token,
        Some("urn:ietf:params:oauth:token-type:saml2") => r.saml_response,
        Some(other) => bail!(
            "token_type {:?} is not supported",
            excerpt(other.as_bytes())
        ),
        None => bail!("the response has no token_type"),
    };
    token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the response has no token for its token_type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked() {
        let now = now_secs() as i64;
        let ok = format!(
            r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"header.payload.sig","expiration_time":{}}}"#,
            now + 600
        );
        assert_eq!(
            parse_response(ok.as_bytes(), true).unwrap().expose(),
            "header.payload.sig"
        );
        let saml = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:saml2","saml_response":"PHNhbWw+"}"#;
        assert_eq!(
            parse_response(saml.as_bytes(), false).unwrap().expose(),
            "PHNhbWw+"
        );
        assert!(parse_response(saml.as_bytes(), true).is_err());
        let failed = r#"{"version":1,"success":false,"code":"401","message":"not logged in"}"#;
        let e = parse_response(failed.as_bytes(), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the executable reported failure: 401: not logged in"
        );
        let expired = ok.replace(&(now + 600).to_string(), &(now - 1).to_string());
        assert!(parse_response(expired.as_bytes(), false).is_err());
        for bad in [
            "",
            "[]",
            r#"{"version":2,"success":true}"#,
            r#"{"version":1}"#,
        ] {
            assert!(parse_response(bad.as_bytes(), false).is_err(), "{bad}");
        }
    }
}
