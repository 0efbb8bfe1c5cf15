//! A spawned binary with its log file (stdout and stderr together).
//!
//! The child is killed by its own PID (`Child::kill`, SIGKILL) and reaped on `kill`, before a
//! respawn, and on drop. While a test panics, the drop also prints the tail of the log, so a failed
//! assertion shows what every process was saying.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::scratch::Scratch;
use crate::wait::wait_until;

/// Lines of log printed when a test fails.
const FAILURE_TAIL_LINES: usize = 40;

/// A child process spawned from a fixed command line, respawnable.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    /// Extra environment variables, set on top of the test's own.
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Spawns `program args…` with its output appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Self {
        Self::spawn_with_env(name, program, args, Vec::new(), log)
    }

    /// Like [`Process::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Self {
        let mut process = Process {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args,
            envs,
            log,
            child: None,
        };
        process.respawn();
        process
    }

    /// Kills the running child, if any, and starts the same command again (same log, appended).
    pub fn respawn(&mut self) {
        self.kill();
        let log = open_log(&self.log);
        let stderr = log.try_clone().expect("clone log file handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Plain log files: tracing-subscriber colours its output unless told otherwise.
            .env("NO_COLOR", "1")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL by PID and reap; a no-op when the child is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Some(status)` when the child has exited on its own (or was never started).
    pub fn exited(&mut self) -> Option<Option<ExitStatus>> {
        match &mut self.child {
            None => Some(None),
            Some(child) => child.try_wait().ok().flatten().map(Some),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics with the log tail if the child has exited; `what` says what was expected of it.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({}) while {what}; log {}:\n{}",
                self.name,
                status.map_or("not started".to_owned(), |s| s.to_string()),
                self.log.display(),
                self.log_tail(FAILURE_TAIL_LINES)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} (log {}), last {FAILURE_TAIL_LINES} lines -----\n{}\n----- end of {} -----",
                self.name,
                self.log.display(),
                self.log_tail(FAILURE_TAIL_LINES),
                self.name
            );
        }
    }
}

/// How [`run_to_exit`] ended: the exit code (`None` when the process was still running at the
/// deadline and was killed) and everything it wrote to stdout and stderr.
#[derive(Clone, Debug)]
pub struct Exit {
    pub code: Option<i32>,
    pub output: String,
}

/// Runs `program args…` with `envs` set and waits up to `within` for it to exit on its own;
/// kills it at the deadline.
pub async fn run_to_exit(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    within: Duration,
) -> Exit {
    let scratch = Scratch::new("run");
    let name = program.file_name().map_or_else(
        || "program".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut process = Process::spawn_with_env(
        &name,
        program,
        args.iter().map(|a| a.to_string()).collect(),
        envs.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        scratch.path().join("output.log"),
    );
    let mut status = None;
    let _ = wait_until(within, async || {
        status = process.exited();
        status.is_some()
    })
    .await;
    process.kill();
    Exit {
        code: status.flatten().and_then(|s| s.code()),
        output: process.log_tail(usize::MAX),
    }
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()))
}
