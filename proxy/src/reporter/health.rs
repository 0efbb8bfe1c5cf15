//! Endpoint health as this proxy reports it: a full snapshot first on every stream (healthy =
//! passing active checks and not ejected, `at_unix_ms` = when that last changed), then the
//! transitions since the last report; a fresh snapshot when an endpoint or cluster is gone, so
//! the control plane drops it. Pure: tested without a stream.

use std::collections::HashMap;

use switchyard_proto::v1::HealthTransition;

use crate::snapshot::Snapshot;

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
