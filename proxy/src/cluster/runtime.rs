//! A cluster at run time, per config: [`ClusterRuntime`] holds the balancer, connect
//! settings and breaker limits compiled from one spec, over the long-lived
//! [`ClusterState`] and endpoint states it takes over from the previous config.
//!
//! [`ClusterRuntime::build`] is pure: it allocates, it never spawns, connects or touches a
//! global, and the request path only reads what it built. Endpoint states are taken over by
//! address, so a config update that keeps an endpoint keeps its load, latency EWMA, health and
//! ejection. An endpoint that leaves the config while ejected is remembered until its ejection
//! ends, so one that comes back meanwhile is still out. What runs for a cluster (health checks,
//! idle-connection eviction) is the supervisor's ([`crate::supervisor`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ClusterState;
use crate::balancer::Balancer;
use crate::circuit_breaker::CircuitBreaker;
use crate::endpoint::EndpointState;
use crate::endpoint::pool::{self, PoolSettings};
use crate::model::ClusterSpec;

/// A cluster ready to take traffic.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub spec: Arc<ClusterSpec>,
    pub state: Arc<ClusterState>,
    pub balancer: Balancer,
    /// How this cluster's endpoints are connected to (their pools live in the endpoint states).
    pub pool: PoolSettings,
    pub breaker: CircuitBreaker,
    /// States of endpoints that left the config while ejected (idle connections dropped):
    /// taken back if the address returns while still ejected, forgotten by the first build
    /// after their ejection ends. Read only by [`ClusterRuntime::build`].
    departed: Box<[Arc<EndpointState>]>,
}

impl ClusterRuntime {
    /// Reuses `previous` whole when the spec is unchanged; else builds a new runtime that takes
    /// over `previous`' state, endpoint states (by address, with their idle connections; an
    /// endpoint that departed while ejected and is still ejected counts as kept) and
    /// connection limit. New endpoint states get an idle stack for each of `workers`.
    pub fn build(
        spec: &Arc<ClusterSpec>,
        previous: Option<&Arc<ClusterRuntime>>,
        zone: Option<&str>,
        workers: usize,
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
                None => Arc::new(EndpointState::new(&e.address, workers)),
            })
            .collect();
        let pool = PoolSettings {
            connect_timeout: spec.connect_timeout,
            idle_timeout: pool::DEFAULT_IDLE_TIMEOUT,
        };
        let breaker = CircuitBreaker::new(spec.circuit_breaker, previous.map(|p| &p.breaker));
        let departed = previous.map_or_else(Box::default, |p| Self::departed(spec, p));
        Arc::new(Self {
            spec: Arc::clone(spec),
            balancer: Balancer::new(spec, states, Arc::clone(&state.endpoints), zone),
            state,
            pool,
            breaker,
            departed,
        })
    }

    /// The endpoint states of `previous` (in its config or departed) that are still ejected and
    /// not in `spec`. (Their idle connections are the supervisor's to close, on this change.)
    fn departed(spec: &ClusterSpec, previous: &ClusterRuntime) -> Box<[Arc<EndpointState>]> {
        let present: HashSet<&str> = spec.endpoints.iter().map(|e| e.address.as_str()).collect();
        previous
            .balancer
            .states()
            .iter()
            .chain(previous.departed.iter())
            .filter(|e| e.is_ejected() && !present.contains(e.address.as_str()))
            .cloned()
            .collect()
    }

    /// Endpoint states remembered because they left the config while ejected.
    pub fn departed_endpoints(&self) -> &[Arc<EndpointState>] {
        &self.departed
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
        let first = ClusterRuntime::build(&spec(&["a:1", "b:1", "c:1"]), None, None, 1);
        let b = Arc::clone(state(&first, "b:1"));
        assert!(b.set_ejected(true, &first.state.endpoints));
        let without_b = ClusterRuntime::build(&spec(&["a:1", "c:1"]), Some(&first), None, 1);
        assert_eq!(without_b.departed.len(), 1);
        assert!(Arc::ptr_eq(&without_b.departed[0], &b));
        let unrelated =
            ClusterRuntime::build(&spec(&["a:1", "c:1", "d:1"]), Some(&without_b), None, 1);
        assert_eq!(unrelated.departed.len(), 1, "remembered across configs");
        let back = ClusterRuntime::build(
            &spec(&["a:1", "b:1", "c:1", "d:1"]),
            Some(&unrelated),
            None,
            1,
        );
        assert!(Arc::ptr_eq(state(&back, "b:1"), &b), "the same state");
        assert!(!state(&back, "b:1").is_available(), "still ejected");
        assert!(back.departed.is_empty());
        assert!(Arc::ptr_eq(&back.state, &first.state));
    }

    #[test]
    fn a_departed_endpoint_is_forgotten_once_its_ejection_ends() {
        let first = ClusterRuntime::build(&spec(&["a:1", "b:1"]), None, None, 1);
        let b = Arc::clone(state(&first, "b:1"));
        let a = Arc::clone(state(&first, "a:1"));
        assert!(b.set_ejected(true, &first.state.endpoints));
        let without_b = ClusterRuntime::build(&spec(&["a:1"]), Some(&first), None, 1);
        assert!(
            b.set_ejected(false, &first.state.endpoints),
            "its ejection ends"
        );
        let back = ClusterRuntime::build(&spec(&["a:1", "b:1"]), Some(&without_b), None, 1);
        assert!(!Arc::ptr_eq(state(&back, "b:1"), &b), "a fresh state");
        assert!(state(&back, "b:1").is_available());
        assert!(
            Arc::ptr_eq(state(&back, "a:1"), &a),
            "kept endpoints keep theirs"
        );
        let pruned = ClusterRuntime::build(&spec(&["a:1", "c:1"]), Some(&without_b), None, 1);
        assert!(
            pruned.departed.is_empty(),
            "a departed state no longer ejected is dropped by the next change"
        );
    }
}
