//! The gRPC service `envoy.service.discovery.v3.AggregatedDiscoveryService`: serves
//! `DeltaAggregatedResources`; state-of-the-world ADS is not served. Each stream runs a task
//! that feeds the proxy's requests and new snapshots into its [`Session`] and writes the
//! responses out as pre-encoded gRPC frames ([`FrameBody`]), taking [`FirstSyncLimit`]
//! permits before it answers a new subscription.
//!
//! Written against tonic's service traits rather than the generated server so that responses
//! skip tonic's encoder, whose per-stream buffer would keep the largest response (a whole
//! first sync) allocated for the life of every stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use http::HeaderValue;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Streaming};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::body::{FrameBody, FrameSender};
use super::first_sync::{FirstSyncGate, FirstSyncLimit};
use super::response::GRPC_PREFIX_LEN;
use super::session::{Session, SessionError};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Responses buffered per stream before the stream task waits for the proxy to read.
const STREAM_BUFFER: usize = 16;
/// The one method served.
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS service, shared by every stream.
#[derive(Clone, Debug)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    first_sync: FirstSyncLimit,
}

impl AdsServer {
    /// A service streaming the snapshots published on `snapshots`, sending whole configs
    /// within the `first_sync` budget.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        first_sync: FirstSyncLimit,
    ) -> AdsServer {
        AdsServer {
            snapshots,
            fleet,
            metrics,
            first_sync,
        }
    }

    fn open_stream(&self, request: http::Request<Body>) -> http::Response<Body> {
        if request.uri().path() != DELTA_PATH {
            return Status::unimplemented(
                "state-of-the-world ADS is not served; use DeltaAggregatedResources",
            )
            .into_http();
        }
        let encoding = request.headers().get("grpc-encoding");
        if let Some(encoding) = encoding.filter(|e| *e != "identity") {
            let message = format!("requests compressed with {encoding:?} are not supported");
            return Status::new(Code::Unimplemented, message).into_http();
        }
        let decoder = tonic_prost::ProstDecoder::new(BufferSettings::default());
        let requests = Streaming::new_request(decoder, request.into_body(), None, None);
        let (out, body) = FrameBody::channel(STREAM_BUFFER);
        tokio::spawn(run_stream(
            Session::new(self.fleet.clone()),
            requests,
            self.snapshots.clone(),
            out,
            self.metrics.clone(),
            self.first_sync.gate(),
        ));
        let mut response = http::Response::new(Body::new(body));
        let content_type = HeaderValue::from_static("application/grpc");
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
        response
    }
}

impl NamedService for AdsServer {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl Service<http::Request<Body>> for AdsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        std::future::ready(Ok(self.open_stream(request)))
    }
}

async fn run_stream(
    mut session: Session,
    mut requests: Streaming<DeltaDiscoveryRequest>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    out: FrameSender,
    metrics: Arc<Metrics>,
    mut gate: FirstSyncGate,
) {
    metrics.stream_opened();
    // A subscription waiting for first-sync permits; no further request is read meanwhile.
    let mut parked: Option<DeltaDiscoveryRequest> = None;
    let outcome = loop {
        let request = tokio::select! {
            () = gate.granted() => parked.take(),
            request = requests.message(), if parked.is_none() => match request {
                Ok(Some(request)) if session.opens_subscription(&request) && !gate.is_granted() => {
                    gate.request(snapshots.borrow().encoded_len());
                    parked = Some(request);
                    None
                }
                Ok(Some(request)) => Some(request),
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
                let responses = session.on_snapshot(&snapshot);
                if !send(&out, &metrics, responses).await {
                    break Ok(());
                }
                None
            }
        };
        if let Some(request) = request {
            let nack = request.error_detail.is_some();
            let snapshot = snapshots.borrow_and_update().clone();
            match session.on_request(request, &snapshot) {
                Ok(responses) => {
                    metrics.answer_received(nack);
                    if !send(&out, &metrics, responses).await {
                        break Ok(());
                    }
                }
                Err(error) => break Err(error),
            }
        }
        if gate.is_granted() && parked.is_none() && !session.awaiting_answers() {
            gate.release();
        }
        if out.is_closed() {
            break Ok(());
        }
    };
    drop(gate);
    if let Err(error) = outcome {
        let status = match error {
            SessionError::MissingNode | SessionError::UnknownType(_) => {
                Status::invalid_argument(error.to_string())
            }
        };
        let _ = out.send(Err(status)).await;
    }
    if let Some(node_id) = session.node_id() {
        tracing::debug!(node_id, "config stream closed");
        session.fleet().disconnected(node_id);
    }
    metrics.stream_closed();
}

/// Writes `responses` out as frames; `false` once the proxy has gone.
async fn send(
    out: &FrameSender,
    metrics: &Metrics,
    responses: Vec<super::response::Response>,
) -> bool {
    for response in responses {
        let frame = response.to_frame();
        metrics.response_sent(
            response.update.resources.len(),
            frame.len() - GRPC_PREFIX_LEN,
        );
        // The frame owns its bytes: the response (and its hold on the snapshot's resources)
        // goes before the frame waits in the channel.
        drop(response);
        if out.send(Ok(frame)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
