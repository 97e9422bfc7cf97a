//! Bazel's credential-helper protocol (EngFlow/credential-helper-spec), spoken by `get`.
//!
//! Bazel runs `HELPER get` in the workspace directory, with the client's environment, writes
//! `{"uri":"https://host/path"}` on stdin and, on exit 0, reads
//! `{"headers":{"Name":["value"]},"expires":"<RFC 3339>"}` from stdout; `{}` means "no headers".
//! On any other exit it reads stderr for the message and drops stdout (a download then goes on
//! without credentials, with a warning that quotes it). So stdout carries only answers and
//! every error goes to stderr, unlike docker's protocol.
//!
//! Bazel 7.4 and later cache each answer per URI until `expires` (7.1-7.3 mis-computed that
//! time and ran the helper for every request when `expires` was set; without it they cache for
//! `--credential_helper_cache_duration`). Every URI is a separate helper run, so a build costs
//! one process per distinct download URL, each a cached `get` after the first.
//!
//! Which URIs get a token is `hosts::parse_https_uri` and `hosts::classify_uri`; the token is
//! the one docker's `get` serves (same cache, refresh ahead and stale fallback), of the
//! identity rule that covers the URI's host and path, if any.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::hosts::{self, DEPRECATED_BUCKET_MESSAGE, ExtraHost, HostClass, HttpsUri};
use crate::settings::{OnError, Settings};
use crate::token::{self, Identity, NoToken, Token, now_secs};
use crate::util::text::json_error;

/// What a Bazel `get` answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// JSON for stdout, exit 0 (`{}` for a URI that is not Google's).
    Headers(String),
    /// `{}` for stdout, exit 0, for a Google URI without a token: Bazel goes on anonymously,
    /// and the hint logged on the way is shown on stderr.
    Anonymous(String),
    /// A message for stderr, exit 1.
    Failure(String),
    /// Input that is no request Bazel sends (no `uri`, not JSON): the message for stderr, and
    /// docker's "not found" on stdout with exit 1, which is what a docker client that sent such
    /// text always got.
    NotARequest(String),
}

/// Whether `get` input is a Bazel request rather than a docker server address: a JSON object,
/// which no server address can be (`{` is never part of a host name).
pub(crate) fn is_request(input: &[u8]) -> bool {
    input
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// A parsed request: the URI, as sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) uri: String,
}

/// Parses a request; the error is the message for stderr. Unknown fields are ignored, as the
/// spec asks; `uri` is required (the spec's schema), so `{}` is an error, not "no headers".
/// Pure, so the fuzzer can reach it. Messages name positions, never the input's values.
pub(crate) fn parse_request(input: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(input).map_err(|e| {
        format!(
            "invalid JSON request on stdin ({}); expected an object with \"uri\", as Bazel sends",
            json_error(&e)
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(
            "the request on stdin is not a JSON object; expected {\"uri\": \"https://…\"}"
                .to_owned(),
        );
    };
    match fields.get("uri") {
        Some(Value::String(uri)) => Ok(Request { uri: uri.clone() }),
        Some(_) => Err("the request's \"uri\" is not a string".to_owned()),
        None => Err(
            "the request has no \"uri\" (Bazel sends {\"uri\": \"https://…\"}); nothing to answer"
                .to_owned(),
        ),
    }
}

/// What the URI policy decided for a request, before any token is looked at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Google host over https: answer with a token.
    Google(HttpsUri),
    /// A retired Container Registry bucket host: explain.
    DeprecatedBucket,
    /// Anything else (plain http, user info, foreign hosts, lookalikes): no headers.
    Other,
}

/// The URI policy for `uri` with the hosts the user declared Google's. Pure.
pub(crate) fn target(uri: &str, declared: &[ExtraHost]) -> Target {
    let Some(parsed) = hosts::parse_https_uri(uri) else {
        return Target::Other;
    };
    match hosts::classify_uri(&parsed, declared) {
        HostClass::Google => Target::Google(parsed),
        HostClass::DeprecatedBucket => Target::DeprecatedBucket,
        HostClass::Other => Target::Other,
    }
}

/// Answers one Bazel request.
pub(crate) fn get(input: &str, settings: &Settings) -> Reply {
    let request = match parse_request(input) {
        Ok(r) => r,
        Err(message) => return Reply::NotARequest(message),
    };
    let uri = match target(&request.uri, &settings.registries.value) {
        Target::Google(uri) => uri,
        Target::DeprecatedBucket => return Reply::Failure(DEPRECATED_BUCKET_MESSAGE.to_owned()),
        Target::Other => {
            log::debug!("Bazel asked for a URI that is not a Google host over https; no headers");
            return Reply::Headers(NO_HEADERS.to_owned());
        }
    };
    // The query is left out of the log: a signed URL carries its signature there.
    log::debug!("Bazel asks for https://{}{}", uri.registry, uri.path);
    answer(token_for(&uri, settings), settings, &uri)
}

/// The token for `uri`: of the first identity rule that covers its host and path (a
/// repository's path can choose the identity, as for the kubelet), else of the token sources
/// in order, as for docker.
fn token_for(uri: &HttpsUri, settings: &Settings) -> Result<Token, NoToken> {
    let rule = settings.rule_for(&uri.registry, Some(&uri.path));
    token::google_token_for(settings, Identity::for_registry(rule.as_ref()))
}

const NO_HEADERS: &str = "{}";

/// Maps the token lookup to Bazel's answer, as docker's `get` maps it to "not found" or an
/// error: when the user simply has no (valid) credentials (an absent failure kind) the answer
/// is `{}`, so Bazel fetches anonymously, with the hint on stderr and in the log file (Bazel
/// drops stderr on exit 0, so the log file is where a Bazel user finds it); any other failure
/// exits 1 with the error on stderr, which Bazel prints (a download then goes on without
/// credentials), unless `on_error` is `anonymous`, which answers `{}` as well.
fn answer(result: Result<Token, NoToken>, settings: &Settings, uri: &HttpsUri) -> Reply {
    let no = match result {
        Ok(token) => return headers(&token, now_secs()),
        Err(no) => no,
    };
    if no.kind.is_absent() {
        log::warn!(
            "{}. Answering no headers, so Bazel fetches from {} anonymously",
            no.hint(),
            uri.registry
        );
        return Reply::Anonymous(NO_HEADERS.to_owned());
    }
    if settings.on_error.value == OnError::Anonymous {
        log::warn!(
            "{no}. Answering no headers (on_error is anonymous), so Bazel fetches from {} anonymously",
            uri.registry
        );
        return Reply::Anonymous(NO_HEADERS.to_owned());
    }
    Reply::Failure(no.to_string())
}

/// `{"headers":{"Authorization":["Bearer …"]},"expires":"…"}` for `token` at `now`.
fn headers(token: &Token, now: u64) -> Reply {
    let answer = json!({
        "headers": {"Authorization": [format!("Bearer {}", token.secret.expose())]},
        "expires": expires(token, now),
    });
    Reply::Headers(answer.to_string())
}

/// When Bazel must stop using the header: the token's end less the margin after which our own
/// cache stops serving a token (five minutes), never before `now`. Bazel keeps an answer until
/// `expires` and sends it without asking again, so a request it starts just before that time
/// (a retry after a backoff, a slow connect, a redirect, a clock a little ahead of Google's)
/// must still find the token alive; and when Bazel does ask again, our cache no longer serves
/// this token, so it gets a fresh one rather than the same dying one. Whole seconds in UTC
/// (`2026-01-02T03:04:05Z`): Bazel's parser takes no fractions.
fn expires(token: &Token, now: u64) -> String {
    let at = token.fresh_until().max(now).min(i64::MAX as u64);
    OffsetDateTime::from_unix_timestamp(at as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::secret::Secret;

    fn token(expires_at: u64) -> Token {
        Token {
            secret: Secret::new("ya29.token".to_owned()),
            expires_at,
        }
    }

    #[test]
    fn a_request_is_a_json_object_and_a_server_address_is_not() {
        for input in [&b"{\"uri\":\"https://gcr.io\"}"[..], b"  \n{}", b"{"] {
            assert!(is_request(input), "{input:?}");
        }
        for input in [
            &b"gcr.io"[..],
            b"https://gcr.io",
            b"",
            b"  ",
            b"[{}]",
            b"\"{\"",
        ] {
            assert!(!is_request(input), "{input:?}");
        }
    }

    #[test]
    fn requests_need_a_uri_and_may_carry_unknown_fields() {
        assert_eq!(
            parse_request(r#"{"uri":"https://us-maven.pkg.dev/p/r/a.jar"}"#)
                .unwrap()
                .uri,
            "https://us-maven.pkg.dev/p/r/a.jar"
        );
        assert_eq!(
            parse_request(r#"{"future":{"x":[1,2]},"uri":"https://gcr.io/v2/","n":null}"#)
                .unwrap()
                .uri,
            "https://gcr.io/v2/"
        );
        for (input, needle) in [
            ("{}", "has no \"uri\""),
            (r#"{"URI":"https://gcr.io"}"#, "has no \"uri\""),
            (r#"{"uri":5}"#, "is not a string"),
            (r#"{"uri":null}"#, "is not a string"),
            (r#"{"uri":["https://gcr.io"]}"#, "is not a string"),
            (
                "{",
                "invalid JSON request on stdin (unexpected end at line 1 column 1)",
            ),
            (r#"{"uri":"https://gcr.io"} {}"#, "invalid JSON request"),
            (r#"{"uri":"https://gcr.io",}"#, "invalid JSON request"),
        ] {
            let e = parse_request(input).unwrap_err();
            assert!(e.contains(needle), "{input:?}: {e}");
        }
    }

    #[test]
    fn errors_never_echo_the_request() {
        for input in [
            r#"{"uri":"https://gcr.io/secret-path","#,
            r#"{"uri":{"secret-value":1}}"#,
            r#"{"uri":12345678}"#,
        ] {
            let e = parse_request(input).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("12345678"), "{e}");
        }
    }

    #[test]
    fn the_answer_is_a_bearer_header_and_an_expiry_before_the_token_ends() {
        // 2026-01-02T03:04:05Z
        let end = 1_767_323_045;
        let Reply::Headers(json) = headers(&token(end), end - 3600) else {
            panic!("no headers");
        };
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["headers"]["Authorization"], json!(["Bearer ya29.token"]));
        assert_eq!(v["expires"], "2026-01-02T02:59:05Z");
        assert_eq!(v.as_object().unwrap().len(), 2);
    }

    #[test]
    fn the_expiry_is_never_in_the_past() {
        let now = 1_767_323_045;
        assert_eq!(expires(&token(now + 60), now), "2026-01-02T03:04:05Z");
        assert_eq!(expires(&token(now - 60), now), "2026-01-02T03:04:05Z");
        assert_eq!(expires(&token(now + 301), now), "2026-01-02T03:04:06Z");
    }
}
