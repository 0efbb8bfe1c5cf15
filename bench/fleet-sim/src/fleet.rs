//! The simulated proxies. Each is one Delta ADS stream with its own node id that behaves like
//! the real proxy's xDS client: it subscribes to every type of `type_url::ALL` at once,
//! decodes every resource it receives, and answers each response with an ACK (or a NACK with
//! the decode error) carrying the response nonce. Streams are multiplexed over a few HTTP/2
//! connections (tonic channels), so 10,000 proxies need ~20 sockets, not 10,000.
//!
//! A change is announced to the streams before its REST write is sent; each stream reports
//! when it ACKed the route response that carries the changed route, with the bytes it received
//! since the change started. This module measures; it keeps no per-response history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use prost::Message;
use switchyard_proto::{type_url, v1};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Largest response a simulated proxy accepts (a first sync of 100,000 routes fits).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Error texts kept (the count is always exact).
const MAX_ERRORS_KEPT: usize = 20;

/// How to build the fleet.
#[derive(Debug, Clone)]
pub struct Settings {
    pub xds_url: String,
    pub proxies: u32,
    pub streams_per_connection: u32,
    pub connect_concurrency: u32,
    pub node_prefix: String,
    /// Bootstrap token sent as `authorization: Bearer …` on every stream, when set.
    pub token: Option<String>,
}

/// Why the fleet could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("invalid xDS URL: {0}")]
    Url(#[source] tonic::transport::Error),
    #[error("cannot connect to the control plane: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("{failed} of {proxies} simulated proxies failed to sync; first error: {first}")]
    Sync {
        failed: u32,
        proxies: u32,
        first: String,
    },
}

/// Why one simulated proxy's stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("stream failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("stream closed")]
    Closed,
    #[error("the token is not a valid metadata value")]
    Token,
}

/// The change being measured.
#[derive(Debug)]
struct Target {
    index: u32,
    route: String,
    started: Instant,
}

/// Handle of a started change.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    index: u32,
}

/// What the streams report to the coordinator.
#[derive(Debug)]
enum Event {
    Synced,
    Acked {
        change: u32,
        latency: Duration,
        bytes: u64,
    },
    Failed(String),
}

/// Per-proxy results of one change.
#[derive(Debug, Default)]
pub struct Acks {
    /// From the start of the change (before the REST write) to the ACK, one per proxy.
    pub latencies: Vec<Duration>,
    /// Bytes (protobuf `encoded_len` of the responses) each proxy received for the change.
    pub bytes: Vec<u64>,
    /// Proxies that had not ACKed when the change timed out.
    pub missing: u32,
}

/// N connected simulated proxies.
#[derive(Debug)]
pub struct Fleet {
    proxies: u32,
    connections: usize,
    /// The HTTP/2 connections; the report streams of `--report-usage` share them.
    channels: Vec<Channel>,
    target: watch::Sender<Option<Arc<Target>>>,
    events: mpsc::UnboundedReceiver<Event>,
    bytes: Arc<AtomicU64>,
    errors: Vec<String>,
    error_count: usize,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Opens the connections and the N streams, and returns once every proxy has ACKed its
    /// first response of every type.
    pub async fn connect(settings: Settings) -> Result<Fleet, FleetError> {
        let connections = settings.proxies.div_ceil(settings.streams_per_connection) as usize;
        let endpoint = Endpoint::from_shared(settings.xds_url.clone())
            .map_err(FleetError::Url)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            channels.push(endpoint.connect().await.map_err(FleetError::Connect)?);
        }
        let (target, _) = watch::channel(None);
        let (events_tx, events) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicU64::new(0));
        let prefix: Arc<str> = settings.node_prefix.as_str().into();
        let authorization: Option<Arc<str>> = settings
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").into());
        let permits = Arc::new(Semaphore::new(settings.connect_concurrency as usize));
        let mut fleet = Fleet {
            proxies: settings.proxies,
            connections,
            channels: channels.clone(),
            target,
            events,
            bytes,
            errors: Vec::new(),
            error_count: 0,
            tasks: JoinSet::new(),
        };
        for proxy in 0..settings.proxies {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let stream = SimulatedProxy {
                node_id: format!("{prefix}-{proxy}"),
                channel: channels[proxy as usize % connections].clone(),
                target: fleet.target.subscribe(),
                events: events_tx.clone(),
                bytes: Arc::clone(&fleet.bytes),
                authorization: authorization.clone(),
            };
            fleet.tasks.spawn(stream.run(permit));
        }
        let (mut synced, mut failed, mut first) = (0u32, 0u32, None);
        while synced + failed < settings.proxies {
            match fleet.events.recv().await {
                Some(Event::Synced) => synced += 1,
                Some(Event::Failed(error)) => {
                    failed += 1;
                    first.get_or_insert(error);
                }
                Some(Event::Acked { .. }) => {}
                None => break,
            }
        }
        if failed > 0 {
            return Err(FleetError::Sync {
                failed,
                proxies: settings.proxies,
                first: first.unwrap_or_default(),
            });
        }
        Ok(fleet)
    }

    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The HTTP/2 connections the streams are multiplexed over.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Bytes received by all streams so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Announces change `index` of route `route` (call before sending the write).
    pub fn start_change(&self, index: u32, route: &str) -> Change {
        self.target.send_replace(Some(Arc::new(Target {
            index,
            route: route.to_owned(),
            started: Instant::now(),
        })));
        Change { index }
    }

    /// Collects the ACKs of `change` until every proxy has ACKed it or `timeout` passed.
    pub async fn wait_acks(&mut self, change: &Change, timeout: Duration) -> Acks {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut acks = Acks::default();
        while acks.latencies.len() < self.proxies as usize {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Acked {
                    change: index,
                    latency,
                    bytes,
                })) if index == change.index => {
                    acks.latencies.push(latency);
                    acks.bytes.push(bytes);
                }
                Ok(Some(Event::Failed(error))) => self.record_error(error),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        acks.missing = self.proxies - acks.latencies.len() as u32;
        acks
    }

    /// Stream errors seen after the fleet was connected: (count, first texts).
    pub fn errors(&self) -> (usize, Vec<String>) {
        (self.error_count, self.errors.clone())
    }

    /// Ends every stream (and so the connections).
    pub fn close(mut self) {
        self.tasks.abort_all();
    }

    fn record_error(&mut self, error: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(error);
        }
    }
}

/// One simulated proxy.
struct SimulatedProxy {
    node_id: String,
    channel: Channel,
    target: watch::Receiver<Option<Arc<Target>>>,
    events: mpsc::UnboundedSender<Event>,
    bytes: Arc<AtomicU64>,
    authorization: Option<Arc<str>>,
}

impl SimulatedProxy {
    async fn run(self, permit: OwnedSemaphorePermit) {
        let events = self.events.clone();
        let node_id = self.node_id.clone();
        if let Err(error) = self.stream(permit).await {
            let _ = events.send(Event::Failed(format!("{node_id}: {error}")));
        }
    }

    async fn stream(mut self, permit: OwnedSemaphorePermit) -> Result<(), StreamError> {
        let mut client = AggregatedDiscoveryServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (requests, outbound) = mpsc::channel::<DeltaDiscoveryRequest>(type_url::ALL.len() + 4);
        let node = Node {
            id: self.node_id.clone(),
            user_agent_name: "fleet-sim".to_owned(),
            ..Default::default()
        };
        for type_url in type_url::ALL {
            // Capacity > ALL.len() and the receiver is alive: cannot fail.
            let _ = requests.try_send(DeltaDiscoveryRequest {
                node: Some(node.clone()),
                type_url: type_url.to_owned(),
                ..Default::default()
            });
        }
        let mut request = tonic::Request::new(ReceiverStream::new(outbound));
        if let Some(authorization) = &self.authorization {
            let value = authorization.parse().map_err(|_| StreamError::Token)?;
            request.metadata_mut().insert("authorization", value);
        }
        let mut inbound = client
            .delta_aggregated_resources(request)
            .await?
            .into_inner();
        let mut unsynced: Vec<&str> = type_url::ALL.to_vec();
        let mut permit = Some(permit);
        // (change index, bytes received since it started)
        let mut current: Option<(u32, u64)> = None;
        while let Some(response) = inbound.message().await? {
            let len = response.encoded_len() as u64;
            self.bytes.fetch_add(len, Ordering::Relaxed);
            let reply = reply(&response);
            requests
                .send(reply)
                .await
                .map_err(|_| StreamError::Closed)?;
            let acked = Instant::now();
            if !unsynced.is_empty() {
                unsynced.retain(|t| *t != response.type_url);
                if unsynced.is_empty() {
                    permit.take();
                    let _ = self.events.send(Event::Synced);
                }
            }
            let Some(target) = self.target.borrow_and_update().clone() else {
                continue;
            };
            let since = match &mut current {
                Some((index, bytes)) if *index == target.index => {
                    *bytes += len;
                    *bytes
                }
                _ => {
                    current = Some((target.index, len));
                    len
                }
            };
            let carries_change = response.type_url == type_url::ROUTE
                && response.resources.iter().any(|r| r.name == target.route);
            if carries_change {
                let _ = self.events.send(Event::Acked {
                    change: target.index,
                    latency: acked.duration_since(target.started),
                    bytes: since,
                });
            }
        }
        Err(StreamError::Closed)
    }
}

/// Decodes every resource like the proxy does and answers with an ACK, or a NACK naming
/// the resources that did not decode.
fn reply(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    let errors: Vec<String> = response
        .resources
        .iter()
        .filter_map(|resource| {
            let value = resource
                .resource
                .as_ref()
                .map(|any| any.value.as_slice())
                .unwrap_or_default();
            let decoded = match response.type_url.as_str() {
                type_url::ROUTE => v1::Route::decode(value).map(|_| ()),
                type_url::CLUSTER => v1::Cluster::decode(value).map(|_| ()),
                _ => Ok(()),
            };
            decoded
                .err()
                .map(|error| format!("{}: {error}", resource.name))
        })
        .collect();
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        error_detail: (!errors.is_empty()).then(|| Status {
            code: 3,
            message: errors.join("; "),
            details: Vec::new(),
        }),
        ..Default::default()
    }
}
