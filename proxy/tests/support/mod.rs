//! Shared by the proxy integration tests: the scripted fake xDS server ([`fake_xds`]), fake
//! upstreams and an HTTP client ([`http`], [`upstream`]), and a real proxy on port 0.

#![allow(dead_code)]

pub mod fake_xds;
pub mod http;
pub mod upstream;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use fake_xds::{FakeXds, WAIT, resource, response};
use switchyard_proto::type_url::{self, CLUSTER, CONSUMER, JWT_PROVIDER, QUOTA, ROUTE};
use switchyard_proto::v1;
use switchyard_proxy::{Config, Proxy, StartError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::http::HttpClient;

pub struct Running {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub http: HttpClient,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), StartError>>,
}

/// A proxy (node `test-node`, `zone=z1`) on port 0 against `control_plane`.
pub async fn start_proxy(control_plane: Vec<String>) -> Running {
    let mut config = Config::new(control_plane);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.node_id = "test-node".into();
    config.labels.insert("zone".into(), "z1".into());
    let proxy = Proxy::bind(config).await.expect("bind");
    let (listen, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        listen,
        admin,
        http: HttpClient::new(),
        stop,
        task,
    }
}

/// Polls `check` until it holds, failing after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn assert_ack(request: &DeltaDiscoveryRequest, type_url: &str, nonce: &str) {
    assert_eq!(request.type_url, type_url);
    assert_eq!(request.response_nonce, nonce);
    assert!(
        request.error_detail.is_none(),
        "unexpected NACK: {:?}",
        request.error_detail
    );
}

/// Takes the subscriptions of a (re)connect, one per type of `type_url::ALL` in that order.
pub async fn subscriptions(fake: &mut FakeXds) -> Vec<DeltaDiscoveryRequest> {
    let mut requests = Vec::new();
    for expected in type_url::ALL {
        let request = fake.next_request().await;
        assert_eq!(
            request.type_url, expected,
            "subscriptions in type_url::ALL order"
        );
        requests.push(request);
    }
    requests
}

/// Sends `consumers` (revision `revision`) and checks the ACK.
pub async fn push_consumers(
    fake: &mut FakeXds,
    revision: &str,
    consumers: &[v1::Consumer],
    removed: &[&str],
) {
    let nonce = format!("u{revision}");
    let resources = consumers
        .iter()
        .map(|c| resource(&c.name, revision, CONSUMER, c))
        .collect();
    fake.send(response(CONSUMER, &nonce, revision, resources, removed));
    assert_ack(&fake.next_request().await, CONSUMER, &nonce);
}

/// Answers the JWT-provider and quota subscriptions with nothing (and checks the ACKs).
pub async fn push_no_jwt_providers_or_quotas(fake: &mut FakeXds, revision: &str) {
    for type_url in [JWT_PROVIDER, QUOTA] {
        let nonce = format!("{type_url}-{revision}");
        fake.send(response(type_url, &nonce, revision, vec![], &[]));
        assert_ack(&fake.next_request().await, type_url, &nonce);
    }
}

/// Takes the subscriptions, then serves `clusters` and `routes` (and no consumers, JWT
/// providers or quotas) and checks every ACK.
pub async fn configure(fake: &mut FakeXds, clusters: &[v1::Cluster], routes: &[v1::Route]) {
    configure_with_consumers(fake, clusters, &[], routes).await;
}

/// [`configure`] with consumers.
pub async fn configure_with_consumers(
    fake: &mut FakeXds,
    clusters: &[v1::Cluster],
    consumers: &[v1::Consumer],
    routes: &[v1::Route],
) {
    subscriptions(fake).await;
    push(fake, "1", clusters, &[]).await;
    push_consumers(fake, "1", consumers, &[]).await;
    push_no_jwt_providers_or_quotas(fake, "1").await;
    push(fake, "1", &[], routes).await;
}

/// Sends `clusters` then `routes` (revision `revision`) and checks both ACKs; an empty
/// `clusters` is not sent when there are routes.
pub async fn push(
    fake: &mut FakeXds,
    revision: &str,
    clusters: &[v1::Cluster],
    routes: &[v1::Route],
) {
    if !clusters.is_empty() || routes.is_empty() {
        let nonce = format!("c{revision}");
        let resources = clusters
            .iter()
            .map(|c| resource(&c.name, revision, CLUSTER, c))
            .collect();
        fake.send(response(CLUSTER, &nonce, revision, resources, &[]));
        assert_ack(&fake.next_request().await, CLUSTER, &nonce);
    }
    if routes.is_empty() {
        return;
    }
    let nonce = format!("r{revision}");
    let resources = routes
        .iter()
        .map(|r| resource(&r.name, revision, ROUTE, r))
        .collect();
    fake.send(response(ROUTE, &nonce, revision, resources, &[]));
    assert_ack(&fake.next_request().await, ROUTE, &nonce);
}

/// A cluster of `endpoints` (`(address, priority)`, weight 1).
pub fn cluster(name: &str, endpoints: &[(SocketAddr, u32)], policy: v1::LbPolicy) -> v1::Cluster {
    v1::Cluster {
        name: name.into(),
        endpoints: endpoints
            .iter()
            .map(|(address, priority)| v1::Endpoint {
                address: address.to_string(),
                weight: 1,
                priority: *priority,
                ..Default::default()
            })
            .collect(),
        lb_policy: policy as i32,
        ..Default::default()
    }
}

/// A route sending every path to `cluster`.
pub fn route_to(name: &str, prefix: &str, cluster: &str) -> v1::Route {
    v1::Route {
        name: name.into(),
        r#match: Some(v1::RouteMatch {
            path: Some(v1::route_match::Path::PathPrefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(v1::route::Action::Cluster(cluster.into())),
        ..Default::default()
    }
}
