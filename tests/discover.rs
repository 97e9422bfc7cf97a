//! `configure-docker --discover` against a loopback stand-in of the Artifact Registry
//! locations API: paging, a location this release does not know, a location that is no host
//! name, the API's refusals, and the project taken from each of the four places.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::{Value, json};

const ENDPOINT_VAR: &str = "DOCKER_CREDENTIAL_GCP_ARTIFACT_REGISTRY_ENDPOINT";

/// The locations API as Google serves it for `/v1/projects/{p}/locations`, in two pages: the
/// first has a multi-region, a known region and `mars-north1`, which no release knows; the
/// second has a known region and an ID that is not a DNS label. Only bearer tokens the test
/// token endpoint issued (`ya29.test-N`) or the metadata stand-in issued are accepted.
fn locations_api() -> Server {
    Server::start(|req| {
        let authorized = req.header("authorization").is_some_and(|a| {
            a.starts_with("Bearer ya29.test-") || a.starts_with("Bearer ya29.metadata-")
        });
        let path = req.path();
        let project = path
            .strip_prefix("/v1/projects/")
            .and_then(|p| p.strip_suffix("/locations"));
        if req.method != "GET" || project.is_none() {
            return Reply::json(
                404,
                json!({"error": {"code": 404, "message": "no such path", "status": "NOT_FOUND"}}),
            );
        }
        if !authorized {
            return Reply::json(
                401,
                json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            );
        }
        let project = project.unwrap_or_default();
        let loc = |id: &str| json!({"name": format!("projects/{project}/locations/{id}"), "locationId": id, "displayName": id});
        if req.target.contains("pageToken=page%2F2") {
            Reply::json(
                200,
                json!({"locations": [loc("europe-west1"), loc("Not_A_Label")]}),
            )
        } else {
            Reply::json(
                200,
                json!({"locations": [loc("us"), loc("us-central1"), loc("mars-north1")], "nextPageToken": "page/2"}),
            )
        }
    })
}

/// A stand-in that answers every request with `status` and a Google error body.
fn refusing_api(status: u16, error_status: &str, message: &str, reason: Option<&str>) -> Server {
    let mut error = json!({"code": status, "message": message, "status": error_status});
    if let Some(reason) = reason {
        error["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]);
    }
    let body = json!({ "error": error });
    Server::start(move |_| Reply::json(status, body.clone()))
}

struct Setup {
    env: Env,
    docker_dir: PathBuf,
}

impl Setup {
    /// A HOME with a docker config dir, the helper on PATH, a fake `gcloud` first on PATH that
    /// leaves a mark if anything runs it, and the API pointed at `api`.
    fn new(api: &Server) -> Setup {
        let mut env = Env::new();
        let docker_dir = env.path("docker");
        env.set("DOCKER_CONFIG", docker_dir.display().to_string());
        let fake = env.path("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        let gcloud = fake.join("gcloud");
        std::fs::write(
            &gcloud,
            format!(
                "#!/bin/sh\ntouch {}\nexit 1\n",
                env.path("gcloud-ran").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        env.set(
            "PATH",
            format!("{}:{bin_dir}:{SYSTEM_PATH}", fake.display()),
        );
        env.set(ENDPOINT_VAR, api.url(""));
        Setup { env, docker_dir }
    }

    fn config(&self) -> PathBuf {
        self.docker_dir.join("config.json")
    }

    fn read_json(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config()).unwrap()).unwrap()
    }

    fn configure(&self, args: &[&str]) -> Output {
        let mut all = vec!["configure-docker"];
        all.extend_from_slice(args);
        self.env.run(&all, b"")
    }

    fn gcloud_ran(&self) -> bool {
        self.env.path("gcloud-ran").exists()
    }
}

/// The projects the stand-in was asked about, in order.
fn projects_asked(api: &Server) -> Vec<String> {
    api.requests()
        .iter()
        .filter_map(|r| {
            r.path()
                .strip_prefix("/v1/projects/")
                .and_then(|p| p.strip_suffix("/locations"))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn discover_maps_every_listed_location_across_pages_including_ones_this_release_does_not_know() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env.use_service_account(&tokens.url("/token"));
    s.env.set("DOCKER_CREDENTIAL_GCP_LOG", "debug");
    let out = s.configure(&["--discover", "--project", "my-proj"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let requests = api.requests();
    assert_eq!(requests.len(), 2, "two pages, then stop");
    assert_eq!(requests[0].target, "/v1/projects/my-proj/locations");
    assert_eq!(
        requests[1].target, "/v1/projects/my-proj/locations?pageToken=page%2F2",
        "the page token is passed back, encoded"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer ya29.test-1"))
    );

    let after = s.read_json();
    let helpers = after["credHelpers"].as_object().unwrap();
    assert_eq!(helpers["mars-north1-docker.pkg.dev"], "gcp");
    assert_eq!(helpers["europe-west1-docker.pkg.dev"], "gcp");
    assert_eq!(helpers.len(), 99, "the 98 known hosts and the new region");
    assert!(
        !helpers
            .keys()
            .any(|h| h.to_ascii_lowercase().contains("not_a_label")),
        "{helpers:?}"
    );
    for needle in [
        "discovered 4 Artifact Registry location(s) in project my-proj (from --project)",
        "1 not known to this release: mars-north1",
        "\"Not_A_Label\"",
        "mapped 99 host(s) to docker-credential-gcp",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(
        !out.stderr.contains("ya29."),
        "no token in messages, even at debug level"
    );
}

#[test]
fn discover_with_dry_run_prints_the_new_hosts_and_writes_nothing() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env.use_service_account(&tokens.url("/token"));
    std::fs::create_dir_all(&s.docker_dir).unwrap();
    std::fs::write(s.config(), "{\"auths\": {}}").unwrap();
    let out = s.configure(&["--discover", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("+\t\t\"mars-north1-docker.pkg.dev\": \"gcp\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("it would map 99 host(s)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(s.config()).unwrap(),
        "{\"auths\": {}}"
    );
}

#[test]
fn discover_uses_the_token_get_cached() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env.use_service_account(&tokens.url("/token"));
    let (_, _, token) = creds(&s.env.get("gcr.io"));
    let out = s.configure(&["--discover", "--project", "p"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tokens.count(), 1, "no second token request");
    assert_eq!(
        api.requests()[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

#[test]
fn discover_adds_to_an_exact_registries_set() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env.use_service_account(&tokens.url("/token"));
    let out = s.configure(&["--registries", "gcr.io", "--discover", "--project", "p"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut hosts: Vec<String> = s.read_json()["credHelpers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "europe-west1-docker.pkg.dev",
            "gcr.io",
            "mars-north1-docker.pkg.dev",
            "us-central1-docker.pkg.dev",
            "us-docker.pkg.dev"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Where the project comes from.

#[test]
fn the_project_comes_from_gcloud_core_project_without_running_gcloud() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env.use_service_account(&tokens.url("/token"));
    let dir = s.env.path("gcloud-config");
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(dir.join("active_config"), "work\n").unwrap();
    std::fs::write(
        dir.join("configurations/config_default"),
        "[core]\nproject = not-the-active-one\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("configurations/config_work"),
        "[core]\naccount = dev@example.com\nproject = gcloud-proj\n\n[compute]\nregion = us-east1\n",
    )
    .unwrap();
    s.env.set("CLOUDSDK_CONFIG", dir.display().to_string());
    let out = s.configure(&["--discover"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(projects_asked(&api), ["gcloud-proj", "gcloud-proj"]);
    assert!(
        out.stderr
            .contains("gcloud's core/project in configuration \"work\""),
        "{}",
        out.stderr
    );
    assert!(!s.gcloud_ran(), "gcloud's files were enough");

    // CLOUDSDK_CORE_PROJECT overrides the configuration, as in gcloud.
    s.env.set("CLOUDSDK_CORE_PROJECT", "env-proj");
    let out = s.configure(&["--discover", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(projects_asked(&api)[2], "env-proj");
    assert!(
        out.stderr.contains("(from CLOUDSDK_CORE_PROJECT)"),
        "{}",
        out.stderr
    );
    assert!(!s.gcloud_ran());
}

#[test]
fn the_project_comes_from_the_adc_file_quota_project_then_project_id() {
    let tokens = token_endpoint(3600);
    let api = locations_api();
    let mut s = Setup::new(&api);
    // A service-account key: its project_id (test-project).
    s.env.use_service_account(&tokens.url("/token"));
    let out = s.configure(&["--discover", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(projects_asked(&api)[0], "test-project");
    assert!(
        out.stderr.contains("(from project_id in the ADC file"),
        "{}",
        out.stderr
    );

    // User credentials with a quota project.
    let mut user: Value =
        serde_json::from_str(&authorized_user_json(Some(&tokens.url("/token")))).unwrap();
    user["quota_project_id"] = "billing-proj".into();
    let path = s.env.path("user.json");
    std::fs::write(&path, user.to_string()).unwrap();
    s.env
        .set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    let out = s.configure(&["--discover", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(projects_asked(&api).last().unwrap(), "billing-proj");
    assert!(
        out.stderr
            .contains("(from quota_project_id in the ADC file"),
        "{}",
        out.stderr
    );
    assert!(!s.gcloud_ran());
}

#[test]
fn the_project_comes_from_the_metadata_server_on_google_cloud() {
    let metadata = Server::start(|req| {
        if req.header("metadata-flavor") != Some("Google") {
            return Reply::json(403, json!({"error": "missing Metadata-Flavor"}));
        }
        match req.path() {
            "/computeMetadata/v1/project/project-id" => Reply {
                status: 200,
                headers: vec![("Metadata-Flavor".into(), "Google".into())],
                body: b"vm-proj".to_vec(),
            },
            "/computeMetadata/v1/instance/service-accounts/default/token" => Reply::json(
                200,
                json!({"access_token": "ya29.metadata-1", "expires_in": 3600, "token_type": "Bearer"}),
            )
            .with_header("Metadata-Flavor", "Google"),
            _ => Reply::json(404, json!({})),
        }
    });
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env
        .set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata")
        .set("GCE_METADATA_HOST", metadata.host());
    let out = s.configure(&["--discover", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(projects_asked(&api)[0], "vm-proj");
    assert!(
        out.stderr
            .contains(&format!("(from the metadata server {})", metadata.host())),
        "{}",
        out.stderr
    );
    assert!(
        metadata
            .requests()
            .iter()
            .any(|r| r.path() == "/computeMetadata/v1/project/project-id")
    );
}

#[test]
fn without_a_project_anywhere_it_says_to_pass_one_and_writes_nothing() {
    let api = locations_api();
    let s = Setup::new(&api);
    let out = s.configure(&["--discover"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for needle in [
        "--discover needs a project",
        "gcloud's configuration sets no core/project",
        "no ADC file names a project",
        "Pass --project PROJECT",
        "Nothing was written",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert_eq!(api.count(), 0);
    assert!(!s.config().exists());
}

// ---------------------------------------------------------------------------------------------
// Refusals.

fn refused_with(api: &Server) -> Output {
    let tokens = token_endpoint(3600);
    let mut s = Setup::new(api);
    s.env.use_service_account(&tokens.url("/token"));
    let out = s.configure(&["--discover", "--project", "my-proj"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("Nothing was written"), "{}", out.stderr);
    assert!(!s.config().exists());
    assert!(
        !out.stderr.contains("ya29.") && !out.stdout.contains("ya29."),
        "no token in messages"
    );
    out
}

#[test]
fn a_401_says_to_log_in_again() {
    let api = refusing_api(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials.",
        None,
    );
    let out = refused_with(&api);
    for needle in [
        "project my-proj (from --project)",
        "HTTP 401 UNAUTHENTICATED",
        "gcloud auth login",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
}

#[test]
fn a_403_names_the_permission_the_api_and_project() {
    let api = refusing_api(
        403,
        "PERMISSION_DENIED",
        "Permission 'artifactregistry.locations.list' denied on resource '//artifactregistry.googleapis.com/projects/my-proj' (or it may not exist).",
        Some("IAM_PERMISSION_DENIED"),
    );
    let out = refused_with(&api);
    for needle in [
        "HTTP 403 PERMISSION_DENIED",
        "needs the artifactregistry.locations.list permission on project my-proj",
        "gcloud services enable artifactregistry.googleapis.com --project my-proj",
        "pass --project",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
}

#[test]
fn a_403_for_a_disabled_api_says_to_enable_it() {
    let api = refusing_api(
        403,
        "PERMISSION_DENIED",
        "Artifact Registry API has not been used in project 123456789012 before or it is disabled.",
        Some("SERVICE_DISABLED"),
    );
    let out = refused_with(&api);
    assert!(
        out.stderr.contains(
            "To fix: enable the Artifact Registry API: `gcloud services enable artifactregistry.googleapis.com --project my-proj`"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_404_says_to_check_the_project() {
    let api = refusing_api(404, "NOT_FOUND", "Project not found.", None);
    let out = refused_with(&api);
    assert!(
        out.stderr.contains("there is no project \"my-proj\"") && out.stderr.contains("--project"),
        "{}",
        out.stderr
    );
}

#[test]
fn plain_http_to_another_machine_is_refused_before_any_request() {
    let api = locations_api();
    let mut s = Setup::new(&api);
    s.env
        .set(ENDPOINT_VAR, "http://artifactregistry.example.com");
    let out = s.configure(&["--discover", "--project", "p"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("refusing to send credentials over plain http")
            && out.stderr.contains(ENDPOINT_VAR),
        "{}",
        out.stderr
    );
}

#[test]
fn project_needs_discover_and_discover_cannot_remove() {
    let api = locations_api();
    let s = Setup::new(&api);
    for args in [&["--project", "p"][..], &["--discover", "--remove"][..]] {
        let out = s.configure(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"));
    }
    assert_eq!(api.count(), 0);
}
