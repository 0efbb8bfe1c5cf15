//! `--report-usage`: every simulated proxy also opens a `switchyard.v1.ReportService/StreamReports`
//! stream, as the real proxy's reporter does, and sends one usage batch a second for
//! `--seconds`; the control plane stores each batch and answers `usage_acked`.
//!
//! Each stream starts with `node_id` (the proxy's ADS node id), its own `instance_id` and an
//! empty health snapshot. Batch `s` (1, 2, …, increasing per instance) holds `--usage-counters`
//! counters of the current minute, each a distinct (route, consumer, status class) of a key
//! space shared by the fleet (so proxies add to the same rows, as a fleet behind one load
//! balancer does), with 10 non-empty buckets of the proxy's log-bucket latency histogram.
//! Proxies tick at 1 s each, their phases spread evenly over the first second, so the control
//! plane sees N batches a second, not N at once. Like the proxy, a stream sends each batch once
//! and releases every batch up to `usage_acked` (acknowledgements are cumulative). The send →
//! acknowledgement lag is measured per batch; a batch still unacknowledged `--usage-drain`
//! after the last send is counted as such.
//!
//! A batch released by the acknowledgement of a later one, without an answer of its own, is
//! counted: the control plane answers every message it stored (each carries one batch here),
//! so its write failed — and the proxy forgets such a batch as well — or its answer was
//! dropped (the control plane drops acknowledgements when a stream's answer queue is full).
//! Every batch holds the same number of requests, so after the streams are closed and the
//! control plane's batch count has settled, the requests of `GET /api/v1/usage` tell how many
//! batches the database holds (against `switchyard_usage_batches_total`).
//!
//! The streams share the fleet's HTTP/2 connections (so N proxies need `ceil(N / 500)`
//! sockets, like their ADS streams).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_proto::v1::report_service_client::ReportServiceClient;
use switchyard_proto::v1::{ReportRequest, UsageBatch, UsageCounter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Consumers of the shared key space (`""`: unauthenticated traffic).
const CONSUMERS: [&str; 4] = ["", "team-a", "team-b", "team-c"];
/// Status classes of the shared key space.
const STATUS_CLASSES: [u32; 4] = [2, 4, 3, 5];
/// Non-empty latency buckets per counter.
pub const LATENCY_BUCKETS: usize = 10;
/// Time between two batches of one proxy (the proxy's `BATCH_INTERVAL`).
const PERIOD: Duration = Duration::from_secs(1);
/// Error texts kept (the count is always exact).
const MAX_ERRORS_KEPT: usize = 20;

/// How to run the reporters.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxies: u32,
    /// Counters per batch.
    pub counters: u32,
    /// Batches per proxy (one a second).
    pub seconds: u32,
    /// How long to wait for acknowledgements after the last batch was sent.
    pub drain: Duration,
    pub connect_concurrency: u32,
    /// Node id prefix; proxy i is `<prefix>-<i>` (the same as its ADS stream).
    pub node_prefix: String,
    /// Bootstrap token sent as `authorization: Bearer …`, when set.
    pub token: Option<String>,
}

/// What one simulated reporter did.
#[derive(Debug, Default)]
struct Outcome {
    /// The stream was open (the control plane answered its headers).
    opened: bool,
    sent: u64,
    acked: u64,
    /// Acknowledged batches released by an acknowledgement of a later batch, never by one of
    /// their own: the control plane answers every stored message, so their write failed (and
    /// they are lost, as the proxy forgets them too) or their answer was dropped.
    covered: u64,
    /// Requests in the batches sent, and in those acknowledged.
    requests_sent: u64,
    requests_acked: u64,
    /// Send → acknowledgement, per acknowledged batch, with its sequence.
    lags: Vec<(u64, Duration)>,
    /// Longest wait for room in the stream's send queue (the control plane not reading).
    send_blocked: Duration,
    error: Option<String>,
}

/// The figures of every reporter together.
#[derive(Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    /// See [`Outcome::covered`].
    pub covered: u64,
    pub requests_sent: u64,
    pub requests_acked: u64,
    /// Sent and never acknowledged (by the end of the drain).
    pub unacked: u64,
    /// Sorted.
    pub lags: Vec<Duration>,
    /// Of the batches of the first and of the last quarter of the run (by sequence), sorted:
    /// growing lags mean the control plane falls behind.
    pub lags_first: Vec<Duration>,
    pub lags_last: Vec<Duration>,
    pub send_blocked_max: Duration,
    pub error_count: usize,
    pub errors: Vec<String>,
}

/// Why the report streams could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {proxies} report streams failed to open; first error: {first}")]
pub struct OpenError {
    failed: u32,
    proxies: u32,
    first: String,
}

/// N open report streams, waiting for [`Reporters::start`].
#[derive(Debug)]
pub struct Reporters {
    start: watch::Sender<Option<Instant>>,
    tasks: JoinSet<Outcome>,
}

impl Reporters {
    /// Opens one report stream per proxy over `channels` and returns once all are open.
    pub async fn open(settings: &Settings, channels: &[Channel]) -> Result<Reporters, OpenError> {
        let (start, _) = watch::channel(None);
        let (opened_tx, mut opened) = mpsc::unbounded_channel::<Result<(), String>>();
        let permits = Arc::new(Semaphore::new(settings.connect_concurrency as usize));
        let authorization: Option<Arc<str>> = settings
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").into());
        // Distinct per run, so a rerun against the same database is not taken for a resend.
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut tasks = JoinSet::new();
        for proxy in 0..settings.proxies {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let reporter = Reporter {
                proxy,
                proxies: settings.proxies,
                node_id: format!("{}-{proxy}", settings.node_prefix),
                instance_id: format!("{}-{proxy}-{run:x}", settings.node_prefix),
                channel: channels[proxy as usize % channels.len()].clone(),
                counters: settings.counters,
                seconds: settings.seconds,
                drain: settings.drain,
                authorization: authorization.clone(),
            };
            tasks.spawn(reporter.run(permit, opened_tx.clone(), start.subscribe()));
        }
        drop(opened_tx);
        let (mut open, mut failed, mut first) = (0u32, 0u32, None);
        while open + failed < settings.proxies {
            match opened.recv().await {
                Some(Ok(())) => open += 1,
                Some(Err(error)) => {
                    failed += 1;
                    first.get_or_insert(error);
                }
                None => break,
            }
        }
        if open < settings.proxies {
            tasks.abort_all();
            return Err(OpenError {
                failed: settings.proxies - open,
                proxies: settings.proxies,
                first: first.unwrap_or_else(|| "reporter ended early".to_owned()),
            });
        }
        Ok(Reporters { start, tasks })
    }

    /// Lets every reporter start at `at` (proxy i sends its first batch at `at + i/N s`).
    pub fn start(&self, at: Instant) {
        self.start.send_replace(Some(at));
    }

    /// Waits for every reporter to finish (all acknowledged, or the drain deadline);
    /// `seconds` is the batches each sent.
    pub async fn finish(mut self, seconds: u32) -> Totals {
        let quarter = u64::from(seconds.div_ceil(4));
        let mut totals = Totals::default();
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = match joined {
                Ok(outcome) => outcome,
                Err(error) => Outcome {
                    error: Some(format!("reporter task failed: {error}")),
                    ..Outcome::default()
                },
            };
            totals.sent += outcome.sent;
            totals.acked += outcome.acked;
            totals.covered += outcome.covered;
            totals.requests_sent += outcome.requests_sent;
            totals.requests_acked += outcome.requests_acked;
            totals.unacked += outcome.sent - outcome.acked;
            for (sequence, lag) in outcome.lags {
                totals.lags.push(lag);
                if sequence <= quarter {
                    totals.lags_first.push(lag);
                }
                if sequence > u64::from(seconds) - quarter {
                    totals.lags_last.push(lag);
                }
            }
            totals.send_blocked_max = totals.send_blocked_max.max(outcome.send_blocked);
            if let Some(error) = outcome.error {
                totals.error_count += 1;
                if totals.errors.len() < MAX_ERRORS_KEPT {
                    totals.errors.push(error);
                }
            }
        }
        totals.lags.sort_unstable();
        totals.lags_first.sort_unstable();
        totals.lags_last.sort_unstable();
        totals
    }
}

/// One simulated proxy's reporter.
struct Reporter {
    proxy: u32,
    proxies: u32,
    node_id: String,
    instance_id: String,
    channel: Channel,
    counters: u32,
    seconds: u32,
    drain: Duration,
    authorization: Option<Arc<str>>,
}

impl Reporter {
    async fn run(
        self,
        permit: OwnedSemaphorePermit,
        opened: mpsc::UnboundedSender<Result<(), String>>,
        start: watch::Receiver<Option<Instant>>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let node_id = self.node_id.clone();
        if let Err(error) = self.stream(permit, &opened, start, &mut outcome).await {
            let error = format!("{node_id}: {error}");
            if !outcome.opened {
                let _ = opened.send(Err(error.clone()));
            }
            outcome.error = Some(error);
        }
        outcome
    }

    async fn stream(
        self,
        permit: OwnedSemaphorePermit,
        opened: &mpsc::UnboundedSender<Result<(), String>>,
        mut start: watch::Receiver<Option<Instant>>,
        outcome: &mut Outcome,
    ) -> Result<(), String> {
        let mut client = ReportServiceClient::new(self.channel.clone());
        // The proxy's queue depth: a send waits when the control plane stops reading.
        let (requests, outbound) = mpsc::channel::<ReportRequest>(4);
        // Capacity 4 and the receiver is alive: cannot fail.
        let _ = requests.try_send(ReportRequest {
            node_id: self.node_id.clone(),
            instance_id: self.instance_id.clone(),
            health_snapshot: true,
            ..Default::default()
        });
        let mut request = tonic::Request::new(ReceiverStream::new(outbound));
        if let Some(authorization) = &self.authorization {
            let value = authorization
                .parse()
                .map_err(|_| "the token is not a valid metadata value".to_owned())?;
            request.metadata_mut().insert("authorization", value);
        }
        let mut inbound = client
            .stream_reports(request)
            .await
            .map_err(|status| format!("stream failed: {status}"))?
            .into_inner();
        drop(permit);
        outcome.opened = true;
        let _ = opened.send(Ok(()));
        let t0 = match start.wait_for(Option::is_some).await {
            Ok(at) => at.expect("checked"),
            Err(_) => return Ok(()),
        };
        let phase = PERIOD.mul_f64(f64::from(self.proxy) / f64::from(self.proxies));
        let mut tick = tokio::time::interval_at((t0 + phase).into(), PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep_until((t0 + PERIOD * self.seconds + self.drain).into());
        tokio::pin!(deadline);
        // The sender ticks and sends on its own, so a send waiting for room in the queue (the
        // control plane not reading) never holds up the reading of acknowledgements. It hands
        // back the request queue at the end: dropping it would end the stream before the last
        // acknowledgements.
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Sent>();
        let (proxy, counters, seconds) = (self.proxy, self.counters, self.seconds);
        let sender = async move {
            let mut blocked = Duration::ZERO;
            for sequence in 1..=u64::from(seconds) {
                tick.tick().await;
                let batch = batch(proxy, counters, sequence);
                let requests_in_batch = batch.counters.iter().map(|c| c.requests).sum();
                let message = ReportRequest {
                    usage_batches: vec![batch],
                    ..Default::default()
                };
                let at = Instant::now();
                if requests.send(message).await.is_err() {
                    return (blocked, None);
                }
                blocked = blocked.max(at.elapsed());
                let _ = sent_tx.send(Sent {
                    sequence,
                    at,
                    requests: requests_in_batch,
                });
            }
            (blocked, Some(requests))
        };
        tokio::pin!(sender);
        let mut sender_done = false;
        let mut sent_open = true;
        let mut _keep_open = None;
        let mut pending: VecDeque<Sent> = VecDeque::new();
        // Every `usage_acked` received, ascending (the control plane answers in order).
        let mut answers: Vec<u64> = Vec::with_capacity(seconds as usize);
        outcome.lags.reserve(seconds as usize);
        loop {
            release(&mut pending, &answers, outcome);
            if sender_done && !sent_open && pending.is_empty() {
                return Ok(());
            }
            tokio::select! {
                (blocked, queue) = &mut sender, if !sender_done => {
                    sender_done = true;
                    outcome.send_blocked = blocked;
                    if queue.is_none() {
                        return Err("report stream closed".to_owned());
                    }
                    _keep_open = queue;
                }
                sent = sent_rx.recv(), if sent_open => match sent {
                    Some(sent) => {
                        outcome.sent += 1;
                        outcome.requests_sent += sent.requests;
                        pending.push_back(sent);
                    }
                    None => sent_open = false,
                },
                message = inbound.message() => {
                    let response = message
                        .map_err(|status| format!("stream failed: {status}"))?
                        .ok_or_else(|| "report stream closed by the control plane".to_owned())?;
                    if response.usage_acked > 0 {
                        answers.push(response.usage_acked);
                    }
                }
                () = &mut deadline => return Ok(()),
            }
        }
    }
}

/// A batch handed to the stream.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sequence: u64,
    /// When its tick came (before any wait for room in the stream's queue).
    at: Instant,
    requests: u64,
}

/// Releases the pending batches the answers acknowledge (cumulatively), noting those without
/// an answer of their own.
fn release(pending: &mut VecDeque<Sent>, answers: &[u64], outcome: &mut Outcome) {
    let Some(&acked) = answers.last() else {
        return;
    };
    let now = Instant::now();
    while let Some(sent) = pending.front().copied() {
        if sent.sequence > acked {
            break;
        }
        pending.pop_front();
        outcome.acked += 1;
        outcome.covered += u64::from(answers.binary_search(&sent.sequence).is_err());
        outcome.requests_acked += sent.requests;
        outcome
            .lags
            .push((sent.sequence, now.duration_since(sent.at)));
    }
}

/// Batch `sequence` of proxy `proxy`: `counters` distinct keys of the current minute.
fn batch(proxy: u32, counters: u32, sequence: u64) -> UsageBatch {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let minute = now / 60 * 60;
    let keys = key_space(counters);
    let first = u64::from(proxy) * u64::from(counters);
    UsageBatch {
        sequence,
        counters: (0..u64::from(counters))
            .map(|j| counter((first + j) % keys, minute, j))
            .collect(),
        ..Default::default()
    }
}

/// Requests of counter `j` of a batch: 20 to 69.
fn requests_of(j: u64) -> u64 {
    20 + j * 7 % 50
}

/// Requests in every batch of `counters` counters.
pub fn requests_per_batch(counters: u32) -> u64 {
    (0..u64::from(counters)).map(requests_of).sum()
}

/// Keys shared by the fleet: 4 consumers × 4 status classes per route, over enough routes
/// for `counters` distinct keys per batch and at least 10 routes.
pub fn key_space(counters: u32) -> u64 {
    let per_route = (CONSUMERS.len() * STATUS_CLASSES.len()) as u64;
    per_route * u64::from(counters).div_ceil(per_route).max(10)
}

/// Counter `j` of a batch, of key `key`: every batch holds the same number of requests
/// ([`requests_per_batch`]), so the stored requests count the stored batches.
fn counter(key: u64, minute_unix_s: u64, j: u64) -> UsageCounter {
    let per_route = (CONSUMERS.len() * STATUS_CLASSES.len()) as u64;
    let route = crate::rest::route_name((key / per_route) as u32);
    let consumer = CONSUMERS[(key / STATUS_CLASSES.len() as u64 % CONSUMERS.len() as u64) as usize];
    let status_class = STATUS_CLASSES[(key % STATUS_CLASSES.len() as u64) as usize];
    // 20 to 69 requests, spread over LATENCY_BUCKETS consecutive buckets from ~0.4–1 ms on.
    let requests = requests_of(j);
    let first_bucket = 48 + (key % 16) as usize;
    let mut latency_buckets = Vec::with_capacity(LATENCY_BUCKETS);
    let mut latency_bounds_us = Vec::with_capacity(LATENCY_BUCKETS);
    let mut latency_sum_us = 0;
    for (i, bucket) in (first_bucket..first_bucket + LATENCY_BUCKETS).enumerate() {
        let count = requests / LATENCY_BUCKETS as u64
            + u64::from((i as u64) < requests % LATENCY_BUCKETS as u64);
        let bound = upper_bound(bucket);
        latency_buckets.push(count);
        latency_bounds_us.push(bound);
        latency_sum_us += count * bound;
    }
    UsageCounter {
        route,
        consumer: consumer.to_owned(),
        status_class,
        requests,
        bytes_in: requests * 180,
        bytes_out: requests * 2_300,
        latency_buckets,
        latency_bounds_us,
        minute_unix_s,
        latency_sum_us,
    }
}

/// The inclusive upper bound (µs) of bucket `index` of the proxy's latency histogram
/// (`proxy/src/usage/histogram.rs`: 8 exact buckets below 8 µs, then 8 per power of two).
fn upper_bound(index: usize) -> u64 {
    const SUB_BITS: u64 = 3;
    const SUB: u64 = 1 << SUB_BITS;
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let octave = index / SUB + SUB_BITS - 1;
    let sub = index % SUB;
    let width = 1u64 << (octave - SUB_BITS);
    ((SUB + sub) << (octave - SUB_BITS)) + width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_proxy_histogram() {
        // proxy/src/usage.rs: a 1,500 µs observation lands in the bucket bounded by 1535.
        assert!((0..240).any(|i| upper_bound(i) == 1535));
        assert_eq!(upper_bound(7), 7);
        assert_eq!(upper_bound(8), 8);
        assert_eq!(upper_bound(239), u64::from(u32::MAX));
        assert!((1..240).all(|i| upper_bound(i) > upper_bound(i - 1)));
    }

    #[test]
    fn a_batch_has_distinct_keys_and_consistent_histograms() {
        let batch = batch(7, 20, 3);
        assert_eq!(batch.sequence, 3);
        assert_eq!(batch.counters.len(), 20);
        let mut keys: Vec<_> = batch
            .counters
            .iter()
            .map(|c| (c.route.clone(), c.consumer.clone(), c.status_class))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 20);
        for c in &batch.counters {
            assert_eq!(c.latency_buckets.len(), LATENCY_BUCKETS);
            assert_eq!(c.latency_buckets.iter().sum::<u64>(), c.requests);
            assert!(c.latency_bounds_us.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(c.minute_unix_s % 60, 0);
            assert!((1..=5).contains(&c.status_class));
        }
        assert_eq!(
            batch.counters.iter().map(|c| c.requests).sum::<u64>(),
            requests_per_batch(20)
        );
        assert_eq!(key_space(20), 160);
        assert_eq!(key_space(1000), 1008);
    }
}
