//! `ReportService/StreamReports`: one task per stream. The first message names the node and
//! carries a health snapshot (the state of every endpoint the proxy holds), which replaces the
//! node's view; later messages carry transitions. When the stream ends — the proxy closes it,
//! the connection breaks or the control plane shuts down — the node's view is forgotten:
//! proxies that disconnect stop counting.
//!
//! The response stream stays open and silent: nothing is sent until quota grants exist, and
//! the proxy must not wait for an answer. It ends with `InvalidArgument` when the first message
//! has no node id or a later one names another node.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use switchyard_proto::v1::report_service_server::ReportService;
use switchyard_proto::v1::{HealthTransition, ReportRequest, ReportResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::health::{HealthView, MAX_NAME_BYTES, Report, StreamId};
use crate::metrics::Metrics;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ReportResponse, Status>> + Send + 'static>>;

/// The report service, shared by every stream.
#[derive(Clone, Debug)]
pub struct ReportServer {
    health: Arc<HealthView>,
    metrics: Arc<Metrics>,
    /// Turns `true` at shutdown: every stream then ends, so the server can drain.
    shutdown: watch::Receiver<bool>,
    next_stream: Arc<AtomicU64>,
}

impl ReportServer {
    /// A service writing into `health`; its streams end when `shutdown` turns `true`.
    pub fn new(
        health: Arc<HealthView>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> ReportServer {
        ReportServer {
            health,
            metrics,
            shutdown,
            next_stream: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl ReportService for ReportServer {
    type StreamReportsStream = ResponseStream;

    async fn stream_reports(
        &self,
        request: Request<Streaming<ReportRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        // Only an error is ever sent, so one slot is enough.
        let (tx, rx) = mpsc::channel(1);
        let stream = ReportStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            node_id: None,
            health: self.health.clone(),
            metrics: self.metrics.clone(),
        };
        tokio::spawn(stream.run(request.into_inner(), tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One open report stream.
struct ReportStream {
    id: StreamId,
    /// Set by the first message.
    node_id: Option<String>,
    health: Arc<HealthView>,
    metrics: Arc<Metrics>,
}

impl ReportStream {
    async fn run(
        mut self,
        mut requests: Streaming<ReportRequest>,
        out: mpsc::Sender<Result<ReportResponse, Status>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.metrics.report_stream_opened();
        let outcome = loop {
            let message = tokio::select! {
                message = requests.message() => message,
                () = stopping(&mut shutdown) => break Ok(()),
                () = out.closed() => break Ok(()),
            };
            match message {
                Ok(Some(request)) => {
                    if let Err(status) = self.on_request(request) {
                        break Err(status);
                    }
                }
                Ok(None) => break Ok(()),
                Err(status) => {
                    tracing::debug!(node_id = ?self.node_id, %status, "report stream broken");
                    break Ok(());
                }
            }
        };
        if let Err(status) = outcome {
            tracing::warn!(node_id = ?self.node_id, %status, "report stream refused");
            let _ = out.send(Err(status)).await;
        }
        if let Some(node_id) = &self.node_id {
            tracing::debug!(node_id, "report stream closed; forgetting its health view");
            self.health.forget_node(node_id, self.id);
        }
        self.metrics.report_stream_closed();
    }

    fn on_request(&mut self, request: ReportRequest) -> Result<(), Status> {
        let node_id = self.identify(&request.node_id)?;
        self.metrics
            .report_received(request.health.len(), request.health_snapshot);
        let now = SystemTime::now();
        let reports = request.health.into_iter().map(|t| report(t, now));
        // The first message replaces the node's view even when it is not marked as a
        // snapshot: the control plane knows nothing of a node from before its stream.
        let applied = if request.health_snapshot || self.node_id.is_none() {
            self.health.apply_snapshot(&node_id, self.id, reports)
        } else {
            self.health.apply_transitions(&node_id, self.id, reports)
        };
        if applied.dropped > 0 {
            self.metrics.report_health_dropped(applied.dropped);
            tracing::warn!(
                node_id,
                dropped = applied.dropped,
                "health entries dropped: over the per-node cap or with oversized names"
            );
        }
        if applied.stale {
            tracing::debug!(node_id, "transitions of a superseded report stream ignored");
        }
        if self.node_id.is_none() {
            tracing::debug!(
                node_id,
                endpoints = applied.accepted,
                "report stream opened"
            );
            self.node_id = Some(node_id);
        }
        Ok(())
    }

    /// The node this message is from: the first message must name it, later ones may repeat it.
    fn identify(&self, claimed: &str) -> Result<String, Status> {
        match &self.node_id {
            None if claimed.is_empty() => Err(Status::invalid_argument(
                "the first report message must carry node_id",
            )),
            None if claimed.len() > MAX_NAME_BYTES => Err(Status::invalid_argument(format!(
                "node_id is longer than {MAX_NAME_BYTES} bytes"
            ))),
            None => Ok(claimed.to_owned()),
            Some(known) if claimed.is_empty() || claimed == known => Ok(known.clone()),
            Some(known) => Err(Status::invalid_argument(format!(
                "node_id changed on an open report stream ({known:?} then {claimed:?})"
            ))),
        }
    }
}

fn report(transition: HealthTransition, now: SystemTime) -> Report {
    Report::from_unix_ms(
        transition.cluster,
        transition.endpoint,
        transition.healthy,
        transition.at_unix_ms,
        now,
    )
}

/// Resolves when `shutdown` turns `true`; never when its sender is gone without doing so.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
