//! Which priority level and which zone a pick uses: pure arithmetic over healthy counts, so it
//! is tested alone (the balancer feeds it counts it caches per health change).
//!
//! **Priority** (Envoy's rule, overprovisioning factor 1.4): level P's health is
//! `min(100, 140 × healthy / total)` percent; levels take load in order, each up to its
//! health, out of what the lower-numbered levels left. So priority 0 keeps all traffic while at
//! least ~72% of it is healthy, then sheds the rest to priority 1, 2…; when the levels' health
//! sums to less than 100 the load is spread in proportion to it, and when no level has a
//! healthy endpoint the pick fails (503, no panic mode: see [`crate::health`]).
//!
//! **Zone**: within a level, the endpoints in the proxy's zone are preferred while at least one
//! of them and at least half of them are healthy, and they are not overloaded: in-flight
//! requests per healthy local endpoint at most twice the cluster average plus one.

/// Overprovisioning factor, in percent.
pub const OVERPROVISIONING: u64 = 140;

/// A level's health in percent (`min(100, 1.4 × healthy share)`).
pub fn level_health(healthy: u32, total: u32) -> u32 {
    if total == 0 {
        return 0;
    }
    (u64::from(healthy) * OVERPROVISIONING / u64::from(total)).min(100) as u32
}

/// The level a draw `roll` in `0..100` lands in, given each level's health (in priority
/// order); `None` when no level has any health.
pub fn choose_level(health: impl Iterator<Item = u32> + Clone, roll: u32) -> Option<usize> {
    let sum: u32 = health.clone().map(|h| h.min(100)).sum();
    if sum == 0 {
        return None;
    }
    // Below 100 in total: normalise, so the roll is scaled into 0..sum.
    let point = if sum < 100 { roll * sum / 100 } else { roll };
    let mut cumulative = 0;
    for (level, level_health) in health.enumerate() {
        let load = level_health.min(100).min(100 - cumulative.min(100));
        cumulative += load;
        if point < cumulative {
            return Some(level);
        }
    }
    None
}

/// Whether a pick should stay in the proxy's zone (see the module doc).
pub fn prefer_local(
    local_healthy: u32,
    local_total: u32,
    healthy: u32,
    local_in_flight: u32,
    all_in_flight: u32,
) -> bool {
    if local_healthy == 0 || local_healthy * 2 < local_total {
        return false;
    }
    let (local_healthy, healthy) = (u64::from(local_healthy), u64::from(healthy.max(1)));
    // local_in_flight / local_healthy <= 2 × all_in_flight / healthy + 1
    u64::from(local_in_flight) * healthy <= (2 * u64::from(all_in_flight) + healthy) * local_healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(health: &[u32]) -> Vec<u32> {
        let mut counts = vec![0; health.len()];
        for roll in 0..100 {
            if let Some(level) = choose_level(health.iter().copied(), roll) {
                counts[level] += 1;
            }
        }
        counts
    }

    #[test]
    fn priority_zero_keeps_everything_while_mostly_healthy() {
        assert_eq!(level_health(10, 10), 100);
        assert_eq!(level_health(8, 10), 100, "1.4 × 80% caps at 100");
        assert_eq!(level_health(5, 10), 70);
        assert_eq!(level_health(0, 10), 0);
        assert_eq!(shares(&[100, 100]), [100, 0]);
        assert_eq!(shares(&[70, 100]), [70, 30], "spills the missing share");
        assert_eq!(shares(&[0, 100, 100]), [0, 100, 0], "fails over whole");
        assert_eq!(shares(&[0, 0, 100]), [0, 0, 100]);
        assert_eq!(shares(&[100, 0]), [100, 0], "returns when recovered");
    }

    #[test]
    fn degraded_levels_share_in_proportion() {
        assert_eq!(shares(&[28, 14]), [67, 33]);
        assert_eq!(shares(&[0, 0]), [0, 0]);
        assert_eq!(choose_level([0, 0].into_iter(), 5), None);
        assert_eq!(choose_level([].into_iter(), 5), None);
    }

    #[test]
    fn zone_preference() {
        // Healthy and idle: stay local.
        assert!(prefer_local(2, 2, 6, 0, 0));
        // No local endpoint healthy, or under half of them: go cross-zone.
        assert!(!prefer_local(0, 2, 4, 0, 0));
        assert!(!prefer_local(1, 3, 4, 0, 0));
        // Local endpoints at 2× the cluster average (+1) are fine; more is overload.
        assert!(prefer_local(2, 2, 6, 6, 6));
        assert!(!prefer_local(2, 2, 6, 12, 12));
    }
}
