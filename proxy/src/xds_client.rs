//! The config stream: the only writer of the snapshot.
//!
//! Keeps one Delta ADS stream open to the first reachable control plane of the list (in order,
//! rotating to the next on failure, with capped jittered backoff). Each (re)connect subscribes
//! to every type in `type_url::ALL` with `initial_resource_versions`, so the server sends only
//! what changed. Each response is applied ([`delta`]), compiled into a new [`Snapshot`],
//! published, and only then ACKed or NACKed. While no control plane is reachable the proxy
//! keeps serving the last snapshot.

pub(crate) mod backoff;
pub mod delta;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use switchyard_proto::type_url;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::resource_set::ResourceSet;
use crate::snapshot::Snapshot;
use crate::state::{ControlState, Nack};
use backoff::Backoff;

/// Time allowed to open a connection to one control-plane address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings detect a silently dead control plane.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid control-plane address: {0}")]
    Address(#[source] tonic::transport::Error),
    #[error("connect failed: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("stream failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("stream closed by the control plane")]
    Closed,
}

/// Runs forever (until its task is aborted at shutdown).
pub async fn run(shared: Arc<ControlState>) {
    let node = node(&shared.node_id, &shared.labels);
    let mut held = ResourceSet::default();
    let mut backoff = Backoff::default();
    let mut index = 0;
    let mut failures: u64 = 0;
    loop {
        let address = shared.control_planes[index].clone();
        let mut responses = 0;
        let error = match stream(&shared, &node, &address, &mut held, &mut responses).await {
            Ok(never) => match never {},
            Err(error) => error,
        };
        shared.metrics.set_connected(false);
        let error = error_chain(&error);
        if responses > 0 {
            // A healthy stream broke (e.g. a control-plane restart): retry the same address
            // first, quickly; a failed connect then moves on to the next one.
            tracing::warn!(%address, %error, "config stream ended; reconnecting");
            backoff.reset();
            failures = 0;
        } else {
            // Warn on the first failure and then periodically, not once per retry.
            if failures.is_multiple_of(60) {
                tracing::warn!(%address, %error, failures, "control plane unavailable; trying the next one");
            } else {
                tracing::debug!(%address, %error, "control plane unavailable; trying the next one");
            }
            failures += 1;
            index = (index + 1) % shared.control_planes.len();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Opens one stream to `address` and applies responses until it breaks; `responses` counts
/// how many were applied so the caller can tell a broken healthy stream from a failed one.
async fn stream(
    shared: &ControlState,
    node: &Node,
    address: &str,
    held: &mut ResourceSet,
    responses: &mut usize,
) -> Result<Infallible, StreamError> {
    let channel = connect(address).await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (requests, outbound) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    for type_url in type_url::ALL {
        let request = delta::subscribe_request(type_url, node, held);
        // Capacity 16 > ALL.len(), and the receiver is alive: cannot fail or block.
        let _ = requests.try_send(request);
    }
    let mut inbound = client
        .delta_aggregated_resources(shared.control_plane_request(ReceiverStream::new(outbound)))
        .await?
        .into_inner();
    shared.metrics.set_connected(true);
    shared.update_xds_status(|status| status.address = Some(address.to_owned()));
    tracing::info!(%address, node_id = %node.id, "config stream open");
    while let Some(response) = inbound.message().await? {
        let applied = delta::apply(held, &response);
        if applied.changed {
            let previous = shared.snapshot.load();
            let snapshot = Snapshot::build(held.clone(), &previous, &shared.build);
            shared.snapshot.publish(Arc::new(snapshot));
        }
        shared.metrics.config_update();
        if applied.errors.is_empty() {
            tracing::info!(
                type_url = %response.type_url,
                revision = %response.system_version_info,
                updated = response.resources.len(),
                removed = response.removed_resources.len(),
                "config applied"
            );
        } else {
            shared.metrics.config_nack();
            let message = applied.errors.join("; ");
            tracing::warn!(type_url = %response.type_url, %message, "config rejected (NACK)");
            shared.update_xds_status(|status| {
                status.last_nack = Some(Nack {
                    type_url: response.type_url.clone(),
                    nonce: response.nonce.clone(),
                    revision: response.system_version_info.clone(),
                    message,
                });
            });
        }
        *responses += 1;
        requests
            .send(applied.reply(&response))
            .await
            .map_err(|_| StreamError::Closed)?;
    }
    Err(StreamError::Closed)
}

pub(crate) async fn connect(address: &str) -> Result<Channel, StreamError> {
    Endpoint::from_shared(address.to_owned())
        .map_err(StreamError::Address)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(StreamError::Connect)
}

/// `error: cause: cause…`, since transport errors hide the useful part in their sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The xDS `Node`: id, and labels as string values of `metadata`.
pub fn node(node_id: &str, labels: &BTreeMap<String, String>) -> Node {
    let fields = labels
        .iter()
        .map(|(key, value)| {
            let value = Value {
                kind: Some(Kind::StringValue(value.clone())),
            };
            (key.clone(), value)
        })
        .collect();
    Node {
        id: node_id.to_owned(),
        metadata: Some(Struct { fields }),
        user_agent_name: "switchyard-proxy".to_owned(),
        ..Default::default()
    }
}
