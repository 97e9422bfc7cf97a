//! End-to-end rig: a real registry (Debian's `docker-registry`, distribution 2.8) behind
//! gcr.io-style token authentication, a registry token server that only honours access tokens
//! the test's Google token endpoint really issued (or a service-account key, `_json_key`), a
//! hand-built OCI image, and a wrapper that records every call real clients make to the helper.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::*;

/// Access tokens the test's Google token endpoint issued (and any the test registers itself,
/// such as the token gcloud reads from its `auth/access_token_file`).
pub(crate) type Issued = Arc<Mutex<HashSet<String>>>;

pub(crate) const SERVICE: &str = "e2e-registry";
pub(crate) const ISSUER: &str = "e2e-token-issuer";

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client for loopback peers.

pub(crate) struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

pub(crate) fn http(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<HttpReply> {
    let mut conn = TcpStream::connect(host)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    let mut has_host = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        has_host |= k.eq_ignore_ascii_case("host");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    conn.write_all(out.as_bytes())?;
    conn.write_all(body)?;
    let mut raw = Vec::new();
    conn.take(64 * 1024 * 1024).read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    Ok(HttpReply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// Google's token endpoint, remembering what it issued.

/// `support::token_endpoint` (which verifies the service-account JWT grant) behind a recording
/// proxy: every access token it issues is added to `issued`, so the registry token server can
/// tell a real token from a made-up one.
pub(crate) struct GoogleEndpoint {
    pub server: Server,
    _inner: Server,
}

impl GoogleEndpoint {
    /// Issues tokens valid for `expires_in` seconds.
    pub(crate) fn start(issued: Issued, expires_in: u64) -> GoogleEndpoint {
        let inner = token_endpoint(expires_in);
        let inner_host = inner.host();
        let server = Server::start(move |req| {
            // The Host header is forwarded as sent, so the JWT's `aud` is checked against this
            // proxy's URL, the key's `token_uri`.
            let reply = http(
                &inner_host,
                &req.method,
                &req.target,
                &req.headers,
                &req.body,
            )
            .expect("token endpoint answers");
            if reply.status == 200 {
                let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                let token = v["access_token"].as_str().unwrap().to_owned();
                issued.lock().unwrap().insert(token);
            }
            Reply {
                status: reply.status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: reply.body,
            }
        });
        GoogleEndpoint {
            server,
            _inner: inner,
        }
    }

    pub(crate) fn token_uri(&self) -> String {
        self.server.url("/token")
    }

    /// Token requests made (successful or not).
    pub(crate) fn count(&self) -> usize {
        self.server.count()
    }
}

// ---------------------------------------------------------------------------------------------
// The registry token server (the `realm`), in the style of gcr.io.

pub(crate) fn fixture_e2e(name: &str) -> PathBuf {
    fixture("e2e").join(name)
}

struct Signer {
    key: ring::signature::RsaKeyPair,
    cert_b64: String,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    fn load() -> Signer {
        let pk8 = std::fs::read(fixture_e2e("token-signer.pk8")).unwrap();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&pk8).expect("PKCS#8 RSA key");
        let pem = std::fs::read_to_string(fixture_e2e("token-signer.crt")).unwrap();
        // x5c holds standard (not URL-safe) base64 DER: exactly the PEM body.
        let cert_b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        STANDARD.decode(&cert_b64).expect("certificate PEM body");
        Signer {
            key,
            cert_b64,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    fn jwt(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_b64]});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &self.rng,
                signed.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The credentials a client presented to the token server: `None` for an anonymous request.
pub(crate) fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Whether a `_json_key` password is the test service account's key.
fn is_test_key(json: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    let pem = std::fs::read_to_string(fixture("test-sa-key.pem")).unwrap();
    v["type"] == "service_account"
        && v["client_email"] == SA_EMAIL
        && v["private_key"].as_str() == Some(pem.as_str())
}

/// Whether `req` asks only to pull repositories under [`PUBLIC_PREFIX`].
fn anonymous_pulls_of_public_repositories(req: &Request) -> bool {
    let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    !scopes.is_empty()
        && scopes.iter().all(|s| {
            access_entry(s).is_some_and(|a| {
                a["type"] == "repository"
                    && a["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(PUBLIC_PREFIX))
                    && a["actions"] == serde_json::json!(["pull"])
            })
        })
}

/// `repository:test/img:pull,push` → `{type, name, actions}`.
fn access_entry(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Repositories under this prefix allow anonymous pulls, as public images on gcr.io and
/// Artifact Registry do (`gcr.io/distroless/*`).
pub(crate) const PUBLIC_PREFIX: &str = "public/";

/// The realm: `GET /token?service=…&scope=…` with HTTP Basic `oauth2accesstoken:<token>` (an
/// issued token) or `_json_key:<key JSON>`. An anonymous request is granted only pulls of
/// [`PUBLIC_PREFIX`] repositories and gets 401 when it asks for anything else.
pub(crate) fn token_server(issued: Issued) -> Server {
    let signer = Signer::load();
    let jti = AtomicUsize::new(0);
    Server::start(move |req| {
        let denied = |why: &str| {
            Reply::json(
                401,
                serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": why}]}),
            )
            .with_header("WWW-Authenticate", "Basic realm=\"e2e token server\"")
        };
        if req.path() != "/token" {
            return Reply::json(404, serde_json::json!({"errors": [{"code": "NOT_FOUND"}]}));
        }
        let subject = match basic_credentials(req) {
            None if anonymous_pulls_of_public_repositories(req) => "anonymous".to_owned(),
            None => return denied("anonymous access is not allowed"),
            Some((user, token)) if user == "oauth2accesstoken" => {
                if !issued.lock().unwrap().contains(&token) {
                    return denied("unknown access token");
                }
                "oauth2accesstoken".to_owned()
            }
            Some((user, key)) if user == "_json_key" => {
                if !is_test_key(&key) {
                    return denied("invalid service-account key");
                }
                SA_EMAIL.to_owned()
            }
            Some(_) => return denied("unknown user"),
        };
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut service = String::new();
        let mut access = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "service" => service = v.into_owned(),
                "scope" => access.extend(v.split(' ').filter_map(access_entry)),
                _ => {}
            }
        }
        if service != SERVICE {
            return denied("unknown service");
        }
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("e2e-{}", jti.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let token = signer.jwt(&claims);
        Reply::json(
            200,
            serde_json::json!({"token": token, "access_token": token, "expires_in": 300}),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The registry: distribution 2.8 (`docker-registry serve`).

pub(crate) struct Registry {
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// A free loopback port, chosen by the OS and released for the registry to bind.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// A registry that demands a token from `realm` (`None`: an open registry).
    pub(crate) fn start(realm: Option<&str>) -> Registry {
        // The port is chosen free and released; should another process take it meanwhile, the
        // registry exits with "address already in use" and is started again on another port.
        for _ in 0..3 {
            let mut registry = Registry::spawn(realm);
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("docker-registry did not start:\n{log}"),
            }
        }
        panic!("docker-registry found no free port in 3 attempts");
    }

    fn spawn(realm: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let auth = match realm {
            Some(realm) => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                fixture_e2e("token-signer.crt").display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: debug\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: e2e-not-a-secret\n{auth}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        Registry { host, dir, child }
    }

    /// Polls /v2/ (bounded: 10 s) until the registry answers; `Err(log)` if it exits or never
    /// answers.
    fn wait_ready(&mut self) -> Result<(), String> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", self.log()));
            }
            if let Ok(reply) = http(&self.host, "GET", "/v2/", &[], b"")
                && (reply.status == 200 || reply.status == 401)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no answer on /v2/:\n{}", self.log()))
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A one-layer OCI image layout, built by hand.

pub(crate) struct OciImage {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    pub diff_id: String,
}

pub(crate) fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One entry of a tar archive.
pub(crate) enum TarEntry<'a> {
    Dir(&'a str),
    File {
        name: &'a str,
        mode: u32,
        content: &'a [u8],
    },
    Symlink {
        name: &'a str,
        target: &'a str,
    },
}

/// A ustar archive of `entries`, owned by root, with a fixed mtime: reproducible digests.
pub(crate) fn tar(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    let mut tar = Vec::new();
    for entry in entries {
        let (name, mode, content, kind, link): (&str, u32, &[u8], u8, &str) = match entry {
            TarEntry::Dir(name) => (name, 0o755, b"", b'5', ""),
            TarEntry::File {
                name,
                mode,
                content,
            } => (name, *mode, content, b'0', ""),
            TarEntry::Symlink { name, target } => (name, 0o777, b"", b'2', target),
        };
        let mut header = [0u8; 512];
        put(&mut header, 0, name.as_bytes());
        put(&mut header, 100, format!("{mode:07o}\0").as_bytes());
        put(&mut header, 108, b"0000000\0");
        put(&mut header, 116, b"0000000\0");
        put(
            &mut header,
            124,
            format!("{:011o}\0", content.len()).as_bytes(),
        );
        put(&mut header, 136, b"14000000000\0");
        put(&mut header, 148, b"        ");
        header[156] = kind;
        put(&mut header, 157, link.as_bytes());
        put(&mut header, 257, b"ustar\0");
        put(&mut header, 263, b"00");
        put(&mut header, 265, b"root");
        put(&mut header, 297, b"root");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&header);
        tar.extend_from_slice(content);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// A tar archive with one regular file.
fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    tar(&[TarEntry::File {
        name,
        mode: 0o644,
        content,
    }])
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// gzip with stored (uncompressed) deflate blocks: valid gzip, so clients keep the layer as is.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes an OCI image layout with one image tagged `tag` into `dir`.
pub(crate) fn write_oci_image(dir: &Path, tag: &str, file_content: &str) -> OciImage {
    let tar = tar_one_file("hello.txt", file_content.as_bytes());
    write_oci_layout(dir, tag, &tar, serde_json::json!({"Cmd": ["/hello.txt"]}))
}

/// An image that runs: Debian's static `/bin/busybox` with `sh`, `echo` and `cat` links to it
/// (package busybox-static), so builds can `RUN` in it.
pub(crate) fn write_busybox_image(dir: &Path, tag: &str) -> OciImage {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (package busybox-static)");
    let mut entries = vec![
        TarEntry::Dir("bin/"),
        TarEntry::Dir("tmp/"),
        TarEntry::File {
            name: "bin/busybox",
            mode: 0o755,
            content: &busybox,
        },
    ];
    for name in ["bin/sh", "bin/echo", "bin/cat"] {
        entries.push(TarEntry::Symlink {
            name,
            target: "busybox",
        });
    }
    write_oci_layout(
        dir,
        tag,
        &tar(&entries),
        serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
    )
}

/// Writes an OCI image layout into `dir`: one image tagged `tag` whose single layer is `tar`.
pub(crate) fn write_oci_layout(
    dir: &Path,
    tag: &str,
    tar: &[u8],
    config: serde_json::Value,
) -> OciImage {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let digest = sha256(data);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), data).unwrap();
        digest
    };
    let diff_id = sha256(tar);
    let layer = gzip_stored(tar);
    let layer_digest = put(&layer);
    let config = serde_json::json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    OciImage {
        manifest_digest,
        config_digest,
        layer_digest,
        diff_id,
    }
}

/// Puts the image of an OCI layout straight into a distribution registry's filesystem storage
/// (`rootdirectory`), as a push would leave it: the blobs, the repository's layer and manifest
/// links, and the tag. No registry needs to run, and no client to push.
pub(crate) fn store_in_registry_storage(
    storage: &Path,
    layout: &Path,
    image: &OciImage,
    repo: &str,
    tag: &str,
) {
    let v2 = storage.join("docker/registry/v2");
    let hex = |d: &str| d["sha256:".len()..].to_owned();
    let link = |dir: PathBuf, digest: &str| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("link"), digest).unwrap();
    };
    for digest in [
        &image.layer_digest,
        &image.config_digest,
        &image.manifest_digest,
    ] {
        let h = hex(digest);
        let dir = v2.join("blobs/sha256").join(&h[..2]).join(&h);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(layout.join("blobs/sha256").join(&h), dir.join("data")).unwrap();
    }
    let repo_dir = v2.join("repositories").join(repo);
    for digest in [&image.layer_digest, &image.config_digest] {
        link(repo_dir.join("_layers/sha256").join(hex(digest)), digest);
    }
    let manifest = &image.manifest_digest;
    let m = hex(manifest);
    link(
        repo_dir.join("_manifests/revisions/sha256").join(&m),
        manifest,
    );
    let tag_dir = repo_dir.join("_manifests/tags").join(tag);
    link(tag_dir.join("current"), manifest);
    link(tag_dir.join("index/sha256").join(&m), manifest);
}

// ---------------------------------------------------------------------------------------------
// Recording what clients ask the helper.

/// One run of the helper by a client: the verb, its stdin (newlines as spaces), exit code and
/// stdout.
#[derive(Debug, Clone)]
pub(crate) struct HelperCall {
    pub verb: String,
    pub input: String,
    pub code: i32,
    pub output: String,
}

/// Writes `docker-credential-gcp` into `dir`: a shell wrapper that runs the built helper with
/// the same argv and stdin and appends the call to `$E2E_HELPER_CALLS`.
pub(crate) fn write_helper_wrapper(dir: &Path) {
    write_helper_wrapper_for(dir, BIN);
}

/// Like `write_helper_wrapper`, running the helper at `bin` (such as the static executable a
/// root session holds).
pub(crate) fn write_helper_wrapper_for(dir: &Path, bin: &str) {
    let script = format!(
        r#"#!/bin/sh
in=$(mktemp) || exit 1
cat > "$in"
out=$("{bin}" "$@" < "$in")
rc=$?
if [ -n "$out" ]; then printf '%s\n' "$out"; fi
line=$(printf '%s\t%s\t%s\t%s' "$1" "$(tr '\n\t' '  ' < "$in")" "$rc" "$(printf '%s' "$out" | tr '\n\t' '  ')")
printf '%s\n' "$line" >> "$E2E_HELPER_CALLS"
rm -f "$in"
exit $rc
"#
    );
    let path = dir.join("docker-credential-gcp");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(crate) fn read_helper_calls(path: &Path) -> Vec<HelperCall> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.splitn(4, '\t').collect();
            HelperCall {
                verb: f[0].to_owned(),
                input: f.get(1).copied().unwrap_or("").trim().to_owned(),
                code: f.get(2).and_then(|c| c.parse().ok()).unwrap_or(-1),
                output: f.get(3).copied().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The whole rig.

/// Counts at a point in time, to look only at what happened after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    realm: usize,
    calls: usize,
    google: usize,
}

pub(crate) struct Rig {
    pub env: Env,
    pub issued: Issued,
    pub google: GoogleEndpoint,
    pub realm: Server,
    pub registry: Registry,
    /// `127.0.0.1:PORT` of the registry.
    pub host: String,
    pub calls: PathBuf,
    pub docker_config: PathBuf,
    pub authfile: PathBuf,
}

impl Rig {
    /// The registry, its token server, a Google token endpoint, and an environment in which
    /// docker, skopeo, podman and buildah find the (recorded) helper for the registry host.
    pub(crate) fn start() -> Rig {
        Rig::start_with_token_lifetime(3600)
    }

    /// Like `start`, with Google access tokens valid for `expires_in` seconds.
    pub(crate) fn start_with_token_lifetime(expires_in: u64) -> Rig {
        require("docker-registry");
        require("skopeo");
        let issued: Issued = Arc::default();
        let google = GoogleEndpoint::start(issued.clone(), expires_in);
        let realm = token_server(issued.clone());
        let registry = Registry::start(Some(&realm.url("/token")));
        let host = registry.host.clone();
        let mut env = Env::new();
        let bin_dir = env.path("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        write_helper_wrapper(&bin_dir);
        env.set("PATH", format!("{}:{}", bin_dir.display(), SYSTEM_PATH));
        let tmp = env.path("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        env.set("TMPDIR", tmp.display().to_string());
        let calls = env.path("helper-calls.log");
        env.set("E2E_HELPER_CALLS", calls.display().to_string());
        env.set("DOCKER_CREDENTIAL_GCP_REGISTRIES", host.clone());
        env.use_service_account(&google.token_uri());
        let docker_config = env.path("docker");
        std::fs::create_dir_all(&docker_config).unwrap();
        env.set("DOCKER_CONFIG", docker_config.display().to_string());
        let authfile = env.path("containers-auth.json");
        env.set("REGISTRY_AUTH_FILE", authfile.display().to_string());
        let rig = Rig {
            env,
            issued,
            google,
            realm,
            registry,
            host,
            calls,
            docker_config,
            authfile,
        };
        rig.set_cred_helpers(&[&rig.host]);
        rig
    }

    /// Clients reach the helper at `bin` from now on (through the recording wrapper).
    pub(crate) fn use_helper_at(&self, bin: &str) {
        write_helper_wrapper_for(&self.env.path("bin"), bin);
    }

    /// Maps `hosts` to the helper in docker's config.json and in the containers auth file.
    pub(crate) fn set_cred_helpers(&self, hosts: &[&str]) {
        let map: serde_json::Map<String, serde_json::Value> = hosts
            .iter()
            .map(|h| (h.to_string(), serde_json::Value::from("gcp")))
            .collect();
        let config = serde_json::json!({"auths": {}, "credHelpers": map}).to_string();
        std::fs::write(self.docker_config.join("config.json"), &config).unwrap();
        std::fs::write(&self.authfile, &config).unwrap();
    }

    /// Runs a client program in the rig's environment.
    pub(crate) fn run(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_command(self.env.program(program, args), stdin)
    }

    /// Like `run`, but the client must succeed.
    pub(crate) fn ok(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.run(program, args, stdin);
        assert_eq!(
            out.code,
            0,
            "{program} {args:?} failed\nstdout: {}\nstderr: {}\nhelper calls: {:?}\nregistry log tail:\n{}",
            out.stdout,
            out.stderr,
            self.helper_calls(),
            tail(&self.registry.log(), 40)
        );
        out
    }

    /// `docker login -u USER --password-stdin HOST` to the rig's registry; it must succeed.
    pub(crate) fn docker_login(&self, user: &str, secret: &[u8]) -> Output {
        self.ok(
            "docker",
            &["login", "-u", user, "--password-stdin", &self.host],
            secret,
        )
    }

    /// Runs the helper itself (not through a client) and returns its stdout; it must succeed.
    pub(crate) fn ok_helper(&self, args: &[&str]) -> String {
        let out = self.env.run(args, b"");
        assert_eq!(
            out.code, 0,
            "helper {args:?}: {} {}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    pub(crate) fn image_ref(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            realm: self.realm.count(),
            calls: self.helper_calls().len(),
            google: self.google.count(),
        }
    }

    pub(crate) fn helper_calls(&self) -> Vec<HelperCall> {
        read_helper_calls(&self.calls)
    }

    pub(crate) fn helper_calls_since(&self, mark: Mark) -> Vec<HelperCall> {
        self.helper_calls().split_off(mark.calls)
    }

    /// The Basic credentials of each token request since `mark` (`None`: anonymous).
    pub(crate) fn realm_logins_since(&self, mark: Mark) -> Vec<Option<(String, String)>> {
        self.realm.requests()[mark.realm..]
            .iter()
            .map(basic_credentials)
            .collect()
    }

    pub(crate) fn google_requests_since(&self, mark: Mark) -> usize {
        self.google.count() - mark.google
    }

    /// Every token request since `mark` presented `oauth2accesstoken` with a token the Google
    /// stand-in issued and the helper handed out since `mark` (in a `get` answer, or printed by
    /// `print-access-token`); returns the distinct tokens, in order. This is how a test knows
    /// the helper's token reached the registry.
    pub(crate) fn helper_tokens_used_since(&self, mark: Mark) -> Vec<String> {
        let (tokens, anonymous) = self.helper_tokens_and_anonymous_since(mark);
        assert_eq!(anonymous, 0, "no anonymous token request");
        tokens
    }

    /// Like `helper_tokens_used_since`, for clients that first ask the realm anonymously
    /// (BuildKit's resolver does); also returns how many requests were anonymous.
    pub(crate) fn helper_tokens_and_anonymous_since(&self, mark: Mark) -> (Vec<String>, usize) {
        let logins = self.realm_logins_since(mark);
        let calls = self.helper_calls_since(mark);
        let mut tokens = Vec::new();
        let mut anonymous = 0;
        for login in logins {
            let Some((user, token)) = login else {
                anonymous += 1;
                continue;
            };
            assert_eq!(user, "oauth2accesstoken");
            assert!(
                self.issued.lock().unwrap().contains(&token),
                "{token} was issued"
            );
            assert!(
                calls
                    .iter()
                    .any(|c| c.code == 0 && c.output.contains(&token)),
                "{token} came from the helper: {calls:?}"
            );
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        assert!(!tokens.is_empty(), "the client signed in to the realm");
        (tokens, anonymous)
    }

    /// The hosts of the helper calls since `mark`, each a successful `get`, sorted and without
    /// repeats.
    pub(crate) fn hosts_got_since(&self, mark: Mark) -> Vec<String> {
        let calls = self.helper_calls_since(mark);
        assert!(!calls.is_empty(), "the client ran the helper");
        for call in &calls {
            assert_eq!((call.verb.as_str(), call.code), ("get", 0), "{call:?}");
            assert!(call.output.contains("\"Username\":\"oauth2accesstoken\""));
        }
        let mut hosts: Vec<String> = calls.into_iter().map(|c| c.input).collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The manifest (or index) of `repo:tag` as the registry holds it, read with a pull token
    /// of the test's own (not the helper's). `tag` may be a digest.
    pub(crate) fn stored_manifest(&self, repo: &str, tag: &str) -> serde_json::Value {
        let token = "ya29.e2e-reader-token";
        self.issued.lock().unwrap().insert(token.to_owned());
        let basic = STANDARD.encode(format!("oauth2accesstoken:{token}"));
        let reply = http(
            &self.realm.host(),
            "GET",
            &format!("/token?service={SERVICE}&scope=repository:{repo}:pull"),
            &[("Authorization".into(), format!("Basic {basic}"))],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 200);
        let bearer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let reply = http(
            &self.host,
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[
                (
                    "Authorization".into(),
                    format!("Bearer {}", bearer["token"].as_str().unwrap()),
                ),
                ("Accept".into(), accept.into()),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{repo}:{tag} is in the registry");
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// Pushes a fresh test image without involving the helper: with a token registered by the
    /// test itself, as a separate, already authorised pusher would.
    pub(crate) fn seed_image(&self, repo_tag: &str) -> OciImage {
        let seed_token = "ya29.e2e-seed-token";
        self.issued.lock().unwrap().insert(seed_token.to_owned());
        let layout = self
            .env
            .path(&format!("seed-{}", repo_tag.replace(['/', ':'], "-")));
        let tag = repo_tag.rsplit_once(':').unwrap().1;
        let image = write_oci_image(&layout, tag, "hello from the e2e seed\n");
        let creds = format!("oauth2accesstoken:{seed_token}");
        self.ok(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{}", self.image_ref(repo_tag)),
            ],
            b"",
        );
        image
    }

    /// Puts a test image straight into the registry's storage, as a push would leave it: no
    /// client and no token involved (skopeo as root also writes a blob cache under
    /// /var/lib/containers, which the daemon tests keep clear of).
    pub(crate) fn store_image(&self, repo_tag: &str) -> OciImage {
        self.store_with(repo_tag, |layout, tag| {
            write_oci_image(layout, tag, "hello from the stored image\n")
        })
    }

    /// Like `store_image`, with an image that can run (busybox): for builds that `RUN`.
    pub(crate) fn store_busybox(&self, repo_tag: &str) -> OciImage {
        self.store_with(repo_tag, write_busybox_image)
    }

    fn store_with(&self, repo_tag: &str, write: impl FnOnce(&Path, &str) -> OciImage) -> OciImage {
        let layout = self
            .env
            .path(&format!("stored-{}", repo_tag.replace(['/', ':'], "-")));
        let (repo, tag) = repo_tag.rsplit_once(':').unwrap();
        let image = write(&layout, tag);
        let storage = self.registry.dir.path().join("storage");
        store_in_registry_storage(&storage, &layout, &image, repo, tag);
        image
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
