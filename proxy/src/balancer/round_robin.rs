//! Smooth weighted round robin (nginx's algorithm): within each cycle of `sum(weights)` picks
//! every endpoint gets exactly its weight, spread out rather than in bursts.
//!
//! The cycle is computed once when the snapshot is built; a pick is one atomic increment and an
//! index into it — no lock, no allocation. Unavailable endpoints are stepped over (at most one
//! cycle), so the survivors keep their relative shares. Weights are divided by their GCD and, when the cycle
//! would exceed [`MAX_CYCLE`] picks, scaled down proportionally (each kept ≥ 1), which keeps the
//! shares close while bounding memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidates, Member};

/// Longest precomputed cycle.
pub const MAX_CYCLE: u64 = 4096;

/// A precomputed smooth-WRR sequence of indices with a shared cursor.
#[derive(Debug)]
pub struct WeightedCycle {
    sequence: Box<[u32]>,
    next: AtomicUsize,
}

impl WeightedCycle {
    /// Builds the cycle for `weights`; a weight of 0 is never picked. The cursor starts at a
    /// random position so a fleet of proxies does not hit the same first endpoint together.
    pub fn new(weights: &[u32]) -> Self {
        let sequence = smooth_sequence(weights).into_boxed_slice();
        let start = if sequence.is_empty() {
            0
        } else {
            fastrand::usize(..sequence.len())
        };
        Self {
            sequence,
            next: AtomicUsize::new(start),
        }
    }

    /// Picks in one cycle.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// Index of the next pick, `None` if every weight is 0 (or there are none).
    pub fn next_index(&self) -> Option<usize> {
        if self.sequence.is_empty() {
            return None;
        }
        let position = self.next.fetch_add(1, Ordering::Relaxed) % self.sequence.len();
        Some(self.sequence[position] as usize)
    }
}

/// The `round_robin` policy over a set of members (weights ≥ 1).
#[derive(Debug)]
pub struct RoundRobin {
    /// Cluster endpoint indices, in the cycle's numbering.
    members: Box<[u32]>,
    cycle: WeightedCycle,
}

impl RoundRobin {
    pub fn new(members: &[Member<'_>]) -> Self {
        let weights: Vec<u32> = members.iter().map(|m| m.weight.max(1)).collect();
        Self {
            cycle: WeightedCycle::new(&weights),
            members: members.iter().map(|m| m.index).collect(),
        }
    }

    /// The next usable member in the cycle.
    pub fn pick(&self, candidates: &Candidates<'_>) -> Option<usize> {
        (0..self.cycle.len())
            .filter_map(|_| self.cycle.next_index())
            .map(|position| self.members[position] as usize)
            .find(|&index| candidates.usable(index))
    }
}

/// One cycle of nginx's smooth weighted round robin over `weights`.
pub fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let weights = normalise(weights);
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (index, weight) in weights.iter().enumerate() {
            current[index] += i64::from(*weight);
            if current[index] > current[best] {
                best = index;
            }
        }
        current[best] -= total;
        sequence.push(best as u32);
    }
    sequence
}

/// Divides by the GCD and bounds the total to [`MAX_CYCLE`] (non-zero weights stay ≥ 1).
fn normalise(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().fold(0u32, |acc, &w| gcd(acc, w)).max(1);
    let mut reduced: Vec<u32> = weights.iter().map(|&w| w / divisor).collect();
    let total: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
    if total > MAX_CYCLE {
        for weight in reduced.iter_mut().filter(|w| **w > 0) {
            *weight = ((u64::from(*weight) * MAX_CYCLE / total) as u32).max(1);
        }
    }
    reduced
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(weights: &[u32]) -> String {
        smooth_sequence(weights)
            .into_iter()
            .map(|i| (b'a' + i as u8) as char)
            .collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        assert_eq!(letters(&[5, 1, 1]), "aabacaa");
    }

    #[test]
    fn exact_shares_per_cycle_and_spread() {
        let weights = [3, 2, 1];
        let sequence = smooth_sequence(&weights);
        assert_eq!(sequence.len(), 6);
        for (index, weight) in weights.iter().enumerate() {
            let count = sequence.iter().filter(|&&s| s as usize == index).count();
            assert_eq!(count, *weight as usize);
        }
        // Spread, not bursts: equal weights alternate.
        assert_eq!(letters(&[1, 1]), "ab");
        assert_eq!(letters(&[2, 2, 2]), "abc", "GCD reduced");
        // With 2:1, the heavy endpoint never takes the cycle twice in a row at both ends.
        assert_eq!(letters(&[2, 1]), "aba");
    }

    #[test]
    fn zero_weights_and_bounds() {
        assert_eq!(letters(&[0, 1]), "b");
        assert!(smooth_sequence(&[0, 0]).is_empty());
        assert!(smooth_sequence(&[]).is_empty());
        let big = smooth_sequence(&[u32::MAX, 1, 7]);
        assert!(big.len() as u64 <= MAX_CYCLE + 2);
        assert!(
            big.contains(&1) && big.contains(&2),
            "small weights keep a share"
        );
    }

    #[test]
    fn cursor_walks_cycle_exactly() {
        let cycle = WeightedCycle::new(&[5, 1, 1]);
        let mut counts = [0usize; 3];
        for _ in 0..70 {
            counts[cycle.next_index().unwrap()] += 1;
        }
        assert_eq!(counts, [50, 10, 10]);
        assert_eq!(WeightedCycle::new(&[]).next_index(), None);
    }

    #[test]
    fn skips_unavailable_keeping_shares() {
        let states = super::super::test_support::states(3);
        let policy = RoundRobin::new(&super::super::test_support::members(&[2, 1, 1]));
        let candidates = Candidates::new(&states, &[]);
        let mut counts = [0usize; 3];
        for _ in 0..400 {
            counts[policy.pick(&candidates).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 100, 100]);
        let without_first = Candidates::new(&states, &[0]);
        let mut counts = [0usize; 3];
        for _ in 0..400 {
            counts[policy.pick(&without_first).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1].abs_diff(counts[2]) <= 100, "{counts:?}");
    }
}
