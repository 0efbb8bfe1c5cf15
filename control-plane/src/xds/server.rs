//! The gRPC service: `AggregatedDiscoveryService/DeltaAggregatedResources`. Each stream runs
//! a task that feeds the proxy's requests and new snapshots into its [`Session`] and writes
//! the responses out. State-of-the-world ADS is not served.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::session::{Session, SessionError};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Responses buffered per stream before the stream task waits for the proxy to read.
const STREAM_BUFFER: usize = 16;

/// The ADS service, shared by every stream.
#[derive(Clone, Debug)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
}

impl AdsServer {
    /// A service streaming the snapshots published on `snapshots`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
    ) -> AdsServer {
        AdsServer {
            snapshots,
            fleet,
            metrics,
        }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "state-of-the-world ADS is not served; use DeltaAggregatedResources",
        ))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let requests = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let session = Session::new(self.fleet.clone());
        tokio::spawn(run_stream(
            session,
            requests,
            self.snapshots.clone(),
            tx,
            self.metrics.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn run_stream(
    mut session: Session,
    mut requests: Streaming<DeltaDiscoveryRequest>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    out: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    metrics: Arc<Metrics>,
) {
    metrics.stream_opened();
    let outcome = loop {
        let responses = tokio::select! {
            request = requests.message() => match request {
                Ok(Some(request)) => {
                    let nack = request.error_detail.is_some();
                    let snapshot = snapshots.borrow_and_update().clone();
                    match session.on_request(request, &snapshot) {
                        Ok(responses) => {
                            metrics.answer_received(nack);
                            responses
                        }
                        Err(error) => break Err(error),
                    }
                }
                Ok(None) => break Ok(()),
                Err(status) => {
                    tracing::debug!(node_id = ?session.node_id(), %status, "config stream broken");
                    break Ok(());
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let snapshot = snapshots.borrow_and_update().clone();
                session.on_snapshot(&snapshot)
            }
        };
        for response in responses {
            metrics.response_sent(response.resources.len(), &response);
            if out.send(Ok(response)).await.is_err() {
                break;
            }
        }
        if out.is_closed() {
            break Ok(());
        }
    };
    if let Err(error) = outcome {
        let status = match error {
            SessionError::MissingNode | SessionError::UnknownType(_) => {
                Status::invalid_argument(error.to_string())
            }
        };
        let _ = out.send(Err(status)).await;
    }
    if let Some(node_id) = session.node_id() {
        session_closed(&session, node_id);
    }
    metrics.stream_closed();
}

fn session_closed(session: &Session, node_id: &str) {
    tracing::debug!(node_id, "config stream closed");
    session.fleet().disconnected(node_id);
}
