//! What the control plane knows about each proxy it has seen: identity, labels, connection,
//! the config revision it has ACKed, what is pending and what it NACKed with which error.
//!
//! Written by the xDS streams, read by `GET /api/v1/proxies`. Not on any request path of the
//! proxies, so a plain mutex is enough. Held in memory: a restarted control plane learns the
//! fleet again as proxies reconnect (within their ~1 s backoff).
//!
//! Bounded: a proxy disconnected for longer than the TTL (`--proxy-ttl`) is forgotten — at
//! once from the view (its `expires_at` says when), and from memory by [`Fleet::expire`], which
//! sweeps periodically. A proxy that reconnects in time keeps its record.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::DEFAULT_PROXY_TTL;
use crate::model::Kind;
use crate::snapshot::XdsResource;
use crate::timestamp::rfc3339;

/// Bounds of the time between two sweeps of expired proxies (a tenth of the TTL within).
const SWEEP_EVERY_MIN: Duration = Duration::from_millis(100);
const SWEEP_EVERY_MAX: Duration = Duration::from_secs(60);

/// A proxy's state as shown by the admin API.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ProxyStatus {
    /// The proxy's `--node-id`.
    pub node_id: String,
    /// The proxy's `--labels`.
    pub labels: BTreeMap<String, String>,
    /// Whether a config stream is open now.
    pub connected: bool,
    /// RFC 3339 time of the last message from the proxy.
    pub last_seen: String,
    /// The config revision the proxy has ACKed for every resource type (`null` until then).
    pub config_revision: Option<i64>,
    /// Resources sent and not yet ACKed.
    pub pending: Vec<ResourceRef>,
    /// Resources the proxy refused, with its error text.
    pub nacked: Vec<Nack>,
    /// RFC 3339 time at which a disconnected proxy is forgotten (`last_seen` + `--proxy-ttl`)
    /// unless it reconnects; `null` while connected.
    pub expires_at: Option<String>,
}

/// A resource by kind, name and version.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ResourceRef {
    /// Plural kind (`clusters`, `routes`, …).
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Resource version sent.
    pub version: String,
}

/// A NACK: what the proxy refused and why.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Nack {
    /// Plural kind of the refused response.
    pub kind: String,
    /// Resources in the refused response.
    pub resources: Vec<ResourceRef>,
    /// The proxy's `error_detail` message.
    pub error: String,
    /// RFC 3339 time of the NACK.
    pub at: String,
}

/// The fleet registry.
#[derive(Debug)]
pub struct Fleet {
    proxies: Mutex<HashMap<String, Record>>,
    /// How long a disconnected proxy is kept.
    ttl: Duration,
}

impl Default for Fleet {
    /// A registry with the default TTL ([`DEFAULT_PROXY_TTL`]).
    fn default() -> Self {
        Fleet::new(DEFAULT_PROXY_TTL)
    }
}

#[derive(Debug, Default)]
struct Record {
    labels: BTreeMap<String, String>,
    /// Open streams; a proxy may briefly hold two while it reconnects.
    streams: u32,
    last_seen: Option<SystemTime>,
    config_revision: Option<i64>,
    /// Versions sent and not yet answered, by kind and name.
    pending: BTreeMap<Kind, BTreeMap<String, String>>,
    nacked: BTreeMap<Kind, Nack>,
}

impl Record {
    /// When this record is forgotten: `None` while a stream is open.
    fn expires_at(&self, ttl: Duration) -> Option<SystemTime> {
        if self.streams > 0 {
            return None;
        }
        let last_seen = self.last_seen.unwrap_or(SystemTime::UNIX_EPOCH);
        Some(last_seen.checked_add(ttl).unwrap_or(last_seen))
    }

    fn is_expired(&self, ttl: Duration, now: SystemTime) -> bool {
        self.expires_at(ttl).is_some_and(|at| at <= now)
    }
}

impl Fleet {
    /// An empty registry that forgets proxies disconnected for longer than `ttl`.
    pub fn new(ttl: Duration) -> Fleet {
        Fleet {
            proxies: Mutex::default(),
            ttl,
        }
    }

    /// How long a disconnected proxy is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Forgets every proxy disconnected for longer than the TTL; returns how many.
    pub fn sweep(&self) -> usize {
        self.sweep_at(SystemTime::now())
    }

    fn sweep_at(&self, now: SystemTime) -> usize {
        let mut proxies = self.proxies.lock().expect("fleet lock");
        let before = proxies.len();
        proxies.retain(|_, record| !record.is_expired(self.ttl, now));
        before - proxies.len()
    }

    /// Sweeps every tenth of the TTL (at least every 100 ms, at most every minute) until
    /// `stopped` resolves.
    pub async fn expire(&self, stopped: impl Future<Output = ()>) {
        let every = (self.ttl / 10).clamp(SWEEP_EVERY_MIN, SWEEP_EVERY_MAX);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = ticks.tick() => {
                    let forgotten = self.sweep();
                    if forgotten > 0 {
                        tracing::info!(forgotten, ttl = ?self.ttl, "forgot disconnected proxies");
                    }
                }
            }
        }
    }

    /// A stream from `node_id` opened.
    pub fn connected(&self, node_id: &str, labels: BTreeMap<String, String>) {
        let mut proxies = self.proxies.lock().expect("fleet lock");
        let record = proxies.entry(node_id.to_owned()).or_default();
        record.labels = labels;
        record.streams += 1;
        record.last_seen = Some(SystemTime::now());
    }

    /// A stream from `node_id` closed.
    pub fn disconnected(&self, node_id: &str) {
        let mut proxies = self.proxies.lock().expect("fleet lock");
        if let Some(record) = proxies.get_mut(node_id) {
            record.streams = record.streams.saturating_sub(1);
            record.last_seen = Some(SystemTime::now());
        }
    }

    /// Resources of `kind` were sent to `node_id` and await its ACK.
    pub fn sent(&self, node_id: &str, kind: Kind, resources: &[Arc<XdsResource>]) {
        self.update(node_id, |record| {
            let pending = record.pending.entry(kind).or_default();
            for resource in resources {
                pending.insert(resource.name.clone(), resource.version.clone());
            }
        });
    }

    /// `node_id` ACKed the response for `kind` holding `names`.
    pub fn acked<'a>(&self, node_id: &str, kind: Kind, names: impl Iterator<Item = &'a str>) {
        self.update(node_id, |record| {
            if let Some(pending) = record.pending.get_mut(&kind) {
                for name in names {
                    pending.remove(name);
                }
            }
            record.nacked.remove(&kind);
        });
    }

    /// `node_id` holds every resource of config `revision`.
    pub fn synced(&self, node_id: &str, revision: i64) {
        self.update(node_id, |record| record.config_revision = Some(revision));
    }

    /// `node_id` NACKed the response for `kind` that carried `resources`.
    pub fn nacked(&self, node_id: &str, kind: Kind, resources: &[Arc<XdsResource>], error: &str) {
        self.update(node_id, |record| {
            if let Some(pending) = record.pending.get_mut(&kind) {
                for resource in resources {
                    pending.remove(&resource.name);
                }
            }
            record.nacked.insert(
                kind,
                Nack {
                    kind: kind.plural().to_owned(),
                    resources: resources
                        .iter()
                        .map(|resource| ResourceRef {
                            kind: kind.plural().to_owned(),
                            name: resource.name.clone(),
                            version: resource.version.clone(),
                        })
                        .collect(),
                    error: error.to_owned(),
                    at: rfc3339(SystemTime::now()),
                },
            );
        });
    }

    /// Every proxy seen and not expired, by node id.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let now = SystemTime::now();
        let proxies = self.proxies.lock().expect("fleet lock");
        let mut list: Vec<ProxyStatus> = proxies
            .iter()
            .filter(|(_, record)| !record.is_expired(self.ttl, now))
            .map(|(node_id, record)| ProxyStatus {
                node_id: node_id.clone(),
                labels: record.labels.clone(),
                connected: record.streams > 0,
                last_seen: record.last_seen.map(rfc3339).unwrap_or_default(),
                config_revision: record.config_revision,
                pending: record
                    .pending
                    .iter()
                    .flat_map(|(kind, pending)| pending.iter().map(move |r| (kind, r)))
                    .map(|(kind, (name, version))| ResourceRef {
                        kind: kind.plural().to_owned(),
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .collect(),
                nacked: record.nacked.values().cloned().collect(),
                expires_at: record.expires_at(self.ttl).map(rfc3339),
            })
            .collect();
        list.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        list
    }

    /// Number of proxies with an open stream.
    pub fn connected_count(&self) -> usize {
        let proxies = self.proxies.lock().expect("fleet lock");
        proxies.values().filter(|r| r.streams > 0).count()
    }

    fn update(&self, node_id: &str, f: impl FnOnce(&mut Record)) {
        let mut proxies = self.proxies.lock().expect("fleet lock");
        // Looked up first: the id is copied only for a proxy not seen yet.
        let record = match proxies.get_mut(node_id) {
            Some(record) => record,
            None => proxies.entry(node_id.to_owned()).or_default(),
        };
        record.last_seen = Some(SystemTime::now());
        f(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnected_proxies_expire_after_the_ttl() {
        let fleet = Fleet::new(Duration::from_secs(60));
        fleet.connected("up", BTreeMap::new());
        fleet.connected("gone", BTreeMap::new());
        fleet.disconnected("gone");
        let list = fleet.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].node_id, "up");
        assert_eq!(
            list[1].expires_at, None,
            "a connected proxy does not expire"
        );
        assert!(list[0].expires_at.is_some(), "a disconnected one says when");

        let now = SystemTime::now();
        assert_eq!(fleet.sweep_at(now), 0, "within the TTL");
        let later = now + Duration::from_secs(61);
        assert_eq!(fleet.sweep_at(later), 1);
        assert_eq!(fleet.sweep_at(later), 0);
        let left: Vec<String> = fleet.list().into_iter().map(|p| p.node_id).collect();
        assert_eq!(left, ["up"], "a connected proxy is never forgotten");
    }

    #[test]
    fn a_reconnect_keeps_the_record() {
        let fleet = Fleet::new(Duration::from_secs(60));
        fleet.connected("p", BTreeMap::new());
        fleet.synced("p", 7);
        fleet.disconnected("p");
        fleet.connected("p", BTreeMap::new());
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(fleet.sweep_at(later), 0);
        assert_eq!(fleet.list()[0].config_revision, Some(7));
    }
}
