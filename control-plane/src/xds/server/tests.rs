//! The ADS service on a real tonic server on 127.0.0.1, driven by tonic's generated client:
//! the first-sync limit, and what the hand-written service answers.

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryRequest};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use super::*;
use crate::model::Kind;
use crate::snapshot::XdsResource;

/// Long enough for a response that is not held back to arrive.
const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(5);
const NO_TIMEOUT: Duration = Duration::from_secs(60);

fn cluster(name: &str, version: i64) -> (Kind, XdsResource) {
    let any = Any {
        type_url: Kind::Cluster.type_url().to_owned(),
        value: Vec::new(),
    };
    let resource = XdsResource::new(name.to_owned(), version.to_string(), any);
    (Kind::Cluster, resource)
}

struct Server {
    url: String,
    snapshots: watch::Sender<Arc<Snapshot>>,
}

async fn serve(limit: usize, hold: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let first = Snapshot::of(1, 1, None, vec![cluster("a", 1)]);
    let (snapshots, published) = watch::channel(Arc::new(first));
    // 1 KiB per config in flight: these configs are smaller, so `limit` configs at once.
    let limit = FirstSyncLimit::new(limit * 1024, hold);
    let ads = AdsServer::new(published, Arc::default(), Arc::default(), limit);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ads)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Server { url, snapshots }
}

/// A proxy's end of one stream.
struct Proxy {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
}

impl Proxy {
    /// Opens a stream as `node` and subscribes to clusters.
    async fn subscribe(server: &Server, node: &str) -> Proxy {
        let mut client = AggregatedDiscoveryServiceClient::connect(server.url.clone())
            .await
            .unwrap();
        let (requests, outbound) = mpsc::channel(8);
        requests
            .send(DeltaDiscoveryRequest {
                node: Some(Node {
                    id: node.to_owned(),
                    ..Default::default()
                }),
                type_url: Kind::Cluster.type_url().to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        let responses = client
            .delta_aggregated_resources(ReceiverStream::new(outbound))
            .await
            .unwrap()
            .into_inner();
        Proxy {
            requests,
            responses,
        }
    }

    /// The next response, unless none arrives `within`.
    async fn next(&mut self, within: Duration) -> Option<DeltaDiscoveryResponse> {
        let next = tokio::time::timeout(within, self.responses.message()).await;
        next.ok()
            .map(|message| message.unwrap().expect("stream open"))
    }

    async fn answer(&self, response: &DeltaDiscoveryResponse, error: Option<&str>) {
        let error_detail = error.map(|message| RpcStatus {
            code: 3,
            message: message.to_owned(),
            details: Vec::new(),
        });
        let answer = DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail,
            ..Default::default()
        };
        self.requests.send(answer).await.unwrap();
    }
}

#[tokio::test]
async fn a_second_first_sync_waits_until_the_first_is_acked() {
    let server = serve(1, NO_TIMEOUT).await;
    let mut first = Proxy::subscribe(&server, "first").await;
    let sync = first.next(WAIT).await.expect("first sync");
    assert_eq!(sync.resources[0].name, "a");

    let mut second = Proxy::subscribe(&server, "second").await;
    assert!(second.next(QUIET).await.is_none(), "held back by the limit");
    first.answer(&sync, None).await;
    let sync = second.next(WAIT).await.expect("sent once the first ACKed");
    assert_eq!(sync.resources[0].name, "a");
}

#[tokio::test]
async fn a_nack_also_releases_the_permit() {
    let server = serve(1, NO_TIMEOUT).await;
    let mut first = Proxy::subscribe(&server, "first").await;
    let sync = first.next(WAIT).await.expect("first sync");
    let mut second = Proxy::subscribe(&server, "second").await;
    assert!(second.next(QUIET).await.is_none());
    first.answer(&sync, Some("refused")).await;
    assert!(second.next(WAIT).await.is_some());
}

#[tokio::test]
async fn a_proxy_that_never_answers_holds_others_back_only_for_the_hold_time() {
    let hold = Duration::from_millis(600);
    let server = serve(1, hold).await;
    let mut silent = Proxy::subscribe(&server, "silent").await;
    assert!(silent.next(WAIT).await.is_some());
    let started = Instant::now();
    let mut next = Proxy::subscribe(&server, "next").await;
    assert!(next.next(WAIT).await.is_some(), "sent after the hold time");
    assert!(started.elapsed() >= hold - Duration::from_millis(200));
}

#[tokio::test]
async fn updates_never_wait_for_a_permit() {
    let server = serve(1, NO_TIMEOUT).await;
    let mut synced = Proxy::subscribe(&server, "synced").await;
    let sync = synced.next(WAIT).await.unwrap();
    synced.answer(&sync, None).await;
    let mut holder = Proxy::subscribe(&server, "holder").await;
    assert!(
        holder.next(WAIT).await.is_some(),
        "now holds the only permit"
    );
    let mut waiting = Proxy::subscribe(&server, "waiting").await;

    let update = Snapshot::of(
        2,
        1,
        Some(vec![(Kind::Cluster, "a".into())]),
        vec![cluster("a", 2)],
    );
    server.snapshots.send_replace(Arc::new(update));
    let update = synced.next(WAIT).await.expect("update sent at once");
    assert_eq!(update.resources[0].version, "2");
    assert!(holder.next(WAIT).await.is_some());
    assert!(
        waiting.next(QUIET).await.is_none(),
        "a first sync still waits"
    );
}

#[tokio::test]
async fn state_of_the_world_is_unimplemented() {
    let server = serve(1, NO_TIMEOUT).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    let requests = tokio_stream::iter([DiscoveryRequest::default()]);
    let status = client
        .stream_aggregated_resources(requests)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn a_stream_without_node_id_ends_with_invalid_argument() {
    let server = serve(1, NO_TIMEOUT).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    let request = DeltaDiscoveryRequest {
        type_url: Kind::Cluster.type_url().to_owned(),
        ..Default::default()
    };
    let (requests, outbound) = mpsc::channel(1);
    requests.send(request).await.unwrap();
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
