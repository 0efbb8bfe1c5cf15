//! The fleet-wide health view through real processes: two proxies health-check two upstreams
//! and report to the control plane; `GET /api/v1/health` counts how many see each endpoint
//! healthy, an endpoint failing its health path is avoided by both proxies and shown as
//! unhealthy on both, it comes back when it recovers, and a killed proxy stops counting.

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until};
use serde_json::{Value, json};

on_every_database!(health_view);

/// Health checks every 100 ms, reports batched ≤ 1 s: generous bound for each change to show.
const SETTLE: Duration = Duration::from_secs(10);
/// Requests sent through each proxy to see where traffic goes.
const REQUESTS: usize = 20;

async fn health_view(db: Db) {
    let good = Upstream::start("good").await;
    let flaky = Upstream::start("flaky").await;
    let cp = ControlPlane::start(db).await;
    let mut web = cluster("web", &[(&good.address(), 1), (&flaky.address(), 1)]);
    web["health_check"] = json!({
        "path": "/healthz", "interval_ms": 100, "timeout_ms": 50,
        "healthy_threshold": 1, "unhealthy_threshold": 1,
    });
    cp.put_cluster(&web).await;
    cp.put_route(&route("web", "/", "web")).await;
    let mut proxies = [
        Proxy::start(&cp.xds_url(), &format!("health-{db}-1"), "").await,
        Proxy::start(&cp.xds_url(), &format!("health-{db}-2"), "").await,
    ];
    let mut node_ids: Vec<String> = proxies.iter().map(|p| p.node_id().to_owned()).collect();
    node_ids.sort();

    // Both proxies report both endpoints healthy.
    for upstream in [&good, &flaky] {
        wait_for(
            &cp,
            &upstream.address(),
            2,
            &[],
            "both proxies see it healthy",
        )
        .await;
    }

    // The flaky upstream fails its health path: both proxies see it unhealthy, and avoid it.
    flaky.set_path_status("/healthz", 503);
    let failed = wait_for(
        &cp,
        &flaky.address(),
        0,
        &node_ids,
        "both proxies see the failing endpoint unhealthy",
    )
    .await;
    assert_ne!(failed["last_change"], "", "{failed}");
    for proxy in &proxies {
        let picks = picks(proxy).await;
        assert!(
            picks.iter().all(|p| p == "good"),
            "{}: traffic avoids the unhealthy endpoint: {picks:?}",
            proxy.node_id()
        );
    }
    let good_view = cp
        .endpoint_health("web", &good.address())
        .await
        .expect("the good endpoint is still reported");
    assert_eq!(
        (&good_view["healthy"], &good_view["unhealthy"]),
        (&json!(2), &json!(0))
    );

    // It recovers: both proxies see it healthy again and send it traffic.
    flaky.clear_path_status("/healthz");
    let recovered = wait_for(
        &cp,
        &flaky.address(),
        2,
        &[],
        "both proxies see it recovered",
    )
    .await;
    assert_ne!(
        recovered["last_change"], failed["last_change"],
        "the recovery is a later change"
    );
    for proxy in &proxies {
        assert!(
            wait_until(SETTLE, async || picks(proxy)
                .await
                .iter()
                .any(|p| p == "flaky"))
            .await,
            "{}: traffic reaches the recovered endpoint",
            proxy.node_id()
        );
    }

    // A killed proxy stops counting.
    proxies[1].kill();
    let survivor = proxies[0].node_id().to_owned();
    for upstream in [&good, &flaky] {
        wait_for(&cp, &upstream.address(), 1, &[], "only the survivor counts").await;
    }
    // And the survivor alone still reports changes.
    flaky.set_path_status("/healthz", 503);
    wait_for(
        &cp,
        &flaky.address(),
        0,
        &[survivor],
        "the survivor reports the failure",
    )
    .await;
}

/// Waits until endpoint `address` of `web` shows `healthy` proxies seeing it healthy and
/// exactly `unhealthy_on` (sorted node ids) seeing it unhealthy; returns its entry.
async fn wait_for(
    cp: &ControlPlane,
    address: &str,
    healthy: u64,
    unhealthy_on: &[String],
    what: &str,
) -> Value {
    let expected_on: Vec<Value> = unhealthy_on.iter().map(|n| json!(n)).collect();
    let mut last = None;
    let reached = wait_until(SETTLE, async || {
        let entry = cp.endpoint_health("web", address).await;
        let matches = entry.as_ref().is_some_and(|e| {
            e["healthy"] == json!(healthy)
                && e["unhealthy"] == json!(unhealthy_on.len())
                && e["unhealthy_on"] == Value::Array(expected_on.clone())
        });
        last = entry;
        matches
    })
    .await;
    assert!(
        reached,
        "{address}: {what} within {SETTLE:?}; last entry {last:?}; view {}",
        cp.health().await
    );
    last.expect("set when the wait succeeded")
}

/// The upstream label of each of [`REQUESTS`] requests through `proxy`; every one must be 200.
async fn picks(proxy: &Proxy) -> Vec<String> {
    let mut picks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let response = proxy.get(&format!("/pick/{i}")).await;
        assert_eq!(
            response.status,
            200,
            "{}: {}",
            proxy.node_id(),
            response.body_excerpt()
        );
        picks.push(response.upstream().unwrap_or_default());
    }
    picks
}
