//! Least response time by peak EWMA (linkerd2-proxy / Finagle): each endpoint keeps an
//! exponentially weighted moving average of its time to response headers that jumps straight
//! up to any slower sample (the "peak") and decays with a time constant of 10 s. A pick
//! draws two endpoints (power of two choices, weighted) and takes the lower
//! `cost = ewma × (in_flight + 1)`.
//!
//! The estimate itself ([`PeakEwma`]) is kept in each endpoint's state.
//!
//! [`PeakEwma`]: crate::endpoint::ewma::PeakEwma

use super::least_request::power_of_two;
use super::random::WeightedTable;
use super::{Candidates, Member};
use crate::endpoint::clock::monotonic_nanos;

/// The `least_response_time` policy.
#[derive(Debug)]
pub struct LeastResponseTime {
    table: WeightedTable,
}

impl LeastResponseTime {
    pub fn new(members: &[Member<'_>]) -> Self {
        Self {
            table: WeightedTable::new(members),
        }
    }

    pub fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        let now = monotonic_nanos();
        power_of_two(&self.table, candidates, |index| {
            let state = &candidates.states[index];
            state.ewma.estimate(now) * f64::from(state.in_flight() + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::{members, states};
    use super::*;

    #[test]
    fn prefers_the_faster() {
        let states = states(2);
        let now = monotonic_nanos();
        states[0].ewma.observe(Duration::from_millis(200), now);
        states[1].ewma.observe(Duration::from_millis(5), now);
        let policy = LeastResponseTime::new(&members(&[1, 1]));
        let candidates = Candidates::new(&states, &[]);
        let to_fast = (0..1000)
            .filter(|_| policy.pick(&candidates) == Some(1))
            .count();
        assert_eq!(to_fast, 1000);
    }
}
