//! Passive outlier detection: `consecutive_5xx` failed attempts in a row (5xx responses,
//! connect failures, resets, per-try timeouts) eject an endpoint for
//! `base_ejection_ms × times ejected` (multiplier capped at [`MAX_EJECTION_MULTIPLIER`]); a
//! success resets the streak. At most `max_ejection_percent` of the cluster's endpoints are
//! ejected at once, except that one ejection is always allowed (as Envoy does) unless the
//! percentage is 0. The limit is checked when an ejection starts, against the endpoints of the
//! config the request used, counted then: nothing is counted across configs, so an endpoint
//! that left the cluster while ejected never holds a place in the limit.
//!
//! Called on the request path after each attempt: a success is one relaxed load; a failure an
//! atomic add; reaching the threshold takes the cluster's ejection decision (a try-lock, never
//! waited for) and counts the ejected endpoints. An ejection spawns one timer task that brings
//! the endpoint back (a generation number makes a stale timer harmless) and then, while the
//! endpoint is not ejected again, takes one step off its multiplier per `base_ejection_ms`
//! (Envoy decays it per detection interval), so an endpoint that failed last week does not
//! start at the longest ejection. Active health checks are a separate verdict
//! ([`crate::health`]); an endpoint takes traffic only when both allow it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster::{ClusterState, ClusterStats};
use crate::endpoint::EndpointState;
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

/// Records one attempt's outcome on `endpoint`, one of `members` (the endpoints of the config
/// the request used).
pub fn record(
    spec: Option<&OutlierSpec>,
    cluster: &Arc<ClusterState>,
    members: &[Arc<EndpointState>],
    endpoint: &Arc<EndpointState>,
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
    // Another endpoint's decision under way: the streak stays over the threshold, so this
    // endpoint's next failure decides.
    let Some(_decision) = cluster.try_decide_ejection() else {
        return;
    };
    let ejected = members.iter().filter(|member| member.is_ejected()).count();
    let ejected = u32::try_from(ejected).unwrap_or(u32::MAX);
    if !ejection_allowed(ejected, members.len(), spec.max_ejection_percent)
        || !endpoint.set_ejected(true, &cluster.endpoints)
    {
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
        if endpoint.set_ejected(false, &cluster.endpoints) {
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
        let members = endpoints(&["a:1", "b:1"]);
        let (a, b) = (&members[0], &members[1]);
        let fail = |endpoint| record(Some(&spec), &cluster, &members, endpoint, true);
        fail(a);
        fail(a);
        record(Some(&spec), &cluster, &members, a, false);
        fail(a);
        fail(a);
        assert!(a.is_available(), "a success reset the streak");
        fail(a);
        assert!(!a.is_available());
        for _ in 0..3 {
            fail(b);
        }
        assert!(b.is_available(), "50% of 2: only one at a time");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(a.is_available());
        assert_eq!(cluster.stats.ejections.load(Ordering::Relaxed), 1);
        fail(b);
        assert!(
            !b.is_available(),
            "a back: b's streak ejects it on its next failure"
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_left_while_ejected_holds_no_place_in_the_limit() {
        let spec = OutlierSpec {
            consecutive_5xx: 1,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        };
        let cluster = Arc::new(ClusterState::default());
        let before = endpoints(&["a:1", "b:1", "c:1"]);
        record(Some(&spec), &cluster, &before, &before[1], true);
        assert!(before[1].is_ejected());
        record(Some(&spec), &cluster, &before, &before[2], true);
        assert!(!before[2].is_ejected(), "50% of 3: one at a time");
        // b leaves the config, still ejected (its timer holds it): c may go now.
        let after = [Arc::clone(&before[0]), Arc::clone(&before[2])];
        record(Some(&spec), &cluster, &after, &after[1], true);
        assert!(
            after[1].is_ejected(),
            "none of a, c was ejected: one is allowed"
        );
        record(Some(&spec), &cluster, &after, &after[0], true);
        assert!(!after[0].is_ejected(), "50% of 2: one at a time");
    }

    #[tokio::test]
    async fn a_decision_under_way_defers_the_next() {
        let spec = OutlierSpec {
            consecutive_5xx: 1,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 100,
        };
        let cluster = Arc::new(ClusterState::default());
        let members = endpoints(&["a:1"]);
        let decision = cluster.try_decide_ejection().expect("free");
        assert!(cluster.try_decide_ejection().is_none(), "held");
        record(Some(&spec), &cluster, &members, &members[0], true);
        assert!(!members[0].is_ejected(), "deferred, not waited for");
        drop(decision);
        record(Some(&spec), &cluster, &members, &members[0], true);
        assert!(members[0].is_ejected(), "the next failure decides");
    }

    fn endpoints(addresses: &[&str]) -> Vec<Arc<EndpointState>> {
        addresses
            .iter()
            .map(|address| Arc::new(EndpointState::new(address, 1)))
            .collect()
    }

    #[tokio::test]
    async fn the_multiplier_grows_with_repeat_ejections_and_decays_while_healthy() {
        let spec = OutlierSpec {
            consecutive_5xx: 1,
            base_ejection: Duration::from_millis(40),
            max_ejection_percent: 100,
        };
        let cluster = Arc::new(ClusterState::default());
        let members = endpoints(&["a:1"]);
        let endpoint = &members[0];
        let times = || endpoint.times_ejected.load(Ordering::Relaxed);
        record(Some(&spec), &cluster, &members, endpoint, true);
        assert_eq!(times(), 1);
        wait_until_available(endpoint).await;
        record(Some(&spec), &cluster, &members, endpoint, true);
        assert_eq!(times(), 2, "ejected again before the multiplier decayed");
        assert!(!endpoint.is_available());
        wait_until_available(endpoint).await; // 80 ms (2 × base)
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
        record(Some(&spec), &cluster, &members, endpoint, true);
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
