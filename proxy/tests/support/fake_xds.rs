//! A scripted Delta ADS server: the test reads each request the proxy sends and decides each
//! response, on 127.0.0.1 (port 0, or a given port to simulate a restart). It also accepts the
//! report stream and hands every report to the test ([`FakeXds::next_report`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use switchyard_proto::v1::report_service_server::{ReportService, ReportServiceServer};
use switchyard_proto::{type_url, v1};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type ResponseSender = mpsc::UnboundedSender<Result<DeltaDiscoveryResponse, Status>>;

/// Bound on every wait for the proxy.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct FakeXds {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<DeltaDiscoveryRequest>,
    reports: mpsc::UnboundedReceiver<v1::ReportRequest>,
    streams: Arc<Mutex<Vec<ResponseSender>>>,
    server: JoinHandle<()>,
}

struct Service {
    requests: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    streams: Arc<Mutex<Vec<ResponseSender>>>,
}

struct Reports {
    reports: mpsc::UnboundedSender<v1::ReportRequest>,
}

#[tonic::async_trait]
impl ReportService for Reports {
    type StreamReportsStream =
        Pin<Box<dyn Stream<Item = Result<v1::ReportResponse, Status>> + Send>>;

    async fn stream_reports(
        &self,
        request: Request<Streaming<v1::ReportRequest>>,
    ) -> Result<Response<Self::StreamReportsStream>, Status> {
        let mut inbound = request.into_inner();
        let reports = self.reports.clone();
        let (done, outbound) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(report)) = inbound.message().await {
                let _ = reports.send(report);
            }
            drop(done);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            outbound,
        ))))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream =
        Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("state-of-the-world ADS is not used"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (responses, outbound) = mpsc::unbounded_channel();
        self.streams.lock().unwrap().push(responses);
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                if requests.send(request).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(outbound)))
    }
}

impl FakeXds {
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake xds");
        let addr = listener.local_addr().unwrap();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let service = Service {
            requests: requests_tx,
            streams: Arc::clone(&streams),
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(service))
                .add_service(ReportServiceServer::new(Reports {
                    reports: reports_tx,
                }))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Self {
            addr,
            requests,
            reports,
            streams,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request the proxy sent on any stream.
    pub async fn next_request(&mut self) -> DeltaDiscoveryRequest {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("timed out waiting for a proxy request")
            .expect("fake xds closed")
    }

    /// The next report the proxy sent.
    pub async fn next_report(&mut self) -> v1::ReportRequest {
        tokio::time::timeout(WAIT, self.reports.recv())
            .await
            .expect("timed out waiting for a report")
            .expect("fake xds closed")
    }

    /// Sends `response` on the newest stream.
    pub fn send(&self, response: DeltaDiscoveryResponse) {
        let streams = self.streams.lock().unwrap();
        let stream = streams.last().expect("no stream open");
        stream.send(Ok(response)).expect("stream closed");
    }

    /// Stops listening and ends every open stream, like a crashed control plane.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.streams.lock().unwrap().clear();
    }
}

pub fn response(
    type_url: &str,
    nonce: &str,
    revision: &str,
    resources: Vec<Resource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: revision.into(),
        type_url: type_url.into(),
        resources,
        removed_resources: removed.iter().map(|name| (*name).into()).collect(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

pub fn resource(name: &str, version: &str, type_url: &str, message: &impl Message) -> Resource {
    Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(Any {
            type_url: type_url.into(),
            value: message.encode_to_vec(),
        }),
        ..Default::default()
    }
}

pub fn cluster(name: &str, version: &str, addresses: &[String]) -> Resource {
    let cluster = v1::Cluster {
        name: name.into(),
        endpoints: addresses
            .iter()
            .map(|address| v1::Endpoint {
                address: address.clone(),
                weight: 1,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    resource(name, version, type_url::CLUSTER, &cluster)
}

pub fn route(
    name: &str,
    version: &str,
    path: v1::route_match::Path,
    action: v1::route::Action,
) -> Resource {
    route_with(name, version, path, action, |_| {})
}

pub fn route_with(
    name: &str,
    version: &str,
    path: v1::route_match::Path,
    action: v1::route::Action,
    edit: impl FnOnce(&mut v1::Route),
) -> Resource {
    let mut route = v1::Route {
        name: name.into(),
        r#match: Some(v1::RouteMatch {
            path: Some(path),
            ..Default::default()
        }),
        action: Some(action),
        ..Default::default()
    };
    edit(&mut route);
    resource(name, version, type_url::ROUTE, &route)
}
