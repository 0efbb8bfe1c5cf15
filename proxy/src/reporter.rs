//! The report stream (SPEC §3, `switchyard.v1.ReportService/StreamReports`): endpoint health as
//! this proxy sees it, sent to the control plane for the fleet-wide view.
//!
//! Connects to the same control-plane list as the xDS client (first reachable, fail over, capped
//! jittered backoff ≤ 1 s). The first message of every stream carries `node_id` and a full
//! `health_snapshot` (every endpoint of every cluster held: healthy = passing active checks and
//! not ejected, `at_unix_ms` = when that last changed); after that, transitions are batched at
//! most once a second. When an endpoint or cluster disappears, a fresh snapshot replaces the
//! control plane's view. Memory stays bounded while the control plane is away: nothing queues,
//! the next stream simply starts with a snapshot. On shutdown the last changes are flushed
//! (bounded by [`FLUSH_TIMEOUT`]). A missing or failing report server is retried quietly
//! (debug logs). Usage and quota reports are a later issue's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1::report_service_client::ReportServiceClient;
use switchyard_proto::v1::{HealthTransition, ReportRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::snapshot::Snapshot;
use crate::state::ControlState;
use crate::xds_client::backoff::Backoff;
use crate::xds_client::{self, StreamError};

/// Longest batching delay.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on the final flush at shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// `(cluster, endpoint)` → `(healthy, at_unix_ms)`.
type HealthMap = HashMap<(String, String), (bool, u64)>;

/// One report to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub snapshot: bool,
    pub health: Vec<HealthTransition>,
}

/// What the control plane was last told, per endpoint (pure: tested without a stream).
#[derive(Debug, Default)]
pub struct Tracker {
    sent: HealthMap,
}

impl Tracker {
    /// The full state, remembered as sent.
    pub fn snapshot(&mut self, snapshot: &Snapshot) -> Report {
        self.sent = current(snapshot);
        Report {
            snapshot: true,
            health: transitions(&self.sent, |_| true),
        }
    }

    /// What changed since the last report: `None` if nothing; a full snapshot if an endpoint
    /// is gone (so the control plane drops it).
    pub fn changes(&mut self, snapshot: &Snapshot) -> Option<Report> {
        let now = current(snapshot);
        if self.sent.keys().any(|key| !now.contains_key(key)) {
            return Some(self.snapshot(snapshot));
        }
        let health = transitions(&now, |(key, value)| self.sent.get(key) != Some(value));
        if health.is_empty() {
            return None;
        }
        self.sent = now;
        Some(Report {
            snapshot: false,
            health,
        })
    }
}

fn current(snapshot: &Snapshot) -> HealthMap {
    let mut map = HashMap::new();
    for (name, cluster) in &snapshot.clusters {
        for endpoint in cluster.balancer.states() {
            map.insert((name.clone(), endpoint.address.clone()), endpoint.health());
        }
    }
    map
}

fn transitions(
    map: &HealthMap,
    keep: impl Fn((&(String, String), &(bool, u64))) -> bool,
) -> Vec<HealthTransition> {
    let mut health: Vec<HealthTransition> = map
        .iter()
        .filter(|entry| keep(*entry))
        .map(|((cluster, endpoint), (healthy, at))| HealthTransition {
            cluster: cluster.clone(),
            endpoint: endpoint.clone(),
            healthy: *healthy,
            at_unix_ms: *at,
        })
        .collect();
    health.sort_by(|a, b| (&a.cluster, &a.endpoint).cmp(&(&b.cluster, &b.endpoint)));
    health
}

/// Runs until `stop` turns true, then flushes and returns.
pub async fn run(shared: Arc<ControlState>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    let mut index = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let address = shared.control_planes[index].clone();
        let mut delivered = false;
        match stream(&shared, &address, &mut stop, &mut delivered).await {
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
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Completes once `stop` is true or its sender is gone (holds no borrow across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn request(node_id: &str, report: Report, first: bool) -> ReportRequest {
    ReportRequest {
        node_id: if first {
            node_id.to_owned()
        } else {
            String::new()
        },
        health: report.health,
        health_snapshot: report.snapshot,
        ..Default::default()
    }
}

/// One stream: snapshot first, then batched changes; `Ok` after a graceful flush.
async fn stream(
    shared: &ControlState,
    address: &str,
    stop: &mut watch::Receiver<bool>,
    delivered: &mut bool,
) -> Result<(), StreamError> {
    let channel = xds_client::connect(address).await?;
    let mut client = ReportServiceClient::new(channel);
    let (requests, outbound) = mpsc::channel::<ReportRequest>(4);
    let mut tracker = Tracker::default();
    let first = tracker.snapshot(&shared.snapshot.load());
    // Capacity 4 and the receiver is alive: cannot fail.
    let _ = requests.try_send(request(&shared.node_id, first, true));
    let mut inbound = client
        .stream_reports(shared.control_plane_request(ReceiverStream::new(outbound)))
        .await?
        .into_inner();
    *delivered = true;
    tracing::debug!(%address, "report stream open");
    let mut tick = tokio::time::interval(BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(report) = tracker.changes(&shared.snapshot.load()) {
                    requests
                        .send(request(&shared.node_id, report, false))
                        .await
                        .map_err(|_| StreamError::Closed)?;
                }
            }
            message = inbound.message() => {
                // Quota grants are for a later issue; the stream only needs to stay open.
                if message?.is_none() {
                    return Err(StreamError::Closed);
                }
            }
            () = stopped(stop) => {
                if let Some(report) = tracker.changes(&shared.snapshot.load()) {
                    let _ = requests.try_send(request(&shared.node_id, report, false));
                }
                drop(requests);
                // Half-closed: wait (bounded) for the server to take everything and end.
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
                    while let Ok(Some(_)) = inbound.message().await {}
                })
                .await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterRuntime;

    fn snapshot(addresses: &[&str], previous: Option<&Snapshot>) -> Snapshot {
        let spec = crate::balancer::test_support::web_spec(addresses);
        let runtime =
            ClusterRuntime::build(&spec, previous.and_then(|p| p.clusters.get("web")), None, 1);
        let mut snapshot = Snapshot::default();
        snapshot.clusters.insert("web".into(), runtime);
        snapshot
    }

    #[test]
    fn snapshot_then_transitions_then_snapshot_on_removal() {
        let mut tracker = Tracker::default();
        let first = snapshot(&["a:1", "b:1"], None);
        let report = tracker.snapshot(&first);
        assert!(report.snapshot);
        assert_eq!(report.health.len(), 2);
        assert!(report.health.iter().all(|h| h.healthy && h.at_unix_ms > 0));
        assert_eq!(tracker.changes(&first), None, "nothing changed");

        let web = &first.clusters["web"];
        web.balancer.states()[1].set_active_healthy(false, &web.state.endpoints);
        let report = tracker.changes(&first).unwrap();
        assert!(!report.snapshot);
        assert_eq!(report.health.len(), 1);
        assert_eq!(report.health[0].endpoint, "b:1");
        assert!(!report.health[0].healthy);
        assert_eq!(tracker.changes(&first), None);

        let second = snapshot(&["a:1"], Some(&first));
        let report = tracker.changes(&second).unwrap();
        assert!(
            report.snapshot,
            "b:1 is gone: a full snapshot replaces the view"
        );
        assert_eq!(report.health.len(), 1);
    }
}
