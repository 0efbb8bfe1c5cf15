//! Least request by the power of two choices: draw two distinct endpoints (weighted), send to
//! the one with fewer requests in flight (Envoy's and Finagle's P2C; Mitzenmacher's result:
//! nearly as good as scanning every endpoint, at O(1) and without herding onto one endpoint).
//!
//! In-flight counts are atomics on [`EndpointState`](crate::endpoint::EndpointState), held by an [`InFlightGuard`](crate::endpoint::InFlightGuard)
//! for each request's whole life (response body included). Weights bias which two endpoints are
//! drawn, so at equal load the heavier endpoint is chosen more often.

use super::random::WeightedTable;
use super::{Candidates, Member};

/// The `least_request` policy.
#[derive(Debug)]
pub struct LeastRequest {
    table: WeightedTable,
}

impl LeastRequest {
    pub fn new(members: &[Member<'_>]) -> Self {
        Self {
            table: WeightedTable::new(members),
        }
    }

    pub fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        power_of_two(&self.table, candidates, |index| {
            f64::from(candidates.states[index].in_flight())
        })
    }
}

/// Draws two distinct usable members and returns the one with the lower `cost` (the first on a
/// tie); one candidate when only one is usable.
pub fn power_of_two(
    table: &WeightedTable,
    candidates: &Candidates<'_>,
    cost: impl Fn(usize) -> f64,
) -> Option<usize> {
    let first = table.pick(candidates)?;
    if table.len() < 2 {
        return Some(first);
    }
    match table.pick_other(candidates, first) {
        Some(second) if cost(second) < cost(first) => Some(second),
        _ => Some(first),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cluster, members, states};
    use super::*;
    use crate::endpoint::InFlightGuard;

    #[test]
    fn prefers_the_less_loaded() {
        let states = states(2);
        let cluster = cluster();
        let policy = LeastRequest::new(&members(&[1, 1]));
        let _busy: Vec<_> = (0..5)
            .map(|_| InFlightGuard::new(&states[0], &cluster, false))
            .collect();
        let candidates = Candidates::new(&states, &[]);
        let mut to_idle = 0;
        for _ in 0..1000 {
            if policy.pick(&candidates) == Some(1) {
                to_idle += 1;
            }
        }
        // Both drawn (distinct) every time: the idle one always wins.
        assert_eq!(to_idle, 1000);
    }

    #[test]
    fn equal_load_spreads() {
        let states = states(4);
        let policy = LeastRequest::new(&members(&[1, 1, 1, 1]));
        let candidates = Candidates::new(&states, &[]);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[policy.pick(&candidates).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}
