//! Real container engines for the tests, run as root: Debian's dockerd 20.10 (package
//! docker.io, with the containerd it starts itself), a standalone containerd 1.6 and podman 4.3.
//! Every piece of their state lives in this test binary's work directory.
//!
//! Isolation, so that nothing reaches the machine's own files or network:
//! - Each daemon runs in a private mount namespace with tmpfs on /run and /opt (dockerd writes
//!   /run/docker/plugins, its containerd /opt/containerd and /run/containerd) and, for podman,
//!   /var/lib (containers/image writes a blob cache there whatever `--root` says). Mounts use
//!   `mount -n`, or libmount would create /run/mount on the host first.
//! - The *mirror world*: a private network namespace with only loopback up, holding a fake
//!   mirror.gcr.io, a fake Docker Hub and a fake company mirror (real distribution registries
//!   with TLS from a test CA), plus a dockerd and a containerd configured by `configure-mirror`.
//!   Its mount namespace has its own /etc/hosts (mirror.gcr.io is `::1`: dockerd treats any
//!   mirror that resolves into 127.0.0.0/8 as insecure and would skip the TLS check) and a
//!   resolv.conf naming a nameserver that does not exist. Traffic cannot leave that namespace.
//!
//! Lifetime: the shared daemons start once per test binary, on first use. They are spawned from
//! one long-lived thread under `setpriv --pdeathsig`, so they die with the test process
//! whatever happens; normally they are stopped by PID (SIGTERM, then a wait on the child) when
//! the process exits (`atexit`), and the work directory is removed. Work directories of runs
//! that were killed are removed by the next run.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::registry::{OciImage, store_in_registry_storage, write_oci_image};
use super::root::RootSession;
use super::*;

/// The docker CLI of the docker.io package (20.10), which comes with dockerd. It has BuildKit
/// built in; the newer CLI some machines put first on PATH needs buildx for that.
pub(crate) const DOCKER: &str = "/usr/bin/docker";

// ---------------------------------------------------------------------------------------------
// Processes: spawned from one long-lived thread, stopped by PID.

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, and each test runs on
/// its own thread; so every daemon is forked by this thread, which lives as long as the process.
pub(crate) fn spawn_kept(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("daemon-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .expect("spawner thread alive");
    rx.recv().expect("spawner thread answers")
}

/// A daemon process this binary started. Dropping it stops it.
pub(crate) struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub(crate) fn new(name: String, child: Child) -> Proc {
        Proc { name, child }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal(&mut self, signal: i32) {
        if self.exited().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// SIGTERM, then a wait (dockerd takes about a second: it waits for its containerd);
    /// SIGKILL after 30 s.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM for 30 s: SIGKILL",
            self.name,
            self.pid()
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Shared daemons and directories, stopped and removed when the process exits.
static AT_EXIT: Mutex<(Vec<Proc>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

pub(crate) fn keep_until_exit(proc: Proc) {
    register_cleanup();
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .push(proc);
}

fn register_cleanup() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function; libc runs it once at exit.
        let rc = unsafe { libc::atexit(cleanup_at_exit) };
        assert_eq!(rc, 0, "atexit");
    });
}

/// Stops every shared daemon (all get SIGTERM first, then each is waited for, newest first)
/// and removes the work directory.
extern "C" fn cleanup_at_exit() {
    let (mut procs, dirs) = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for p in procs.iter_mut() {
        p.signal(libc::SIGTERM);
    }
    while let Some(mut p) = procs.pop() {
        p.stop();
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// This process's work directory for daemons: `$TMPDIR/dcg-daemons-PID`. Directories left by
/// runs that no longer exist (killed before their `atexit`) are removed first.
pub(crate) fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("dcg-daemons-")
                    && pid.parse::<u32>().is_ok()
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(format!("dcg-daemons-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        register_cleanup();
        AT_EXIT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .push(dir.clone());
        dir
    })
}

/// A fresh directory under the work directory (removed at exit with it).
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = work_dir().join(format!("{name}-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    registry::tail(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

// ---------------------------------------------------------------------------------------------
// Where a daemon runs.

/// Mounts for a private mount namespace: tmpfs over each of `tmpfs`, then `exec "$@"`.
fn private_mounts_script(tmpfs: &[&str]) -> String {
    let mut script = String::from("set -e\n");
    for dir in tmpfs {
        script.push_str(&format!("mount -n -t tmpfs -o mode=755 tmpfs {dir}\n"));
    }
    script.push_str("exec \"$@\"\n");
    script
}

#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    /// The machine's network (loopback servers the test started), a private mount namespace.
    Private,
    /// Inside the mirror world's network and mount namespaces.
    World(&'a MirrorWorld),
    /// In a session of the current test root (support::root): its engines, chrooted.
    Root(&'a RootSession),
}

impl Place<'_> {
    /// `program args…` there, with a clean environment (PATH only). A daemon (`daemon`) gets
    /// SIGTERM when the test process ends.
    pub(crate) fn command(self, program: &str, args: &[&str], daemon: bool) -> Command {
        let mut cmd = if daemon {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "TERM", "--"]);
            c
        } else {
            Command::new("env")
        };
        match self {
            Place::Private => {
                cmd.args(["unshare", "--mount", "--propagation", "private", "--"]);
                cmd.args(["sh", "-c", &private_mounts_script(&["/run", "/opt"]), "sh"]);
            }
            Place::World(world) => {
                cmd.arg("nsenter")
                    .arg(format!("--net=/proc/{}/ns/net", world.holder))
                    .arg(format!("--mount=/proc/{}/ns/mnt", world.holder))
                    .arg("--");
            }
            Place::Root(session) => {
                cmd.args(session.enter());
            }
        }
        cmd.arg(program).args(args);
        cmd.env_clear().env("PATH", SYSTEM_PATH);
        cmd
    }
}

/// Waits (up to 30 s) until `ready` holds, failing early if `proc` exits.
fn wait_ready(
    proc: &mut Proc,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if ready() {
            return Ok(started.elapsed());
        }
        if let Some(status) = proc.exited() {
            return Err(format!(
                "{} exited ({status}) before it was ready:\n{}",
                proc.name,
                tail_of(log, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{} not ready after 30 s:\n{}",
        proc.name,
        tail_of(log, 30)
    ))
}

pub(crate) fn log_file(path: &Path) -> (Stdio, Stdio) {
    let log = std::fs::File::create(path).unwrap();
    (log.try_clone().unwrap().into(), log.into())
}

// ---------------------------------------------------------------------------------------------
// dockerd.

/// A running dockerd 20.10 with all its state in `dir`.
pub(crate) struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Its `--config-file`.
    pub config: PathBuf,
    pub log: PathBuf,
    pub pid: u32,
    /// From spawn until `/_ping` answered.
    pub started_in: Duration,
}

impl Dockerd {
    /// Starts dockerd in `place` with `dir/daemon.json` (written with only
    /// `deprecated-key-path`, so nothing goes to /etc/docker/key.json, unless it exists).
    pub(crate) fn start(
        dir: &Path,
        place: Place<'_>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(Dockerd, Proc), String> {
        let config = dir.join("daemon.json");
        if !config.exists() {
            std::fs::write(&config, dockerd_base_config(dir)).unwrap();
        }
        let socket = dir.join("docker.sock");
        let log = dir.join("dockerd.log");
        let paths: Vec<String> = [
            "--data-root",
            &dir.join("data").display().to_string(),
            "--exec-root",
            &dir.join("exec").display().to_string(),
            "--pidfile",
            &dir.join("dockerd.pid").display().to_string(),
            "-H",
            &format!("unix://{}", socket.display()),
            "--config-file",
            &config.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
        // No bridge, no iptables: the daemon touches no network configuration of the host.
        args.extend([
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ]);
        args.extend_from_slice(extra_args);
        let mut cmd = place.command("/usr/sbin/dockerd", &args, true);
        cmd.envs(env.iter().copied());
        let (out, err) = log_file(&log);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn_kept(cmd).map_err(|e| format!("cannot start dockerd: {e}"))?;
        let mut proc = Proc {
            name: format!("dockerd in {}", dir.display()),
            child,
        };
        let started_in = wait_ready(&mut proc, &log, || ping(&socket))?;
        let pid = proc.pid();
        Ok((
            Dockerd {
                dir: dir.to_path_buf(),
                socket,
                config,
                log,
                pid,
                started_in,
            },
            proc,
        ))
    }

    /// `DOCKER_HOST` for this daemon.
    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The daemon.json every test dockerd starts from.
pub(crate) fn dockerd_base_config(dir: &Path) -> String {
    serde_json::json!({"deprecated-key-path": dir.join("key.json")}).to_string()
}

/// `GET /_ping` on dockerd's socket answers `OK` once the API is up.
fn ping(socket: &Path) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.take(64 * 1024).read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("\r\n\r\nOK")
}

/// The shared dockerd on the machine's loopback, for registries the tests start on 127.0.0.1
/// (plain HTTP: dockerd treats 127.0.0.0/8 as insecure).
pub(crate) fn dockerd() -> &'static Dockerd {
    static DOCKERD: OnceLock<Result<Dockerd, String>> = OnceLock::new();
    let started = DOCKERD.get_or_init(|| {
        let dir = fresh_dir("dockerd");
        let (dockerd, proc) = Dockerd::start(&dir, Place::Private, &[], &[])?;
        eprintln!("shared dockerd ready in {:?}", dockerd.started_in);
        keep_until_exit(proc);
        Ok(dockerd)
    });
    match started {
        Ok(d) => d,
        Err(e) => panic!("the shared dockerd did not start: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The mirror world.

/// A registry inside the mirror world, listening with TLS on `addr`, port 443.
pub(crate) struct WorldRegistry {
    pub name: &'static str,
    pub dir: PathBuf,
}

/// One request in a registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl WorldRegistry {
    pub(crate) fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The requests for repository `repo` (`library/x`), in order.
    pub(crate) fn requests_for(&self, repo: &str) -> Vec<Access> {
        let prefix = format!("/v2/{repo}/");
        self.log()
            .lines()
            .filter_map(|line| {
                // `::1 - - [date] "GET /v2/library/x/manifests/latest HTTP/1.1" 200 405 "" "agent"`
                let (_, rest) = line.split_once(" \"")?;
                let (request, rest) = rest.split_once('"')?;
                let mut words = request.split(' ');
                let (method, target) = (words.next()?, words.next()?);
                let status = rest.split_whitespace().next()?.parse().ok()?;
                let path = target.split('?').next()?;
                path.starts_with(&prefix).then(|| Access {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    status,
                })
            })
            .collect()
    }

    /// Whether this registry sent a blob of `repo` (so it served the pull, not only answered).
    pub(crate) fn served_blobs_of(&self, repo: &str) -> bool {
        self.requests_for(repo)
            .iter()
            .any(|a| a.method == "GET" && a.path.contains("/blobs/") && a.status == 200)
    }

    /// Whether the manifest of `repo` was asked for here and not found.
    pub(crate) fn missed(&self, repo: &str) -> bool {
        self.requests_for(repo)
            .iter()
            .any(|a| a.path.contains("/manifests/") && a.status == 404)
    }
}

pub(crate) const MIRROR_NAME: &str = "mirror.gcr.io";
pub(crate) const HUB_NAME: &str = "registry-1.docker.io";
/// A mirror a company already had configured before mirror.gcr.io was added.
pub(crate) const CORP_NAME: &str = "corp-mirror.test";

/// The repositories the world's registries hold, per engine: `X-hit` is in the mirror and in
/// the hub, `X-miss` only in the hub (as is `pm-v1`). The company mirror holds nothing. Each image has its own
/// content, so no engine finds a layer of one already present from another.
pub(crate) const WORLD_ENGINES: [&str; 9] = [
    "dk", "ctd", "pm", "pmdeb", "dk28", "ctd2", "cri2", "cri3", "pm5",
];

pub(crate) struct MirrorWorld {
    pub dir: PathBuf,
    /// The process holding the world's namespaces (others join it).
    pub holder: u32,
    /// The test CA (PEM) that signed every registry's certificate.
    pub ca: PathBuf,
    pub mirror: WorldRegistry,
    pub hub: WorldRegistry,
    pub corp: WorldRegistry,
}

const WORLD_HOSTS: &str = "\
127.0.0.1 localhost
::1 mirror.gcr.io
127.0.0.3 registry-1.docker.io index.docker.io docker.io
127.0.0.4 auth.docker.io
127.0.0.5 production.cloudflare.docker.com
127.0.0.6 corp-mirror.test
";

/// The mirror world, started on first use.
pub(crate) fn mirror_world() -> &'static MirrorWorld {
    static WORLD: OnceLock<Result<MirrorWorld, String>> = OnceLock::new();
    match WORLD.get_or_init(MirrorWorld::start) {
        Ok(w) => w,
        Err(e) => panic!("the mirror world did not start: {e}"),
    }
}

impl MirrorWorld {
    fn start() -> Result<MirrorWorld, String> {
        let started = Instant::now();
        let dir = fresh_dir("world");
        let pki = dir.join("pki");
        make_certificates(
            &pki,
            &[
                (MIRROR_NAME, &[]),
                (HUB_NAME, &["index.docker.io", "docker.io"]),
                (CORP_NAME, &[]),
            ],
        )?;
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, WORLD_HOSTS).unwrap();
        let resolv = dir.join("resolv.conf");
        // Nothing listens there: a name not in the hosts file fails at once.
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();

        // The holder keeps the namespaces alive; everything else joins them.
        let mut script = String::from("set -e\nbusybox ip link set lo up\n");
        for d in ["/run", "/opt", "/var/lib"] {
            script.push_str(&format!("mount -n -t tmpfs -o mode=755 tmpfs {d}\n"));
        }
        script.push_str("mount -n --bind \"$1\" /etc/hosts\nmount -n --bind \"$2\" /etc/resolv.conf\necho ready\nexec sleep infinity\n");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "unshare", "--net", "--mount"])
            .args(["--propagation", "private", "--", "sh", "-c", &script, "sh"])
            .arg(&hosts)
            .arg(&resolv)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&dir.join("holder.log")).1);
        let mut child = spawn_kept(cmd).map_err(|e| format!("cannot start the holder: {e}"))?;
        // One line, not to the end: the holder keeps its stdout open (sleep inherits it).
        let mut said = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap().take(64)).read_line(&mut said);
        if said.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the namespace holder failed: {said}{}",
                tail_of(&dir.join("holder.log"), 20)
            ));
        }
        let holder = child.id();
        keep_until_exit(Proc {
            name: "mirror world holder".into(),
            child,
        });

        let registry = |name: &'static str| WorldRegistry {
            name,
            dir: dir.join(name),
        };
        let world = MirrorWorld {
            ca: pki.join("ca.pem"),
            mirror: registry(MIRROR_NAME),
            hub: registry(HUB_NAME),
            corp: registry(CORP_NAME),
            dir: dir.clone(),
            holder,
        };
        // Images first: the registries serve what is in storage when they start.
        let layouts = dir.join("layouts");
        let mut repos = vec![("pm-v1".to_owned(), false)];
        for engine in WORLD_ENGINES {
            repos.push((format!("{engine}-hit"), true));
            repos.push((format!("{engine}-miss"), false));
        }
        for (repo, in_mirror) in repos {
            let layout = layouts.join(&repo);
            let image = write_oci_image(&layout, "latest", &format!("hello from {repo}\n"));
            let repo = format!("library/{repo}");
            world.store(&world.hub, &layout, &image, &repo);
            if in_mirror {
                world.store(&world.mirror, &layout, &image, &repo);
            }
        }
        std::fs::create_dir_all(world.corp.storage()).unwrap();
        for (registry, addr) in [
            (&world.mirror, "[::1]:443"),
            (&world.hub, "127.0.0.3:443"),
            (&world.corp, "127.0.0.6:443"),
        ] {
            world.start_registry(registry, addr, &pki)?;
        }
        eprintln!("mirror world ready in {:?}", started.elapsed());
        Ok(world)
    }

    fn store(&self, registry: &WorldRegistry, layout: &Path, image: &OciImage, repo: &str) {
        store_in_registry_storage(&registry.storage(), layout, image, repo, "latest");
    }

    fn start_registry(
        &self,
        registry: &WorldRegistry,
        addr: &str,
        pki: &Path,
    ) -> Result<(), String> {
        let config = registry.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: \"{addr}\"\n  secret: world-not-a-secret\n  tls:\n    certificate: {}\n    key: {}\n  debug:\n    addr: \"\"\n",
                registry.storage().display(),
                pki.join(format!("{}.crt", registry.name)).display(),
                pki.join(format!("{}.key", registry.name)).display(),
            ),
        )
        .unwrap();
        let log = registry.dir.join("registry.log");
        let mut cmd = Place::World(self).command(
            "docker-registry",
            &["serve", &config.display().to_string()],
            true,
        );
        let (out, err) = log_file(&log);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn_kept(cmd).map_err(|e| format!("cannot start docker-registry: {e}"))?;
        let mut proc = Proc {
            name: format!("registry {}", registry.name),
            child,
        };
        let ready = wait_ready(&mut proc, &log, || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on"))
        });
        keep_until_exit(proc);
        ready.map(|_| ())
    }

    /// `program args…` inside the world (a client: not tied to the process's end).
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> Command {
        Place::World(self).command(program, args, false)
    }

    /// `docker.io` images come from the world's hub, verified with the test CA.
    pub(crate) fn ca_env(&self) -> (&'static str, String) {
        ("SSL_CERT_FILE", self.ca.display().to_string())
    }
}

/// `docker system info`'s "Registry Mirrors:" list, as Google's instructions check it.
pub(crate) fn registry_mirrors_in_info(info: &str) -> Vec<String> {
    info.lines()
        .skip_while(|l| l.trim() != "Registry Mirrors:")
        .skip(1)
        .take_while(|l| l.starts_with("  ") && l.trim().starts_with("http"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The mirror served `repo`; the company mirror was asked first and lacked it; Docker Hub was
/// not asked.
pub(crate) fn assert_served_by_the_mirror(world: &MirrorWorld, repo: &str) {
    assert!(
        world.corp.missed(repo),
        "the company mirror is tried first: {:?}",
        world.corp.requests_for(repo)
    );
    assert!(
        world.mirror.served_blobs_of(repo),
        "mirror.gcr.io served {repo}: {:?}",
        world.mirror.requests_for(repo)
    );
    assert_eq!(world.hub.requests_for(repo), [], "Docker Hub is not asked");
}

/// Neither mirror has `repo`: both were asked, and Docker Hub served it.
pub(crate) fn assert_fell_back_to_docker_hub(world: &MirrorWorld, repo: &str) {
    assert!(
        world.corp.missed(repo),
        "{:?}",
        world.corp.requests_for(repo)
    );
    assert!(
        world.mirror.missed(repo),
        "{:?}",
        world.mirror.requests_for(repo)
    );
    assert!(
        world.hub.served_blobs_of(repo),
        "Docker Hub served {repo}: {:?}",
        world.hub.requests_for(repo)
    );
}

/// The locations podman tried, in order (its debug log's "Trying to access").
pub(crate) fn podman_tried(stderr: &str) -> Vec<String> {
    stderr
        .split("Trying to access \\\"")
        .skip(1)
        .filter_map(|rest| rest.split_once("\\\"").map(|(l, _)| l.to_owned()))
        .collect()
}

/// A test CA and a certificate for each `(name, other names)`, with openssl: `DIR/ca.pem`,
/// `DIR/NAME.crt`, `DIR/NAME.key`. EC keys (fast to make); valid for two days.
fn make_certificates(dir: &Path, names: &[(&str, &[&str])]) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=docker-credential-gcp test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&args)?;
    for (name, others) in names {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let mut args = vec!["req"];
        args.extend(ec);
        let subject = format!("/CN={name}");
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&args)?;
        let sans: Vec<String> = std::iter::once(name)
            .chain(others.iter())
            .map(|n| format!("DNS:{n}"))
            .collect();
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ])?;
    }
    Ok(())
}

/// The world's dockerd: its daemon.json is `{"deprecated-key-path", "registry-mirrors":
/// ["https://corp-mirror.test"]}` as a company had it, then `configure-mirror` ran on it.
pub(crate) struct WorldDockerd {
    pub dockerd: Dockerd,
    /// What `configure-mirror --daemon-json` printed and its exit code.
    pub configured: Output,
    /// daemon.json before configure-mirror.
    pub before: String,
}

pub(crate) fn world_dockerd() -> &'static WorldDockerd {
    static DOCKERD: OnceLock<Result<WorldDockerd, String>> = OnceLock::new();
    let started = DOCKERD.get_or_init(|| {
        let world = mirror_world();
        let dir = fresh_dir("world-dockerd");
        let config = dir.join("daemon.json");
        let mut before: serde_json::Value =
            serde_json::from_str(&dockerd_base_config(&dir)).unwrap();
        before["registry-mirrors"] = serde_json::json!([format!("https://{CORP_NAME}")]);
        let before = serde_json::to_string_pretty(&before).unwrap();
        std::fs::write(&config, &before).unwrap();
        let configured = Env::new().run(
            &[
                "configure-mirror",
                "--daemon-json",
                &config.display().to_string(),
            ],
            b"",
        );
        if configured.code != 0 {
            return Err(format!("configure-mirror failed: {}", configured.stderr));
        }
        let ca = world.ca_env();
        let (dockerd, proc) = Dockerd::start(&dir, Place::World(world), &[], &[(ca.0, &ca.1)])?;
        eprintln!("mirror-world dockerd ready in {:?}", dockerd.started_in);
        keep_until_exit(proc);
        Ok(WorldDockerd {
            dockerd,
            configured,
            before,
        })
    });
    match started {
        Ok(d) => d,
        Err(e) => panic!("the mirror world's dockerd did not start: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// containerd.

/// A standalone containerd 1.6 with all state in `dir`.
pub(crate) struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub started_in: Duration,
}

impl Containerd {
    fn start(dir: &Path, place: Place<'_>) -> Result<(Containerd, Proc), String> {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        // No CRI plugin (no Kubernetes here), no "opt" plugin (it creates /opt/containerd).
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\"]\n[grpc]\n  address = \"{0}/containerd.sock\"\n[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n[debug]\n  address = \"{0}/debug.sock\"\n  level = \"info\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("containerd.log");
        let mut cmd = place.command(
            "/usr/bin/containerd",
            &["--config", &config.display().to_string()],
            true,
        );
        let (out, err) = log_file(&log);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn_kept(cmd).map_err(|e| format!("cannot start containerd: {e}"))?;
        let mut proc = Proc {
            name: format!("containerd in {}", dir.display()),
            child,
        };
        let sock = socket.display().to_string();
        let started_in = wait_ready(&mut proc, &log, || {
            Command::new("ctr")
                .args(["--address", &sock, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        Ok((
            Containerd {
                dir: dir.to_path_buf(),
                socket,
                log,
                started_in,
            },
            proc,
        ))
    }
}

/// The world's containerd. `ctr images pull` fetches in the ctr process itself, so ctr runs in
/// the world too (see `MirrorWorld::command`).
pub(crate) fn world_containerd() -> &'static Containerd {
    static CONTAINERD: OnceLock<Result<Containerd, String>> = OnceLock::new();
    let started = CONTAINERD.get_or_init(|| {
        let world = mirror_world();
        let dir = fresh_dir("world-containerd");
        let (containerd, proc) = Containerd::start(&dir, Place::World(world))?;
        eprintln!(
            "mirror-world containerd ready in {:?}",
            containerd.started_in
        );
        keep_until_exit(proc);
        Ok(containerd)
    });
    match started {
        Ok(c) => c,
        Err(e) => panic!("the mirror world's containerd did not start: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// podman.

/// Root podman's global options keeping its storage and state in `dir`.
pub(crate) fn podman_args(dir: &Path) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    vec![
        "--root".into(),
        p("root"),
        "--runroot".into(),
        p("runroot"),
        "--storage-driver".into(),
        "vfs".into(),
        "--cgroup-manager=cgroupfs".into(),
        "--events-backend=none".into(),
        "--tmpdir".into(),
        p("libpod-tmp"),
    ]
}

/// Runs `cmd` and returns its output (a client run: bounded by the client's own timeouts).
pub(crate) fn output_of(cmd: Command) -> Output {
    run_command(cmd, b"")
}
