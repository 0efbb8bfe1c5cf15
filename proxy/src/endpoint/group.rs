//! What one cluster's endpoints share, kept across configs with the cluster's state: the
//! availability epoch (bumped after every health or ejection change, so a balancer recounts
//! its healthy endpoints only when it moves) and the in-flight counts, all and same-zone, of
//! the zone-overload rule.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Shared by the endpoints of one cluster and by its balancers.
#[derive(Debug, Default)]
pub struct EndpointGroup {
    epoch: AtomicU64,
    in_flight: AtomicU32,
    in_flight_local: AtomicU32,
}

impl EndpointGroup {
    /// Moves on after every endpoint availability change.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Requests in flight to any endpoint of the group.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests in flight to endpoints in the proxy's zone.
    pub fn in_flight_local(&self) -> u32 {
        self.in_flight_local.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self, local: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if local {
            self.in_flight_local.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn finish(&self, local: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if local {
            self.in_flight_local.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
