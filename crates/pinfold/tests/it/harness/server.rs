//! [`TestServer`]: the registry under test, run as a child process on an ephemeral loopback
//! port with a temporary data directory.
//!
//! It runs the real `pinfold` binary (`env!("CARGO_BIN_EXE_pinfold")`) with
//! `serve --listen 127.0.0.1:0 --data-dir <tmp>` and reads the bound address back from the
//! line `pinfold listening on http://127.0.0.1:<port>` on its stdout, so no test ever picks
//! a port. With `PINFOLD_IT_TARGET=distribution` it runs Debian's `docker-registry`
//! (distribution 2.8) instead, configured the same way: a debugging aid to check a test
//! against the reference implementation.
//!
//! Every wait is bounded; a server that does not come up fails the test with its log.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to answer its health check once it listens.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed or terminated server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How many lines of server output are kept for failure messages.
const LOG_LINES: usize = 400;

/// Which registry implementation a [`TestServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `pinfold` binary of this package.
    Pinfold,
    /// Debian's `docker-registry` (distribution 2.8), selected with
    /// `PINFOLD_IT_TARGET=distribution`.
    Distribution,
}

impl Target {
    /// The target chosen by `PINFOLD_IT_TARGET` (`pinfold`, the default, or
    /// `distribution`).
    pub fn from_env() -> Target {
        match std::env::var("PINFOLD_IT_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("pinfold") => Target::Pinfold,
            Ok("distribution") => Target::Distribution,
            Ok(other) => {
                panic!("PINFOLD_IT_TARGET={other:?}: expected `pinfold` or `distribution`")
            }
        }
    }
}

/// A running registry owned by one test. Dropping it kills the process (SIGKILL) and
/// removes its data directory.
pub struct TestServer {
    target: Target,
    data_dir: TempDir,
    /// Holds the distribution config file and anything else that must not sit in the data
    /// directory.
    scratch_dir: TempDir,
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<VecDeque<String>>>,
    client: reqwest::Client,
    /// Extra environment for the server process (e.g. `PINFOLD_META_POSTGRES_URL`).
    env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts the target chosen by `PINFOLD_IT_TARGET` on a fresh data directory.
    pub async fn start() -> TestServer {
        TestServer::start_target(Target::from_env()).await
    }

    /// Starts Pinfold with extra environment variables (its configuration) on a fresh data
    /// directory.
    pub async fn start_with_env(env: &[(&str, &str)]) -> TestServer {
        TestServer::start_configured(Target::Pinfold, env).await
    }

    /// Starts `target` on a fresh data directory and waits until it is healthy.
    pub async fn start_target(target: Target) -> TestServer {
        TestServer::start_configured(target, &[]).await
    }

    async fn start_configured(target: Target, env: &[(&str, &str)]) -> TestServer {
        let mut server = TestServer {
            target,
            data_dir: tempfile::Builder::new()
                .prefix("pinfold-it-data-")
                .tempdir()
                .expect("create data dir"),
            scratch_dir: tempfile::Builder::new()
                .prefix("pinfold-it-scratch-")
                .tempdir()
                .expect("create scratch dir"),
            child: None,
            addr: String::new(),
            log: Arc::new(Mutex::new(VecDeque::new())),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("build HTTP client"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.spawn().await;
        server
    }

    /// Which implementation this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `http://127.0.0.1:<port>`, the current base URL (it changes on restart).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, as image references and skopeo want it.
    pub fn host_port(&self) -> &str {
        &self.addr
    }

    /// The data directory, kept across [`TestServer::restart`].
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A shared HTTP client with a 60 s per-request limit.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    /// The last lines the server printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().expect("server log lock");
        let mut text = String::new();
        for line in log.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Crashes the server: SIGKILL, then waits (bounded) until it has exited.
    pub fn kill(&mut self) {
        self.signal_and_wait(libc::SIGKILL);
    }

    /// Stops the server gracefully: SIGTERM, then waits (bounded) until it has exited, and
    /// returns whether it exited with status 0.
    pub fn terminate(&mut self) -> bool {
        self.signal_and_wait(libc::SIGTERM)
            .map(|status| status.success())
            .unwrap_or(false)
    }

    /// GET `path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// The background worker `name` as `/api/v1/workers` lists it (runs, errors, last error).
    pub async fn worker(&self, name: &str) -> serde_json::Value {
        let workers = self.get_json("/api/v1/workers").await;
        workers
            .as_array()
            .or_else(|| workers["workers"].as_array())
            .and_then(|w| w.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no worker {name} in {workers}"))
    }

    /// Sets one environment variable (configuration) for the next [`restart`](Self::restart).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the server again on the same data directory (killing it first if it still
    /// runs) and waits until it is healthy. The port changes.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server pid {pid} did not exit within {EXIT_TIMEOUT:?} of signal \
                         {signal}\n--- server log ---\n{}",
                        self.log_tail()
                    );
                }
                Err(e) => panic!("waiting for server pid {pid}: {e}"),
            }
        }
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut command = match self.target {
            Target::Pinfold => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_pinfold"));
                command
                    .arg("serve")
                    .arg("--listen")
                    .arg("127.0.0.1:0")
                    .arg("--data-dir")
                    .arg(self.data_dir.path());
                command
            }
            Target::Distribution => {
                let program = super::require_tool("docker-registry", "docker-registry");
                let config = self.scratch_dir.path().join("distribution.yml");
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    \
                         rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
                         127.0.0.1:0\n  secret: pinfold-integration-tests\n",
                        self.data_dir.path().display()
                    ),
                )
                .expect("write distribution config");
                let mut command = Command::new(program);
                command.arg("serve").arg(config);
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.target));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        spawn_log_reader("stdout", stdout, self.log.clone(), addr_tx.clone());
        spawn_log_reader("stderr", stderr, self.log.clone(), addr_tx);
        self.child = Some(child);

        let waited = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(STARTUP_TIMEOUT))
            .await
            .expect("address waiter thread");
        self.addr = match waited {
            Ok(addr) => addr,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{:?} printed no `listening on` line within {STARTUP_TIMEOUT:?}\n--- server log \
                 ---\n{}",
                self.target,
                self.log_tail()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                self.child = None;
                panic!(
                    "{:?} exited ({status:?}) before listening\n--- server log ---\n{}",
                    self.target,
                    self.log_tail()
                )
            }
        };
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        // distribution has no /healthz; its API root answers 200 once it serves.
        let path = match self.target {
            Target::Pinfold => "/healthz",
            Target::Distribution => "/v2/",
        };
        let url = format!("{}{path}", self.url());
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::new();
        for _attempt in 0..1000 {
            if Instant::now() > deadline {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "{:?} exited ({status}) while waiting for {url}\n--- server log ---\n{}",
                    self.target,
                    self.log_tail()
                );
            }
            match self
                .client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return,
                Ok(response) => last = format!("status {}", response.status()),
                Err(e) => last = format!("error {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "GET {url} did not answer 200 within {HEALTH_TIMEOUT:?} (last: {last})\n--- server \
             log ---\n{}",
            self.log_tail()
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {:?} log (data dir {}) ---\n{}",
                self.target,
                self.data_dir.path().display(),
                self.log_tail()
            );
        }
    }
}

/// Copies a child's output into the shared log and reports the first bound address:
/// Pinfold prints `pinfold listening on http://127.0.0.1:<port>`, distribution logs
/// `msg="listening on 127.0.0.1:<port>"`.
fn spawn_log_reader(
    stream: &'static str,
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    addr_tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = parse_listening_line(&line) {
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send(addr);
                }
            }
            let mut log = log.lock().expect("server log lock");
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(format!("[{stream}] {line}"));
        }
    });
}

fn parse_listening_line(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    let port = addr.rsplit(':').next()?;
    (port.parse::<u16>().ok()? != 0).then_some(addr)
}

/// Every regular file under `dir`, recursively (bounded depth; symlinks not followed).
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        assert!(depth < 32, "directory tree too deep at {}", dir.display());
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                walk(&entry.path(), depth + 1, out);
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out);
    out.sort();
    out
}

#[test]
fn listening_lines_of_both_targets_parse() {
    assert_eq!(
        parse_listening_line("pinfold listening on http://127.0.0.1:40123").as_deref(),
        Some("127.0.0.1:40123")
    );
    assert_eq!(
        parse_listening_line(
            r#"time="x" level=info msg="listening on 127.0.0.1:43973" go.version=go1.19.8"#
        )
        .as_deref(),
        Some("127.0.0.1:43973")
    );
    assert_eq!(parse_listening_line("listening on 127.0.0.1:0"), None);
    assert_eq!(parse_listening_line("pinfold data in /tmp/x"), None);
}
