//! The report stream and the fleet-wide health view: a real control plane on 127.0.0.1 (SQLite;
//! the view is in memory and the same on every backend), tonic's generated client playing
//! proxies, and `GET /api/v1/health` read over HTTP on the bound admin address.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_control_plane::config::Config;
use switchyard_control_plane::server::ControlPlane;
use switchyard_proto::v1::{HealthTransition, ReportRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use support::report_stream::{ReportStream, WAIT};

struct Harness {
    admin: SocketAddr,
    xds_url: String,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

async fn start() -> Harness {
    start_with(None).await
}

async fn start_with(admin_token: Option<&str>) -> Harness {
    let path = std::env::temp_dir().join(format!(
        "switchyard_reports_{}_{}.db",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let config = Config {
        database_url: format!("sqlite://{}", path.display()),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: admin_token.map(str::to_owned),
        proxy_token: None,
        first_sync_budget_mib: None,
        proxy_ttl: switchyard_control_plane::config::DEFAULT_PROXY_TTL,
        usage_retention: switchyard_control_plane::config::DEFAULT_USAGE_RETENTION,
    };
    let cp = ControlPlane::bind(&config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let admin = cp.admin_addr();
    let xds_url = format!("http://{}", cp.xds_addr());
    let served = tokio::spawn(async move {
        cp.serve(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Harness {
        admin,
        xds_url,
        stop: Some(stop),
        served,
    }
}

impl Harness {
    /// `GET path` on the admin API: status and body (one HTTP/1.1 request, connection closed).
    async fn get(&self, path: &str) -> (u16, String) {
        let mut conn = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, conn.read_to_end(&mut raw))
            .await
            .expect("an answer in time")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    async fn health(&self, query: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/health{query}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `GET /api/v1/health` until `pred` holds; returns the last view.
    async fn wait_health(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.health("").await;
            if pred(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last view {view}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A fake proxy's end of one report stream.
fn state(cluster: &str, endpoint: &str, healthy: bool, at_unix_ms: u64) -> HealthTransition {
    HealthTransition {
        cluster: cluster.to_owned(),
        endpoint: endpoint.to_owned(),
        healthy,
        at_unix_ms,
    }
}

/// `(healthy, unhealthy, unhealthy_on)` of one endpoint, `None` when the view lacks it.
fn counts(view: &Value, cluster: &str, address: &str) -> Option<(u64, u64, Vec<String>)> {
    let endpoint = view["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == cluster)?["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == address)?;
    let unhealthy_on = endpoint["unhealthy_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    Some((
        endpoint["healthy"].as_u64().unwrap(),
        endpoint["unhealthy"].as_u64().unwrap(),
        unhealthy_on,
    ))
}

fn is(view: &Value, cluster: &str, address: &str, healthy: u64, unhealthy_on: &[&str]) -> bool {
    counts(view, cluster, address)
        == Some((
            healthy,
            unhealthy_on.len() as u64,
            unhealthy_on.iter().map(|s| s.to_string()).collect(),
        ))
}

/// 2024-01-01T00:00:00Z plus `secs`, in ms.
fn t(secs: u64) -> u64 {
    (1_704_067_200 + secs) * 1000
}

#[tokio::test]
async fn two_proxies_snapshots_transitions_and_disconnect() {
    let h = start().await;
    assert_eq!(h.health("").await, json!({"clusters": []}));

    let p1 = ReportStream::open(&h.xds_url).await;
    let mut p2 = ReportStream::open(&h.xds_url).await;
    p1.snapshot(
        "p1",
        vec![
            state("web", "127.0.0.1:9001", true, t(1)),
            state("web", "127.0.0.1:9002", true, t(1)),
        ],
    )
    .await;
    p2.snapshot(
        "p2",
        vec![
            state("web", "127.0.0.1:9001", true, t(2)),
            state("web", "127.0.0.1:9002", false, t(3)),
            state("api", "10.0.0.1:80", true, t(2)),
        ],
    )
    .await;
    let view = h
        .wait_health("both snapshots counted", |v| {
            is(v, "web", "127.0.0.1:9001", 2, &[])
                && is(v, "web", "127.0.0.1:9002", 1, &["p2"])
                && is(v, "api", "10.0.0.1:80", 1, &[])
        })
        .await;
    // Sorted by name, then address; the last change is the newest any proxy saw.
    assert_eq!(view["clusters"][0]["name"], "api");
    assert_eq!(view["clusters"][1]["name"], "web");
    let web = &view["clusters"][1]["endpoints"];
    assert_eq!(web[0]["address"], "127.0.0.1:9001");
    assert_eq!(web[0]["last_change"], "2024-01-01T00:00:02.000Z");
    assert_eq!(web[1]["last_change"], "2024-01-01T00:00:03.000Z");

    // Transitions only (usage: tests/usage.rs; quotas: tests/quotas.rs).
    p1.send(ReportRequest {
        health: vec![state("web", "127.0.0.1:9002", false, t(10))],
        ..Default::default()
    })
    .await;
    let view = h
        .wait_health("p1's transition counted", |v| {
            is(v, "web", "127.0.0.1:9002", 0, &["p1", "p2"])
        })
        .await;
    assert_eq!(
        view["clusters"][1]["endpoints"][1]["last_change"],
        "2024-01-01T00:00:10.000Z"
    );
    p2.transitions(vec![state("web", "127.0.0.1:9002", true, t(11))])
        .await;
    h.wait_health("p2's recovery counted", |v| {
        is(v, "web", "127.0.0.1:9002", 1, &["p1"])
    })
    .await;

    // The filter.
    let only_api = h.health("?cluster=api").await;
    assert_eq!(only_api["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(only_api["clusters"][0]["name"], "api");
    assert_eq!(h.health("?cluster=nope").await, json!({"clusters": []}));

    // The server sends nothing and keeps the streams open.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), p2.rx.message())
            .await
            .is_err(),
        "no response expected"
    );

    // p1 goes away: it stops counting; p2 still does.
    drop(p1);
    let view = h
        .wait_health("p1 forgotten", |v| {
            is(v, "web", "127.0.0.1:9001", 1, &[]) && is(v, "web", "127.0.0.1:9002", 1, &[])
        })
        .await;
    assert!(is(&view, "api", "10.0.0.1:80", 1, &[]));

    let (status, metrics) = h.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("switchyard_report_streams_open 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_report_streams_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_report_messages_total 4\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_report_health_transitions_total 7\n"),
        "{metrics}"
    );

    drop(p2);
    h.wait_health("everyone forgotten", |v| v == &json!({"clusters": []}))
        .await;
}

#[tokio::test]
async fn a_reconnecting_proxy_keeps_its_new_view_when_the_old_stream_closes() {
    let h = start().await;
    let old = ReportStream::open(&h.xds_url).await;
    old.snapshot("p1", vec![state("web", "a:1", true, t(1))])
        .await;
    h.wait_health("old stream counted", |v| is(v, "web", "a:1", 1, &[]))
        .await;

    let new = ReportStream::open(&h.xds_url).await;
    new.snapshot("p1", vec![state("web", "a:1", false, t(2))])
        .await;
    h.wait_health("new stream replaces", |v| is(v, "web", "a:1", 0, &["p1"]))
        .await;
    // Transitions from the superseded stream are ignored, and its close forgets nothing.
    old.transitions(vec![state("web", "a:1", true, t(3))]).await;
    drop(old);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(is(&h.health("").await, "web", "a:1", 0, &["p1"]));

    drop(new);
    h.wait_health("forgotten", |v| v == &json!({"clusters": []}))
        .await;
}

#[tokio::test]
async fn a_first_message_without_node_id_is_refused() {
    let h = start().await;
    let mut reporter = ReportStream::open(&h.xds_url).await;
    reporter
        .send(ReportRequest {
            health_snapshot: true,
            health: vec![state("web", "a:1", true, t(1))],
            ..Default::default()
        })
        .await;
    let status = reporter.refusal().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("node_id"), "{status:?}");
    assert_eq!(h.health("").await, json!({"clusters": []}));

    // A node id that changes on an open stream is refused too.
    let mut reporter = ReportStream::open(&h.xds_url).await;
    reporter.snapshot("p1", vec![]).await;
    reporter.snapshot("p2", vec![]).await;
    let status = reporter.refusal().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn shutdown_ends_open_report_streams() {
    let mut h = start().await;
    let mut reporter = ReportStream::open(&h.xds_url).await;
    reporter
        .snapshot("p1", vec![state("web", "a:1", true, t(1))])
        .await;
    h.wait_health("counted", |v| is(v, "web", "a:1", 1, &[]))
        .await;

    let started = tokio::time::Instant::now();
    let _ = h.stop.take().unwrap().send(());
    let ended = tokio::time::timeout(WAIT, reporter.rx.message())
        .await
        .expect("the stream ends at shutdown");
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
    tokio::time::timeout(WAIT, &mut h.served)
        .await
        .expect("the control plane stops")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped without waiting out the grace period: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_health_view_is_in_the_openapi_document() {
    let h = start().await;
    let (status, body) = h.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    let get = &doc["paths"]["/api/v1/health"]["get"];
    assert_eq!(get["parameters"][0]["name"], "cluster", "{get}");
    assert_eq!(
        get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/FleetHealth"
    );
    let schemas = &doc["components"]["schemas"];
    for field in [
        "address",
        "healthy",
        "unhealthy",
        "last_change",
        "unhealthy_on",
    ] {
        assert!(
            schemas["EndpointHealth"]["properties"][field].is_object(),
            "EndpointHealth.{field} in {}",
            schemas["EndpointHealth"]
        );
    }
    assert!(schemas["ClusterHealth"]["properties"]["endpoints"].is_object());
}

#[tokio::test]
async fn the_health_view_needs_the_admin_token_when_one_is_set() {
    let h = start_with(Some("s3cret")).await;
    let (status, body) = h.get("/api/v1/health").await;
    assert_eq!(status, 401, "{body}");
}
