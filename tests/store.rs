//! `store`, `erase` and `list` against a real headless Secret Service (gnome-keyring on a
//! private D-Bus), and the docker CLI's `login` / `logout` driving them.

use crate::support::peers::{Peer, need};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;

fn keyring_env() -> (Env, SecretService) {
    let mut env = Env::new();
    let ss = SecretService::start(env.home.path());
    env.set("DBUS_SESSION_BUS_ADDRESS", ss.address.clone());
    (env, ss)
}

fn store_json(server: &str, user: &str, secret: &str) -> Vec<u8> {
    serde_json::json!({"ServerURL": server, "Username": user, "Secret": secret})
        .to_string()
        .into_bytes()
}

#[test]
fn store_get_list_erase_round_trip_through_the_secret_service() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, _ss) = keyring_env();
    let out = env.run(
        &["store"],
        &store_json("https://registry.example.com:5000", "alice", "s3cret"),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);

    let (url, user, secret) = creds(&env.get("registry.example.com:5000"));
    assert_eq!(
        (url.as_str(), user.as_str(), secret.as_str()),
        ("registry.example.com:5000", "alice", "s3cret")
    );

    let listed = env.run(&["list"], b"unused");
    assert_eq!(listed.code, 0);
    assert_eq!(listed.stdout, "{\"registry.example.com:5000\":\"alice\"}\n");

    let erased = env.run(&["erase"], b"https://registry.example.com:5000/");
    assert_eq!(
        (erased.code, erased.stdout.as_str()),
        (0, ""),
        "{}",
        erased.stderr
    );
    assert_eq!(env.get("registry.example.com:5000").stdout, NOT_FOUND);
    assert_eq!(env.run(&["list"], b"unused").stdout, "{}\n");
    // Erasing again is not an error (docker logout may call erase twice).
    assert_eq!(env.run(&["erase"], b"registry.example.com:5000").code, 0);
}

#[test]
fn stored_credentials_win_over_minted_tokens_until_erased() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (mut env, _ss) = keyring_env();
    let server = token_endpoint(3600);
    env.use_service_account(&server.url("/token"));
    let key = service_account_json("https://oauth2.googleapis.com/token");
    let stored = env.run(&["store"], &store_json("gcr.io", "_json_key", &key));
    assert_eq!(stored.code, 0, "{} {}", stored.stdout, stored.stderr);

    let (_, user, secret) = creds(&env.get("gcr.io"));
    assert_eq!(
        (user.as_str(), secret.as_str()),
        ("_json_key", key.as_str())
    );
    assert_eq!(
        server.count(),
        0,
        "no token is minted for a host with stored credentials"
    );
    // Other Google hosts still get minted tokens.
    assert_eq!(creds(&env.get("us.gcr.io")).1, "oauth2accesstoken");

    assert_eq!(env.run(&["erase"], b"gcr.io").code, 0);
    assert_eq!(creds(&env.get("gcr.io")).1, "oauth2accesstoken");
}

#[test]
fn the_index_file_holds_no_secret_and_is_private() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, _ss) = keyring_env();
    let stored = env.run(&["store"], &store_json("ghcr.io", "bob", "ghp_topsecret"));
    assert_eq!(stored.code, 0, "{} {}", stored.stdout, stored.stderr);
    let dir = env.path(DATA_DIR);
    let index = dir.join("stored-hosts.json");
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(
        text.contains("ghcr.io") && !text.contains("ghp_topsecret"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&index).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn identity_tokens_are_stored_and_returned_as_given() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, _ss) = keyring_env();
    let out = env.run(&["store"], &store_json("quay.io", "<token>", "refresh-abc"));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let (_, user, secret) = creds(&env.get("quay.io"));
    assert_eq!((user.as_str(), secret.as_str()), ("<token>", "refresh-abc"));
}

#[test]
fn store_without_a_secret_service_fails_fast_and_keeps_nothing() {
    let env = Env::new(); // no DBUS_SESSION_BUS_ADDRESS, no DISPLAY
    let started = std::time::Instant::now();
    let out = env.run(&["store"], &store_json("gcr.io", "_json_key", "{}"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("OS keyring is not available"),
        "{}",
        out.stdout
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!env.path(&format!("{DATA_DIR}/stored-hosts.json")).exists());
    assert_eq!(env.run(&["list"], b"unused").stdout, "{}\n");
}

/// A registry stand-in for `docker login`: /v2/ demands Basic auth and accepts one user.
fn login_registry() -> Server {
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("carol:hunter2")
    );
    Server::start(move |req| {
        if req.header("authorization") == Some(good.as_str()) {
            Reply::json(200, serde_json::json!({}))
        } else {
            Reply::json(
                401,
                serde_json::json!({"errors": [{"code": "UNAUTHORIZED"}]}),
            )
            .with_header("WWW-Authenticate", "Basic realm=\"test\"")
        }
    })
}

#[test]
fn docker_login_and_logout_store_and_erase_through_the_helper() {
    if !need(&[Peer::Docker, Peer::Keyring]) {
        return;
    }
    require("docker");
    let (mut env, _ss) = keyring_env();
    let registry = login_registry();
    let host = registry.host();
    let docker_config = env.path("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "gcp"}}).to_string(),
    )
    .unwrap();
    env.set("DOCKER_CONFIG", docker_config.display().to_string());
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .display()
        .to_string();
    env.set("PATH", format!("{bin_dir}:{SYSTEM_PATH}"));

    let out = run_command(
        docker(&env, &["login", "-u", "carol", "--password-stdin", &host]),
        b"hunter2\n",
    );
    assert_eq!(out.code, 0, "docker login: {} {}", out.stdout, out.stderr);
    let (_, user, secret) = creds(&env.get(&host));
    assert_eq!((user.as_str(), secret.as_str()), ("carol", "hunter2"));
    let config = std::fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(
        !config.contains("hunter2"),
        "docker kept the password out of config.json: {config}"
    );

    let out = run_command(docker(&env, &["logout", &host]), b"");
    assert_eq!(out.code, 0, "docker logout: {} {}", out.stdout, out.stderr);
    assert_eq!(env.get(&host).stdout, NOT_FOUND);
}

fn docker(env: &Env, args: &[&str]) -> std::process::Command {
    env.program("docker", args)
}

/// Runs the helper in a thread, killed if it is still running after 90 s (a hang).
fn spawn_helper(
    env: &Env,
    args: &'static [&'static str],
    stdin: Vec<u8>,
) -> std::thread::JoinHandle<(Output, Duration)> {
    let cmd = env.command(args);
    std::thread::spawn(move || {
        run_within(cmd, &stdin, Duration::from_secs(90))
            .unwrap_or_else(|| panic!("`{}` still waited on the keyring after 90 s", args[0]))
    })
}

fn listed(env: &Env) -> String {
    let out = env.run(&["list"], b"unused");
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    out.stdout
}

/// A hung gnome-keyring or an unlock prompt nobody answers looks like this to the helper:
/// the Secret Service is on the bus and never answers (SIGSTOP). `get` for a host with stored
/// credentials and `doctor` end within seconds, naming the Secret Service and what to do;
/// `list` needs no keyring at all.
#[test]
fn a_hung_secret_service_fails_get_and_doctor_within_seconds() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, ss) = keyring_env();
    let out = env.run(
        &["store"],
        &store_json("kept.example.com", "alice", "s3cret"),
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    ss.pause();
    let get = spawn_helper(&env, &["get"], b"kept.example.com".to_vec());
    let doctor = spawn_helper(&env, &["doctor"], Vec::new());
    let list = spawn_helper(&env, &["list"], b"unused".to_vec());

    let (out, took) = get.join().unwrap();
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(10), "get took {took:?}");
    assert!(
        out.stdout.contains("Secret Service") && out.stdout.contains("unlock"),
        "{}",
        out.stdout
    );
    let (out, took) = doctor.join().unwrap();
    assert!(took < Duration::from_secs(15), "doctor took {took:?}");
    assert!(out.stdout.contains("Secret Service"), "{}", out.stdout);
    let (out, took) = list.join().unwrap();
    assert!(took < Duration::from_secs(5), "list took {took:?}");
    assert_eq!(out.stdout, "{\"kept.example.com\":\"alice\"}\n");

    ss.resume();
    let (_, user, secret) = creds(&env.get("kept.example.com"));
    assert_eq!((user.as_str(), secret.as_str()), ("alice", "s3cret"));
}

/// `docker login` over an existing login while the Secret Service hangs: it ends in time and
/// leaves nothing half-written. The keyring may still carry out the write when it wakes up,
/// so the old user name must not be served with a new secret: the host is no longer listed.
#[test]
fn a_hung_secret_service_fails_store_in_time_and_pairs_no_old_login_with_a_new_secret() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, ss) = keyring_env();
    let out = env.run(
        &["store"],
        &store_json("kept.example.com", "alice", "s3cret"),
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    ss.pause();
    let store = spawn_helper(
        &env,
        &["store"],
        store_json("kept.example.com", "bob", "pw2"),
    );
    let (out, took) = store.join().unwrap();
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(40), "store took {took:?}");
    assert!(
        out.stdout.contains("Secret Service") && out.stdout.contains("previous login"),
        "{}",
        out.stdout
    );
    ss.resume();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(listed(&env), "{}\n");
    assert_eq!(env.get("kept.example.com").stdout, NOT_FOUND);
}

/// `docker logout` while the Secret Service hangs ends in time; the login is no longer served
/// and the error says so, and a second logout once the keyring answers removes the secret.
#[test]
fn a_hung_secret_service_fails_erase_in_time_and_the_login_is_no_longer_served() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, ss) = keyring_env();
    let out = env.run(
        &["store"],
        &store_json("gone.example.com", "alice", "s3cret"),
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    ss.pause();
    let (out, took) = spawn_helper(&env, &["erase"], b"gone.example.com".to_vec())
        .join()
        .unwrap();
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(took < Duration::from_secs(40), "erase took {took:?}");
    assert!(
        out.stdout.contains("Secret Service") && out.stdout.contains("docker logout"),
        "{}",
        out.stdout
    );
    assert_eq!(listed(&env), "{}\n");
    ss.resume();
    assert_eq!(env.get("gone.example.com").stdout, NOT_FOUND);
    let out = env.run(&["erase"], b"gone.example.com");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
}

/// `docker login` and `docker logout` of one host at the same time end as one or the other:
/// `list` names the host exactly when `get` returns the secret just stored.
#[test]
fn concurrent_store_and_erase_of_one_host_leave_the_index_truthful() {
    if !need(&[Peer::Keyring]) {
        return;
    }
    let (env, _ss) = keyring_env();
    let host = "race.example.com";
    let mut outcomes = [0usize; 2];
    for round in 0..40 {
        let secret = format!("secret-{round}");
        let store = spawn_helper(&env, &["store"], store_json(host, "alice", &secret));
        let erase = spawn_helper(&env, &["erase"], host.as_bytes().to_vec());
        for (verb, t) in [("store", store), ("erase", erase)] {
            let (out, _) = t.join().unwrap();
            assert_eq!(
                out.code, 0,
                "round {round} {verb}: {} {}",
                out.stdout, out.stderr
            );
        }
        let listed = listed(&env).contains(host);
        let got = env.get(host);
        if listed {
            assert_eq!(
                got.code, 0,
                "round {round}: listed, but get says {}",
                got.stdout
            );
            assert_eq!(creds(&got).2, secret, "round {round}");
        } else {
            assert_eq!(got.stdout, NOT_FOUND, "round {round}: {}", got.stderr);
        }
        outcomes[usize::from(listed)] += 1;
    }
    eprintln!("erased last: {}, stored last: {}", outcomes[0], outcomes[1]);
}
