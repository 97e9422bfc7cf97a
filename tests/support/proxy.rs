//! Support for the proxy tests: a test certificate authority (openssl), test host names that
//! resolve to 127.0.0.1 only inside private mount namespaces, and real squid and tinyproxy
//! processes on loopback with their config, pid file and logs in a temporary directory.
//!
//! Why names: like Go, the helper never sends loopback destinations through a proxy, so a
//! token endpoint at 127.0.0.1 could not show that a proxy is used. The tests give the
//! endpoints names under `.test` instead (a reserved domain), which resolve to 127.0.0.1 through
//! an /etc/hosts bind-mounted in a private mount namespace (`unshare -m`, root) for the proxy
//! and for the helper; an /etc/resolv.conf naming 127.0.0.1 keeps every other lookup on the
//! machine. Nothing outside the test's processes sees either file.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{BIN, Env, SYSTEM_PATH, require, require_root};

/// The names the test servers answer for (all 127.0.0.1, all in the server certificate).
pub(crate) const TEST_NAMES: [&str; 5] = [
    "oauth2.test",
    "sts.test",
    "iam.test",
    "idp.test",
    "metadata.test",
];

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test certificate authority and a server certificate it issued for [`TEST_NAMES`],
/// `localhost` and 127.0.0.1, or for other names (EC P-256, two days).
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let mut names: Vec<&str> = TEST_NAMES.to_vec();
        names.push("localhost");
        Pki::for_names(&names)
    }

    /// A test CA and a server certificate it issued for `names` and 127.0.0.1.
    pub(crate) fn for_names(names: &[&str]) -> Pki {
        require("openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
            .args(["-subj", "/CN=docker-credential-gcp test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .current_dir(d));
        run(Command::new("openssl")
            .arg("req")
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", &format!("/CN={}", names[0])])
            .current_dir(d));
        let names: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            d.join("ext.cnf"),
            format!(
                "subjectAltName={},IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem"])
            .args(["-days", "2", "-extfile", "ext.cnf"])
            .current_dir(d));
        Pki { dir }
    }

    /// The CA certificate (PEM): what a company would hand out for its TLS-inspecting proxy.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let d = self.dir.path();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(d.join("server.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(d.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Arc::new(config)
    }
}

/// [`TEST_NAMES`] as 127.0.0.1, for processes started through [`Names::command`].
pub(crate) struct Names {
    dir: tempfile::TempDir,
}

/// Runs `"$@"` with the hosts file and resolv.conf given as `$1` and `$2` bind-mounted in a
/// private mount namespace (resolv.conf only where the machine has one).
const IN_NAMESPACE: &str = r#"mount --bind "$1" /etc/hosts &&
if [ -e /etc/resolv.conf ]; then mount --bind "$2" /etc/resolv.conf; fi &&
shift 2 && exec "$@""#;

impl Names {
    pub(crate) fn new() -> Names {
        require("unshare");
        require("mount");
        require_root("bind-mounting /etc/hosts in a private mount namespace");
        let dir = tempfile::tempdir().unwrap();
        // Readable by squid after it switched to its own user.
        set_mode(dir.path(), 0o755);
        let hosts = format!(
            "127.0.0.1 localhost {}\n::1 localhost\n",
            TEST_NAMES.join(" ")
        );
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        Names { dir }
    }

    /// `program args…` in a new private mount namespace where [`TEST_NAMES`] resolve.
    pub(crate) fn command(&self, env: &Env, program: &str, args: &[&str]) -> Command {
        let hosts = self.dir.path().join("hosts");
        let resolv = self.dir.path().join("resolv.conf");
        let mut all = vec![
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            IN_NAMESPACE,
            "sh",
            hosts.to_str().unwrap(),
            resolv.to_str().unwrap(),
            program,
        ];
        all.extend_from_slice(args);
        env.program("unshare", &all)
    }

    /// The helper with `args` and `stdin`, as docker (or the kubelet) runs it.
    pub(crate) fn run(&self, env: &Env, args: &[&str], stdin: &[u8]) -> super::Output {
        super::run_command(self.command(env, BIN, args), stdin)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Squid,
    Tinyproxy,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct ProxyOpts {
    /// Require Basic proxy authentication with this user and password.
    pub(crate) auth: Option<(&'static str, &'static str)>,
    /// Refuse every CONNECT.
    pub(crate) deny_connect: bool,
}

/// A real proxy on 127.0.0.1, killed when dropped.
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Proxy {
    /// Starts the proxy in a private mount namespace where [`TEST_NAMES`] resolve, and waits
    /// until it accepts connections.
    pub(crate) fn start(kind: Kind, opts: ProxyOpts, names: &Names) -> Proxy {
        require(match kind {
            Kind::Squid => "squid",
            Kind::Tinyproxy => "tinyproxy",
        });
        let dir = tempfile::tempdir().unwrap();
        // squid switches to its own user (Debian: proxy) and must write its logs here.
        set_mode(dir.path(), 0o777);
        let port = free_port();
        let (conf, program, args) = match kind {
            Kind::Squid => (
                squid_conf(dir.path(), port, opts),
                "squid",
                vec!["-N", "-f"],
            ),
            Kind::Tinyproxy => (
                tinyproxy_conf(dir.path(), port, opts),
                "tinyproxy",
                vec!["-d", "-c"],
            ),
        };
        let conf_path = dir.path().join("proxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut args = args;
        args.push(conf_path.to_str().unwrap());
        let mut env = Env::new();
        env.set("PATH", SYSTEM_PATH);
        let mut cmd = names.command(&env, program, &args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            kind,
            port,
            dir,
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!(
                    "{kind:?} exited ({status}): {}\n{}",
                    proxy.file("stderr.log"),
                    proxy.file("cache.log")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{kind:?} did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`, the user info as given (percent-encoded).
    pub(crate) fn url_with(&self, userinfo: &str) -> String {
        format!("http://{userinfo}@127.0.0.1:{}", self.port)
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// The proxy's request log.
    pub(crate) fn log(&self) -> String {
        match self.kind {
            Kind::Squid => self.file("access.log"),
            Kind::Tinyproxy => self.file("tinyproxy.log"),
        }
    }

    /// The request log once it contains `needle`, or after 10 s (squid logs a tunnel when it
    /// closes, a moment after the helper exits).
    pub(crate) fn wait_log(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) || started.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines of requests for `target` (`host:port` for CONNECT).
    pub(crate) fn lines_for(&self, target: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(target))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM makes squid wait and tinyproxy linger; the tests need neither.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn squid_conf(dir: &Path, port: u16, opts: ProxyOpts) -> String {
    let d = dir.display();
    let mut c = format!(
        "# Loopback test proxy: everything under {d}, nothing under /etc/squid or /var.
http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
access_log stdio:{d}/access.log
cache_log {d}/cache.log
cache_store_log none
coredump_dir {d}
# no cache, and nothing else listening or probing (pinger would outlive a killed squid)
cache deny all
cache_mem 0 MB
pinger_enable off
icp_port 0
htcp_port 0
# names come from /etc/hosts (the test's); anything else asks 127.0.0.1 and fails
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
# Debian's default config allows CONNECT to 443 only and denies loopback destinations
acl SSL_ports port 1-65535
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
"
    );
    if opts.deny_connect {
        c.push_str("http_access deny CONNECT\n");
    }
    match opts.auth {
        Some((user, password)) => {
            let out = Command::new("openssl")
                .args(["passwd", "-1", password])
                .output()
                .unwrap();
            let hash = String::from_utf8(out.stdout).unwrap();
            std::fs::write(dir.join("htpasswd"), format!("{user}:{}\n", hash.trim())).unwrap();
            set_mode(&dir.join("htpasswd"), 0o644);
            c.push_str(&format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/htpasswd
auth_param basic children 1
auth_param basic realm proxy-test
acl authed proxy_auth REQUIRED
http_access allow authed
http_access deny all
"
            ));
        }
        None => c.push_str("http_access allow all\n"),
    }
    c
}

fn tinyproxy_conf(dir: &Path, port: u16, opts: ProxyOpts) -> String {
    let d = dir.display();
    let mut c = format!(
        "# Loopback test proxy: everything under {d}.
Port {port}
Listen 127.0.0.1
Timeout 30
LogFile \"{d}/tinyproxy.log\"
LogLevel Connect
PidFile \"{d}/tinyproxy.pid\"
MaxClients 20
# No Allow lines: every client (it listens on 127.0.0.1 only). No ConnectPort lines: CONNECT
# to every port (Debian's sample config allows 443 and 563 only).
"
    );
    if opts.deny_connect {
        c.push_str("ConnectPort 0\n");
    }
    if let Some((user, password)) = opts.auth {
        c.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    c
}
