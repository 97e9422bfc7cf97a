//! Test support: run the built helper the way docker does (argv + stdin, environment), and
//! loopback HTTP servers that stand in for Google's token endpoint and metadata server.
#![allow(dead_code)]
pub(crate) mod cache;
#[cfg(unix)]
pub(crate) mod daemons;
#[cfg(unix)]
pub(crate) mod dbus_keyring;
pub(crate) mod go;
#[cfg(unix)]
pub(crate) mod kubelet;
pub(crate) mod peers;
#[cfg(unix)]
pub(crate) mod proxy;
#[cfg(unix)]
pub(crate) mod registry;
#[cfg(unix)]
pub(crate) mod root;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_docker-credential-gcp");
pub(crate) const NOT_FOUND: &str = "credentials not found in native keychain\n";

/// A peer program a test needs (gcloud, gnome-keyring, docker...). A missing one fails the
/// test; tests first ask `peers::need`, which skips them outside CI.
pub(crate) fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is required but not installed (see .ci/run)"
    );
}

/// `out` is the protocol's "not found" (exit 1): docker goes on without credentials.
pub(crate) fn assert_not_found(out: &Output) {
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (1, NOT_FOUND),
        "{}",
        out.stderr
    );
}

/// A gcloud configuration directory with an account, as `gcloud auth login` leaves it: the
/// helper runs gcloud only when it could have credentials.
pub(crate) fn signed_in_gcloud_config(dir: &Path) {
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(
        dir.join("configurations/config_default"),
        "[core]\naccount = someone@example.com\n",
    )
    .unwrap();
}

/// Tests that need root (podman and buildah storage, daemons) fail without it.
pub(crate) fn require_root(what: &str) {
    assert!(
        peers::is_root(),
        "{what} needs root (outside CI such tests are ignored when built as another user)"
    );
}

/// The PATH tests give the helper and the clients: the system's directories, not whatever the
/// developer's shell has (tests that need a program to be missing set their own).
#[cfg(unix)]
pub(crate) const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
#[cfg(windows)]
pub(crate) const SYSTEM_PATH: &str = r"C:\windows\system32;C:\windows";

/// The helper's own directories under the test HOME, as the `dirs` crate lays them out on
/// each platform (tests must not assume the Linux layout).
#[cfg(not(any(target_os = "macos", windows)))]
pub(crate) const CACHE_DIR: &str = ".cache/docker-credential-gcp";
#[cfg(not(any(target_os = "macos", windows)))]
pub(crate) const CONFIG_DIR: &str = ".config/docker-credential-gcp";
#[cfg(not(any(target_os = "macos", windows)))]
pub(crate) const DATA_DIR: &str = ".local/share/docker-credential-gcp";
// Windows: %LOCALAPPDATA% and %APPDATA%, which Env::new points into the test HOME.
#[cfg(windows)]
pub(crate) const CACHE_DIR: &str = "AppData/Local/docker-credential-gcp";
#[cfg(windows)]
pub(crate) const CONFIG_DIR: &str = "AppData/Roaming/docker-credential-gcp";
#[cfg(windows)]
pub(crate) const DATA_DIR: &str = "AppData/Local/docker-credential-gcp";
#[cfg(target_os = "macos")]
pub(crate) const CACHE_DIR: &str = "Library/Caches/docker-credential-gcp";
#[cfg(target_os = "macos")]
pub(crate) const CONFIG_DIR: &str = "Library/Application Support/docker-credential-gcp";
#[cfg(target_os = "macos")]
pub(crate) const DATA_DIR: &str = "Library/Application Support/docker-credential-gcp";

pub(crate) struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A clean environment for the helper: a temporary HOME and nothing inherited but PATH.
pub(crate) struct Env {
    pub home: tempfile::TempDir,
    vars: HashMap<String, String>,
}

impl Env {
    pub(crate) fn new() -> Env {
        let home = tempfile::tempdir().unwrap();
        let mut vars = HashMap::new();
        vars.insert("HOME".to_owned(), home.path().display().to_string());
        vars.insert("PATH".to_owned(), SYSTEM_PATH.to_owned());
        // Windows: the user's folders inside the test HOME (the helper follows these variables
        // over the known folders), and SystemRoot, without which Winsock cannot start.
        #[cfg(windows)]
        {
            let home = home.path();
            vars.insert("USERPROFILE".to_owned(), home.display().to_string());
            let roaming = home.join(r"AppData\Roaming");
            let local = home.join(r"AppData\Local");
            vars.insert("APPDATA".to_owned(), roaming.display().to_string());
            vars.insert("LOCALAPPDATA".to_owned(), local.display().to_string());
            let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\windows".to_owned());
            vars.insert("SystemRoot".to_owned(), root);
        }
        // Tests choose their sources explicitly; never the DMI-detected metadata server.
        vars.insert(
            "DOCKER_CREDENTIAL_GCP_TOKEN_SOURCES".to_owned(),
            "adc".to_owned(),
        );
        Env { home, vars }
    }

    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Env {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    pub(crate) fn unset(&mut self, key: &str) -> &mut Env {
        self.vars.remove(key);
        self
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.path(CACHE_DIR)
    }

    /// The token cache entry in `cache_dir` (there is one after a first `get`).
    pub(crate) fn cache_entry(&self) -> PathBuf {
        cache::entry_in(&self.cache_dir())
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.program(BIN, args)
    }

    /// Another program (a real client) run in the same environment.
    pub(crate) fn program(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().envs(&self.vars);
        cmd
    }

    /// Runs the helper with `args`, writing `stdin` and closing it, as docker does.
    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_command(self.command(args), stdin)
    }

    pub(crate) fn get(&self, server: &str) -> Output {
        self.run(&["get"], server.as_bytes())
    }

    /// Writes a service-account key for `token_uri` and points GOOGLE_APPLICATION_CREDENTIALS at it.
    pub(crate) fn use_service_account(&mut self, token_uri: &str) -> PathBuf {
        let path = self.path("sa.json");
        std::fs::write(&path, service_account_json(token_uri)).unwrap();
        self.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        path
    }
}

/// What `f` returned and how long it took.
pub(crate) fn timed(f: impl FnOnce() -> Output) -> (Output, Duration) {
    let started = std::time::Instant::now();
    let out = f();
    (out, started.elapsed())
}

/// Starts `cmd`. Under Wine, CreateProcess now and then fails with ERROR_INTERNAL_ERROR
/// (1359) while other processes start and end (once in CI, in a run of 48 tests that start
/// about 200 processes); that error alone, and only on Windows, is retried a few times.
pub(crate) fn spawn(cmd: &mut Command) -> std::process::Child {
    const WINE_INTERNAL_ERROR: i32 = 1359;
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e)
                if cfg!(windows)
                    && e.raw_os_error() == Some(WINE_INTERNAL_ERROR)
                    && attempts < 5 =>
            {
                eprintln!("spawn failed with {e}; retrying (Wine)");
                attempts += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            started => return started.expect("spawn helper"),
        }
    }
}

pub(crate) fn run_command(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = spawn(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` like `run_command`, but kills it at `limit`: `None` if it had to be killed (a
/// hang), else its output and how long it took.
pub(crate) fn run_within(
    mut cmd: Command,
    stdin: &[u8],
    limit: Duration,
) -> Option<(Output, Duration)> {
    let started = std::time::Instant::now();
    let mut child = spawn(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut hung = false;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            hung = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    writer.join().unwrap();
    (!hung).then(|| {
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        (out, took)
    })
}

pub(crate) const SA_EMAIL: &str = "builder@test-project.iam.gserviceaccount.com";

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(crate) fn service_account_json(token_uri: &str) -> String {
    let key = std::fs::read_to_string(fixture("test-sa-key.pem")).unwrap();
    serde_json::json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "0123456789abcdef",
        "private_key": key,
        "client_email": SA_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

/// The parsed `get` answer.
/// The helper failed (exit status 1) and its answer on stdout says `needle`.
pub(crate) fn assert_fails_saying(out: &Output, needle: &str) {
    assert_eq!(
        out.code, 1,
        "stdout={:?} stderr={:?}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains(needle),
        "expected {needle:?} in {}",
        out.stdout
    );
}

pub(crate) fn creds(out: &Output) -> (String, String, String) {
    assert_eq!(
        out.code, 0,
        "get failed: stdout={:?} stderr={:?}",
        out.stdout, out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("get prints JSON");
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} missing in {v}"))
            .to_owned()
    };
    (s("ServerURL"), s("Username"), s("Secret"))
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 server on 127.0.0.1 with an OS-chosen port.

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub(crate) fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub(crate) struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Connections served per server before it stops accepting: a bound on every test's traffic.
const MAX_CONNECTIONS: usize = 2000;

impl Server {
    pub(crate) fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_with(None, handler)
    }

    /// The same server speaking HTTPS with `tls` (see `proxy::Pki` for a test CA).
    pub(crate) fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start_with(Some(tls), handler)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let served = AtomicUsize::new(0);
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst)
                    || served.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS
                {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, reqs, tls) = (handler.clone(), reqs.clone(), tls.clone());
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                std::thread::spawn(move || match tls {
                    None => serve(conn, &*handler, &reqs),
                    Some(tls) => {
                        // A failed handshake (an untrusted certificate) is a failed read in serve.
                        if let Ok(session) = rustls::ServerConnection::new(tls) {
                            serve(rustls::StreamOwned::new(session, conn), &*handler, &reqs);
                        }
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<S: Read + Write>(conn: S, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(16 * 1024 * 1024)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Request {
        method,
        target,
        headers,
        body,
    };
    requests.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let conn = reader.get_mut();
    let _ = conn
        .write_all(out.as_bytes())
        .and_then(|_| conn.write_all(&reply.body))
        .and_then(|_| conn.flush());
}

// ---------------------------------------------------------------------------------------------
// Google stand-ins.

/// A token endpoint that accepts connections and never answers, keeping them open until it
/// is dropped; it counts the connections.
pub(crate) struct Hanging {
    port: u16,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hanging {
    pub(crate) fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (accepted.clone(), held.clone());
        std::thread::spawn(move || {
            // Bounded: a test makes a handful of connections.
            for conn in listener.incoming().take(200) {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                // Read the request so the client is not blocked writing it, then hold on.
                conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
                let _ = conn.read(&mut [0u8; 4096]);
                keep.lock().unwrap().push(conn);
            }
        });
        Hanging {
            port,
            accepted,
            held,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub(crate) fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.held.lock().unwrap().clear();
        // Wake the accept loop so its thread can see the listener is no longer wanted.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A token endpoint that accepts the service-account JWT bearer grant (verifying the RS256
/// signature with the fixture's public key and the claims Google checks) and the refresh-token
/// grant for one authorized user. Every token it issues is unique: `ya29.test-N`.
/// A HOME whose token source is a service account key for `server`'s `/token`, with a 3 s
/// deadline (a test that hangs fails in seconds, not minutes).
pub(crate) fn sa_env(server: &Server) -> Env {
    let mut env = Env::new();
    env.use_service_account(&server.url("/token"));
    env.set("DOCKER_CREDENTIAL_GCP_TIMEOUT", "3");
    env
}

pub(crate) fn token_endpoint(expires_in: u64) -> Server {
    Server::start(token_handler(expires_in))
}

/// The handler of [`token_endpoint`], for servers that answer other paths too.
pub(crate) fn token_handler(expires_in: u64) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let issued = AtomicUsize::new(0);
    move |req: &Request| {
        let form = req.form();
        let ok = match form.get("grant_type").map(String::as_str) {
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                verify_assertion(form.get("assertion").map(String::as_str).unwrap_or(""), req)
            }
            Some("refresh_token") => {
                form.get("refresh_token").map(String::as_str) == Some(USER_REFRESH_TOKEN)
                    && form.get("client_secret").map(String::as_str) == Some(USER_CLIENT_SECRET)
                    && form.get("client_id").map(String::as_str) == Some(USER_CLIENT_ID)
            }
            _ => false,
        };
        if req.method != "POST" || req.path() != "/token" || !ok {
            return Reply::json(
                400,
                serde_json::json!({"error": "invalid_grant", "error_description": "rejected by the test endpoint"}),
            );
        }
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(
            200,
            serde_json::json!({"access_token": format!("ya29.test-{n}"), "expires_in": expires_in, "token_type": "Bearer"}),
        )
    }
}

pub(crate) const USER_CLIENT_ID: &str = "764086051850-test.apps.googleusercontent.com";
pub(crate) const USER_CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";
pub(crate) const USER_REFRESH_TOKEN: &str = "1//0refresh-token-for-tests";

pub(crate) fn authorized_user_json(token_uri: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "type": "authorized_user",
        "client_id": USER_CLIENT_ID,
        "client_secret": USER_CLIENT_SECRET,
        "refresh_token": USER_REFRESH_TOKEN,
    });
    if let Some(uri) = token_uri {
        v["token_uri"] = uri.into();
    }
    v.to_string()
}

/// JWT parts are base64url; Google (and so this stand-in) also accepts them padded, which is
/// how yup-oauth2 sends them.
fn b64(part: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .unwrap_or_default()
}

/// Checks a JWT bearer assertion as Google's token endpoint does.
fn verify_assertion(jwt: &str, req: &Request) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let public = std::fs::read(fixture("test-sa-key.pub.der")).unwrap();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    if key.verify(signed.as_bytes(), &b64(parts[2])).is_err() {
        return false;
    }
    let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&b64(parts[1])).unwrap_or_default();
    let host = req.header("host").unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let iat = claims["iat"].as_i64().unwrap_or(0);
    header["alg"] == "RS256"
        && claims["iss"] == SA_EMAIL
        && [
            format!("http://{host}/token"),
            format!("https://{host}/token"),
        ]
        .iter()
        .any(|aud| claims["aud"] == *aud)
        && claims["scope"].as_str().unwrap_or("").split(' ').any(|s| {
            // get asks for cloud-platform; the kubelet provider, which only pulls, for
            // its read-only form.
            s == "https://www.googleapis.com/auth/cloud-platform"
                || s == "https://www.googleapis.com/auth/cloud-platform.read-only"
        })
        && (iat - now).abs() < 300
        && claims["exp"]
            .as_i64()
            .is_some_and(|exp| exp > iat && exp - iat <= 3600)
}

/// A metadata server stand-in that insists on `Metadata-Flavor: Google`.
pub(crate) fn metadata_server(expires_in: u64) -> Server {
    let issued = AtomicUsize::new(0);
    Server::start(move |req| {
        if req.header("metadata-flavor") != Some("Google")
            || req.path() != "/computeMetadata/v1/instance/service-accounts/default/token"
        {
            return Reply::json(403, serde_json::json!({"error": "missing Metadata-Flavor"}));
        }
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(200, serde_json::json!({"access_token": format!("ya29.metadata-{n}"), "expires_in": expires_in, "token_type": "Bearer"}))
            .with_header("Metadata-Flavor", "Google")
    })
}

// ---------------------------------------------------------------------------------------------
// A real, headless Secret Service: a private D-Bus session bus with gnome-keyring on it.

#[cfg(unix)]
pub(crate) struct SecretService {
    pub address: String,
    session: dbus_keyring::Session,
}

#[cfg(unix)]
impl SecretService {
    /// Starts dbus-daemon and an unlocked gnome-keyring for `home`. On a loaded machine a
    /// fresh gnome-keyring now and then never makes its login collection usable; such a start
    /// is abandoned and made again (at most three times), with the keyring's files removed.
    pub(crate) fn start(home: &Path) -> SecretService {
        require("dbus-daemon");
        require("gnome-keyring-daemon");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let session = dbus_keyring::Session::launch(home, b"test-password")
                .expect("start a D-Bus session with gnome-keyring");
            let service = SecretService {
                address: session.address.clone(),
                session,
            };
            match service.wait_until_usable(Duration::from_secs(20)) {
                Ok(()) => return service,
                Err(e) => failures.push(e),
            }
            drop(service);
            let _ = std::fs::remove_dir_all(home.join(".local/share/keyrings"));
        }
        panic!("the headless Secret Service never became usable: {failures:?}");
    }

    /// gnome-keyring announces itself before its secrets service and login collection are
    /// ready, and under load a test's first store can race them. Probe with a real store
    /// (from a separate HOME, so the test's own index stays untouched) until one succeeds.
    fn wait_until_usable(&self, within: Duration) -> Result<(), String> {
        let probe_home = tempfile::tempdir().unwrap();
        let body = br#"{"ServerURL":"probe.invalid","Username":"probe","Secret":"probe"}"#;
        let mut last = String::new();
        let give_up = std::time::Instant::now() + within;
        while std::time::Instant::now() < give_up {
            let mut cmd = Command::new(BIN);
            cmd.arg("store")
                .env_clear()
                .env("HOME", probe_home.path())
                .env("PATH", SYSTEM_PATH)
                .env("DBUS_SESSION_BUS_ADDRESS", &self.address);
            let out = run_command(cmd, body);
            if out.code == 0 {
                return Ok(());
            }
            last = out.stdout;
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(last)
    }
}

#[cfg(unix)]
impl SecretService {
    /// Stops gnome-keyring (SIGSTOP) without closing its D-Bus connection: calls to it are
    /// delivered and never answered, as with a hung daemon or an unanswered unlock prompt.
    pub(crate) fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused gnome-keyring run again.
    pub(crate) fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.session.keyring_pid() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}
