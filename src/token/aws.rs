//! AWS as a workload identity federation credential source (`environment_id` `aws1`), and
//! the AWS Signature Version 4 it needs.
//!
//! The subject token is not a token AWS issues: it is a GetCallerIdentity request to AWS STS,
//! signed with the workload's AWS credentials but never sent by us. Google's STS sends it to
//! AWS to learn who signed it (AIP-4117). The region and the credentials come from the
//! environment (`AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN`) when set, otherwise from the EC2 instance metadata service (with an
//! IMDSv2 session token when the file names `imdsv2_session_token_url`). The secret access
//! key only ever feeds the HMAC; it is never sent and never appears in a message.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::{digest, hmac};
use serde::Deserialize;

use super::access::now_secs;
use crate::net::http::{self, Http, Request};
use crate::util::env;
use crate::util::secret::Secret;
use crate::util::text::{excerpt, json_error};

const DEFAULT_VERIFICATION_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// The `credential_source` of an AWS `external_account` file.
#[derive(Debug)]
pub(crate) struct AwsSource {
    region_url: Option<String>,
    credentials_url: Option<String>,
    verification_url: String,
    imdsv2_session_token_url: Option<String>,
}

/// The `credential_source` of an AWS `external_account` file, as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawAwsSource {
    environment_id: String,
    region_url: Option<String>,
    url: Option<String>,
    regional_cred_verification_url: Option<String>,
    imdsv2_session_token_url: Option<String>,
}

/// AWS credentials: from the environment or the instance's role.
pub(crate) struct AwsCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Secret<String>,
    pub(crate) session_token: Option<Secret<String>>,
}

/// The role credentials document IMDS serves.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    access_key_id: String,
    secret_access_key: Secret<String>,
    token: Option<Secret<String>>,
}

impl AwsSource {
    pub(crate) fn parse(raw: RawAwsSource) -> Result<AwsSource> {
        // Only version 1 of the AWS source exists; a later one may mean a different protocol.
        if raw.environment_id != "aws1" {
            bail!(
                "environment_id {:?} is not supported (only \"aws1\")",
                excerpt(raw.environment_id.as_bytes())
            );
        }
        for (name, url) in [
            ("region_url", &raw.region_url),
            ("url", &raw.url),
            ("imdsv2_session_token_url", &raw.imdsv2_session_token_url),
        ] {
            if let Some(url) = url {
                http::check_url_or_instance_metadata(url).map_err(|e| anyhow!("{name}: {e:#}"))?;
            }
        }
        Ok(AwsSource {
            region_url: raw.region_url,
            credentials_url: raw.url,
            verification_url: raw
                .regional_cred_verification_url
                .unwrap_or_else(|| DEFAULT_VERIFICATION_URL.to_owned()),
            imdsv2_session_token_url: raw.imdsv2_session_token_url,
        })
    }

    /// The URL-encoded, signed GetCallerIdentity request for `audience`.
    pub(crate) fn subject_token(
        &self,
        audience: &str,
        http: &Http,
        deadline: Instant,
    ) -> Result<Secret<String>> {
        let env_region = env::var("AWS_REGION").or_else(|| env::var("AWS_DEFAULT_REGION"));
        let env_credentials = credentials_from_env();
        let needs_metadata = env_region.is_none() || env_credentials.is_none();
        let mut imds = Imds {
            http,
            deadline,
            session: None,
        };
        if needs_metadata && let Some(url) = &self.imdsv2_session_token_url {
            imds.start_session(url)?;
        }
        let region = match env_region {
            Some(region) => region,
            None => imds.region(self.region_url.as_deref())?,
        };
        let credentials = match env_credentials {
            Some(credentials) => credentials,
            None => imds.role_credentials(self.credentials_url.as_deref())?,
        };
        let url = self.verification_url.replace("{region}", &region);
        let request = sign_caller_identity(&url, &region, audience, &credentials, now_secs())?;
        Ok(request.map(|r| percent_encode(&r)))
    }
}

fn credentials_from_env() -> Option<AwsCredentials> {
    Some(AwsCredentials {
        access_key_id: env::var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: Secret::new(env::var("AWS_SECRET_ACCESS_KEY")?),
        session_token: env::var("AWS_SESSION_TOKEN").map(Secret::new),
    })
}

/// The EC2 instance metadata service, with an optional IMDSv2 session.
struct Imds<'a> {
    http: &'a Http,
    deadline: Instant,
    session: Option<Secret<String>>,
}

impl Imds<'_> {
    fn start_session(&mut self, url: &str) -> Result<()> {
        let step = format!("AWS IMDSv2 session token at {url}");
        let req = Request::put(url).header(TOKEN_TTL_HEADER, "300");
        let resp = self
            .http
            .send(&req, self.deadline)
            .map_err(|e| anyhow!("{step}: {e}"))?;
        let token = ok_text(&resp).map_err(|e| anyhow!("{step}: {e}"))?;
        self.session = Some(Secret::new(token));
        Ok(())
    }

    fn get(&self, url: &str, step: &str) -> Result<String> {
        let mut req = Request::get(url);
        if let Some(session) = &self.session {
            req = req.secret_header(TOKEN_HEADER, session.as_deref());
        }
        let resp = self
            .http
            .send(&req, self.deadline)
            .map_err(|e| anyhow!("{step}: {e}"))?;
        ok_text(&resp).map_err(|e| anyhow!("{step}: {e}"))
    }

    /// The region is the instance's availability zone (`us-east-1b`) without its letter.
    fn region(&self, url: Option<&str>) -> Result<String> {
        let url = url.ok_or_else(|| {
            anyhow!("no AWS region: set AWS_REGION, or region_url in the credential_source")
        })?;
        let zone = self.get(url, &format!("AWS region at {url}"))?;
        let mut region = zone.trim().to_owned();
        region.pop();
        if region.is_empty() {
            bail!("AWS region at {url}: the availability zone is empty");
        }
        Ok(region)
    }

    /// The instance role's temporary credentials: `url` names the role, `url/ROLE` has them.
    fn role_credentials(&self, url: Option<&str>) -> Result<AwsCredentials> {
        let url = url.ok_or_else(|| {
            anyhow!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or url in \
                 the credential_source"
            )
        })?;
        let role = self.get(url, &format!("AWS role name at {url}"))?;
        let role = role.trim();
        if role.is_empty() || role.contains(['/', '?', '#']) {
            bail!("AWS role name at {url}: not a role name");
        }
        let role_url = format!("{}/{role}", url.trim_end_matches('/'));
        let step = format!("AWS role credentials at {role_url}");
        let body = self.get(&role_url, &step)?;
        // The body holds the secret key: errors describe it, never quote it.
        let creds: RoleCredentials = serde_json::from_str(&body)
            .map_err(|e| anyhow!("{step}: not a credentials document ({})", json_error(&e)))?;
        Ok(AwsCredentials {
            access_key_id: creds.access_key_id,
            secret_access_key: creds.secret_access_key,
            session_token: creds.token.filter(|t| !t.expose().is_empty()),
        })
    }
}

fn ok_text(resp: &http::Response) -> Result<String> {
    if !resp.is_success() {
        bail!("HTTP {}: {}", resp.status, excerpt(&resp.body));
    }
    String::from_utf8(resp.body.clone()).map_err(|_| anyhow!("the answer is not UTF-8 text"))
}

/// The GetCallerIdentity request as Google's STS wants it: JSON with the URL, the method and
/// the signed headers, keys sorted as Google's client libraries write them.
fn sign_caller_identity(
    url: &str,
    region: &str,
    audience: &str,
    creds: &AwsCredentials,
    now: u64,
) -> Result<Secret<String>> {
    let uri: ::http::Uri = url
        .parse()
        .map_err(|_| anyhow!("regional_cred_verification_url {url:?} is not a valid URL"))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| anyhow!("regional_cred_verification_url {url:?} has no host"))?;
    let amz_date = amz_date(now)?;
    let mut headers = vec![
        ("host".to_owned(), host),
        ("x-amz-date".to_owned(), amz_date.clone()),
        (
            "x-goog-cloud-target-resource".to_owned(),
            audience.to_owned(),
        ),
    ];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.expose().clone()));
    }
    let request = SignRequest {
        method: "POST",
        uri: &uri,
        headers: &headers,
        payload: b"",
    };
    let authorization = sign(&request, creds, region, "sts", &amz_date);
    headers.push(("Authorization".to_owned(), authorization.expose().clone()));
    headers.sort();
    let headers: Vec<serde_json::Value> = headers
        .into_iter()
        .map(|(key, value)| serde_json::json!({ "key": key, "value": value }))
        .collect();
    let doc = serde_json::json!({ "headers": headers, "method": "POST", "url": url });
    Ok(Secret::new(doc.to_string()))
}

/// A request to sign. `headers` are the headers to sign, names in lower case.
struct SignRequest<'a> {
    method: &'a str,
    uri: &'a ::http::Uri,
    headers: &'a [(String, String)],
    payload: &'a [u8],
}

/// The SigV4 `Authorization` header value for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
fn sign(
    request: &SignRequest,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Secret<String> {
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (canonical, signed_headers) = canonical_request(request);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let key = format!("AWS4{}", creds.secret_access_key.expose());
    let mut signing_key = key.into_bytes();
    for part in [date, region, service, "aws4_request"] {
        signing_key = hmac_sha256(&signing_key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&signing_key, string_to_sign.as_bytes()));
    Secret::new(format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
         Signature={signature}",
        creds.access_key_id
    ))
}

/// The canonical request and the signed-headers list (SigV4 task 1).
fn canonical_request(request: &SignRequest) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let path = match request.uri.path() {
        "" => "/",
        p => p,
    };
    let canonical = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        canonical_query(request.uri.query().unwrap_or("")),
        hex(digest::digest(&digest::SHA256, request.payload).as_ref())
    );
    (canonical, signed_headers)
}

/// Query parameters decoded, re-encoded the SigV4 way and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (percent_encode(&k), percent_encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything but RFC 3986's unreserved characters (`A-Za-z0-9-_.~`) is encoded, as SigV4
/// requires.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, SIGV4_ENCODE).to_string()
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch.
fn amz_date(secs: u64) -> Result<String> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .context("the clock is outside the range of dates")?;
    t.format(&format).context("cannot format the request date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            session_token: token.map(|t| Secret::new(t.to_owned())),
        }
    }

    /// The worked example in the AWS documentation ("Create a signed AWS API request"):
    /// IAM ListUsers, 2015-08-30T12:36:00Z, us-east-1.
    #[test]
    fn sigv4_matches_the_aws_documentation_example() {
        let uri: ::http::Uri = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"
            .parse()
            .unwrap();
        let headers = [
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let request = SignRequest {
            method: "GET",
            uri: &uri,
            headers: &headers,
            payload: b"",
        };
        let (canonical, _) = canonical_request(&request);
        assert_eq!(
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let auth = sign(
            &request,
            &example_credentials(None),
            "us-east-1",
            "iam",
            "20150830T123600Z",
        );
        assert_eq!(
            auth.expose(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn the_caller_identity_request_has_googles_shape() {
        let url = "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws";
        let creds = example_credentials(Some("session-token"));
        let now = 1_440_938_160; // 2015-08-30T12:36:00Z
        let json = sign_caller_identity(url, "us-east-2", audience, &creds, now).unwrap();
        let again = sign_caller_identity(url, "us-east-2", audience, &creds, now).unwrap();
        assert_eq!(
            json.expose(),
            again.expose(),
            "deterministic for fixed input"
        );
        let doc: serde_json::Value = serde_json::from_str(json.expose()).unwrap();
        assert_eq!(doc["url"], url);
        assert_eq!(doc["method"], "POST");
        let keys: Vec<&str> = doc["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        let auth = doc["headers"][0]["value"].as_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-2/sts/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, \
             Signature="
        ));
        assert_eq!(doc["headers"][1]["value"], "sts.us-east-2.amazonaws.com");
        assert_eq!(doc["headers"][2]["value"], "20150830T123600Z");
        assert!(!json.expose().contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(0).unwrap(), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160).unwrap(), "20150830T123600Z");
        assert_eq!(
            amz_date(1_709_164_800 + 86_399).unwrap(),
            "20240229T235959Z"
        );
        assert_eq!(percent_encode("a b/c~d=e"), "a%20b%2Fc~d%3De");
        assert_eq!(canonical_query("b=2&a=x%20y"), "a=x%20y&b=2");
    }

    #[test]
    fn only_aws1_is_accepted() {
        let parse = |v: serde_json::Value| {
            AwsSource::parse(serde_json::from_value::<RawAwsSource>(v).unwrap())
        };
        assert!(parse(serde_json::json!({"environment_id": "aws2"})).is_err());
        assert!(
            parse(
                serde_json::json!({"environment_id": "aws1", "region_url": "http://example.com/x"})
            )
            .is_err()
        );
        assert!(
            parse(serde_json::json!({"environment_id": "aws1", "url": "http://169.254.169.254/x"}))
                .is_ok()
        );
    }
}
