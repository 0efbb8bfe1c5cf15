//! Active health checking: one background task per cluster with a `health_check`, per proxy —
//! never per request. Each round probes every endpoint concurrently ([`probe`]: HTTP GET of the
//! path expecting 2xx on a fresh connection, or a TCP connect), each bounded by `timeout_ms`;
//! the next round starts `interval_ms` ± 10% jitter after the previous one has ended (so a
//! `timeout_ms` above `interval_ms` never makes probes overlap), the first at once.
//!
//! Endpoints start healthy; `unhealthy_threshold` consecutive failures mark one unhealthy,
//! `healthy_threshold` consecutive passes bring it back. The verdict is written to the shared
//! [`EndpointState`]; balancers skip unhealthy endpoints.
//!
//! [`run`] is the task; the supervisor ([`crate::supervisor`]) owns it: it starts one per
//! cluster with a check, keeps it while a new config has the same check and endpoint states,
//! and stops it (waiting until it has stopped) before starting its replacement.
//!
//! # No panic mode
//!
//! Envoy routes to *every* endpoint once fewer than 50% are healthy ("panic mode"). Switchyard
//! does not: unhealthy and ejected endpoints never get traffic, load goes to the remaining
//! healthy ones (and spills to higher priority levels), and with none left the proxy answers
//! 503 `{"error": "no healthy endpoint"}` at once. Sending requests to endpoints known to fail
//! turns a fast, clear 503 into slow timeouts and retries; priority levels are the explicit way
//! to keep a fallback; and outlier detection alone can never empty a cluster beyond
//! `max_ejection_percent` — only failing active checks can, and they are what the operator asked
//! to trust. The cost: a wrong health-check path takes the cluster down (visible at once in
//! `GET /api/v1/health` and the `switchyard_proxy_cluster_healthy_endpoints` gauge).

pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::cluster::{ClusterState, ClusterStats};
use crate::endpoint::EndpointState;
use crate::model::HealthCheckSpec;

/// Consecutive results of one endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct Streak {
    passes: u32,
    failures: u32,
}

impl Streak {
    /// Folds in one result; returns the new verdict when it changes from `healthy`.
    pub fn record(&mut self, passed: bool, healthy: bool, check: &HealthCheckSpec) -> Option<bool> {
        if passed {
            self.passes += 1;
            self.failures = 0;
            (!healthy && self.passes >= check.healthy_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.passes = 0;
            (healthy && self.failures >= check.unhealthy_threshold).then_some(false)
        }
    }
}

/// `interval` ± 10%.
pub fn jittered(interval: Duration) -> Duration {
    let tenth = interval.as_millis() as u64 / 10;
    let jitter = fastrand::u64(0..=2 * tenth);
    interval - Duration::from_millis(tenth) + Duration::from_millis(jitter)
}

/// Checks `endpoints` of `cluster_name` with `check`, a round at once and then one per
/// interval, writing verdicts to their states. Runs until aborted.
pub async fn run(
    cluster_name: String,
    check: HealthCheckSpec,
    endpoints: Vec<Arc<EndpointState>>,
    cluster: Arc<ClusterState>,
) {
    let mut streaks = vec![Streak::default(); endpoints.len()];
    loop {
        let mut round = JoinSet::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            let address = endpoint.address.clone();
            let (path, timeout) = (check.http_path.clone(), check.timeout);
            round.spawn(async move {
                (
                    index,
                    probe::probe(&address, path.as_deref(), timeout).await,
                )
            });
        }
        while let Some(joined) = round.join_next().await {
            let Ok((index, result)) = joined else {
                continue;
            };
            let endpoint = &endpoints[index];
            if let Err(error) = &result {
                ClusterStats::add(&cluster.stats.health_check_failures);
                tracing::debug!(cluster = %cluster_name, endpoint = %endpoint.address, %error, "health check failed");
            }
            let healthy = endpoint.is_active_healthy();
            if let Some(verdict) = streaks[index].record(result.is_ok(), healthy, &check) {
                endpoint.set_active_healthy(verdict, &cluster.endpoints);
                tracing::warn!(
                    cluster = %cluster_name,
                    endpoint = %endpoint.address,
                    healthy = verdict,
                    "endpoint health changed"
                );
            }
        }
        tokio::time::sleep(jittered(check.interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheckSpec {
        HealthCheckSpec {
            http_path: Some("/health".into()),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn thresholds_are_consecutive() {
        let check = check();
        let mut streak = Streak::default();
        assert_eq!(streak.record(false, true, &check), None);
        assert_eq!(streak.record(false, true, &check), None);
        assert_eq!(streak.record(true, true, &check), None, "a pass resets");
        assert_eq!(streak.record(false, true, &check), None);
        assert_eq!(streak.record(false, true, &check), None);
        assert_eq!(streak.record(false, true, &check), Some(false));
        assert_eq!(streak.record(true, false, &check), None);
        assert_eq!(streak.record(true, false, &check), Some(true));
    }

    /// An endpoint whose health answer takes 150 ms, checked every 20 ms with a 500 ms timeout:
    /// every probe passes (the timeout is not cut to the interval) and no probe starts while
    /// the previous one is still open.
    #[tokio::test]
    async fn a_check_slower_than_the_interval_passes_and_never_overlaps() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let (open, most_open, probes) = (open.clone(), most_open.clone(), probes.clone());
            async move {
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most_open.fetch_max(now_open, Ordering::SeqCst);
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                    probes.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            }
        });

        let check = HealthCheckSpec::try_from(&switchyard_proto::v1::HealthCheck {
            path: "/health".into(),
            interval_ms: 20,
            timeout_ms: 500,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            ..Default::default()
        })
        .unwrap();
        let endpoints = [Arc::new(EndpointState::new(&address, 1))];
        let cluster = Arc::new(ClusterState::default());
        let task = tokio::spawn(run(
            "slow".into(),
            check,
            endpoints.to_vec(),
            Arc::clone(&cluster),
        ));
        tokio::time::sleep(Duration::from_millis(900)).await;
        task.abort();
        server.abort();

        let probes = probes.load(Ordering::SeqCst);
        assert!(probes >= 3, "checks kept running: {probes}");
        assert_eq!(most_open.load(Ordering::SeqCst), 1, "probes overlapped");
        assert_eq!(
            cluster
                .stats
                .health_check_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "a 150 ms answer is within the 500 ms timeout"
        );
        assert!(endpoints[0].is_active_healthy());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let delay = jittered(Duration::from_millis(1000));
            assert!(delay >= Duration::from_millis(900) && delay <= Duration::from_millis(1100));
        }
    }
}
