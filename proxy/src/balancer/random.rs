//! Weighted random: each pick draws an endpoint with probability weight / total, from a
//! cumulative-weight table built once per config (binary search, no lock, no allocation).
//!
//! [`WeightedTable`] is also how the power-of-two-choices policies draw their two candidates.
//! Unavailable (unhealthy, ejected, already tried) endpoints are skipped by redrawing a few
//! times, then by a scan from a random start, so a mostly-down level still finds its survivors.

use super::{Candidates, Member};

/// Redraws before falling back to a scan.
const REDRAWS: usize = 4;

/// Cumulative weights over a set of members.
#[derive(Debug)]
pub struct WeightedTable {
    /// Cluster endpoint indices.
    members: Box<[u32]>,
    /// `cumulative[i]` = sum of weights of members `0..=i`.
    cumulative: Box<[u64]>,
}

impl WeightedTable {
    pub fn new(members: &[Member<'_>]) -> Self {
        let mut total = 0u64;
        let cumulative = members
            .iter()
            .map(|m| {
                total += u64::from(m.weight.max(1));
                total
            })
            .collect();
        Self {
            members: members.iter().map(|m| m.index).collect(),
            cumulative,
        }
    }

    /// A weighted draw, ignoring availability; `None` when empty.
    #[inline]
    pub fn sample(&self) -> Option<usize> {
        let total = *self.cumulative.last()?;
        let point = fastrand::u64(..total);
        let position = self.cumulative.partition_point(|&c| c <= point);
        Some(self.members[position] as usize)
    }

    /// A weighted draw among usable members.
    pub fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        for _ in 0..REDRAWS {
            let index = self.sample()?;
            if candidates.usable(index) {
                return Some(index);
            }
        }
        let start = fastrand::usize(..self.members.len());
        (0..self.members.len())
            .map(|offset| self.members[(start + offset) % self.members.len()] as usize)
            .find(|&index| candidates.usable(index))
    }

    /// A weighted draw among usable members other than `first` (the second candidate of the
    /// power of two choices).
    pub fn pick_other(&self, candidates: &Candidates<'_>, first: usize) -> Option<usize> {
        for _ in 0..REDRAWS {
            let index = self.sample()?;
            if index != first && candidates.usable(index) {
                return Some(index);
            }
        }
        let start = fastrand::usize(..self.members.len());
        (0..self.members.len())
            .map(|offset| self.members[(start + offset) % self.members.len()] as usize)
            .find(|&index| index != first && candidates.usable(index))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The `random` policy.
#[derive(Debug)]
pub struct Random {
    table: WeightedTable,
}

impl Random {
    pub fn new(members: &[Member<'_>]) -> Self {
        Self {
            table: WeightedTable::new(members),
        }
    }

    pub fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        self.table.pick(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{members, states};
    use super::*;

    #[test]
    fn weighted_distribution_within_tolerance() {
        let weights = [1, 2, 7];
        let states = states(3);
        let random = Random::new(&members(&weights));
        let candidates = Candidates::new(&states, &[]);
        let mut counts = [0u32; 3];
        let picks = 100_000;
        for _ in 0..picks {
            counts[random.pick(&candidates).unwrap()] += 1;
        }
        for (count, weight) in counts.iter().zip(weights) {
            let expected = f64::from(picks) * f64::from(weight) / 10.0;
            let error = (f64::from(*count) - expected).abs() / expected;
            assert!(error < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn skips_unavailable_and_excluded() {
        let states = states(3);
        let random = Random::new(&members(&[100, 1, 1]));
        let candidates = Candidates::new(&states, &[0, 1]);
        for _ in 0..100 {
            assert_eq!(random.pick(&candidates), Some(2));
        }
        let none = Candidates::new(&states, &[0, 1, 2]);
        assert_eq!(random.pick(&none), None);
        assert_eq!(Random::new(&[]).pick(&none), None);
    }
}
