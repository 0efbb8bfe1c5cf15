//! A cluster at run time: [`ClusterRuntime`] (built per config: balancer, connect settings, breaker limits,
//! health-check task) and [`ClusterState`] (long-lived, kept by cluster name across configs:
//! health epoch, ejection count, zone load, retry budget, in-flight counts and metrics).
//!
//! The snapshot builder is the only caller of [`ClusterRuntime::build`]; the request path only
//! reads. Endpoint states are taken over by address, so a config update that keeps an endpoint
//! keeps its load, latency EWMA, health and ejection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
    /// Endpoints currently ejected by outlier detection.
    pub(crate) ejected: AtomicU32,
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

    /// Endpoints currently ejected.
    pub fn ejected_count(&self) -> u32 {
        self.ejected.load(Ordering::Relaxed)
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
}

impl ClusterRuntime {
    /// Reuses `previous` whole when the spec is unchanged; else builds a new runtime that takes
    /// over `previous`' state, endpoint states (by address, with their idle connections),
    /// connection limit and health task (same check and endpoints).
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
        Arc::new(Self {
            spec: Arc::clone(spec),
            balancer: Balancer::new(spec, states, Arc::clone(&state), zone),
            state,
            pool,
            breaker,
            health,
        })
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
