//! Maglev consistent hashing (Google's Maglev paper, as in Envoy): a lookup table of
//! [`TABLE_SIZE`] (prime) slots filled by letting every endpoint claim slots in turn along its
//! own permutation (`offset + j × skip`, both from hashes of its address), in proportion to its
//! weight. A pick is one table read.
//!
//! The table is built once per config. Removing one of N endpoints moves its keys and only a
//! small extra fraction of others; an unavailable endpoint's slots probe forward to the next
//! usable slot, leaving every other key in place.

use super::hash::hash64;
use super::{Candidates, Member};

/// Slots in the lookup table (a prime, so every skip generates a full permutation).
pub const TABLE_SIZE: usize = 65_537;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66;
const SEED_SKIP: u64 = 0x6d61_676c_6576_736b;

/// The `maglev` policy's lookup table.
#[derive(Debug)]
pub struct Maglev {
    /// Cluster endpoint index per slot; empty when there are no members.
    table: Box<[u32]>,
}

impl Maglev {
    pub fn new(members: &[Member<'_>]) -> Self {
        Self::with_size(members, TABLE_SIZE)
    }

    /// A table of `size` slots (`size` must be prime).
    pub fn with_size(members: &[Member<'_>], size: usize) -> Self {
        if members.is_empty() {
            return Self {
                table: Box::new([]),
            };
        }
        let modulus = size as u64;
        let permutation: Vec<(u64, u64)> = members
            .iter()
            .map(|m| {
                let offset = hash64(SEED_OFFSET, m.address.as_bytes()) % modulus;
                let skip = hash64(SEED_SKIP, m.address.as_bytes()) % (modulus - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_weight = members.iter().map(|m| u64::from(m.weight.max(1))).max();
        let max_weight = max_weight.unwrap_or(1);
        let mut next = vec![0u64; members.len()];
        let mut claimed = vec![0u64; members.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        let mut round = 0u64;
        while filled < size {
            round += 1;
            for (position, member) in members.iter().enumerate() {
                // Weighted turns: a member claims a slot this round only while its claims stay
                // within weight / max_weight of the rounds so far.
                if claimed[position] * max_weight >= round * u64::from(member.weight.max(1)) {
                    continue;
                }
                let (offset, skip) = permutation[position];
                let slot = loop {
                    let slot = ((offset + next[position] * skip) % modulus) as usize;
                    next[position] += 1;
                    if table[slot] == u32::MAX {
                        break slot;
                    }
                };
                table[slot] = member.index;
                claimed[position] += 1;
                filled += 1;
                if filled == size {
                    break;
                }
            }
        }
        Self {
            table: table.into_boxed_slice(),
        }
    }

    /// The owner of `key`'s slot, or the next usable slot's.
    pub fn pick(&self, key: u64, candidates: &Candidates<'_>) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let start = (key % len as u64) as usize;
        let owner = self.table[start] as usize;
        if candidates.usable(owner) {
            return Some(owner);
        }
        (1..len)
            .map(|offset| self.table[(start + offset) % len] as usize)
            .find(|&index| candidates.usable(index))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{members, moved_fraction, named_members, states};
    use super::*;

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10;
        let before = named_members(n);
        let after: Vec<_> = before.iter().filter(|m| m.index != 7).cloned().collect();
        let (table_before, table_after) = (Maglev::new(&before), Maglev::new(&after));
        let states = states(n);
        let candidates = Candidates::new(&states, &[]);
        let moved = moved_fraction(
            |key| table_before.pick(key, &candidates),
            |key| table_after.pick(key, &candidates),
        );
        assert!(moved > 0.05 && moved < 0.13, "moved {moved}");
    }

    #[test]
    fn weighted_shares_and_stability() {
        let mut weighted = members(&[1, 3]);
        weighted[0].address = "10.0.0.1:80";
        weighted[1].address = "10.0.0.2:80";
        let table = Maglev::new(&weighted);
        let ones = table.table.iter().filter(|&&i| i == 1).count() as f64;
        let share = ones / TABLE_SIZE as f64;
        assert!((share - 0.75).abs() < 0.01, "{share}");
        let states = states(2);
        let candidates = Candidates::new(&states, &[]);
        let again = Maglev::new(&weighted);
        for key in [0u64, 17, 1 << 40, u64::MAX] {
            assert_eq!(table.pick(key, &candidates), again.pick(key, &candidates));
        }
        let without_one = Candidates::new(&states, &[1]);
        assert_eq!(table.pick(5, &without_one), Some(0));
        assert_eq!(Maglev::new(&[]).pick(5, &candidates), None);
    }
}
