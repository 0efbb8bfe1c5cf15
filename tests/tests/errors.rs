//! Proxy errors and admin endpoints: an upstream that refuses connections answers 502 JSON, one
//! slower than the route's `timeout_ms` answers 504 JSON in about that time; `/ready`,
//! `/config_dump` (naming the routes) and `/metrics` answer 200.

use std::time::{Duration, Instant};

use e2e::ports::free_addr;
use e2e::resources::{cluster, mentions, route};
use e2e::{ControlPlane, Db, Proxy, Response, Upstream, on_every_database};
use serde_json::json;

on_every_database!(errors);

async fn errors(db: Db) {
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_secs(1));
    // Nothing listens here: the sandbox never hands this port out again.
    let closed = free_addr().to_string();

    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("dead", &[(&closed, 1)])).await;
    cp.put_cluster(&cluster("slow", &[(&slow.address(), 1)]))
        .await;
    cp.put_route(&route("to-dead", "/dead", "dead")).await;
    let mut slow_route = route("to-slow", "/slow", "slow");
    slow_route["timeout_ms"] = json!(200);
    cp.put_route(&slow_route).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("errors-{db}"), "").await;

    let response = proxy.get("/dead/x").await;
    assert_json_error(&response, 502, "an upstream refusing connections");

    let started = Instant::now();
    let response = proxy.get("/slow/x").await;
    let took = started.elapsed();
    assert_json_error(&response, 504, "an upstream slower than timeout_ms");
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(900),
        "the 504 comes after about timeout_ms (200 ms), took {took:?}"
    );

    for path in ["/ready", "/config_dump", "/metrics"] {
        let response = proxy
            .admin_get(path)
            .await
            .unwrap_or_else(|e| panic!("proxy admin {path}: {e}"));
        assert_eq!(
            response.status,
            200,
            "proxy admin GET {path}: {}",
            response.body_excerpt()
        );
    }
    let dump = proxy
        .admin_get("/config_dump")
        .await
        .expect("config_dump")
        .json();
    for name in ["to-dead", "to-slow"] {
        assert!(
            mentions(&dump, name),
            "/config_dump is JSON naming route {name}: {dump}"
        );
    }
}

fn assert_json_error(response: &Response, status: u16, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: {}",
        response.body_excerpt()
    );
    let body = response.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty())
            && body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{what}: the {status} is JSON {{\"error\", \"request_id\"}}: {}",
        response.body_excerpt()
    );
}
