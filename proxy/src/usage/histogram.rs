//! A latency histogram in log buckets (HDR-style): every value below 8 µs has its own bucket,
//! then each power of two is cut into 8 equal buckets, so a bucket's width is at most 1/8 of
//! its lower bound (≤ 12.5 % relative error) up to 2³² µs (~71 min; longer is the last bucket).
//! Buckets are the same in every proxy, so histograms merge by adding counts per bucket bound
//! and fleet-wide percentiles come from merged histograms, never from averaged percentiles.
//!
//! 240 `u32` counters (960 bytes) per histogram; recording is a `leading_zeros` and an add.

/// Sub-buckets per power of two (as a shift: 2³ = 8).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: 8 exact ones below 8 µs, then 8 per octave from 2³ to 2³².
pub const BUCKETS: usize = (SUB as usize) * (32 - SUB_BITS as usize + 1);

/// Counts per log bucket of microseconds.
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Box<[u32; BUCKETS]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.nonempty()).finish()
    }
}

/// The bucket of `micros`.
#[inline]
pub fn index(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros(); // ≥ SUB_BITS
    if octave >= 32 {
        return BUCKETS - 1;
    }
    let sub = (micros >> (octave - SUB_BITS)) - SUB;
    ((octave - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The inclusive upper bound (µs) of bucket `index`.
pub fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let octave = index / SUB + u64::from(SUB_BITS) - 1;
    let sub = index % SUB;
    let width = 1u64 << (octave - u64::from(SUB_BITS));
    ((SUB + sub) << (octave - u64::from(SUB_BITS))) + width - 1
}

impl LatencyHistogram {
    /// Counts one observation of `micros`.
    #[inline]
    pub fn record(&mut self, micros: u64) {
        let slot = &mut self.counts[index(micros)];
        *slot = slot.saturating_add(1);
    }

    /// `(upper bound µs, count)` of every non-empty bucket, ascending.
    pub fn nonempty(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (upper_bound(index), u64::from(*count)))
    }

    /// Forgets every observation (keeping the allocation).
    pub fn clear(&mut self) {
        self.counts.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bounds_hold_it() {
        let mut previous_bound = None;
        for index in 0..BUCKETS {
            let bound = upper_bound(index);
            assert!(previous_bound.is_none_or(|p| bound > p), "bounds ascend");
            previous_bound = Some(bound);
        }
        assert_eq!(upper_bound(BUCKETS - 1), u64::from(u32::MAX));
        for micros in (0..100_000).chain([1 << 20, (1 << 32) - 1, 1 << 40, u64::MAX]) {
            let bucket = index(micros);
            assert!(bucket < BUCKETS);
            let clamped = micros.min(u64::from(u32::MAX));
            assert!(clamped <= upper_bound(bucket), "{micros} above its bound");
            if bucket > 0 {
                assert!(
                    clamped > upper_bound(bucket - 1),
                    "{micros} below its bucket"
                );
            }
        }
    }

    #[test]
    fn relative_error_is_at_most_an_eighth() {
        for index in SUB as usize..BUCKETS {
            let lower = upper_bound(index - 1) + 1;
            let upper = upper_bound(index);
            assert!(
                (upper - lower + 1) * 8 <= lower,
                "bucket {index}: {lower}..={upper}"
            );
        }
    }

    #[test]
    fn records_and_lists_nonempty_buckets() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.nonempty().count(), 0);
        histogram.record(3);
        histogram.record(1000);
        histogram.record(1001);
        let buckets: Vec<_> = histogram.nonempty().collect();
        assert_eq!(buckets, [(3, 1), (1023, 2)]);
        histogram.clear();
        assert_eq!(histogram, LatencyHistogram::default());
    }
}
