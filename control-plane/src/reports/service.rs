//! `ReportService/StreamReports`: one task per stream. The first message names the node (and
//! the proxy process: `instance_id`) and carries a health snapshot (the state of every
//! endpoint the proxy holds), which replaces the node's view; later messages carry
//! transitions. When the stream ends — the proxy closes it, the connection breaks or the
//! control plane shuts down — the node's view is forgotten: proxies that disconnect stop
//! counting.
//!
//! Usage batches are written to the store inline, one transaction per message (a proxy sends
//! at most one a second; a slow database delays this stream's next messages, no other
//! stream's), and answered with `ReportResponse { usage_acked }` once committed. When the
//! write fails nothing is answered: the proxy keeps the batches and resends them, and the
//! store counts each batch once. Nothing else is answered yet (no quota grants).
//!
//! The stream ends with `InvalidArgument` when the first message has no node id, a later one
//! names another node or process, or usage comes before any `instance_id`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use switchyard_proto::v1 as proto;
use switchyard_proto::v1::report_service_server::ReportService;
use switchyard_proto::v1::{HealthTransition, ReportRequest, ReportResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::health::{HealthView, MAX_NAME_BYTES, Report, StreamId};
use crate::metrics::Metrics;
use crate::store::usage::MAX_INSTANCE_ID_BYTES;
use crate::store::{Store, UsageBatch, UsageCounter};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ReportResponse, Status>> + Send + 'static>>;

/// Responses queued per stream: acknowledgements are cumulative, so when a proxy does not read
/// them, newer ones are dropped rather than waited for.
const RESPONSE_QUEUE: usize = 8;
/// How long a refused stream waits to queue its error before closing without it.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// The report service, shared by every stream.
#[derive(Clone, Debug)]
pub struct ReportServer {
    store: Store,
    health: Arc<HealthView>,
    metrics: Arc<Metrics>,
    /// Turns `true` at shutdown: every stream then ends, so the server can drain.
    shutdown: watch::Receiver<bool>,
    next_stream: Arc<AtomicU64>,
}

impl ReportServer {
    /// A service writing health into `health` and usage into `store`; its streams end when
    /// `shutdown` turns `true`.
    pub fn new(
        store: Store,
        health: Arc<HealthView>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> ReportServer {
        ReportServer {
            store,
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
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let stream = ReportStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            node_id: None,
            instance_id: None,
            store: self.store.clone(),
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
    /// Set by the first message that carries one (the first, from a current proxy).
    instance_id: Option<String>,
    store: Store,
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
                    if let Err(status) = self.on_request(request, &out).await {
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
            // Bounded: a proxy that reads no responses may have filled the queue with acks.
            let _ = tokio::time::timeout(REFUSAL_WAIT, out.send(Err(status))).await;
        }
        if let Some(node_id) = &self.node_id {
            tracing::debug!(node_id, "report stream closed; forgetting its health view");
            self.health.forget_node(node_id, self.id);
        }
        self.metrics.report_stream_closed();
    }

    async fn on_request(
        &mut self,
        mut request: ReportRequest,
        out: &mpsc::Sender<Result<ReportResponse, Status>>,
    ) -> Result<(), Status> {
        let node_id = self.identify(&request.node_id)?;
        self.instance_id = self.identify_instance(&request.instance_id)?;
        let batches = std::mem::take(&mut request.usage_batches);
        self.on_health(&node_id, request);
        if batches.is_empty() {
            return Ok(());
        }
        let Some(instance_id) = &self.instance_id else {
            return Err(Status::invalid_argument(
                "usage_batches need an instance_id (set on the first message)",
            ));
        };
        self.on_usage(&node_id, instance_id, batches, out).await;
        Ok(())
    }

    fn on_health(&mut self, node_id: &str, request: ReportRequest) {
        self.metrics
            .report_received(request.health.len(), request.health_snapshot);
        let now = SystemTime::now();
        let reports = request.health.into_iter().map(|t| report(t, now));
        // The first message replaces the node's view even when it is not marked as a
        // snapshot: the control plane knows nothing of a node from before its stream.
        let applied = if request.health_snapshot || self.node_id.is_none() {
            self.health.apply_snapshot(node_id, self.id, reports)
        } else {
            self.health.apply_transitions(node_id, self.id, reports)
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
            self.node_id = Some(node_id.to_owned());
        }
    }

    /// Stores the message's usage and acknowledges it once committed; on a failure logs and
    /// answers nothing, so the proxy resends.
    async fn on_usage(
        &self,
        node_id: &str,
        instance_id: &str,
        batches: Vec<proto::UsageBatch>,
        out: &mpsc::Sender<Result<ReportResponse, Status>>,
    ) {
        let batches = batches.into_iter().map(usage_batch).collect();
        let recorded = match self.store.record_usage(node_id, instance_id, batches).await {
            Ok(recorded) => recorded,
            Err(error) => {
                self.metrics.usage_write_failed();
                tracing::warn!(node_id, %error, "usage not stored; the proxy will resend it");
                return;
            }
        };
        self.metrics.usage_recorded(&recorded);
        if let Some(reason) = recorded.first_invalid {
            tracing::warn!(
                node_id,
                invalid = recorded.invalid,
                first = %reason,
                "invalid usage counters skipped"
            );
        }
        if recorded.dropped_requests > 0 {
            tracing::warn!(
                node_id,
                dropped = recorded.dropped_requests,
                "the proxy could not count some requests (its usage buffer was full)"
            );
        }
        let ack = ReportResponse {
            usage_acked: recorded.acked,
            ..Default::default()
        };
        if out.try_send(Ok(ack)).is_err() {
            tracing::debug!(
                node_id,
                "usage acknowledgement dropped: the proxy is not reading"
            );
        }
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

    /// The process this message is from: the first that names one sets it, later ones may
    /// repeat it.
    fn identify_instance(&self, claimed: &str) -> Result<Option<String>, Status> {
        match &self.instance_id {
            _ if claimed.len() > MAX_INSTANCE_ID_BYTES => Err(Status::invalid_argument(format!(
                "instance_id is longer than {MAX_INSTANCE_ID_BYTES} bytes"
            ))),
            None if claimed.is_empty() => Ok(None),
            None => Ok(Some(claimed.to_owned())),
            Some(known) if claimed.is_empty() || claimed == known => Ok(Some(known.clone())),
            Some(known) => Err(Status::invalid_argument(format!(
                "instance_id changed on an open report stream ({known:?} then {claimed:?})"
            ))),
        }
    }
}

fn usage_batch(batch: proto::UsageBatch) -> UsageBatch {
    UsageBatch {
        sequence: batch.sequence,
        dropped_requests: batch.dropped_requests,
        counters: batch
            .counters
            .into_iter()
            .map(|c| UsageCounter {
                route: c.route,
                consumer: c.consumer,
                status_class: c.status_class,
                requests: c.requests,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                latency_sum_us: c.latency_sum_us,
                latency_buckets: c.latency_buckets,
                latency_bounds_us: c.latency_bounds_us,
                minute_unix_s: c.minute_unix_s,
            })
            .collect(),
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
