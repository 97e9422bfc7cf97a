//! `configure-docker --discover`: asks the Artifact Registry API which locations exist, so a
//! region newer than this release is mapped without waiting for a new release.
//!
//! One client call, `GET {endpoint}/v1/projects/PROJECT/locations`, following
//! `nextPageToken` for a bounded number of pages, with the user's Google token from the same
//! sources and cache as `get`. Each location becomes `LOCATION-docker.pkg.dev` only after it
//! passed as a DNS label and the host policy (`hosts::classify`) calls the host Google: the
//! API's answer is data from the network and never widens what the helper serves. This module
//! writes nothing; `configure` decides what to do with the hosts.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::hosts::{self, HostClass};
use crate::net::http::{self, Http, MintContext, Request, Response};
use crate::settings::Settings;
use crate::token::{self, Project, Token};
use crate::util::env;
use crate::util::secret::Secret;

/// The variable that points the locations call elsewhere (tests, a private endpoint).
pub(crate) const ENDPOINT_VAR: &str = "DOCKER_CREDENTIAL_GCP_ARTIFACT_REGISTRY_ENDPOINT";
const DEFAULT_ENDPOINT: &str = "https://artifactregistry.googleapis.com";
/// Artifact Registry has about fifty locations, which fit on one page; a list that has not
/// ended after this many pages is a broken server, not a long list.
const MAX_PAGES: usize = 20;
/// Locations accepted in all, across pages.
const MAX_LOCATIONS: usize = 1000;

/// What the API said.
#[derive(Debug)]
pub(crate) struct Discovery {
    pub(crate) project: Project,
    /// Valid location IDs, in the API's order, without duplicates.
    pub(crate) locations: Vec<String>,
    /// Location IDs that are not DNS labels (skipped), quoted for a message.
    pub(crate) skipped: Vec<String>,
}

impl Discovery {
    /// `LOCATION-docker.pkg.dev` for every valid location.
    pub(crate) fn hosts(&self) -> Vec<String> {
        self.locations.iter().map(|l| host_for(l)).collect()
    }
}

fn host_for(location: &str) -> String {
    format!("{location}-docker.pkg.dev")
}

/// Lists the Artifact Registry locations of `project` (or the user's default project).
pub(crate) fn discover(project: Option<&str>, settings: &Settings) -> Result<Discovery> {
    let endpoint = endpoint()?;
    let mut ctx = MintContext::new(
        Instant::now() + settings.timeout.value,
        settings.ca_file.value.clone(),
    );
    let project = match project {
        Some(id) => Project {
            id: id.trim().to_owned(),
            origin: "--project".to_owned(),
        },
        None => token::default_project(settings, &mut ctx).map_err(|e| {
            anyhow!(
                "--discover needs a project: {e:#}. Pass --project PROJECT, or set a default with \
                 `gcloud config set project PROJECT`"
            )
        })?,
    };
    check_project_id(&project)?;
    let token = match token::google_token(settings) {
        Ok(t) => t,
        Err(e) if e.failures.is_empty() => bail!(
            "--discover needs Google credentials and none is present: run `gcloud auth login` \
             or `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"
        ),
        Err(e) => return Err(e.into()),
    };
    // The token may have taken most of the time; the listing gets a deadline of its own.
    let deadline = Instant::now() + settings.timeout.value;
    let http = ctx.http()?;
    list_locations(http, &endpoint, &project, &token, deadline)
}

/// The API endpoint: the variable, else Google's; plain http only to this machine.
fn endpoint() -> Result<String> {
    let Some(url) = env::var(ENDPOINT_VAR).filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_ENDPOINT.to_owned());
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    http::check_url(&url).with_context(|| format!("{ENDPOINT_VAR}={url}"))?;
    Ok(url)
}

/// Project IDs are letters, digits and hyphens; legacy domain-scoped ones add `.` and `:`;
/// numbers are digits. Anything else would change the URL's path.
fn check_project_id(project: &Project) -> Result<()> {
    let id = &project.id;
    let valid = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
    if valid {
        Ok(())
    } else {
        bail!(
            "{id:?} (from {}) is not a Google Cloud project ID; pass --project PROJECT",
            project.origin
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    locations: Vec<Location>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    location_id: Option<String>,
    /// `projects/P/locations/ID`, used when `locationId` is absent.
    name: Option<String>,
}

impl Location {
    fn id(&self) -> Option<&str> {
        self.location_id
            .as_deref()
            .or_else(|| self.name.as_deref()?.rsplit('/').next())
            .filter(|id| !id.is_empty())
    }
}

fn list_locations(
    http: &Http,
    endpoint: &str,
    project: &Project,
    token: &Token,
    deadline: Instant,
) -> Result<Discovery> {
    let base = format!("{endpoint}/v1/projects/{}/locations", project.id);
    let authorization = token.secret.as_deref().map(|t| format!("Bearer {t}"));
    let mut found = Discovery {
        project: project.clone(),
        locations: Vec::new(),
        skipped: Vec::new(),
    };
    let mut page_token: Option<String> = None;
    let mut seen_tokens: Vec<String> = Vec::new();
    for _ in 0..MAX_PAGES {
        let url = match &page_token {
            None => base.clone(),
            Some(t) => format!(
                "{base}?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("pageToken", t)
                    .finish()
            ),
        };
        let req = Request::get(&url)
            .header("accept", "application/json")
            .secret_header("authorization", authorization.as_deref());
        let resp = http.send(&req, deadline).with_context(|| {
            format!("listing the Artifact Registry locations of {}", project.id)
        })?;
        if !resp.is_success() {
            bail!("{}", refusal(&resp, project, &token.secret));
        }
        let page: Page = serde_json::from_slice(&resp.body).map_err(|e| {
            anyhow!(
                "{}: the locations answer is not what the Artifact Registry API sends ({})",
                http::redacted_url(&url),
                crate::util::text::json_error(&e)
            )
        })?;
        for location in &page.locations {
            accept(&mut found, location.id())?;
        }
        match page.next_page_token.filter(|t| !t.is_empty()) {
            None => return Ok(found),
            Some(next) if seen_tokens.contains(&next) => {
                bail!("the Artifact Registry API repeated a page of locations; try again later")
            }
            Some(next) => {
                seen_tokens.push(next.clone());
                page_token = Some(next);
            }
        }
    }
    bail!(
        "the Artifact Registry locations list did not end after {MAX_PAGES} pages; try again later"
    )
}

/// Adds one location from the API, if it is a DNS label whose host the policy calls Google.
fn accept(found: &mut Discovery, id: Option<&str>) -> Result<()> {
    let Some(id) = id else {
        found.skipped.push("(a location without an ID)".to_owned());
        return Ok(());
    };
    let host = host_for(id);
    let google = hosts::is_label(id)
        && hosts::normalise(&host)
            .is_some_and(|r| r.host == host && hosts::classify(&r, &[]) == HostClass::Google);
    if !google {
        found
            .skipped
            .push(format!("{:?}", crate::util::text::excerpt(id.as_bytes())));
        return Ok(());
    }
    if !found.locations.iter().any(|l| l == id) {
        if found.locations.len() >= MAX_LOCATIONS {
            bail!("the Artifact Registry API listed more than {MAX_LOCATIONS} locations");
        }
        found.locations.push(id.to_owned());
    }
    Ok(())
}

/// The machine-readable part of a Google API error answer (`google.rpc.Status`): the reasons
/// of its `ErrorInfo` details decide the advice.
#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    error: ApiStatus,
}

#[derive(Deserialize, Default)]
struct ApiStatus {
    #[serde(default)]
    details: Vec<ApiDetail>,
}

#[derive(Deserialize)]
struct ApiDetail {
    reason: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

/// The project of the OAuth client that `gcloud auth application-default login` uses. An API
/// "disabled" for *this* consumer means the user credentials have no quota project of their
/// own: Google bills the request to gcloud's client, where Artifact Registry is off.
const GCLOUD_CLIENT_PROJECT: &str = "projects/764086051850";

impl ApiError {
    fn has_reason(&self, reason: &str) -> bool {
        self.error
            .details
            .iter()
            .any(|d| d.reason.as_deref() == Some(reason))
    }

    /// Whether the API is disabled for gcloud's shared OAuth client rather than for a
    /// project of the user's: the credentials lack a quota project.
    fn lacks_quota_project(&self) -> bool {
        self.error.details.iter().any(|d| {
            d.reason.as_deref() == Some("SERVICE_DISABLED")
                && d.metadata.get("consumer").map(String::as_str) == Some(GCLOUD_CLIENT_PROJECT)
        })
    }
}

/// What an error answer means and what to do about it.
fn refusal(resp: &Response, project: &Project, secret: &Secret<String>) -> String {
    let said = secret.scrub(&token::google_error(resp));
    let said = said.trim_end_matches('.');
    let what = format!(
        "the Artifact Registry API refused to list the locations of project {} (from {}): {said}",
        project.id, project.origin
    );
    let answer: ApiError = serde_json::from_slice(&resp.body).unwrap_or_default();
    let api_disabled = answer.has_reason("SERVICE_DISABLED");
    let no_quota_project = answer.lacks_quota_project();
    let advice = match resp.status {
        401 => {
            "the Google credentials in use were not accepted: log in again (`gcloud auth login` \
                or `gcloud auth application-default login`), or check the file \
                GOOGLE_APPLICATION_CREDENTIALS names"
                .to_owned()
        }
        403 if no_quota_project => format!(
            "set a quota project for your application default credentials: `gcloud auth \
             application-default set-quota-project {}`",
            project.id
        ),
        403 if api_disabled => format!(
            "enable the Artifact Registry API: `gcloud services enable \
             artifactregistry.googleapis.com --project {}`, or pass --project with a project \
             that uses Artifact Registry",
            project.id
        ),
        403 => format!(
            "the identity needs the artifactregistry.locations.list permission on project {0} \
             (roles/artifactregistry.reader has it), and the Artifact Registry API must be \
             enabled there (`gcloud services enable artifactregistry.googleapis.com --project \
             {0}`); or pass --project with a project where both hold",
            project.id
        ),
        404 => format!(
            "there is no project {:?}: check the ID, or pass --project PROJECT",
            project.id
        ),
        _ => "try again later; pass --project PROJECT to use another project".to_owned(),
    };
    format!("{what}. To fix: {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Discovery {
        Discovery {
            project: Project {
                id: "p".into(),
                origin: "test".into(),
            },
            locations: Vec::new(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn only_dns_labels_become_hosts() {
        let mut found = empty();
        for id in [
            "us-central1",
            "mars-north1",
            "us-central1",
            "Bad_Loc",
            "a.b",
            "-x",
            "",
            "evil.com/x",
        ] {
            accept(&mut found, Some(id).filter(|i| !i.is_empty())).unwrap();
        }
        accept(&mut found, None).unwrap();
        assert_eq!(found.locations, ["us-central1", "mars-north1"]);
        assert_eq!(
            found.hosts(),
            ["us-central1-docker.pkg.dev", "mars-north1-docker.pkg.dev"]
        );
        assert_eq!(found.skipped.len(), 6, "{:?}", found.skipped);
    }

    #[test]
    fn the_advice_for_a_refusal_follows_the_reason_code() {
        let refused = |body: serde_json::Value| {
            let resp = Response {
                status: 403,
                headers: Default::default(),
                body: body.to_string().into_bytes(),
            };
            let project = Project {
                id: "p".into(),
                origin: "test".into(),
            };
            refusal(&resp, &project, &Secret::new("t".to_owned()))
        };
        let disabled = refused(serde_json::json!({"error": {
            "status": "PERMISSION_DENIED", "message": "no",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]
        }}));
        assert!(
            disabled.contains("To fix: enable the Artifact Registry API"),
            "{disabled}"
        );
        // User credentials without a quota project: billed to gcloud's own OAuth client,
        // where the API is off. The fix is a quota project, not enabling the API.
        let no_quota = refused(serde_json::json!({"error": {
            "status": "PERMISSION_DENIED",
            "message": "Your application is authenticating by using local Application Default Credentials. The artifactregistry.googleapis.com API requires a quota project, which is not set by default.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                "metadata": {"consumer": "projects/764086051850", "service": "artifactregistry.googleapis.com"}}]
        }}));
        assert!(
            no_quota.contains("To fix: set a quota project")
                && no_quota.contains("set-quota-project p"),
            "{no_quota}"
        );
        let worded = refused(serde_json::json!({"error": {
            "status": "PERMISSION_DENIED", "message": "SERVICE_DISABLED: it is disabled, requires a quota project"
        }}));
        assert!(
            worded.contains("To fix: the identity needs the artifactregistry.locations.list"),
            "the words alone are not the reason: {worded}"
        );
    }

    #[test]
    fn a_location_without_an_id_is_named_by_the_end_of_its_name() {
        let page: Page = serde_json::from_str(
            r#"{"locations":[{"name":"projects/p/locations/asia-east1"},{"locationId":"us","name":"x"}],"nextPageToken":""}"#,
        )
        .unwrap();
        let ids: Vec<Option<&str>> = page.locations.iter().map(Location::id).collect();
        assert_eq!(ids, [Some("asia-east1"), Some("us")]);
    }

    #[test]
    fn project_ids_that_would_change_the_path_are_refused() {
        let check = |id: &str| {
            check_project_id(&Project {
                id: id.into(),
                origin: "test".into(),
            })
        };
        for good in ["my-project-123", "example.com:legacy", "123456789012"] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a?b", "a b", "../x", "..", "%2e", "-p"] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
