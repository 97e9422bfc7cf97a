//! Bazel's credential-helper protocol: `get` with `{"uri": …}` on stdin, as Bazel runs it,
//! answered with a bearer header and an expiry for Google hosts over https and `{}` for
//! everything else; and a real Bazel fetching through the helper.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::daemons::output_of;
use crate::support::peers::{Peer, need};
use crate::support::proxy::Pki;
use crate::support::root::{ROOT_HELPER, RootSession};
use crate::support::*;

fn metadata_env(server: &Server) -> Env {
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata");
    env.set("GCE_METADATA_HOST", server.host());
    env
}

fn ask(env: &Env, uri: &str) -> Output {
    env.run(
        &["get"],
        serde_json::json!({ "uri": uri }).to_string().as_bytes(),
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The answer's bearer token and expiry (Unix seconds), after checking its shape.
fn bearer(out: &Output) -> (String, i64) {
    assert_eq!(
        out.code, 0,
        "get failed: stdout={:?} stderr={:?}",
        out.stdout, out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("get prints JSON");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "headers and expires only: {v}");
    let values = v["headers"]["Authorization"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{v}");
    assert_eq!(v["headers"].as_object().unwrap().len(), 1, "{v}");
    let token = values[0]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer header: {v}"))
        .to_owned();
    let expires = v["expires"].as_str().unwrap();
    // Bazel's parser: yyyy-MM-dd'T'HH:mm:ss and an offset, no fractions.
    assert!(
        expires.len() == 20 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "{expires}"
    );
    (token, rfc3339_secs(expires))
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (days from civil, Howard Hinnant's method).
fn rfc3339_secs(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m - 3) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn assert_no_headers(out: &Output, what: &str) {
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "{}\n"),
        "{what}: stderr={:?}",
        out.stderr
    );
}

/// Exit 1 with `needle` on stderr, where Bazel reads a failed helper's message; `stdout` is
/// what a docker client reads.
fn assert_failure_with(out: &Output, needle: &str, stdout: &str, what: &str) {
    assert_eq!(out.code, 1, "{what}: {:?}", (&out.stdout, &out.stderr));
    assert_eq!(out.stdout, stdout, "{what}");
    assert!(out.stderr.contains(needle), "{what}: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
}

fn assert_failure(out: &Output, needle: &str, what: &str) {
    assert_failure_with(out, needle, "", what);
}

#[test]
fn a_google_uri_gets_a_bearer_header_that_expires_five_minutes_before_the_token() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    let before = now();
    let out = ask(
        &env,
        "https://us-maven.pkg.dev/my-project/my-repo/com/example/lib/1.0/lib-1.0.jar",
    );
    let (token, expires) = bearer(&out);
    assert_eq!(token, "ya29.metadata-1");
    assert!(
        (before + 3300 - 5..=now() + 3300).contains(&expires),
        "expires {} s from now",
        expires - before
    );
    assert_eq!(out.stderr, "", "nothing on stderr when all is well");
}

#[test]
fn every_google_host_class_gets_the_one_cached_token() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    for uri in [
        "https://us-maven.pkg.dev/p/r/a.jar",
        "https://europe-west1-npm.pkg.dev/p/r/pkg/-/pkg-1.0.0.tgz",
        "https://us-central1-python.pkg.dev/p/r/simple/pkg/",
        "https://us-go.pkg.dev/p/r/example.com/m/@v/v1.0.0.zip",
        "https://us-central1-apt.pkg.dev/projects/p/dists/r/InRelease",
        "https://us-central1-yum.pkg.dev/projects/p/r/repodata/repomd.xml",
        "https://us-central1-kfp.pkg.dev/p/r/pipeline/v1",
        "https://us-docker.pkg.dev/v2/p/r/image/manifests/latest",
        "https://docker.us-central1.rep.pkg.dev/v2/p/r/image/manifests/latest",
        "https://artifactregistry.googleapis.com/download/v1/projects/p/locations/us/repositories/r/files/f:download?alt=media",
        "https://gcr.io/v2/p/image/manifests/latest",
        "https://eu.gcr.io/v2/",
        "https://storage.googleapis.com/my-bucket/archive.tar.gz",
        "https://my-bucket.storage.googleapis.com/archive.tar.gz",
        "HTTPS://Storage.GoogleApis.com:443/b/o?alt=media#x",
    ] {
        assert_eq!(bearer(&ask(&env, uri)).0, "ya29.metadata-1", "{uri}");
    }
    assert_eq!(server.count(), 1, "one token request for fifteen gets");
}

#[test]
fn plain_http_foreign_hosts_lookalikes_and_user_info_get_no_headers_and_no_token_request() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    for uri in [
        "http://us-maven.pkg.dev/p/r/a.jar",
        "http://storage.googleapis.com/b/o",
        "grpcs://remote.example.com",
        "https://github.com/bazelbuild/rules_go/releases/download/v0.50.0/rules_go.zip",
        "https://bcr.bazel.build/modules/platforms/0.0.10/MODULE.bazel",
        "https://storage.googleapis.com.evil.example/b/o",
        "https://us-maven.pkg.dev.evil.example/p",
        "https://evil-storage.googleapis.com/b",
        "https://us-maven.pkg.dev@evil.example/p",
        "https://user:pw@storage.googleapis.com/b/o",
        "https://evil.example\\@storage.googleapis.com/b",
        "https://evil.example/https://us-maven.pkg.dev/p",
        "https://us-cargo.pkg.dev/p",
        "not a uri",
        "",
    ] {
        assert_no_headers(&ask(&env, uri), uri);
    }
    assert_eq!(server.count(), 0, "no token was minted for any of them");
}

#[test]
fn unknown_fields_are_ignored() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    let out = env.run(
        &["get"],
        br#"  {"future": {"nested": [1, 2]}, "uri": "https://us-npm.pkg.dev/p/r/x", "n": null}
"#,
    );
    assert_eq!(bearer(&out).0, "ya29.metadata-1");
}

/// Such input is no request Bazel sends; a docker client sending it gets "not found" on stdout,
/// as it always did.
#[test]
fn an_empty_or_malformed_request_is_an_error_on_stderr() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    for (input, needle) in [
        ("{}", "the request has no \"uri\""),
        (
            r#"{"url":"https://gcr.io/v2/"}"#,
            "the request has no \"uri\"",
        ),
        (r#"{"uri":5}"#, "\"uri\" is not a string"),
        (r#"{"uri":null}"#, "\"uri\" is not a string"),
        (
            "{",
            "invalid JSON request on stdin (unexpected end at line 1 column 1)",
        ),
        (
            r#"{"uri":"https://gcr.io/secret-path","#,
            "invalid JSON request on stdin",
        ),
    ] {
        let out = env.run(&["get"], input.as_bytes());
        assert_failure_with(&out, needle, NOT_FOUND, input);
        assert!(!out.stderr.contains("secret-path"), "{}", out.stderr);
    }
    // Input too large to read, or not text, is refused on stdout as it always was for docker,
    // and on stderr for Bazel.
    let huge = format!("{{\"uri\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let out = env.run(&["get"], huge.as_bytes());
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
    let mut invalid = br#"{"uri":"https://gcr.io/"#.to_vec();
    invalid.extend_from_slice(b"\xff\"}");
    assert_failure_with(
        &env.run(&["get"], &invalid),
        "not valid UTF-8",
        "input on stdin is not valid UTF-8\n",
        "bad UTF-8",
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn a_docker_get_answers_exactly_as_before() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    let (url, user, secret) = creds(&env.get("gcr.io"));
    assert_eq!(
        (url.as_str(), user.as_str(), secret.as_str()),
        ("gcr.io", "oauth2accesstoken", "ya29.metadata-1")
    );
    // Only container registries get a token from a docker `get`, as before.
    for host in [
        "us-maven.pkg.dev",
        "storage.googleapis.com",
        "https://us-maven.pkg.dev/p",
    ] {
        let out = env.get(host);
        assert_eq!((out.code, out.stdout.as_str()), (1, NOT_FOUND), "{host}");
    }
    let out = env.get("");
    assert_eq!(out.stdout, "no credentials server URL\n");
    // Bazel and docker share the cache: the same token, one request.
    assert_eq!(
        bearer(&ask(&env, "https://us-docker.pkg.dev/v2/")).0,
        "ya29.metadata-1"
    );
    assert_eq!(server.count(), 1);
}

#[test]
fn declared_registries_get_a_token_over_https_only() {
    let server = metadata_server(3600);
    let mut env = metadata_env(&server);
    env.set(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "artifacts.corp.example,127.0.0.1:8443",
    );
    assert_eq!(
        bearer(&ask(&env, "https://artifacts.corp.example/maven/a.jar")).0,
        "ya29.metadata-1"
    );
    assert_eq!(
        bearer(&ask(&env, "https://127.0.0.1:8443/x")).0,
        "ya29.metadata-1"
    );
    assert_no_headers(&ask(&env, "http://artifacts.corp.example/a.jar"), "http");
    assert_no_headers(&ask(&env, "https://127.0.0.1:8444/x"), "other port");
}

#[test]
fn a_retired_bucket_host_is_explained_on_stderr() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    let out = ask(&env, "https://b.gcr.io/my-bucket/image");
    assert_failure(&out, "are no longer served", "b.gcr.io");
    assert_eq!(server.count(), 0);
}

#[test]
fn without_credentials_bazel_gets_no_headers_and_the_hint_goes_to_stderr() {
    let env = Env::new();
    let out = ask(&env, "https://us-maven.pkg.dev/p/r/a.jar");
    assert_no_headers(&out, "no credentials");
    assert!(
        out.stderr.contains("no Google credentials on this machine")
            && out.stderr.contains("anonymously"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_revoked_sign_in_answers_no_headers_with_the_fix_on_stderr() {
    let endpoint = token_endpoint(3600);
    let mut env = Env::new();
    let adc = env.path("adc.json");
    let mut user: serde_json::Value =
        serde_json::from_str(&authorized_user_json(Some(&endpoint.url("/token")))).unwrap();
    user["refresh_token"] = "1//revoked".into();
    std::fs::write(&adc, user.to_string()).unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string());
    let out = ask(&env, "https://us-maven.pkg.dev/p/r/a.jar");
    assert_no_headers(&out, "sign-in needed");
    assert!(
        out.stderr.contains("invalid_grant")
            && out.stderr.contains("gcloud auth application-default login"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("1//revoked"), "{}", out.stderr);
}

#[test]
fn a_broken_credentials_file_exits_1_with_the_error_on_stderr_unless_on_error_is_anonymous() {
    let mut env = Env::new();
    let adc = env.path("adc.json");
    std::fs::write(
        &adc,
        r#"{"type":"service_account","client_email":"x@y.iam.gserviceaccount.com"}"#,
    )
    .unwrap();
    env.set("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string());
    let out = ask(&env, "https://storage.googleapis.com/b/o");
    assert_failure(&out, "adc.json", "broken file");
    env.set("DOCKER_CREDENTIAL_GCP_ON_ERROR", "anonymous");
    let out = ask(&env, "https://storage.googleapis.com/b/o");
    assert_no_headers(&out, "on_error=anonymous");
    assert!(
        out.stderr.contains("on_error is anonymous"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bazel_get_near_expiry_refreshes_ahead_like_a_docker_get() {
    let server = metadata_server(3600);
    let env = metadata_env(&server);
    assert_eq!(
        bearer(&ask(&env, "https://us-maven.pkg.dev/p")).0,
        "ya29.metadata-1"
    );
    cache::age_entry_in(&env.cache_dir());
    let (token, expires) = bearer(&ask(&env, "https://us-maven.pkg.dev/p"));
    assert_eq!(token, "ya29.metadata-1", "answered from the cache");
    // Ten minutes left: Bazel may use it for five more.
    assert!(
        (now() + 295..=now() + 300).contains(&expires),
        "{}",
        expires - now()
    );
    let until = Instant::now() + Duration::from_secs(10);
    while server.count() < 2 {
        assert!(Instant::now() < until, "no background refresh");
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (token, expires) = bearer(&ask(&env, "https://us-maven.pkg.dev/p"));
        if token == "ya29.metadata-2" {
            assert!(expires > now() + 3000, "{}", expires - now());
            break;
        }
        assert!(Instant::now() < until, "the refreshed token is not served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// A real Bazel: Debian unstable's bazel-bootstrap (7.7) in the current test root.

/// The names the loopback file server answers for, as Artifact Registry's Maven host and Cloud
/// Storage; inside the root session they resolve to 127.0.0.1.
const FILE_HOSTS: [&str; 2] = ["us-maven.pkg.dev", "storage.googleapis.com"];

/// Stops the Bazel server of an output root when the test ends, however it ends (its
/// `max_idle_secs` is the last resort if even this cannot run).
struct BazelServer<'a> {
    session: &'a RootSession,
    env: &'a Env,
    workspace: PathBuf,
}

impl Drop for BazelServer<'_> {
    fn drop(&mut self) {
        let ws = self.workspace.display().to_string();
        let _ = self
            .session
            .program(
                self.env,
                "sh",
                &["-c", "cd \"$1\" && bazel shutdown", "sh", &ws],
            )
            .stdin(Stdio::null())
            .output();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_real_bazel_fetches_from_artifact_registry_and_cloud_storage_with_one_token() {
    if !need(&[Peer::Root, Peer::CurrentRoot, Peer::StaticBinary]) {
        return;
    }
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // What the server holds: two Maven files and an archive in a bucket.
    let jar = b"PK\x03\x04 lib-1.0.jar from the test repository\n".to_vec();
    let pom = b"<project><artifactId>lib</artifactId></project>\n".to_vec();
    std::fs::create_dir_all(w.join("archive")).unwrap();
    std::fs::write(w.join("archive/data.txt"), "hello from a bucket\n").unwrap();
    let tar = Command::new("tar")
        .args(["czf", "archive.tar.gz", "-C", "archive", "data.txt"])
        .current_dir(w)
        .status()
        .unwrap();
    assert!(tar.success());
    let archive = std::fs::read(w.join("archive.tar.gz")).unwrap();
    let files: HashMap<&str, Vec<u8>> = HashMap::from([
        (
            "/my-project/my-repo/com/example/lib/1.0/lib-1.0.jar",
            jar.clone(),
        ),
        (
            "/my-project/my-repo/com/example/lib/1.0/lib-1.0.pom",
            pom.clone(),
        ),
        ("/my-bucket/archive.tar.gz", archive.clone()),
    ]);

    // The token stand-in and a file server that wants exactly the minted token.
    let metadata = metadata_server(3600);
    let pki = Pki::for_names(&FILE_HOSTS);
    let server = Server::start_tls(pki.server_config(), move |req| {
        if req.header("authorization") != Some("Bearer ya29.metadata-1") {
            return Reply::json(
                401,
                serde_json::json!({"error": "no or wrong bearer token"}),
            );
        }
        match files.get(req.path()) {
            Some(body) => Reply {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: body.clone(),
            },
            None => Reply::json(404, serde_json::json!({"error": "not found"})),
        }
    });
    let port = server.port();
    let url = |host: &str, path: &str| format!("https://{host}:{port}{path}");
    let jar_url = url(
        FILE_HOSTS[0],
        "/my-project/my-repo/com/example/lib/1.0/lib-1.0.jar",
    );
    let pom_url = url(
        FILE_HOSTS[0],
        "/my-project/my-repo/com/example/lib/1.0/lib-1.0.pom",
    );
    let archive_url = url(FILE_HOSTS[1], "/my-bucket/archive.tar.gz");

    // The root session: those names are 127.0.0.1, every other lookup fails at once.
    std::fs::write(
        w.join("hosts"),
        format!(
            "127.0.0.1 localhost {}\n::1 localhost\n",
            FILE_HOSTS.join(" ")
        ),
    )
    .unwrap();
    std::fs::write(w.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let session =
        RootSession::start(None, Some(&w.join("hosts")), Some(&w.join("resolv.conf"))).unwrap();

    let log = w.join("helper.log");
    let mut env = Env::new();
    env.set("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "metadata")
        .set("GCE_METADATA_HOST", metadata.host())
        .set("DOCKER_CREDENTIAL_GCP_LOG", "debug")
        .set("DOCKER_CREDENTIAL_GCP_LOG_FILE", log.display().to_string());

    // Bazel's JVM trusts the test CA through its own trust store.
    let trust = w.join("trust.p12");
    let ca = pki.ca_file().display().to_string();
    let out = output_of(session.program(
        &env,
        "keytool",
        &[
            "-importcert",
            "-noprompt",
            "-alias",
            "test-ca",
            "-file",
            &ca,
            "-keystore",
            &trust.display().to_string(),
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
        ],
    ));
    assert_eq!(out.code, 0, "keytool: {}{}", out.stdout, out.stderr);

    // The workspace: four repositories from three URLs on two hosts. `jar_again` shares
    // `jar`'s URL. No repository cache and a fresh output root, so every download happens.
    let ws = w.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("BUILD"), "").unwrap();
    std::fs::write(
        ws.join("WORKSPACE"),
        format!(
            r#"load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive", "http_file")
http_file(name = "jar", urls = ["{jar_url}"], sha256 = "{jar_sha}")
http_file(name = "pom", urls = ["{pom_url}"], sha256 = "{pom_sha}")
http_file(name = "jar_again", urls = ["{jar_url}"], sha256 = "{jar_sha}")
http_archive(
    name = "archive",
    urls = ["{archive_url}"],
    sha256 = "{archive_sha}",
    build_file_content = 'exports_files(["data.txt"])',
)
"#,
            jar_sha = sha256_hex(&jar),
            pom_sha = sha256_hex(&pom),
            archive_sha = sha256_hex(&archive),
        ),
    )
    .unwrap();
    let output_root = w.join("bazel-out");
    std::fs::write(
        ws.join(".bazelrc"),
        format!(
            "startup --output_user_root={out}
startup --max_idle_secs=120
startup --host_jvm_args=-Djavax.net.ssl.trustStore={trust}
startup --host_jvm_args=-Djavax.net.ssl.trustStorePassword=changeit
common --noenable_bzlmod
common --repository_cache=
common --credential_helper=*.pkg.dev={ROOT_HELPER}
common --credential_helper=*.storage.googleapis.com=docker-credential-gcp
",
            out = output_root.display(),
            trust = trust.display(),
        ),
    )
    .unwrap();

    let _server = BazelServer {
        session: &session,
        env: &env,
        workspace: ws.clone(),
    };
    let bazel_started = Instant::now();
    let out = output_of(session.program(
        &env,
        "sh",
        &[
            "-c",
            "cd \"$1\" && bazel fetch @jar//file @pom//file @jar_again//file @archive//:data.txt",
            "sh",
            &ws.display().to_string(),
        ],
    ));
    let bazel_took = bazel_started.elapsed();
    assert_eq!(
        out.code,
        0,
        "bazel fetch failed:\n{}",
        registry::tail(&out.stderr, 40)
    );

    // Every download carried the minted token (the server refuses anything else)...
    let requests = server.requests();
    let fetched: BTreeSet<String> = requests
        .iter()
        .map(|r| format!("https://{}{}", r.header("host").unwrap_or(""), r.path()))
        .collect();
    assert_eq!(
        fetched,
        BTreeSet::from([jar_url.clone(), pom_url.clone(), archive_url.clone()]),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer ya29.metadata-1")),
        "{requests:?}"
    );
    let extracted = std::fs::read_dir(&output_root)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path().join("external/archive/data.txt");
            p.is_file().then_some(p)
        })
        .next()
        .expect("the archive was extracted");
    assert_eq!(
        std::fs::read_to_string(extracted).unwrap(),
        "hello from a bucket\n"
    );

    // ...from one token request, and Bazel ran the helper once per URL: its credential cache is
    // keyed by the whole URI, so one run per host is not Bazel's to give; `jar_again` was
    // answered from that cache, because the answer said how long it holds (`expires`).
    assert_eq!(metadata.count(), 1, "one token request for the whole build");
    let asked: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once("Bazel asks for ")
                .map(|(_, uri)| uri.to_owned())
        })
        .collect();
    let distinct: BTreeSet<&String> = asked.iter().collect();
    assert_eq!(
        asked.len(),
        3,
        "one helper run per URL, not per repository: {asked:?}"
    );
    assert_eq!(
        distinct,
        BTreeSet::from([&jar_url, &pom_url, &archive_url]),
        "{asked:?}"
    );
    eprintln!(
        "a real Bazel fetch: {:?} in all, {bazel_took:?} for `bazel fetch` (server start included); {} helper runs, {} token request",
        started.elapsed(),
        asked.len(),
        metadata.count()
    );
}
