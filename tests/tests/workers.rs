//! Traffic workers and upstream keep-alive through the real binary: a proxy started with
//! `--workers 2` answers on every client connection (the kernel spreads them over the two
//! `SO_REUSEPORT` sockets), and reuses its upstream connections — one per worker when the
//! requests come one at a time, however many client connections carry them — and says so on
//! `/metrics`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, HttpClient, Proxy, Upstream, on_every_database};

on_every_database!(workers_share_the_port_and_reuse_upstream_connections);

#[tokio::test]
async fn zero_workers_is_a_usage_error() {
    let mut proxy = Proxy::spawn("http://127.0.0.1:1", "no-workers", "", &["--workers", "0"]);
    assert_eq!(
        proxy.exit_code(Duration::from_secs(10)).await,
        Some(64),
        "exit code 64 (EX_USAGE); log: {}",
        proxy.log_tail(5)
    );
    assert!(
        proxy.log_tail(5).contains("invalid --workers"),
        "{}",
        proxy.log_tail(5)
    );
}

const REQUESTS: usize = 40;

async fn workers_share_the_port_and_reuse_upstream_connections(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("web", &[(&upstream.address(), 1)]))
        .await;
    cp.put_route(&route("web", "/", "web")).await;
    let mut proxy = Proxy::spawn(
        &cp.xds_url(),
        &format!("workers-{db}"),
        "",
        &["--workers", "2"],
    );
    proxy.wait_ready().await;

    // One client connection, one worker: one upstream connection carries every request.
    one_connection(&proxy, REQUESTS).await;
    assert_eq!(
        upstream.connections(),
        1,
        "sequential requests on one client connection share one upstream connection"
    );

    // A new client connection per request: each lands on one of the two workers, which takes
    // its own idle upstream connection (or opens its first).
    for _ in 0..REQUESTS {
        let fresh = HttpClient::new();
        let response = fresh
            .send("GET", &format!("{}/", proxy.url()), &[], Default::default())
            .await
            .expect("an answer on a new client connection");
        assert_eq!(response.status, 200);
    }
    assert!(
        upstream.connections() <= 2,
        "at most one upstream connection per worker, got {}",
        upstream.connections()
    );
    assert_eq!(upstream.hits(), 2 * REQUESTS);

    // The proxy's own account of its pools agrees with what the upstream saw.
    let metrics = proxy.admin_get("/metrics").await.expect("/metrics").text();
    let opened = format!(
        "switchyard_proxy_cluster_upstream_connections_opened_total{{cluster=\"web\"}} {}",
        upstream.connections()
    );
    assert!(metrics.contains(&opened), "{opened} in:\n{metrics}");
    let idle = format!(
        "switchyard_proxy_cluster_upstream_connections_idle{{cluster=\"web\"}} {}",
        upstream.connections()
    );
    assert!(metrics.contains(&idle), "{idle} in:\n{metrics}");
}

/// `count` sequential `GET /` on a single client connection (a pooling client may open a
/// second one when the first has not been handed back yet; this one cannot).
async fn one_connection(proxy: &Proxy, count: usize) {
    let address = proxy.url().trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect to the proxy");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    let driver = tokio::spawn(connection);
    for _ in 0..count {
        sender.ready().await.expect("the connection stays open");
        let request = Request::get("/")
            .header("host", address.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("the body");
    }
    drop(sender);
    let _ = driver.await;
}
