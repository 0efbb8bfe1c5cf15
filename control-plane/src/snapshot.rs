//! The xDS view of the config: every resource converted and encoded once as an envoy `Resource`
//! message, versioned by the revision that last changed it, shared by all streams (which copy
//! those bytes into their responses; see `xds::response`).
//!
//! One builder task owns it. It follows the store's commits (including other replicas', see
//! `Store::follow_other_replicas`, with a periodic check of the revision head as a backstop),
//! coalesces a burst of writes into one
//! rebuild, loads only what changed since the last snapshot, and publishes a new immutable
//! `Arc<Snapshot>` on a `watch` channel together with the names that changed. From those the
//! snapshot computes, once, the update for every stream that holds the previous snapshot (see
//! [`delta`]); a stream further behind diffs for itself.
//!
//! This module owns what the Delta ADS server sends; the server (`xds`) adds sessions, nonces
//! and the gRPC framing on top.
//!
//! # Layout
//! - [`convert`]: stored specs → `switchyard.v1` protobuf messages.
//! - [`update`]: what one response carries apart from its nonce, and its encoding (once, for an
//!   update shared by many streams).
//! - [`delta`]: the diff of one type against what a proxy holds, and the follow-up from one
//!   snapshot to the next computed once for every stream holding the former.

pub mod convert;
pub mod delta;
pub mod update;

pub use update::Update;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::Resource;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;

use crate::model::Kind;
use crate::store::{Store, StoreError, StoredResource};
use delta::FollowUp;
use switchyard_proto::v1::ApiKeyHash;

/// The builder rebuilds at most once per window: the first commit after a quiet spell is
/// built at once, the commits that follow within the window are coalesced into one rebuild.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(20);
/// How often the builder checks the database head, in case a commit notification from
/// another replica was missed (they normally arrive by LISTEN / NOTIFY at once).
pub const REPLICA_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One resource as sent on the wire.
#[derive(Debug, PartialEq)]
pub struct XdsResource {
    /// Resource name.
    pub name: String,
    /// Resource version: the revision that last changed it.
    pub version: String,
    /// The encoded envoy `Resource` (name, version and the `switchyard.v1` message as `Any`).
    pub encoded: Bytes,
}

impl XdsResource {
    /// Encodes `any` once, with its name and version, as an envoy `Resource`.
    pub fn new(name: String, version: String, any: Any) -> XdsResource {
        let resource = Resource {
            name,
            version,
            resource: Some(any),
            ..Default::default()
        };
        let encoded = Bytes::from(resource.encode_to_vec());
        XdsResource {
            name: resource.name,
            version: resource.version,
            encoded,
        }
    }
}

/// An immutable view of the whole config at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The newest store revision included.
    pub revision: i64,
    /// The revision of the snapshot this one was derived from.
    pub previous_revision: i64,
    /// Resources changed (put or deleted) since `previous_revision`, or `None` when unknown
    /// (the first snapshot), in which case streams diff everything.
    pub changed: Option<Vec<(Kind, String)>>,
    resources: HashMap<Kind, HashMap<String, Arc<XdsResource>>>,
    /// Sum of the encoded resources' lengths, computed when first asked for.
    encoded_len: OnceLock<usize>,
    /// The updates from `previous_revision`, computed when first asked for.
    follow_up: FollowUp,
}

impl Snapshot {
    /// The resources of one kind.
    pub fn of_kind(&self, kind: Kind) -> Option<&HashMap<String, Arc<XdsResource>>> {
        self.resources.get(&kind)
    }

    /// One resource.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Arc<XdsResource>> {
        self.resources.get(&kind).and_then(|m| m.get(name))
    }

    /// Number of resources of every kind.
    pub fn len(&self) -> usize {
        self.resources.values().map(HashMap::len).sum()
    }

    /// Bytes of every resource encoded: about what a proxy's first sync carries.
    pub fn encoded_len(&self) -> usize {
        *self.encoded_len.get_or_init(|| {
            let of_kind = self.resources.values().flat_map(HashMap::values);
            of_kind.map(|r| r.encoded.len()).sum()
        })
    }

    /// Whether the config is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this snapshot was derived from `previous` with the names it changed known.
    pub fn directly_follows(&self, previous: &Snapshot) -> bool {
        self.changed.is_some() && self.previous_revision == previous.revision
    }

    /// The update of `kind` that brings a proxy holding `previous` to this snapshot, computed
    /// once for every stream; `None` when `kind` did not change. Only for a snapshot that
    /// [directly follows](Snapshot::directly_follows) `previous`.
    pub fn follow_up(&self, previous: &Snapshot, kind: Kind) -> Option<&Arc<Update>> {
        self.follow_up.get(self, previous, kind)
    }

    fn insert(&mut self, resource: &StoredResource, keys: &KeysByConsumer) {
        match encode(resource, keys) {
            Ok(xds) => {
                self.resources
                    .entry(resource.kind)
                    .or_default()
                    .insert(resource.name.clone(), Arc::new(xds));
            }
            Err(error) => {
                // Validated on write, so this is a bug or a schema change; keep the old value
                // out rather than send something the proxies cannot read.
                tracing::error!(kind = %resource.kind, name = %resource.name, %error, "stored resource does not convert; left out of the snapshot");
            }
        }
    }
}

#[cfg(test)]
impl Snapshot {
    /// A snapshot holding `resources`, derived from `previous_revision` by `changed`.
    pub(crate) fn of(
        revision: i64,
        previous_revision: i64,
        changed: Option<Vec<(Kind, String)>>,
        resources: Vec<(Kind, XdsResource)>,
    ) -> Snapshot {
        let mut snapshot = Snapshot {
            revision,
            previous_revision,
            changed,
            resources: HashMap::new(),
            ..Snapshot::default()
        };
        for (kind, resource) in resources {
            let of_kind = snapshot.resources.entry(kind).or_default();
            of_kind.insert(resource.name.clone(), Arc::new(resource));
        }
        snapshot
    }
}

/// API key hashes by consumer name.
type KeysByConsumer = HashMap<String, Vec<ApiKeyHash>>;

fn encode(
    resource: &StoredResource,
    keys: &KeysByConsumer,
) -> Result<XdsResource, convert::ConvertError> {
    let any = match resource.kind {
        Kind::Consumer => convert::consumer_to_any(
            &resource.name,
            &resource.spec,
            keys.get(&resource.name).cloned().unwrap_or_default(),
        )?,
        kind => convert::to_any(kind, &resource.name, &resource.spec)?,
    };
    Ok(XdsResource::new(
        resource.name.clone(),
        resource.version.to_string(),
        Any {
            type_url: any.type_url,
            value: any.value,
        },
    ))
}

/// The key hashes of `consumer` (of every consumer when `None`), grouped by consumer.
async fn load_keys(store: &Store, consumer: Option<&str>) -> Result<KeysByConsumer, StoreError> {
    let mut by_consumer = KeysByConsumer::new();
    for key in store.keys(consumer).await? {
        let Some(sha256) = unhex(&key.sha256) else {
            tracing::error!(consumer = %key.consumer, id = %key.id, "stored key hash is not hex; left out");
            continue;
        };
        by_consumer
            .entry(key.consumer)
            .or_default()
            .push(ApiKeyHash { id: key.id, sha256 });
    }
    Ok(by_consumer)
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Loads the whole config into a first snapshot.
pub async fn load(store: &Store) -> Result<Snapshot, StoreError> {
    let revision = *store.subscribe().borrow();
    let mut snapshot = Snapshot {
        revision,
        previous_revision: revision,
        changed: None,
        ..Snapshot::default()
    };
    let keys = load_keys(store, None).await?;
    for resource in store.list_all().await? {
        snapshot.insert(&resource, &keys);
    }
    Ok(snapshot)
}

/// Derives the next snapshot from `current` and the store's changes after it.
pub async fn advance(store: &Store, current: &Snapshot, head: i64) -> Result<Snapshot, StoreError> {
    let changes = store.changes_since(current.revision, head).await?;
    let mut next = Snapshot {
        revision: head,
        previous_revision: current.revision,
        changed: Some(changes.iter().map(|c| (c.kind, c.name.clone())).collect()),
        resources: current.resources.clone(),
        ..Snapshot::default()
    };
    let mut keys = KeysByConsumer::new();
    for change in &changes {
        if change.kind == Kind::Consumer && change.value.is_some() {
            keys.extend(load_keys(store, Some(&change.name)).await?);
        }
    }
    for change in changes {
        match change.value {
            Some(resource) => next.insert(&resource, &keys),
            None => {
                if let Some(of_kind) = next.resources.get_mut(&change.kind) {
                    of_kind.remove(&change.name);
                }
            }
        }
    }
    Ok(next)
}

/// Runs the builder until `shutdown` resolves: publishes a new snapshot on `publish` after
/// every (coalesced) batch of commits.
pub async fn run_builder(
    store: Store,
    publish: watch::Sender<Arc<Snapshot>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut commits = store.subscribe();
    let mut poll = tokio::time::interval(REPLICA_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_build = tokio::time::Instant::now() - COALESCE_WINDOW;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            changed = commits.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep_until(last_build + COALESCE_WINDOW).await;
            }
            _ = poll.tick() => {}
        }
        last_build = tokio::time::Instant::now();
        let current = publish.borrow().clone();
        let head = match store.head().await {
            Ok(head) => head.max(*commits.borrow_and_update()),
            Err(error) => {
                tracing::warn!(%error, "cannot read the revision head; keeping the current snapshot");
                continue;
            }
        };
        if head <= current.revision {
            continue;
        }
        match advance(&store, &current, head).await {
            Ok(next) => {
                tracing::debug!(
                    revision = next.revision,
                    changed = next.changed.as_ref().map_or(0, Vec::len),
                    "snapshot published"
                );
                publish.send_replace(Arc::new(next));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot load config changes; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(kind: Kind, name: &str, version: i64) -> StoredResource {
        StoredResource {
            kind,
            name: name.to_owned(),
            version,
            updated_at_ms: 0,
            spec: serde_json::json!({"endpoints": [{"address": "127.0.0.1:1"}]}),
        }
    }

    #[test]
    fn insert_encodes_once_with_the_revision_as_version() {
        let mut snapshot = Snapshot::default();
        snapshot.insert(&resource(Kind::Cluster, "a", 7), &KeysByConsumer::new());
        let a = snapshot.get(Kind::Cluster, "a").unwrap();
        assert_eq!(a.version, "7");
        let decoded = Resource::decode(a.encoded.clone()).unwrap();
        assert_eq!(
            (decoded.name.as_str(), decoded.version.as_str()),
            ("a", "7")
        );
        assert_eq!(decoded.resource.unwrap().type_url, Kind::Cluster.type_url());
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot.encoded_len(), a.encoded.len());
    }
}
