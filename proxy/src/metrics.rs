//! Prometheus metrics as plain atomics: the request path only does relaxed increments (no lock,
//! no allocation); rendering the text format happens on the admin path.
//!
//! Each traffic worker has its own [`TrafficMetrics`] (no cache line shared between cores on
//! the request path), summed when rendered; the xDS client writes [`ControlMetrics`].
//! Per-cluster counters live in each cluster's [`crate::cluster::ClusterStats`] and are
//! rendered from the snapshot ([`render_clusters`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_proto::v1;

use crate::cluster::ClusterRuntime;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implicit.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One traffic worker's request counters.
#[derive(Debug, Default)]
pub struct TrafficMetrics {
    requests_by_class: [AtomicU64; 5],
    /// Cumulative-on-render: each slot counts observations that fell in that bucket only.
    duration_buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_micros: AtomicU64,
    upstream_errors: AtomicU64,
}

/// The config stream's counters.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    config_updates: AtomicU64,
    config_nacks: AtomicU64,
    control_plane_connected: AtomicBool,
}

impl TrafficMetrics {
    /// Records one finished request.
    pub fn observe_request(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests_by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl ControlMetrics {
    pub fn config_update(&self) {
        self.config_updates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn config_nack(&self) {
        self.config_nacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_connected(&self, connected: bool) {
        self.control_plane_connected
            .store(connected, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.control_plane_connected.load(Ordering::Relaxed)
    }
}

/// Prometheus text exposition format of the workers' counters (summed) and the config
/// stream's.
pub fn render(workers: &[Arc<TrafficMetrics>], control: &ControlMetrics) -> String {
    let mut out = String::with_capacity(2048);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let sum = |pick: &dyn Fn(&TrafficMetrics) -> &AtomicU64| -> u64 {
        workers.iter().map(|worker| load(pick(worker))).sum()
    };
    out.push_str("# HELP switchyard_proxy_requests_total Requests answered, by status class.\n");
    out.push_str("# TYPE switchyard_proxy_requests_total counter\n");
    for (index, class) in CLASSES.iter().enumerate() {
        let count = sum(&|w| &w.requests_by_class[index]);
        let _ = writeln!(
            out,
            "switchyard_proxy_requests_total{{code_class=\"{class}\"}} {count}"
        );
    }
    out.push_str("# HELP switchyard_proxy_request_duration_seconds Time to response headers.\n");
    out.push_str("# TYPE switchyard_proxy_request_duration_seconds histogram\n");
    let buckets = (0..=BUCKETS.len()).map(|index| sum(&|w| &w.duration_buckets[index]));
    let seconds = sum(&|w| &w.duration_sum_micros) as f64 / 1e6;
    write_histogram(
        &mut out,
        "switchyard_proxy_request_duration_seconds",
        "",
        buckets,
        seconds,
    );
    let counters = [
        (
            "switchyard_proxy_upstream_errors_total",
            "Upstream connect failures, resets and timeouts.",
            sum(&|w| &w.upstream_errors),
        ),
        (
            "switchyard_proxy_config_updates_total",
            "Config responses applied (ACKed or partially NACKed).",
            load(&control.config_updates),
        ),
        (
            "switchyard_proxy_config_nacks_total",
            "Config responses NACKed.",
            load(&control.config_nacks),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let connected = u8::from(control.connected());
    let _ = writeln!(
        out,
        "# HELP switchyard_proxy_control_plane_connected Whether the config stream is up.\n\
         # TYPE switchyard_proxy_control_plane_connected gauge\n\
         switchyard_proxy_control_plane_connected {connected}"
    );
    out
}

/// One histogram's `_bucket` (cumulative, from per-bucket `counts` over [`BUCKETS`] then
/// `+Inf`), `_sum` and `_count` lines; `labels` is empty or ends with a comma.
fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    counts: impl Iterator<Item = u64>,
    sum_seconds: f64,
) {
    let mut cumulative = 0;
    for (index, count) in counts.enumerate() {
        cumulative += count;
        let bound = BUCKETS
            .get(index)
            .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
    }
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(
        out,
        "{name}_sum{braces} {sum_seconds}\n{name}_count{braces} {cumulative}"
    );
}

/// Per-route request counters and latency histograms, fed by the workers' usage flushes (on
/// the control runtime, once a second; never by the request path).
#[derive(Debug, Default)]
pub struct RouteUsage {
    routes: Mutex<BTreeMap<String, RouteCounts>>,
}

#[derive(Debug, Default)]
struct RouteCounts {
    by_class: [u64; 5],
    /// Per `BUCKETS` upper bound, then `+Inf` (not cumulative).
    buckets: [u64; BUCKETS.len() + 1],
    sum_us: u64,
}

impl RouteUsage {
    /// Adds the counters of one flush. A log bucket goes to the first Prometheus bucket at or
    /// above its upper bound (so `le` counts hold only requests that fast; a few near a
    /// boundary land one bucket up: the log buckets are within 12.5 %).
    pub fn add(&self, counters: &[v1::UsageCounter]) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for counter in counters {
            let counts = match routes.get_mut(&counter.route) {
                Some(counts) => counts,
                None => routes.entry(counter.route.clone()).or_default(),
            };
            let class = (counter.status_class as usize).clamp(1, 5) - 1;
            counts.by_class[class] += counter.requests;
            counts.sum_us += counter.latency_sum_us;
            for (bound_us, count) in counter
                .latency_bounds_us
                .iter()
                .zip(&counter.latency_buckets)
            {
                let seconds = *bound_us as f64 / 1e6;
                let bucket = BUCKETS
                    .iter()
                    .position(|le| seconds <= *le)
                    .unwrap_or(BUCKETS.len());
                counts.buckets[bucket] += count;
            }
        }
    }

    fn render(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP switchyard_proxy_route_requests_total Requests answered, by route and status class.\n");
        out.push_str("# TYPE switchyard_proxy_route_requests_total counter\n");
        for (route, counts) in routes.iter() {
            for (class, count) in CLASSES.iter().zip(counts.by_class) {
                let _ = writeln!(
                    out,
                    "switchyard_proxy_route_requests_total{{route=\"{route}\",code_class=\"{class}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP switchyard_proxy_route_request_duration_seconds Time to response headers, by route.\n");
        out.push_str("# TYPE switchyard_proxy_route_request_duration_seconds histogram\n");
        for (route, counts) in routes.iter() {
            write_histogram(
                out,
                "switchyard_proxy_route_request_duration_seconds",
                &format!("route=\"{route}\","),
                counts.buckets.iter().copied(),
                counts.sum_us as f64 / 1e6,
            );
        }
    }
}

/// The usage report queue's state, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReportUsage {
    dropped_requests: AtomicU64,
    batches_pending: AtomicU64,
}

impl ReportUsage {
    /// Requests dropped so far (memory bound reached while the control plane was away).
    pub fn dropped(&self, total: u64) {
        self.dropped_requests.store(total, Ordering::Relaxed);
    }

    /// Usage batches waiting for the control plane's acknowledgement.
    pub fn pending(&self, batches: usize) {
        self.batches_pending
            .store(batches as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let dropped = self.dropped_requests.load(Ordering::Relaxed);
        let pending = self.batches_pending.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP switchyard_proxy_usage_dropped_requests_total Requests left out of usage reports (memory bound reached while the control plane was away).\n\
             # TYPE switchyard_proxy_usage_dropped_requests_total counter\n\
             switchyard_proxy_usage_dropped_requests_total {dropped}\n\
             # HELP switchyard_proxy_usage_batches_pending Usage batches not yet acknowledged by the control plane.\n\
             # TYPE switchyard_proxy_usage_batches_pending gauge\n\
             switchyard_proxy_usage_batches_pending {pending}"
        );
    }
}

/// The route and usage-report metrics, appended to `out`.
pub fn render_usage(out: &mut String, routes: &RouteUsage, reports: &ReportUsage) {
    routes.render(out);
    reports.render(out);
}

/// Per-cluster gauges and counters: endpoints (configured, healthy), upstream connections
/// (opened, idle; summed over the endpoints' pools), ejections, retries, retry-budget
/// refusals, circuit-breaker rejections and health-check failures. Computed now, on the admin
/// path.
pub fn render_clusters(out: &mut String, snapshot: &crate::snapshot::Snapshot) {
    let mut clusters: Vec<_> = snapshot.clusters.iter().collect();
    clusters.sort_by(|a, b| a.0.cmp(b.0));
    type Measure = fn(&ClusterRuntime) -> u64;
    let computed: [(&str, &str, &str, Measure); 4] = [
        (
            "switchyard_proxy_cluster_healthy_endpoints",
            "gauge",
            "Endpoints passing health checks and not ejected.",
            |c| c.balancer.healthy_count() as u64,
        ),
        (
            "switchyard_proxy_cluster_endpoints",
            "gauge",
            "Endpoints configured.",
            |c| c.balancer.states().len() as u64,
        ),
        (
            "switchyard_proxy_cluster_upstream_connections_opened_total",
            "counter",
            "Upstream connections opened to the current endpoints (pool misses).",
            |c| {
                c.balancer
                    .states()
                    .iter()
                    .map(|e| e.connections.opened())
                    .sum()
            },
        ),
        (
            "switchyard_proxy_cluster_upstream_connections_idle",
            "gauge",
            "Idle upstream connections in the endpoints' pools.",
            |c| {
                let idle: usize = c
                    .balancer
                    .states()
                    .iter()
                    .map(|e| e.connections.idle())
                    .sum();
                idle as u64
            },
        ),
    ];
    for (metric, kind, help, measure) in computed {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for (name, cluster) in &clusters {
            let _ = writeln!(out, "{metric}{{cluster=\"{name}\"}} {}", measure(cluster));
        }
    }
    type Pick = fn(&crate::cluster::ClusterStats) -> &AtomicU64;
    let counters: [(&str, &str, Pick); 5] = [
        (
            "switchyard_proxy_cluster_ejections_total",
            "Endpoints ejected by outlier detection.",
            |s| &s.ejections,
        ),
        (
            "switchyard_proxy_cluster_retries_total",
            "Upstream attempts retried.",
            |s| &s.retries,
        ),
        (
            "switchyard_proxy_cluster_retries_budget_exhausted_total",
            "Retries refused by the retry budget.",
            |s| &s.retries_budget_exhausted,
        ),
        (
            "switchyard_proxy_cluster_circuit_open_total",
            "Requests refused by the circuit breaker.",
            |s| &s.circuit_open,
        ),
        (
            "switchyard_proxy_cluster_health_check_failures_total",
            "Failed active health checks.",
            |s| &s.health_check_failures,
        ),
    ];
    for (metric, help, pick) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (name, cluster) in &clusters {
            let value = pick(&cluster.state.stats).load(Ordering::Relaxed);
            let _ = writeln!(out, "{metric}{{cluster=\"{name}\"}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn renders_counters_and_histogram() {
        let workers: [Arc<TrafficMetrics>; 2] = [Arc::default(), Arc::default()];
        let control = ControlMetrics::default();
        workers[0].observe_request(200, Duration::from_millis(3));
        workers[1].observe_request(503, Duration::from_secs(20));
        control.config_nack();
        let text = render(&workers, &control);
        assert!(text.contains("switchyard_proxy_requests_total{code_class=\"2xx\"} 1"));
        assert!(text.contains("switchyard_proxy_requests_total{code_class=\"5xx\"} 1"));
        assert!(text.contains("switchyard_proxy_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("switchyard_proxy_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("switchyard_proxy_request_duration_seconds_count 2"));
        assert!(text.contains("switchyard_proxy_config_nacks_total 1"));
        assert!(text.contains("switchyard_proxy_control_plane_connected 0"));
    }
}
