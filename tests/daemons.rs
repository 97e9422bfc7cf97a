//! The real daemons: Debian's dockerd 20.10, containerd 1.6 and podman 4.3, started by the
//! tests as root (see `support::daemons` for how they are kept off the machine's files and
//! network), with the helper as users configure it.
//!
//! - dockerd pulls and pushes a private image from a registry behind gcr-style token auth with
//!   the helper's token, refuses it without, and builds `FROM` it with the legacy builder (one
//!   `get` per credHelpers entry) and with BuildKit (a `get` only for the registry it pulls from).
//! - mirror.gcr.io end to end, in a network namespace where mirror.gcr.io, Docker Hub and a
//!   company mirror are loopback registries with TLS from a test CA: after `configure-mirror`,
//!   dockerd, containerd (`ctr --hosts-dir`) and podman try the company mirror, then
//!   mirror.gcr.io, which serves the pull; an image it lacks comes from Docker Hub.
//! - The defects found with the real daemons, each driven through the binary: a v1
//!   registries.conf, `[[registry]] # comment` headers, `--registry-mirror` given to dockerd by
//!   its service files or on a running dockerd's command line, doctor against a live daemon, and
//!   where mirror.gcr.io goes among existing mirrors.

use crate::support::peers::{Peer, need};
use std::path::Path;

use crate::support::daemons::*;
use crate::support::registry::*;
use crate::support::*;

const USER: &str = "oauth2accesstoken";

fn require_daemon_tools(daemon: &str) {
    for program in [
        daemon, "unshare", "nsenter", "setpriv", "openssl", "busybox",
    ] {
        require(program);
    }
    require_root(daemon);
}

/// The docker.io package's CLI, talking to `dockerd`, in the rig's environment.
fn docker(rig: &Rig, dockerd: &Dockerd, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = rig.env.program(DOCKER, args);
    cmd.env("DOCKER_HOST", dockerd.host())
        .envs(env.iter().copied());
    run_command(cmd, b"")
}

fn docker_ok(rig: &Rig, dockerd: &Dockerd, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = docker(rig, dockerd, args, env);
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

/// Every token request since `mark` presented an access token that the helper handed out and
/// the Google stand-in issued.
fn assert_logins_used_helper_tokens(rig: &Rig, mark: Mark) {
    let logins = rig.realm_logins_since(mark);
    assert!(!logins.is_empty(), "the daemon asked the realm for a token");
    let calls = rig.helper_calls();
    for login in logins {
        let (user, token) = login.expect("no anonymous token request");
        assert_eq!(user, USER);
        assert!(rig.issued.lock().unwrap().contains(&token));
        let secret = format!("\"Secret\":\"{token}\"");
        assert!(
            calls.iter().any(|c| c.output.contains(&secret)),
            "{token} came from the helper"
        );
    }
}

/// The helper calls since `mark`: each a successful `get`; returns their inputs, sorted.
fn successful_gets_since(rig: &Rig, mark: Mark) -> Vec<String> {
    let calls = rig.helper_calls_since(mark);
    for call in &calls {
        assert_eq!((call.verb.as_str(), call.code), ("get", 0), "{call:?}");
        assert!(call.output.contains("\"Username\":\"oauth2accesstoken\""));
    }
    let mut inputs: Vec<String> = calls.into_iter().map(|c| c.input).collect();
    inputs.sort();
    inputs
}

#[test]
fn dockerd_pulls_and_pushes_a_private_image_with_the_helpers_token() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    let rig = Rig::start();
    let image = rig.store_image("test/img:v1");
    let source = rig.image_ref("test/img:v1");

    let mark = rig.mark();
    docker_ok(&rig, dockerd, &["pull", &source], &[]);
    assert_eq!(successful_gets_since(&rig, mark), [rig.host.as_str()]);
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_logins_used_helper_tokens(&rig, mark);
    let id = docker_ok(
        &rig,
        dockerd,
        &["image", "inspect", "--format", "{{.Id}}", &source],
        &[],
    );
    assert_eq!(
        id.stdout.trim(),
        image.config_digest,
        "the daemon holds the image"
    );

    let target = rig.image_ref("test/pushed:v2");
    docker_ok(&rig, dockerd, &["tag", &source, &target], &[]);
    let mark = rig.mark();
    docker_ok(&rig, dockerd, &["push", &target], &[]);
    assert_eq!(successful_gets_since(&rig, mark), [rig.host.as_str()]);
    assert_eq!(
        rig.google_requests_since(mark),
        0,
        "the cached token is reused"
    );
    assert_logins_used_helper_tokens(&rig, mark);
    let pushed = rig.stored_manifest("test/pushed", "v2");
    assert_eq!(pushed["config"]["digest"], image.config_digest.as_str());
}

#[test]
fn dockerd_cannot_pull_the_private_image_anonymously() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    let rig = Rig::start();
    rig.store_image("test/img:v1");
    rig.set_cred_helpers(&[]);
    let source = rig.image_ref("test/img:v1");

    let mark = rig.mark();
    let out = docker(&rig, dockerd, &["pull", &source], &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let said = out.stderr.to_lowercase();
    assert!(
        said.contains("unauthorized") || said.contains("authentication required"),
        "{}",
        out.stderr
    );
    assert!(rig.helper_calls_since(mark).is_empty());
    assert_eq!(rig.google_requests_since(mark), 0);
    let logins = rig.realm_logins_since(mark);
    assert!(
        !logins.is_empty() && logins.iter().all(Option::is_none),
        "the daemon asked anonymously: {logins:?}"
    );
    let inspect = docker(&rig, dockerd, &["image", "inspect", &source], &[]);
    assert_ne!(inspect.code, 0, "nothing was pulled");
}

/// A rig whose docker config is what `configure-docker` writes (the Google registries) plus the
/// rig's registry, a busybox image there, and a build context `FROM` it. Returns the
/// credHelpers keys and the context directory.
fn build_set_up(rig: &Rig, marker: &str) -> (Vec<String>, std::path::PathBuf) {
    rig.store_busybox("test/busybox:v1");
    let out = rig.env.run(&["configure-docker"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rig.docker_config.join("config.json")).unwrap(),
    )
    .unwrap();
    let mut keys: Vec<String> = config["credHelpers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert!(keys.contains(&rig.host) && keys.contains(&"gcr.io".to_owned()) && keys.len() > 2);
    let context = rig.env.path("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo {marker} > /marker && cat /marker\n",
            rig.image_ref("test/busybox:v1")
        ),
    )
    .unwrap();
    (keys, context)
}

#[test]
fn a_legacy_build_asks_the_helper_once_per_cred_helpers_entry() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    let rig = Rig::start();
    let (keys, context) = build_set_up(&rig, "built-by-the-legacy-builder");
    let tag = format!("legacy-{}:1", rig.host.replace(['.', ':'], "-"));
    let build = ["build", "-t", &tag, &context.display().to_string()].map(str::to_owned);
    let build: Vec<&str> = build.iter().map(String::as_str).collect();

    let mark = rig.mark();
    let out = docker_ok(&rig, dockerd, &build, &[("DOCKER_BUILDKIT", "0")]);
    assert!(
        out.stdout.contains("built-by-the-legacy-builder"),
        "{}",
        out.stdout
    );
    let gets = successful_gets_since(&rig, mark);
    eprintln!(
        "legacy build: {} get(s) for {} credHelpers entries",
        gets.len(),
        keys.len()
    );
    assert_eq!(
        gets, keys,
        "one get per credHelpers entry, whatever the Dockerfile pulls"
    );
    assert_eq!(
        rig.google_requests_since(mark),
        1,
        "one token for all of them"
    );
    assert_logins_used_helper_tokens(&rig, mark);

    // Again, with the base image and every step cached: the same sweep.
    let mark = rig.mark();
    docker_ok(&rig, dockerd, &build, &[("DOCKER_BUILDKIT", "0")]);
    assert_eq!(successful_gets_since(&rig, mark), keys);
    assert_eq!(rig.google_requests_since(mark), 0);
}

#[test]
fn a_buildkit_build_asks_only_for_the_registry_it_pulls_from() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    let rig = Rig::start();
    let (keys, context) = build_set_up(&rig, "built-by-buildkit");
    let tag = format!("buildkit-{}:1", rig.host.replace(['.', ':'], "-"));

    let mark = rig.mark();
    // --network=none: the daemon runs with --bridge=none, which BuildKit's RUN cannot use.
    let out = docker_ok(
        &rig,
        dockerd,
        &[
            "build",
            "--network=none",
            "--progress=plain",
            "-t",
            &tag,
            &context.display().to_string(),
        ],
        &[("DOCKER_BUILDKIT", "1")],
    );
    assert!(out.stderr.contains("built-by-buildkit"), "{}", out.stderr);
    // BuildKit asks only when a registry answers 401, and only for that registry (here more
    // than once per build), never for the other credHelpers keys.
    let mut gets = successful_gets_since(&rig, mark);
    eprintln!("BuildKit build: {} get(s) for {}", gets.len(), rig.host);
    gets.dedup();
    assert_eq!(
        gets,
        [rig.host.as_str()],
        "only the FROM registry, not the other {} keys",
        keys.len() - 1
    );
    assert_eq!(rig.google_requests_since(mark), 1);
    assert_logins_used_helper_tokens(&rig, mark);
}

// ---------------------------------------------------------------------------------------------
// mirror.gcr.io end to end.

#[test]
fn dockerd_pulls_docker_hub_images_from_mirror_gcr_io_after_configure_mirror() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let world = mirror_world();
    let wd = world_dockerd();
    let daemon = &wd.dockerd;

    // configure-mirror put it after the mirror the company had, and kept the other key.
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&daemon.config).unwrap()).unwrap();
    assert_eq!(
        written["registry-mirrors"],
        serde_json::json!(["https://corp-mirror.test", "https://mirror.gcr.io"]),
        "before: {}",
        wd.before
    );
    assert!(written["deprecated-key-path"].is_string());
    assert!(
        wd.configured.stderr.contains("docker system info"),
        "{}",
        wd.configured.stderr
    );

    let env = {
        let mut env = Env::new();
        env.set("DOCKER_HOST", daemon.host());
        env
    };
    let run = |args: &[&str]| {
        let out = run_command(env.program(DOCKER, args), b"");
        assert_eq!(
            out.code,
            0,
            "docker {args:?}: {}\ndockerd log:\n{}",
            out.stderr,
            tail(&daemon.log_text(), 30)
        );
        out
    };
    // Google's check: `docker system info` lists it under Registry Mirrors.
    let info = run(&["system", "info"]);
    assert_eq!(
        registry_mirrors_in_info(&info.stdout),
        ["https://corp-mirror.test/", "https://mirror.gcr.io/"],
        "{}",
        info.stdout
    );

    run(&["pull", "dk-hit"]);
    assert_served_by_the_mirror(world, "library/dk-hit");

    run(&["pull", "dk-miss"]);
    assert_fell_back_to_docker_hub(world, "library/dk-miss");
    assert!(
        daemon
            .log_text()
            .contains("Attempting next endpoint for pull after error: manifest unknown"),
        "dockerd moved on from the mirrors"
    );
}

#[test]
fn containerd_pulls_through_the_hosts_toml_configure_mirror_writes() {
    if !need(&[
        Peer::Containerd,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
    ]) {
        return;
    }
    require_daemon_tools("containerd");
    require("ctr");
    let world = mirror_world();
    let containerd = world_containerd();
    let env = Env::new();
    let hosts_dir = env.path("certs.d");
    let hosts_toml = hosts_dir.join("docker.io/hosts.toml");
    std::fs::create_dir_all(hosts_toml.parent().unwrap()).unwrap();
    std::fs::write(
        &hosts_toml,
        "server = \"https://registry-1.docker.io\"\n\n[host.\"https://corp-mirror.test\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )
    .unwrap();
    let dir = hosts_dir.display().to_string();
    let out = env.run(
        &["configure-mirror", "--containerd", "--hosts-dir", &dir],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&hosts_toml).unwrap();
    let (corp, ours) = (
        written.find("corp-mirror.test").unwrap(),
        written.find("mirror.gcr.io").unwrap(),
    );
    assert!(corp < ours, "after the existing mirror: {written}");

    let pull = |image: &str| {
        let sock = containerd.socket.display().to_string();
        let mut cmd = world.command(
            "ctr",
            &[
                "--address",
                &sock,
                "images",
                "pull",
                "--snapshotter",
                "native",
                "--hosts-dir",
                &dir,
                image,
            ],
        );
        let (k, v) = world.ca_env();
        cmd.env(k, v);
        let out = output_of(cmd);
        assert_eq!(
            out.code, 0,
            "ctr pull {image}: {}{}",
            out.stdout, out.stderr
        );
        out
    };
    pull("docker.io/library/ctd-hit:latest");
    assert_served_by_the_mirror(world, "library/ctd-hit");
    let out = pull("docker.io/library/ctd-miss:latest");
    assert!(
        out.stderr
            .contains("trying next host - response was http.StatusNotFound"),
        "{}",
        out.stderr
    );
    assert_fell_back_to_docker_hub(world, "library/ctd-miss");
}

/// Runs root podman in the mirror world with `registries_conf`, keeping its storage in `home`.
fn podman_pull(world: &MirrorWorld, env: &Env, registries_conf: &Path, image: &str) -> Output {
    let storage = env.path("podman");
    let tmp = storage.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut args = podman_args(&storage);
    args.extend(["--log-level=debug".into(), "pull".into(), image.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = world.command("podman", &args);
    let (k, v) = world.ca_env();
    cmd.env(k, v)
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .env("TMPDIR", &tmp)
        .env("HOME", env.home.path());
    output_of(cmd)
}

#[test]
fn podman_pulls_through_the_registries_conf_configure_mirror_writes() {
    if !need(&[Peer::Podman, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("podman");
    let world = mirror_world();
    let env = Env::new();
    let conf = env.path("registries.conf");
    // The docker.io entry has a comment on its header line, and a mirror already.
    let theirs = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]] # Docker Hub, through the company mirror\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"corp-mirror.test\"\n";
    std::fs::write(&conf, theirs).unwrap();
    let c = conf.display().to_string();
    let out = env.run(
        &["configure-mirror", "--podman", "--registries-conf", &c],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        written.matches("[[registry]]").count(),
        1,
        "the commented header is the docker.io entry: {written}"
    );
    assert!(written.starts_with(theirs), "{written}");

    let out = podman_pull(world, &env, &conf, "docker.io/library/pm-hit:latest");
    assert_eq!(out.code, 0, "{}", tail(&out.stderr, 30));
    assert_eq!(
        podman_tried(&out.stderr),
        [
            "corp-mirror.test/library/pm-hit:latest",
            "mirror.gcr.io/library/pm-hit:latest"
        ]
    );
    assert_served_by_the_mirror(world, "library/pm-hit");

    let out = podman_pull(world, &env, &conf, "docker.io/library/pm-miss:latest");
    assert_eq!(out.code, 0, "{}", tail(&out.stderr, 30));
    assert_eq!(
        podman_tried(&out.stderr),
        [
            "corp-mirror.test/library/pm-miss:latest",
            "mirror.gcr.io/library/pm-miss:latest",
            "docker.io/library/pm-miss:latest"
        ]
    );
    assert_fell_back_to_docker_hub(world, "library/pm-miss");
}

/// Debian 12's registries.conf (package golang-github-containers-image 5.23.1) is all comments:
/// the docker.io entry goes at its end, podman uses it, and `--remove` gives the file back.
#[test]
fn podman_uses_the_mirror_added_to_debians_own_registries_conf() {
    if !need(&[Peer::Podman, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("podman");
    let world = mirror_world();
    let env = Env::new();
    let conf = env.path("registries.conf");
    let debian = std::fs::read_to_string(fixture("debian-registries.conf")).unwrap();
    std::fs::write(&conf, &debian).unwrap();
    let c = conf.display().to_string();
    let out = env.run(
        &["configure-mirror", "--podman", "--registries-conf", &c],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(
        written.starts_with(&debian),
        "after the file's comments, not before them: {written}"
    );

    let out = podman_pull(world, &env, &conf, "docker.io/library/pmdeb-hit:latest");
    assert_eq!(out.code, 0, "{}", tail(&out.stderr, 30));
    assert_eq!(
        podman_tried(&out.stderr),
        ["mirror.gcr.io/library/pmdeb-hit:latest"]
    );
    assert!(world.mirror.served_blobs_of("library/pmdeb-hit"));
    assert_eq!(world.hub.requests_for("library/pmdeb-hit"), []);

    let out = env.run(
        &[
            "configure-mirror",
            "--podman",
            "--registries-conf",
            &c,
            "--remove",
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), debian);
}

#[test]
fn a_v1_registries_conf_is_refused_and_podman_still_reads_it() {
    if !need(&[Peer::Podman, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("podman");
    let world = mirror_world();
    let env = Env::new();
    let conf = env.path("registries.conf");
    let v1 = "[registries.search]\nregistries = ['docker.io']\n\n[registries.insecure]\nregistries = []\n";
    std::fs::write(&conf, v1).unwrap();
    let out = env.run(
        &[
            "configure-mirror",
            "--podman",
            "--registries-conf",
            &conf.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for needle in [
        "nothing was changed",
        "v1 format",
        "unqualified-search-registries",
        "containers-registries.conf(5)",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), v1);

    // podman still accepts the file (a v1 file with a v2 table added is refused: "mixing
    // sysregistry v1/v2 is not supported").
    let out = podman_pull(world, &env, &conf, "docker.io/library/pm-v1:latest");
    assert_eq!(out.code, 0, "{}", tail(&out.stderr, 30));
    assert!(world.hub.served_blobs_of("library/pm-v1"));
    assert_eq!(world.mirror.requests_for("library/pm-v1"), []);
}

#[test]
fn doctor_agrees_with_the_running_daemon_about_the_mirror() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let wd = world_dockerd();
    let mut env = Env::new();
    env.set("DOCKER_HOST", wd.dockerd.host());
    let doctor = |env: &Env, daemon_json: &Path| {
        env.run(
            &[
                "doctor",
                "--daemon-json",
                &daemon_json.display().to_string(),
            ],
            b"",
        )
        .stdout
    };

    let out = doctor(&env, &wd.dockerd.config);
    for needle in [
        format!(
            "✓ {} lists https://mirror.gcr.io",
            wd.dockerd.config.display()
        ),
        "✓ the Docker daemon uses the mirror (docker system info)".to_owned(),
    ] {
        assert!(out.contains(&needle), "{needle}: {out}");
    }
    assert!(!out.contains("not set up"), "{out}");

    // A file the daemon does not read: doctor says so instead of "not set up".
    let other = env.path("daemon.json");
    std::fs::write(&other, "{}").unwrap();
    let out = doctor(&env, &other);
    let needle = format!(
        "- {} does not list https://mirror.gcr.io, but the running daemon uses it",
        other.display()
    );
    assert!(out.contains(&needle), "{out}");
    assert!(
        !out.contains("not set up") && !out.contains("does not use the mirror"),
        "{out}"
    );

    // A daemon without the mirror.
    let plain = dockerd();
    env.set("DOCKER_HOST", plain.host());
    let out = doctor(&env, &plain.config);
    for needle in [
        "is not set up as a registry mirror in",
        "- the running Docker daemon does not use the mirror",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// --registry-mirror on dockerd's command line.

/// Runs the helper with `args` in a mount namespace where `/etc/default` and `/etc/docker` are
/// the test's directories (and `/etc/systemd`, if given), as the system dockerd's set-up.
fn run_with_etc(env: &Env, etc: &[(&Path, &str)], args: &[&str]) -> Output {
    let mut script = String::from("set -e\n");
    for (i, (_, target)) in etc.iter().enumerate() {
        script.push_str(&format!("mount -n --bind \"${}\" {target}\n", i + 1));
    }
    script.push_str(&format!("shift {}\nexec \"$@\"\n", etc.len()));
    let mut all: Vec<String> = ["--mount", "--propagation", "private", "--", "sh", "-c"]
        .map(str::to_owned)
        .to_vec();
    all.push(script);
    all.push("sh".into());
    all.extend(etc.iter().map(|(dir, _)| dir.display().to_string()));
    all.push(BIN.into());
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run_command(env.program("unshare", &all), b"")
}

#[test]
fn configure_mirror_leaves_daemon_json_alone_when_dockerds_service_passes_registry_mirror() {
    if !need(&[Peer::Namespaces, Peer::Root]) {
        return;
    }
    require_root("a private mount namespace");
    require("unshare");
    for dir in ["/etc/default", "/etc/docker"] {
        assert!(Path::new(dir).is_dir(), "{dir} exists (package docker.io)");
    }
    let env = Env::new();
    let etc_default = env.path("etc-default");
    let etc_docker = env.path("etc-docker");
    std::fs::create_dir_all(&etc_default).unwrap();
    std::fs::create_dir_all(&etc_docker).unwrap();
    let daemon_json = etc_docker.join("daemon.json");
    let original = "{\n\t\"log-level\": \"warn\"\n}\n";
    std::fs::write(&daemon_json, original).unwrap();
    let etc = [
        (etc_default.as_path(), "/etc/default"),
        (etc_docker.as_path(), "/etc/docker"),
    ];

    // Google's third method: DOCKER_OPTS in /etc/default/docker.
    let opts = "DOCKER_OPTS=\"--registry-mirror=https://corp-mirror.test\"";
    std::fs::write(
        etc_default.join("docker"),
        format!("# Docker Upstart and SysVinit configuration file\n{opts}\n"),
    )
    .unwrap();
    let out = run_with_etc(&env, &etc, &["configure-mirror"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for needle in [
        "/etc/default/docker",
        opts,
        "refuses to start",
        "--registry-mirror=https://mirror.gcr.io",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert_eq!(std::fs::read_to_string(&daemon_json).unwrap(), original);

    // A file the system dockerd does not read may get the mirror.
    let elsewhere = env.path("other-daemon.json");
    let out = run_with_etc(
        &env,
        &etc,
        &[
            "configure-mirror",
            "--daemon-json",
            &elsewhere.display().to_string(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A systemd drop-in the same way.
    if Path::new("/etc/systemd").is_dir() {
        std::fs::write(
            etc_default.join("docker"),
            "DOCKER_OPTS=\"--dns 127.0.0.1\"\n",
        )
        .unwrap();
        let etc_systemd = env.path("etc-systemd");
        let drop_ins = etc_systemd.join("system/docker.service.d");
        std::fs::create_dir_all(&drop_ins).unwrap();
        std::fs::write(
            drop_ins.join("mirror.conf"),
            "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// --registry-mirror https://corp-mirror.test\n",
        )
        .unwrap();
        let mut with_systemd = etc.to_vec();
        with_systemd.push((etc_systemd.as_path(), "/etc/systemd"));
        let out = run_with_etc(&env, &with_systemd, &["configure-mirror"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains("/etc/systemd/system/docker.service.d/mirror.conf"),
            "{}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(&daemon_json).unwrap(), original);
    }

    // Without the flag anywhere, the mirror is added.
    std::fs::write(
        etc_default.join("docker"),
        "DOCKER_OPTS=\"--dns 127.0.0.1\"\n",
    )
    .unwrap();
    let out = run_with_etc(&env, &etc, &["configure-mirror"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        std::fs::read_to_string(&daemon_json)
            .unwrap()
            .contains("https://mirror.gcr.io")
    );
}

#[test]
fn configure_mirror_warns_about_a_running_dockerd_started_with_registry_mirror() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dir = fresh_dir("flag-dockerd");
    let flag = ["--registry-mirror", "https://corp-mirror.test"];
    let (dockerd, mut proc) = Dockerd::start(&dir, Place::Private, &flag, &[]).unwrap();
    let env = Env::new();
    let config = dockerd.config.display().to_string();

    let out = env.run(&["configure-mirror", "--daemon-json", &config], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "warning: the running dockerd (pid {}) was started with --registry-mirror",
            dockerd.pid
        )),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(&dockerd.config)
            .unwrap()
            .contains("https://mirror.gcr.io")
    );

    // Another file: that dockerd does not read it, no warning.
    let other = env.path("daemon.json");
    let out = env.run(
        &[
            "configure-mirror",
            "--daemon-json",
            &other.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // The warning is true: dockerd started the same way now refuses to start.
    let again = fresh_dir("flag-dockerd-again");
    std::fs::copy(&dockerd.config, again.join("daemon.json")).unwrap();
    let refused = Dockerd::start(&again, Place::Private, &flag, &[]);
    let Err(log) = refused else {
        panic!("dockerd started with the flag and the file");
    };
    assert!(
        log.contains("the following directives are specified both as a flag and in the configuration file: registry-mirrors"),
        "{log}"
    );
    assert!(
        proc.stop().is_some_and(|s| s.success()),
        "stopped by SIGTERM"
    );
}

/// Numbers in daemon.json are dockerd's to read, with Go's rules: `-0` is an int, `-0.0` is not
/// (dockerd refuses to start with it). configure-mirror writes every number as it was.
#[test]
fn dockerd_starts_after_configure_mirror_on_a_daemon_json_with_unusual_numbers() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dir = fresh_dir("numbers-dockerd");
    let config = dir.join("daemon.json");
    let original = format!(
        "{{\"deprecated-key-path\": {}, \"shutdown-timeout\": -0, \"max-concurrent-downloads\": 3}}",
        serde_json::Value::String(dir.join("key.json").display().to_string())
    );
    std::fs::write(&config, &original).unwrap();
    let (_, mut proc) =
        Dockerd::start(&dir, Place::Private, &[], &[]).expect("dockerd reads the file as written");
    assert!(proc.stop().is_some_and(|s| s.success()));

    let env = Env::new();
    let out = env.run(
        &[
            "configure-mirror",
            "--daemon-json",
            &config.display().to_string(),
        ],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (dockerd, mut proc) = Dockerd::start(&dir, Place::Private, &[], &[])
        .unwrap_or_else(|log| panic!("dockerd refused the file configure-mirror wrote: {log}"));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("\"shutdown-timeout\": -0,") && written.contains("https://mirror.gcr.io"),
        "{written}"
    );
    let info = run_command(
        {
            let mut cmd = env.program(
                DOCKER,
                &["info", "--format", "{{json .RegistryConfig.Mirrors}}"],
            );
            cmd.env("DOCKER_HOST", dockerd.host());
            cmd
        },
        b"",
    );
    assert!(
        info.stdout.contains("https://mirror.gcr.io/"),
        "{} {}",
        info.stdout,
        info.stderr
    );
    assert!(proc.stop().is_some_and(|s| s.success()));
}

/// The world's registries are out of the machine's reach: a connection to the machine's
/// `[::1]:443` (if anything listens there at all) never gets to the world's mirror, which would
/// log a TLS handshake error for it.
#[test]
fn the_mirror_world_is_out_of_the_machines_reach() {
    if !need(&[Peer::Dockerd, Peer::Namespaces, Peer::Registry, Peer::Root]) {
        return;
    }
    require_daemon_tools("dockerd");
    let world = mirror_world();
    let handshakes = || world.mirror.log().matches("TLS handshake error").count();
    let before = handshakes();
    if let Ok(conn) = std::net::TcpStream::connect_timeout(
        &"[::1]:443".parse().unwrap(),
        std::time::Duration::from_secs(1),
    ) {
        drop(conn);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(handshakes(), before);
}

/// `docker login HOST` with no user name, against a real daemon (which is what checks the
/// credentials): docker asks the helper (`get`), receives a minted token and hands it back
/// (`store`). The helper keeps nothing, so after a token rotation `get` mints again and pulls
/// keep working.
#[test]
fn docker_login_with_no_user_name_stores_nothing_and_pulls_work_after_a_rotation() {
    if !need(&[
        Peer::Dockerd,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
        Peer::Keyring,
    ]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    // Tokens live 200 s: never "fresh" (5-minute margin), so every get mints: a rotation.
    let mut rig = Rig::start_with_token_lifetime(200);
    let ss = SecretService::start(rig.env.home.path());
    rig.env.set("DBUS_SESSION_BUS_ADDRESS", ss.address.clone());
    rig.store_image("test/img:v1");

    let mark = rig.mark();
    let out = docker_ok(&rig, dockerd, &["login", &rig.host], &[]);
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    let calls: Vec<_> = rig.helper_calls_since(mark);
    let verbs: Vec<&str> = calls.iter().map(|c| c.verb.as_str()).collect();
    assert_eq!(verbs, ["get", "store"], "the verbs docker sends: {calls:?}");
    let issued: serde_json::Value = serde_json::from_str(&calls[0].output).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&calls[1].input).unwrap();
    assert_eq!(
        stored["Secret"], issued["Secret"],
        "docker hands our own token back"
    );
    assert_eq!(calls[1].code, 0, "store succeeds, as docker expects");
    assert_eq!(
        rig.env.run(&["list", "--details"], b"").stdout,
        "no credentials stored with `docker login`\n",
        "nothing was stored"
    );

    // The token rotates: a fresh one is minted and the pull uses it.
    let first = issued["Secret"].as_str().unwrap().to_owned();
    let mark = rig.mark();
    docker_ok(&rig, dockerd, &["pull", &rig.image_ref("test/img:v1")], &[]);
    assert_eq!(
        rig.google_requests_since(mark),
        1,
        "minted again, not the echo of the login"
    );
    let gets: Vec<_> = rig
        .helper_calls_since(mark)
        .into_iter()
        .filter(|c| c.verb == "get" && c.code == 0)
        .collect();
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|c| !c.output.contains(&first)), "{gets:?}");
}

// ---------------------------------------------------------------------------------------------
// Never break a pull the helper cannot help: no credentials, expired ones, a hanging endpoint.

/// The helper's environment for each way of having no usable token, as extra variables for
/// the docker CLI (which passes its environment to the helper). `dir` holds their files.
fn without_a_token(dir: &Path, case: &str, endpoint: &str) -> Vec<(String, String)> {
    let var = |k: &str, v: String| (k.to_owned(), v);
    match case {
        // gcloud installed (the real one), never logged in.
        "gcloud-never-logged-in" => {
            let config = dir.join("gcloud-config");
            std::fs::create_dir_all(&config).unwrap();
            vec![
                var("DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES", "gcloud".into()),
                var("CLOUDSDK_CONFIG", config.display().to_string()),
            ]
        }
        // `gcloud auth application-default login` long ago: the refresh token is revoked.
        "expired-user-credentials" => {
            let path = dir.join("user.json");
            std::fs::write(&path, authorized_user_json(Some(endpoint))).unwrap();
            vec![var(
                "GOOGLE_APPLICATION_CREDENTIALS",
                path.display().to_string(),
            )]
        }
        // A token endpoint that never answers, with on_error=anonymous.
        "hanging-endpoint-anonymous" => {
            let path = dir.join("sa.json");
            std::fs::write(&path, service_account_json(endpoint)).unwrap();
            vec![
                var("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
                var("DOCKER_CREDENTIAL_GCP_TIMEOUT", "2".into()),
                var("DOCKER_CREDENTIAL_GCP_ON_ERROR", "anonymous".into()),
            ]
        }
        other => panic!("{other}"),
    }
}

#[test]
fn dockerd_pulls_public_images_through_the_helper_without_usable_credentials() {
    if !need(&[
        Peer::Dockerd,
        Peer::Namespaces,
        Peer::Registry,
        Peer::Root,
        Peer::Gcloud,
    ]) {
        return;
    }
    require_daemon_tools("dockerd");
    let dockerd = dockerd();
    let rig = Rig::start();
    let public = format!("{PUBLIC_PREFIX}img:v1");
    let image = rig.store_image(&public);
    rig.store_image("test/img:v1");
    let revoked = Server::start(|_| {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        )
    });
    let hanging = Hanging::start();
    for (case, endpoint) in [
        ("gcloud-never-logged-in", String::new()),
        ("expired-user-credentials", revoked.url("/token")),
        ("hanging-endpoint-anonymous", hanging.url()),
    ] {
        let dir = rig.env.path(case);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("helper.log");
        let mut vars = without_a_token(&dir, case, &endpoint);
        vars.push((
            "DOCKER_CREDENTIAL_GCP_LOG_FILE".to_owned(),
            log.display().to_string(),
        ));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

        // The public image pulls, anonymously, after the helper answered "not found".
        let source = rig.image_ref(&public);
        let mark = rig.mark();
        docker_ok(&rig, dockerd, &["pull", &source], &vars);
        let calls = rig.helper_calls_since(mark);
        assert!(
            calls
                .iter()
                .any(|c| c.verb == "get" && c.code == 1 && c.output == NOT_FOUND.trim_end()),
            "{case}: {calls:?}"
        );
        assert!(
            rig.realm_logins_since(mark).iter().all(Option::is_none),
            "{case}: the daemon pulled anonymously"
        );
        let id = docker_ok(
            &rig,
            dockerd,
            &["image", "inspect", "--format", "{{.Id}}", &source],
            &[],
        );
        assert_eq!(id.stdout.trim(), image.config_digest, "{case}");
        docker_ok(&rig, dockerd, &["rmi", &source], &[]);

        // A private image gets the registry's own refusal, and the helper's hint is in its log.
        let private = rig.image_ref("test/img:v1");
        let out = docker(&rig, dockerd, &["pull", &private], &vars);
        assert_ne!(out.code, 0, "{case}: {}", out.stdout);
        let said = out.stderr.to_lowercase();
        assert!(
            said.contains("unauthorized") || said.contains("authentication required"),
            "{case}: {}",
            out.stderr
        );
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let hint = match case {
            "gcloud-never-logged-in" => "gcloud auth login",
            "expired-user-credentials" => "gcloud auth application-default login",
            _ => "on_error is anonymous",
        };
        assert!(logged.contains(hint), "{case}: {logged}");
    }
    assert_eq!(
        hanging.connections(),
        1,
        "the hanging endpoint was asked once"
    );
}
