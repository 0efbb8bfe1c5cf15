//! What the control plane knows about each proxy it has seen: identity, labels, connection,
//! the config revision it has ACKed, what is pending and what it NACKed with which error.
//!
//! Written by the xDS streams, read by `GET /api/v1/proxies`. Not on any request path of the
//! proxies, so a plain mutex is enough. Held in memory: a restarted control plane learns the
//! fleet again as proxies reconnect (within their ~1 s backoff).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::model::Kind;
use crate::snapshot::XdsResource;
use crate::timestamp::rfc3339;

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
#[derive(Debug, Default)]
pub struct Fleet {
    proxies: Mutex<HashMap<String, Record>>,
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

impl Fleet {
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

    /// Every proxy seen, by node id.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let proxies = self.proxies.lock().expect("fleet lock");
        let mut list: Vec<ProxyStatus> = proxies
            .iter()
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
