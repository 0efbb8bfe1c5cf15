//! `ReportService/StreamReports`: one task per stream. The first message names the node (and
//! the proxy process: `instance_id`) and carries a health snapshot (the state of every
//! endpoint the proxy holds), which replaces the node's view; later messages carry
//! transitions. When the stream ends — the proxy closes it, the connection breaks or the
//! control plane shuts down — the node's view is forgotten: proxies that disconnect stop
//! counting.
//!
//! Usage batches (with the quota consumption they carry) are written through the group-commit
//! writer ([`super::ingest`]): the stream waits for its message's transaction (a slow database
//! delays this stream's next messages) and answers `ReportResponse { usage_acked }` once
//! committed. When the write fails nothing is answered: the stream ends, the proxy keeps the
//! batches and resends them, and the store counts each batch once.
//!
//! Quota requests (a proxy's lease running low) are granted in one transaction per message,
//! after its usage, and every one of them is answered in `ReportResponse.grants` (with the
//! usage acknowledgement when the message had both) once committed. When the grant fails
//! nothing is granted or answered: the proxy falls back to the quota's `on_unavailable` after
//! its own timeout. A grant answer is waited for (bounded) rather than dropped like an
//! acknowledgement, since its tokens are already counted as granted.
//!
//! The stream ends with `InvalidArgument` when the first message has no node id, a later one
//! names another node or process, usage comes before any `instance_id`, or a message holds
//! more than [`MAX_REQUESTS`] quota requests.

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
use super::ingest::UsageIngest;
use crate::metrics::Metrics;
use crate::store::quotas::MAX_REQUESTS;
use crate::store::usage::MAX_INSTANCE_ID_BYTES;
use crate::store::{
    InstanceUsage, QuotaConsumption, QuotaGrant, QuotaRequest, Store, UsageBatch, UsageCounter,
};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ReportResponse, Status>> + Send + 'static>>;

/// Responses queued per stream: acknowledgements are cumulative, so when a proxy does not read
/// them, newer ones are dropped rather than waited for.
const RESPONSE_QUEUE: usize = 8;
/// How long a refused stream waits to queue its error before closing without it.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// How long an answer carrying grants waits for room in the response queue before it is
/// dropped (its tokens are then never spent: the budget undershoots, never overshoots).
const GRANT_WAIT: Duration = Duration::from_secs(2);

/// The report service, shared by every stream.
#[derive(Clone, Debug)]
pub struct ReportServer {
    store: Store,
    usage: UsageIngest,
    health: Arc<HealthView>,
    metrics: Arc<Metrics>,
    /// Turns `true` at shutdown: every stream then ends, so the server can drain.
    shutdown: watch::Receiver<bool>,
    next_stream: Arc<AtomicU64>,
}

impl ReportServer {
    /// A service writing health into `health` and usage into `store` (through a writer task
    /// it starts on the current runtime); its streams end when `shutdown` turns `true`.
    pub fn new(
        store: Store,
        health: Arc<HealthView>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> ReportServer {
        ReportServer {
            usage: UsageIngest::spawn(store.clone(), metrics.clone()),
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
            usage: self.usage.clone(),
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
    usage: UsageIngest,
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
        if request.quota_requests.len() > MAX_REQUESTS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_REQUESTS} quota_requests per message"
            )));
        }
        let batches = std::mem::take(&mut request.usage_batches);
        let quota_requests = std::mem::take(&mut request.quota_requests);
        self.on_health(&node_id, request);
        let mut acked = None;
        if !batches.is_empty() {
            let Some(instance_id) = &self.instance_id else {
                return Err(Status::invalid_argument(
                    "usage_batches need an instance_id (set on the first message)",
                ));
            };
            acked = Some(self.on_usage(&node_id, instance_id, batches).await?);
        }
        let grants = if quota_requests.is_empty() {
            Vec::new()
        } else {
            self.on_quota_requests(&node_id, quota_requests).await
        };
        if acked.is_none() && grants.is_empty() {
            return Ok(());
        }
        // `usage_acked` 0 acknowledges nothing (proxies number batches from 1).
        let answer = ReportResponse {
            usage_acked: acked.unwrap_or(0),
            grants,
        };
        self.send(&node_id, answer, out).await;
        Ok(())
    }

    /// Queues `answer`: an acknowledgement only if there is room (they are cumulative: one
    /// dropped is made up by the next), grants waiting for room (bounded).
    async fn send(
        &self,
        node_id: &str,
        answer: ReportResponse,
        out: &mpsc::Sender<Result<ReportResponse, Status>>,
    ) {
        if answer.grants.is_empty() {
            if out.try_send(Ok(answer)).is_err() {
                tracing::debug!(
                    node_id,
                    "usage acknowledgement dropped: the proxy is not reading"
                );
            }
            return;
        }
        let sent = tokio::time::timeout(GRANT_WAIT, out.send(Ok(answer))).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.metrics.quota_grants_dropped();
            tracing::warn!(
                node_id,
                "quota grants not delivered: the proxy is not reading or has gone"
            );
        }
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

    /// Stores the message's usage; the acknowledgement once committed. A failure ends the
    /// stream (`Unavailable`): acknowledgements are cumulative, so storing a later batch on
    /// this stream would acknowledge the one that failed. The proxy reconnects and resends
    /// every batch not acknowledged, in order.
    async fn on_usage(
        &self,
        node_id: &str,
        instance_id: &str,
        batches: Vec<proto::UsageBatch>,
    ) -> Result<u64, Status> {
        let report = InstanceUsage {
            node_id: node_id.to_owned(),
            instance_id: instance_id.to_owned(),
            batches: batches.into_iter().map(usage_batch).collect(),
        };
        let recorded = match self.usage.record(report).await {
            Ok(recorded) => recorded,
            Err(error) => {
                self.metrics.usage_write_failed();
                tracing::warn!(node_id, %error, "usage not stored; ending the stream so the proxy resends it");
                return Err(Status::unavailable(
                    "usage could not be stored; reconnect and send it again",
                ));
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
        Ok(recorded.acked)
    }

    /// Grants the message's quota requests; empty (nothing granted) when the store fails.
    async fn on_quota_requests(
        &self,
        node_id: &str,
        requests: Vec<proto::QuotaRequest>,
    ) -> Vec<proto::QuotaGrant> {
        let requests: Vec<QuotaRequest> = requests
            .into_iter()
            .map(|r| QuotaRequest {
                quota: r.quota,
                consumer: r.consumer,
                want: r.want,
            })
            .collect();
        match self.store.grant_quota(&requests, SystemTime::now()).await {
            Ok(grants) => {
                self.metrics.quota_granted(&grants);
                grants.into_iter().map(quota_grant).collect()
            }
            Err(error) => {
                self.metrics.quota_grant_failed();
                tracing::warn!(
                    node_id,
                    %error,
                    requests = requests.len(),
                    "quota requests not granted; the proxy falls back to on_unavailable"
                );
                Vec::new()
            }
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
        quota_used: batch
            .quota_used
            .into_iter()
            .map(|q| QuotaConsumption {
                quota: q.quota,
                consumer: q.consumer,
                used: q.used,
                window_start_unix_s: q.window_start_unix_s,
                unleased: q.unleased,
            })
            .collect(),
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

fn quota_grant(grant: QuotaGrant) -> proto::QuotaGrant {
    proto::QuotaGrant {
        quota: grant.quota,
        consumer: grant.consumer,
        granted: grant.granted,
        window_start_unix_s: grant.window_start_unix_s,
        window_end_unix_ms: grant.window_end_unix_ms,
        exhausted: grant.exhausted,
        limit: grant.limit,
        window_granted: grant.window_granted,
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
