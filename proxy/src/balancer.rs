//! Endpoint selection for one cluster, built once per snapshot and picked lock-free per request.
//!
//! Every `lb_policy` currently uses smooth weighted round robin ([`round_robin`]); the other
//! policies (least request, random, hashing…) come in a later issue as new [`Balancer`]
//! variants, one file each under `balancer/`. Only the endpoints of the lowest `priority`
//! number are used: without health checking (a later issue) every endpoint counts as healthy,
//! so the higher-numbered (passive) groups never need to take over yet.

pub mod round_robin;

use std::net::IpAddr;

use http::HeaderMap;

use crate::model::{ClusterSpec, EndpointSpec};
pub use round_robin::{RoundRobin, WeightedCycle};

/// What a policy may look at when choosing (hash policies will read headers and the client IP).
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
}

/// A cluster's balancer; one variant per policy.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
}

impl Balancer {
    /// Builds the balancer for `spec`'s active (lowest priority number) endpoint group.
    pub fn new(spec: &ClusterSpec) -> Self {
        let active_priority = spec.endpoints.iter().map(|e| e.priority).min();
        let endpoints: Vec<EndpointSpec> = spec
            .endpoints
            .iter()
            .filter(|e| Some(e.priority) == active_priority)
            .cloned()
            .collect();
        Balancer::RoundRobin(RoundRobin::new(endpoints))
    }

    /// The endpoint for this request; `None` when the cluster has no endpoint to offer.
    pub fn pick(&self, _ctx: &PickContext<'_>) -> Option<&EndpointSpec> {
        match self {
            Balancer::RoundRobin(round_robin) => round_robin.pick(),
        }
    }
}
