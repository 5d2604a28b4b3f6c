//! [`Haproxy`]: Debian's haproxy in front of several `pinfold serve` replicas, round robin
//! without sticky sessions, as a child process owned by one test.
//!
//! The configuration is [`haproxy_config`], the one function that holds its text (the README
//! quotes it as the configuration the tests use). haproxy cannot bind port 0, so the frontend
//! port is picked by binding a loopback listener to port 0 and dropping it; if another process
//! takes that port before haproxy binds it, haproxy exits and a new port is tried (bounded).
//!
//! Every wait is bounded; a proxy that does not come up fails the test with its log.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::tool::require_tool;

/// How long haproxy may take until its frontend answers `/v2/` through every replica.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many frontend ports are tried when haproxy cannot bind the one picked.
const PORT_ATTEMPTS: usize = 5;
/// How many lines of haproxy output (request log, server state changes) are kept.
const LOG_LINES: usize = 4000;

/// The haproxy configuration the tests use: a frontend on `frontend` (`127.0.0.1:<port>`)
/// that sends each request to the next of `replicas` (`127.0.0.1:<port>` each, named
/// `r1`, `r2`, ... in that order) in turn, with no stickiness: consecutive requests of one
/// client, and of one keep-alive connection, go to different replicas. Replicas are checked
/// with `GET /healthz` every second; two failed checks take one out, one good check puts it
/// back; a connection a dead replica refuses is retried on another (`retries 3`,
/// `option redispatch`). Timeouts: 5 s to connect to a replica, 300 s of client or server inactivity (long
/// enough for a large blob upload). haproxy runs in the foreground (no `daemon`; started
/// with `-db`) and logs every request, with the replica that served it, to its stderr.
pub fn haproxy_config(frontend: &str, replicas: &[&str]) -> String {
    let mut text = format!(
        "\
global
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    # A connection refused by a dead replica is retried on another one (requests that reached
    # a replica are not replayed: a PATCH may have been half applied).
    retries 3
    option redispatch

frontend registry
    bind {frontend}
    default_backend pinfold

backend pinfold
    balance roundrobin
    option httpchk GET /healthz
"
    );
    for (i, replica) in replicas.iter().enumerate() {
        writeln!(
            text,
            "    server r{} {replica} check inter 1s fall 2 rise 1",
            i + 1
        )
        .expect("write to a String");
    }
    text
}

/// A running haproxy in front of replicas. Dropping it kills the process.
pub struct Haproxy {
    _dir: TempDir,
    config: PathBuf,
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Haproxy {
    /// Starts haproxy in front of `replicas` (`127.0.0.1:<port>` each, e.g.
    /// [`TestServer::host_port`](super::TestServer::host_port)) and waits until `GET /v2/`
    /// through the frontend has answered 200 as many times in a row as there are replicas.
    pub async fn start(replicas: &[&str]) -> Haproxy {
        assert!(!replicas.is_empty(), "haproxy needs at least one replica");
        let program = require_tool("haproxy", "haproxy");
        let dir = tempfile::Builder::new()
            .prefix("pinfold-it-haproxy-")
            .tempdir()
            .expect("create haproxy dir");
        let mut proxy = Haproxy {
            config: dir.path().join("haproxy.cfg"),
            _dir: dir,
            child: None,
            addr: String::new(),
            log: Arc::new(Mutex::new(VecDeque::new())),
        };
        let mut failures = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            proxy.addr = free_loopback_addr();
            std::fs::write(&proxy.config, haproxy_config(&proxy.addr, replicas))
                .expect("write haproxy.cfg");
            let mut child = Command::new(&program)
                .arg("-f")
                .arg(&proxy.config)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
            spawn_log_reader(child.stdout.take().expect("stdout"), proxy.log.clone());
            spawn_log_reader(child.stderr.take().expect("stderr"), proxy.log.clone());
            proxy.child = Some(child);
            match proxy.wait_ready(replicas.len()).await {
                Ok(()) => return proxy,
                // Most likely another process took the port first: try another one.
                Err(why) if proxy.child.is_none() && attempt < PORT_ATTEMPTS => {
                    eprintln!("haproxy on {}: {why}; trying another port", proxy.addr);
                    let _ = write!(failures, "\nattempt {attempt} on {}: {why}", proxy.addr);
                }
                Err(why) => {
                    let _ = write!(failures, "\nattempt {attempt} on {}: {why}", proxy.addr);
                    break;
                }
            }
        }
        panic!(
            "haproxy did not come up{failures}\n--- {} ---\n{}--- haproxy log ---\n{}",
            proxy.config.display(),
            std::fs::read_to_string(&proxy.config).unwrap_or_default(),
            proxy.log_tail()
        );
    }

    /// `http://127.0.0.1:<port>`, the frontend.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, the frontend as image references and skopeo want it.
    pub fn host_port(&self) -> &str {
        &self.addr
    }

    /// The last lines haproxy printed (one per request, and server state changes).
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().expect("haproxy log lock");
        let mut text = String::new();
        for line in log.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// How many logged requests each replica (`r1`, `r2`, ...) served, from the request log.
    pub fn requests_per_replica(&self) -> BTreeMap<String, usize> {
        let log = self.log.lock().expect("haproxy log lock");
        let mut counts = BTreeMap::new();
        for line in log.iter() {
            // `<client> [<date>] registry pinfold/r2 0/0/0/1/1 200 ...`
            if let Some(rest) = line.split(" registry pinfold/").nth(1) {
                let server: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                *counts.entry(server).or_insert(0) += 1;
            }
        }
        counts
    }

    async fn wait_ready(&mut self, replicas: usize) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build HTTP client");
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut in_a_row = 0;
        let mut last = String::from("no request yet");
        for _attempt in 0..2000 {
            if Instant::now() > deadline {
                return Err(format!(
                    "GET {url} did not answer 200 {replicas} times in a row within \
                     {READY_TIMEOUT:?} (last: {last})"
                ));
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("haproxy exited ({status})"));
            }
            match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => {
                    in_a_row += 1;
                    if in_a_row >= replicas {
                        return Ok(());
                    }
                    continue;
                }
                Ok(response) => last = format!("status {}", response.status()),
                Err(e) => last = format!("error {e}"),
            }
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("GET {url}: too many attempts (last: {last})"))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- haproxy log ({}) ---\n{}", self.addr, self.log_tail());
        }
    }
}

/// `127.0.0.1:<port>` of a port that was free a moment ago.
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

fn spawn_log_reader(pipe: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().expect("haproxy log lock");
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

#[test]
fn haproxy_accepts_the_config_for_replicas() {
    let program = require_tool("haproxy", "haproxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("haproxy.cfg");
    let text = haproxy_config("127.0.0.1:1", &["127.0.0.1:2", "127.0.0.1:3"]);
    assert!(text.contains("    server r2 127.0.0.1:3 check inter 1s fall 2 rise 1\n"));
    std::fs::write(&config, &text).expect("write config");
    let output = Command::new(program)
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .expect("run haproxy -c");
    assert!(
        output.status.success(),
        "haproxy -c rejects the config:\n{text}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
