//! The *current* test root: Debian unstable with the engines and clients people run today
//! (Docker 28 with buildx, containerd 2, podman 5, buildah, skopeo 1.22, crane, oras, cosign,
//! Bazel, Python, Node), made and cached by `tests/roots/current.sh`. The machine's own Debian
//! 12 engines stay as they are for the other tests.
//!
//! A [`RootSession`] runs programs from that tree by chroot, in a private mount namespace
//! whose root is an overlay over the cached tree (so nothing a test does reaches the cache,
//! and each session may write /etc as a user would). The session shares the network namespace
//! it was started in: the machine's, where the tests' loopback registries listen, or the mirror
//! world's. Inside:
//! - `/proc`, `/sys`, `/dev` are the machine's; `/run` is a private tmpfs;
//! - the machine's temporary directory is at the same path, so every path a test makes (homes,
//!   work directories, sockets, helper wrappers) means the same inside and out;
//! - `/etc/hosts` and `/etc/resolv.conf` are the ones given (the machine's, or the world's);
//! - `/usr/local/bin/docker-credential-gcp` is the static executable
//!   `packaging/build-static.sh` built, which so runs on a newer distribution too.
//!
//! A session's holder process keeps the namespace alive (`sleep infinity`, chrooted); programs
//! join it with `nsenter --target HOLDER --mount --net --root --wd`. The holder dies with the
//! test process (`--pdeathsig`), and the overlay's upper directory is removed with the work
//! directory.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::daemons::{
    Dockerd, Place, Proc, fresh_dir, keep_until_exit, log_file, spawn_kept, tail_of,
};
use super::*;

/// Where the session puts the helper's static executable.
pub(crate) const ROOT_HELPER: &str = "/usr/local/bin/docker-credential-gcp";

/// The cached tree, built by `tests/roots/current.sh` on first use (minutes the first time on a
/// machine, then instant). Panics with the script's output if it cannot be made.
pub(crate) fn current_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = ROOT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roots/current.sh");
        let started = Instant::now();
        let out = Command::new("sh")
            .arg(&script)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .envs(std::env::var_os("DCG_ROOT_CACHE").map(|v| ("DCG_ROOT_CACHE", v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match stdout.lines().last() {
            Some(path) if out.status.success() && Path::new(path).is_dir() => {
                if !stderr.is_empty() {
                    eprintln!("{stderr}");
                }
                eprintln!("current root {path} ready in {:?}", started.elapsed());
                Ok(PathBuf::from(path))
            }
            _ => Err(format!(
                "{} failed ({}):\n{stdout}\n{}",
                script.display(),
                out.status,
                registry::tail(&stderr, 40)
            )),
        }
    });
    match made {
        Ok(p) => p,
        Err(e) => panic!("the current test root could not be made: {e}"),
    }
}

/// A private mount namespace chrooted into an overlay of the current root.
pub(crate) struct RootSession {
    pub dir: PathBuf,
    holder: u32,
}

impl RootSession {
    /// A session in the network namespace of process `net` (`None`: the test process's own),
    /// with `hosts` and `resolv` as its /etc/hosts and /etc/resolv.conf (`None`: the machine's).
    pub(crate) fn start(
        net: Option<u32>,
        hosts: Option<&Path>,
        resolv: Option<&Path>,
    ) -> Result<RootSession, String> {
        let root = current_root();
        let helper = peers::static_binary()
            .ok_or("the static executable: run packaging/build-static.sh first")?;
        let dir = fresh_dir("root-session");
        let tmp = std::env::temp_dir();
        let script = r#"set -e
root=$1 dir=$2 tmp=$3 hosts=$4 resolv=$5 helper=$6
m=$dir/merged
mkdir -p "$dir/upper" "$dir/work" "$m"
mount -n -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$m"
mount -n -t proc proc "$m/proc"
mount -n --rbind /sys "$m/sys"
mount -n --rbind /dev "$m/dev"
mount -n -t tmpfs -o mode=755 tmpfs "$m/run"
mkdir -p "$m$tmp"
mount -n --rbind "$tmp" "$m$tmp"
mount -n --bind "$hosts" "$m/etc/hosts"
rm -f "$m/etc/resolv.conf"
touch "$m/etc/resolv.conf"
mount -n --bind "$resolv" "$m/etc/resolv.conf"
cp "$helper" "$m/usr/local/bin/docker-credential-gcp"
chmod 755 "$m/usr/local/bin/docker-credential-gcp"
# "ready" from inside: a program entering before the chroot would get the machine's root.
exec chroot "$m" /bin/sh -c 'echo ready; exec sleep infinity'
"#;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]);
        if let Some(pid) = net {
            cmd.arg("nsenter")
                .arg(format!("--net=/proc/{pid}/ns/net"))
                .arg("--");
        }
        cmd.args(["unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(root)
            .arg(&dir)
            .arg(&tmp)
            .arg(hosts.unwrap_or(Path::new("/etc/hosts")))
            .arg(resolv.unwrap_or(Path::new("/etc/resolv.conf")))
            .arg(&helper)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&dir.join("holder.log")).1);
        let mut child =
            spawn_kept(cmd).map_err(|e| format!("cannot start the root session: {e}"))?;
        // One line, not to the end: the holder keeps its stdout open (sleep inherits it).
        let mut said = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap().take(64)).read_line(&mut said);
        if said.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the root session's holder failed: {said}{}",
                tail_of(&dir.join("holder.log"), 20)
            ));
        }
        let holder = child.id();
        keep_until_exit(Proc::new(
            format!("root session holder in {}", dir.display()),
            child,
        ));
        Ok(RootSession { dir, holder })
    }

    /// The words that run a program inside: `nsenter … --`.
    pub(crate) fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "--target".into(),
            self.holder.to_string(),
            "--mount".into(),
            "--net".into(),
            "--root".into(),
            "--wd".into(),
            "--".into(),
        ]
    }

    /// `program args…` inside, with a clean environment (PATH only). A daemon (`daemon`) gets
    /// SIGTERM when the test process ends.
    pub(crate) fn command(&self, program: &str, args: &[&str], daemon: bool) -> Command {
        Place::Root(self).command(program, args, daemon)
    }

    /// `program args…` inside, in the environment `env` (a client run by a test).
    pub(crate) fn program(&self, env: &Env, program: &str, args: &[&str]) -> Command {
        let mut words = self.enter();
        words.push(program.to_owned());
        words.extend(args.iter().map(|a| a.to_string()));
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        env.program(words[0], &words[1..])
    }

    /// The path on the machine of `inside`, a path in the session's tree (to read what a
    /// program wrote there).
    pub(crate) fn outside(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder)).join(inside.trim_start_matches('/'))
    }

    /// Makes the machine's directory `path` visible inside at the same path, as the temporary
    /// directory is (a bind mount in the session's namespace; for caches the tests keep
    /// between runs). Sharing a path twice mounts it once.
    pub(crate) fn share(&self, path: &Path) -> Result<(), String> {
        // Entered without --root, the namespace's own root is the machine's tree as unshared,
        // where the session's tree is `DIR/merged`.
        let script = r#"set -e
at=$2$1
mkdir -p "$at"
mountpoint -q "$at" || mount -n --bind "$1" "$at"
"#;
        let out = Command::new("nsenter")
            .args(["--target", &self.holder.to_string(), "--mount", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(path)
            .arg(self.dir.join("merged"))
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot share {} with the root session: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// The shared session in the machine's network namespace, for the tests' loopback registries.
pub(crate) fn root_session() -> &'static RootSession {
    static SESSION: OnceLock<Result<RootSession, String>> = OnceLock::new();
    match SESSION.get_or_init(|| RootSession::start(None, None, None)) {
        Ok(s) => s,
        Err(e) => panic!("the current root session did not start: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The current engines, run in a session.

/// A dockerd 28 in `session` with all its state in `dir` (its daemon.json there: `{}` unless
/// the test wrote one; dockerd 28 refuses 20.10's `deprecated-key-path`). IPv6 filtering is
/// off too (`--ip6tables`, on by default since 27): the daemon touches no network set-up.
pub(crate) fn start_dockerd(
    session: &RootSession,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(Dockerd, Proc), String> {
    let config = dir.join("daemon.json");
    if !config.exists() {
        std::fs::write(&config, "{}\n").unwrap();
    }
    Dockerd::start(dir, Place::Root(session), &["--ip6tables=false"], env)
}

/// The shared dockerd 28 on the machine's loopback.
pub(crate) fn current_dockerd() -> &'static Dockerd {
    static DOCKERD: OnceLock<Result<Dockerd, String>> = OnceLock::new();
    let started = DOCKERD.get_or_init(|| {
        let (dockerd, proc) = start_dockerd(root_session(), &fresh_dir("dockerd28"), &[])?;
        eprintln!("current dockerd ready in {:?}", dockerd.started_in);
        keep_until_exit(proc);
        Ok(dockerd)
    });
    match started {
        Ok(d) => d,
        Err(e) => panic!("the current dockerd did not start: {e}"),
    }
}

/// A containerd 2 in a session, with all state in `dir`.
pub(crate) struct Containerd2 {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub started_in: Duration,
}

impl Containerd2 {
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn address(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Starts containerd 2 in `session` with `config` (a config.toml, `version = N` first), to
/// which the test's paths are added: root, state and sockets in `dir`, and no "opt" plugin
/// (it creates /opt/containerd). The CRI plugins stay on, with the default (overlayfs)
/// snapshotter.
pub(crate) fn start_containerd(
    session: &RootSession,
    dir: &Path,
    config: &str,
    env: &[(&str, &str)],
) -> Result<(Containerd2, Proc), String> {
    let socket = dir.join("containerd.sock");
    let (version, rest) = config
        .split_once('\n')
        .filter(|(first, _)| first.starts_with("version"))
        .ok_or("the config must start with its version line")?;
    let text = format!(
        "{version}\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.internal.v1.opt\"]\n{rest}\n\n[grpc]\n  address = \"{0}/containerd.sock\"\n\n[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n\n[debug]\n  address = \"{0}/debug.sock\"\n  level = \"info\"\n",
        dir.display()
    );
    let config = dir.join("config.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.join("containerd.log");
    let mut cmd = session.command(
        "/usr/bin/containerd",
        &["--config", &config.display().to_string()],
        true,
    );
    cmd.envs(env.iter().copied());
    let (out, err) = log_file(&log);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = spawn_kept(cmd).map_err(|e| format!("cannot start containerd: {e}"))?;
    let mut proc = Proc::new(format!("containerd 2 in {}", dir.display()), child);
    let started = Instant::now();
    let sock = socket.display().to_string();
    loop {
        let ready = session
            .command("ctr", &["--address", &sock, "version"], false)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if let Some(status) = proc.exited() {
            return Err(format!(
                "containerd exited ({status}):\n{}",
                tail_of(&log, 30)
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "containerd not ready after 30 s:\n{}",
                tail_of(&log, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((
        Containerd2 {
            dir: dir.to_path_buf(),
            socket,
            log,
            started_in: started.elapsed(),
        },
        proc,
    ))
}

/// A CRI client (what the kubelet does, without the kubelet): `ImageService/PullImage` over
/// containerd's socket, with the user name and password given, in python3-grpcio from the
/// root. The request is encoded by hand (three string fields); prints the image reference
/// containerd answers.
pub(crate) const CRI_PULL_PY: &str = r#"
import sys, grpc
sock, image, user, password = sys.argv[1:5]
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(number, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data
request = field(1, field(1, image))
if user:
    request += field(2, field(1, user) + field(2, password))
channel = grpc.insecure_channel("unix://" + sock)
pull = channel.unary_unary("/runtime.v1.ImageService/PullImage")
try:
    reply = pull(request, timeout=60)
except grpc.RpcError as e:
    print("PullImage: %s: %s" % (e.code(), e.details()), file=sys.stderr)
    sys.exit(1)
# PullImageResponse { string image_ref = 1; }
assert reply[0] == 0x0a, reply
n, shift, i = 0, 0, 1
while True:
    b = reply[i]; i += 1
    n |= (b & 0x7f) << shift; shift += 7
    if not b & 0x80:
        break
print(reply[i:i + n].decode())
"#;
