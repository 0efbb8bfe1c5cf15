//! Delta ADS protocol tests: a real control plane on 127.0.0.1 and tonic's generated client,
//! asserting on the messages exchanged.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use serde_json::{Value, json};
use switchyard_control_plane::config::Config;
use switchyard_control_plane::model::{self, Kind};
use switchyard_control_plane::server::ControlPlane;
use switchyard_control_plane::store::{Expect, Store};
use switchyard_proto::type_url;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    store: Store,
    snapshots:
        tokio::sync::watch::Receiver<std::sync::Arc<switchyard_control_plane::snapshot::Snapshot>>,
    fleet: std::sync::Arc<switchyard_control_plane::fleet::Fleet>,
    xds_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(store_url: String) -> Harness {
    start_with_proxy_token(store_url, None).await
}

async fn start_with_proxy_token(store_url: String, proxy_token: Option<&str>) -> Harness {
    let config = Config {
        database_url: store_url,
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: None,
        proxy_token: proxy_token.map(str::to_owned),
        first_sync_budget_mib: None,
        proxy_ttl: switchyard_control_plane::config::DEFAULT_PROXY_TTL,
        usage_retention: switchyard_control_plane::config::DEFAULT_USAGE_RETENTION,
    };
    let cp = ControlPlane::bind(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let harness = Harness {
        store: cp.store().clone(),
        snapshots: cp.snapshots(),
        fleet: cp.fleet().clone(),
        xds_url: format!("http://{}", cp.xds_addr()),
        _stop: stop,
    };
    tokio::spawn(cp.serve(async {
        let _ = stopped.await;
    }));
    harness
}

impl Harness {
    /// Waits until the published snapshot includes every committed write.
    async fn settled(&mut self) {
        let head = self.store.head().await.unwrap();
        tokio::time::timeout(WAIT, self.snapshots.wait_for(|s| s.revision >= head))
            .await
            .expect("snapshot caught up in time")
            .unwrap();
    }
}

async fn sqlite() -> Harness {
    let path = std::env::temp_dir().join(format!(
        "switchyard_xds_{}_{}.db",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    start(format!("sqlite://{}", path.display())).await
}

async fn postgres() -> Harness {
    start(support::postgres_database_url().await).await
}

/// Validates `body` as the REST API would and stores it; returns the new version.
async fn put(store: &Store, kind: Kind, name: &str, body: Value) -> String {
    let validated = model::validate(kind, Some(name), &body).expect("valid spec");
    store
        .put(
            kind,
            name,
            validated.spec,
            validated.refs,
            Expect::Any,
            "test",
        )
        .await
        .unwrap()
        .resource
        .version
        .to_string()
}

fn cluster(port: u16) -> Value {
    json!({"lb_policy": "round_robin", "endpoints": [{"address": format!("127.0.0.1:{port}"), "weight": 1}]})
}

fn route(prefix: &str, cluster: &str) -> Value {
    json!({"match": {"path_prefix": prefix}, "cluster": cluster})
}

/// A fake proxy's end of one ADS stream.
struct Stream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Stream {
    async fn open(url: &str) -> Stream {
        Stream::open_with_token(url, None).await.unwrap()
    }

    async fn open_with_token(url: &str, token: Option<&str>) -> Result<Stream, tonic::Status> {
        let mut client = AggregatedDiscoveryServiceClient::connect(url.to_owned())
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(requests));
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        let rx = client
            .delta_aggregated_resources(request)
            .await?
            .into_inner();
        Ok(Stream { tx, rx })
    }

    async fn subscribe(&self, node: &str, url: &str, initial: &[(&str, &str)]) {
        self.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: node.to_owned(),
                ..Default::default()
            }),
            type_url: url.to_owned(),
            initial_resource_versions: initial
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .await;
    }

    async fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx.send(request).await.unwrap();
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("stream open")
    }

    async fn assert_silent(&mut self, for_: Duration) {
        if let Ok(message) = tokio::time::timeout(for_, self.rx.message()).await {
            panic!("unexpected message: {message:?}");
        }
    }

    async fn ack(&self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    async fn nack(&self, response: &DeltaDiscoveryResponse, error: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(Status {
                code: 3,
                message: error.to_owned(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }

    /// Subscribes to clusters and routes, ACKs both first responses, returns them.
    async fn sync(&mut self, node: &str) -> (DeltaDiscoveryResponse, DeltaDiscoveryResponse) {
        self.subscribe(node, type_url::CLUSTER, &[]).await;
        let clusters = self.recv().await;
        self.ack(&clusters).await;
        self.subscribe(node, type_url::ROUTE, &[]).await;
        let routes = self.recv().await;
        self.ack(&routes).await;
        (clusters, routes)
    }
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn versions(response: &DeltaDiscoveryResponse) -> HashMap<&str, &str> {
    response
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.version.as_str()))
        .collect()
}

async fn wait_for(mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

macro_rules! on_both_databases {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite { $( #[tokio::test] async fn $case() { super::$case(super::sqlite().await).await } )* }
        mod on_postgres { $( #[tokio::test] async fn $case() { super::$case(super::postgres().await).await } )* }
    };
}

on_both_databases!(
    initial_sync_then_one_change_sends_one_resource,
    delete_is_sent_as_a_removal,
    nack_is_recorded_and_ack_clears_it,
    reconnect_sends_only_the_difference,
    a_burst_of_writes_is_coalesced,
    first_request_without_node_is_refused,
    key_changes_stream_the_consumer_with_hashes_only,
);

async fn initial_sync_then_one_change_sends_one_resource(mut h: Harness) {
    put(&h.store, Kind::Cluster, "a", cluster(1)).await;
    put(&h.store, Kind::Cluster, "b", cluster(2)).await;
    put(&h.store, Kind::Route, "r", route("/", "a")).await;
    h.settled().await;
    let mut stream = Stream::open(&h.xds_url).await;
    let (clusters, routes) = stream.sync("node-1").await;
    assert_eq!(clusters.type_url, type_url::CLUSTER);
    assert_eq!(names(&clusters), ["a", "b"]);
    assert_eq!(names(&routes), ["r"]);
    assert!(!clusters.nonce.is_empty() && clusters.nonce != routes.nonce);
    assert_eq!(routes.system_version_info, "3");
    let any = clusters.resources[0].resource.as_ref().unwrap();
    assert_eq!(any.type_url, type_url::CLUSTER);
    let decoded: switchyard_proto::v1::Cluster =
        prost::Message::decode(any.value.as_slice()).unwrap();
    assert_eq!(decoded.endpoints[0].address, "127.0.0.1:1");

    wait_for(|| {
        h.fleet
            .list()
            .first()
            .is_some_and(|p| p.config_revision == Some(3))
    })
    .await;

    let v = put(&h.store, Kind::Cluster, "b", cluster(3)).await;
    let update = stream.recv().await;
    assert_eq!(update.type_url, type_url::CLUSTER);
    assert_eq!(names(&update), ["b"], "only the changed resource");
    assert_eq!(versions(&update)["b"], v);
    assert!(update.removed_resources.is_empty());
    stream.ack(&update).await;
    wait_for(|| h.fleet.list()[0].config_revision == Some(4)).await;
    stream.assert_silent(Duration::from_millis(200)).await;
}

async fn delete_is_sent_as_a_removal(mut h: Harness) {
    put(&h.store, Kind::Cluster, "a", cluster(1)).await;
    put(&h.store, Kind::Route, "r1", route("/one", "a")).await;
    put(&h.store, Kind::Route, "r2", route("/two", "a")).await;
    h.settled().await;
    let mut stream = Stream::open(&h.xds_url).await;
    stream.sync("node-1").await;
    h.store
        .delete(Kind::Route, "r1", Expect::Any, "test")
        .await
        .unwrap();
    let update = stream.recv().await;
    assert_eq!(update.type_url, type_url::ROUTE);
    assert!(update.resources.is_empty());
    assert_eq!(update.removed_resources, ["r1"]);
}

async fn nack_is_recorded_and_ack_clears_it(mut h: Harness) {
    put(&h.store, Kind::Cluster, "a", cluster(1)).await;
    h.settled().await;
    let mut stream = Stream::open(&h.xds_url).await;
    stream.sync("node-1").await;
    wait_for(|| h.fleet.list()[0].config_revision == Some(1)).await;

    put(&h.store, Kind::Route, "bad", route("/x", "a")).await;
    let update = stream.recv().await;
    stream.nack(&update, "route bad: cannot use it").await;
    wait_for(|| !h.fleet.list()[0].nacked.is_empty()).await;
    let proxy = &h.fleet.list()[0];
    assert_eq!(proxy.nacked[0].error, "route bad: cannot use it");
    assert_eq!(proxy.nacked[0].resources[0].name, "bad");
    assert_eq!(
        proxy.config_revision,
        Some(1),
        "a NACK does not advance the revision"
    );
    assert!(proxy.connected);

    // A NACKed version is not resent until it changes.
    stream.assert_silent(Duration::from_millis(200)).await;
    put(&h.store, Kind::Route, "bad", route("/y", "a")).await;
    let fixed = stream.recv().await;
    assert_eq!(names(&fixed), ["bad"]);
    stream.ack(&fixed).await;
    wait_for(|| h.fleet.list()[0].nacked.is_empty()).await;
    wait_for(|| h.fleet.list()[0].config_revision == Some(3)).await;
}

async fn reconnect_sends_only_the_difference(mut h: Harness) {
    let va = put(&h.store, Kind::Cluster, "a", cluster(1)).await;
    let vb = put(&h.store, Kind::Cluster, "b", cluster(2)).await;
    put(&h.store, Kind::Cluster, "gone", cluster(3)).await;
    h.settled().await;
    {
        let mut stream = Stream::open(&h.xds_url).await;
        stream.sync("node-1").await;
    }
    wait_for(|| !h.fleet.list()[0].connected).await;
    // While disconnected: b changes, "gone" is deleted, c is added.
    let vb2 = put(&h.store, Kind::Cluster, "b", cluster(4)).await;
    h.store
        .delete(Kind::Cluster, "gone", Expect::Any, "test")
        .await
        .unwrap();
    put(&h.store, Kind::Cluster, "c", cluster(5)).await;
    assert_ne!(vb, vb2);
    h.settled().await;

    let mut stream = Stream::open(&h.xds_url).await;
    stream
        .subscribe(
            "node-1",
            type_url::CLUSTER,
            &[("a", &va), ("b", &vb), ("gone", "3")],
        )
        .await;
    let diff = stream.recv().await;
    assert_eq!(names(&diff), ["b", "c"], "a is current and not resent");
    assert_eq!(diff.removed_resources, ["gone"]);
    wait_for(|| h.fleet.list()[0].connected).await;
}

async fn a_burst_of_writes_is_coalesced(h: Harness) {
    let mut stream = Stream::open(&h.xds_url).await;
    stream.sync("node-1").await;
    for i in 0..10 {
        put(&h.store, Kind::Cluster, &format!("c{i}"), cluster(1000 + i)).await;
    }
    let mut seen = 0;
    let mut responses = 0;
    while seen < 10 {
        let update = stream.recv().await;
        seen += update.resources.len();
        responses += 1;
        stream.ack(&update).await;
    }
    assert_eq!(seen, 10);
    assert!(responses < 10, "10 quick writes took {responses} pushes");
}

async fn first_request_without_node_is_refused(h: Harness) {
    let mut stream = Stream::open(&h.xds_url).await;
    stream
        .send(DeltaDiscoveryRequest {
            type_url: type_url::CLUSTER.to_owned(),
            ..Default::default()
        })
        .await;
    let status = tokio::time::timeout(WAIT, stream.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

async fn key_changes_stream_the_consumer_with_hashes_only(mut h: Harness) {
    use switchyard_control_plane::store::Change;
    put(
        &h.store,
        Kind::Consumer,
        "alice",
        json!({"scopes": ["read"]}),
    )
    .await;
    h.settled().await;
    let mut stream = Stream::open(&h.xds_url).await;
    stream.subscribe("node-1", type_url::CONSUMER, &[]).await;
    let first = stream.recv().await;
    let decode = |r: &DeltaDiscoveryResponse| -> switchyard_proto::v1::Consumer {
        prost::Message::decode(r.resources[0].resource.as_ref().unwrap().value.as_slice()).unwrap()
    };
    assert!(decode(&first).keys.is_empty());
    stream.ack(&first).await;

    let hash = "0f".repeat(32);
    h.store
        .apply(
            vec![Change::CreateKey {
                consumer: "alice".into(),
                id: "k1".into(),
                sha256: hash,
            }],
            "test",
        )
        .await
        .unwrap();
    let update = stream.recv().await;
    let alice = decode(&update);
    assert_eq!(alice.scopes, ["read"]);
    assert_eq!(alice.keys.len(), 1);
    assert_eq!(alice.keys[0].id, "k1");
    assert_eq!(alice.keys[0].sha256, vec![0x0f; 32]);
    stream.ack(&update).await;

    h.store
        .apply(
            vec![Change::RevokeKey {
                consumer: "alice".into(),
                id: "k1".into(),
            }],
            "test",
        )
        .await
        .unwrap();
    let revoked = stream.recv().await;
    assert!(
        decode(&revoked).keys.is_empty(),
        "a revoked key is no longer streamed"
    );
}

/// Two replicas on one PostgreSQL database: a write through one reaches the proxies of the
/// other by LISTEN / NOTIFY, well before the periodic head check would notice it.
#[tokio::test]
async fn a_write_through_one_replica_reaches_proxies_of_another() {
    let url = support::postgres_database_url().await;
    let writer = start(url.clone()).await;
    let mut reader = start(url).await;
    let mut stream = Stream::open(&reader.xds_url).await;
    stream.sync("node-1").await;
    // A first write arrives one way or the other, by which time the reader's listener (set up
    // as it starts) is certainly in place.
    put(&writer.store, Kind::Cluster, "warm-up", cluster(9)).await;
    let warm_up = stream.recv().await;
    stream.ack(&warm_up).await;
    // Three writes in a row each arrive within a second: the 2 s head check could explain at
    // most one of them (each write waits for the previous one to arrive), not all three.
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let started = std::time::Instant::now();
        put(&writer.store, Kind::Cluster, name, cluster(i as u16 + 1)).await;
        let update = stream.recv().await;
        let elapsed = started.elapsed();
        assert_eq!(names(&update), [name]);
        stream.ack(&update).await;
        assert!(
            elapsed < Duration::from_millis(1000),
            "took {elapsed:?}; the head check alone runs every {:?}",
            switchyard_control_plane::snapshot::REPLICA_POLL_INTERVAL
        );
    }
    reader.settled().await;
}

/// With `--proxy-token`, only streams presenting it are served.
#[tokio::test]
async fn streams_without_the_proxy_token_are_refused() {
    let path = std::env::temp_dir().join(format!("switchyard_xds_token_{}.db", std::process::id()));
    let h = start_with_proxy_token(format!("sqlite://{}", path.display()), Some("b00t")).await;
    for token in [None, Some("wrong")] {
        let refused = match Stream::open_with_token(&h.xds_url, token).await {
            Err(status) => status,
            Ok(mut stream) => stream.rx.message().await.unwrap_err(),
        };
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    let mut stream = Stream::open_with_token(&h.xds_url, Some("b00t"))
        .await
        .unwrap();
    let (clusters, _) = stream.sync("node-1").await;
    assert_eq!(clusters.type_url, type_url::CLUSTER);
}
