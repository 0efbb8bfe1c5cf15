//! Endpoint selection for one cluster: built once per config, picked lock-free per request.
//!
//! A [`Balancer`] holds the cluster's [`EndpointState`]s (taken over by address from the
//! previous config, so load, latency and health survive updates), groups the endpoints into
//! priority levels, and builds one policy per level — plus one over the level's same-zone
//! endpoints when the proxy has a `zone` label. A pick:
//!
//! 1. refreshes the cached healthy counts per level if any endpoint changed health (one atomic
//!    compare per pick otherwise);
//! 2. chooses a level by Envoy's overprovisioned priority load ([`priority`]);
//! 3. prefers the proxy's zone within it while that zone is healthy and not overloaded;
//! 4. asks the policy, which skips unavailable (unhealthy, ejected) and excluded (already
//!    tried) endpoints; when that finds nothing, every level is tried in order.
//!
//! Policies, one file each: [`round_robin`], [`random`], [`least_request`],
//! [`least_response_time`], [`ip_hash`], [`ring_hash`], [`maglev`]; [`hash`] is their hashing.

pub mod hash;
pub mod ip_hash;
pub mod least_request;
pub mod least_response_time;
pub mod maglev;
pub mod priority;
pub mod random;
pub mod ring_hash;
pub mod round_robin;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use http::HeaderMap;

use crate::endpoint::{EndpointGroup, EndpointState};
use crate::model::{ClusterSpec, HashOn, LbPolicy};
pub use round_robin::{RoundRobin, WeightedCycle};

/// What a policy may look at when choosing.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
}

/// One endpoint as a policy builder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Index into the cluster's endpoint list.
    pub index: u32,
    pub weight: u32,
    pub address: &'a str,
}

/// Which endpoints a pick may return.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    pub states: &'a [Arc<EndpointState>],
    /// Endpoints already tried by this request (a retry goes elsewhere).
    exclude: &'a [usize],
}

impl<'a> Candidates<'a> {
    pub fn new(states: &'a [Arc<EndpointState>], exclude: &'a [usize]) -> Self {
        Self { states, exclude }
    }

    /// Available and not excluded.
    #[inline]
    pub fn usable(&self, index: usize) -> bool {
        self.states[index].is_available() && !self.exclude.contains(&index)
    }
}

/// One policy instance over a set of members.
#[derive(Debug)]
enum Policy {
    RoundRobin(RoundRobin),
    Random(random::Random),
    LeastRequest(least_request::LeastRequest),
    LeastResponseTime(least_response_time::LeastResponseTime),
    IpHash(ip_hash::IpHash),
    RingHash(ring_hash::RingHash),
    Maglev(maglev::Maglev),
}

impl Policy {
    fn new(policy: LbPolicy, members: &[Member<'_>]) -> Self {
        match policy {
            LbPolicy::RoundRobin => Policy::RoundRobin(RoundRobin::new(members)),
            LbPolicy::Random => Policy::Random(random::Random::new(members)),
            LbPolicy::LeastRequest => {
                Policy::LeastRequest(least_request::LeastRequest::new(members))
            }
            LbPolicy::LeastResponseTime => {
                Policy::LeastResponseTime(least_response_time::LeastResponseTime::new(members))
            }
            LbPolicy::IpHash => Policy::IpHash(ip_hash::IpHash::new(members)),
            LbPolicy::RingHash => Policy::RingHash(ring_hash::RingHash::new(members)),
            LbPolicy::Maglev => Policy::Maglev(maglev::Maglev::new(members)),
        }
    }

    #[inline]
    fn pick(&self, key: u64, ip: IpAddr, candidates: &Candidates<'_>) -> Option<usize> {
        match self {
            Policy::RoundRobin(p) => p.pick(candidates),
            Policy::Random(p) => p.pick(candidates),
            Policy::LeastRequest(p) => p.pick(candidates),
            Policy::LeastResponseTime(p) => p.pick(candidates),
            Policy::IpHash(p) => p.pick(ip, candidates),
            Policy::RingHash(p) => p.pick(key, candidates),
            Policy::Maglev(p) => p.pick(key, candidates),
        }
    }
}

/// One priority level.
#[derive(Debug)]
struct Level {
    members: Box<[u32]>,
    all: Policy,
    /// Over the same-zone members, when the level mixes zones and has some in the proxy's.
    local: Option<Policy>,
    local_total: u32,
    /// Cached counts, refreshed when the cluster's health epoch moves.
    healthy: AtomicU32,
    local_healthy: AtomicU32,
}

/// A cluster's balancer.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    hash_on: HashOn,
    states: Box<[Arc<EndpointState>]>,
    /// Per endpoint: in the proxy's zone.
    local: Box<[bool]>,
    levels: Box<[Level]>,
    group: Arc<EndpointGroup>,
    /// The group's availability epoch the cached counts reflect (`u64::MAX`: never computed).
    view_epoch: AtomicU64,
    healthy_total: AtomicU32,
}

impl Balancer {
    /// Builds the balancer of `spec`; `states[i]` is endpoint `i`'s state; `zone` the proxy's.
    pub fn new(
        spec: &ClusterSpec,
        states: Vec<Arc<EndpointState>>,
        group: Arc<EndpointGroup>,
        zone: Option<&str>,
    ) -> Self {
        let local: Box<[bool]> = spec
            .endpoints
            .iter()
            .map(|e| zone.is_some_and(|zone| !zone.is_empty() && e.zone == zone))
            .collect();
        let mut priorities: Vec<u32> = spec.endpoints.iter().map(|e| e.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let levels = priorities
            .into_iter()
            .map(|priority| {
                let members: Vec<Member<'_>> = spec
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.priority == priority)
                    .map(|(index, e)| Member {
                        index: index as u32,
                        weight: e.weight,
                        address: &e.address,
                    })
                    .collect();
                let local_members: Vec<Member<'_>> = members
                    .iter()
                    .filter(|m| local[m.index as usize])
                    .copied()
                    .collect();
                let mixed = !local_members.is_empty() && local_members.len() < members.len();
                Level {
                    all: Policy::new(spec.lb_policy, &members),
                    local: mixed.then(|| Policy::new(spec.lb_policy, &local_members)),
                    local_total: local_members.len() as u32,
                    members: members.iter().map(|m| m.index).collect(),
                    healthy: AtomicU32::new(0),
                    local_healthy: AtomicU32::new(0),
                }
            })
            .collect();
        Self {
            policy: spec.lb_policy,
            hash_on: spec.hash_on.clone(),
            states: states.into_boxed_slice(),
            local,
            levels,
            group,
            view_epoch: AtomicU64::new(u64::MAX),
            healthy_total: AtomicU32::new(0),
        }
    }

    /// The endpoint states, in the spec's endpoint order.
    pub fn states(&self) -> &[Arc<EndpointState>] {
        &self.states
    }

    /// Whether endpoint `index` is in the proxy's zone.
    pub fn is_local(&self, index: usize) -> bool {
        self.local[index]
    }

    /// Endpoints currently available (for the healthy-endpoints gauge).
    pub fn healthy_count(&self) -> u32 {
        self.refresh();
        self.healthy_total.load(Ordering::Relaxed)
    }

    /// The endpoint index for this request, avoiding `exclude`; `None` when no endpoint is
    /// available (→ 503).
    pub fn pick(&self, ctx: &PickContext<'_>, exclude: &[usize]) -> Option<usize> {
        self.refresh();
        let candidates = Candidates::new(&self.states, exclude);
        let key = match self.policy {
            LbPolicy::RingHash | LbPolicy::Maglev => {
                hash::request_key(&self.hash_on, ctx).unwrap_or_else(|| fastrand::u64(..))
            }
            _ => 0,
        };
        let health = self.levels.iter().map(|level| {
            priority::level_health(
                level.healthy.load(Ordering::Relaxed),
                level.members.len() as u32,
            )
        });
        if let Some(chosen) = priority::choose_level(health, fastrand::u32(..100))
            && let Some(index) = self.pick_in_level(&self.levels[chosen], key, ctx, &candidates)
        {
            return Some(index);
        }
        // Counts can lag a transition by a pick, and exclusions are not counted: fall back to
        // every level in priority order.
        self.levels
            .iter()
            .find_map(|level| level.all.pick(key, ctx.client_ip, &candidates))
    }

    fn pick_in_level(
        &self,
        level: &Level,
        key: u64,
        ctx: &PickContext<'_>,
        candidates: &Candidates<'_>,
    ) -> Option<usize> {
        if let Some(local) = &level.local {
            let prefer = priority::prefer_local(
                level.local_healthy.load(Ordering::Relaxed),
                level.local_total,
                self.healthy_total.load(Ordering::Relaxed),
                self.group.in_flight_local(),
                self.group.in_flight(),
            );
            if prefer && let Some(index) = local.pick(key, ctx.client_ip, candidates) {
                return Some(index);
            }
        }
        level.all.pick(key, ctx.client_ip, candidates)
    }

    /// Recounts healthy endpoints per level when the group's availability epoch moved.
    fn refresh(&self) {
        let epoch = self.group.epoch();
        if self.view_epoch.load(Ordering::Acquire) == epoch {
            return;
        }
        let mut total = 0;
        for level in self.levels.iter() {
            let (mut healthy, mut local_healthy) = (0, 0);
            for &index in level.members.iter() {
                if self.states[index as usize].is_available() {
                    healthy += 1;
                    local_healthy += u32::from(self.local[index as usize]);
                }
            }
            level.healthy.store(healthy, Ordering::Relaxed);
            level.local_healthy.store(local_healthy, Ordering::Relaxed);
            total += healthy;
        }
        self.healthy_total.store(total, Ordering::Relaxed);
        self.view_epoch.store(epoch, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
