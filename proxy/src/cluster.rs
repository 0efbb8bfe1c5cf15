//! A cluster at run time: [`ClusterRuntime`] (built per config: balancer, connect settings, breaker limits,
//! health-check task) and [`ClusterState`] (long-lived, kept by cluster name across configs:
//! health epoch, zone load, retry budget, in-flight counts and metrics).
//!
//! The snapshot builder is the only caller of [`ClusterRuntime::build`]; the request path only
//! reads. Endpoint states are taken over by address, so a config update that keeps an endpoint
//! keeps its load, latency EWMA, health and ejection. An endpoint that leaves the config while
//! ejected is remembered until its ejection ends, so one that comes back meanwhile is still out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::balancer::{Balancer, EndpointState};
use crate::circuit_breaker::CircuitBreaker;
use crate::health::HealthTask;
use crate::model::ClusterSpec;
use crate::upstream::pool::{self, PoolSettings};
use crate::upstream::retry::RetryBudget;

/// Long-lived per-cluster state, shared by every config's runtime of the same cluster name.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Bumped after every endpoint availability change; balancers recount when it moves.
    health_epoch: AtomicU64,
    /// Held while an ejection is decided (see [`ClusterState::try_decide_ejection`]).
    deciding_ejection: AtomicBool,
    /// In-flight requests, all and same-zone (zone-aware balancing).
    pub load: ZoneLoad,
    /// Requests in flight through the circuit breaker (`max_requests`).
    pub(crate) requests: AtomicU32,
    /// Requests waiting for an upstream connection slot (`max_pending_requests`).
    pub(crate) pending: AtomicU32,
    pub retry_budget: RetryBudget,
    pub stats: ClusterStats,
}

impl ClusterState {
    pub fn health_epoch(&self) -> u64 {
        self.health_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn bump_health_epoch(&self) {
        self.health_epoch.fetch_add(1, Ordering::AcqRel);
    }

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

/// In-flight request counts for the zone-overload rule.
#[derive(Debug, Default)]
pub struct ZoneLoad {
    all: AtomicU32,
    local: AtomicU32,
}

impl ZoneLoad {
    pub(crate) fn start(&self, local: bool) {
        self.all.fetch_add(1, Ordering::Relaxed);
        if local {
            self.local.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn finish(&self, local: bool) {
        self.all.fetch_sub(1, Ordering::Relaxed);
        if local {
            self.local.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn all(&self) -> u32 {
        self.all.load(Ordering::Relaxed)
    }

    pub fn local(&self) -> u32 {
        self.local.load(Ordering::Relaxed)
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

/// A cluster ready to take traffic.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub spec: Arc<ClusterSpec>,
    pub state: Arc<ClusterState>,
    pub balancer: Balancer,
    /// How this cluster's endpoints are connected to (their pools live in the endpoint states).
    pub pool: PoolSettings,
    pub breaker: CircuitBreaker,
    /// The active health-check task, aborted when the runtime is retired or dropped.
    health: Option<Arc<HealthTask>>,
    /// States of endpoints that left the config while ejected (idle connections dropped):
    /// taken back if the address returns while still ejected, forgotten by the first build
    /// after their ejection ends. Read only by [`ClusterRuntime::build`].
    departed: Box<[Arc<EndpointState>]>,
}

impl ClusterRuntime {
    /// Reuses `previous` whole when the spec is unchanged; else builds a new runtime that takes
    /// over `previous`' state, endpoint states (by address, with their idle connections; an
    /// endpoint that departed while ejected and is still ejected counts as kept), connection
    /// limit and health task (same check and endpoints).
    pub fn build(
        spec: &Arc<ClusterSpec>,
        previous: Option<&Arc<ClusterRuntime>>,
        zone: Option<&str>,
    ) -> Arc<Self> {
        if let Some(previous) = previous
            && (Arc::ptr_eq(&previous.spec, spec) || previous.spec == *spec)
        {
            return Arc::clone(previous);
        }
        let state = previous.map_or_else(Arc::default, |p| Arc::clone(&p.state));
        let mut by_address: HashMap<&str, &Arc<EndpointState>> = HashMap::new();
        if let Some(previous) = previous {
            // Departed first: a state still in the previous config wins.
            for endpoint in previous.departed.iter().filter(|e| e.is_ejected()) {
                by_address.insert(endpoint.address.as_str(), endpoint);
            }
            for endpoint in previous.balancer.states() {
                by_address.insert(endpoint.address.as_str(), endpoint);
            }
        }
        let states: Vec<Arc<EndpointState>> = spec
            .endpoints
            .iter()
            .map(|e| match by_address.get(e.address.as_str()) {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(EndpointState::new(&e.address)),
            })
            .collect();
        if spec.health_check.is_none() {
            // No active checks any more: nothing will ever mark them healthy again.
            for endpoint in &states {
                endpoint.set_active_healthy(true, &state);
            }
        }
        let pool = PoolSettings {
            connect_timeout: spec.connect_timeout,
            idle_timeout: pool::DEFAULT_IDLE_TIMEOUT,
        };
        let breaker = CircuitBreaker::new(spec.circuit_breaker, previous.map(|p| &p.breaker));
        let health = Self::health_task(spec, &states, &state, previous);
        let departed = previous.map_or_else(Box::default, |p| Self::departed(spec, p));
        Arc::new(Self {
            spec: Arc::clone(spec),
            balancer: Balancer::new(spec, states, Arc::clone(&state), zone),
            state,
            pool,
            breaker,
            health,
            departed,
        })
    }

    /// The endpoint states of `previous` (in its config or departed) that are still ejected and
    /// not in `spec`; their idle connections are closed.
    fn departed(spec: &ClusterSpec, previous: &ClusterRuntime) -> Box<[Arc<EndpointState>]> {
        let present: HashSet<&str> = spec.endpoints.iter().map(|e| e.address.as_str()).collect();
        let departed: Box<[Arc<EndpointState>]> = previous
            .balancer
            .states()
            .iter()
            .chain(previous.departed.iter())
            .filter(|e| e.is_ejected() && !present.contains(e.address.as_str()))
            .cloned()
            .collect();
        for endpoint in departed.iter() {
            endpoint.connections.evict_idle(Duration::ZERO);
        }
        departed
    }

    /// Keeps `previous`' task when the check and the endpoint states are the same; else
    /// stops it and starts a new one (first round at once).
    fn health_task(
        spec: &ClusterSpec,
        states: &[Arc<EndpointState>],
        state: &Arc<ClusterState>,
        previous: Option<&Arc<ClusterRuntime>>,
    ) -> Option<Arc<HealthTask>> {
        let previous_task = previous.and_then(|p| p.health.as_ref());
        if let (Some(task), Some(check)) = (previous_task, &spec.health_check)
            && task.serves(check, states)
        {
            return Some(Arc::clone(task));
        }
        if let Some(task) = previous_task {
            task.stop();
        }
        let check = spec.health_check.as_ref()?;
        HealthTask::spawn(&spec.name, check, states, state).map(Arc::new)
    }

    /// Stops background work now (the cluster was removed or replaced), rather than when the
    /// last in-flight request lets go of this runtime.
    pub fn retire(&self) {
        if let Some(task) = &self.health {
            task.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addresses: &[&str]) -> Arc<ClusterSpec> {
        crate::balancer::test_support::web_spec(addresses)
    }

    fn state<'a>(runtime: &'a ClusterRuntime, address: &str) -> &'a Arc<EndpointState> {
        let states = runtime.balancer.states();
        states.iter().find(|e| e.address == address).unwrap()
    }

    #[test]
    fn an_ejected_endpoint_that_leaves_and_returns_is_still_ejected() {
        let first = ClusterRuntime::build(&spec(&["a:1", "b:1", "c:1"]), None, None);
        let b = Arc::clone(state(&first, "b:1"));
        assert!(b.set_ejected(true, &first.state));
        let without_b = ClusterRuntime::build(&spec(&["a:1", "c:1"]), Some(&first), None);
        assert_eq!(without_b.departed.len(), 1);
        assert!(Arc::ptr_eq(&without_b.departed[0], &b));
        let unrelated =
            ClusterRuntime::build(&spec(&["a:1", "c:1", "d:1"]), Some(&without_b), None);
        assert_eq!(unrelated.departed.len(), 1, "remembered across configs");
        let back =
            ClusterRuntime::build(&spec(&["a:1", "b:1", "c:1", "d:1"]), Some(&unrelated), None);
        assert!(Arc::ptr_eq(state(&back, "b:1"), &b), "the same state");
        assert!(!state(&back, "b:1").is_available(), "still ejected");
        assert!(back.departed.is_empty());
        assert!(Arc::ptr_eq(&back.state, &first.state));
    }

    #[test]
    fn a_departed_endpoint_is_forgotten_once_its_ejection_ends() {
        let first = ClusterRuntime::build(&spec(&["a:1", "b:1"]), None, None);
        let b = Arc::clone(state(&first, "b:1"));
        let a = Arc::clone(state(&first, "a:1"));
        assert!(b.set_ejected(true, &first.state));
        let without_b = ClusterRuntime::build(&spec(&["a:1"]), Some(&first), None);
        assert!(b.set_ejected(false, &first.state), "its ejection ends");
        let back = ClusterRuntime::build(&spec(&["a:1", "b:1"]), Some(&without_b), None);
        assert!(!Arc::ptr_eq(state(&back, "b:1"), &b), "a fresh state");
        assert!(state(&back, "b:1").is_available());
        assert!(
            Arc::ptr_eq(state(&back, "a:1"), &a),
            "kept endpoints keep theirs"
        );
        let pruned = ClusterRuntime::build(&spec(&["a:1", "c:1"]), Some(&without_b), None);
        assert!(
            pruned.departed.is_empty(),
            "a departed state no longer ejected is dropped by the next change"
        );
    }
}
