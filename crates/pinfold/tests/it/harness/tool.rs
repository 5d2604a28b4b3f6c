//! External tools (skopeo, docker, ...) run with a time limit, failing loudly.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

/// The path of `name` on `PATH`. Panics when it is missing: a real-client test that skips
/// would read as a pass. `package` names the Debian package `.ci/run` installs it from.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH; this test needs it. Install the Debian package \
                 `{package}` (.ci/run does)."
            )
        })
}

/// One command line of an external tool, run with a time limit.
pub struct Tool {
    command: tokio::process::Command,
    display: String,
    timeout: Duration,
}

impl Tool {
    /// `program` with no arguments yet and a 60 s limit.
    pub fn new(program: impl AsRef<OsStr>) -> Tool {
        let program = program.as_ref();
        let mut command = tokio::process::Command::new(program);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Tool {
            command,
            display: program.to_string_lossy().into_owned(),
            timeout: Duration::from_secs(60),
        }
    }

    /// This package's `pinfold` binary, with a 120 s limit (backups, restores and transfers
    /// move whole registries).
    pub fn pinfold() -> Tool {
        Tool::new(env!("CARGO_BIN_EXE_pinfold")).timeout(Duration::from_secs(120))
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Tool {
        self.display.push(' ');
        self.display.push_str(&arg.as_ref().to_string_lossy());
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// Sets an environment variable for the tool.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Tool {
        self.display = format!(
            "{key}={} {}",
            value.as_ref().to_string_lossy(),
            self.display
        );
        self.command.env(key, value);
        self
    }

    /// Replaces the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Tool {
        self.timeout = timeout;
        self
    }

    /// Runs the tool to completion and returns its output whatever its exit status. Panics
    /// if it cannot start or outlives its time limit (it is killed then).
    pub async fn output(mut self) -> ToolOutput {
        let started = std::time::Instant::now();
        let child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", self.display));
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "`{}` did not finish within {:?} (killed)",
                    self.display, self.timeout
                )
            })
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.display));
        eprintln!(
            "ran `{}` in {:.1?}: {}",
            self.display,
            started.elapsed(),
            output.status
        );
        ToolOutput {
            display: self.display,
            output,
        }
    }

    /// Runs the tool and returns its stdout; panics with its output unless it exits 0.
    pub async fn run_ok(self) -> String {
        let result = self.output().await;
        result.assert_success();
        result.stdout()
    }
}

/// What a finished tool printed and how it exited.
pub struct ToolOutput {
    display: String,
    output: Output,
}

impl ToolOutput {
    /// Its exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// Its standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Its standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Panics with the command line, status, stdout and stderr unless it exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.success(),
            "`{}` failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.display,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
    }
}
