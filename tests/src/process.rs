//! A spawned binary with its log file (stdout and stderr together).
//!
//! The child is killed by its own PID (`Child::kill`, SIGKILL) and reaped on `kill`, before a
//! respawn, and on drop. While a test panics, the drop also prints the tail of the log, so a failed
//! assertion shows what every process was saying.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Lines of log printed when a test fails.
const FAILURE_TAIL_LINES: usize = 40;

/// A child process spawned from a fixed command line, respawnable.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Spawns `program args…` with its output appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Self {
        let mut process = Process {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args,
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

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()))
}
