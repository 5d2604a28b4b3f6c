//! Registry credentials, and where they come from: explicit, or the Docker client's
//! `config.json` (`auths`, `credHelpers`, `credsStore`) so `pinfold diff`/`lock` work wherever
//! `docker login` was done.
//!
//! Secrets never reach a log or an error: [`Credentials`] implements `Debug` by hand, helper
//! output is never quoted in errors, and JSON errors are reported without the input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::ClientError;

/// A username and password (or personal access token) sent as HTTP Basic credentials, to the
/// registry or to its token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a username and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username (not secret).
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// The `Authorization` header value that sends these credentials as HTTP Basic (for the
    /// callers that talk to a registry's own API beside the distribution protocol).
    pub fn basic_authorization(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How long a credential helper may run before it is killed: helpers talk to keychains and
/// may prompt, and a pull must not hang on one.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys Docker uses in `config.json` for Docker Hub, whose API host differs from its name.
const DOCKER_HUB_KEYS: [&str; 4] = [
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The Docker client's configuration directory: where `config.json` is looked up.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    dir: PathBuf,
    helper_dir: Option<PathBuf>,
    helper_timeout: Duration,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG`, else `$HOME/.docker`; `None` when neither variable is set.
    pub fn from_env() -> Option<DockerConfig> {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
        };
        Some(DockerConfig::in_dir(dir))
    }

    /// The configuration in `dir` (which holds `config.json`).
    pub fn in_dir(dir: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            dir: dir.into(),
            helper_dir: None,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// Runs `docker-credential-<name>` from `dir` instead of looking it up on `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfig {
        self.helper_dir = Some(dir.into());
        self
    }

    /// Kills a credential helper that has not answered within `timeout`.
    pub fn with_helper_timeout(mut self, timeout: Duration) -> DockerConfig {
        self.helper_timeout = timeout;
        self
    }

    /// The credentials configured for `registry` (a host such as `ghcr.io` or
    /// `127.0.0.1:5000`; `docker.io` finds Docker Hub's entry): from `credHelpers[registry]`,
    /// else `credsStore`, else `auths`. `Ok(None)` when there is no config file or no entry,
    /// and when a helper says it has no credentials for the host.
    ///
    /// # Errors
    ///
    /// [`ClientError::DockerConfig`] for an unreadable or malformed file or `auth` field;
    /// [`ClientError::CredentialHelper`] when a helper cannot run, times out or answers
    /// something that is not its JSON.
    pub async fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, ClientError> {
        let path = self.dir.join("config.json");
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config_error(&path, &e.to_string())),
        };
        let config: ConfigFile = serde_json::from_slice(&text)
            // serde_json's message holds a position, not the input, so no secret leaks.
            .map_err(|e| config_error(&path, &e.to_string()))?;
        let keys = candidate_keys(registry);
        // credHelpers keys are host names, but Docker Hub's may be its legacy URL.
        let helper = config
            .cred_helpers
            .iter()
            .find(|(k, _)| keys.contains(&normalize_key(k)))
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref());
        if let Some(helper) = helper {
            // The helper is asked with the key Docker itself would use.
            let server = if is_docker_hub(registry) {
                DOCKER_HUB_KEYS[0]
            } else {
                registry
            };
            if let Some(creds) = self.run_helper(helper, server).await? {
                return Ok(Some(creds));
            }
        }
        for (key, entry) in &config.auths {
            if keys.contains(&normalize_key(key)) {
                return entry_credentials(entry, &path).map(Some);
            }
        }
        Ok(None)
    }

    async fn run_helper(
        &self,
        helper: &str,
        server: &str,
    ) -> Result<Option<Credentials>, ClientError> {
        let fail = |reason: String| ClientError::CredentialHelper {
            helper: helper.to_owned(),
            reason,
        };
        if helper.is_empty()
            || !helper
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(fail("helper name is not a plain program name".into()));
        }
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut child = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        let work = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A helper may exit without reading (it has nothing for anyone): a broken pipe
                // here is not the failure; its exit status and output tell.
                match stdin.write_all(server.as_bytes()).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
                // Dropping stdin closes it, which is how the helper knows the host is complete.
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(self.helper_timeout, work)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.helper_timeout)))?
            .map_err(|e| fail(format!("I/O error: {e}")))?;
        if !output.status.success() {
            // The helper protocol answers "credentials not found in native keychain" on
            // stdout with a failure status when it has nothing for the host.
            if String::from_utf8_lossy(&output.stdout).contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!("exited with {}", output.status)));
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
            .map_err(|_| fail("answer is not the helper JSON".into()))?;
        if answer.username == "<token>" {
            // An identity token needs the OAuth2 refresh-token flow, which this client does
            // not implement; better no credentials than sending it as a password.
            tracing::warn!(
                helper,
                "credential helper returned an identity token; ignoring it"
            );
            return Ok(None);
        }
        Ok(Some(Credentials::new(answer.username, answer.secret)))
    }
}

fn config_error(path: &Path, reason: &str) -> ClientError {
    ClientError::DockerConfig {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

fn is_docker_hub(registry: &str) -> bool {
    DOCKER_HUB_KEYS.iter().any(|k| normalize_key(k) == registry)
}

fn candidate_keys(registry: &str) -> Vec<&str> {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEYS.iter().map(|k| normalize_key(k)).collect()
    } else {
        vec![registry]
    }
}

/// `auths` keys may be URLs (`https://host/v1/`); Docker compares the host part.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn entry_credentials(entry: &AuthEntry, path: &Path) -> Result<Credentials, ClientError> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Credentials::new(u.clone(), p.clone()));
    }
    let auth = entry
        .auth
        .as_deref()
        .ok_or_else(|| config_error(path, "auths entry has neither auth nor username/password"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| config_error(path, "auth field is not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| config_error(path, "auth field is not UTF-8"))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| config_error(path, "auth field is not user:password"))?;
    Ok(Credentials::new(u, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::new("alice", "s3cret");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn auths_entries_base64_and_plain() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:pa:ss" — the password may contain ':'.
        write(
            dir.path(),
            "config.json",
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"YWxpY2U6cGE6c3M="},
                "ghcr.io":{"username":"bob","password":"tok"},
                "http://127.0.0.1:5000":{"auth":"Ym9ndXM="}
            }}"#,
        );
        let cfg = DockerConfig::in_dir(dir.path());
        let hub = cfg.credentials_for("docker.io").await.unwrap().unwrap();
        assert_eq!((hub.username(), hub.password()), ("alice", "pa:ss"));
        let gh = cfg.credentials_for("ghcr.io").await.unwrap().unwrap();
        assert_eq!((gh.username(), gh.password()), ("bob", "tok"));
        assert!(cfg.credentials_for("quay.io").await.unwrap().is_none());
        // "bogus" has no ':'.
        assert!(matches!(
            cfg.credentials_for("127.0.0.1:5000").await,
            Err(ClientError::DockerConfig { .. })
        ));
    }

    #[tokio::test]
    async fn missing_file_is_no_credentials_and_bad_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DockerConfig::in_dir(dir.path());
        assert!(cfg.credentials_for("ghcr.io").await.unwrap().is_none());
        write(
            dir.path(),
            "config.json",
            r#"{"auths":{"x":{"auth":"c2VjcmV0"#,
        );
        let err = cfg.credentials_for("ghcr.io").await.unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    fn helper_script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn credential_helpers_get_the_host_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        // Echoes the host it was asked about as the username, so the test sees what was sent.
        helper_script(
            dir.path(),
            "echo",
            r#"[ "$1" = get ] || exit 3; read -r host; printf '{"ServerURL":"%s","Username":"%s","Secret":"pw"}' "$host" "$host""#,
        );
        helper_script(
            dir.path(),
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        helper_script(dir.path(), "slow", "sleep 5");
        helper_script(dir.path(), "broken", "echo not json");
        write(
            dir.path(),
            "config.json",
            r#"{"credsStore":"none","credHelpers":{"ghcr.io":"echo","https://index.docker.io/v1/":"echo","slow.io":"slow","bad.io":"broken"},
                "auths":{"quay.io":{"username":"q","password":"p"}}}"#,
        );
        let cfg = DockerConfig::in_dir(dir.path())
            .with_helper_dir(dir.path())
            .with_helper_timeout(Duration::from_millis(500));
        let gh = cfg.credentials_for("ghcr.io").await.unwrap().unwrap();
        assert_eq!((gh.username(), gh.password()), ("ghcr.io", "pw"));
        let hub = cfg.credentials_for("docker.io").await.unwrap().unwrap();
        assert_eq!(hub.username(), "https://index.docker.io/v1/");
        // credsStore has nothing for quay.io, so the auths entry is used.
        let q = cfg.credentials_for("quay.io").await.unwrap().unwrap();
        assert_eq!(q.username(), "q");
        let started = std::time::Instant::now();
        assert!(matches!(
            cfg.credentials_for("slow.io").await,
            Err(ClientError::CredentialHelper { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(4));
        let err = cfg.credentials_for("bad.io").await.unwrap_err();
        assert!(matches!(err, ClientError::CredentialHelper { .. }));
        assert!(!err.to_string().contains("not json"));
    }
}
