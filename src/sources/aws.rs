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

use anyhow::{Result, anyhow, bail};
use ring::{digest, hmac};
use serde::Deserialize;
use serde_json::Value;

use super::MintContext;
use super::adc::field_error;
use crate::cache::now_secs;
use crate::http;
use crate::secret::Secret;

const DEFAULT_VERIFICATION_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// The `credential_source` of an AWS `external_account` file.
pub(super) struct AwsSource {
    region_url: Option<String>,
    credentials_url: Option<String>,
    verification_url: String,
    imdsv2_session_token_url: Option<String>,
}

#[derive(Deserialize)]
struct RawAwsSource {
    environment_id: String,
    region_url: Option<String>,
    url: Option<String>,
    regional_cred_verification_url: Option<String>,
    imdsv2_session_token_url: Option<String>,
}

/// AWS credentials: from the environment or the instance's role.
pub(super) struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    pub session_token: Option<Secret<String>>,
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
    pub(super) fn parse(value: &Value) -> Result<AwsSource> {
        let raw: RawAwsSource = serde_json::from_value(value.clone())
            .map_err(|e| anyhow!("not a valid AWS credential source ({})", field_error(&e)))?;
        // Only version 1 of the AWS source exists; a later one may mean a different protocol.
        if raw.environment_id != "aws1" {
            bail!(
                "environment_id {:?} is not supported (only \"aws1\")",
                http::excerpt(raw.environment_id.as_bytes())
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
    pub(super) fn subject_token(
        &self,
        audience: &str,
        ctx: &mut MintContext,
    ) -> Result<Secret<String>> {
        let env_region = env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION"));
        let env_credentials = credentials_from_env();
        let needs_metadata = env_region.is_none() || env_credentials.is_none();
        let mut imds = Imds::new(ctx)?;
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
        Ok(Secret::new(percent_encode(request.expose())))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn credentials_from_env() -> Option<AwsCredentials> {
    Some(AwsCredentials {
        access_key_id: env_nonempty("AWS_ACCESS_KEY_ID")?,
        secret_access_key: Secret::new(env_nonempty("AWS_SECRET_ACCESS_KEY")?),
        session_token: env_nonempty("AWS_SESSION_TOKEN").map(Secret::new),
    })
}

/// The EC2 instance metadata service, with an optional IMDSv2 session.
struct Imds<'a> {
    http: &'a http::Http,
    deadline: Instant,
    session: Option<Secret<String>>,
}

impl<'a> Imds<'a> {
    fn new(ctx: &'a mut MintContext) -> Result<Imds<'a>> {
        let deadline = ctx.deadline;
        Ok(Imds {
            http: ctx.http()?,
            deadline,
            session: None,
        })
    }

    fn start_session(&mut self, url: &str) -> Result<()> {
        let step = format!("AWS IMDSv2 session token at {url}");
        let resp = self
            .http
            .put(url, &[(TOKEN_TTL_HEADER, "300")], self.deadline)
            .map_err(|e| anyhow!("{step}: {e:#}"))?;
        let token = ok_text(&resp).map_err(|e| anyhow!("{step}: {e}"))?;
        self.session = Some(Secret::new(token));
        Ok(())
    }

    fn get(&self, url: &str, step: &str) -> Result<String> {
        let headers: Vec<(&str, &str)> = self
            .session
            .iter()
            .map(|t| (TOKEN_HEADER, t.expose().as_str()))
            .collect();
        let resp = self
            .http
            .get(url, &headers, self.deadline)
            .map_err(|e| anyhow!("{step}: {e:#}"))?;
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
            .map_err(|e| anyhow!("{step}: not a credentials document ({})", field_error(&e)))?;
        Ok(AwsCredentials {
            access_key_id: creds.access_key_id,
            secret_access_key: creds.secret_access_key,
            session_token: creds.token.filter(|t| !t.expose().is_empty()),
        })
    }
}

fn ok_text(resp: &http::Response) -> Result<String> {
    if !(200..300).contains(&resp.status) {
        bail!("HTTP {}: {}", resp.status, http::excerpt(&resp.body));
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
    let amz_date = amz_date(now);
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
    let headers: Vec<Value> = headers
        .into_iter()
        .map(|(key, value)| serde_json::json!({ "key": key, "value": value }))
        .collect();
    let doc = serde_json::json!({ "headers": headers, "method": "POST", "url": url });
    Ok(Secret::new(doc.to_string()))
}

/// A request to sign. `headers` are the headers to sign, names in lower case.
pub(super) struct SignRequest<'a> {
    pub method: &'a str,
    pub uri: &'a ::http::Uri,
    pub headers: &'a [(String, String)],
    pub payload: &'a [u8],
}

/// The SigV4 `Authorization` header value for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub(super) fn sign(
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

/// RFC 3986 percent-encoding: everything but unreserved characters, as SigV4 requires.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch.
fn amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        let doc: Value = serde_json::from_str(json.expose()).unwrap();
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
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(1_709_164_800 + 86_399), "20240229T235959Z");
        assert_eq!(percent_encode("a b/c~d=e"), "a%20b%2Fc~d%3De");
        assert_eq!(canonical_query("b=2&a=x%20y"), "a=x%20y&b=2");
    }

    #[test]
    fn only_aws1_is_accepted() {
        let v = serde_json::json!({"environment_id": "aws2"});
        assert!(AwsSource::parse(&v).is_err());
        let v = serde_json::json!({"environment_id": "aws1", "region_url": "http://example.com/x"});
        assert!(AwsSource::parse(&v).is_err());
        let v = serde_json::json!({"environment_id": "aws1", "url": "http://169.254.169.254/x"});
        assert!(AwsSource::parse(&v).is_ok());
    }
}
