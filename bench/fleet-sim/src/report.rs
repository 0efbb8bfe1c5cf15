//! The figures of one run: per-change results, percentiles over proxies, the summary table
//! (plain text, markdown-compatible) and the same as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::database::PgDelta;
use crate::usage::Totals;

/// One measured change.
#[derive(Debug)]
pub struct ChangeResult {
    pub index: u32,
    pub route: String,
    /// REST write round trip.
    pub put_time: Duration,
    /// Per proxy: change start → ACK sent.
    pub latencies: Vec<Duration>,
    /// Per proxy: bytes received for the change.
    pub bytes_per_proxy: Vec<u64>,
    /// Bytes all streams received between this change's start and its end (cross-check).
    pub stream_bytes_total: u64,
    pub missing: u32,
    /// Control-plane CPU (user + system) from the write to the last ACK.
    pub control_plane_cpu: Option<Duration>,
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    pub proxies: u32,
    pub connections: usize,
    pub routes: u32,
    pub seed_time: Duration,
    pub connect_time: Duration,
    pub initial_bytes_per_proxy: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub idle_cpu: Option<Duration>,
    pub idle_window: Duration,
    pub changes: Vec<ChangeResult>,
    pub stream_errors: (usize, Vec<String>),
    /// `--report-usage`.
    pub usage: Option<UsageResult>,
}

/// Counters of the control plane's `/metrics` (differences between two scrapes).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageMetrics {
    /// `switchyard_usage_batches_total`
    pub batches: f64,
    /// `switchyard_usage_counters_total`
    pub counters: f64,
    /// `switchyard_usage_batches_duplicate_total`
    pub duplicates: f64,
    /// `switchyard_usage_counters_invalid_total`
    pub invalid: f64,
    /// `switchyard_usage_write_failures_total`
    pub write_failures: f64,
    /// `switchyard_report_messages_total`
    pub messages: f64,
    /// `switchyard_usage_writes_total` (transactions, each of the messages waiting then)
    pub writes: f64,
}

impl UsageMetrics {
    /// From `self` (earlier) to `later`.
    pub fn delta(&self, later: &UsageMetrics) -> UsageMetrics {
        UsageMetrics {
            batches: later.batches - self.batches,
            counters: later.counters - self.counters,
            duplicates: later.duplicates - self.duplicates,
            invalid: later.invalid - self.invalid,
            write_failures: later.write_failures - self.write_failures,
            messages: later.messages - self.messages,
            writes: later.writes - self.writes,
        }
    }
}

/// The `--report-usage` phase.
#[derive(Debug)]
pub struct UsageResult {
    pub proxies: u32,
    pub counters_per_batch: u32,
    pub latency_buckets_per_counter: usize,
    pub key_space: u64,
    pub seconds: u32,
    pub database: String,
    pub open_time: Duration,
    /// From the first batch's tick to `--seconds` later: what the rates are over.
    pub window: Duration,
    /// `/metrics` differences over the window, and over the whole phase (through the drain).
    pub window_metrics: Option<UsageMetrics>,
    pub total_metrics: Option<UsageMetrics>,
    pub control_plane_cpu: Option<Duration>,
    /// Of which in the kernel (stime).
    pub control_plane_system_cpu: Option<Duration>,
    /// This process's own CPU over the window (to tell a saturated simulator).
    pub simulator_cpu: Option<Duration>,
    pub storage_write_bytes: Option<u64>,
    pub postgres: Option<PgDelta>,
    pub rss_before_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    /// The control plane's batch count stopped growing after the streams closed.
    pub settled: bool,
    /// Requests of `GET /api/v1/usage` (every route, last hour) at the end.
    pub requests_stored: Option<u64>,
    /// Requests in each batch (the same in all).
    pub requests_per_batch: u64,
    pub totals: Totals,
}

impl UsageResult {
    fn per_s(&self, value: f64) -> f64 {
        value / self.window.as_secs_f64()
    }

    fn cpu_per_wall_s(&self) -> Option<f64> {
        Some(self.control_plane_cpu?.as_secs_f64() / self.window.as_secs_f64())
    }

    fn cpu_per_batch_us(&self) -> Option<f64> {
        let batches = self.window_metrics?.batches;
        (batches > 0.0).then(|| {
            self.control_plane_cpu
                .map(|c| c.as_secs_f64() * 1e6 / batches)
        })?
    }

    fn stored_batches_by_requests(&self) -> Option<f64> {
        Some(self.requests_stored? as f64 / self.requests_per_batch as f64)
    }

    fn lag_ms(&self, p: f64) -> Option<f64> {
        percentile(&self.totals.lags, p).map(ms)
    }

    /// p50 / p99 of `lags`, formatted.
    fn lag_pair(lags: &[Duration]) -> String {
        let f = |p| percentile(lags, p).map_or("-".to_owned(), |d| format!("{:.0}", ms(d)));
        format!("{} / {}", f(50.0), f(99.0))
    }

    /// Human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let dash = || "-".to_owned();
        let mb =
            |kb: Option<u64>| kb.map_or_else(dash, |kb| format!("{:.1} MB", kb as f64 / 1024.0));
        let w = self.window_metrics;
        let _ = writeln!(
            out,
            "\n## fleet-sim --report-usage: {} proxies, 1 batch/s each for {} s, {} counters × {} latency buckets per batch, {}\n",
            self.proxies,
            self.seconds,
            self.counters_per_batch,
            self.latency_buckets_per_counter,
            self.database
        );
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| report streams opened | {} in {:.2} s |",
            self.proxies,
            self.open_time.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| batches sent / acknowledged / **unacknowledged at the end** | {} / {} / **{}** |",
            self.totals.sent, self.totals.acked, self.totals.unacked
        );
        let _ = writeln!(
            out,
            "| batches acknowledged only by a later batch's answer (their write failed, or their answer was dropped) | {} |",
            self.totals.covered
        );
        let _ = writeln!(
            out,
            "| batches held by the database at the end (`GET /api/v1/usage` requests ÷ {} per batch{}) / `switchyard_usage_batches_total` | {} / {} |",
            self.requests_per_batch,
            if self.settled { "" } else { ", not settled" },
            self.stored_batches_by_requests()
                .map_or_else(dash, |b| format!("{b:.0}")),
            self.total_metrics
                .map_or_else(dash, |t| format!("{:.0}", t.batches))
        );
        let _ = writeln!(
            out,
            "| batches stored per second (`switchyard_usage_batches_total`, {:.1} s window) | {} |",
            self.window.as_secs_f64(),
            w.map_or_else(dash, |w| format!("{:.0}", self.per_s(w.batches)))
        );
        let _ = writeln!(
            out,
            "| counter rows upserted per second (`switchyard_usage_counters_total`) | {} |",
            w.map_or_else(dash, |w| format!("{:.0}", self.per_s(w.counters)))
        );
        let _ = writeln!(
            out,
            "| latency rows upserted per second (counters × {} buckets) | {} |",
            self.latency_buckets_per_counter,
            w.map_or_else(dash, |w| format!(
                "{:.0}",
                self.per_s(w.counters * self.latency_buckets_per_counter as f64)
            ))
        );
        let _ = writeln!(
            out,
            "| control-plane CPU per wall second (of which kernel) | {} ({}) |",
            self.cpu_per_wall_s()
                .map_or_else(dash, |c| format!("{c:.3} s/s")),
            self.control_plane_system_cpu
                .map_or_else(dash, |c| format!("{:.3} s/s", self.per_s(c.as_secs_f64())))
        );
        let _ = writeln!(
            out,
            "| control-plane CPU per stored batch | {} |",
            self.cpu_per_batch_us()
                .map_or_else(dash, |c| format!("{c:.0} µs"))
        );
        let _ = writeln!(
            out,
            "| send → ack lag p50 / p99 / max | {} / {} / {} |",
            self.lag_ms(50.0)
                .map_or_else(dash, |v| format!("{v:.1} ms")),
            self.lag_ms(99.0)
                .map_or_else(dash, |v| format!("{v:.1} ms")),
            self.lag_ms(100.0)
                .map_or_else(dash, |v| format!("{v:.1} ms")),
        );
        let quarter = self.seconds.div_ceil(4);
        let _ = writeln!(
            out,
            "| lag p50 / p99 of each proxy's first {quarter} batches → last {quarter} | {} → {} ms |",
            Self::lag_pair(&self.totals.lags_first),
            Self::lag_pair(&self.totals.lags_last),
        );
        let _ = writeln!(
            out,
            "| control-plane RSS before the report streams / at the end of the window | {} / {} |",
            mb(self.rss_before_kb),
            mb(self.rss_end_kb)
        );
        let _ = writeln!(
            out,
            "| control-plane storage writes (`/proc/<pid>/io` write_bytes) | {} |",
            self.storage_write_bytes
                .map_or_else(dash, |b| format!("{:.2} MB/s", self.per_s(b as f64) / 1e6))
        );
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                out,
                "| PostgreSQL backends' CPU per wall second ({} backends) | {:.3} s/s |",
                pg.backends,
                self.per_s(pg.backend_cpu.as_secs_f64())
            );
            let _ = writeln!(
                out,
                "| PostgreSQL commits / rows inserted / rows updated per second (`pg_stat_database`) | {:.0} / {:.0} / {:.0} |",
                self.per_s(pg.commits as f64),
                self.per_s(pg.rows_inserted as f64),
                self.per_s(pg.rows_updated as f64)
            );
            let _ = writeln!(
                out,
                "| PostgreSQL WAL written | {:.2} MB/s |",
                self.per_s(pg.wal_bytes as f64) / 1e6
            );
        }
        if let Some(t) = self.total_metrics {
            let _ = writeln!(
                out,
                "| whole phase: batches stored / duplicates / write failures / invalid counters | {:.0} / {:.0} / {:.0} / {:.0} |",
                t.batches, t.duplicates, t.write_failures, t.invalid
            );
        }
        if let Some(w) = self.window_metrics.filter(|w| w.writes > 0.0) {
            let _ = writeln!(
                out,
                "| usage transactions per second / batches per transaction (`switchyard_usage_writes_total`) | {:.0} / {:.1} |",
                self.per_s(w.writes),
                w.batches / w.writes
            );
        }
        let _ = writeln!(
            out,
            "| longest wait for room in a stream's send queue | {:.1} ms |",
            ms(self.totals.send_blocked_max)
        );
        let _ = writeln!(
            out,
            "| fleet-sim's own CPU per wall second | {} |",
            self.simulator_cpu
                .map_or_else(dash, |c| format!("{:.3} s/s", self.per_s(c.as_secs_f64())))
        );
        let _ = writeln!(
            out,
            "| report stream errors | {} |",
            self.totals.error_count
        );
        out.push('\n');
        out
    }

    /// Machine-readable report.
    pub fn json(&self) -> Value {
        let metrics = |m: Option<UsageMetrics>| {
            m.map(|m| {
                json!({"batches": m.batches, "counters": m.counters, "duplicates": m.duplicates,
                       "invalid": m.invalid, "write_failures": m.write_failures,
                       "messages": m.messages, "writes": m.writes})
            })
        };
        json!({
            "proxies": self.proxies,
            "seconds": self.seconds,
            "counters_per_batch": self.counters_per_batch,
            "latency_buckets_per_counter": self.latency_buckets_per_counter,
            "key_space": self.key_space,
            "database": self.database,
            "open_s": self.open_time.as_secs_f64(),
            "window_s": self.window.as_secs_f64(),
            "sent": self.totals.sent,
            "acked": self.totals.acked,
            "unacked": self.totals.unacked,
            "acked_without_own_answer": self.totals.covered,
            "requests": {"sent": self.totals.requests_sent, "acked": self.totals.requests_acked,
                         "stored": self.requests_stored, "per_batch": self.requests_per_batch,
                         "settled": self.settled},
            "stored_batches_by_requests": self.stored_batches_by_requests(),
            "lag_ms": {"p50": self.lag_ms(50.0), "p99": self.lag_ms(99.0), "max": self.lag_ms(100.0)},
            "lag_ms_first_quarter": {"p50": percentile(&self.totals.lags_first, 50.0).map(ms),
                                     "p99": percentile(&self.totals.lags_first, 99.0).map(ms)},
            "lag_ms_last_quarter": {"p50": percentile(&self.totals.lags_last, 50.0).map(ms),
                                    "p99": percentile(&self.totals.lags_last, 99.0).map(ms)},
            "window_metrics": metrics(self.window_metrics),
            "total_metrics": metrics(self.total_metrics),
            "batches_per_s": self.window_metrics.map(|w| self.per_s(w.batches)),
            "counters_per_s": self.window_metrics.map(|w| self.per_s(w.counters)),
            "control_plane_cpu_s": self.control_plane_cpu.map(|c| c.as_secs_f64()),
            "control_plane_cpu_per_wall_s": self.cpu_per_wall_s(),
            "control_plane_system_cpu_s": self.control_plane_system_cpu.map(|c| c.as_secs_f64()),
            "simulator_cpu_s": self.simulator_cpu.map(|c| c.as_secs_f64()),
            "control_plane_cpu_per_batch_us": self.cpu_per_batch_us(),
            "storage_write_bytes": self.storage_write_bytes,
            "postgres": self.postgres.as_ref().map(|pg| json!({
                "backend_cpu_s": pg.backend_cpu.as_secs_f64(),
                "backends": pg.backends,
                "wal_bytes": pg.wal_bytes,
                "commits": pg.commits,
                "rows_inserted": pg.rows_inserted,
                "rows_updated": pg.rows_updated,
            })),
            "control_plane_rss_kb": {"before": self.rss_before_kb, "end": self.rss_end_kb},
            "send_blocked_max_ms": ms(self.totals.send_blocked_max),
            "stream_errors": {"count": self.totals.error_count, "first": self.totals.errors},
        })
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_f64(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    percentile(&values, 50.0)
}

impl ChangeResult {
    fn sorted(&self) -> Vec<Duration> {
        let mut latencies = self.latencies.clone();
        latencies.sort_unstable();
        latencies
    }

    fn mean_bytes(&self) -> f64 {
        if self.bytes_per_proxy.is_empty() {
            return 0.0;
        }
        self.bytes_per_proxy.iter().sum::<u64>() as f64 / self.bytes_per_proxy.len() as f64
    }

    /// `change 3 sim-00003: 100/100 ACKed, p50 … ms`.
    pub fn one_line(&self, proxies: u32) -> String {
        let sorted = self.sorted();
        let p = |q| percentile(&sorted, q).map_or(f64::NAN, ms);
        format!(
            "change {} {}: {}/{} ACKed, put {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, all {:.1} ms, {:.0} B/proxy, cp cpu {}",
            self.index,
            self.route,
            self.latencies.len(),
            proxies,
            ms(self.put_time),
            p(50.0),
            p(99.0),
            p(100.0),
            self.mean_bytes(),
            self.control_plane_cpu
                .map_or("-".to_owned(), |cpu| format!("{:.0} ms", ms(cpu)))
        )
    }

    fn json(&self) -> Value {
        let sorted = self.sorted();
        let p = |q| percentile(&sorted, q).map(ms);
        json!({
            "index": self.index,
            "route": self.route,
            "put_ms": ms(self.put_time),
            "acked": self.latencies.len(),
            "missing": self.missing,
            "latency_ms": {"p50": p(50.0), "p99": p(99.0), "max": p(100.0)},
            "time_to_all_ms": if self.missing == 0 { p(100.0) } else { None },
            "bytes_per_proxy_mean": self.mean_bytes(),
            "bytes_per_proxy_max": self.bytes_per_proxy.iter().max(),
            "stream_bytes_total": self.stream_bytes_total,
            "control_plane_cpu_ms": self.control_plane_cpu.map(ms),
        })
    }
}

impl Report {
    fn per_proxy_kb(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kb?, self.rss_after_kb?);
        Some((after as f64 - before as f64) / f64::from(self.proxies))
    }

    /// All per-proxy latencies of all changes, sorted.
    fn all_latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .changes
            .iter()
            .flat_map(|c| c.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }

    fn cpu_per_change_ms(&self) -> Option<f64> {
        let cpus: Option<Vec<Duration>> =
            self.changes.iter().map(|c| c.control_plane_cpu).collect();
        let cpus = cpus?;
        if cpus.is_empty() {
            return None;
        }
        Some(cpus.iter().map(|d| ms(*d)).sum::<f64>() / cpus.len() as f64)
    }

    /// Human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let all = self.all_latencies();
        let p = |q| percentile(&all, q).map_or(f64::NAN, ms);
        let time_to_all = median_f64(
            self.changes
                .iter()
                .filter(|c| c.missing == 0)
                .filter_map(|c| c.sorted().last().copied().map(ms))
                .collect(),
        );
        let missing: u32 = self.changes.iter().map(|c| c.missing).sum();
        let bytes = median_f64(self.changes.iter().map(ChangeResult::mean_bytes).collect());
        let mb = |kb: Option<u64>| {
            kb.map_or("-".to_owned(), |kb| format!("{:.1} MB", kb as f64 / 1024.0))
        };
        let _ = writeln!(
            out,
            "\n## fleet-sim: {} proxies over {} HTTP/2 connections, {} routes, {} one-route changes\n",
            self.proxies,
            self.connections,
            self.routes,
            self.changes.len()
        );
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| seed (REST, 1 cluster + {} routes) | {:.1} s |",
            self.routes,
            self.seed_time.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| connect + first sync of all proxies | {:.2} s |",
            self.connect_time.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| first-sync bytes per proxy | {:.0} B |",
            self.initial_bytes_per_proxy
        );
        let _ = writeln!(
            out,
            "| control-plane RSS before / after connecting | {} / {} |",
            mb(self.rss_before_kb),
            mb(self.rss_after_kb)
        );
        let _ = writeln!(
            out,
            "| control-plane RSS per connected proxy | {} |",
            self.per_proxy_kb()
                .map_or("-".to_owned(), |kb| format!("{kb:.1} KB"))
        );
        if !self.changes.is_empty() {
            let _ = writeln!(
                out,
                "| change → ACK, per proxy, all changes: p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
                p(50.0),
                p(99.0),
                p(100.0)
            );
            let _ = writeln!(
                out,
                "| time until all proxies ACKed (median over changes) | {} |",
                time_to_all.map_or("-".to_owned(), |t| format!("{t:.1} ms"))
            );
            let _ = writeln!(out, "| proxy-changes not ACKed in time | {missing} |");
            let _ = writeln!(
                out,
                "| bytes per proxy per change (median over changes) | {} |",
                bytes.map_or("-".to_owned(), |b| format!("{b:.0} B"))
            );
            let _ = writeln!(
                out,
                "| control-plane CPU per change (mean) | {} |",
                self.cpu_per_change_ms()
                    .map_or("-".to_owned(), |c| format!("{c:.1} ms"))
            );
        }
        let _ = writeln!(
            out,
            "| control-plane CPU idle, fleet connected | {} |",
            self.idle_cpu.map_or("-".to_owned(), |c| format!(
                "{:.1} ms per {:.0} s",
                ms(c),
                self.idle_window.as_secs_f64()
            ))
        );
        let _ = writeln!(
            out,
            "| stream errors after connect | {} |",
            self.stream_errors.0
        );
        if let Some(usage) = &self.usage {
            out.push_str(&usage.table());
        }
        if self.changes.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\n| change | route | put ms | ACKed | p50 ms | p99 ms | all ms | B/proxy | cp cpu ms |\n|---|---|---|---|---|---|---|---|---|"
        );
        for change in &self.changes {
            let sorted = change.sorted();
            let q = |x| percentile(&sorted, x).map_or(f64::NAN, ms);
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {}/{} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
                change.index,
                change.route,
                ms(change.put_time),
                change.latencies.len(),
                self.proxies,
                q(50.0),
                q(99.0),
                q(100.0),
                change.mean_bytes(),
                change
                    .control_plane_cpu
                    .map_or("-".to_owned(), |c| format!("{:.0}", ms(c)))
            );
        }
        out.push('\n');
        out
    }

    /// Machine-readable report.
    pub fn json(&self) -> Value {
        let all = self.all_latencies();
        let p = |q| percentile(&all, q).map(ms);
        json!({
            "proxies": self.proxies,
            "connections": self.connections,
            "routes": self.routes,
            "seed_s": self.seed_time.as_secs_f64(),
            "connect_s": self.connect_time.as_secs_f64(),
            "initial_bytes_per_proxy": self.initial_bytes_per_proxy,
            "control_plane_rss_kb": {"before": self.rss_before_kb, "after": self.rss_after_kb,
                                     "per_proxy_kb": self.per_proxy_kb()},
            "latency_ms_all_changes": {"p50": p(50.0), "p99": p(99.0), "max": p(100.0)},
            "control_plane_cpu_ms_per_change": self.cpu_per_change_ms(),
            "control_plane_idle_cpu_ms": self.idle_cpu.map(ms),
            "idle_window_s": self.idle_window.as_secs_f64(),
            "stream_errors": {"count": self.stream_errors.0, "first": self.stream_errors.1},
            "changes": self.changes.iter().map(ChangeResult::json).collect::<Vec<_>>(),
            "usage": self.usage.as_ref().map(UsageResult::json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
