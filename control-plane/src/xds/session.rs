//! One proxy's Delta ADS session as a state machine, free of I/O: requests and new snapshots
//! go in, responses come out. Reports ACKs and NACKs to the fleet registry.
//!
//! What the proxy holds is not copied per session: once a subscription has been answered, the
//! proxy holds exactly the session's `base` snapshot (shared by every session), so a new
//! snapshot is diffed against `base` — only the names it changed, when it directly follows
//! `base`. A response the proxy NACKs counts as held too: it keeps its previous value, and the
//! resource is sent again only when it changes. So a session's memory does not grow with the
//! size of the config, only the responses still awaiting an answer do.
//!
//! And when a new snapshot directly follows `base`, what the session sends is the snapshot's
//! [follow-up](Snapshot::follow_up), computed and encoded once for every session; the session
//! only gives it a nonce of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::response::Response;
use crate::fleet::Fleet;
use crate::model::Kind;
use crate::snapshot::delta::diff;
use crate::snapshot::{Snapshot, Update};

/// Why a session cannot go on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionError {
    /// The first request carried no node id.
    #[error("the first request must carry node.id")]
    MissingNode,
    /// A type URL this server does not serve.
    #[error("unknown type_url {0:?}")]
    UnknownType(String),
}

/// A Delta ADS session with one proxy.
#[derive(Debug)]
pub struct Session {
    fleet: Arc<Fleet>,
    node_id: Option<String>,
    subscriptions: BTreeSet<Kind>,
    /// What was sent under each nonce, until the proxy answers it.
    in_flight: HashMap<String, Arc<Update>>,
    /// The snapshot every subscription has been brought to: what the proxy holds.
    base: Arc<Snapshot>,
    /// Whether a response of the current revision was NACKed.
    nacked_since_send: bool,
    next_nonce: u64,
}

impl Session {
    /// A new session reporting to `fleet`.
    pub fn new(fleet: Arc<Fleet>) -> Session {
        Session {
            fleet,
            node_id: None,
            subscriptions: BTreeSet::new(),
            in_flight: HashMap::new(),
            base: Arc::default(),
            nacked_since_send: false,
            next_nonce: 0,
        }
    }

    /// The fleet registry this session reports to.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The proxy's node id, once known.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// Whether `request` subscribes to a type this stream has not subscribed to yet, so that
    /// answering it may mean sending every resource of that type.
    pub fn opens_subscription(&self, request: &DeltaDiscoveryRequest) -> bool {
        request.response_nonce.is_empty()
            && Kind::from_type_url(&request.type_url)
                .is_some_and(|k| !self.subscriptions.contains(&k))
    }

    /// Whether a response sent is still awaiting the proxy's ACK or NACK.
    pub fn awaiting_answers(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Handles one request from the proxy against the current snapshot; returns the responses
    /// to send.
    pub fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Arc<Snapshot>,
    ) -> Result<Vec<Response>, SessionError> {
        if self.node_id.is_none() {
            let node = request.node.as_ref().filter(|n| !n.id.is_empty());
            let node = node.ok_or(SessionError::MissingNode)?;
            self.node_id = Some(node.id.clone());
            self.fleet.connected(&node.id, labels_of(node));
        }
        let kind = Kind::from_type_url(&request.type_url)
            .ok_or_else(|| SessionError::UnknownType(request.type_url.clone()))?;

        if !request.response_nonce.is_empty() {
            self.on_answer(kind, &request);
            return Ok(Vec::new());
        }
        // Bring existing subscriptions to this snapshot first, so all share one revision.
        let mut responses = self.on_snapshot(snapshot);
        // A (re)subscription: the proxy says what it holds; send it the difference.
        self.subscriptions.insert(kind);
        let reported = request.initial_resource_versions;
        let current = snapshot.of_kind(kind);
        let mut names: Vec<&str> = reported.keys().map(String::as_str).collect();
        names.extend(
            current
                .into_iter()
                .flat_map(|m| m.keys().map(String::as_str)),
        );
        names.sort_unstable();
        names.dedup();
        let held = |name: &str| reported.get(name).map(String::as_str);
        let (resources, removed) = diff(kind, snapshot, held, names);
        // Always answered, even with nothing, so the proxy knows it is in sync.
        let update = Update::new(kind, snapshot.revision, resources, removed);
        responses.push(self.send(Arc::new(update)));
        Ok(responses)
    }

    /// Handles a new snapshot: the responses that bring every subscription up to date, in
    /// push order (clusters before routes).
    pub fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Response> {
        if snapshot.revision == self.base.revision {
            return Vec::new();
        }
        let base = std::mem::replace(&mut self.base, Arc::clone(snapshot));
        let follows = snapshot.directly_follows(&base);
        let kinds: Vec<Kind> = self.subscriptions.iter().copied().collect();
        let mut responses = Vec::new();
        for kind in kinds {
            let update = if follows {
                snapshot.follow_up(&base, kind).cloned()
            } else {
                Some(Arc::new(full_diff(kind, &base, snapshot))).filter(|u| !u.is_empty())
            };
            responses.extend(update.map(|update| self.send(update)));
        }
        if responses.is_empty() {
            self.report_if_synced();
        }
        responses
    }

    fn on_answer(&mut self, kind: Kind, request: &DeltaDiscoveryRequest) {
        let Some(sent) = self.in_flight.remove(&request.response_nonce) else {
            // An answer to a nonce we no longer track (e.g. from before a reconnect).
            return;
        };
        let node_id = self.node_id.clone().unwrap_or_default();
        match &request.error_detail {
            Some(status) => {
                if sent.revision == self.base.revision {
                    self.nacked_since_send = true;
                }
                tracing::warn!(node_id = %node_id, kind = %kind, error = %status.message, "proxy rejected config (NACK)");
                self.fleet
                    .nacked(&node_id, kind, &sent.resources, &status.message);
            }
            None => {
                let names = sent.resources.iter().map(|r| r.name.as_str());
                let names = names.chain(sent.removed.iter().map(String::as_str));
                self.fleet.acked(&node_id, kind, names);
                self.report_if_synced();
            }
        }
        debug_assert_eq!(sent.kind, kind);
    }

    /// When nothing is awaiting an answer and nothing was refused, the proxy holds this
    /// revision of everything it subscribed to.
    fn report_if_synced(&self) {
        if let Some(node_id) = &self.node_id
            && !self.subscriptions.is_empty()
            && self.in_flight.is_empty()
            && !self.nacked_since_send
        {
            self.fleet.synced(node_id, self.base.revision);
        }
    }

    /// Sends `update` under a new nonce; it awaits the proxy's answer.
    fn send(&mut self, update: Arc<Update>) -> Response {
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        if let Some(node_id) = &self.node_id {
            self.fleet.sent(node_id, update.kind, &update.resources);
        }
        self.nacked_since_send = false;
        self.in_flight.insert(nonce.clone(), Arc::clone(&update));
        Response { nonce, update }
    }
}

/// The update of `kind` from `base` to `snapshot`, looking at every name of either.
fn full_diff(kind: Kind, base: &Snapshot, snapshot: &Snapshot) -> Update {
    let mut names: Vec<&str> = [base.of_kind(kind), snapshot.of_kind(kind)]
        .into_iter()
        .flatten()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let held = |name: &str| base.get(kind, name).map(|r| r.version.as_str());
    let (resources, removed) = diff(kind, snapshot, held, names);
    Update::new(kind, snapshot.revision, resources, removed)
}

fn labels_of(node: &envoy_types::pb::envoy::config::core::v3::Node) -> BTreeMap<String, String> {
    use envoy_types::pb::google::protobuf::value::Kind as ValueKind;
    let Some(metadata) = &node.metadata else {
        return BTreeMap::new();
    };
    metadata
        .fields
        .iter()
        .filter_map(|(key, value)| match &value.kind {
            Some(ValueKind::StringValue(s)) => Some((key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
