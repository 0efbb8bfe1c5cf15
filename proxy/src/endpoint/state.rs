//! Per-endpoint runtime state: idle upstream connections, in-flight count, latency EWMA, active-health and ejection flags,
//! outlier counters, and when availability last changed.
//!
//! One [`EndpointState`] lives behind an `Arc` for as long as its address stays in the cluster:
//! the balancer is rebuilt per config but takes the states over by address, so load, latency and
//! health survive config updates. Everything is an atomic; writers are the request path
//! (in-flight, latency, outlier counters) and the cluster's health task. This module does not
//! decide anything: balancing policies read it, health checks and outlier detection write it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::clock::{monotonic_nanos, unix_millis};
use super::ewma::PeakEwma;
use super::group::EndpointGroup;
use super::pool::ConnectionPool;

/// The shared, long-lived state of one endpoint address.
#[derive(Debug)]
pub struct EndpointState {
    pub address: String,
    /// Idle upstream connections to this endpoint (shared with connections on their way back).
    pub connections: Arc<ConnectionPool>,
    in_flight: AtomicU32,
    pub(crate) ewma: PeakEwma,
    /// Passing active health checks (true when the cluster has none).
    active_healthy: AtomicBool,
    /// Ejected by outlier detection.
    ejected: AtomicBool,
    /// 5xx / connect failures in a row.
    pub(crate) consecutive_failures: AtomicU32,
    /// Ejections so far (the ejection time multiplier).
    pub(crate) times_ejected: AtomicU32,
    /// Bumped on each ejection, so a stale un-eject timer does nothing.
    pub(crate) ejection_generation: AtomicU64,
    /// When [`EndpointState::is_available`] last changed (Unix ms); creation time at first.
    changed_at_unix_ms: AtomicU64,
}

impl EndpointState {
    /// A new endpoint: healthy (the first health check runs at once), nothing in flight, an
    /// idle-connection stack for each of `workers` traffic workers.
    pub fn new(address: &str, workers: usize) -> Self {
        Self {
            address: address.to_owned(),
            connections: Arc::new(ConnectionPool::new(address, workers)),
            in_flight: AtomicU32::new(0),
            ewma: PeakEwma::default(),
            active_healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejection_generation: AtomicU64::new(0),
            changed_at_unix_ms: AtomicU64::new(unix_millis()),
        }
    }

    /// Whether the endpoint may take traffic: passing health checks and not ejected.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed) && !self.ejected.load(Ordering::Relaxed)
    }

    /// Requests currently holding this endpoint.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `(available, changed_at_unix_ms)`, what health reports carry.
    pub fn health(&self) -> (bool, u64) {
        (
            self.is_available(),
            self.changed_at_unix_ms.load(Ordering::Relaxed),
        )
    }

    pub fn is_active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Sets the active-check verdict; returns whether it changed.
    pub fn set_active_healthy(&self, healthy: bool, group: &EndpointGroup) -> bool {
        self.transition(&self.active_healthy, healthy, group)
    }

    /// Sets the ejection flag; returns whether it changed.
    pub(crate) fn set_ejected(&self, ejected: bool, group: &EndpointGroup) -> bool {
        self.transition(&self.ejected, ejected, group)
    }

    /// Flips `flag`, stamps the change time, then bumps the group's epoch (in that order, so a
    /// balancer that sees the new epoch also sees the new flag).
    fn transition(&self, flag: &AtomicBool, value: bool, group: &EndpointGroup) -> bool {
        let was_available = self.is_available();
        if flag.swap(value, Ordering::AcqRel) == value {
            return false;
        }
        if was_available != self.is_available() {
            self.changed_at_unix_ms
                .store(unix_millis(), Ordering::Relaxed);
        }
        group.bump_epoch();
        true
    }

    /// Records a response's time to headers for `least_response_time`.
    pub fn observe_latency(&self, rtt: Duration) {
        self.ewma.observe(rtt, monotonic_nanos());
    }
}

/// Counts a request against an endpoint (and its group's zone load) until dropped: held for
/// the request's whole life, response body included.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: Arc<EndpointState>,
    group: Arc<EndpointGroup>,
    local: bool,
}

impl InFlightGuard {
    /// Starts counting; `local` says whether the endpoint is in the proxy's zone.
    pub fn new(endpoint: &Arc<EndpointState>, group: &Arc<EndpointGroup>, local: bool) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        group.start(local);
        Self {
            endpoint: Arc::clone(endpoint),
            group: Arc::clone(group),
            local,
        }
    }

    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.endpoint
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.group.finish(self.local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_and_guard() {
        let cluster = Arc::new(EndpointGroup::default());
        let state = Arc::new(EndpointState::new("a:1", 1));
        assert!(state.is_available());
        let epoch = cluster.epoch();
        assert!(state.set_active_healthy(false, &cluster));
        assert!(!state.set_active_healthy(false, &cluster), "no change");
        assert!(!state.is_available());
        assert!(cluster.epoch() > epoch);
        assert!(state.set_active_healthy(true, &cluster));
        assert!(state.set_ejected(true, &cluster));
        assert!(!state.is_available());
        {
            let _guard = InFlightGuard::new(&state, &cluster, true);
            assert_eq!(state.in_flight(), 1);
            assert_eq!(cluster.in_flight_local(), 1);
        }
        assert_eq!(state.in_flight(), 0);
        assert_eq!(cluster.in_flight(), 0);
    }
}
