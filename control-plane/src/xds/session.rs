//! One proxy's Delta ADS session as a state machine, free of I/O: requests and new snapshots
//! go in, responses come out. Reports ACKs and NACKs to the fleet registry.
//!
//! What the proxy holds is not copied per session: once a subscription has been answered, the
//! proxy holds exactly the session's `base` snapshot (shared by every session), so a new
//! snapshot is diffed against `base` — only the names it changed, when it directly follows
//! `base`. A response the proxy NACKs counts as held too: it keeps its previous value, and the
//! resource is sent again only when it changes. So a session's memory does not grow with the
//! size of the config, only the responses still awaiting an answer do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::response::Response;
use crate::fleet::Fleet;
use crate::model::Kind;
use crate::snapshot::{Snapshot, XdsResource};

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

/// What was sent in one response, until the proxy answers it.
#[derive(Debug)]
struct InFlight {
    kind: Kind,
    revision: i64,
    resources: Vec<Arc<XdsResource>>,
    removed: Vec<String>,
}

/// A Delta ADS session with one proxy.
#[derive(Debug)]
pub struct Session {
    fleet: Arc<Fleet>,
    node_id: Option<String>,
    subscriptions: BTreeSet<Kind>,
    in_flight: HashMap<String, InFlight>,
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
        responses.extend(self.respond(kind, snapshot, held, names, true));
        Ok(responses)
    }

    /// Handles a new snapshot: the responses that bring every subscription up to date, in
    /// push order (clusters before routes).
    pub fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Response> {
        if snapshot.revision == self.base.revision {
            return Vec::new();
        }
        let base = std::mem::replace(&mut self.base, Arc::clone(snapshot));
        // Only the changed names need a look when this snapshot directly follows `base`.
        let changed = snapshot
            .changed
            .as_ref()
            .filter(|_| snapshot.previous_revision == base.revision);
        let kinds: Vec<Kind> = self.subscriptions.iter().copied().collect();
        let mut responses = Vec::new();
        for kind in kinds {
            let names: Vec<&str> = match changed {
                Some(changed) => changed
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, name)| name.as_str())
                    .collect(),
                None => {
                    let mut names: Vec<&str> = [base.of_kind(kind), snapshot.of_kind(kind)]
                        .into_iter()
                        .flatten()
                        .flat_map(|m| m.keys().map(String::as_str))
                        .collect();
                    names.sort_unstable();
                    names.dedup();
                    names
                }
            };
            let held = |name: &str| base.get(kind, name).map(|r| r.version.as_str());
            responses.extend(self.respond(kind, snapshot, held, names, false));
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

    /// The response that brings `kind` from what the proxy holds (`held`: name → version) to
    /// `snapshot`, looking at `names` only; `None` when nothing differs (unless `always`: a new
    /// subscription always gets a response, possibly empty, so the proxy knows it is in sync).
    fn respond<'a>(
        &mut self,
        kind: Kind,
        snapshot: &Snapshot,
        held: impl Fn(&str) -> Option<&'a str>,
        names: Vec<&str>,
        always: bool,
    ) -> Option<Response> {
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            match snapshot.get(kind, name) {
                Some(resource) if held(name) != Some(resource.version.as_str()) => {
                    resources.push(Arc::clone(resource));
                }
                None if held(name).is_some() => removed.push(name.to_owned()),
                _ => {}
            }
        }
        if resources.is_empty() && removed.is_empty() && !always {
            return None;
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        if let Some(node_id) = &self.node_id {
            self.fleet.sent(node_id, kind, &resources);
        }
        self.nacked_since_send = false;
        self.in_flight.insert(
            nonce.clone(),
            InFlight {
                kind,
                revision: snapshot.revision,
                resources: resources.clone(),
                removed: removed.clone(),
            },
        );
        Some(Response {
            kind,
            revision: snapshot.revision,
            nonce,
            resources,
            removed,
        })
    }
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
