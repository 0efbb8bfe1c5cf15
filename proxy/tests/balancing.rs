//! Load balancing through a real proxy: a slow endpoint is starved by `least_request` and
//! `least_response_time` under concurrent load; priority failover and return driven by active
//! health checks.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::fake_xds::FakeXds;
use support::http::HttpClient;
use support::upstream::Upstream;
use support::{cluster, configure, eventually, route_to, start_proxy};
use switchyard_proto::v1;

/// Sends `workers × per_worker` GETs concurrently; counts answers by upstream name.
async fn load(
    listen: std::net::SocketAddr,
    workers: usize,
    per_worker: usize,
) -> HashMap<String, usize> {
    let client = Arc::new(HttpClient::new());
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..per_worker {
                let got = client.get(listen, "/work").await;
                assert_eq!(got.status, StatusCode::OK, "{}", got.text());
                seen.push(got.json()["upstream"].as_str().unwrap().to_owned());
            }
            seen
        }));
    }
    let mut counts = HashMap::new();
    for task in tasks {
        for name in task.await.unwrap() {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

async fn slow_endpoint_is_starved(policy: v1::LbPolicy) {
    let (fast1, fast2, slow) = (
        Upstream::start("fast1").await,
        Upstream::start("fast2").await,
        Upstream::start("slow").await,
    );
    slow.set_delay(Duration::from_millis(150));
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let endpoints = [(fast1.addr, 0), (fast2.addr, 0), (slow.addr, 0)];
    configure(
        &mut fake,
        &[cluster("web", &endpoints, policy)],
        &[route_to("all", "/", "web")],
    )
    .await;
    let counts = load(proxy.listen, 8, 25).await;
    let to_slow = counts.get("slow").copied().unwrap_or(0);
    // Round robin would send it a third (~67 of 200).
    assert!(to_slow <= 20, "{policy:?}: {counts:?}");
    assert!(
        counts["fast1"] > 50 && counts["fast2"] > 50,
        "{policy:?}: {counts:?}"
    );
}

#[tokio::test]
async fn least_request_starves_a_slow_endpoint() {
    slow_endpoint_is_starved(v1::LbPolicy::LeastRequest).await;
}

#[tokio::test]
async fn least_response_time_starves_a_slow_endpoint() {
    slow_endpoint_is_starved(v1::LbPolicy::LeastResponseTime).await;
}

#[tokio::test]
async fn priority_fails_over_and_returns() {
    let (primary, backup) = (
        Upstream::start("primary").await,
        Upstream::start("backup").await,
    );
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut web = cluster(
        "web",
        &[(primary.addr, 0), (backup.addr, 1)],
        v1::LbPolicy::RoundRobin,
    );
    web.health_check = Some(v1::HealthCheck {
        path: "/health".into(),
        interval_ms: 100,
        timeout_ms: 50,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        ..Default::default()
    });
    configure(&mut fake, &[web], &[route_to("all", "/", "web")]).await;
    let upstream_of = |got: support::http::Got| got.json()["upstream"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        assert_eq!(
            upstream_of(proxy.http.get(proxy.listen, "/").await),
            "primary"
        );
    }
    primary.set_health(503);
    eventually("failover to priority 1", || async {
        upstream_of(proxy.http.get(proxy.listen, "/").await) == "backup"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            upstream_of(proxy.http.get(proxy.listen, "/").await),
            "backup"
        );
    }
    primary.set_health(200);
    eventually("return to priority 0", || async {
        upstream_of(proxy.http.get(proxy.listen, "/").await) == "primary"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            upstream_of(proxy.http.get(proxy.listen, "/").await),
            "primary"
        );
    }
    assert!(backup.health_checks() > 0, "every priority is checked");
}
