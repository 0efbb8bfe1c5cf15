//! The report stream (SPEC §3, `switchyard.v1.ReportService/StreamReports`): endpoint health
//! and usage as this proxy sees them, sent to the control plane for the fleet-wide views.
//!
//! Connects to the same control-plane list as the xDS client (first reachable, fail over, capped
//! jittered backoff ≤ 1 s). The first message of every stream carries `node_id`, this process's
//! `instance_id`, a full health snapshot ([`health`]) and every usage batch not yet
//! acknowledged ([`usage`]); after that, health transitions and one usage batch are sent at
//! most once a second, and the control plane's `usage_acked` answers release batches. Health
//! needs no queue (the next stream starts with a snapshot); usage is held, bounded, until
//! acknowledged. On shutdown the last changes and the workers' final usage are flushed
//! (bounded by [`FLUSH_TIMEOUT`]). A missing or failing report server is retried quietly
//! (debug logs). Quota reports are a later issue's.

pub(crate) mod health;
pub(crate) mod usage;

use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1::report_service_client::ReportServiceClient;
use switchyard_proto::v1::{self, ReportRequest, ReportResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::quota::QuotaLink;
use crate::snapshot::Snapshot;
use crate::state::ControlState;
use crate::usage::Flush;
use crate::xds_client::backoff::Backoff;
use crate::xds_client::{self, StreamError};
use health::{Report, Tracker};
use usage::UsageQueue;

/// Longest batching delay.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the reporter waits for the other workers' flushes before sending usage.
const FLUSH_GATHER: Duration = Duration::from_millis(50);
/// Bound on the final flush at shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What a stream works with, kept across streams.
struct Reporting<'a> {
    shared: &'a ControlState,
    /// Random per process: usage sequence numbers are this run's.
    instance_id: String,
    flushes: mpsc::Receiver<Flush>,
    usage: UsageQueue,
    quota_link: Arc<QuotaLink>,
}

impl Reporting<'_> {
    /// Takes in a worker's flush: per-route metrics now, the control plane's copy in the
    /// next batch.
    fn take(&mut self, flush: Flush) {
        self.shared.route_usage.add(&flush.counters);
        self.usage.add(flush);
        self.shared.report_usage.dropped(self.usage.dropped_total);
    }

    /// Takes every flush already waiting.
    fn take_waiting(&mut self) {
        while let Ok(flush) = self.flushes.try_recv() {
            self.take(flush);
        }
    }

    fn answer(&mut self, response: &ReportResponse) {
        if response.usage_acked > 0 {
            self.usage.acked(response.usage_acked);
        }
        if !response.grants.is_empty() {
            let snapshot = self.shared.snapshot.load();
            for grant in &response.grants {
                match snapshot.quotas.get(&grant.quota) {
                    Some(book) => book.grant(grant),
                    None => {
                        tracing::debug!(quota = %grant.quota, "grant for a quota no longer held")
                    }
                }
            }
        }
        self.shared
            .report_usage
            .pending(self.usage.unacknowledged());
    }
}

/// Runs until `stop` turns true, then flushes and returns. `flushes` brings the workers'
/// usage.
pub async fn run(
    shared: Arc<ControlState>,
    flushes: mpsc::Receiver<Flush>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reporting = Reporting {
        shared: &shared,
        instance_id: format!("{:016x}", fastrand::u64(..)),
        flushes,
        usage: UsageQueue::default(),
        quota_link: Arc::clone(&shared.build.quota_link),
    };
    let mut backoff = Backoff::default();
    let mut index = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let address = shared.control_planes[index].clone();
        let mut delivered = false;
        match stream(&mut reporting, &address, &mut stop, &mut delivered).await {
            Ok(()) => return,
            Err(error) => {
                let error = xds_client::error_chain(&error);
                tracing::debug!(%address, %error, "report stream unavailable");
            }
        }
        if delivered {
            backoff.reset();
        } else {
            index = (index + 1) % shared.control_planes.len();
        }
        let pause = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                Some(flush) = reporting.flushes.recv() => reporting.take(flush),
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Completes once `stop` is true or its sender is gone (holds no borrow across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Marks the report stream down when dropped (the stream ended, however it ended).
struct Disconnected<'a>(&'a QuotaLink);

impl Drop for Disconnected<'_> {
    fn drop(&mut self) {
        self.0.set_connected(false);
    }
}

/// Grant requests due in every quota book.
fn quota_requests(snapshot: &Snapshot) -> Vec<v1::QuotaRequest> {
    snapshot
        .quotas
        .values()
        .flat_map(|book| book.wants())
        .collect()
}

/// One message: health changes (if any), the usage batches not yet sent on this stream (the
/// open one cut now, with what quotas let through) and due grant requests.
fn request(
    reporting: &mut Reporting<'_>,
    health: Option<Report>,
    first: bool,
) -> Option<ReportRequest> {
    let snapshot = reporting.shared.snapshot.load();
    let quota_used = snapshot
        .quotas
        .values()
        .flat_map(|book| book.take_used())
        .collect();
    reporting.usage.cut(quota_used);
    let quota_requests = quota_requests(&snapshot);
    let usage_batches = reporting.usage.unsent();
    if health.is_none() && usage_batches.is_empty() && quota_requests.is_empty() && !first {
        return None;
    }
    let health = health.unwrap_or(Report {
        snapshot: false,
        health: Vec::new(),
    });
    let (node_id, instance_id) = if first {
        (
            reporting.shared.node_id.clone(),
            reporting.instance_id.clone(),
        )
    } else {
        (String::new(), String::new())
    };
    Some(ReportRequest {
        node_id,
        instance_id,
        health: health.health,
        health_snapshot: health.snapshot,
        usage_batches,
        quota_requests,
    })
}

/// One stream: snapshot and held usage first, then batched changes; `Ok` after a graceful
/// flush.
async fn stream(
    reporting: &mut Reporting<'_>,
    address: &str,
    stop: &mut watch::Receiver<bool>,
    delivered: &mut bool,
) -> Result<(), StreamError> {
    let shared = reporting.shared;
    let channel = xds_client::connect(address).await?;
    let mut client = ReportServiceClient::new(channel);
    let (requests, outbound) = mpsc::channel::<ReportRequest>(4);
    let mut tracker = Tracker::default();
    let snapshot = tracker.snapshot(&shared.snapshot.load());
    reporting.usage.new_stream();
    for book in shared.snapshot.load().quotas.values() {
        book.stream_restarted();
    }
    reporting.take_waiting();
    let first = request(reporting, Some(snapshot), true);
    // Capacity 4 and the receiver is alive: cannot fail.
    let _ = requests.try_send(first.unwrap_or_default());
    let mut inbound = client
        .stream_reports(shared.control_plane_request(ReceiverStream::new(outbound)))
        .await?
        .into_inner();
    *delivered = true;
    reporting.quota_link.set_connected(true);
    let quota_link = Arc::clone(&reporting.quota_link);
    let _connected = Disconnected(&quota_link);
    tracing::debug!(%address, "report stream open");
    let mut tick = tokio::time::interval(BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Usage goes out shortly after the workers' flushes (they come together, on the second),
    // not on the next tick: a request is counted by the control plane ~1 s after it ended.
    let mut usage_due: Option<tokio::time::Instant> = None;
    loop {
        let due = usage_due.unwrap_or_else(|| tokio::time::Instant::now() + BATCH_INTERVAL);
        tokio::select! {
            _ = tick.tick() => {
                let health = tracker.changes(&shared.snapshot.load());
                if let Some(message) = request(reporting, health, false) {
                    requests.send(message).await.map_err(|_| StreamError::Closed)?;
                }
                usage_due = None;
            }
            () = tokio::time::sleep_until(due), if usage_due.is_some() => {
                usage_due = None;
                if let Some(message) = request(reporting, None, false) {
                    requests.send(message).await.map_err(|_| StreamError::Closed)?;
                }
            }
            Some(flush) = reporting.flushes.recv() => {
                reporting.take(flush);
                usage_due.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_GATHER);
            }
            () = quota_link.wanted() => {
                let quota_requests = quota_requests(&shared.snapshot.load());
                if !quota_requests.is_empty() {
                    let message = ReportRequest { quota_requests, ..Default::default() };
                    requests.send(message).await.map_err(|_| StreamError::Closed)?;
                }
            }
            message = inbound.message() => match message? {
                Some(response) => reporting.answer(&response),
                None => return Err(StreamError::Closed),
            },
            () = stopped(stop) => {
                // The workers have stopped: their final flushes are waiting.
                reporting.take_waiting();
                let health = tracker.changes(&shared.snapshot.load());
                if let Some(message) = request(reporting, health, false) {
                    let _ = requests.try_send(message);
                }
                drop(requests);
                // Half-closed: wait (bounded) for the server to take everything and end.
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
                    while let Ok(Some(response)) = inbound.message().await {
                        reporting.answer(&response);
                    }
                })
                .await;
                return Ok(());
            }
        }
    }
}
