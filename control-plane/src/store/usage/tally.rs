//! Checks and sums the usage counters and quota consumption of the reports of one write before
//! they are written. A bad entry is skipped and counted (never an error of the whole report); the good
//! ones are summed per key in key order, the order their rows are upserted in, so writers
//! sharing a PostgreSQL lock rows in one order and cannot deadlock each other.

use std::collections::BTreeMap;

use super::UsageCounter;
use crate::store::columns::{MAX_KEY_BYTES, MAX_VALUE};
use crate::store::quotas::{Consumed, QuotaConsumption, WindowKey};

/// The most latency buckets accepted in one counter.
pub const MAX_BUCKETS: usize = 512;

/// Why a counter was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCounter {
    /// `status_class` outside 1..=5.
    #[error("status_class must be 1 to 5")]
    StatusClass,
    /// `minute_unix_s` not the start of a minute, or past the 64-bit signed range.
    #[error("minute_unix_s must be a multiple of 60")]
    Minute,
    /// A route, consumer or quota name over [`MAX_KEY_BYTES`] (or an empty quota name).
    #[error("route, consumer and quota names must be at most {MAX_KEY_BYTES} bytes")]
    NameTooLong,
    /// A route, consumer or quota name holding a NUL character (PostgreSQL text cannot).
    #[error("route, consumer and quota names must not contain NUL")]
    NameNul,
    /// A count, byte total or latency sum over [`MAX_VALUE`].
    #[error("counts, byte totals and latency sums must be at most 2^53")]
    TooLarge,
    /// `latency_buckets` and `latency_bounds_us` of different lengths, or too many.
    #[error(
        "latency_buckets and latency_bounds_us must have the same length (at most {MAX_BUCKETS})"
    )]
    BucketCount,
    /// Latency bounds not strictly ascending.
    #[error("latency_bounds_us must ascend")]
    BoundOrder,
    /// The counter's batch has a sequence number past the 64-bit signed range.
    #[error("batch sequence numbers must be below 2^63")]
    Sequence,
    /// Quota consumption whose `window_start_unix_s` is not the start of a minute, or past
    /// the 64-bit signed range.
    #[error("quota window_start_unix_s must be a multiple of 60")]
    QuotaWindow,
    /// Quota consumption with more `unleased` than `used`.
    #[error("quota unleased must not exceed used")]
    Unleased,
}

/// What one row of `usage_counters` is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    /// Start of the minute, Unix seconds.
    pub minute_unix_s: i64,
    /// Route name.
    pub route: String,
    /// Consumer name, `""` for unauthenticated traffic.
    pub consumer: String,
    /// 1..=5.
    pub status_class: i16,
}

/// The sums of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Sum of the requests' latencies, µs.
    pub latency_sum_us: u64,
    /// Requests per latency bucket bound (µs, at most `i64::MAX`); empty buckets are not kept.
    pub latency: BTreeMap<i64, u64>,
}

/// Counters checked and summed.
#[derive(Debug, Default)]
pub struct Tally {
    /// Sums per key.
    pub counters: BTreeMap<CounterKey, Totals>,
    /// Quota consumption per window row.
    pub quota: BTreeMap<WindowKey, Consumed>,
    /// Counters taken.
    pub accepted: u64,
    /// Quota consumption entries taken.
    pub quota_accepted: u64,
    /// Requests let through against quotas, over the entries taken.
    pub quota_used: u64,
    /// Of those, the ones let through without a lease.
    pub quota_unleased: u64,
    /// Counters and quota consumption entries skipped.
    pub invalid: u64,
    /// Why the first skipped counter was skipped.
    pub first_invalid: Option<InvalidCounter>,
}

impl Tally {
    /// Counts `count` counters as skipped for `reason`.
    pub fn skip(&mut self, count: usize, reason: InvalidCounter) {
        self.invalid += count as u64;
        self.first_invalid.get_or_insert(reason);
    }

    /// Adds `counter`, or counts it as invalid.
    pub fn add(&mut self, counter: &UsageCounter) {
        let status_class = match check(counter) {
            Ok(status_class) => status_class,
            Err(reason) => {
                self.skip(1, reason);
                return;
            }
        };
        self.accepted += 1;
        let key = CounterKey {
            // `check` bounded it to i64.
            minute_unix_s: counter.minute_unix_s as i64,
            route: counter.route.clone(),
            consumer: counter.consumer.clone(),
            status_class,
        };
        let totals = self.counters.entry(key).or_default();
        for (&bound, &count) in counter
            .latency_bounds_us
            .iter()
            .zip(&counter.latency_buckets)
        {
            if count > 0 {
                // A proxy may mark its overflow bucket with u64::MAX: it stays the last.
                let bound = i64::try_from(bound).unwrap_or(i64::MAX);
                let sum = totals.latency.entry(bound).or_default();
                *sum = sum.saturating_add(count);
            }
        }
        totals.requests = totals.requests.saturating_add(counter.requests);
        totals.bytes_in = totals.bytes_in.saturating_add(counter.bytes_in);
        totals.bytes_out = totals.bytes_out.saturating_add(counter.bytes_out);
        totals.latency_sum_us = totals.latency_sum_us.saturating_add(counter.latency_sum_us);
    }

    /// Every non-empty latency bucket: key, bound (µs) and count, in key and bound order.
    pub fn latency_rows(&self) -> impl Iterator<Item = (&CounterKey, i64, u64)> {
        self.counters.iter().flat_map(|(key, totals)| {
            totals
                .latency
                .iter()
                .map(move |(&bound, &count)| (key, bound, count))
        })
    }

    /// Adds quota `consumption`, or counts it as invalid.
    pub fn add_quota(&mut self, consumption: &QuotaConsumption) {
        if let Err(reason) = check_quota(consumption) {
            self.skip(1, reason);
            return;
        }
        self.quota_accepted += 1;
        self.quota_used = self.quota_used.saturating_add(consumption.used);
        self.quota_unleased = self.quota_unleased.saturating_add(consumption.unleased);
        let key = WindowKey {
            // `check_quota` bounded it to i64.
            window_start_unix_s: consumption.window_start_unix_s as i64,
            quota: consumption.quota.clone(),
            consumer: consumption.consumer.clone(),
        };
        let sums = self.quota.entry(key).or_default();
        sums.used = sums.used.saturating_add(consumption.used);
        sums.unleased = sums.unleased.saturating_add(consumption.unleased);
    }
}

fn check_quota(c: &QuotaConsumption) -> Result<(), InvalidCounter> {
    if !c.window_start_unix_s.is_multiple_of(60) || i64::try_from(c.window_start_unix_s).is_err() {
        return Err(InvalidCounter::QuotaWindow);
    }
    if c.quota.is_empty() || c.quota.len() > MAX_KEY_BYTES || c.consumer.len() > MAX_KEY_BYTES {
        return Err(InvalidCounter::NameTooLong);
    }
    if has_nul(&c.quota) || has_nul(&c.consumer) {
        return Err(InvalidCounter::NameNul);
    }
    if c.used > MAX_VALUE {
        return Err(InvalidCounter::TooLarge);
    }
    if c.unleased > c.used {
        return Err(InvalidCounter::Unleased);
    }
    Ok(())
}

fn has_nul(name: &str) -> bool {
    name.as_bytes().contains(&0)
}

/// The counter's status class as stored, if the counter is valid.
fn check(counter: &UsageCounter) -> Result<i16, InvalidCounter> {
    let status_class = match counter.status_class {
        class @ 1..=5 => class as i16,
        _ => return Err(InvalidCounter::StatusClass),
    };
    if !counter.minute_unix_s.is_multiple_of(60) || i64::try_from(counter.minute_unix_s).is_err() {
        return Err(InvalidCounter::Minute);
    }
    if counter.route.len() > MAX_KEY_BYTES || counter.consumer.len() > MAX_KEY_BYTES {
        return Err(InvalidCounter::NameTooLong);
    }
    if has_nul(&counter.route) || has_nul(&counter.consumer) {
        return Err(InvalidCounter::NameNul);
    }
    let bounds = &counter.latency_bounds_us;
    let buckets = &counter.latency_buckets;
    if bounds.len() != buckets.len() || bounds.len() > MAX_BUCKETS {
        return Err(InvalidCounter::BucketCount);
    }
    if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(InvalidCounter::BoundOrder);
    }
    let values = [
        counter.requests,
        counter.bytes_in,
        counter.bytes_out,
        counter.latency_sum_us,
    ];
    if values.iter().chain(buckets).any(|&v| v > MAX_VALUE) {
        return Err(InvalidCounter::TooLarge);
    }
    Ok(status_class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(route: &str, consumer: &str, class: u32, requests: u64) -> UsageCounter {
        UsageCounter {
            route: route.to_owned(),
            consumer: consumer.to_owned(),
            status_class: class,
            requests,
            bytes_in: 10 * requests,
            bytes_out: 100 * requests,
            latency_sum_us: 500 * requests,
            latency_bounds_us: vec![1_000, 2_000],
            latency_buckets: vec![requests, 0],
            minute_unix_s: 1_704_067_200,
        }
    }

    #[test]
    fn sums_equal_keys_and_keeps_key_order() {
        let mut tally = Tally::default();
        tally.add(&counter("b", "", 2, 1));
        tally.add(&counter("a", "c1", 5, 2));
        tally.add(&counter("b", "", 2, 3));
        assert_eq!((tally.accepted, tally.invalid), (3, 0));
        let keys: Vec<_> = tally.counters.keys().map(|k| k.route.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        let b = tally.counters.values().nth(1).unwrap();
        assert_eq!(
            *b,
            Totals {
                requests: 4,
                bytes_in: 40,
                bytes_out: 400,
                latency_sum_us: 2_000,
                latency: [(1_000, 4)].into(),
            }
        );
        // Empty buckets are not written.
        let rows: Vec<_> = tally
            .latency_rows()
            .map(|(key, bound, count)| (key.route.as_str(), bound, count))
            .collect();
        assert_eq!(rows, [("a", 1_000, 2), ("b", 1_000, 4)]);
    }

    #[test]
    fn bad_counters_are_skipped_and_counted() {
        let cases: Vec<(UsageCounter, InvalidCounter)> = vec![
            (counter("r", "", 0, 1), InvalidCounter::StatusClass),
            (counter("r", "", 6, 1), InvalidCounter::StatusClass),
            (
                UsageCounter {
                    minute_unix_s: 1_704_067_201,
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::Minute,
            ),
            (
                UsageCounter {
                    minute_unix_s: u64::MAX - 15, // a multiple of 60, past i64
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::Minute,
            ),
            (
                counter(&"r".repeat(MAX_KEY_BYTES + 1), "", 2, 1),
                InvalidCounter::NameTooLong,
            ),
            (
                counter("r", &"c".repeat(MAX_KEY_BYTES + 1), 2, 1),
                InvalidCounter::NameTooLong,
            ),
            (counter("r\0", "", 2, 1), InvalidCounter::NameNul),
            (counter("r", "c\0", 2, 1), InvalidCounter::NameNul),
            (
                UsageCounter {
                    latency_buckets: vec![1],
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::BucketCount,
            ),
            (
                UsageCounter {
                    latency_bounds_us: vec![2_000, 1_000],
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::BoundOrder,
            ),
            (
                UsageCounter {
                    latency_bounds_us: vec![1_000, 1_000],
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::BoundOrder,
            ),
            (counter("r", "", 2, MAX_VALUE + 1), InvalidCounter::TooLarge),
            (
                UsageCounter {
                    bytes_out: u64::MAX,
                    ..counter("r", "", 2, 1)
                },
                InvalidCounter::TooLarge,
            ),
        ];
        for (bad, reason) in cases {
            let mut tally = Tally::default();
            tally.add(&bad);
            tally.add(&counter("ok", "", 2, 1));
            assert_eq!((tally.accepted, tally.invalid), (1, 1), "{bad:?}");
            assert_eq!(tally.first_invalid, Some(reason), "{bad:?}");
            assert_eq!(tally.counters.len(), 1);
        }
    }

    fn consumption(quota: &str, consumer: &str, used: u64, unleased: u64) -> QuotaConsumption {
        QuotaConsumption {
            quota: quota.to_owned(),
            consumer: consumer.to_owned(),
            used,
            window_start_unix_s: 1_704_067_200,
            unleased,
        }
    }

    #[test]
    fn quota_consumption_is_summed_per_window_and_checked() {
        let mut tally = Tally::default();
        tally.add_quota(&consumption("gold", "bob", 3, 1));
        tally.add_quota(&consumption("gold", "alice", 2, 0));
        tally.add_quota(&consumption("gold", "bob", 4, 4));
        tally.add_quota(&QuotaConsumption {
            window_start_unix_s: 1_704_067_260,
            ..consumption("gold", "bob", 1, 0)
        });
        assert_eq!((tally.quota_accepted, tally.invalid), (4, 0));
        let rows: Vec<_> = tally
            .quota
            .iter()
            .map(|(k, v)| {
                (
                    k.consumer.as_str(),
                    k.window_start_unix_s,
                    v.used,
                    v.unleased,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("alice", 1_704_067_200, 2, 0),
                ("bob", 1_704_067_200, 7, 5),
                ("bob", 1_704_067_260, 1, 0)
            ]
        );

        for (bad, reason) in [
            (
                QuotaConsumption {
                    window_start_unix_s: 1_704_067_201,
                    ..consumption("gold", "", 1, 0)
                },
                InvalidCounter::QuotaWindow,
            ),
            (
                QuotaConsumption {
                    window_start_unix_s: u64::MAX - 15,
                    ..consumption("gold", "", 1, 0)
                },
                InvalidCounter::QuotaWindow,
            ),
            (consumption("", "", 1, 0), InvalidCounter::NameTooLong),
            (
                consumption(&"q".repeat(MAX_KEY_BYTES + 1), "", 1, 0),
                InvalidCounter::NameTooLong,
            ),
            (
                consumption("gold", &"c".repeat(MAX_KEY_BYTES + 1), 1, 0),
                InvalidCounter::NameTooLong,
            ),
            (
                consumption("gold", "", MAX_VALUE + 1, 0),
                InvalidCounter::TooLarge,
            ),
            (consumption("gold", "", 1, 2), InvalidCounter::Unleased),
            (consumption("gold\0", "", 1, 0), InvalidCounter::NameNul),
            (consumption("gold", "\0", 1, 0), InvalidCounter::NameNul),
        ] {
            let mut tally = Tally::default();
            tally.add_quota(&bad);
            assert_eq!((tally.quota_accepted, tally.invalid), (0, 1), "{bad:?}");
            assert_eq!(tally.first_invalid, Some(reason), "{bad:?}");
            assert!(tally.quota.is_empty());
        }
    }

    #[test]
    fn an_overflow_bound_is_kept_as_the_largest() {
        let mut tally = Tally::default();
        tally.add(&UsageCounter {
            latency_bounds_us: vec![1_000, u64::MAX],
            latency_buckets: vec![1, 1],
            ..counter("r", "", 2, 2)
        });
        let bounds: Vec<i64> = tally.latency_rows().map(|(_, b, _)| b).collect();
        assert_eq!(bounds, [1_000, i64::MAX]);
    }
}
