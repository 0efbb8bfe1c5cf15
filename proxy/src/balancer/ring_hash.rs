//! Ketama-style consistent hashing: every endpoint owns [`VNODES_PER_WEIGHT`] points per unit
//! of weight on a 64-bit ring (hash of its address and the point number); a request key goes to
//! the first point at or after it, clockwise.
//!
//! Removing one of N endpoints moves only the keys it owned (about 1/N); an unavailable
//! endpoint's keys walk on to the next points, spread over the survivors, while every other key
//! stays put. The ring is built once per config (sorted array, binary search per pick) and is
//! bounded to [`MAX_POINTS`] by scaling the points down proportionally.

use super::hash::hash64;
use super::{Candidates, Member};

/// Points per unit of weight.
pub const VNODES_PER_WEIGHT: u64 = 128;
/// Largest ring (points) whatever the weights.
pub const MAX_POINTS: u64 = 1 << 18;

/// The `ring_hash` policy.
#[derive(Debug)]
pub struct RingHash {
    /// `(point, cluster endpoint index)`, sorted by point.
    points: Box<[(u64, u32)]>,
}

impl RingHash {
    pub fn new(members: &[Member<'_>]) -> Self {
        let total_weight: u64 = members.iter().map(|m| u64::from(m.weight.max(1))).sum();
        let per_weight = |weight: u64| -> u64 {
            if total_weight * VNODES_PER_WEIGHT <= MAX_POINTS {
                weight * VNODES_PER_WEIGHT
            } else {
                (weight * MAX_POINTS / total_weight).max(1)
            }
        };
        let mut points: Vec<(u64, u32)> = Vec::new();
        for member in members {
            for vnode in 0..per_weight(u64::from(member.weight.max(1))) {
                points.push((hash64(vnode, member.address.as_bytes()), member.index));
            }
        }
        points.sort_unstable();
        Self {
            points: points.into_boxed_slice(),
        }
    }

    /// The owner of `key`, or the next usable endpoint clockwise.
    pub fn pick(&self, key: u64, candidates: &Candidates<'_>) -> Option<usize> {
        let len = self.points.len();
        let start = self.points.partition_point(|&(point, _)| point < key);
        (0..len)
            .map(|offset| self.points[(start + offset) % len].1 as usize)
            .find(|&index| candidates.usable(index))
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{moved_fraction, named_members, states};
    use super::*;

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10;
        let before = named_members(n);
        let after: Vec<_> = before.iter().filter(|m| m.index != 3).cloned().collect();
        let (ring_before, ring_after) = (RingHash::new(&before), RingHash::new(&after));
        let states = states(n);
        let candidates = Candidates::new(&states, &[]);
        let moved = moved_fraction(
            |key| ring_before.pick(key, &candidates),
            |key| ring_after.pick(key, &candidates),
        );
        // Only endpoint 3's keys move: ~1/10 (its share), never more.
        assert!(moved > 0.05 && moved < 0.15, "moved {moved}");
    }

    #[test]
    fn stable_weighted_and_skips_unavailable() {
        let members = named_members(3);
        let ring = RingHash::new(&members);
        assert_eq!(ring.len(), 3 * VNODES_PER_WEIGHT as usize);
        let states = states(3);
        let candidates = Candidates::new(&states, &[]);
        let owner = ring.pick(42, &candidates).unwrap();
        assert_eq!(RingHash::new(&members).pick(42, &candidates), Some(owner));
        let excluded = [owner];
        let without = Candidates::new(&states, &excluded);
        let next = ring.pick(42, &without).unwrap();
        assert_ne!(next, owner);
        let mut counts = [0u32; 3];
        for key in 0..30_000u64 {
            counts[ring
                .pick(super::super::hash::fmix64(key), &candidates)
                .unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (8000..12_000).contains(&c)),
            "{counts:?}"
        );
    }
}
