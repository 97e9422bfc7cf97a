//! The clients people run today, from the current test root, through the helper's static
//! executable against the token-auth registry of `support::registry`: crane (the keychain of
//! go-containerregistry, which ko and cosign share), oras, cosign, and on Docker 28 docker-py
//! and testcontainers for Python and for Node. Each test prints the versions it ran against
//! and checks that the helper's token, as the Google stand-in issued it, is what the registry's
//! realm got.
//!
//! crane, oras and cosign are the root's Debian packages. docker-py and the testcontainers are
//! not Debian's: `tests/roots/clients.sh` installs them at pinned versions with the root's
//! Python and npm, into a cache beside the root (see [`client_packages`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use super::{
    asked_once_with_the_helpers_token, at_least, client, client_ok, docker_versions, major,
    need_root_and_registry, root_rig, version_in,
};
use crate::support::daemons::fresh_dir;
use crate::support::registry::{self, Rig};
use crate::support::root::*;
use crate::support::*;

/// The version of the root's Debian package `package` (crane and cosign print none of their
/// own: Debian builds them without it).
fn package_version(rig: &Rig, package: &str) -> String {
    let out = client_ok(
        rig,
        "dpkg-query",
        &["--show", "--showformat=${Version}", package],
        &[],
    );
    out.stdout.trim().to_owned()
}

/// `program args…` run in `dir` in the root session, in the rig's environment (plus `env`);
/// it must succeed.
fn client_in_ok(
    rig: &Rig,
    dir: &Path,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let dir = dir.display().to_string();
    let mut words = vec!["-c", "cd \"$0\" && exec \"$@\"", &dir, program];
    words.extend_from_slice(args);
    client_ok(rig, "sh", &words, env)
}

fn new_dir(rig: &Rig, name: &str) -> PathBuf {
    let dir = rig.env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// crane: go-containerregistry's keychain, which reads docker's config.json and runs the helper
// that credHelpers names.

#[test]
fn crane_digests_pulls_and_pushes_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let version = package_version(&rig, "crane");
    eprintln!("crane {version}");
    assert!(at_least(&version, (0, 20)), "{version}");
    let image = rig.store_image("test/img:v1");
    let source = rig.image_ref("test/img:v1");

    let mark = rig.mark();
    let digest = client_ok(&rig, "crane", &["digest", "--insecure", &source], &[]);
    assert_eq!(digest.stdout.trim(), image.manifest_digest);
    asked_once_with_the_helpers_token(&rig, mark, 1);

    let layout = rig.env.path("crane-layout");
    let mark = rig.mark();
    client_ok(
        &rig,
        "crane",
        &[
            "pull",
            "--insecure",
            "--format=oci",
            &source,
            &layout.display().to_string(),
        ],
        &[],
    );
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
    asked_once_with_the_helpers_token(&rig, mark, 0);

    let target = rig.image_ref("test/pushed-by-crane:v2");
    let mark = rig.mark();
    client_ok(
        &rig,
        "crane",
        &["push", "--insecure", &layout.display().to_string(), &target],
        &[],
    );
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);
    let pushed = rig.stored_manifest("test/pushed-by-crane", "v2");
    assert_eq!(pushed["config"]["digest"], image.config_digest.as_str());
}

#[test]
fn crane_asks_a_helper_keyed_by_repository_for_that_repository() {
    if !need_root_and_registry() {
        return;
    }
    // go-containerregistry's keychain looks the whole repository up in credHelpers before the
    // registry (docker looks up only the registry), and passes the key it found to the helper:
    // `HOST/test/img`, a form docker never sends.
    let rig = root_rig();
    let image = rig.store_image("test/img:v1");
    let repository = rig.image_ref("test/img");
    rig.set_cred_helpers(&[&repository]);

    let mark = rig.mark();
    let digest = client_ok(
        &rig,
        "crane",
        &["digest", "--insecure", &rig.image_ref("test/img:v1")],
        &[],
    );
    assert_eq!(digest.stdout.trim(), image.manifest_digest);
    assert_eq!(rig.hosts_got_since(mark), [repository.as_str()]);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// oras: oras-go's credential store reads docker's config.json and its credential helpers.

#[test]
fn oras_pushes_and_pulls_an_artifact_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let said = client_ok(&rig, "oras", &["version"], &[]);
    let version = version_in(&said.stdout);
    eprintln!("oras {version}");
    assert!(major(&version) >= 1, "{}", said.stdout);
    let work = new_dir(&rig, "oras-push");
    let note = format!("pushed by oras through {}\n", rig.host);
    std::fs::write(work.join("note.txt"), &note).unwrap();
    let reference = rig.image_ref("test/artifact:v1");

    let mark = rig.mark();
    client_in_ok(
        &rig,
        &work,
        "oras",
        &[
            "push",
            "--plain-http",
            "--artifact-type",
            "application/vnd.dcg.test.note",
            &reference,
            "note.txt:text/plain",
        ],
        &[],
    );
    asked_once_with_the_helpers_token(&rig, mark, 1);
    let stored = rig.stored_manifest("test/artifact", "v1");
    assert_eq!(
        stored["artifactType"], "application/vnd.dcg.test.note",
        "{stored}"
    );
    assert_eq!(
        stored["layers"][0]["annotations"]["org.opencontainers.image.title"], "note.txt",
        "{stored}"
    );

    let out = new_dir(&rig, "oras-pull");
    let mark = rig.mark();
    client_in_ok(
        &rig,
        &out,
        "oras",
        &["pull", "--plain-http", &reference],
        &[],
    );
    assert_eq!(std::fs::read_to_string(out.join("note.txt")).unwrap(), note);
    asked_once_with_the_helpers_token(&rig, mark, 0);
}

// ---------------------------------------------------------------------------------------------
// cosign: go-containerregistry's keychain again, signing with a key pair made here.

/// The password of the test's cosign key pairs (in the environment, as cosign reads it).
const COSIGN_PASSWORD: &str = "cosign-test-password";

/// `cosign generate-key-pair` in `dir`: `dir/cosign.key` and `dir/cosign.pub`.
fn cosign_key_pair(rig: &Rig, dir: &Path) {
    client_in_ok(
        rig,
        dir,
        "cosign",
        &["generate-key-pair"],
        &[("COSIGN_PASSWORD", COSIGN_PASSWORD)],
    );
    assert!(dir.join("cosign.key").is_file() && dir.join("cosign.pub").is_file());
}

/// What keeps cosign 3 offline: a signing config with no transparency log or timestamp
/// authority, and a trusted root of its own. Without either, cosign fetches Sigstore's from
/// their TUF repository (and `--tlog-upload=false` is refused alongside the TUF-provided
/// signing config that is cosign 3's default).
fn cosign_offline_files(rig: &Rig, dir: &Path) -> (String, String) {
    let mut paths = Vec::new();
    for (command, file) in [
        ("signing-config", "signing-config.json"),
        ("trusted-root", "trusted-root.json"),
    ] {
        let made = client_ok(rig, "cosign", &[command, "create"], &[]);
        let path = dir.join(file);
        std::fs::write(&path, made.stdout).unwrap();
        paths.push(path.display().to_string());
    }
    (paths[0].clone(), paths[1].clone())
}

/// cosign left Sigstore's public services alone.
fn assert_offline(out: &Output) {
    let said = out.stderr.to_lowercase();
    for service in ["tuf", "rekor", "fulcio", "sigstore.dev"] {
        assert!(
            !said.contains(service),
            "cosign went online: {}",
            out.stderr
        );
    }
}

#[test]
fn cosign_signs_and_verifies_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let version = package_version(&rig, "cosign");
    eprintln!("cosign {version}");
    assert!(major(&version) >= 3, "{version}");
    let keys = new_dir(&rig, "cosign");
    cosign_key_pair(&rig, &keys);
    let (signing_config, trusted_root) = cosign_offline_files(&rig, &keys);
    let image = rig.store_image("test/signed:v1");
    let reference = format!("{}@{}", rig.image_ref("test/signed"), image.manifest_digest);

    let mark = rig.mark();
    let signed = client_in_ok(
        &rig,
        &keys,
        "cosign",
        &[
            "sign",
            "--yes",
            "--key",
            "cosign.key",
            "--signing-config",
            &signing_config,
            "--trusted-root",
            &trusted_root,
            "--allow-http-registry",
            &reference,
        ],
        &[("COSIGN_PASSWORD", COSIGN_PASSWORD)],
    );
    assert_offline(&signed);
    asked_once_with_the_helpers_token(&rig, mark, 1);
    // The signature, a Sigstore bundle whose subject is the image, is in the registry: in the
    // index under the tag of the referrers API's fallback (distribution 2.8 has no referrers
    // API).
    let tag = image.manifest_digest.replace(':', "-");
    let referrers = rig.stored_manifest("test/signed", &tag);
    let bundle = referrers["manifests"]
        .as_array()
        .and_then(|m| m.first())
        .unwrap_or_else(|| panic!("no referrer: {referrers}"));
    let signature = rig.stored_manifest("test/signed", bundle["digest"].as_str().unwrap());
    assert_eq!(
        signature["subject"]["digest"],
        image.manifest_digest.as_str(),
        "{signature}"
    );
    let layer = signature["layers"][0]["mediaType"]
        .as_str()
        .unwrap_or_default();
    assert!(
        layer.starts_with("application/vnd.dev.sigstore.bundle"),
        "{signature}"
    );

    let verify = |key: &str| {
        client(
            &rig,
            "cosign",
            &[
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                "--trusted-root",
                &trusted_root,
                "--allow-http-registry",
                &reference,
            ],
            &[],
        )
    };
    let mark = rig.mark();
    let verified = verify(&keys.join("cosign.pub").display().to_string());
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    assert_offline(&verified);
    let claims: serde_json::Value = serde_json::from_str(verified.stdout.trim()).unwrap();
    assert_eq!(
        claims[0]["critical"]["image"]["docker-manifest-digest"],
        image.manifest_digest.as_str(),
        "{claims}"
    );
    asked_once_with_the_helpers_token(&rig, mark, 0);

    // Another key does not verify it: the signature was read and checked.
    let other = new_dir(&rig, "cosign-other");
    cosign_key_pair(&rig, &other);
    let refused = verify(&other.join("cosign.pub").display().to_string());
    assert_ne!(refused.code, 0, "{}", refused.stdout);
}

// ---------------------------------------------------------------------------------------------
// docker-py and testcontainers, installed at pinned versions, on the current Docker 28.

/// The pinned Python and Node packages of `tests/roots/clients.sh`, made once per root and
/// script (keyed by both) in the root's cache directory, which the shared session sees at the
/// same path.
struct ClientPackages {
    dir: PathBuf,
}

impl ClientPackages {
    /// The venv's Python (testcontainers and docker-py).
    fn python(&self) -> String {
        self.dir.join("venv/bin/python").display().to_string()
    }

    /// The folder holding Node's `node_modules` (testcontainers).
    fn node(&self) -> String {
        self.dir.join("node").display().to_string()
    }
}

fn client_packages() -> &'static ClientPackages {
    static PACKAGES: OnceLock<Result<ClientPackages, String>> = OnceLock::new();
    let made = PACKAGES.get_or_init(|| {
        let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roots/clients.sh");
        let script = std::fs::read_to_string(&script_path).unwrap();
        let root = current_root();
        let cache = root.parent().unwrap();
        let key = registry::sha256(format!("{}\n{script}", root.display()).as_bytes());
        let dir = cache.join(format!("clients-{}", &key["sha256:".len()..][..16]));
        let session = root_session();
        session.share(cache)?;
        // pip and npm trust what the machine's own clients trust (a network may need a CA the
        // root's bundle lacks); the copy is where the session sees it.
        let work = fresh_dir("client-packages");
        let ca = work.join("ca-certificates.crt");
        std::fs::copy("/etc/ssl/certs/ca-certificates.crt", &ca)
            .map_err(|e| format!("the machine's CA bundle: {e}"))?;
        let ca = ca.display().to_string();
        let home = work.display().to_string();
        let started = Instant::now();
        let mut cmd = session.command(
            "sh",
            &[
                "-c",
                &script,
                "sh",
                &cache.display().to_string(),
                &dir.display().to_string(),
            ],
            false,
        );
        cmd.env("HOME", &home)
            .env("PIP_CERT", &ca)
            .env("npm_config_cafile", &ca);
        // The machine's choice of package index, if it made one.
        for name in [
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "npm_config_registry",
            "https_proxy",
            "HTTPS_PROXY",
        ] {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        let out = run_command(cmd, b"");
        if out.code != 0 {
            return Err(format!(
                "{} failed ({}):\n{}{}",
                script_path.display(),
                out.code,
                out.stdout,
                registry::tail(&out.stderr, 40)
            ));
        }
        eprintln!(
            "client packages {} ready in {:?}{}",
            dir.display(),
            started.elapsed(),
            if out.stderr.is_empty() {
                String::new()
            } else {
                format!("\n{}", out.stderr.trim())
            }
        );
        Ok(ClientPackages { dir })
    });
    match made {
        Ok(p) => p,
        Err(e) => panic!("the client packages could not be installed: {e}"),
    }
}

/// docker-py: `docker.from_env()` (DOCKER_HOST, DOCKER_CONFIG's credHelpers), pull, and the
/// image id; prints its version and the daemon's first.
const DOCKER_PY_PULL: &str = r#"
import sys, docker
client = docker.from_env()
print("docker-py", docker.__version__, "on Docker", client.version()["Version"], file=sys.stderr)
repository, tag = sys.argv[1].rsplit(":", 1)
print(client.images.pull(repository, tag=tag).id)
"#;

/// testcontainers for Python: a container from the image, running until its output has been
/// read; prints the output.
const TESTCONTAINERS_PY: &str = r#"
import sys, time
from importlib.metadata import version
from testcontainers.core.container import DockerContainer
print("testcontainers (Python)", version("testcontainers"), file=sys.stderr)
image, marker = sys.argv[1:3]
with DockerContainer(image).with_command(["sh", "-c", "echo " + marker + "; sleep 60"]) as c:
    for _ in range(100):
        out, _ = c.get_logs()
        if marker.encode() in out:
            break
        time.sleep(0.1)
    print(out.decode().strip())
"#;

/// testcontainers for Node, the same, from the `node_modules` in `argv[1]`. testcontainers
/// unrefs its Docker socket, so while the script awaits the log stream nothing holds Node's
/// event loop and Node exits 0 having printed nothing (about two runs in three here, once in
/// CI): a watchdog timer holds the loop and bounds the wait.
const TESTCONTAINERS_JS: &str = r#"
const { createRequire } = require("node:module");
const path = require("node:path");
const [dir, image, marker] = process.argv.slice(1);
const load = createRequire(path.join(dir, "package.json"));
const { GenericContainer } = load("testcontainers");
console.error("testcontainers (Node)", load("testcontainers/package.json").version, "on Node", process.version);
const watchdog = setTimeout(() => {
  console.error("no output from the container within 60 s");
  process.exit(1);
}, 60000);
(async () => {
  const container = await new GenericContainer(image)
    .withCommand(["sh", "-c", `echo ${marker}; sleep 60`])
    .start();
  let text = "";
  for await (const chunk of await container.logs()) {
    text += chunk;
    if (text.includes(marker)) break;
  }
  console.log(text.trim());
  await container.stop();
  clearTimeout(watchdog);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
"#;

/// The environment of a client of the shared Docker 28: its socket, and no Ryuk (the reaper
/// container testcontainers pulls from Docker Hub, which the tests cannot reach; the tests
/// stop their containers themselves).
fn docker_env(host: &str) -> [(&str, &str); 2] {
    [
        ("DOCKER_HOST", host),
        ("TESTCONTAINERS_RYUK_DISABLED", "true"),
    ]
}

#[test]
fn docker_py_pulls_a_private_image_through_cred_helpers() {
    if !need_root_and_registry() {
        return;
    }
    let packages = client_packages();
    let dockerd = current_dockerd();
    let rig = root_rig();
    eprintln!("docker: {}", docker_versions(&rig, dockerd));
    let image = rig.store_image("test/img:v1");
    let host = dockerd.host();

    let mark = rig.mark();
    let out = client_ok(
        &rig,
        &packages.python(),
        &["-c", DOCKER_PY_PULL, &rig.image_ref("test/img:v1")],
        &docker_env(&host),
    );
    eprintln!("{}", out.stderr.trim());
    assert!(out.stderr.contains("docker-py 7."), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), image.config_digest, "the image pulled");
    asked_once_with_the_helpers_token(&rig, mark, 1);
}

#[test]
fn testcontainers_for_python_starts_a_container_from_a_private_image() {
    if !need_root_and_registry() {
        return;
    }
    let packages = client_packages();
    let dockerd = current_dockerd();
    let rig = root_rig();
    eprintln!("docker: {}", docker_versions(&rig, dockerd));
    rig.store_busybox("test/busybox:v1");
    let host = dockerd.host();
    let marker = "started-by-testcontainers-python";

    let mark = rig.mark();
    let out = client_ok(
        &rig,
        &packages.python(),
        &[
            "-c",
            TESTCONTAINERS_PY,
            &rig.image_ref("test/busybox:v1"),
            marker,
        ],
        &docker_env(&host),
    );
    eprintln!("{}", out.stderr.trim());
    assert!(
        out.stderr.contains("testcontainers (Python) 4."),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), marker, "the container ran");
    asked_once_with_the_helpers_token(&rig, mark, 1);
}

#[test]
fn testcontainers_for_node_starts_a_container_from_a_private_image() {
    if !need_root_and_registry() {
        return;
    }
    let packages = client_packages();
    let dockerd = current_dockerd();
    let rig = root_rig();
    eprintln!("docker: {}", docker_versions(&rig, dockerd));
    rig.store_busybox("test/busybox:v1");
    let host = dockerd.host();
    let marker = "started-by-testcontainers-node";

    let mark = rig.mark();
    let out = client_ok(
        &rig,
        "node",
        &[
            "-e",
            TESTCONTAINERS_JS,
            &packages.node(),
            &rig.image_ref("test/busybox:v1"),
            marker,
        ],
        &docker_env(&host),
    );
    eprintln!("{}", out.stderr.trim());
    assert!(
        out.stderr.contains("testcontainers (Node) "),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), marker, "the container ran");
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    // Node's testcontainers runs the helper with code of its own, which ends the address with
    // a newline (the wrapper records it as a space; Go's and docker-py's clients send none).
    let recorded = std::fs::read_to_string(&rig.calls).unwrap();
    assert!(
        recorded.contains(&format!("get\t{} \t0\t", rig.host)),
        "{recorded}"
    );
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);
}
