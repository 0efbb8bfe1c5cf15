//! Usage between the workers and the control plane: worker flushes are merged into one open
//! batch per report interval, cut into a numbered [`v1::UsageBatch`], sent, and kept until the
//! control plane acknowledges its sequence number (it stores each `(instance_id, sequence)`
//! once, so a batch resent after a reconnect is never counted twice).
//!
//! Memory is bounded while the control plane is away: past [`MAX_COUNTERS`] held counters the
//! two oldest batches that were never sent are merged into one (counters of the same route,
//! consumer, class and minute add up; the merged batch keeps the later number), and when
//! nothing is left to merge the oldest unsent batch is dropped and its requests are reported
//! as `dropped_requests` in the next batch. A batch that was sent once is never merged or
//! dropped: the control plane may already hold it under its number.

use std::collections::{HashMap, VecDeque};

use switchyard_proto::v1;

use crate::usage::Flush;

/// Counters held (open and unacknowledged) before batches are merged or dropped.
pub const MAX_COUNTERS: usize = 100_000;

/// What makes two counters the same.
type Key = (String, String, u32, u64);

fn key(counter: &v1::UsageCounter) -> Key {
    (
        counter.route.clone(),
        counter.consumer.clone(),
        counter.status_class,
        counter.minute_unix_s,
    )
}

/// A cut batch waiting for its acknowledgement.
#[derive(Debug)]
struct Pending {
    batch: v1::UsageBatch,
    /// Sent on the current stream (resent on the next one until acknowledged).
    sent_on_stream: bool,
    /// Sent on some stream: the control plane may hold it, so it is never merged or dropped.
    ever_sent: bool,
}

/// The reporter's usage: the open batch and the unacknowledged ones.
#[derive(Debug)]
pub struct UsageQueue {
    next_sequence: u64,
    open: HashMap<Key, v1::UsageCounter>,
    open_dropped: u64,
    pending: VecDeque<Pending>,
    /// Counters in `open` and `pending`.
    held: usize,
    max_counters: usize,
    /// Requests dropped so far in this process (for `/metrics`).
    pub dropped_total: u64,
}

impl Default for UsageQueue {
    fn default() -> Self {
        Self::with_bound(MAX_COUNTERS)
    }
}

impl UsageQueue {
    /// A queue holding at most about `max_counters` counters.
    pub fn with_bound(max_counters: usize) -> Self {
        Self {
            next_sequence: 1,
            open: HashMap::new(),
            open_dropped: 0,
            pending: VecDeque::new(),
            held: 0,
            max_counters,
            dropped_total: 0,
        }
    }

    /// Merges a worker's flush into the open batch.
    pub fn add(&mut self, flush: Flush) {
        self.open_dropped += flush.dropped_requests;
        self.dropped_total += flush.dropped_requests;
        for counter in flush.counters {
            merge_into(&mut self.open, counter, &mut self.held);
        }
    }

    /// Closes the open batch, with `quota_used` (what quotas let through since the last cut),
    /// under the next sequence number when it holds anything; then enforces the memory bound.
    pub fn cut(&mut self, quota_used: Vec<v1::QuotaConsumption>) {
        if self.open.is_empty() && self.open_dropped == 0 && quota_used.is_empty() {
            return;
        }
        let mut counters: Vec<v1::UsageCounter> = self.open.drain().map(|(_, c)| c).collect();
        counters.sort_by(|a, b| key_order(a).cmp(&key_order(b)));
        let batch = v1::UsageBatch {
            sequence: self.next_sequence,
            counters,
            dropped_requests: std::mem::take(&mut self.open_dropped),
            quota_used,
        };
        self.next_sequence += 1;
        self.pending.push_back(Pending {
            batch,
            sent_on_stream: false,
            ever_sent: false,
        });
        self.enforce_bound();
    }

    fn enforce_bound(&mut self) {
        while self.held > self.max_counters {
            let mut unsent = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.ever_sent)
                .map(|(i, _)| i);
            match (unsent.next(), unsent.next()) {
                (Some(first), Some(second)) => self.merge_pending(first, second),
                (Some(only), None) => {
                    self.drop_oldest(only);
                    return;
                }
                (None, _) => return,
            }
        }
    }

    /// Folds pending batch `first` into the later `second` (which keeps its number).
    fn merge_pending(&mut self, first: usize, second: usize) {
        let Some(older) = self.pending.remove(first) else {
            return;
        };
        let newer = &mut self.pending[second - 1].batch;
        let mut merged: HashMap<Key, v1::UsageCounter> = HashMap::new();
        for counter in older
            .batch
            .counters
            .into_iter()
            .chain(newer.counters.drain(..))
        {
            merge_into(&mut merged, counter, &mut 0); // `held` is recounted below
        }
        let mut counters: Vec<v1::UsageCounter> = merged.into_values().collect();
        counters.sort_by(|a, b| key_order(a).cmp(&key_order(b)));
        newer.counters = counters;
        newer.dropped_requests += older.batch.dropped_requests;
        let mut quota_used = older.batch.quota_used;
        quota_used.append(&mut newer.quota_used);
        newer.quota_used = merge_quota_used(quota_used);
        self.held = self.open.len()
            + self
                .pending
                .iter()
                .map(|p| p.batch.counters.len())
                .sum::<usize>();
    }

    /// Drops the oldest counters of pending batch `index` until the bound holds; their
    /// requests are told in the next batch.
    fn drop_oldest(&mut self, index: usize) {
        let excess = self.held - self.max_counters;
        let batch = &mut self.pending[index].batch;
        let cut = excess.min(batch.counters.len());
        let requests: u64 = batch.counters.drain(..cut).map(|c| c.requests).sum();
        self.held -= cut;
        self.open_dropped += requests;
        self.dropped_total += requests;
        if batch.counters.is_empty() && batch.quota_used.is_empty() {
            // Its own report of earlier losses goes with the next batch.
            self.open_dropped += batch.dropped_requests;
            self.pending.remove(index);
        }
    }

    /// The batches not yet sent on the current stream, oldest first (now marked sent).
    pub fn unsent(&mut self) -> Vec<v1::UsageBatch> {
        self.pending
            .iter_mut()
            .filter(|p| !p.sent_on_stream)
            .map(|p| {
                p.sent_on_stream = true;
                p.ever_sent = true;
                p.batch.clone()
            })
            .collect()
    }

    /// A new stream: every unacknowledged batch is sent again.
    pub fn new_stream(&mut self) {
        for pending in &mut self.pending {
            pending.sent_on_stream = false;
        }
    }

    /// The control plane holds every batch up to `sequence`.
    pub fn acked(&mut self, sequence: u64) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.batch.sequence <= sequence)
        {
            if let Some(done) = self.pending.pop_front() {
                self.held -= done.batch.counters.len();
            }
        }
    }

    /// Batches cut and not acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.pending.len()
    }
}

/// Sums consumption of the same (quota, consumer, window).
fn merge_quota_used(used: Vec<v1::QuotaConsumption>) -> Vec<v1::QuotaConsumption> {
    let mut merged: HashMap<(String, String, u64), v1::QuotaConsumption> = HashMap::new();
    for item in used {
        let key = (
            item.quota.clone(),
            item.consumer.clone(),
            item.window_start_unix_s,
        );
        match merged.get_mut(&key) {
            Some(into) => {
                into.used += item.used;
                into.unleased += item.unleased;
            }
            None => {
                merged.insert(key, item);
            }
        }
    }
    let mut merged: Vec<_> = merged.into_values().collect();
    merged.sort_by(|a, b| {
        (&a.quota, &a.consumer, a.window_start_unix_s).cmp(&(
            &b.quota,
            &b.consumer,
            b.window_start_unix_s,
        ))
    });
    merged
}

fn key_order(counter: &v1::UsageCounter) -> (u64, &str, &str, u32) {
    (
        counter.minute_unix_s,
        &counter.route,
        &counter.consumer,
        counter.status_class,
    )
}

/// Adds `counter` into `map` (summing with the counter of the same key); `held` counts the
/// distinct counters added.
fn merge_into(
    map: &mut HashMap<Key, v1::UsageCounter>,
    counter: v1::UsageCounter,
    held: &mut usize,
) {
    match map.get_mut(&key(&counter)) {
        Some(into) => add(into, &counter),
        None => {
            *held += 1;
            map.insert(key(&counter), counter);
        }
    }
}

/// `into += other` (same key): counts add, histograms merge by bucket bound.
fn add(into: &mut v1::UsageCounter, other: &v1::UsageCounter) {
    into.requests += other.requests;
    into.bytes_in += other.bytes_in;
    into.bytes_out += other.bytes_out;
    into.latency_sum_us += other.latency_sum_us;
    let mut merged: Vec<(u64, u64)> = into
        .latency_bounds_us
        .iter()
        .copied()
        .zip(into.latency_buckets.iter().copied())
        .chain(
            other
                .latency_bounds_us
                .iter()
                .copied()
                .zip(other.latency_buckets.iter().copied()),
        )
        .collect();
    merged.sort_unstable_by_key(|(bound, _)| *bound);
    merged.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 += later.1;
        }
        same
    });
    (into.latency_bounds_us, into.latency_buckets) = merged.into_iter().unzip();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(route: &str, minute: u64, requests: u64, bounds: &[(u64, u64)]) -> v1::UsageCounter {
        v1::UsageCounter {
            route: route.into(),
            status_class: 2,
            requests,
            bytes_out: requests * 10,
            latency_bounds_us: bounds.iter().map(|b| b.0).collect(),
            latency_buckets: bounds.iter().map(|b| b.1).collect(),
            minute_unix_s: minute,
            ..Default::default()
        }
    }

    fn flush(counters: Vec<v1::UsageCounter>) -> Flush {
        Flush {
            counters,
            dropped_requests: 0,
        }
    }

    #[test]
    fn flushes_merge_into_one_numbered_batch_kept_until_acknowledged() {
        let mut queue = UsageQueue::default();
        queue.add(flush(vec![counter("api", 60, 2, &[(7, 1), (1023, 1)])]));
        queue.add(flush(vec![
            counter("api", 60, 1, &[(1023, 1)]),
            counter("web", 60, 1, &[]),
        ]));
        queue.cut(Vec::new());
        queue.cut(Vec::new());
        let sent = queue.unsent();
        assert_eq!(sent.len(), 1, "an empty interval cuts no batch");
        let batch = &sent[0];
        assert_eq!(batch.sequence, 1);
        let api = &batch.counters[0];
        assert_eq!(
            (api.route.as_str(), api.requests, api.bytes_out),
            ("api", 3, 30)
        );
        assert_eq!(api.latency_bounds_us, [7, 1023]);
        assert_eq!(api.latency_buckets, [1, 2]);
        assert!(queue.unsent().is_empty(), "sent once per stream");

        queue.new_stream();
        assert_eq!(queue.unsent()[0].sequence, 1, "resent until acknowledged");
        queue.acked(1);
        assert_eq!(queue.unacknowledged(), 0);
        queue.new_stream();
        assert!(queue.unsent().is_empty());
    }

    #[test]
    fn away_from_the_control_plane_memory_stays_bounded_and_losses_are_told() {
        let mut queue = UsageQueue::with_bound(4);
        // Sent once (the control plane may hold it): never merged nor dropped.
        queue.add(flush(vec![counter("sent", 0, 1, &[])]));
        queue.cut(Vec::new());
        assert_eq!(queue.unsent().len(), 1);
        // Three unsent batches of the same two keys merge as they exceed the bound.
        for _ in 0..3 {
            queue.add(flush(vec![
                counter("api", 60, 1, &[]),
                counter("web", 60, 1, &[]),
            ]));
            queue.cut(Vec::new());
        }
        assert_eq!(queue.unacknowledged(), 2, "the sent one + one merged batch");
        queue.new_stream();
        let batches = queue.unsent();
        assert_eq!(batches[0].sequence, 1);
        assert_eq!(batches[1].sequence, 4, "the merge keeps the later number");
        assert_eq!(
            batches[1].counters.iter().map(|c| c.requests).sum::<u64>(),
            6
        );

        // Distinct keys cannot merge away: the oldest unsent batch is dropped and said so.
        let mut queue = UsageQueue::with_bound(2);
        queue.add(flush(vec![
            counter("a", 0, 5, &[]),
            counter("b", 0, 1, &[]),
        ]));
        queue.cut(Vec::new());
        queue.add(flush(vec![counter("c", 60, 1, &[])]));
        queue.cut(Vec::new());
        queue.cut(Vec::new());
        assert_eq!(
            queue.dropped_total, 5,
            "the oldest counter (a: 5 requests) went"
        );
        queue.add(flush(vec![]));
        queue.cut(Vec::new());
        let batches = queue.unsent();
        let told: u64 = batches.iter().map(|b| b.dropped_requests).sum();
        assert_eq!(told, 5, "the next batch reports what was lost");
    }
}
