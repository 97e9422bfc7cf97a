//! `get` with workload/workforce identity federation and impersonation ADC files:
//! `external_account` (file, url, executable and aws credential sources),
//! `external_account_authorized_user` and `impersonated_service_account`. Each test drives the
//! built binary like docker does, against loopback stand-ins for Google's STS and IAM
//! Credentials APIs, an OIDC token URL and the AWS instance metadata service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/gh";
const WORKFORCE_AUDIENCE: &str =
    "//iam.googleapis.com/locations/global/workforcePools/corp/providers/okta";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.subject-token-payload.signature";
const IMPERSONATED_EMAIL: &str = "deployer@test-project.iam.gserviceaccount.com";
/// The expiry the IAM stand-in reports: 45 minutes after the first use, so it is a lifetime
/// a real token can have (the helper cuts longer ones to 12 hours).
fn iam_expires_at() -> u64 {
    static AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 45 * 60
    })
}

/// [`iam_expires_at`] as the IAM Credentials API writes it (RFC 3339).
fn iam_expire_time() -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(iam_expires_at() as i64).unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
const AWS_KEY_ID: &str = "ASIAEXAMPLEKEYID";
const AWS_SECRET: &str = "aws/secret+access+key/EXAMPLE0123456789";
const AWS_SESSION: &str = "aws-session-token-EXAMPLE";

// ---------------------------------------------------------------------------------------------
// Stand-ins

/// Google STS: accepts a token exchange of `subject_token` and issues `sts-token-N`.
fn sts(expected_subject: impl Fn(&str) -> bool + Send + Sync + 'static) -> Server {
    let issued = AtomicUsize::new(0);
    Server::start(move |req| {
        let form = req.form();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let ok = req.method == "POST"
            && req.path() == "/v1/token"
            && field("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
            && field("requested_token_type") == "urn:ietf:params:oauth:token-type:access_token"
            && field("scope") == "https://www.googleapis.com/auth/cloud-platform"
            && expected_subject(field("subject_token"));
        if !ok {
            return Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": "The subject token is invalid."}),
            );
        }
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(
            200,
            json!({
                "access_token": format!("sts-token-{n}"),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            }),
        )
    })
}

fn sts_for(subject: &'static str) -> Server {
    sts(move |s| s == subject)
}

/// IAM Credentials generateAccessToken for IMPERSONATED_EMAIL, for any bearer token
/// starting with `bearer_prefix`.
fn iam(bearer_prefix: &'static str) -> Server {
    Server::start(move |req| {
        let bearer_ok = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| t.starts_with(bearer_prefix));
        let path =
            format!("/v1/projects/-/serviceAccounts/{IMPERSONATED_EMAIL}:generateAccessToken");
        if req.method != "POST" || req.path() != path || !bearer_ok {
            return Reply::json(
                403,
                json!({"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied", "status": "PERMISSION_DENIED"}}),
            );
        }
        Reply::json(
            200,
            json!({"accessToken": "ya29.impersonated", "expireTime": iam_expire_time()}),
        )
    })
}

fn iam_url(server: &Server) -> String {
    server.url(&format!(
        "/v1/projects/-/serviceAccounts/{IMPERSONATED_EMAIL}:generateAccessToken"
    ))
}

/// Writes `doc` as the ADC file and points GOOGLE_APPLICATION_CREDENTIALS at it.
fn use_adc(env: &mut Env, doc: &Value) -> PathBuf {
    let path = env.path("adc.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    path
}

fn external_account(sts: &Server, subject_token_type: &str, source: Value) -> Value {
    json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": subject_token_type,
        "token_url": sts.url("/v1/token"),
        "credential_source": source,
    })
}

/// The one STS request's form.
fn sts_form(sts: &Server) -> HashMap<String, String> {
    let requests = sts.requests();
    assert_eq!(requests.len(), 1, "one STS request");
    requests[0].form()
}

fn json_body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).expect("a JSON body")
}

/// The `expires_at` of the only token in the cache directory.
fn cached_expiry(env: &Env) -> u64 {
    let doc: Value = serde_json::from_slice(&std::fs::read(env.cache_entry()).unwrap()).unwrap();
    doc["expires_at"].as_u64().unwrap()
}

fn assert_failed_without(out: &Output, secrets: &[&str]) {
    assert_eq!(out.code, 1, "stdout={} stderr={}", out.stdout, out.stderr);
    for secret in secrets {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked: stdout={} stderr={}",
            out.stdout,
            out.stderr
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// File- and URL-sourced credentials, STS, impersonation

#[test]
fn a_file_sourced_oidc_token_is_exchanged_at_the_files_sts_url() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, format!("{SUBJECT_TOKEN}\n")).unwrap();
    let doc = external_account(&sts, JWT_TYPE, json!({"file": token_file}));
    use_adc(&mut env, &doc);
    let (_, user, secret) = creds(&env.get("us-docker.pkg.dev"));
    assert_eq!(
        (user.as_str(), secret.as_str()),
        ("oauth2accesstoken", "sts-token-1")
    );
    let form = sts_form(&sts);
    assert_eq!(form["audience"], AUDIENCE);
    assert_eq!(form["subject_token_type"], JWT_TYPE);
    assert!(!form.contains_key("options"));
}

#[test]
fn a_json_file_source_reads_the_named_field() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let token_file = env.path("token.json");
    std::fs::write(
        &token_file,
        json!({"value": SUBJECT_TOKEN, "count": 1}).to_string(),
    )
    .unwrap();
    let source = json!({"file": token_file, "format": {"type": "json", "subject_token_field_name": "value"}});
    use_adc(&mut env, &external_account(&sts, JWT_TYPE, source));
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
}

#[test]
fn a_url_sourced_token_is_fetched_with_the_files_headers_then_impersonated() {
    let oidc = Server::start(|req| {
        if req.header("metadata") != Some("True") {
            return Reply::json(400, json!({"error": "missing header"}));
        }
        Reply::json(
            200,
            json!({"access_token": SUBJECT_TOKEN, "expires_on": "1"}),
        )
    });
    let sts = sts_for(SUBJECT_TOKEN);
    let iam = iam("sts-token-");
    let mut env = Env::new();
    let mut doc = external_account(
        &sts,
        JWT_TYPE,
        json!({
            "url": oidc.url("/metadata/identity/oauth2/token?api-version=2018-02-01"),
            "headers": {"Metadata": "True"},
            "format": {"type": "json", "subject_token_field_name": "access_token"},
        }),
    );
    doc["service_account_impersonation_url"] = iam_url(&iam).into();
    doc["service_account_impersonation"] = json!({"token_lifetime_seconds": 1800});
    use_adc(&mut env, &doc);
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.impersonated");
    assert_eq!(oidc.requests()[0].method, "GET");
    sts_form(&sts);
    let req = &iam.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer sts-token-1"));
    assert_eq!(
        json_body(req),
        json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "1800s"})
    );
    assert_eq!(
        cached_expiry(&env),
        iam_expires_at(),
        "the lifetime comes from expireTime"
    );
}

#[test]
fn a_text_url_source_is_used_whole() {
    let oidc = Server::start(|_| Reply {
        status: 200,
        headers: vec![],
        body: SUBJECT_TOKEN.as_bytes().to_vec(),
    });
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    use_adc(
        &mut env,
        &external_account(&sts, JWT_TYPE, json!({"url": oidc.url("/token")})),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
}

#[test]
fn workforce_pools_send_the_user_project_as_sts_options() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    let mut doc = external_account(&sts, JWT_TYPE, json!({"file": token_file}));
    doc["audience"] = WORKFORCE_AUDIENCE.into();
    doc["workforce_pool_user_project"] = "billing-project".into();
    use_adc(&mut env, &doc);
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
    let form = sts_form(&sts);
    assert_eq!(form["audience"], WORKFORCE_AUDIENCE);
    let options: Value = serde_json::from_str(&form["options"]).unwrap();
    assert_eq!(options, json!({"userProject": "billing-project"}));
}

#[test]
fn two_gets_make_one_sts_request() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    use_adc(
        &mut env,
        &external_account(&sts, JWT_TYPE, json!({"file": token_file})),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
    assert_eq!(creds(&env.get("europe-docker.pkg.dev")).2, "sts-token-1");
    assert_eq!(sts.count(), 1);
}

#[test]
fn an_sts_rejection_names_the_step_and_never_the_subject_token() {
    let sts = sts_for("some other token");
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    use_adc(
        &mut env,
        &external_account(&sts, JWT_TYPE, json!({"file": token_file})),
    );
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    let out = env.get("gcr.io");
    assert_failed_without(&out, &[SUBJECT_TOKEN]);
    let expected = format!(
        "STS token exchange at {}: HTTP 400 invalid_grant: The subject token is invalid.",
        sts.url("/v1/token")
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
}

#[test]
fn an_sts_error_that_echoes_the_subject_token_is_redacted() {
    let sts = Server::start(|req| {
        let subject = req.form().get("subject_token").cloned().unwrap_or_default();
        Reply::json(
            400,
            json!({"error": "invalid_request", "error_description": format!("bad token {subject}")}),
        )
    });
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    use_adc(
        &mut env,
        &external_account(&sts, JWT_TYPE, json!({"file": token_file})),
    );
    let out = env.get("gcr.io");
    assert_failed_without(&out, &[SUBJECT_TOKEN]);
    assert!(
        out.stdout
            .contains("HTTP 400 invalid_request: bad token REDACTED"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_impersonation_denial_names_the_step_and_never_the_tokens() {
    let sts = sts_for(SUBJECT_TOKEN);
    let iam = iam("not-what-sts-issues");
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    let mut doc = external_account(&sts, JWT_TYPE, json!({"file": token_file}));
    doc["service_account_impersonation_url"] = iam_url(&iam).into();
    use_adc(&mut env, &doc);
    let out = env.get("gcr.io");
    assert_failed_without(&out, &[SUBJECT_TOKEN, "sts-token-1"]);
    let expected = format!(
        "service account impersonation at {}: HTTP 403 PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied",
        iam_url(&iam)
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
    assert_eq!(json_body(&iam.requests()[0])["lifetime"], "3600s");
}

#[test]
fn plain_http_urls_off_loopback_are_refused_before_anything_is_sent() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    for (field, value) in [
        ("token_url", "http://sts.example.com/v1/token"),
        (
            "service_account_impersonation_url",
            "http://iam.example.com/x:generateAccessToken",
        ),
    ] {
        let mut doc = external_account(&sts, JWT_TYPE, json!({"file": token_file}));
        doc[field] = value.into();
        use_adc(&mut env, &doc);
        let out = env.get("gcr.io");
        assert_failed_without(&out, &[SUBJECT_TOKEN]);
        assert!(
            out.stdout.contains(field) && out.stdout.contains("https"),
            "{}",
            out.stdout
        );
    }
    let doc = external_account(
        &sts,
        JWT_TYPE,
        json!({"url": "http://oidc.example.com/token"}),
    );
    use_adc(&mut env, &doc);
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("plain http"), "{}", out.stdout);
    assert_eq!(sts.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Executable-sourced credentials

/// Writes a shell script and returns the `executable.command` that runs it. Run through
/// `/bin/sh` so a freshly written file is never exec'd while another test thread may still
/// hold it open (ETXTBSY).
fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    format!("/bin/sh {}", path.display())
}

fn executable_response(expires_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({
        "version": 1,
        "success": true,
        "token_type": JWT_TYPE,
        "id_token": SUBJECT_TOKEN,
        "expiration_time": now + expires_in,
    })
    .to_string()
}

fn executable_account(sts: &Server, executable: Value) -> Value {
    external_account(sts, JWT_TYPE, json!({ "executable": executable }))
}

#[test]
fn executables_run_only_when_allowed() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    let ran = env.path("ran");
    let command = script(&env, "exe.sh", &format!("touch {}", ran.display()));
    use_adc(
        &mut env,
        &executable_account(&sts, json!({"command": command})),
    );
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "executable-sourced credentials are disabled: set GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"
        ),
        "{}",
        out.stdout
    );
    assert!(!ran.exists(), "the executable must not run");
    assert_eq!(sts.count(), 0);
}

#[test]
fn an_executable_gets_the_documented_environment_and_its_token_is_exchanged() {
    let sts = sts_for(SUBJECT_TOKEN);
    let iam = iam("sts-token-");
    let mut env = Env::new();
    env.set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let seen = env.path("seen-env");
    let output_file = env.path("exe-cache.json");
    let command = script(
        &env,
        "exe.sh",
        &format!(
            "env | grep '^GOOGLE_EXTERNAL_ACCOUNT_' | sort > {}\necho '{}'",
            seen.display(),
            executable_response(3600)
        ),
    );
    let mut doc = executable_account(
        &sts,
        json!({"command": command, "timeout_millis": 5000, "output_file": output_file}),
    );
    doc["service_account_impersonation_url"] = iam_url(&iam).into();
    use_adc(&mut env, &doc);
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.impersonated");
    assert_eq!(sts_form(&sts)["subject_token_type"], JWT_TYPE);
    let seen = std::fs::read_to_string(seen).unwrap();
    let expected = format!(
        "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1\n\
         GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE={AUDIENCE}\n\
         GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL={IMPERSONATED_EMAIL}\n\
         GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE=0\n\
         GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE={}\n\
         GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE={JWT_TYPE}\n",
        output_file.display()
    );
    assert_eq!(seen, expected);
}

#[test]
fn a_valid_output_file_is_used_instead_of_running_the_executable() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    env.set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let output_file = env.path("exe-cache.json");
    std::fs::write(&output_file, executable_response(600)).unwrap();
    let command = script(&env, "exe.sh", "echo 'must not run' >&2; exit 3");
    use_adc(
        &mut env,
        &executable_account(
            &sts,
            json!({"command": command, "output_file": output_file}),
        ),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
    // An expired one is not: the executable runs (and fails here).
    std::fs::write(&output_file, executable_response(-10)).unwrap();
    env.set("DOCKER_CREDENTIAL_GCP_NO_CACHE", "1");
    let out = env.get("gcr.io");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("must not run"), "{}", out.stdout);
}

#[test]
fn executable_failures_are_reported_with_the_step() {
    let sts = sts_for(SUBJECT_TOKEN);
    let failed =
        json!({"version": 1, "success": false, "code": "401", "message": "Caller not authorized."});
    let cases = [
        (
            "echo 'login required' >&2; exit 2",
            "failed (exit status: 2): login required",
        ),
        (
            &*format!("echo '{failed}'"),
            "the executable reported failure: 401: Caller not authorized.",
        ),
        ("echo 'not json'", "the response is not valid JSON"),
    ];
    for (body, expected) in cases {
        let mut env = Env::new();
        env.set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
        let command = script(&env, "exe.sh", body);
        use_adc(
            &mut env,
            &executable_account(&sts, json!({"command": command})),
        );
        let out = env.get("gcr.io");
        assert_failed_without(&out, &[]);
        assert!(
            out.stdout.contains("executable /bin/sh") && out.stdout.contains(expected),
            "{expected}: {}",
            out.stdout
        );
    }
    assert_eq!(sts.count(), 0);
}

#[test]
fn an_executable_past_its_timeout_is_stopped() {
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    env.set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let command = script(&env, "exe.sh", "exec sleep 20");
    use_adc(
        &mut env,
        &executable_account(&sts, json!({"command": command, "timeout_millis": 500})),
    );
    let started = Instant::now();
    let out = env.get("gcr.io");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_failed_without(&out, &[]);
    assert!(
        out.stdout.contains("did not finish in time") && out.stdout.contains("timeout_millis 500"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// AWS

/// An EC2 instance metadata stand-in with IMDSv2: every metadata GET needs the session token
/// from the PUT.
fn aws_metadata() -> Server {
    Server::start(|req| {
        let text = |s: &str| Reply {
            status: 200,
            headers: vec![],
            body: s.as_bytes().to_vec(),
        };
        if req.method == "PUT" && req.path() == "/latest/api/token" {
            return match req.header("x-aws-ec2-metadata-token-ttl-seconds") {
                Some("300") => text("imds-session-token"),
                _ => Reply::json(400, json!({})),
            };
        }
        if req.header("x-aws-ec2-metadata-token") != Some("imds-session-token") {
            return Reply::json(401, json!({}));
        }
        match req.path() {
            "/latest/meta-data/placement/availability-zone" => text("us-east-2b"),
            "/latest/meta-data/iam/security-credentials" => text("ci-role\n"),
            "/latest/meta-data/iam/security-credentials/ci-role" => Reply::json(
                200,
                json!({
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": AWS_KEY_ID,
                    "SecretAccessKey": AWS_SECRET,
                    "Token": AWS_SESSION,
                    "Expiration": "2030-01-01T00:00:00Z",
                }),
            ),
            _ => Reply::json(404, json!({})),
        }
    })
}

fn aws_account(sts: &Server, md: &Server) -> Value {
    external_account(
        sts,
        AWS_TYPE,
        json!({
            "environment_id": "aws1",
            "region_url": md.url("/latest/meta-data/placement/availability-zone"),
            "url": md.url("/latest/meta-data/iam/security-credentials"),
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "imdsv2_session_token_url": md.url("/latest/api/token"),
        }),
    )
}

/// Checks an AWS subject token as Google's STS would (shape, then the SigV4 signature,
/// recomputed here independently) for `region`, `key_id`/`secret` and `session`.
fn aws_subject_ok(
    token: &str,
    region: &str,
    key_id: &str,
    secret: &str,
    session: Option<&str>,
) -> bool {
    let decoded: String = form_urlencoded::parse(token.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let Ok(doc) = serde_json::from_str::<Value>(&decoded) else {
        return false;
    };
    let url =
        format!("https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15");
    let headers: Vec<(String, String)> = doc["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["key"].as_str().unwrap_or("").to_owned(),
                        h["value"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| {
        headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut expected_keys = vec![
        "Authorization",
        "host",
        "x-amz-date",
        "x-goog-cloud-target-resource",
    ];
    if session.is_some() {
        expected_keys.push("x-amz-security-token");
    }
    let mut keys: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    expected_keys.sort();
    let (Some(auth), Some(date)) = (get("Authorization"), get("x-amz-date")) else {
        return false;
    };
    let signed = if session.is_some() {
        "host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource"
    } else {
        "host;x-amz-date;x-goog-cloud-target-resource"
    };
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{}/{region}/sts/aws4_request, SignedHeaders={signed}, Signature=",
        &date[..8.min(date.len())]
    );
    let signature = auth.strip_prefix(&prefix).unwrap_or("");
    doc["url"] == url.as_str()
        && doc["method"] == "POST"
        && keys == expected_keys
        && get("host") == Some(&*format!("sts.{region}.amazonaws.com"))
        && get("x-goog-cloud-target-resource") == Some(AUDIENCE)
        && get("x-amz-security-token") == session
        && signature.len() == 64
        && signature == sigv4_signature(&headers, date, region, secret)
}

/// SigV4 for the POST GetCallerIdentity request, written out step by step.
fn sigv4_signature(headers: &[(String, String)], date: &str, region: &str, secret: &str) -> String {
    use ring::{digest, hmac};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut signed: Vec<&(String, String)> = headers
        .iter()
        .filter(|(k, _)| k != "Authorization")
        .collect();
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
    let canonical = format!(
        "POST\n/\nAction=GetCallerIdentity&Version=2011-06-15\n{canonical_headers}\n{}\n{}",
        names.join(";"),
        hex(digest::digest(&digest::SHA256, b"").as_ref())
    );
    let day = &date[..8];
    let scope = format!("{day}/{region}/sts/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    };
    let k_date = mac(format!("AWS4{secret}").as_bytes(), day);
    let k_region = mac(&k_date, region);
    let k_service = mac(&k_region, "sts");
    let k_signing = mac(&k_service, "aws4_request");
    hex(&mac(&k_signing, &to_sign))
}

#[test]
fn aws_signs_get_caller_identity_with_the_instance_roles_credentials_via_imdsv2() {
    let md = aws_metadata();
    let sts = sts(|t| aws_subject_ok(t, "us-east-2", AWS_KEY_ID, AWS_SECRET, Some(AWS_SESSION)));
    let mut env = Env::new();
    use_adc(&mut env, &aws_account(&sts, &md));
    let out = env.get("gcr.io");
    assert_eq!(creds(&out).2, "sts-token-1");
    assert_eq!(sts_form(&sts)["subject_token_type"], AWS_TYPE);
    let requests = md.requests();
    let paths: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path()))
        .collect();
    assert_eq!(
        paths,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/placement/availability-zone"),
            ("GET", "/latest/meta-data/iam/security-credentials"),
            ("GET", "/latest/meta-data/iam/security-credentials/ci-role"),
        ]
    );
    assert!(!out.stderr.contains(AWS_SECRET));
}

#[test]
fn aws_environment_credentials_and_region_need_no_metadata_service() {
    let md = aws_metadata();
    let sts = sts(|t| aws_subject_ok(t, "eu-west-1", "AKIDENV", "env-secret-key-value", None));
    let mut env = Env::new();
    env.set("AWS_REGION", "eu-west-1")
        .set("AWS_ACCESS_KEY_ID", "AKIDENV")
        .set("AWS_SECRET_ACCESS_KEY", "env-secret-key-value");
    use_adc(&mut env, &aws_account(&sts, &md));
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
    assert_eq!(md.count(), 0);
}

#[test]
fn aws_default_region_is_used_and_the_role_still_comes_from_metadata() {
    let md = aws_metadata();
    let sts = sts(|t| aws_subject_ok(t, "ap-south-1", AWS_KEY_ID, AWS_SECRET, Some(AWS_SESSION)));
    let mut env = Env::new();
    env.set("AWS_DEFAULT_REGION", "ap-south-1");
    use_adc(&mut env, &aws_account(&sts, &md));
    assert_eq!(creds(&env.get("gcr.io")).2, "sts-token-1");
    assert_eq!(
        md.count(),
        3,
        "session, role name, role credentials; no region lookup"
    );
}

#[test]
fn an_aws_rejection_never_shows_the_secret_key_or_signature() {
    let md = aws_metadata();
    let sts = sts_for("never matches");
    let mut env = Env::new();
    use_adc(&mut env, &aws_account(&sts, &md));
    env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    let out = env.get("gcr.io");
    assert_failed_without(
        &out,
        &[AWS_SECRET, AWS_SESSION, "Signature=", "imds-session-token"],
    );
    assert!(
        out.stdout.contains("STS token exchange at"),
        "{}",
        out.stdout
    );
}

#[test]
fn aws_metadata_failures_name_the_step() {
    let md = Server::start(|_| Reply::json(404, json!({"message": "no such path"})));
    let sts = sts_for(SUBJECT_TOKEN);
    let mut env = Env::new();
    use_adc(&mut env, &aws_account(&sts, &md));
    let out = env.get("gcr.io");
    assert_failed_without(&out, &[]);
    assert!(
        out.stdout.contains(&format!(
            "AWS IMDSv2 session token at {}: HTTP 404",
            md.url("/latest/api/token")
        )),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// external_account_authorized_user and impersonated_service_account

#[test]
fn external_authorized_users_refresh_with_basic_client_authentication() {
    let endpoint = Server::start(|req| {
        let form = req.form();
        let basic = "Basic d29ya2ZvcmNlLWNsaWVudDp3b3JrZm9yY2Utc2VjcmV0"; // workforce-client:workforce-secret
        if req.header("authorization") != Some(basic)
            || form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || form.get("refresh_token").map(String::as_str) != Some("workforce-refresh-token")
        {
            return Reply::json(400, json!({"error": "invalid_request"}));
        }
        Reply::json(
            200,
            json!({"access_token": "ya29.workforce", "expires_in": 3599, "token_type": "Bearer"}),
        )
    });
    let mut env = Env::new();
    use_adc(
        &mut env,
        &json!({
            "type": "external_account_authorized_user",
            "audience": WORKFORCE_AUDIENCE,
            "refresh_token": "workforce-refresh-token",
            "token_url": endpoint.url("/v1/oauthtoken"),
            "token_info_url": "https://sts.googleapis.com/v1/introspect",
            "client_id": "workforce-client",
            "client_secret": "workforce-secret",
        }),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.workforce");
    assert!(!endpoint.requests()[0].form().contains_key("client_secret"));
}

#[test]
fn an_impersonated_user_credential_refreshes_then_impersonates_through_delegates() {
    let token = token_endpoint(3600);
    let iam = iam("ya29.test-");
    let mut env = Env::new();
    let source: Value =
        serde_json::from_str(&authorized_user_json(Some(&token.url("/token")))).unwrap();
    let delegate = "projects/-/serviceAccounts/middle@test-project.iam.gserviceaccount.com";
    use_adc(
        &mut env,
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": iam_url(&iam),
            "source_credentials": source,
            "delegates": [delegate],
        }),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.impersonated");
    let req = &iam.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer ya29.test-1"));
    assert_eq!(
        json_body(req),
        json!({
            "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            "lifetime": "3600s",
            "delegates": [delegate],
        })
    );
    assert_eq!(cached_expiry(&env), iam_expires_at());
}

#[test]
fn an_impersonated_service_account_key_signs_a_jwt_then_impersonates() {
    let token = token_endpoint(3600);
    let iam = iam("ya29.test-");
    let mut env = Env::new();
    let source: Value = serde_json::from_str(&service_account_json(&token.url("/token"))).unwrap();
    use_adc(
        &mut env,
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": iam_url(&iam),
            "source_credentials": source,
        }),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.impersonated");
    assert!(json_body(&iam.requests()[0]).get("delegates").is_none());
    assert_eq!(token.count(), 1);
}

#[test]
fn an_impersonation_denial_for_user_credentials_names_the_step() {
    let token = token_endpoint(3600);
    let iam = iam("never");
    let mut env = Env::new();
    let source: Value =
        serde_json::from_str(&authorized_user_json(Some(&token.url("/token")))).unwrap();
    use_adc(
        &mut env,
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": iam_url(&iam),
            "source_credentials": source,
        }),
    );
    let out = env.get("gcr.io");
    assert_failed_without(
        &out,
        &["ya29.test-1", USER_REFRESH_TOKEN, USER_CLIENT_SECRET],
    );
    assert!(
        out.stdout.contains(&format!(
            "service account impersonation at {}: HTTP 403",
            iam_url(&iam)
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn an_impersonated_federated_credential_exchanges_at_sts_first() {
    let sts = sts_for(SUBJECT_TOKEN);
    let iam = iam("sts-token-");
    let mut env = Env::new();
    let token_file = env.path("oidc-token");
    std::fs::write(&token_file, SUBJECT_TOKEN).unwrap();
    use_adc(
        &mut env,
        &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": iam_url(&iam),
            "source_credentials": external_account(&sts, JWT_TYPE, json!({"file": token_file})),
        }),
    );
    assert_eq!(creds(&env.get("gcr.io")).2, "ya29.impersonated");
    assert_eq!(sts_form(&sts)["subject_token"], SUBJECT_TOKEN);
}

// ---------------------------------------------------------------------------------------------
// Malformed files

/// Every malformed federation file is unit-tested in src/token/credentials.rs; here one fails
/// the `get` naming the file, and so does a credential source that is missing, which only
/// shows when it is read.
#[test]
fn a_malformed_or_unreadable_federation_file_fails_the_get_naming_it() {
    let ok_source = json!({"file": "/nonexistent/token"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "external_account", "audience": AUDIENCE, "subject_token_type": JWT_TYPE, "credential_source": {}}),
            "names no source",
        ),
        (
            json!({"type": "external_account", "audience": AUDIENCE, "subject_token_type": JWT_TYPE, "token_url": "https://sts.example.com/v1/token", "credential_source": ok_source}),
            "reading the credential_source file /nonexistent/token",
        ),
    ];
    for (doc, expected) in cases {
        let mut env = Env::new();
        let path = use_adc(&mut env, &doc);
        let out = env.get("gcr.io");
        assert_failed_without(&out, &[]);
        assert!(
            out.stdout.contains(&path.display().to_string()) && out.stdout.contains(expected),
            "{doc}: expected {expected:?} in {}",
            out.stdout
        );
    }
}
