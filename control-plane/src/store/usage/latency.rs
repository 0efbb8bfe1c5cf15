//! Latency histograms as proxies report them: sparse buckets keyed by their inclusive upper
//! bound in microseconds. Histograms of different proxies and minutes merge by adding the
//! counts of equal bounds, so percentiles come from the merged histogram, never from averaged
//! percentiles. Pure data; the store reads and writes the buckets.

use std::collections::BTreeMap;

/// A merged latency histogram: count per inclusive upper bound (µs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: BTreeMap<u64, u64>,
}

impl LatencyHistogram {
    /// Adds `count` requests to the bucket bounded by `bound_us`.
    pub fn add(&mut self, bound_us: u64, count: u64) {
        if count > 0 {
            let bucket = self.buckets.entry(bound_us).or_default();
            *bucket = bucket.saturating_add(count);
        }
    }

    /// Adds every bucket of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (&bound, &count) in &other.buckets {
            self.add(bound, count);
        }
    }

    /// Requests counted.
    pub fn count(&self) -> u64 {
        self.buckets.values().fold(0, |n, c| n.saturating_add(*c))
    }

    /// The non-empty buckets, `(upper bound µs, count)`, by ascending bound.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().map(|(&bound, &count)| (bound, count))
    }

    /// The upper bound (µs) of the bucket where the cumulative count first reaches
    /// `per_mille`/1000 of all requests (500: the median, 990: p99); `None` when empty.
    /// An upper estimate, exact to the bucket: the true quantile is at most this.
    pub fn quantile_us(&self, per_mille: u32) -> Option<u64> {
        let total: u128 = self.buckets.values().map(|&c| u128::from(c)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, at least the first request: ceil(total · q).
        let per_mille = u128::from(per_mille.clamp(1, 1000));
        let rank = (total * per_mille).div_ceil(1000);
        let mut cumulative = 0u128;
        for (&bound, &count) in &self.buckets {
            cumulative += u128::from(count);
            if cumulative >= rank {
                return Some(bound);
            }
        }
        self.buckets.keys().next_back().copied()
    }
}

impl FromIterator<(u64, u64)> for LatencyHistogram {
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(buckets: I) -> Self {
        let mut histogram = LatencyHistogram::default();
        for (bound, count) in buckets {
            histogram.add(bound, count);
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        let empty = LatencyHistogram::default();
        assert_eq!(empty.quantile_us(500), None);
        assert_eq!(empty.count(), 0);
        let zeros: LatencyHistogram = [(100, 0)].into_iter().collect();
        assert_eq!(zeros, empty, "empty buckets are not kept");
    }

    #[test]
    fn quantiles_are_the_bound_where_the_cumulative_count_reaches_the_rank() {
        // 100 requests: 50 ≤ 1 ms, 40 ≤ 2 ms, 9 ≤ 5 ms, 1 ≤ 100 ms.
        let h: LatencyHistogram = [(1_000, 50), (2_000, 40), (5_000, 9), (100_000, 1)]
            .into_iter()
            .collect();
        assert_eq!(
            h.quantile_us(500),
            Some(1_000),
            "rank 50 is the last of the first bucket"
        );
        assert_eq!(h.quantile_us(510), Some(2_000));
        assert_eq!(h.quantile_us(990), Some(5_000), "rank 99");
        assert_eq!(h.quantile_us(991), Some(100_000), "rank ceil(99.1) = 100");
        assert_eq!(h.quantile_us(1000), Some(100_000));
        assert_eq!(
            h.quantile_us(0),
            Some(1_000),
            "clamped to the first request"
        );
    }

    #[test]
    fn a_single_request_is_every_quantile() {
        let one: LatencyHistogram = [(250, 1)].into_iter().collect();
        assert_eq!(one.quantile_us(500), Some(250));
        assert_eq!(one.quantile_us(990), Some(250));
    }

    #[test]
    fn merging_adds_equal_bounds_and_keeps_the_others() {
        let mut a: LatencyHistogram = [(1_000, 3), (4_000, 1)].into_iter().collect();
        let b: LatencyHistogram = [(1_000, 2), (2_000, 4)].into_iter().collect();
        a.merge(&b);
        assert_eq!(
            a.buckets().collect::<Vec<_>>(),
            [(1_000, 5), (2_000, 4), (4_000, 1)]
        );
        assert_eq!(a.count(), 10);
        assert_eq!(a.quantile_us(500), Some(1_000));
        assert_eq!(a.quantile_us(900), Some(2_000));
        assert_eq!(a.quantile_us(990), Some(4_000));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let h: LatencyHistogram = [(1, u64::MAX), (2, u64::MAX)].into_iter().collect();
        assert_eq!(h.count(), u64::MAX);
        assert_eq!(h.quantile_us(990), Some(2));
    }
}
