//! The real proxy (library `Proxy::bind` + `serve` on port 0) against a scripted fake xDS server
//! and fake upstreams: subscription, readiness, routing and round robin, ACK/NACK, removals,
//! and resynchronisation after the control plane goes away.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::google::protobuf::value::Kind;
use http::StatusCode;
use support::fake_xds::{FakeXds, WAIT, cluster, response, route, route_with};
use support::http::{HttpClient, upstream};
use support::{
    assert_ack, eventually, push_consumers, push_no_jwt_providers_or_quotas, start_proxy,
    subscriptions,
};
use switchyard_proto::type_url::{self, CLUSTER, ROUTE};
use switchyard_proto::v1::route::Action;
use switchyard_proto::v1::route_match::Path;
use switchyard_proxy::Config;
use tokio::sync::oneshot;

/// Opens the stream, checks both subscriptions, and serves `web` (a, b) + route `api` on `/`.
async fn handshake(fake: &mut FakeXds, a: SocketAddr, b: SocketAddr) {
    let clusters = fake.next_request().await;
    assert_eq!(clusters.type_url, CLUSTER, "clusters first");
    let node = clusters.node.as_ref().expect("node on the first request");
    assert_eq!(node.id, "test-node");
    let zone = node.metadata.as_ref().unwrap().fields.get("zone").unwrap();
    assert_eq!(zone.kind, Some(Kind::StringValue("z1".into())));
    assert!(clusters.resource_names_subscribe.is_empty(), "wildcard");
    assert!(clusters.initial_resource_versions.is_empty());
    for expected in &type_url::ALL[1..] {
        let request = fake.next_request().await;
        assert_eq!(request.type_url, *expected);
        assert!(request.initial_resource_versions.is_empty());
    }

    fake.send(response(
        CLUSTER,
        "c1",
        "1",
        vec![cluster("web", "1", &[a.to_string(), b.to_string()])],
        &[],
    ));
    assert_ack(&fake.next_request().await, CLUSTER, "c1");
    push_consumers(fake, "1", &[], &[]).await;
    push_no_jwt_providers_or_quotas(fake, "1").await;
    fake.send(response(
        ROUTE,
        "r1",
        "1",
        vec![route(
            "api",
            "1",
            Path::PathPrefix("/".into()),
            Action::Cluster("web".into()),
        )],
        &[],
    ));
    assert_ack(&fake.next_request().await, ROUTE, "r1");
}

#[tokio::test]
async fn routes_balances_acks_and_nacks() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;

    subscriptions(&mut fake).await;
    assert_eq!(
        proxy.http.get(proxy.admin, "/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    fake.send(response(
        CLUSTER,
        "c1",
        "1",
        vec![cluster("web", "1", &[a.to_string(), b.to_string()])],
        &[],
    ));
    assert_ack(&fake.next_request().await, CLUSTER, "c1");
    push_consumers(&mut fake, "1", &[], &[]).await;
    push_no_jwt_providers_or_quotas(&mut fake, "1").await;
    assert_eq!(
        proxy.http.get(proxy.admin, "/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "routes not received yet"
    );
    fake.send(response(
        ROUTE,
        "r1",
        "1",
        vec![route(
            "api",
            "1",
            Path::PathPrefix("/".into()),
            Action::Cluster("web".into()),
        )],
        &[],
    ));
    assert_ack(&fake.next_request().await, ROUTE, "r1");
    assert_eq!(
        proxy.http.get(proxy.admin, "/ready").await.status,
        StatusCode::OK
    );

    // Round robin alternates between the two upstreams; forwarding headers are added.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let got = proxy
            .http
            .get_with(proxy.listen, "/x?q=1", &[("x-request-id", "req-42")])
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.headers["x-request-id"], "req-42");
        let json = got.json();
        assert_eq!(json["path"], "/x?q=1");
        assert_eq!(json["headers"]["x-request-id"], "req-42");
        assert_eq!(json["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(json["headers"]["x-forwarded-proto"], "http");
        assert_eq!(json["headers"]["forwarded"], "for=127.0.0.1;proto=http");
        assert!(
            got.headers.get("keep-alive").is_none(),
            "hop-by-hop stripped"
        );
        seen.push(json["upstream"].as_str().unwrap().to_owned());
    }
    assert_ne!(seen[0], seen[1], "alternates: {seen:?}");
    assert_eq!(seen[0], seen[2], "alternates: {seen:?}");
    assert_ne!(seen[2], seen[3], "alternates: {seen:?}");

    // A route to a cluster the proxy does not hold is accepted, and answers 503.
    fake.send(response(
        ROUTE,
        "r2",
        "2",
        vec![route(
            "ghost",
            "1",
            Path::PathExact("/ghost".into()),
            Action::Cluster("nope".into()),
        )],
        &[],
    ));
    assert_ack(&fake.next_request().await, ROUTE, "r2");
    let got = proxy.http.get(proxy.listen, "/ghost").await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.json()["error"], "cluster not found");
    assert_eq!(got.headers["content-type"], "application/json");
    let request_id = got.json()["request_id"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32, "generated id");
    assert_eq!(got.headers["x-request-id"], request_id.as_str());

    // A bad route is NACKed by name; its previous value keeps serving; the rest applies.
    fake.send(response(
        ROUTE,
        "r3",
        "3",
        vec![
            route(
                "api",
                "2",
                Path::PathRegex("/x/(".into()),
                Action::Cluster("web".into()),
            ),
            route(
                "hello",
                "1",
                Path::PathExact("/hello".into()),
                Action::DirectResponse(switchyard_proto::v1::DirectResponse {
                    status: 201,
                    body: "hi".into(),
                }),
            ),
        ],
        &[],
    ));
    let nack = fake.next_request().await;
    assert_eq!(nack.type_url, ROUTE);
    assert_eq!(nack.response_nonce, "r3");
    let detail = nack.error_detail.expect("NACK");
    assert_eq!(detail.code, 3);
    assert!(detail.message.contains("\"api\""), "{}", detail.message);
    assert!(detail.message.contains("path_regex"), "{}", detail.message);
    assert_eq!(
        proxy.http.get(proxy.listen, "/x").await.status,
        StatusCode::OK
    );
    let hello = proxy.http.get(proxy.listen, "/hello").await;
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (StatusCode::CREATED, "hi")
    );

    // A bad endpoint address is NACKed too; the cluster keeps its endpoints.
    fake.send(response(
        CLUSTER,
        "c2",
        "4",
        vec![cluster("web", "2", &["not-an-address".into()])],
        &[],
    ));
    let nack = fake.next_request().await;
    let detail = nack.error_detail.expect("NACK");
    assert!(
        detail.message.contains("cluster \"web\""),
        "{}",
        detail.message
    );
    assert!(
        detail.message.contains("not-an-address"),
        "{}",
        detail.message
    );
    assert_eq!(
        proxy.http.get(proxy.listen, "/x").await.status,
        StatusCode::OK
    );

    let dump = proxy.http.get(proxy.admin, "/config_dump").await.json();
    assert_eq!(dump["node"]["id"], "test-node");
    assert_eq!(dump["node"]["labels"]["zone"], "z1");
    assert_eq!(dump["control_plane"]["connected"], true);
    assert_eq!(dump["control_plane"]["address"], fake.url());
    assert_eq!(
        dump["revision"], "2",
        "the last revision applied whole (3 and 4 were NACKed)"
    );
    let routes = dump["resources"]["routes"]["items"].as_array().unwrap();
    let api = routes.iter().find(|r| r["name"] == "api").unwrap();
    assert_eq!(api["version"], "1");
    assert_eq!(api["resource"]["match"]["path_prefix"], "/");
    assert_eq!(api["resource"]["cluster"], "web");
    let clusters = dump["resources"]["clusters"]["items"].as_array().unwrap();
    assert_eq!(clusters[0]["version"], "1");
    assert!(
        dump["last_nack"]["message"]
            .as_str()
            .unwrap()
            .contains("web")
    );

    // Timeouts and upstream failures.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fake.send(response(
        CLUSTER,
        "c3",
        "5",
        vec![cluster("dead", "1", &[dead.to_string()])],
        &[],
    ));
    assert_ack(&fake.next_request().await, CLUSTER, "c3");
    fake.send(response(
        ROUTE,
        "r4",
        "5",
        vec![
            route_with(
                "slow",
                "1",
                Path::PathPrefix("/slow".into()),
                Action::Cluster("web".into()),
                |r| r.timeout_ms = 200,
            ),
            route(
                "dead",
                "1",
                Path::PathPrefix("/dead".into()),
                Action::Cluster("dead".into()),
            ),
        ],
        &[],
    ));
    assert_ack(&fake.next_request().await, ROUTE, "r4");
    let slow = proxy.http.get(proxy.listen, "/slow").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.json()["error"], "upstream timed out");
    let dead = proxy.http.get(proxy.listen, "/dead").await;
    assert_eq!(dead.status, StatusCode::BAD_GATEWAY);

    // weighted_clusters splits by exact shares per cycle (3:1 over any 4 consecutive picks).
    fake.send(response(
        CLUSTER,
        "c4",
        "6",
        vec![
            cluster("b-only", "1", &[b.to_string()]),
            cluster("a-only", "1", &[a.to_string()]),
        ],
        &[],
    ));
    assert_ack(&fake.next_request().await, CLUSTER, "c4");
    let split = switchyard_proto::v1::WeightedClusters {
        clusters: vec![
            switchyard_proto::v1::WeightedCluster {
                cluster: "a-only".into(),
                weight: 3,
            },
            switchyard_proto::v1::WeightedCluster {
                cluster: "b-only".into(),
                weight: 1,
            },
        ],
    };
    fake.send(response(
        ROUTE,
        "r5",
        "6",
        vec![route(
            "split",
            "1",
            Path::PathPrefix("/split".into()),
            Action::WeightedClusters(split),
        )],
        &[],
    ));
    assert_ack(&fake.next_request().await, ROUTE, "r5");
    let mut to_a = 0;
    for _ in 0..8 {
        let got = proxy.http.get(proxy.listen, "/split").await;
        if got.json()["upstream"] == "a" {
            to_a += 1;
        }
    }
    assert_eq!(to_a, 6, "3:1 split");

    // removed_resources removes: no route matches any more.
    fake.send(response(ROUTE, "r6", "7", vec![], &["api"]));
    assert_ack(&fake.next_request().await, ROUTE, "r6");
    let got = proxy.http.get(proxy.listen, "/x").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.json()["error"], "no route matched");

    let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
    assert!(
        metrics.contains("switchyard_proxy_config_nacks_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_proxy_control_plane_connected 1"));
    assert!(metrics.contains("switchyard_proxy_requests_total{code_class=\"2xx\"}"));
    assert!(
        metrics.contains("switchyard_proxy_upstream_errors_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn keeps_serving_and_resyncs_after_restart() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    handshake(&mut fake, a, b).await;
    assert_eq!(
        proxy.http.get(proxy.listen, "/x").await.status,
        StatusCode::OK
    );

    let port = fake.addr;
    fake.stop().await;
    eventually("disconnected", || async {
        let dump = proxy.http.get(proxy.admin, "/config_dump").await.json();
        dump["control_plane"]["connected"] == false
    })
    .await;
    assert_eq!(
        proxy.http.get(proxy.listen, "/x").await.status,
        StatusCode::OK
    );
    assert_eq!(
        proxy.http.get(proxy.admin, "/ready").await.status,
        StatusCode::OK
    );

    // The control plane comes back on the same port: the proxy re-subscribes with what it holds.
    let mut fake = FakeXds::start_on(port).await;
    let mut subscribed = subscriptions(&mut fake).await;
    let routes = subscribed.pop().unwrap();
    let clusters = subscribed.remove(0);
    assert_eq!(
        clusters
            .initial_resource_versions
            .get("web")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        routes
            .initial_resource_versions
            .get("api")
            .map(String::as_str),
        Some("1")
    );
    fake.send(response(CLUSTER, "c9", "2", vec![], &[]));
    assert_ack(&fake.next_request().await, CLUSTER, "c9");
    fake.send(response(ROUTE, "r9", "2", vec![], &["api"]));
    assert_ack(&fake.next_request().await, ROUTE, "r9");
    assert_eq!(
        proxy.http.get(proxy.listen, "/x").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn fails_over_to_the_next_control_plane() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![format!("http://{dead}"), fake.url()]).await;
    handshake(&mut fake, a, b).await;
    let got = proxy.http.get(proxy.listen, "/x").await;
    assert_eq!(got.status, StatusCode::OK);
    let dump = proxy.http.get(proxy.admin, "/config_dump").await.json();
    assert_eq!(dump["control_plane"]["address"], fake.url());
    assert_eq!(dump["ready"], true);

    // HTTP/2 clients (h2c) are served on the same port.
    let got = HttpClient::h2c().get(proxy.listen, "/h2").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["path"], "/h2");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    handshake(&mut fake, a, b).await;

    let listen = proxy.listen;
    let in_flight = tokio::spawn(async move { HttpClient::new().get(listen, "/slow").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.stop.send(()).unwrap();
    eventually("listener closed", || async {
        tokio::net::TcpStream::connect(listen).await.is_err()
    })
    .await;
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, StatusCode::OK, "in-flight request finished");
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .expect("shutdown is bounded")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_returns() {
    let fake = FakeXds::start().await;
    let mut config = Config::new(vec![fake.url()]);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(switchyard_proxy::run(config, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("shutdown is bounded")
        .unwrap()
        .unwrap();
}
