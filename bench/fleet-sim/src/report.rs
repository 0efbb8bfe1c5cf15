//! The figures of one run: per-change results, percentiles over proxies, the summary table
//! (plain text, markdown-compatible) and the same as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

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
