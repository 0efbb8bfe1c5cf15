//! Passive outlier detection: `consecutive_5xx` failed attempts in a row (5xx responses,
//! connect failures, resets, per-try timeouts) eject an endpoint for
//! `base_ejection_ms × times ejected` (multiplier capped at [`MAX_EJECTION_MULTIPLIER`]); a
//! success resets the streak. At most `max_ejection_percent` of the cluster's endpoints are
//! ejected at once, except that one ejection is always allowed (as Envoy does) unless the
//! percentage is 0.
//!
//! Called on the request path after each attempt: a success is one relaxed load; a failure an
//! atomic add. An ejection spawns one timer task that brings the endpoint back (a generation
//! number makes a stale timer harmless) and then, while the endpoint is not ejected again,
//! takes one step off its multiplier per `base_ejection_ms` (Envoy decays it per detection
//! interval), so an endpoint that failed last week does not start at the longest ejection. Active health checks are a separate verdict
//! ([`crate::health`]); an endpoint takes traffic only when both allow it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::balancer::EndpointState;
use crate::cluster::{ClusterState, ClusterStats};
use crate::model::OutlierSpec;

/// Cap of the ejection-time multiplier.
pub const MAX_EJECTION_MULTIPLIER: u32 = 10;

/// Whether one more endpoint may be ejected with `ejected` of `total` already out.
pub fn ejection_allowed(ejected: u32, total: usize, max_percent: u32) -> bool {
    if max_percent == 0 || total == 0 {
        return false;
    }
    ejected == 0 || u64::from(ejected + 1) * 100 <= total as u64 * u64::from(max_percent)
}

/// How long the `times`-th ejection lasts.
pub fn ejection_time(base: Duration, times: u32) -> Duration {
    base * times.clamp(1, MAX_EJECTION_MULTIPLIER)
}

/// Records one attempt's outcome on `endpoint` (of a cluster of `total` endpoints).
pub fn record(
    spec: Option<&OutlierSpec>,
    cluster: &Arc<ClusterState>,
    endpoint: &Arc<EndpointState>,
    total: usize,
    failed: bool,
) {
    let Some(spec) = spec else { return };
    if !failed {
        if endpoint.consecutive_failures.load(Ordering::Relaxed) != 0 {
            endpoint.consecutive_failures.store(0, Ordering::Relaxed);
        }
        return;
    }
    let streak = endpoint
        .consecutive_failures
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if streak < spec.consecutive_5xx || endpoint.is_ejected() {
        return;
    }
    let reserved = cluster
        .ejected
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ejected| {
            ejection_allowed(ejected, total, spec.max_ejection_percent).then_some(ejected + 1)
        });
    if reserved.is_err() {
        return;
    }
    if !endpoint.set_ejected(true, cluster) {
        // Another request ejected it first.
        cluster.ejected.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    endpoint.consecutive_failures.store(0, Ordering::Relaxed);
    let times = endpoint.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
    let generation = endpoint.ejection_generation.fetch_add(1, Ordering::AcqRel) + 1;
    let duration = ejection_time(spec.base_ejection, times);
    ClusterStats::add(&cluster.stats.ejections);
    tracing::warn!(endpoint = %endpoint.address, streak, ?duration, "endpoint ejected");
    let (cluster, endpoint) = (Arc::clone(cluster), Arc::clone(endpoint));
    let decay_step = spec.base_ejection;
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        if endpoint.ejection_generation.load(Ordering::Acquire) != generation {
            return;
        }
        if endpoint.set_ejected(false, &cluster) {
            cluster.ejected.fetch_sub(1, Ordering::AcqRel);
            tracing::info!(endpoint = %endpoint.address, "endpoint back from ejection");
        }
        decay(&endpoint, generation, decay_step).await;
    });
}

/// Takes one step off `endpoint`'s ejection multiplier per `step` until it is 0 or the
/// endpoint is ejected again (a new generation, whose task takes over).
async fn decay(endpoint: &EndpointState, generation: u64, step: Duration) {
    loop {
        tokio::time::sleep(step).await;
        if endpoint.ejection_generation.load(Ordering::Acquire) != generation {
            return;
        }
        let stepped =
            endpoint
                .times_ejected
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |times| {
                    times.checked_sub(1)
                });
        if matches!(stepped, Err(0) | Ok(1)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_math() {
        assert!(ejection_allowed(0, 3, 10), "one is always allowed");
        assert!(!ejection_allowed(1, 3, 10));
        assert!(ejection_allowed(1, 10, 20));
        assert!(!ejection_allowed(2, 10, 20));
        assert!(ejection_allowed(9, 10, 100));
        assert!(!ejection_allowed(0, 10, 0), "0% disables");
        let base = Duration::from_millis(100);
        assert_eq!(ejection_time(base, 1), base);
        assert_eq!(ejection_time(base, 3), base * 3);
        assert_eq!(ejection_time(base, 50), base * 10, "capped");
    }

    #[tokio::test]
    async fn consecutive_failures_eject_then_return() {
        let spec = OutlierSpec {
            consecutive_5xx: 3,
            base_ejection: Duration::from_millis(50),
            max_ejection_percent: 50,
        };
        let cluster = Arc::new(ClusterState::default());
        let (a, b) = (
            Arc::new(EndpointState::new("a:1")),
            Arc::new(EndpointState::new("b:1")),
        );
        record(Some(&spec), &cluster, &a, 2, true);
        record(Some(&spec), &cluster, &a, 2, true);
        record(Some(&spec), &cluster, &a, 2, false);
        record(Some(&spec), &cluster, &a, 2, true);
        record(Some(&spec), &cluster, &a, 2, true);
        assert!(a.is_available(), "a success reset the streak");
        record(Some(&spec), &cluster, &a, 2, true);
        assert!(!a.is_available());
        assert_eq!(cluster.ejected_count(), 1);
        for _ in 0..3 {
            record(Some(&spec), &cluster, &b, 2, true);
        }
        assert!(b.is_available(), "50% of 2: only one at a time");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(a.is_available());
        assert_eq!(cluster.ejected_count(), 0);
        assert_eq!(cluster.stats.ejections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_multiplier_grows_with_repeat_ejections_and_decays_while_healthy() {
        let spec = OutlierSpec {
            consecutive_5xx: 1,
            base_ejection: Duration::from_millis(40),
            max_ejection_percent: 100,
        };
        let cluster = Arc::new(ClusterState::default());
        let endpoint = Arc::new(EndpointState::new("a:1"));
        let times = || endpoint.times_ejected.load(Ordering::Relaxed);
        record(Some(&spec), &cluster, &endpoint, 1, true);
        assert_eq!(times(), 1);
        wait_until_available(&endpoint).await;
        record(Some(&spec), &cluster, &endpoint, 1, true);
        assert_eq!(times(), 2, "ejected again before the multiplier decayed");
        assert!(!endpoint.is_available());
        wait_until_available(&endpoint).await; // 80 ms (2 × base)
        // Healthy from now on: one step per 40 ms back to 0.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while times() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            times(),
            0,
            "the multiplier decays while the endpoint stays healthy"
        );
        record(Some(&spec), &cluster, &endpoint, 1, true);
        assert_eq!(times(), 1, "the next ejection is the shortest again");
    }

    async fn wait_until_available(endpoint: &EndpointState) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !endpoint.is_available() {
            assert!(tokio::time::Instant::now() < deadline, "never came back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
