//! Usage reports end to end: real proxies count what they serve, report it on the report
//! stream, and the control plane's `GET /api/v1/usage` answers with exactly the client's own
//! counts — per route and per consumer, across proxies (and, on PostgreSQL, across two
//! replicas of one database) — including what was served while the control plane was down.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(
    usage_is_counted_once_fleet_wide,
    usage_survives_a_control_plane_outage
);

/// The `items[]` entry of `key` in a usage answer.
fn item<'a>(usage: &'a Value, key: &str) -> Option<&'a Value> {
    usage["items"]
        .as_array()?
        .iter()
        .find(|item| item["key"] == key)
}

fn requests(usage: &Value, key: &str) -> u64 {
    item(usage, key).map_or(0, |item| item["requests"].as_u64().unwrap_or(0))
}

/// Polls `GET /api/v1/usage?by=…` until `expected` holds (at most `within`); returns the last
/// answer and how long it took.
async fn usage_until(
    cp: &ControlPlane,
    by: &str,
    within: Duration,
    expected: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    let path = format!("/api/v1/usage?by={by}&since=10m");
    let mut last = Value::Null;
    while started.elapsed() < within {
        last = cp.must("GET", &path, None).await;
        if expected(&last) {
            return (last, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (last, started.elapsed())
}

async fn setup(cp: &ControlPlane, upstream: &Upstream) -> String {
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.put_route(&route("api", "/api", "origin")).await;
    let key = cp.consumer_with_key("alice").await;
    let mut keyed = route("keyed", "/keyed", "origin");
    keyed["auth"] = json!({"api_key": true});
    cp.put_route(&keyed).await;
    key
}

async fn usage_is_counted_once_fleet_wide(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    // On PostgreSQL the second proxy reports to a second replica of the same database.
    let replica = match db {
        Db::Postgres => Some(ControlPlane::start_on(cp.database().clone(), None).await),
        Db::Sqlite => None,
    };
    let key = setup(&cp, &upstream).await;
    let second_cp = replica.as_ref().unwrap_or(&cp);
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("usage-{db}-1"), "").await,
        Proxy::start(&second_cp.xds_url(), &format!("usage-{db}-2"), "").await,
    ];

    let (mut api, mut keyed, mut unrouted, mut refused) = (0, 0, 0, 0);
    for round in 0..40 {
        let proxy = &proxies[round % 2];
        assert_eq!(proxy.get(&format!("/api/{round}")).await.status, 200);
        api += 1;
        if round % 4 == 0 {
            let with_key = proxy.get_with("/keyed/x", &[("x-api-key", &key)]).await;
            assert_eq!(with_key.status, 200, "{}", with_key.body_excerpt());
            keyed += 1;
            assert_eq!(proxy.status_of("/keyed/no-key").await, Some(401));
            refused += 1;
        }
        if round % 5 == 0 {
            assert_eq!(proxy.status_of("/nowhere").await, Some(404));
            unrouted += 1;
        }
    }

    let (by_route, took) = usage_until(&cp, "route", Duration::from_secs(5), |usage| {
        requests(usage, "api") == api
            && requests(usage, "keyed") == keyed + refused
            && requests(usage, "") == unrouted
    })
    .await;
    assert!(
        took <= Duration::from_millis(2500),
        "counted within ~2 s of the last request (took {took:?}): {by_route}"
    );
    assert_eq!(requests(&by_route, "api"), api, "{by_route}");
    let api_item = item(&by_route, "api").unwrap();
    assert_eq!(api_item["status"]["2xx"], api);
    assert_eq!(api_item["status"]["4xx"], 0);
    let p50 = api_item["latency_ms"]["p50"].as_f64().unwrap();
    let p99 = api_item["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{api_item}");
    assert!(api_item["bytes_out"].as_u64().unwrap() > 0, "{api_item}");
    let keyed_item = item(&by_route, "keyed").unwrap();
    assert_eq!(keyed_item["status"]["2xx"], keyed);
    assert_eq!(keyed_item["status"]["4xx"], refused);
    assert_eq!(item(&by_route, "").unwrap()["status"]["4xx"], unrouted);

    let (by_consumer, _) = usage_until(&cp, "consumer", Duration::from_secs(2), |usage| {
        requests(usage, "alice") == keyed
    })
    .await;
    assert_eq!(requests(&by_consumer, "alice"), keyed, "{by_consumer}");
    assert_eq!(
        requests(&by_consumer, ""),
        api + refused + unrouted,
        "unauthenticated traffic under \"\": {by_consumer}"
    );

    if let Some(replica) = &replica {
        let same = replica
            .must("GET", "/api/v1/usage?by=route&since=10m", None)
            .await;
        assert_eq!(
            same["items"], by_route["items"],
            "every replica answers the same"
        );
    }
    // Nothing more arrives later: each request was counted once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = cp
        .must("GET", "/api/v1/usage?by=route&since=10m", None)
        .await;
    assert_eq!(again["items"], by_route["items"]);

    let metrics = proxies[0]
        .admin_get("/metrics")
        .await
        .expect("/metrics")
        .text();
    assert!(
        metrics
            .contains("switchyard_proxy_route_requests_total{route=\"api\",code_class=\"2xx\"} 20"),
        "per-route counters on the proxy:\n{metrics}"
    );
    assert!(
        metrics.contains("switchyard_proxy_route_request_duration_seconds_count{route=\"api\"} 20")
    );
}

async fn usage_survives_a_control_plane_outage(db: Db) {
    let upstream = Upstream::start("origin").await;
    let mut cp = ControlPlane::start(db).await;
    setup(&cp, &upstream).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("usage-down-{db}"), "").await;

    for i in 0..10 {
        assert_eq!(proxy.get(&format!("/api/before/{i}")).await.status, 200);
    }
    let (before, _) = usage_until(&cp, "route", Duration::from_secs(5), |usage| {
        requests(usage, "api") == 10
    })
    .await;
    assert_eq!(requests(&before, "api"), 10, "{before}");

    cp.kill();
    for i in 0..25 {
        assert_eq!(proxy.get(&format!("/api/during/{i}")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    cp.restart().await;
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .is_connected(proxy.node_id())
            .await)
        .await
    );
    for i in 0..5 {
        assert_eq!(proxy.get(&format!("/api/after/{i}")).await.status, 200);
    }
    let (after, _) = usage_until(&cp, "route", Duration::from_secs(5), |usage| {
        requests(usage, "api") == 40
    })
    .await;
    assert_eq!(
        requests(&after, "api"),
        40,
        "what was served during the outage arrives, once: {after}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = cp
        .must("GET", "/api/v1/usage?by=route&since=10m", None)
        .await;
    assert_eq!(requests(&settled, "api"), 40, "nothing doubled: {settled}");
}
