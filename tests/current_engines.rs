//! The engines people run today, from the current test root (Debian unstable, made and cached
//! by `tests/roots/current.sh`; see `support::root`): Docker 28 with buildx, containerd 2,
//! podman 5, buildah and skopeo 1.22, each run by chroot in the test's private namespaces with
//! the helper's static executable. The machine's own Debian 12 engines are `daemons`' tests.
//!
//! Run them alone with `cargo test --test tests current_engines`. Each test prints the versions
//! it ran against.

// crane, oras, cosign, testcontainers and docker-py through the helper (the clients helper's).
mod clients;

use crate::support::daemons::{
    self, Dockerd, assert_fell_back_to_docker_hub, assert_served_by_the_mirror, mirror_world,
    podman_tried, registry_mirrors_in_info,
};
use crate::support::peers::{Peer, need};
use crate::support::registry::{self, Mark, Rig, tail};
use crate::support::root::*;
use crate::support::*;

/// `program args…` in the shared root session; it must succeed. Returns stdout.
fn inside_ok(program: &str, args: &[&str]) -> String {
    let out = run_command(root_session().command(program, args, false), b"");
    assert_eq!(
        out.code, 0,
        "{program} {args:?} in the current root: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// The first `N.N…` word of a version line (`Docker version 28.5.2+dfsg4, build …` → `28.5.2+dfsg4`).
fn version_in(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            w.split('.')
                .next()
                .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
                && w.contains('.')
        })
        .unwrap_or_default()
        .to_owned()
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Whether `version` (`1.22.0+ds1`) is at least `major.minor`.
fn at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version
        .split(['.', '+', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Since `mark`, the client asked the helper for the Rig's registry alone, the registry's realm
/// got one token the helper handed out, and the Google stand-in minted `minted` tokens (0: the
/// cached one was reused).
pub(crate) fn asked_once_with_the_helpers_token(rig: &Rig, mark: Mark, minted: usize) {
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    assert_eq!(
        rig.google_requests_since(mark),
        minted,
        "tokens minted (0: the cached token is reused)"
    );
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);
}

/// The peers of a test that drives a current engine or client against the Rig's registry.
pub(crate) fn need_root_and_registry() -> bool {
    need(&[
        Peer::CurrentRoot,
        Peer::StaticBinary,
        Peer::Registry,
        Peer::Root,
    ])
}

#[test]
fn the_current_root_holds_the_engines_of_today() {
    if !need(&[Peer::CurrentRoot, Peer::StaticBinary, Peer::Root]) {
        return;
    }
    // The oldest version each must be: what the issue asks for (Docker 28 with buildx,
    // containerd 2, podman 5, skopeo 1.22...).
    let checks: [(&str, &[&str], (u32, u32)); 10] = [
        ("dockerd", &["--version"], (28, 0)),
        ("docker", &["--version"], (28, 0)),
        ("docker", &["buildx", "version"], (0, 20)),
        ("containerd", &["--version"], (2, 0)),
        ("ctr", &["--version"], (2, 0)),
        ("podman", &["--version"], (5, 0)),
        ("buildah", &["--version"], (1, 40)),
        ("skopeo", &["--version"], (1, 22)),
        ("bazel", &["--version"], (7, 0)),
        (ROOT_HELPER, &["version"], (0, 1)),
    ];
    for (program, args, oldest) in checks {
        let said = inside_ok(program, args);
        let version = version_in(&said);
        eprintln!("current root: {program} {}: {version}", args.join(" "));
        assert!(at_least(&version, oldest), "{program} {version}: {said}");
    }
}

// ---------------------------------------------------------------------------------------------
// Through the helper, against the token-auth registry on the machine's loopback.

/// A rig whose clients run in the root session, with the static executable as the helper.
fn root_rig() -> Rig {
    let rig = Rig::start();
    rig.use_helper_at(ROOT_HELPER);
    rig
}

/// `program args…` in the shared session, in the rig's environment (plus `env`).
fn client(rig: &Rig, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = root_session().program(&rig.env, program, args);
    cmd.envs(env.iter().copied());
    run_command(cmd, b"")
}

fn client_ok(rig: &Rig, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = client(rig, program, args, env);
    assert_eq!(
        out.code,
        0,
        "{program} {args:?} failed\nstdout: {}\nstderr: {}\nhelper calls: {:?}\nregistry log:\n{}",
        out.stdout,
        out.stderr,
        rig.helper_calls(),
        tail(&rig.registry.log(), 8)
    );
    out
}

fn docker_ok(rig: &Rig, dockerd: &Dockerd, args: &[&str]) -> Output {
    let host = dockerd.host();
    let out = client(rig, "docker", args, &[("DOCKER_HOST", &host)]);
    assert_eq!(
        out.code,
        0,
        "docker {args:?} failed\nstdout: {}\nstderr: {}\nhelper calls: {:?}\nregistry log:\n{}\ndockerd log:\n{}",
        out.stdout,
        out.stderr,
        rig.helper_calls(),
        tail(&rig.registry.log(), 30),
        tail(&dockerd.log_text(), 30)
    );
    out
}

/// `docker version`'s client and server lines, for the log.
fn docker_versions(rig: &Rig, dockerd: &Dockerd) -> String {
    let out = docker_ok(
        rig,
        dockerd,
        &[
            "version",
            "--format",
            "client {{.Client.Version}} (API {{.Client.APIVersion}}), server {{.Server.Version}} (containerd {{range .Server.Components}}{{if eq .Name \"containerd\"}}{{.Version}}{{end}}{{end}})",
        ],
    );
    out.stdout.trim().to_owned()
}

#[test]
fn docker_28_pulls_and_pushes_a_private_image_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let dockerd = current_dockerd();
    let rig = root_rig();
    let versions = docker_versions(&rig, dockerd);
    eprintln!("docker: {versions}");
    assert!(
        versions.starts_with("client 28.") || major(&version_in(&versions)) > 28,
        "{versions}"
    );
    let image = rig.store_image("test/img:v1");
    let source = rig.image_ref("test/img:v1");

    let mark = rig.mark();
    docker_ok(&rig, dockerd, &["pull", &source]);
    asked_once_with_the_helpers_token(&rig, mark, 1);
    let id = docker_ok(
        &rig,
        dockerd,
        &["image", "inspect", "--format", "{{.Id}}", &source],
    );
    assert_eq!(
        id.stdout.trim(),
        image.config_digest,
        "the daemon holds the image"
    );

    let target = rig.image_ref("test/pushed-by-docker28:v2");
    docker_ok(&rig, dockerd, &["tag", &source, &target]);
    let mark = rig.mark();
    docker_ok(&rig, dockerd, &["push", &target]);
    asked_once_with_the_helpers_token(&rig, mark, 0);
    let pushed = rig.stored_manifest("test/pushed-by-docker28", "v2");
    assert_eq!(pushed["config"]["digest"], image.config_digest.as_str());
}

#[test]
fn docker_28_buildx_builds_from_a_private_image_and_pushes_the_result() {
    if !need_root_and_registry() {
        return;
    }
    let dockerd = current_dockerd();
    let rig = root_rig();
    let buildx = docker_ok(&rig, dockerd, &["buildx", "version"]);
    eprintln!("docker buildx: {}", buildx.stdout.trim());
    rig.store_busybox("test/busybox:v1");
    let context = rig.env.path("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo built-by-buildx > /marker && cat /marker\n",
            rig.image_ref("test/busybox:v1")
        ),
    )
    .unwrap();
    let target = rig.image_ref("test/built-by-buildx:1");

    let mark = rig.mark();
    // --network=none: the daemon runs with --bridge=none, which RUN cannot use.
    let out = docker_ok(
        &rig,
        dockerd,
        &[
            "buildx",
            "build",
            "--network=none",
            "--progress=plain",
            "--push",
            "-t",
            &target,
            &context.display().to_string(),
        ],
    );
    assert!(out.stderr.contains("built-by-buildx"), "{}", out.stderr);
    // The CLI answers BuildKit's session for the FROM pull and for the push alike; it asks the
    // helper only for the registry that asked for credentials.
    let gets = rig.hosts_got_since(mark);
    eprintln!(
        "buildx build --push: {} get(s)",
        rig.helper_calls_since(mark).len()
    );
    assert_eq!(gets, [rig.host.as_str()]);
    assert_eq!(rig.google_requests_since(mark), 1);
    // BuildKit's resolver (containerd's) first asks the realm without credentials; refused,
    // it gets them from the CLI, which asks the helper.
    let (tokens, anonymous) = rig.helper_tokens_and_anonymous_since(mark);
    eprintln!("buildx build --push: {anonymous} anonymous token request(s) first");
    assert_eq!(tokens.len(), 1);
    let pushed = rig.stored_manifest("test/built-by-buildx", "1");
    assert_eq!(
        pushed["layers"].as_array().map(Vec::len),
        Some(2),
        "the base layer and the RUN layer: {pushed}"
    );
}

/// An Artifact Registry name for the rig's registry: clients reach it only through a hosts
/// directory whose `hosts.toml` sends `AR_HOST` to the loopback registry over plain HTTP.
const AR_HOST: &str = "europe-docker.pkg.dev";

/// `DIR/europe-docker.pkg.dev/hosts.toml` pointing at the rig's registry; returns `DIR`.
fn hosts_dir_for(rig: &Rig, name: &str) -> std::path::PathBuf {
    let dir = rig.env.path(name);
    let host_dir = dir.join(AR_HOST);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"http://{0}\"\n\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n",
            rig.host
        ),
    )
    .unwrap();
    dir
}

/// The shared containerd 2 for the loopback tests, its CRI reading `config_path` = `hosts`.
fn containerd2(hosts: &std::path::Path) -> Containerd2 {
    let dir = daemons::fresh_dir("containerd2");
    let registry = format!(
        "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = \"{}\"\n",
        hosts.display()
    );
    let (containerd, proc) = start_containerd(root_session(), &dir, &registry, &[])
        .unwrap_or_else(|e| panic!("containerd 2 did not start: {e}"));
    eprintln!("containerd 2 ready in {:?}", containerd.started_in);
    daemons::keep_until_exit(proc);
    containerd
}

/// `ctr images VERB… --hosts-dir HOSTS --user oauth2accesstoken:TOKEN IMAGE`, the token from
/// `docker-credential-gcp print-access-token`, as Google documents ctr's use with gcloud.
fn ctr_with_token(
    rig: &Rig,
    address: &str,
    hosts: &std::path::Path,
    verb: &str,
    image: &str,
) -> Output {
    let script = format!(
        "exec ctr --address \"$1\" images {verb} --hosts-dir \"$2\" --user \"oauth2accesstoken:$(docker-credential-gcp print-access-token)\" \"$3\""
    );
    client_ok(
        rig,
        "sh",
        &[
            "-c",
            &script,
            "sh",
            address,
            &hosts.display().to_string(),
            image,
        ],
        &[],
    )
}

#[test]
fn containerd_2_ctr_pulls_and_pushes_through_a_hosts_directory_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let image = rig.store_image("test-project/repo/img:v1");
    let hosts = hosts_dir_for(&rig, "certs.d");
    let containerd = containerd2(&hosts);
    let address = containerd.address();
    let version = client_ok(&rig, "ctr", &["--address", &address, "version"], &[]);
    eprintln!("containerd: {}", version.stdout.replace('\n', " "));
    let server = version.stdout.split("Server:").nth(1).unwrap_or_default();
    assert!(major(&version_in(server)) >= 2, "{}", version.stdout);

    let source = format!("{AR_HOST}/test-project/repo/img:v1");
    let mark = rig.mark();
    ctr_with_token(&rig, &address, &hosts, "pull", &source);
    let calls = rig.helper_calls_since(mark);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].verb.as_str(), calls[0].code),
        ("print-access-token", 0)
    );
    // containerd's resolver asks the realm without credentials before it uses them (BuildKit,
    // which is built on it, does the same).
    let (tokens, anonymous) = rig.helper_tokens_and_anonymous_since(mark);
    eprintln!("ctr pull: {anonymous} anonymous token request(s) first");
    assert_eq!(tokens.len(), 1);
    let listed = client_ok(
        &rig,
        "ctr",
        &["--address", &address, "images", "list", "--quiet"],
        &[],
    );
    assert!(
        listed.stdout.lines().any(|l| l == source),
        "{}",
        listed.stdout
    );
    let check = client_ok(&rig, "ctr", &["--address", &address, "images", "list"], &[]);
    assert!(
        check.stdout.contains(&image.manifest_digest),
        "{}",
        check.stdout
    );

    let target = format!("{AR_HOST}/test-project/repo/pushed-by-ctr:v2");
    client_ok(
        &rig,
        "ctr",
        &["--address", &address, "images", "tag", &source, &target],
        &[],
    );
    let mark = rig.mark();
    ctr_with_token(&rig, &address, &hosts, "push", &target);
    assert_eq!(rig.helper_tokens_and_anonymous_since(mark).0.len(), 1);
    assert_eq!(
        rig.google_requests_since(mark),
        0,
        "the cached token is reused"
    );
    let pushed = rig.stored_manifest("test-project/repo/pushed-by-ctr", "v2");
    assert_eq!(pushed["config"]["digest"], image.config_digest.as_str());
}

#[test]
fn containerd_2_cri_pulls_through_config_path_with_the_kubelet_providers_credentials() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let image = rig.store_image("test-project/repo/cri:v1");
    let hosts = hosts_dir_for(&rig, "certs.d");
    let containerd = containerd2(&hosts);
    let source = format!("{AR_HOST}/test-project/repo/cri:v1");

    // What the kubelet does: ask the provider (the helper, as its credential provider
    // config runs it) for the image, then hand the credentials to the CRI.
    let mark = rig.mark();
    let request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": source,
    })
    .to_string();
    let cmd = root_session().program(&rig.env, ROOT_HELPER, &["kubelet-credential-provider"]);
    let provided = run_command(cmd, request.as_bytes());
    assert_eq!(provided.code, 0, "{}", provided.stderr);
    let response: serde_json::Value = serde_json::from_str(&provided.stdout).unwrap();
    let (matched, auth) = response["auth"]
        .as_object()
        .and_then(|m| m.iter().next())
        .unwrap_or_else(|| panic!("no auth: {response}"));
    eprintln!("kubelet-credential-provider: credentials for {matched}");
    let (user, password) = (
        auth["username"].as_str().unwrap(),
        auth["password"].as_str().unwrap(),
    );
    assert_eq!(user, "oauth2accesstoken");
    assert!(rig.issued.lock().unwrap().contains(password));

    let pulled = client(
        &rig,
        "python3",
        &[
            "-c",
            CRI_PULL_PY,
            &containerd.address(),
            &source,
            user,
            password,
        ],
        &[],
    );
    assert_eq!(
        pulled.code,
        0,
        "CRI PullImage: {}\ncontainerd log:\n{}",
        pulled.stderr,
        tail(&containerd.log_text(), 30)
    );
    assert_eq!(
        pulled.stdout.trim(),
        image.config_digest,
        "the CRI's image id"
    );
    assert!(
        rig.registry
            .log()
            .contains("/v2/test-project/repo/cri/manifests/v1?ns=europe-docker.pkg.dev"),
        "the CRI reached the registry as the hosts.toml of config_path says"
    );
    // The registry saw the provider's token (the Basic login to the realm), after containerd's
    // anonymous first try.
    let logins = rig.realm_logins_since(mark);
    let signed_in: Vec<_> = logins.iter().flatten().collect();
    eprintln!(
        "CRI pull: {} anonymous token request(s) first",
        logins.len() - signed_in.len()
    );
    assert!(!signed_in.is_empty());
    for login in signed_in {
        assert_eq!(login, &(user.to_owned(), password.to_owned()));
    }

    // Without credentials the registry refuses the CRI: the token mattered.
    rig.store_image("test-project/repo/cri-anonymous:v1");
    let anonymous = format!("{AR_HOST}/test-project/repo/cri-anonymous:v1");
    let refused = client(
        &rig,
        "python3",
        &["-c", CRI_PULL_PY, &containerd.address(), &anonymous, "", ""],
        &[],
    );
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("401") || refused.stderr.to_lowercase().contains("unauthorized"),
        "{}",
        refused.stderr
    );
}

/// Global options keeping podman's or buildah's storage and state in the rig's directories.
fn storage_args(rig: &Rig, tool: &str) -> Vec<String> {
    let p = |name: &str| {
        rig.env
            .path(&format!("{tool}-{name}"))
            .display()
            .to_string()
    };
    let mut args = vec![
        "--root".to_owned(),
        p("root"),
        "--runroot".to_owned(),
        p("runroot"),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    if tool == "podman" {
        args.extend([
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=none".to_owned(),
            "--tmpdir".to_owned(),
            p("tmp"),
        ]);
    }
    args
}

fn with_storage<'a>(global: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = global.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    all
}

#[test]
fn podman_5_pulls_and_pushes_a_private_image_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let version = client_ok(&rig, "podman", &["--version"], &[]);
    eprintln!("{}", version.stdout.trim());
    assert!(
        major(&version_in(&version.stdout)) >= 5,
        "{}",
        version.stdout
    );
    let image = rig.store_image("test/img:v1");
    let global = storage_args(&rig, "podman");
    let source = rig.image_ref("test/img:v1");

    let mark = rig.mark();
    client_ok(
        &rig,
        "podman",
        &with_storage(&global, &["pull", "--tls-verify=false", &source]),
        &[],
    );
    asked_once_with_the_helpers_token(&rig, mark, 1);

    let target = rig.image_ref("test/pushed-by-podman5:v2");
    let mark = rig.mark();
    client_ok(
        &rig,
        "podman",
        &with_storage(
            &global,
            &[
                "push",
                "--tls-verify=false",
                &source,
                &format!("docker://{target}"),
            ],
        ),
        &[],
    );
    asked_once_with_the_helpers_token(&rig, mark, 0);
    let pushed = rig.stored_manifest("test/pushed-by-podman5", "v2");
    let config_digest = pushed["config"]["digest"].as_str().unwrap().to_owned();
    // podman may re-encode the manifest; the image is the same: its config is ours.
    assert_eq!(config_digest, image.config_digest, "{pushed}");
}

#[test]
fn buildah_builds_from_a_private_image_and_pushes_the_result() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let version = client_ok(&rig, "buildah", &["--version"], &[]);
    eprintln!("{}", version.stdout.trim());
    rig.store_busybox("test/busybox:v1");
    let context = rig.env.path("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Containerfile"),
        format!(
            "FROM {}\nRUN echo built-by-buildah > /marker && cat /marker\n",
            rig.image_ref("test/busybox:v1")
        ),
    )
    .unwrap();
    let global = storage_args(&rig, "buildah");
    let tag = "localhost/built-by-buildah:1";

    let mark = rig.mark();
    // chroot isolation: no runtime set-up, no CNI.
    let out = client_ok(
        &rig,
        "buildah",
        &with_storage(
            &global,
            &[
                "build",
                "--isolation=chroot",
                // Raising RLIMIT_NPROC and RLIMIT_NOFILE (to buildah's default 1048576) needs
                // CAP_SYS_RESOURCE, which a sandboxed root may lack; lowering them does not.
                "--ulimit",
                "nproc=1024:1024",
                "--ulimit",
                "nofile=1024:1024",
                "--tls-verify=false",
                "-t",
                tag,
                &context.display().to_string(),
            ],
        ),
        &[],
    );
    assert!(out.stdout.contains("built-by-buildah"), "{}", out.stdout);
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);

    let target = rig.image_ref("test/built-by-buildah:1");
    let mark = rig.mark();
    client_ok(
        &rig,
        "buildah",
        &with_storage(
            &global,
            &[
                "push",
                "--tls-verify=false",
                tag,
                &format!("docker://{target}"),
            ],
        ),
        &[],
    );
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);
    let pushed = rig.stored_manifest("test/built-by-buildah", "1");
    assert_eq!(
        pushed["layers"].as_array().map(Vec::len),
        Some(2),
        "{pushed}"
    );
}

#[test]
fn skopeo_1_22_copies_and_inspects_with_the_helpers_token() {
    if !need_root_and_registry() {
        return;
    }
    let rig = root_rig();
    let version = client_ok(&rig, "skopeo", &["--version"], &[]);
    eprintln!("{}", version.stdout.trim());
    assert!(
        at_least(&version_in(&version.stdout), (1, 22)),
        "skopeo of the current root: {}",
        version.stdout
    );
    let layout = rig.env.path("layout");
    let image = registry::write_oci_image(&layout, "v1", "hello from skopeo 1.22\n");
    let target = rig.image_ref("test/pushed-by-skopeo:v1");

    let mark = rig.mark();
    client_ok(
        &rig,
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{target}"),
        ],
        &[],
    );
    assert_eq!(rig.hosts_got_since(mark), [rig.host.as_str()]);
    assert_eq!(rig.helper_tokens_used_since(mark).len(), 1);

    let mark = rig.mark();
    let out = client_ok(
        &rig,
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], image.manifest_digest.as_str());
    asked_once_with_the_helpers_token(&rig, mark, 0);
}
// ---------------------------------------------------------------------------------------------
// configure-mirror on the current engines, in the mirror world (see support::daemons).

/// A session of the current root in the mirror world's network, with its hosts file.
fn world_session() -> &'static RootSession {
    static SESSION: std::sync::OnceLock<Result<RootSession, String>> = std::sync::OnceLock::new();
    let world = mirror_world();
    let started = SESSION.get_or_init(|| {
        RootSession::start(
            Some(world.holder),
            Some(&world.dir.join("hosts")),
            Some(&world.dir.join("resolv.conf")),
        )
    });
    match started {
        Ok(s) => s,
        Err(e) => panic!("the mirror world's root session did not start: {e}"),
    }
}

/// The helper (the static executable) run in the world's session with `args`.
fn helper_in_world(env: &Env, args: &[&str]) -> Output {
    run_command(world_session().program(env, ROOT_HELPER, args), b"")
}

/// Writes `text` to `path` inside the world's session (as the distribution or an admin left
/// it before configure-mirror).
fn write_in_world(path: &str, text: &str) {
    let outside = world_session().outside(path);
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(outside, text).unwrap();
}

fn read_in_world(path: &str) -> String {
    std::fs::read_to_string(world_session().outside(path))
        .unwrap_or_else(|e| panic!("{path} in the world's root: {e}"))
}

#[test]
fn docker_28_pulls_docker_hub_images_from_mirror_gcr_io_after_configure_mirror() {
    if !need(&[
        Peer::CurrentRoot,
        Peer::StaticBinary,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
    ]) {
        return;
    }
    let world = mirror_world();
    let session = world_session();
    // The company's mirror was there first, in the file the system dockerd reads.
    write_in_world(
        "/etc/docker/daemon.json",
        "{\n  \"registry-mirrors\": [\"https://corp-mirror.test\"]\n}\n",
    );
    let env = Env::new();
    let out = helper_in_world(&env, &["configure-mirror"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written: serde_json::Value =
        serde_json::from_str(&read_in_world("/etc/docker/daemon.json")).unwrap();
    assert_eq!(
        written["registry-mirrors"],
        serde_json::json!(["https://corp-mirror.test", "https://mirror.gcr.io"])
    );

    // dockerd 28 with that file (its other paths are the test's).
    let dir = daemons::fresh_dir("world-dockerd28");
    std::fs::write(
        dir.join("daemon.json"),
        serde_json::to_string_pretty(&written).unwrap(),
    )
    .unwrap();
    let ca = world.ca_env();
    let (dockerd, proc) = start_dockerd(session, &dir, &[(ca.0, &ca.1)])
        .unwrap_or_else(|e| panic!("dockerd 28 did not start: {e}"));
    daemons::keep_until_exit(proc);
    let mut env = Env::new();
    env.set("DOCKER_HOST", dockerd.host());
    let docker = |args: &[&str]| {
        let out = run_command(session.program(&env, "docker", args), b"");
        assert_eq!(
            out.code,
            0,
            "docker {args:?}: {}\ndockerd log:\n{}",
            out.stderr,
            tail(&dockerd.log_text(), 30)
        );
        out
    };
    let version = docker(&["version", "--format", "{{.Server.Version}}"]);
    eprintln!("dockerd {}", version.stdout.trim());
    let info = docker(&["system", "info"]);
    assert_eq!(
        registry_mirrors_in_info(&info.stdout),
        ["https://corp-mirror.test/", "https://mirror.gcr.io/"],
        "{}",
        info.stdout
    );

    docker(&["pull", "dk28-hit"]);
    assert_served_by_the_mirror(world, "library/dk28-hit");
    docker(&["pull", "dk28-miss"]);
    assert_fell_back_to_docker_hub(world, "library/dk28-miss");
}

/// `PullImage` through containerd's CRI in the world, anonymously (Docker Hub images).
fn cri_pull_in_world(containerd: &Containerd2, image: &str) -> Output {
    let cmd = world_session().program(
        &Env::new(),
        "python3",
        &["-c", CRI_PULL_PY, &containerd.address(), image, "", ""],
    );
    let out = run_command(cmd, b"");
    assert_eq!(
        out.code,
        0,
        "CRI pull {image}: {}\ncontainerd log:\n{}",
        out.stderr,
        tail(&containerd.log_text(), 30)
    );
    out
}

/// Debian's containerd 2.1 ships a version 2 config.toml without `config_path`, and
/// containerd 2's own default is empty: its CRI (the kubelet's pulls) never reads the hosts
/// directory that configure-mirror writes, until configure-mirror also sets `config_path`
/// (in the version 2 table there, in the CRI images plugin's table of a version 3 file).
#[test]
fn containerd_2_pulls_docker_hub_images_from_mirror_gcr_io_after_configure_mirror() {
    if !need(&[
        Peer::CurrentRoot,
        Peer::StaticBinary,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
    ]) {
        return;
    }
    let world = mirror_world();
    let session = world_session();
    let ca = world.ca_env();
    let debian = read_in_world("/etc/containerd/config.toml");
    assert!(debian.starts_with("version = 2"), "{debian}");
    write_in_world(
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "server = \"https://registry-1.docker.io\"\n\n[host.\"https://corp-mirror.test\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    );

    // With the distribution's config, the CRI goes straight to Docker Hub.
    let (plain, proc) = start_containerd(
        session,
        &daemons::fresh_dir("world-containerd2-plain"),
        &debian,
        &[(ca.0, &ca.1)],
    )
    .unwrap_or_else(|e| panic!("containerd 2 did not start: {e}"));
    cri_pull_in_world(&plain, "docker.io/library/cri2-miss:latest");
    assert_eq!(world.corp.requests_for("library/cri2-miss"), []);
    assert_eq!(world.mirror.requests_for("library/cri2-miss"), []);
    assert!(world.hub.served_blobs_of("library/cri2-miss"));
    drop(proc);

    let env = Env::new();
    let out = helper_in_world(&env, &["configure-mirror", "--containerd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("restart containerd"), "{}", out.stderr);
    let written = read_in_world("/etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(
        written.find("corp-mirror.test") < written.find("mirror.gcr.io"),
        "after the existing mirror: {written}"
    );
    let config = read_in_world("/etc/containerd/config.toml");
    assert!(
        config.starts_with(&debian),
        "Debian's settings kept: {config}"
    );
    assert!(
        config.contains("config_path = \"/etc/containerd/certs.d\""),
        "{config}"
    );

    let (containerd, proc) = start_containerd(
        session,
        &daemons::fresh_dir("world-containerd2"),
        &config,
        &[(ca.0, &ca.1)],
    )
    .unwrap_or_else(|e| panic!("containerd 2 did not start: {e}"));
    daemons::keep_until_exit(proc);
    cri_pull_in_world(&containerd, "docker.io/library/cri2-hit:latest");
    assert_served_by_the_mirror(world, "library/cri2-hit");
    // containerd warns about the version 2 file Debian ships (it migrates it), and about
    // nothing configure-mirror added.
    let log = containerd.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=warning"))
        .filter(|l| !l.contains("Configuration migrated from version 2"))
        .filter(|l| l.contains("registry") || l.contains("config_path") || l.contains("deprecat"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");

    // A version 3 file (what `containerd config migrate` writes) gets it in the CRI images
    // plugin's table, and containerd 2 reads it there without a warning.
    write_in_world(
        "/etc/containerd/config.toml",
        "version = 3\n\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n",
    );
    let out = helper_in_world(&env, &["configure-mirror", "--containerd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v3 = read_in_world("/etc/containerd/config.toml");
    assert!(
        v3.contains("[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/etc/containerd/certs.d\""),
        "{v3}"
    );
    let (containerd3, proc) = start_containerd(
        session,
        &daemons::fresh_dir("world-containerd2-v3"),
        &v3,
        &[(ca.0, &ca.1)],
    )
    .unwrap_or_else(|e| panic!("containerd 2 did not start: {e}"));
    cri_pull_in_world(&containerd3, "docker.io/library/cri3-hit:latest");
    assert_served_by_the_mirror(world, "library/cri3-hit");
    let log = containerd3.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=warning"))
        .collect();
    assert!(
        warnings
            .iter()
            .all(|l| !l.contains("registry") && !l.contains("config")),
        "{warnings:#?}"
    );
    drop(proc);

    // ctr reads the hosts directory when told.
    let address = containerd.address();
    let ctr = |image: &str| {
        let mut cmd = session.program(
            &env,
            "ctr",
            &[
                "--address",
                &address,
                "images",
                "pull",
                "--hosts-dir",
                "/etc/containerd/certs.d",
                image,
            ],
        );
        cmd.env(ca.0, &ca.1);
        let out = run_command(cmd, b"");
        assert_eq!(
            out.code, 0,
            "ctr pull {image}: {}{}",
            out.stdout, out.stderr
        );
    };
    ctr("docker.io/library/ctd2-hit:latest");
    assert_served_by_the_mirror(world, "library/ctd2-hit");
    ctr("docker.io/library/ctd2-miss:latest");
    assert_fell_back_to_docker_hub(world, "library/ctd2-miss");
}

/// podman 5 reads drop-ins in /etc/containers/registries.conf.d: configure-mirror writes its
/// own there and leaves the distribution's registries.conf alone; `--remove` takes it away.
#[test]
fn podman_5_pulls_docker_hub_images_from_mirror_gcr_io_through_a_drop_in() {
    if !need(&[
        Peer::CurrentRoot,
        Peer::StaticBinary,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
    ]) {
        return;
    }
    let world = mirror_world();
    let session = world_session();
    let debian = read_in_world("/etc/containers/registries.conf");
    let env = Env::new();
    let out = helper_in_world(&env, &["configure-mirror", "--podman"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let drop_in = "/etc/containers/registries.conf.d/50-mirror.gcr.io.conf";
    let written = read_in_world(drop_in);
    assert!(
        written.contains("location = \"mirror.gcr.io\""),
        "{written}"
    );
    assert_eq!(read_in_world("/etc/containers/registries.conf"), debian);

    let storage = env.path("podman");
    let pull = |image: &str| {
        let args = vec![
            "--root".to_owned(),
            storage.join("root").display().to_string(),
            "--runroot".to_owned(),
            storage.join("runroot").display().to_string(),
            "--storage-driver=vfs".to_owned(),
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=none".to_owned(),
            "--tmpdir".to_owned(),
            storage.join("tmp").display().to_string(),
            "--log-level=debug".to_owned(),
            "pull".to_owned(),
            image.to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = session.program(&env, "podman", &args);
        let (k, v) = world.ca_env();
        cmd.env(k, v);
        let out = run_command(cmd, b"");
        assert_eq!(
            out.code,
            0,
            "podman pull {image}: {}",
            tail(&out.stderr, 30)
        );
        podman_tried(&out.stderr)
    };
    assert_eq!(
        pull("docker.io/library/pm5-hit:latest"),
        ["mirror.gcr.io/library/pm5-hit:latest"]
    );
    assert!(world.mirror.served_blobs_of("library/pm5-hit"));
    assert_eq!(world.hub.requests_for("library/pm5-hit"), []);
    assert_eq!(
        pull("docker.io/library/pm5-miss:latest"),
        [
            "mirror.gcr.io/library/pm5-miss:latest",
            "docker.io/library/pm5-miss:latest"
        ]
    );
    assert!(world.hub.served_blobs_of("library/pm5-miss"));

    let out = helper_in_world(&env, &["configure-mirror", "--podman", "--remove"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!world_session().outside(drop_in).exists(), "{}", out.stderr);
    assert_eq!(read_in_world("/etc/containers/registries.conf"), debian);
}
