//! A real `docker-registry` (distribution 2.8, Debian's package) on an ephemeral loopback port,
//! and a plain-reqwest pusher to put content in it. The registry under test is never mocked.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pinfold_oci::{media_type, Digest};
use reqwest::StatusCode;

/// A `docker-registry serve` process; killed on drop.
pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    dir: tempfile::TempDir,
}

/// Username and password of the htpasswd-protected registry.
pub const USER: &str = "pinfold";
pub const PASSWORD: &str = "correct horse";

impl DockerRegistry {
    /// An anonymous registry.
    pub fn start() -> DockerRegistry {
        Self::start_with(false, "")
    }

    /// A registry that requires HTTP Basic credentials ([`USER`], [`PASSWORD`]).
    pub fn start_with_htpasswd() -> DockerRegistry {
        Self::start_with(true, "")
    }

    /// A registry whose configuration ends with `auth_yaml` (a top-level `auth:` section).
    pub fn start_with_auth(auth_yaml: &str) -> DockerRegistry {
        Self::start_with(false, auth_yaml)
    }

    fn start_with(htpasswd: bool, auth_yaml: &str) -> DockerRegistry {
        let mut dir = tempfile::tempdir().unwrap();
        let mut auth = auth_yaml.to_owned();
        if htpasswd {
            // distribution's htpasswd backend accepts bcrypt only; cost 4 keeps tests fast.
            let hash = bcrypt::hash(PASSWORD, 4).unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{USER}:{hash}\n")).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: pinfold-test\n    path: {}\n",
                file.display()
            );
        }
        // Binding :0 and releasing can lose the port to someone else before the registry
        // binds it, so a failed start is retried on a fresh port a few times.
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n  secret: pinfold-test-secret\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run docker-registry ({e}): install Debian's docker-registry \
                         package (scripts/test does)"
                    )
                });
            let mut registry = DockerRegistry {
                child,
                addr: addr.clone(),
                dir,
            };
            if registry.wait_ready() {
                return registry;
            }
            last_log = registry.log();
            // Take the temp dir back for the next attempt; the failed child is killed.
            let _ = registry.child.kill();
            let _ = registry.child.wait();
            dir = std::mem::replace(&mut registry.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start in 5 attempts; last log:\n{last_log}");
    }

    /// Up to 10 s for the port to accept connections, or until the process exits.
    fn wait_ready(&mut self) -> bool {
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("registry.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Where distribution keeps the bytes of `digest` (filesystem driver layout).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.encoded();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// A pusher speaking to this registry, with credentials when given.
    pub fn pusher(&self, credentials: Option<(&str, &str)>) -> Pusher {
        Pusher {
            http: reqwest::Client::new(),
            base: format!("http://{}", self.addr),
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            bearer: None,
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes with plain HTTP calls: monolithic blob upload (POST then PUT with the digest) and
/// manifest PUT, as the distribution spec describes them.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    bearer: Option<String>,
}

impl Pusher {
    /// Sends `token` as a bearer token instead of Basic credentials.
    pub fn with_bearer(mut self, token: String) -> Pusher {
        self.bearer = Some(token);
        self
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.bearer, &self.credentials) {
            (Some(t), _) => req.bearer_auth(t),
            (None, Some((u, p))) => req.basic_auth(u, Some(p)),
            (None, None) => req,
        }
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        let resp = self
            .auth(
                self.http
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "start upload");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .auth(self.http.put(format!("{location}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "finish upload");
        digest
    }

    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let resp = self
            .auth(
                self.http
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base)),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap()
        );
    }

    /// Pushes a one-layer OCI image under `tag`: returns (manifest bytes, manifest digest,
    /// layer bytes, layer digest). The manifest is pretty-printed with a trailing newline so
    /// any re-serialisation on the way back would change its digest.
    pub async fn image(&self, repo: &str, tag: &str, layer_len: usize) -> Image {
        let layer: Vec<u8> = (0..layer_len)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
            .collect();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = self.blob(repo, config).await;
        let layer_digest = self.blob(repo, &layer).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
        });
        let mut manifest = serde_json::to_vec_pretty(&manifest).unwrap();
        manifest.push(b'\n');
        self.manifest(repo, tag, media_type::OCI_MANIFEST, &manifest)
            .await;
        Image {
            manifest_digest: Digest::sha256(&manifest),
            manifest,
            layer_digest,
            layer,
        }
    }
}

/// What [`Pusher::image`] pushed.
pub struct Image {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
}

/// Overwrites a stored file with bytes of the same length but different content.
pub fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Like [`corrupt`] but keeps a JSON document valid (one indentation space becomes a tab):
/// distribution parses manifests before serving them and answers 500 for invalid JSON.
pub fn corrupt_json(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(2).position(|w| w == b"  ").unwrap();
    bytes[at] = b'\t';
    std::fs::write(path, bytes).unwrap();
}
