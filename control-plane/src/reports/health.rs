//! The fleet-wide health view: what each connected proxy reports about each endpoint it
//! balances over, and the aggregate shown by `GET /api/v1/health`.
//!
//! Pure state behind a std mutex: written by the report streams (at most once a second per
//! proxy), read by the admin API, never on a proxy's request path. Each node's view belongs to
//! the report stream that last sent it a snapshot, so a reconnecting proxy whose old stream
//! closes late does not erase the view its new stream just sent. Bounded: at most
//! [`MAX_ENDPOINTS_PER_NODE`] entries per node, names of at most [`MAX_NAME_BYTES`].
//!
//! It does not know the config: an endpoint a proxy stops reporting stays in that proxy's view
//! until the proxy sends a new snapshot or its stream closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::timestamp::rfc3339;

/// The most `(cluster, endpoint)` entries kept per node; more are dropped.
pub const MAX_ENDPOINTS_PER_NODE: usize = 100_000;
/// The longest cluster name or endpoint address kept; longer entries are dropped.
pub const MAX_NAME_BYTES: usize = 512;

/// Identifies one report stream, to tell a node's current stream from a stale one.
pub type StreamId = u64;

/// One endpoint's state as a proxy reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Cluster name.
    pub cluster: String,
    /// Endpoint address, `host:port`.
    pub endpoint: String,
    /// Whether the proxy sends it traffic.
    pub healthy: bool,
    /// When it last changed on the proxy.
    pub at: SystemTime,
}

impl Report {
    /// A report from the wire: `at_unix_ms` of 0 (unknown) or in the future reads as `now`.
    pub fn from_unix_ms(
        cluster: String,
        endpoint: String,
        healthy: bool,
        at_unix_ms: u64,
        now: SystemTime,
    ) -> Report {
        let at = match at_unix_ms {
            0 => now,
            ms => (UNIX_EPOCH + Duration::from_millis(ms)).min(now),
        };
        Report {
            cluster,
            endpoint,
            healthy,
            at,
        }
    }
}

/// What applying a message did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries taken into the view.
    pub accepted: usize,
    /// Entries dropped: over the per-node cap or with an oversized name.
    pub dropped: usize,
    /// Whether the message was ignored as coming from a stream that no longer owns the node.
    pub stale: bool,
}

/// Every node's view, by node id.
#[derive(Debug, Default)]
pub struct HealthView {
    nodes: Mutex<HashMap<String, NodeView>>,
}

#[derive(Debug)]
struct NodeView {
    /// The stream whose snapshot this is; messages of other streams are ignored.
    stream: StreamId,
    endpoints: HashMap<(String, String), EndpointState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EndpointState {
    healthy: bool,
    since: SystemTime,
}

impl NodeView {
    fn apply(&mut self, reports: impl IntoIterator<Item = Report>) -> Applied {
        let mut applied = Applied::default();
        for report in reports {
            if report.cluster.len() > MAX_NAME_BYTES || report.endpoint.len() > MAX_NAME_BYTES {
                applied.dropped += 1;
                continue;
            }
            let key = (report.cluster, report.endpoint);
            if let Some(state) = self.endpoints.get_mut(&key) {
                // A repeated state keeps its original `since`: it did not change.
                if state.healthy != report.healthy {
                    *state = EndpointState {
                        healthy: report.healthy,
                        since: report.at,
                    };
                }
                applied.accepted += 1;
            } else if self.endpoints.len() < MAX_ENDPOINTS_PER_NODE {
                self.endpoints.insert(
                    key,
                    EndpointState {
                        healthy: report.healthy,
                        since: report.at,
                    },
                );
                applied.accepted += 1;
            } else {
                applied.dropped += 1;
            }
        }
        applied
    }
}

impl HealthView {
    /// Replaces `node_id`'s view with `reports` (the state of every endpoint it holds) and
    /// makes `stream` its owner.
    pub fn apply_snapshot(
        &self,
        node_id: &str,
        stream: StreamId,
        reports: impl IntoIterator<Item = Report>,
    ) -> Applied {
        let mut view = NodeView {
            stream,
            endpoints: HashMap::new(),
        };
        let applied = view.apply(reports);
        self.lock().insert(node_id.to_owned(), view);
        applied
    }

    /// Applies transitions sent by `stream` on top of `node_id`'s view; ignored (`stale`) when
    /// another stream owns the node or none does.
    pub fn apply_transitions(
        &self,
        node_id: &str,
        stream: StreamId,
        reports: impl IntoIterator<Item = Report>,
    ) -> Applied {
        let mut nodes = self.lock();
        match nodes.get_mut(node_id) {
            Some(view) if view.stream == stream => view.apply(reports),
            _ => Applied {
                stale: true,
                ..Applied::default()
            },
        }
    }

    /// `stream` closed: forgets `node_id`'s view unless a newer stream owns it.
    pub fn forget_node(&self, node_id: &str, stream: StreamId) {
        let mut nodes = self.lock();
        if nodes.get(node_id).is_some_and(|view| view.stream == stream) {
            nodes.remove(node_id);
        }
    }

    /// Number of nodes with a view.
    pub fn node_count(&self) -> usize {
        self.lock().len()
    }

    /// The aggregate over every node, by cluster name then endpoint address; only `cluster`
    /// when given.
    pub fn clusters(&self, cluster: Option<&str>) -> Vec<ClusterHealth> {
        let mut clusters: BTreeMap<&str, BTreeMap<&str, Tally<'_>>> = BTreeMap::new();
        let nodes = self.lock();
        for (node_id, view) in nodes.iter() {
            for ((cluster_name, endpoint), state) in &view.endpoints {
                if cluster.is_some_and(|wanted| wanted != cluster_name) {
                    continue;
                }
                let tally = clusters
                    .entry(cluster_name)
                    .or_default()
                    .entry(endpoint)
                    .or_default();
                if state.healthy {
                    tally.healthy += 1;
                } else {
                    tally.unhealthy_on.push(node_id);
                }
                tally.last_change = tally.last_change.max(Some(state.since));
            }
        }
        clusters
            .into_iter()
            .map(|(name, endpoints)| ClusterHealth {
                name: name.to_owned(),
                endpoints: endpoints
                    .into_iter()
                    .map(|(address, tally)| tally.finish(address))
                    .collect(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeView>> {
        self.nodes.lock().expect("health view lock")
    }
}

#[derive(Debug, Default)]
struct Tally<'a> {
    healthy: u32,
    unhealthy_on: Vec<&'a str>,
    last_change: Option<SystemTime>,
}

impl Tally<'_> {
    fn finish(mut self, address: &str) -> EndpointHealth {
        self.unhealthy_on.sort_unstable();
        EndpointHealth {
            address: address.to_owned(),
            healthy: self.healthy,
            unhealthy: self.unhealthy_on.len() as u32,
            last_change: self.last_change.map(rfc3339).unwrap_or_default(),
            unhealthy_on: self.unhealthy_on.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The fleet's view of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterHealth {
    /// Cluster name.
    pub name: String,
    /// Endpoints reported by at least one connected proxy, by address.
    pub endpoints: Vec<EndpointHealth>,
}

/// The fleet's view of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EndpointHealth {
    /// `host:port` as configured.
    pub address: String,
    /// Connected proxies that see it healthy.
    pub healthy: u32,
    /// Connected proxies that see it unhealthy (failed health checks or ejected).
    pub unhealthy: u32,
    /// RFC 3339 time of the most recent change seen by any of them.
    pub last_change: String,
    /// Node ids of the proxies that see it unhealthy, sorted.
    pub unhealthy_on: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn report(cluster: &str, endpoint: &str, healthy: bool, secs: u64) -> Report {
        Report {
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            healthy,
            at: at(secs),
        }
    }

    /// `(address, healthy, unhealthy, unhealthy_on)` of every endpoint of `cluster`.
    fn counts(view: &HealthView, cluster: &str) -> Vec<(String, u32, u32, Vec<String>)> {
        view.clusters(Some(cluster))
            .into_iter()
            .flat_map(|c| c.endpoints)
            .map(|e| (e.address, e.healthy, e.unhealthy, e.unhealthy_on))
            .collect()
    }

    fn row(address: &str, healthy: u32, unhealthy_on: &[&str]) -> (String, u32, u32, Vec<String>) {
        (
            address.to_owned(),
            healthy,
            unhealthy_on.len() as u32,
            unhealthy_on.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn aggregates_snapshots_of_several_nodes() {
        let view = HealthView::default();
        view.apply_snapshot(
            "p1",
            1,
            [
                report("web", "b:1", true, 10),
                report("web", "a:1", true, 10),
            ],
        );
        view.apply_snapshot(
            "p2",
            2,
            [
                report("web", "a:1", false, 20),
                report("web", "b:1", true, 5),
                report("api", "c:1", true, 5),
            ],
        );
        assert_eq!(
            counts(&view, "web"),
            [row("a:1", 1, &["p2"]), row("b:1", 2, &[])]
        );
        let all = view.clusters(None);
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["api", "web"]
        );
        assert_eq!(all[1].endpoints[0].last_change, rfc3339(at(20)));
        assert_eq!(all[1].endpoints[1].last_change, rfc3339(at(10)));
        assert!(view.clusters(Some("nope")).is_empty());
    }

    #[test]
    fn transitions_update_and_a_snapshot_replaces() {
        let view = HealthView::default();
        view.apply_snapshot(
            "p1",
            1,
            [
                report("web", "a:1", true, 10),
                report("web", "b:1", true, 10),
            ],
        );
        let applied = view.apply_transitions("p1", 1, [report("web", "a:1", false, 30)]);
        assert_eq!((applied.accepted, applied.stale), (1, false));
        assert_eq!(
            counts(&view, "web"),
            [row("a:1", 0, &["p1"]), row("b:1", 1, &[])]
        );
        assert_eq!(
            view.clusters(None)[0].endpoints[0].last_change,
            rfc3339(at(30))
        );

        // A repeated state does not move `since`; a new endpoint is added.
        view.apply_transitions(
            "p1",
            1,
            [
                report("web", "a:1", false, 40),
                report("web", "c:1", true, 41),
            ],
        );
        assert_eq!(
            view.clusters(None)[0].endpoints[0].last_change,
            rfc3339(at(30))
        );
        assert_eq!(counts(&view, "web").len(), 3);

        // A later snapshot on the same stream replaces everything.
        view.apply_snapshot("p1", 1, [report("web", "b:1", false, 50)]);
        assert_eq!(counts(&view, "web"), [row("b:1", 0, &["p1"])]);
    }

    #[test]
    fn a_stale_stream_neither_writes_nor_forgets() {
        let view = HealthView::default();
        view.apply_snapshot("p1", 1, [report("web", "a:1", true, 10)]);
        // The proxy reconnects: its new stream sends a snapshot before the old one closes.
        view.apply_snapshot("p1", 2, [report("web", "a:1", false, 20)]);
        assert!(
            view.apply_transitions("p1", 1, [report("web", "a:1", true, 30)])
                .stale
        );
        view.forget_node("p1", 1);
        assert_eq!(counts(&view, "web"), [row("a:1", 0, &["p1"])]);
        // Transitions for a node without a view are stale too.
        assert!(
            view.apply_transitions("p9", 9, [report("web", "a:1", true, 30)])
                .stale
        );

        view.forget_node("p1", 2);
        assert!(view.clusters(None).is_empty());
        assert_eq!(view.node_count(), 0);
    }

    #[test]
    fn bounded_per_node() {
        let view = HealthView::default();
        let many =
            (0..MAX_ENDPOINTS_PER_NODE + 5).map(|i| report("web", &format!("h:{i}"), true, 1));
        let applied = view.apply_snapshot("p1", 1, many);
        assert_eq!(
            (applied.accepted, applied.dropped),
            (MAX_ENDPOINTS_PER_NODE, 5)
        );
        // Known endpoints still update at the cap; new ones are dropped.
        let applied = view.apply_transitions(
            "p1",
            1,
            [
                report("web", "h:0", false, 2),
                report("web", "new:1", false, 2),
            ],
        );
        assert_eq!((applied.accepted, applied.dropped), (1, 1));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let applied = view.apply_snapshot("p2", 2, [report(&long, "a:1", true, 1)]);
        assert_eq!((applied.accepted, applied.dropped), (0, 1));
    }

    #[test]
    fn wire_times_are_clamped() {
        let now = at(100);
        let r = |ms| Report::from_unix_ms("c".into(), "e".into(), true, ms, now).at;
        assert_eq!(r(0), now);
        assert_eq!(r(50_000), at(50));
        assert_eq!(r(500_000), now);
    }
}
