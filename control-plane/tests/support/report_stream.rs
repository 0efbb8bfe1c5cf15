//! A report stream opened the way a proxy opens one, for the report-service tests.

use std::time::Duration;

use switchyard_proto::v1::report_service_client::ReportServiceClient;
use switchyard_proto::v1::{HealthTransition, ReportRequest, ReportResponse, UsageBatch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// How long a test waits for the server's answer.
pub const WAIT: Duration = Duration::from_secs(5);

/// One open `StreamReports` call: what we send and what the control plane answers.
pub struct ReportStream {
    pub tx: mpsc::Sender<ReportRequest>,
    pub rx: Streaming<ReportResponse>,
}

impl ReportStream {
    /// Opens a stream to the report service at `url`.
    pub async fn open(url: &str) -> ReportStream {
        let mut client = ReportServiceClient::connect(url.to_owned()).await.unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .stream_reports(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        ReportStream { tx, rx }
    }

    /// Opens a stream and sends the first message of proxy process `instance_id` on `node_id`.
    pub async fn open_as(url: &str, node_id: &str, instance_id: &str) -> ReportStream {
        let stream = ReportStream::open(url).await;
        stream
            .send(ReportRequest {
                node_id: node_id.to_owned(),
                instance_id: instance_id.to_owned(),
                health_snapshot: true,
                ..Default::default()
            })
            .await;
        stream
    }

    pub async fn send(&self, request: ReportRequest) {
        self.tx.send(request).await.unwrap();
    }

    /// A health snapshot naming `node_id` (a first message).
    pub async fn snapshot(&self, node_id: &str, health: Vec<HealthTransition>) {
        self.send(ReportRequest {
            node_id: node_id.to_owned(),
            health_snapshot: true,
            health,
            ..Default::default()
        })
        .await;
    }

    /// Health transitions.
    pub async fn transitions(&self, health: Vec<HealthTransition>) {
        self.send(ReportRequest {
            health,
            ..Default::default()
        })
        .await;
    }

    /// Sends usage `batches` and returns the acknowledgement.
    pub async fn report(&mut self, batches: Vec<UsageBatch>) -> u64 {
        self.send(ReportRequest {
            usage_batches: batches,
            ..Default::default()
        })
        .await;
        self.answer().await.usage_acked
    }

    /// The next answer, which must come within [`WAIT`].
    pub async fn answer(&mut self) -> ReportResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("an answer in time")
            .expect("the stream stays open")
            .expect("a response")
    }

    /// The status the server ends the stream with, which must come within [`WAIT`].
    pub async fn refusal(&mut self) -> Status {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("an answer in time")
            .expect_err("the stream is refused")
    }
}
