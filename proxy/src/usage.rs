//! Usage accounting on the request path, per traffic worker: requests, bytes and a latency
//! histogram ([`histogram`]) per (route, consumer, status class), for the control plane's
//! fleet-wide usage view and quota accounting (SPEC §2–§3).
//!
//! The hot path touches only its own thread's table: a response body wrapped in
//! [`meter::Metered`] records itself into the worker thread's [`Recorder`] when it ends (a
//! thread-local `RefCell`: no lock, no atomic; an allocation only the first time a key is seen
//! since the last flush cleared it). Once a second, aligned to the wall clock, each worker's
//! flush task drains its table into [`v1::UsageCounter`]s stamped with the minute they fall in
//! and hands them to the reporter over a bounded channel ([`UsageSink`]), which batches,
//! sequences and resends them until the control plane acknowledges them.
//!
//! What is counted: a request once its response body has ended (or was dropped: a client that
//! went away mid-body); `bytes_in` is the request's declared body length (`content-length`),
//! `bytes_out` the response body bytes actually sent; latency is time to response headers.

pub mod histogram;
pub mod meter;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use switchyard_proto::v1;
use tokio::sync::mpsc;

use crate::endpoint::clock::unix_millis;
use histogram::LatencyHistogram;

/// Status classes counted (1xx..5xx).
const CLASSES: usize = 5;
/// How often workers hand their counters to the reporter.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Flushes that may wait for the reporter (all workers together; the reporter takes them as
/// they come, also while reconnecting); beyond this a flush is dropped and counted.
pub const SINK_CAPACITY: usize = 1024;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One worker's flush: counters of the requests that ended since the previous one, plus the
/// requests a full sink made it drop before.
#[derive(Debug, Default)]
pub struct Flush {
    pub counters: Vec<v1::UsageCounter>,
    pub dropped_requests: u64,
}

/// Where workers send their flushes (the reporter holds the other end).
pub type UsageSink = mpsc::Sender<Flush>;

/// Counts of one (route, consumer, status class) since the last flush.
#[derive(Debug, Default)]
struct Counts {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    latency_sum_us: u64,
    latency: LatencyHistogram,
}

/// One consumer's counts on one route, per status class.
type ByClass = [Option<Box<Counts>>; CLASSES];

/// One worker thread's table: route → consumer (`""` for none) → status class.
#[derive(Debug, Default)]
pub struct Recorder {
    routes: FastMap<Box<str>, FastMap<Box<str>, ByClass>>,
    /// Requests recorded since the last drain.
    pending: u64,
}

/// One finished request, as the meter saw it.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub route: &'a str,
    pub consumer: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_us: u64,
}

impl Recorder {
    /// Adds one request.
    pub fn record(&mut self, finished: &Finished<'_>) {
        let by_consumer = match self.routes.get_mut(finished.route) {
            Some(by_consumer) => by_consumer,
            None => self.routes.entry(finished.route.into()).or_default(),
        };
        let classes = match by_consumer.get_mut(finished.consumer) {
            Some(classes) => classes,
            None => by_consumer.entry(finished.consumer.into()).or_default(),
        };
        let class = usize::from(finished.status / 100).clamp(1, CLASSES) - 1;
        let counts = classes[class].get_or_insert_with(Box::default);
        counts.requests += 1;
        counts.bytes_in += finished.bytes_in;
        counts.bytes_out += finished.bytes_out;
        counts.latency_sum_us += finished.latency_us;
        counts.latency.record(finished.latency_us);
        self.pending += 1;
    }

    /// Everything recorded since the last drain, as counters of `minute_unix_s`; the table
    /// keeps its keys and allocations for the next second, and forgets keys idle for a whole
    /// flush (so a burst of distinct consumers does not stay in memory).
    pub fn drain(&mut self, minute_unix_s: u64) -> Vec<v1::UsageCounter> {
        let mut counters = Vec::new();
        if self.pending == 0 {
            self.routes.clear();
            return counters;
        }
        self.pending = 0;
        self.routes.retain(|route, by_consumer| {
            by_consumer.retain(|consumer, classes| {
                let mut used = false;
                for (class, slot) in classes.iter_mut().enumerate() {
                    let Some(counts) = slot else { continue };
                    if counts.requests == 0 {
                        *slot = None;
                        continue;
                    }
                    used = true;
                    counters.push(counter(route, consumer, class, counts, minute_unix_s));
                    counts.requests = 0;
                    counts.bytes_in = 0;
                    counts.bytes_out = 0;
                    counts.latency_sum_us = 0;
                    counts.latency.clear();
                }
                used
            });
            !by_consumer.is_empty()
        });
        counters
    }
}

fn counter(
    route: &str,
    consumer: &str,
    class: usize,
    counts: &Counts,
    minute_unix_s: u64,
) -> v1::UsageCounter {
    let (latency_bounds_us, latency_buckets) = counts.latency.nonempty().unzip();
    v1::UsageCounter {
        route: route.to_owned(),
        consumer: consumer.to_owned(),
        status_class: class as u32 + 1,
        requests: counts.requests,
        bytes_in: counts.bytes_in,
        bytes_out: counts.bytes_out,
        latency_buckets,
        latency_bounds_us,
        minute_unix_s,
        latency_sum_us: counts.latency_sum_us,
    }
}

thread_local! {
    /// This thread's table (only traffic workers record).
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

/// Records one finished request in the calling thread's table.
pub fn record(finished: &Finished<'_>) {
    RECORDER.with_borrow_mut(|recorder| recorder.record(finished));
}

/// The start of the minute `unix_ms` falls in, in Unix seconds.
pub fn minute_of(unix_ms: u64) -> u64 {
    unix_ms / 60_000 * 60
}

/// Drains the calling thread's table into `sink` (see [`Recorder::drain`]); counters of the
/// second that just ended are stamped with that second's minute. A full sink drops the
/// flush and remembers how many requests it held, to say so in the next one.
pub fn flush(sink: &UsageSink, dropped: &mut u64) {
    let minute = minute_of(unix_millis().saturating_sub(FLUSH_INTERVAL.as_millis() as u64 / 2));
    let counters = RECORDER.with_borrow_mut(|recorder| recorder.drain(minute));
    if counters.is_empty() && *dropped == 0 {
        return;
    }
    let requests: u64 = counters.iter().map(|c| c.requests).sum();
    let flush = Flush {
        counters,
        dropped_requests: *dropped,
    };
    match sink.try_send(flush) {
        Ok(()) => *dropped = 0,
        Err(_) => *dropped += requests,
    }
}

/// A worker's flush task: [`flush`] at every whole second of the wall clock (so a minute's
/// requests are not stamped with the next minute), until the worker's runtime ends.
pub async fn flush_every_second(sink: UsageSink) {
    let mut dropped = 0;
    loop {
        let into_second = unix_millis() % 1000;
        tokio::time::sleep(Duration::from_millis(1000 - into_second)).await;
        flush(&sink, &mut dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(route: &'static str, consumer: &'static str, status: u16) -> Finished<'static> {
        Finished {
            route,
            consumer,
            status,
            bytes_in: 10,
            bytes_out: 100,
            latency_us: 1500,
        }
    }

    #[test]
    fn counts_per_route_consumer_and_class_then_drains() {
        let mut recorder = Recorder::default();
        recorder.record(&finished("api", "alice", 200));
        recorder.record(&finished("api", "alice", 204));
        recorder.record(&finished("api", "", 503));
        recorder.record(&finished("web", "alice", 404));
        let mut counters = recorder.drain(120);
        counters.sort_by(|a, b| {
            (&a.route, &a.consumer, a.status_class).cmp(&(&b.route, &b.consumer, b.status_class))
        });
        let summary: Vec<_> = counters
            .iter()
            .map(|c| {
                (
                    c.route.as_str(),
                    c.consumer.as_str(),
                    c.status_class,
                    c.requests,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("api", "", 5, 1),
                ("api", "alice", 2, 2),
                ("web", "alice", 4, 1)
            ]
        );
        let two = &counters[1];
        assert_eq!(
            (two.bytes_in, two.bytes_out, two.minute_unix_s),
            (20, 200, 120)
        );
        assert_eq!(two.latency_buckets, [2]);
        assert_eq!(two.latency_bounds_us, [1535]);
        assert!(recorder.drain(180).is_empty(), "drained");
        assert!(recorder.routes.is_empty(), "idle keys are forgotten");
    }

    #[test]
    fn a_full_sink_drops_the_flush_and_reports_it_later() {
        let (sink, mut flushes) = mpsc::channel(1);
        let mut dropped = 0;
        record(&finished("api", "", 200));
        flush(&sink, &mut dropped);
        record(&finished("api", "", 200));
        record(&finished("api", "", 200));
        flush(&sink, &mut dropped);
        assert_eq!(dropped, 2, "the sink was full");
        assert_eq!(flushes.try_recv().unwrap().counters[0].requests, 1);
        flush(&sink, &mut dropped);
        let next = flushes.try_recv().unwrap();
        assert_eq!(next.dropped_requests, 2);
        assert!(next.counters.is_empty());
        assert_eq!(dropped, 0);
    }

    #[test]
    fn minutes_start_on_whole_minutes() {
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60);
        assert_eq!(minute_of(1_700_000_123_456), 1_700_000_100);
    }
}
