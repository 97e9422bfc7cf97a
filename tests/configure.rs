//! `configure-docker`, `configure-mirror`, `doctor` and `print-access-token`, run as a user
//! would, against real files in a temporary HOME.

use crate::support::peers::{Peer, need};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// A config.json as people really have them: logins, a credsStore, other helpers, headers,
/// proxies, plugins, features, aliases, keys from the future and non-ASCII text.
const REAL_WORLD: &str = r#"{
	"auths": {
		"https://index.docker.io/v1/": {},
		"registry.example.com": {"auth": "dXNlcjpwYXNz", "identitytoken": "tok"}
	},
	"credsStore": "desktop",
	"credHelpers": {
		"123456789012.dkr.ecr.us-east-1.amazonaws.com": "ecr-login",
		"gcr.io": "gcloud"
	},
	"HttpHeaders": {"User-Agent": "Docker-Client/28 (linux)", "X-Meta-Team": "plateforme-données ☃"},
	"proxies": {"default": {"httpProxy": "http://proxy.example:3128", "noProxy": "*.test.example"}},
	"plugins": {"compose": {"hooks": "build"}},
	"cliPluginsExtraDirs": ["/opt/docker/plugins"],
	"features": {"hooks": "true"},
	"aliases": {"builder": "buildx"},
	"detachKeys": "ctrl-e,e",
	"psFormat": "table {{.ID}}\t{{.Names}}",
	"currentContext": "remote",
	"zzFutureKey": {"nested": [1, 2.5, true, null, "x"], "empty": {}}
}
"#;

struct Setup {
    env: Env,
    docker_dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let mut env = Env::new();
        let docker_dir = env.path("docker");
        env.set("DOCKER_CONFIG", docker_dir.display().to_string());
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        env.set("PATH", format!("{bin_dir}:{SYSTEM_PATH}"));
        Setup { env, docker_dir }
    }

    /// A directory with nothing in it, for a PATH on which nothing is found.
    fn empty_dir(&self, name: &str) -> String {
        let dir = self.env.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.display().to_string()
    }

    fn config(&self) -> PathBuf {
        self.docker_dir.join("config.json")
    }

    fn write_config(&self, text: &str) {
        std::fs::create_dir_all(&self.docker_dir).unwrap();
        std::fs::write(self.config(), text).unwrap();
    }

    fn read_json(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config()).unwrap()).unwrap()
    }

    fn configure(&self, args: &[&str]) -> Output {
        let mut all = vec!["configure-docker"];
        all.extend_from_slice(args);
        self.env.run(&all, b"")
    }

    /// A fake `docker` that reports `version`, first on PATH; `None` removes docker from PATH.
    fn docker_version(&mut self, version: Option<&str>) {
        let fake = self.env.path("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        if let Some(v) = version {
            let script = fake.join("docker");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho {v}\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Only the fake docker (if any) and the helper: a real docker elsewhere on the
        // machine must not answer for the fake one.
        self.env
            .set("PATH", format!("{}:{bin_dir}", fake.display()));
    }
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// How many Google registry hosts this release knows (src/setup/registries.rs).
const KNOWN_HOSTS: usize = 98;

/// Hosts from every part of the known set: Container Registry, the Artifact Registry
/// multi-regions, regions (first and last listed), and regional endpoints.
const SAMPLE_HOSTS: [&str; 12] = [
    "gcr.io",
    "us.gcr.io",
    "eu.gcr.io",
    "asia.gcr.io",
    "marketplace.gcr.io",
    "staging-k8s.gcr.io",
    "us-docker.pkg.dev",
    "asia-docker.pkg.dev",
    "africa-south1-docker.pkg.dev",
    "us-west8-docker.pkg.dev",
    "docker.us-central1.rep.pkg.dev",
    "docker.europe-west1.rep.pkg.dev",
];

/// The hosts that map to this helper.
fn ours(v: &Value) -> Vec<String> {
    v["credHelpers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, h)| *h == "gcp")
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn configure_docker_keeps_every_other_key_value_and_the_key_order() {
    let s = Setup::new();
    s.write_config(REAL_WORLD);
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before: Value = serde_json::from_str(REAL_WORLD).unwrap();
    let after = s.read_json();
    assert_eq!(
        keys(&before),
        keys(&after),
        "top-level keys and their order are kept"
    );
    for (k, v) in before.as_object().unwrap() {
        if k != "credHelpers" {
            assert_eq!(&after[k], v, "{k} kept");
        }
    }
    let helpers = after["credHelpers"].as_object().unwrap();
    assert_eq!(
        helpers["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        "ecr-login"
    );
    assert_eq!(helpers.len(), KNOWN_HOSTS + 1, "every known host, ECR kept");
    assert_eq!(ours(&after).len(), KNOWN_HOSTS);
    for host in SAMPLE_HOSTS {
        assert_eq!(helpers[host], "gcp", "{host}");
    }
    assert!(
        out.stderr
            .contains("gcr.io was handled by docker-credential-gcloud"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("mapped 98 host(s) to docker-credential-gcp: 97 new (us.gcr.io, ")
            && out
                .stderr
                .contains(", 1 taken over from another helper (gcr.io)\n"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(s.config()).unwrap();
    assert!(
        text.starts_with("{\n\t\"auths\": {\n\t\t"),
        "tab indented like the docker CLI: {text}"
    );
}

#[test]
fn configure_docker_maps_every_known_google_host_on_a_fresh_machine() {
    let s = Setup::new();
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = s.read_json();
    assert_eq!(keys(&after), ["credHelpers"]);
    assert_eq!(ours(&after).len(), KNOWN_HOSTS);
    assert_eq!(after["credHelpers"].as_object().unwrap().len(), KNOWN_HOSTS);
    for host in SAMPLE_HOSTS {
        assert_eq!(after["credHelpers"][host], "gcp", "{host}");
    }
    assert!(
        out.stderr
            .contains("mapped 98 host(s) to docker-credential-gcp"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("legacy builder"),
        "our own long list is cheap and gets no warning: {}",
        out.stderr
    );
}

#[test]
fn running_it_again_changes_no_byte_and_says_so() {
    let s = Setup::new();
    s.write_config(REAL_WORLD);
    assert_eq!(s.configure(&[]).code, 0);
    let first = std::fs::read(s.config()).unwrap();
    let again = s.configure(&[]);
    assert_eq!(again.code, 0);
    assert!(
        again.stderr.contains(
            "already configured (98 host(s) map to docker-credential-gcp); nothing changed"
        ),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(s.config()).unwrap(), first);
}

#[test]
fn a_new_config_is_private_and_an_existing_one_keeps_its_mode() {
    let s = Setup::new();
    assert_eq!(s.configure(&[]).code, 0);
    assert_eq!(
        std::fs::metadata(&s.docker_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(s.config()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let s = Setup::new();
    s.write_config("{}");
    std::fs::set_permissions(s.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(s.configure(&[]).code, 0);
    assert_eq!(
        std::fs::metadata(s.config()).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn a_symlinked_config_is_followed_and_the_link_kept() {
    let s = Setup::new();
    let real = s.env.path("dotfiles/docker-config.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, r#"{"auths": {}}"#).unwrap();
    std::fs::create_dir_all(&s.docker_dir).unwrap();
    std::os::unix::fs::symlink(&real, s.config()).unwrap();
    assert_eq!(s.configure(&[]).code, 0);
    assert!(
        std::fs::symlink_metadata(s.config())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let target: Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    assert_eq!(target["credHelpers"]["gcr.io"], "gcp");
    assert_eq!(target["auths"], serde_json::json!({}));
}

#[test]
fn a_malformed_config_is_never_touched() {
    let s = Setup::new();
    let broken = "{\n\t\"auths\": {\n\t\t\"x\": {},\n\t}\n}\n";
    s.write_config(broken);
    let out = s.configure(&[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 4") && out.stderr.contains("not valid JSON"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(s.config()).unwrap(), broken);
    let leftovers: Vec<_> = std::fs::read_dir(&s.docker_dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left");
}

#[test]
fn concurrent_runs_lose_no_entry() {
    let s = Setup::new();
    s.write_config(REAL_WORLD);
    let hosts: Vec<String> = (0..20).map(|i| format!("r{i}-docker.pkg.dev")).collect();
    let children: Vec<_> = hosts
        .iter()
        .map(|h| {
            s.env
                .command(&["configure-docker", "--registries", h])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = s.read_json();
    for h in &hosts {
        assert_eq!(after["credHelpers"][h], "gcp", "{h} survived");
    }
    assert_eq!(
        after["credHelpers"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        "ecr-login"
    );
    assert_eq!(after["zzFutureKey"]["nested"][1], 2.5);
}

#[test]
fn dry_run_prints_the_diff_and_writes_nothing() {
    let s = Setup::new();
    s.write_config(r#"{"auths": {}}"#);
    let out = s.configure(&["--dry-run", "--registries", "gcr.io,us-docker.pkg.dev"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("+\t\t\"gcr.io\": \"gcp\",")
            && out.stdout.contains("+\t\t\"us-docker.pkg.dev\": \"gcp\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("-{\"auths\": {}}"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(s.config()).unwrap(),
        r#"{"auths": {}}"#
    );
}

#[test]
fn remove_takes_out_only_our_entries() {
    let s = Setup::new();
    s.write_config(REAL_WORLD);
    assert_eq!(s.configure(&["--include-artifact-registry"]).code, 0);
    let out = s.configure(&["--remove"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = s.read_json();
    let helpers = after["credHelpers"].as_object().unwrap();
    assert_eq!(
        keys(&after["credHelpers"]),
        vec!["123456789012.dkr.ecr.us-east-1.amazonaws.com"]
    );
    assert_eq!(helpers.len(), 1);
    assert_eq!(
        after["auths"],
        serde_json::from_str::<Value>(REAL_WORLD).unwrap()["auths"]
    );
}

#[test]
fn include_artifact_registry_is_still_accepted_and_is_the_default() {
    let plain = Setup::new();
    assert_eq!(plain.configure(&[]).code, 0);
    let flagged = Setup::new();
    let out = flagged.configure(&["--include-artifact-registry"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(flagged.config()).unwrap(),
        std::fs::read(plain.config()).unwrap(),
        "the flag adds nothing to the default"
    );

    // With --registries it still adds the Artifact Registry hosts to the chosen set.
    let exact = Setup::new();
    let out = exact.configure(&["--registries", "gcr.io", "--include-artifact-registry"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hosts = ours(&exact.read_json());
    assert_eq!(hosts.len(), 1 + 92);
    assert!(hosts.contains(&"docker.us-central1.rep.pkg.dev".to_owned()));
    assert!(!hosts.contains(&"us.gcr.io".to_owned()));
}

#[test]
fn registries_chooses_an_exact_set() {
    let s = Setup::new();
    let out = s.configure(&["--registries", "gcr.io,europe-west1-docker.pkg.dev"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        ours(&s.read_json()),
        ["gcr.io", "europe-west1-docker.pkg.dev"]
    );
    assert!(out.stderr.contains("mapped 2 host(s)"), "{}", out.stderr);
}

#[test]
fn many_entries_of_other_helpers_get_the_legacy_build_note() {
    let s = Setup::new();
    let others: serde_json::Map<String, Value> = (0..25)
        .map(|i| (format!("r{i}.example.com"), Value::from("other")))
        .collect();
    s.write_config(&serde_json::json!({ "credHelpers": others }).to_string());
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("25 credHelpers entries use other helpers")
            && out.stderr.contains("legacy builder"),
        "{}",
        out.stderr
    );
}

#[test]
fn declared_extra_registries_are_configured_too() {
    let mut s = Setup::new();
    s.env.set(
        "DOCKER_CREDENTIAL_GCP_REGISTRIES",
        "ar-proxy.corp.example:8443",
    );
    assert_eq!(s.configure(&[]).code, 0);
    assert_eq!(
        s.read_json()["credHelpers"]["ar-proxy.corp.example:8443"],
        "gcp"
    );
}

#[test]
fn bucket_hosts_and_foreign_hosts_are_refused_and_nothing_is_written() {
    let s = Setup::new();
    s.write_config(REAL_WORLD);
    for (hosts, needle) in [
        ("gcr.io,b.gcr.io", "no longer served"),
        ("bucket.gcr.io", "no longer served"),
        ("quay.io", "not a Google registry"),
    ] {
        let out = s.configure(&["--registries", hosts]);
        assert_eq!(out.code, 1, "{hosts}");
        assert!(
            out.stderr.contains(needle) && out.stderr.contains("Nothing was written"),
            "{hosts}: {}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(s.config()).unwrap(), REAL_WORLD);
    }
}

#[test]
fn old_docker_clients_get_a_warning_or_a_refusal() {
    let mut s = Setup::new();
    s.docker_version(Some("17.12.1-ce"));
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("older than 18.03") && out.stderr.contains("upgrade"),
        "{}",
        out.stderr
    );

    let mut s = Setup::new();
    s.docker_version(Some("1.5.0"));
    let out = s.configure(&[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("Docker 1.5.0 cannot talk to Google's registries"),
        "{}",
        out.stderr
    );
    assert!(!s.config().exists(), "nothing written");

    let mut s = Setup::new();
    s.docker_version(None);
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("docker CLI is not installed"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_helper_missing_from_path_is_reported_with_the_fix() {
    let mut s = Setup::new();
    s.env.set("PATH", s.empty_dir("empty-bin"));
    let out = s.configure(&[]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("docker-credential-gcp is not on PATH")
            && out.stderr.contains("export PATH="),
        "{}",
        out.stderr
    );
}

#[test]
fn doctor_passes_on_a_healthy_set_up() {
    let server = token_endpoint(3600);
    let mut s = Setup::new();
    s.env.use_service_account(&server.url("/token"));
    assert_eq!(s.configure(&[]).code, 0);
    let out = s.env.run(&["doctor"], b"");
    assert_eq!(out.code, 0, "{}", out.stdout);
    for needle in [
        "✓ docker-credential-gcp is on PATH",
        "✓ 98 Google registries use docker-credential-gcp",
        "✓ credHelpers maps all 98 Google registry hosts this release knows",
        "✓ a Google access token is available; it expires in ",
        "all checks passed",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    let token = creds(&s.env.get("gcr.io")).2;
    assert!(
        !out.stdout.contains(&token) && !out.stderr.contains(&token),
        "doctor never prints the token"
    );
}

#[test]
fn doctor_fails_on_a_broken_set_up_and_names_each_fix() {
    let mut s = Setup::new();
    s.write_config(r#"{"credHelpers": {"b.gcr.io": "gcp", "gcr.io": "gcloud"}}"#);
    s.env.set("PATH", s.empty_dir("empty-bin"));
    let out = s.env.run(&["doctor"], b"");
    assert_eq!(out.code, 1);
    for needle in [
        "✗ docker-credential-gcp is not on PATH",
        "✗ no Google registry in",
        "fix: run `docker-credential-gcp configure-docker`",
        "✗ deprecated bucket hosts in credHelpers: b.gcr.io",
        "gcr.io → docker-credential-gcloud",
        "✗ no token source is present",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
}

/// credHelpers entries that are not helper names (a number, null, an object, ""): docker
/// cannot run a helper for them. configure-docker warns when it replaces one, as it does for
/// another helper's, and doctor names them.
#[test]
fn entries_that_are_not_helper_names_are_named_by_doctor_and_replaced_with_a_warning() {
    let s = Setup::new();
    s.write_config(
        r#"{"credHelpers": {"gcr.io": 5, "us.gcr.io": null, "eu.gcr.io": {"x": 1}, "asia.gcr.io": "", "quay.io": 7}}"#,
    );
    let out = s.env.run(&["doctor"], b"");
    for needle in [
        "credHelpers entries that are not helper names",
        "gcr.io (5)",
        "us.gcr.io (null)",
        "eu.gcr.io ({\"x\":1})",
        "asia.gcr.io (\"\")",
        "quay.io (7)",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    assert!(
        !out.stdout.contains("docker-credential-,") && !out.stdout.contains("docker-credential-\n"),
        "no helper without a name: {}",
        out.stdout
    );

    let out = s.configure(&["--registries", "gcr.io,us.gcr.io,eu.gcr.io,asia.gcr.io"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (host, was) in [
        ("gcr.io", "5"),
        ("us.gcr.io", "null"),
        ("eu.gcr.io", "{\"x\":1}"),
        ("asia.gcr.io", "\"\""),
    ] {
        let warning = format!(
            "warning: {host}'s credHelpers entry was {was}, not a helper name; it now uses docker-credential-gcp"
        );
        assert!(out.stderr.contains(&warning), "{warning}: {}", out.stderr);
    }
    assert!(
        out.stderr
            .contains("4 in place of entries that were not helper names"),
        "{}",
        out.stderr
    );
    let after = s.read_json();
    assert_eq!(
        after["credHelpers"]["quay.io"], 7,
        "others' entries untouched"
    );
}

#[test]
fn doctor_names_a_known_host_missing_from_cred_helpers_and_the_command_adds_it() {
    let s = Setup::new();
    assert_eq!(s.configure(&[]).code, 0);
    let mut config = s.read_json();
    config["credHelpers"]
        .as_object_mut()
        .unwrap()
        .remove("europe-west1-docker.pkg.dev");
    s.write_config(&config.to_string());
    let out = s.env.run(&["doctor"], b"");
    let needle = "- 1 Google registry host this release knows is not in credHelpers: europe-west1-docker.pkg.dev; add it with `docker-credential-gcp configure-docker`";
    assert!(out.stdout.contains(needle), "{}", out.stdout);

    assert_eq!(s.configure(&[]).code, 0, "the command named");
    assert_eq!(
        s.read_json()["credHelpers"]["europe-west1-docker.pkg.dev"],
        "gcp"
    );
    let out = s.env.run(&["doctor"], b"");
    assert!(
        out.stdout
            .contains("✓ credHelpers maps all 98 Google registry hosts this release knows"),
        "{}",
        out.stdout
    );
}

#[test]
fn doctor_names_only_the_missing_hosts_when_another_helper_handles_a_google_host() {
    let s = Setup::new();
    // An old six-host set-up, with gcr.io left to gcloud on purpose.
    s.write_config(
        r#"{"credHelpers": {"gcr.io": "gcloud", "us.gcr.io": "gcp", "eu.gcr.io": "gcp", "asia.gcr.io": "gcp", "marketplace.gcr.io": "gcp", "staging-k8s.gcr.io": "gcp"}}"#,
    );
    let out = s.env.run(&["doctor"], b"");
    assert!(
        out.stdout.contains(
            "- 92 Google registry hosts this release knows are not in credHelpers: us-docker.pkg.dev, "
        ),
        "{}",
        out.stdout
    );
    let command = out
        .stdout
        .lines()
        .find_map(|l| l.split("add them with `").nth(1))
        .and_then(|rest| rest.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no command in {}", out.stdout));
    let args: Vec<&str> = command.split(' ').collect();
    assert_eq!(
        &args[..3],
        ["docker-credential-gcp", "configure-docker", "--registries"]
    );
    assert!(!args[3].split(',').any(|h| h == "gcr.io"));
    let run = s.env.run(&args[1..], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = s.read_json();
    assert_eq!(after["credHelpers"]["gcr.io"], "gcloud", "left alone");
    assert_eq!(ours(&after).len(), KNOWN_HOSTS - 1);
}

#[test]
fn print_access_token_prints_only_the_token() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let out = env.run(&["print-access-token"], b"");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "ya29.test-1\n"),
        "{}",
        out.stderr
    );
    let none = Env::new().run(&["print-access-token"], b"");
    assert_eq!(none.code, 1);
    assert!(
        none.stdout.is_empty() && none.stderr.contains("gcloud auth login"),
        "{}",
        none.stderr
    );
}

#[test]
fn configure_mirror_adds_the_mirror_to_daemon_json_keeping_everything() {
    let env = Env::new();
    let daemon = env.path("etc/docker/daemon.json");
    std::fs::create_dir_all(daemon.parent().unwrap()).unwrap();
    let original = r#"{"log-driver": "journald", "registry-mirrors": ["https://mirror.example.com"], "insecure-registries": ["10.0.0.0/8"], "features": {"buildkit": true}}"#;
    std::fs::write(&daemon, original).unwrap();
    let path = daemon.display().to_string();

    let dry = env.run(
        &["configure-mirror", "--daemon-json", &path, "--dry-run"],
        b"",
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("+\t\t\"https://mirror.gcr.io\""),
        "{}",
        dry.stdout
    );
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), original);

    let out = env.run(&["configure-mirror", "--daemon-json", &path], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("systemctl restart docker")
            && out.stderr.contains("docker system info"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("rate limits") && out.stderr.contains("falls back")
            || out.stderr.contains("fall back"),
        "{}",
        out.stderr
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&daemon).unwrap()).unwrap();
    assert_eq!(
        v["registry-mirrors"],
        serde_json::json!(["https://mirror.example.com", "https://mirror.gcr.io"])
    );
    assert_eq!(
        keys(&v),
        vec![
            "log-driver",
            "registry-mirrors",
            "insecure-registries",
            "features"
        ]
    );
    let again = env.run(&["configure-mirror", "--daemon-json", &path], b"");
    assert!(again.stderr.contains("nothing changed"), "{}", again.stderr);

    assert_eq!(
        env.run(
            &["configure-mirror", "--daemon-json", &path, "--remove"],
            b""
        )
        .code,
        0
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&daemon).unwrap()).unwrap();
    assert_eq!(
        v["registry-mirrors"],
        serde_json::json!(["https://mirror.example.com"])
    );
}

/// Number texts that a parse into f64 and back would change (or refuse), and ordinary ones.
const NUMBER_TEXTS: [&str; 14] = [
    "-0",
    "-0.0",
    "1.0",
    "1.50",
    "15E2",
    "1e-2",
    "2E+0",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890.1234567890123456789",
    "0",
    "42",
];

/// `"nI": TEXT` for each number text, as the members of one object.
fn numbered_members() -> String {
    NUMBER_TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("\"n{i}\": {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_numbers_kept(text: &str) {
    for (i, t) in NUMBER_TEXTS.iter().enumerate() {
        let member = format!("\"n{i}\": {t}");
        let kept = text
            .match_indices(&member)
            .any(|(at, _)| matches!(text.as_bytes().get(at + member.len()), Some(b',' | b'\n')));
        assert!(kept, "{member} in {text}");
    }
}

#[test]
fn configure_docker_and_configure_mirror_keep_every_number_as_written() {
    let s = Setup::new();
    s.write_config(&format!(
        "{{\"credHelpers\": {{\"quay.io\": \"quay\"}}, \"zzFutureKey\": {{{}}}}}",
        numbered_members()
    ));
    for args in [&[][..], &["--remove"][..]] {
        let out = s.configure(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_numbers_kept(&std::fs::read_to_string(s.config()).unwrap());
    }

    let daemon = s.env.path("daemon.json");
    std::fs::write(
        &daemon,
        format!("{{{}, \"shutdown-timeout\": -0}}", numbered_members()),
    )
    .unwrap();
    let path = daemon.display().to_string();
    for args in [&[][..], &["--remove"][..]] {
        let mut all = vec!["configure-mirror", "--daemon-json", &path];
        all.extend_from_slice(args);
        let out = s.env.run(&all, b"");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let text = std::fs::read_to_string(&daemon).unwrap();
        assert_numbers_kept(&text);
        assert!(text.contains("\"shutdown-timeout\": -0"), "{text}");
    }
}

#[test]
fn configure_mirror_writes_containerd_and_podman_files_and_removes_them_again() {
    let env = Env::new();
    let hosts_dir = env.path("certs.d");
    let conf = env.path("registries.conf");
    let theirs = "unqualified-search-registries = [\"docker.io\", \"quay.io\"]\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n";
    std::fs::write(&conf, theirs).unwrap();
    let (h, c) = (hosts_dir.display().to_string(), conf.display().to_string());
    let out = env.run(
        &[
            "configure-mirror",
            "--containerd",
            "--hosts-dir",
            &h,
            "--podman",
            "--registries-conf",
            &c,
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hosts_toml = std::fs::read_to_string(hosts_dir.join("docker.io/hosts.toml")).unwrap();
    assert!(
        hosts_toml.contains("server = \"https://registry-1.docker.io\"")
            && hosts_toml.contains("[host.\"https://mirror.gcr.io\"]"),
        "{hosts_toml}"
    );
    let podman = std::fs::read_to_string(&conf).unwrap();
    assert!(
        podman.starts_with(theirs.trim_end())
            && podman.contains("[[registry.mirror]]\nlocation = \"mirror.gcr.io\""),
        "{podman}"
    );
    assert_eq!(
        podman.matches("[[registry]]").count(),
        1,
        "joins the existing docker.io entry: {podman}"
    );

    let out = env.run(
        &[
            "configure-mirror",
            "--containerd",
            "--hosts-dir",
            &h,
            "--podman",
            "--registries-conf",
            &c,
            "--remove",
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), theirs);
    assert_eq!(
        std::fs::read_to_string(hosts_dir.join("docker.io/hosts.toml")).unwrap(),
        ""
    );
}

/// mirror.gcr.io as people write it: scheme and host in any case, the default port, a final
/// slash; in hosts.toml and registries.conf also without the scheme those files default to.
/// configure-mirror finds it (no second copy) and --remove takes it out.
#[test]
fn configure_mirror_knows_mirror_gcr_io_however_it_is_spelled() {
    let env = Env::new();
    let run = |args: &[&str], remove: bool| {
        let mut all = vec!["configure-mirror"];
        all.extend_from_slice(args);
        if remove {
            all.push("--remove");
        }
        let out = env.run(&all, b"");
        assert_eq!(out.code, 0, "{all:?}: {}", out.stderr);
        out
    };
    let daemon = env.path("daemon.json");
    let d = daemon.display().to_string();
    for spelling in [
        "HTTPS://MIRROR.GCR.IO",
        "https://mirror.gcr.io:443/",
        "https://mirror.gcr.io/",
        "https://Mirror.Gcr.Io:443",
    ] {
        let text = format!(
            "{{\n\t\"registry-mirrors\": [\n\t\t\"https://corp.example\",\n\t\t\"{spelling}\"\n\t]\n}}\n"
        );
        std::fs::write(&daemon, &text).unwrap();
        let out = run(&["--daemon-json", &d], false);
        assert_eq!(
            std::fs::read_to_string(&daemon).unwrap(),
            text,
            "{spelling}"
        );
        assert!(
            out.stderr.contains("already set up"),
            "{spelling}: {}",
            out.stderr
        );
        run(&["--daemon-json", &d], true);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&daemon).unwrap()).unwrap();
        assert_eq!(
            v["registry-mirrors"],
            serde_json::json!(["https://corp.example"]),
            "{spelling}"
        );
    }

    let hosts_dir = env.path("certs.d");
    let hosts_toml = hosts_dir.join("docker.io/hosts.toml");
    std::fs::create_dir_all(hosts_toml.parent().unwrap()).unwrap();
    let h = hosts_dir.display().to_string();
    let other = "server = \"https://registry-1.docker.io\"\n\n[host.\"https://corp.example\"]\n  capabilities = [\"pull\"]\n";
    for spelling in [
        "https://mirror.gcr.io/",
        "HTTPS://MIRROR.GCR.IO:443",
        "mirror.gcr.io",
    ] {
        let text =
            format!("{other}\n[host.\"{spelling}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        std::fs::write(&hosts_toml, &text).unwrap();
        run(&["--containerd", "--hosts-dir", &h], false);
        assert_eq!(
            std::fs::read_to_string(&hosts_toml).unwrap(),
            text,
            "{spelling}"
        );
        run(&["--containerd", "--hosts-dir", &h], true);
        assert_eq!(
            std::fs::read_to_string(&hosts_toml).unwrap(),
            other,
            "{spelling}"
        );
    }

    let conf = env.path("registries.conf");
    let c = conf.display().to_string();
    let entry = "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n";
    for spelling in ["mirror.gcr.io:443", "MIRROR.GCR.IO", "mirror.gcr.io/"] {
        let text = format!("{entry}\n[[registry.mirror]]\nlocation = \"{spelling}\"\n");
        std::fs::write(&conf, &text).unwrap();
        run(&["--podman", "--registries-conf", &c], false);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), text, "{spelling}");
        run(&["--podman", "--registries-conf", &c], true);
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), entry, "{spelling}");
    }
}

#[test]
fn configure_mirror_refuses_malformed_files() {
    let env = Env::new();
    let conf = env.path("registries.conf");
    std::fs::write(&conf, "[[registry]\nlocation = ").unwrap();
    let out = env.run(
        &[
            "configure-mirror",
            "--podman",
            "--registries-conf",
            &conf.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is not valid TOML"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "[[registry]\nlocation = "
    );
    let daemon = env.path("daemon.json");
    std::fs::write(&daemon, "{\"a\": }").unwrap();
    let out = env.run(
        &[
            "configure-mirror",
            "--daemon-json",
            &daemon.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("line 1"), "{}", out.stderr);
}

#[test]
fn a_docker_cli_that_cannot_start_is_reported_with_its_own_reason() {
    if !need(&[Peer::Docker]) {
        return;
    }
    // A config left pointing at a context that no longer exists (a removed colima or
    // Docker Desktop): the real docker CLI then prints no version at all.
    let s = Setup::new();
    s.write_config("{\n\t\"currentContext\": \"gone-away\"\n}\n");
    let out = s.configure(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("note: could not read the Docker client version (`docker version` failed: ")
            && out.stderr.contains("gone-away"),
        "docker's own reason: {}",
        out.stderr
    );
    assert_eq!(s.read_json()["currentContext"], "gone-away");
    assert_eq!(ours(&s.read_json()).len(), KNOWN_HOSTS);
}

/// configure-docker killed with SIGKILL at random moments, many times: config.json is always
/// the old or the new content, valid JSON, and no temporary file is ever left as config.json.
#[test]
fn configure_docker_killed_at_random_points_never_corrupts_the_config() {
    let mut env = Env::new();
    let dir = env.path("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    let original =
        r#"{"auths": {"registry.example.com": {"auth": "eDp5"}}, "credsStore": "desktop"}"#;
    std::fs::write(&config, original).unwrap();
    env.set("DOCKER_CONFIG", dir.display().to_string());
    env.set("PATH", "/usr/bin:/bin");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut completed = 0;
    for round in 0..60 {
        let registries = format!("r{round}-docker.pkg.dev");
        let mut child = env
            .command(&["configure-docker", "--registries", &registries])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(next() % 4000));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            completed += 1;
        }
        let text = std::fs::read_to_string(&config).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: corrupt config ({e}): {text}"));
        assert_eq!(
            v["auths"]["registry.example.com"]["auth"], "eDp5",
            "round {round}"
        );
        assert_eq!(v["credsStore"], "desktop");
    }
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config.json" && !n.starts_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    eprintln!("{completed} of 60 runs completed before the kill");
}

#[test]
fn editing_a_users_files_as_root_keeps_their_owner() {
    if !need(&[Peer::Root]) {
        return;
    }
    require_root("chown");
    let mut env = Env::new();
    let docker = env.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    std::fs::write(&config, r#"{"auths": {}}"#).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65533)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let out = env.run(&["configure-docker", "--yes"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65533, 0o640)
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("\"gcr.io\": \"gcp\"")
    );

    let daemon = env.path("etc/daemon.json");
    std::fs::create_dir_all(daemon.parent().unwrap()).unwrap();
    std::fs::write(&daemon, "{}").unwrap();
    std::os::unix::fs::chown(&daemon, Some(65534), Some(65533)).unwrap();
    let out = env.run(
        &[
            "configure-mirror",
            "--daemon-json",
            &daemon.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let meta = std::fs::metadata(&daemon).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65533));
}

#[test]
fn repeated_cred_helpers_objects_are_merged_as_docker_reads_them() {
    let mut env = Env::new();
    let docker = env.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    std::fs::write(
        &config,
        r#"{"credHelpers": {"quay.io": "quay"}, "auths": {}, "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}"#,
    )
    .unwrap();
    env.set("DOCKER_CONFIG", docker.display().to_string());
    let out = env.run(&["configure-docker", "--yes"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("\"credHelpers\" more than once"),
        "{}",
        out.stderr
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        v["credHelpers"]["quay.io"], "quay",
        "the first object's mapping is kept"
    );
    assert_eq!(
        v["credHelpers"]["123.dkr.ecr.us-east-1.amazonaws.com"],
        "ecr-login"
    );
    assert_eq!(v["credHelpers"]["gcr.io"], "gcp");
}

/// containerd's CRI reads the hosts directory only through `config_path`: configure-mirror
/// sets it in the config.toml it is given (in the table of the file's version), and a file it
/// must refuse is reported before hosts.toml is written.
#[test]
fn configure_mirror_points_containerds_cri_at_the_hosts_directory() {
    let env = Env::new();
    let hosts_dir = env.path("certs.d");
    let config = env.path("config.toml");
    // Debian's own (containerd 1.6 in Debian 12, 2.1 in unstable): version 2, no config_path.
    let debian = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n";
    std::fs::write(&config, debian).unwrap();
    let (h, c) = (
        hosts_dir.display().to_string(),
        config.display().to_string(),
    );
    let args = [
        "configure-mirror",
        "--containerd",
        "--hosts-dir",
        &h,
        "--containerd-config",
        &c,
    ];
    let out = env.run(&args, b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        written,
        format!(
            "{debian}\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"{h}\"\n"
        )
    );
    assert!(out.stderr.contains("restart containerd"), "{}", out.stderr);
    let again = env.run(&args, b"");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    assert!(
        !again.stderr.contains("restart containerd"),
        "{}",
        again.stderr
    );

    // Deprecated CRI mirrors: refused, and nothing is written at all.
    let fresh = env.path("other-certs.d");
    let mirrors = "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://corp-mirror.test\"]\n";
    std::fs::write(&config, mirrors).unwrap();
    let f = fresh.display().to_string();
    let out = env.run(
        &[
            "configure-mirror",
            "--containerd",
            "--hosts-dir",
            &f,
            "--containerd-config",
            &c,
        ],
        b"",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing was changed") && out.stderr.contains("mirrors"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), mirrors);
    assert!(!fresh.exists(), "no hosts.toml either");
}
