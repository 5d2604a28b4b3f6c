//! The test server and the client-side helpers every test shares.
//!
//! [`TestServer::start`] runs the real server (`pinfold_server::Server`) on `127.0.0.1:0` over a
//! fresh temporary data directory and waits (bounded) until `/healthz` answers. Dropping it
//! stops the server. Helpers push blobs, images and manifests the way a client does, and
//! [`assert_error`] checks the `/v2/` error envelope the spec requires.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pinfold_mirror::MirrorConfig;
use pinfold_oci::{Digest, DigestAlgorithm};
use pinfold_server::{AuthSettings, Server, ServerConfig, ServerError};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// How long the server gets to answer `/healthz` after it is spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped server gets to finish and close its database.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A running Pinfold server over its own temporary data directory.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// A client that follows no redirects.
    pub client: Client,
    config: ServerConfig,
    mirror: MirrorConfig,
    auth: (AuthSettings, Option<String>),
    dir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose configuration `configure` adjusts first.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_mirror_with(MirrorConfig::default(), configure).await
    }

    /// A server over `dir` as its data directory (e.g. one inside a directory the test
    /// watches).
    pub async fn start_in_dir(dir: TempDir) -> TestServer {
        TestServer::start_in(dir, ServerConfig::default(), MirrorConfig::default()).await
    }

    /// A server mirroring `mirror`'s upstreams.
    pub async fn start_mirror(mirror: MirrorConfig) -> TestServer {
        TestServer::start_mirror_with(mirror, |_| {}).await
    }

    /// A server mirroring `mirror`'s upstreams, with the configuration `configure` adjusts.
    pub async fn start_mirror_with(
        mirror: MirrorConfig,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let config = configured(configure);
        let dir = tempfile::tempdir().expect("create a temporary data directory");
        TestServer::start_in(dir, config, mirror).await
    }

    /// A server with users and permissions; `client` sends `authorization` (an
    /// `Authorization` header value) on every request, so the push helpers work.
    pub async fn start_with_auth(auth: AuthSettings, authorization: Option<String>) -> TestServer {
        TestServer::start_with_auth_and(auth, authorization, |_| {}).await
    }

    /// As [`start_with_auth`](Self::start_with_auth), with the configuration `configure`
    /// adjusts.
    pub async fn start_with_auth_and(
        auth: AuthSettings,
        authorization: Option<String>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let config = configured(configure);
        let dir = tempfile::tempdir().expect("create a temporary data directory");
        TestServer::start_full(dir, config, MirrorConfig::default(), (auth, authorization)).await
    }

    /// A server with users and permissions that mirrors `mirror`'s upstreams.
    pub async fn start_with_auth_and_mirror(
        auth: AuthSettings,
        authorization: Option<String>,
        mirror: MirrorConfig,
    ) -> TestServer {
        let config = configured(|_| {});
        let dir = tempfile::tempdir().expect("create a temporary data directory");
        TestServer::start_full(dir, config, mirror, (auth, authorization)).await
    }

    async fn start_in(dir: TempDir, config: ServerConfig, mirror: MirrorConfig) -> TestServer {
        TestServer::start_full(dir, config, mirror, (AuthSettings::default(), None)).await
    }

    async fn start_full(
        dir: TempDir,
        config: ServerConfig,
        mirror: MirrorConfig,
        auth: (AuthSettings, Option<String>),
    ) -> TestServer {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("a literal address");
        let server = Server::bind(listen, dir.path(), &Default::default(), &config, &mirror)
            .await
            .expect("server binds and opens its data directory")
            .with_auth(auth.0.clone());
        let addr = server.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = &auth.1 {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                value.parse().expect("a header value"),
            );
        }
        let mut builder = Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        // Over TLS the (self-signed) certificate served is the client's only root.
        let scheme = match &config.tls_cert {
            Some(cert) => {
                let pem = std::fs::read(cert).expect("read the test certificate");
                builder = builder.tls_built_in_root_certs(false).add_root_certificate(
                    reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"),
                );
                "https"
            }
            None => "http",
        };
        let client = builder.build().expect("reqwest client");
        let base = format!("{scheme}://{addr}");
        let started = std::time::Instant::now();
        loop {
            match client.get(format!("{base}/healthz")).send().await {
                Ok(r) if r.status() == StatusCode::OK => break,
                _ if started.elapsed() > STARTUP_DEADLINE => {
                    panic!("server on {addr} did not answer /healthz within {STARTUP_DEADLINE:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        TestServer {
            base,
            addr,
            client,
            config,
            mirror,
            auth,
            dir: Some(dir),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops this server (waiting until it has closed its database) and starts a new one on
    /// the same data directory, on a new port.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let dir = self.dir.take().expect("data directory");
        TestServer::start_full(
            dir,
            self.config.clone(),
            self.mirror.clone(),
            self.auth.clone(),
        )
        .await
    }

    /// As [`TestServer::restart`], with `configure` adjusting the configuration first (rules
    /// that take effect only at start, such as `[[retention]]`).
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        configure(&mut self.config);
        self.restart().await
    }

    /// Stops this server for good (an upstream going away).
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_DEADLINE, task)
                .await
                .expect("server stops within the deadline")
                .expect("server task did not panic")
                .expect("server ran without error");
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("data directory").path()
    }

    /// Upload files under `uploads/` and temporary files (`.tmp-*`) under `blobs/`: what a
    /// failed or abandoned request may leave behind on disk (layout: `pinfold-store` docs).
    pub fn leftovers(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>, all: bool) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out, all);
                } else if all || entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir().join("uploads"), &mut out, true);
        walk(&self.data_dir().join("blobs"), &mut out, false);
        out
    }

    /// `path` (starting with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `Location` header value made absolute (the spec lets it be relative or absolute).
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    /// The JSON body of a GET of `path` (whatever the status).
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// The body of a GET of `path` as text (whatever the status).
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    pub fn head(&self, path: &str) -> RequestBuilder {
        self.client.head(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.client.put(self.url(path))
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.client.patch(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// Opens an upload session and returns its absolute location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .post(&format!("/v2/{repo}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .expect("POST upload");
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "POST /blobs/uploads/");
        self.resolve(&header(&resp, "location").expect("Location on 202"))
    }

    /// Pushes a blob monolithically (POST, then PUT with the whole body) and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = sha256(bytes);
        let location = self.start_upload(repo).await;
        let resp = self
            .client
            .put(with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT upload");
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT upload of {digest}");
        digest
    }

    /// PUTs a manifest and returns the answer, whatever it is.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.put(&format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// PUTs a manifest and asserts it was created with the expected digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let resp = self.put_manifest(repo, reference, media_type, bytes).await;
        let status = resp.status();
        let digest = sha256(bytes);
        if status != StatusCode::CREATED {
            let body = resp.text().await.unwrap_or_default();
            panic!("PUT manifest {repo}:{reference} answered {status}: {body}");
        }
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
        digest
    }

    /// Pushes the config and layers of `image` to `repo`.
    pub async fn push_image_blobs(&self, repo: &str, image: &Image) {
        self.push_blob(repo, &image.config).await;
        for layer in &image.layers {
            self.push_blob(repo, layer).await;
        }
    }

    /// Pushes a fresh random image (config, two layers, OCI manifest) under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str) -> Image {
        let image = Image::random();
        self.push_image_blobs(repo, &image).await;
        self.push_manifest(repo, reference, OCI_MANIFEST, &image.manifest)
            .await;
        image
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An image built in the test: config and layer bytes and its OCI manifest.
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl Image {
    /// A random image with two layers.
    pub fn random() -> Image {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Env": [format!("NONCE={}", hex(&random_bytes(8)))]},
        }))
        .expect("config JSON");
        let layers = vec![random_bytes(1000), random_bytes(3000)];
        let manifest = oci_manifest(
            descriptor(OCI_CONFIG, &config),
            layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect(),
        );
        let digest = sha256(&manifest);
        Image {
            config,
            layers,
            manifest,
            digest,
        }
    }

    /// A descriptor of this image's manifest.
    pub fn descriptor(&self) -> Value {
        descriptor(OCI_MANIFEST, &self.manifest)
    }
}

/// `{"mediaType","digest","size"}` of `bytes`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": sha256(bytes).to_string(),
        "size": bytes.len(),
    })
}

/// An OCI image manifest (compact JSON) over `config` and `layers`.
pub fn oci_manifest(config: Value, layers: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .expect("manifest JSON")
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::sha256(bytes)
}

pub fn sha512(bytes: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha512, bytes)
}

/// `location` with `digest=` added to its query (the location may already carry one).
pub fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// The text of a response header.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

/// Random bytes (splitmix64 seeded from the clock and a counter: no extra dependency).
pub fn random_bytes(len: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use pinfold_oci::media_type::essence;

/// Asserts an error answer: `status`, `Content-Type: application/json`, and the spec's envelope
/// `{"errors":[{"code","message",...}]}` whose first code is `code`. Returns the envelope.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let got = resp.status();
    let url = resp.url().to_string();
    let content_type = header(&resp, "content-type");
    let body = resp.bytes().await.expect("error body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "status of {url}; body {text}");
    assert_eq!(
        content_type.as_deref().map(essence).as_deref(),
        Some("application/json"),
        "Content-Type of the {status} from {url}"
    );
    let envelope: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("error body of {url} is not JSON ({e}): {text}"));
    check_envelope(&envelope, &text);
    assert_eq!(
        envelope["errors"][0]["code"].as_str(),
        Some(code),
        "error code from {url}: {text}"
    );
    envelope
}

/// The envelope rules of distribution-spec "Error Codes": an `errors` array of objects whose
/// `code` has only uppercase letters and underscores and whose `message`, if present, is a
/// string.
pub fn check_envelope(envelope: &Value, text: &str) {
    let errors = envelope["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {text}"));
    assert!(!errors.is_empty(), "empty errors array: {text}");
    for e in errors {
        let code = e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("code is not a string: {text}"));
        assert!(
            !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "code {code:?} is not uppercase letters and underscores"
        );
        if let Some(m) = e.get("message") {
            assert!(m.is_string(), "message is not a string: {text}");
        }
    }
}

/// Asserts the answer to a HEAD that failed: `status` and no body.
pub async fn assert_head_error(resp: Response, status: StatusCode) {
    assert_eq!(resp.status(), status, "HEAD {}", resp.url());
    let body = resp.bytes().await.expect("HEAD body");
    assert!(body.is_empty(), "HEAD error carries a body: {body:?}");
}

/// An HTTP response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error code of a JSON error body.
    pub fn error_code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "raw error body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        });
        check_envelope(&v, &String::from_utf8_lossy(&self.body));
        v["errors"][0]["code"]
            .as_str()
            .expect("code string")
            .to_owned()
    }
}

/// Sends `request` (a whole HTTP/1.1 request, which should say `Connection: close`) over a new
/// connection and reads the answer until the server closes it. Used where a client library would
/// normalise the URL (`..` segments) or to control exactly what goes on the wire.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("server answers and closes within 10 s")
        .expect("read answer");
    parse_response(&buf)
}

/// Connects, sends `head` (request line and headers, ending in a blank line) and `partial_body`,
/// then closes the connection without sending the rest: a client that went away mid-upload.
pub async fn send_partial_and_close(addr: SocketAddr, head: &str, partial_body: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(partial_body).await.expect("write body");
    stream.flush().await.expect("flush");
    // Let the server start reading the body before the connection goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&rest[..end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
}

/// The default server configuration as `configure` adjusts it.
fn configured(configure: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = ServerConfig::default();
    configure(&mut config);
    config
}

/// Waits (at most 10 s, polling) until `done` holds; fails the test naming `what` otherwise.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
