//! Long-lived per-cluster state, shared by every config's runtime of the same cluster name:
//! the endpoint group (availability epoch, zone load), the ejection decision, the retry budget
//! and the `/metrics` counters. Atomics only: the request path, health checks and outlier
//! detection write it without a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::retry_budget::RetryBudget;
use crate::endpoint::EndpointGroup;

/// Kept across configs by cluster name.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// What the cluster's endpoints share: availability epoch and in-flight counts.
    pub endpoints: Arc<EndpointGroup>,
    /// Held while an ejection is decided (see [`ClusterState::try_decide_ejection`]).
    deciding_ejection: AtomicBool,
    pub retry_budget: RetryBudget,
    pub stats: ClusterStats,
}

impl ClusterState {
    /// Takes the cluster's ejection decision, so two endpoints crossing the threshold at once
    /// (on two workers) cannot both pass the `max_ejection_percent` check; `None` while another
    /// decision is under way. Never waits: only the outlier path takes it, on a failure.
    pub(crate) fn try_decide_ejection(&self) -> Option<EjectionDecision<'_>> {
        // Lazily: a guard built and dropped on refusal would release another's decision.
        (!self.deciding_ejection.swap(true, Ordering::Acquire))
            .then(|| EjectionDecision(&self.deciding_ejection))
    }
}

/// The cluster's ejection decision; released on drop.
#[derive(Debug)]
pub(crate) struct EjectionDecision<'a>(&'a AtomicBool);

impl Drop for EjectionDecision<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Per-cluster counters exported on `/metrics` (relaxed atomics, hot-path safe).
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub ejections: AtomicU64,
    pub retries: AtomicU64,
    pub retries_budget_exhausted: AtomicU64,
    pub circuit_open: AtomicU64,
    pub health_check_failures: AtomicU64,
}

impl ClusterStats {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
