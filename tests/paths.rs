//! Where the helper's own files go: paths from the environment and the config file are taken
//! as the OS gives them (any bytes), and none of them is ever relative to the directory docker
//! happens to run the helper in.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::support::peers::{Peer, need};
use crate::support::*;

/// Runs the helper in `dir` (the current directory docker would give it).
fn run_in(env: &Env, dir: &Path, args: &[&str], stdin: &[u8], extra: &[(&str, &OsStr)]) -> Output {
    let mut cmd = env.command(args);
    cmd.current_dir(dir);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run_command(cmd, stdin)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cache_directory_named_with_non_utf8_bytes_is_used_as_given() {
    for var in ["DOCKER_CREDENTIAL_GCP_CACHE_DIR", "XDG_CACHE_HOME"] {
        let server = token_endpoint(3600);
        let mut env = Env::new();
        env.use_service_account(&server.url("/token"));
        let mut bytes = env.home.path().as_os_str().as_bytes().to_vec();
        bytes.extend_from_slice(b"/cache-\xff\xfe-dir");
        let dir = std::path::PathBuf::from(OsStr::from_bytes(&bytes));
        let cwd = env.home.path().to_path_buf();
        for round in 1..=2 {
            let out = run_in(&env, &cwd, &["get"], b"gcr.io", &[(var, dir.as_os_str())]);
            assert_eq!(
                out.code, 0,
                "{var} round {round}: {} {}",
                out.stdout, out.stderr
            );
            assert_eq!(creds(&out).2, "ya29.test-1", "{var}: served from the cache");
        }
        assert_eq!(server.count(), 1, "{var}");
        let cache = if var == "XDG_CACHE_HOME" {
            dir.join("docker-credential-gcp")
        } else {
            dir
        };
        assert!(
            entries(&cache).iter().any(|n| n.starts_with("token-")),
            "{var}: {:?}",
            entries(&cache)
        );
    }
}

#[test]
fn relative_path_settings_are_refused_naming_the_setting() {
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    for (var, key) in [
        ("DOCKER_CREDENTIAL_GCP_CACHE_DIR", "cache_dir"),
        ("DOCKER_CREDENTIAL_GCP_LOG_FILE", "log_file"),
        ("DOCKER_CREDENTIAL_GCP_CA_FILE", "ca_file"),
    ] {
        let out = run_in(
            &env,
            &cwd,
            &["get"],
            b"gcr.io",
            &[(var, OsStr::new("rel/x"))],
        );
        assert_eq!(out.code, 1, "{var}: {} {}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(var) && out.stdout.contains("absolute"),
            "{var}: {}",
            out.stdout
        );
        // The same in the config file, where `~` is not expanded either.
        let config = env.path(CONFIG_DIR);
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("config.json"),
            serde_json::json!({ key: "~/x" }).to_string(),
        )
        .unwrap();
        let out = run_in(&env, &cwd, &["get"], b"gcr.io", &[]);
        assert_eq!(out.code, 1, "{key}: {} {}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(key) && out.stdout.contains("absolute"),
            "{key}: {}",
            out.stdout
        );
        std::fs::remove_file(config.join("config.json")).unwrap();
    }
    assert_eq!(
        entries(&cwd),
        Vec::<String>::new(),
        "nothing under the current directory"
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn relative_home_and_xdg_directories_are_ignored() {
    let env = Env::new();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let rel = OsStr::new("rel");
    let out = run_in(
        &env,
        &cwd,
        &["config"],
        b"",
        &[
            ("HOME", rel),
            ("XDG_CACHE_HOME", rel),
            ("XDG_CONFIG_HOME", rel),
            ("XDG_DATA_HOME", rel),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cache_dir = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("cache_dir"))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        cache_dir.starts_with('/') && cache_dir.ends_with("/.cache/docker-credential-gcp"),
        "the account's home directory, as if HOME were unset: {}",
        out.stdout
    );
    let config_file = out.stdout.lines().next().unwrap_or_default();
    assert!(config_file.starts_with("config file: /"), "{}", out.stdout);
}

/// A real `get` with a relative HOME, run in a mount namespace whose tmpfs stands in for the
/// account's home directory (root's, from the user database), so the machine's is untouched.
#[test]
fn a_get_with_a_relative_home_caches_in_the_accounts_home_not_the_current_directory() {
    if !need(&[Peer::Namespaces, Peer::Root]) {
        return;
    }
    let server = token_endpoint(3600);
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let script = format!(
        "set -e\nmount -n -t tmpfs tmpfs /root\ncd {}\nHOME=rel \"$0\" get <<EOF >/dev/null\ngcr.io\nEOF\nfind /root -name 'token-*'\n",
        cwd.display()
    );
    let out = run_command(
        env.program(
            "unshare",
            &[
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
                BIN,
            ],
        ),
        b"",
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("/root/.cache/docker-credential-gcp/token-"),
        "{}",
        out.stdout
    );
    assert_eq!(
        entries(&cwd),
        Vec::<String>::new(),
        "nothing under the current directory"
    );
    assert_eq!(server.count(), 1);
}
