//! The control plane under test: either started here from a binary (temporary SQLite
//! database or a given `--database-url`, free loopback ports, optionally pinned with
//! `taskset`, stopped by PID at the end) or one already running. Reads its resident memory,
//! CPU time and storage writes from `/proc/<pid>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a started control plane may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the temporary directory {path}: {source}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control plane exited during start-up ({status}); see {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("control plane did not answer /healthz within {START_TIMEOUT:?}; see {log}")]
    NotReady { log: PathBuf },
}

/// A control plane the simulator talks to.
#[derive(Debug)]
pub struct ControlPlane {
    xds_url: String,
    admin_url: String,
    pid: Option<u32>,
    /// Set when this process started it: the child and its temporary directory.
    started: Option<(Child, PathBuf)>,
    clock_ticks: u64,
}

impl ControlPlane {
    /// One that is already running (its PID, when given, enables the RSS and CPU figures).
    pub fn external(xds_url: String, admin_url: String, pid: Option<u32>) -> Self {
        Self {
            xds_url,
            admin_url,
            pid,
            started: None,
            clock_ticks: clock_ticks(),
        }
    }

    /// Starts `binary` on `database_url` (default: a temporary SQLite database) with free
    /// loopback ports and waits for `/healthz`; `proxy_token`, when set, is the bootstrap
    /// token proxies must present (passed as `PROXY_TOKEN`, so binaries without that setting
    /// simply ignore it).
    pub async fn start(
        binary: &Path,
        cpus: Option<&str>,
        proxy_token: Option<&str>,
        database_url: Option<&str>,
    ) -> Result<Self, StartError> {
        let dir = std::env::temp_dir().join(format!("fleet-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| StartError::TempDir {
            path: dir.clone(),
            source,
        })?;
        let admin_port = free_port()?;
        let xds_port = free_port()?;
        let log_path = dir.join("control-plane.log");
        let log = std::fs::File::create(&log_path).map_err(|source| StartError::TempDir {
            path: log_path.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| StartError::TempDir {
            path: log_path.clone(),
            source,
        })?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let database_url = database_url.map_or_else(
            || format!("sqlite://{}", dir.join("cp.db").display()),
            str::to_owned,
        );
        command
            .arg("--database-url")
            .arg(database_url)
            .arg("--admin-addr")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--xds-addr")
            .arg(format!("127.0.0.1:{xds_port}"))
            .env(
                "RUST_LOG",
                std::env::var("CP_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(proxy_token.map(|token| ("PROXY_TOKEN", token)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| StartError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        let pid = child.id();
        let mut control_plane = Self {
            xds_url: format!("http://127.0.0.1:{xds_port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            pid,
            started: None,
            clock_ticks: clock_ticks(),
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let health = crate::rest::Admin::new(&control_plane.admin_url, None);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartError::Exited {
                    status,
                    log: log_path,
                });
            }
            if health.healthy().await {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StartError::NotReady { log: log_path });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        control_plane.started = Some((child, dir));
        Ok(control_plane)
    }

    pub fn xds_url(&self) -> &str {
        &self.xds_url
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Resident memory (VmRSS) in KiB, if the PID is known and alive.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// User + system CPU time so far (all threads), if the PID is known and alive.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.pid?, self.clock_ticks)
    }

    /// System (kernel) CPU time so far, if the PID is known and alive.
    pub fn system_cpu_time(&self) -> Option<Duration> {
        Some(cpu_times_of(self.pid?, self.clock_ticks)?.1)
    }

    /// Bytes the process caused to be written to storage so far (`write_bytes` of
    /// `/proc/<pid>/io`: the SQLite file and its journal; not PostgreSQL's writes).
    pub fn storage_write_bytes(&self) -> Option<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid?)).ok()?;
        io.lines()
            .find_map(|line| line.strip_prefix("write_bytes:"))
            .and_then(|rest| rest.trim().parse().ok())
    }

    /// Stops a control plane started here: SIGTERM by PID, up to 5 s, then SIGKILL.
    pub async fn stop(&mut self) {
        let Some((mut child, dir)) = self.started.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// User + system CPU time of process `pid` so far (all threads), 1/`clock_ticks` s resolution.
pub fn cpu_time_of(pid: u32, clock_ticks: u64) -> Option<Duration> {
    let (user, system) = cpu_times_of(pid, clock_ticks)?;
    Some(user + system)
}

/// User and system CPU time of process `pid` so far (all threads).
pub fn cpu_times_of(pid: u32, clock_ticks: u64) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm) ": state is 0, utime 11, stime 12.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = |i: usize| -> Option<Duration> {
        let ticks = fields.get(i)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 1000 / clock_ticks))
    };
    Some((ticks(11)?, ticks(12)?))
}

fn free_port() -> Result<u16, StartError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(StartError::Port)?;
    Ok(listener.local_addr().map_err(StartError::Port)?.port())
}

/// `getconf CLK_TCK` (the unit of /proc/<pid>/stat times); 100 when it cannot be read.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}
