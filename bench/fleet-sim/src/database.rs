//! `--postgres BASE_URL`: a fresh PostgreSQL database for the started control plane, created
//! with `psql` as the e2e tests do (`tests/src/database.rs`) and dropped (`WITH (FORCE)`) at the
//! end; and what that server did during a run, read from its statistics views and `/proc`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Command;

use crate::control_plane::{clock_ticks, cpu_time_of};

/// A database made for one run.
#[derive(Debug)]
pub struct FreshPostgres {
    base: String,
    name: String,
    url: String,
    clock_ticks: u64,
}

/// The server's figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct PgSnapshot {
    /// CPU time of each backend connected to the database (the control plane's pool).
    pub backends: HashMap<u32, Duration>,
    /// `pg_current_wal_lsn()` as a byte position.
    pub wal_lsn: u64,
    /// `pg_stat_database` of the database (flushed by backends at most once a second).
    pub commits: u64,
    pub rows_inserted: u64,
    pub rows_updated: u64,
}

/// What the server did between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct PgDelta {
    /// CPU of the database's backends (those alive at the end; ones that appeared meanwhile
    /// count from their start).
    pub backend_cpu: Duration,
    pub backends: usize,
    pub wal_bytes: u64,
    pub commits: u64,
    pub rows_inserted: u64,
    pub rows_updated: u64,
}

impl FreshPostgres {
    /// Creates `fleet_sim_<pid>_<unix s>` on the server of `base`
    /// (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub async fn create(base: &str) -> anyhow::Result<Self> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("fleet_sim_{}_{unix}", std::process::id());
        psql(base, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name} on {base}"))?;
        Ok(Self {
            base: base.to_owned(),
            url: with_database(base, &name)
                .with_context(|| format!("the database URL {base:?}"))?,
            name,
            clock_ticks: clock_ticks(),
        })
    }

    /// The `--database-url` for the control plane.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (best effort: a leftover one only costs disk space).
    pub async fn drop_database(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = psql(&self.base, &sql).await {
            eprintln!("fleet-sim: warning: {error:#}");
        }
    }

    /// The server's figures now (`None` when psql fails).
    pub async fn snapshot(&self) -> Option<PgSnapshot> {
        let sql = "SELECT pg_current_wal_lsn(), \
                   (SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity \
                    WHERE datname = current_database() AND pid <> pg_backend_pid()), \
                   xact_commit, tup_inserted, tup_updated \
                   FROM pg_stat_database WHERE datname = current_database()";
        let out = psql(&self.url, sql).await.ok()?;
        let fields: Vec<&str> = out.trim().split('|').collect();
        let [lsn, pids, commits, inserted, updated] = fields[..] else {
            return None;
        };
        let backends = pids
            .split(',')
            .filter_map(|pid| pid.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, cpu_time_of(pid, self.clock_ticks)?)))
            .collect();
        Some(PgSnapshot {
            backends,
            wal_lsn: parse_lsn(lsn)?,
            commits: commits.parse().ok()?,
            rows_inserted: inserted.parse().ok()?,
            rows_updated: updated.parse().ok()?,
        })
    }
}

impl PgSnapshot {
    /// From `self` (earlier) to `later`.
    pub fn delta(&self, later: &PgSnapshot) -> PgDelta {
        let backend_cpu = later
            .backends
            .iter()
            .map(|(pid, cpu)| {
                cpu.saturating_sub(self.backends.get(pid).copied().unwrap_or_default())
            })
            .sum();
        PgDelta {
            backend_cpu,
            backends: later.backends.len(),
            wal_bytes: later.wal_lsn.saturating_sub(self.wal_lsn),
            commits: later.commits.saturating_sub(self.commits),
            rows_inserted: later.rows_inserted.saturating_sub(self.rows_inserted),
            rows_updated: later.rows_updated.saturating_sub(self.rows_updated),
        }
    }
}

/// `16/B374D848` → its byte position.
fn parse_lsn(lsn: &str) -> Option<u64> {
    let (high, low) = lsn.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) + u64::from_str_radix(low, 16).ok()?)
}

/// `base` with its database name (the URL path) replaced by `name`.
fn with_database(base: &str, name: &str) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(base)?;
    url.set_path(name);
    Ok(url.into())
}

/// Runs one statement with `psql -At`; its output.
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run psql")?;
    if !output.status.success() {
        anyhow::bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{parse_lsn, with_database};

    #[test]
    fn urls_and_lsns() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://h:5432/db?sslmode=disable", "x").unwrap(),
            "postgres://h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert_eq!(parse_lsn("0/10"), Some(16));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("nonsense"), None);
    }
}
