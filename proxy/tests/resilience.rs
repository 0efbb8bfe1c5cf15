//! Upstream resilience through a real proxy: active health checks (ejection and return within
//! the configured intervals, all unhealthy → fast 503), outlier ejection on consecutive 5xx,
//! retries hiding an upstream killed mid-load, per-try and route timeouts, circuit breaking.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::fake_xds::FakeXds;
use support::http::HttpClient;
use support::upstream::Upstream;
use support::{cluster, configure, eventually, route_to, start_proxy};
use switchyard_proto::v1;

fn name(got: &support::http::Got) -> String {
    got.json()["upstream"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn health_check(interval_ms: u32, healthy: u32, unhealthy: u32) -> Option<v1::HealthCheck> {
    Some(v1::HealthCheck {
        path: "/health".into(),
        interval_ms,
        timeout_ms: interval_ms / 2,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
        ..Default::default()
    })
}

#[tokio::test]
async fn health_checks_eject_and_restore_then_all_down_is_a_fast_503() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut web = cluster("web", &[(a.addr, 0), (b.addr, 0)], v1::LbPolicy::RoundRobin);
    web.health_check = health_check(100, 2, 2);
    configure(&mut fake, &[web], &[route_to("all", "/", "web")]).await;
    eventually("first health checks", || async { b.health_checks() > 0 }).await;

    b.set_health(503);
    let started = Instant::now();
    eventually("b ejected", || async {
        let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
        metrics.contains("switchyard_proxy_cluster_healthy_endpoints{cluster=\"web\"} 1")
    })
    .await;
    // 2 failed checks at 100 ms ± 10%, plus one round in progress.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..10 {
        assert_eq!(name(&proxy.http.get(proxy.listen, "/").await), "a");
    }

    b.set_health(200);
    let started = Instant::now();
    eventually("b back", || async {
        name(&proxy.http.get(proxy.listen, "/").await) == "b"
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    a.set_health(500);
    b.set_health(500);
    eventually("all unhealthy", || async {
        proxy.http.get(proxy.listen, "/").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let started = Instant::now();
    let got = proxy.http.get(proxy.listen, "/").await;
    assert!(started.elapsed() < Duration::from_millis(300), "fast");
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.json()["error"], "no healthy endpoint");
    let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
    assert!(
        !metrics
            .contains("switchyard_proxy_cluster_health_check_failures_total{cluster=\"web\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn consecutive_5xx_eject_an_endpoint() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    bad.set_status(500);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut web = cluster(
        "web",
        &[(bad.addr, 0), (good.addr, 0)],
        v1::LbPolicy::RoundRobin,
    );
    web.outlier_detection = Some(v1::OutlierDetection {
        consecutive_5xx: 3,
        base_ejection_ms: 400,
        max_ejection_percent: 50,
    });
    configure(&mut fake, &[web], &[route_to("all", "/", "web")]).await;
    for _ in 0..6 {
        proxy.http.get(proxy.listen, "/").await;
    }
    assert_eq!(bad.requests(), 3, "ejected after 3 in a row");
    for _ in 0..20 {
        let got = proxy.http.get(proxy.listen, "/").await;
        assert_eq!((got.status, name(&got).as_str()), (StatusCode::OK, "good"));
    }
    let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
    assert!(metrics.contains("switchyard_proxy_cluster_ejections_total{cluster=\"web\"} 1"));

    bad.set_status(200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    eventually("bad back after base_ejection_ms", || async {
        name(&proxy.http.get(proxy.listen, "/").await) == "bad"
    })
    .await;
}

#[tokio::test]
async fn retries_hide_an_upstream_killed_mid_load() {
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    for upstream in &upstreams {
        upstream.set_delay(Duration::from_millis(5));
    }
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let endpoints: Vec<_> = upstreams.iter().map(|u| (u.addr, 0)).collect();
    let mut web = cluster("web", &endpoints, v1::LbPolicy::RoundRobin);
    web.outlier_detection = Some(v1::OutlierDetection {
        consecutive_5xx: 2,
        base_ejection_ms: 10_000,
        max_ejection_percent: 50,
    });
    let mut route = route_to("all", "/", "web");
    route.retries = Some(v1::Retries {
        attempts: 3,
        on: vec![
            v1::RetryOn::RetryOn5xx as i32,
            v1::RetryOn::ConnectFailure as i32,
            v1::RetryOn::Reset as i32,
        ],
        per_try_timeout_ms: 1000,
    });
    configure(&mut fake, &[web], &[route]).await;

    let client = Arc::new(HttpClient::new());
    let listen = proxy.listen;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    statuses.push(client.get(listen, "/").await.status);
                }
                statuses
            })
        })
        .collect();
    eventually("load under way", || async {
        upstreams.iter().map(Upstream::requests).sum::<u64>() > 60
    })
    .await;
    upstreams[1].kill();
    let mut total = 0;
    for worker in workers {
        for status in worker.await.unwrap() {
            assert_eq!(status, StatusCode::OK);
            total += 1;
        }
    }
    assert_eq!(total, 320);
    let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
    assert!(metrics.contains("switchyard_proxy_cluster_ejections_total{cluster=\"web\"} 1"));
}

#[tokio::test]
async fn timeouts_answer_504_and_per_try_timeouts_retry() {
    let (slow, fast) = (Upstream::start("slow").await, Upstream::start("fast").await);
    slow.set_delay(Duration::from_secs(2));
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut only_slow = route_to("only-slow", "/slow", "slow");
    only_slow.timeout_ms = 200;
    let mut retried = route_to("retried", "/", "both");
    retried.timeout_ms = 1500;
    retried.retries = Some(v1::Retries {
        attempts: 2,
        on: vec![],
        per_try_timeout_ms: 100,
    });
    configure(
        &mut fake,
        &[
            cluster("slow", &[(slow.addr, 0)], v1::LbPolicy::RoundRobin),
            cluster(
                "both",
                &[(slow.addr, 0), (fast.addr, 0)],
                v1::LbPolicy::RoundRobin,
            ),
        ],
        &[only_slow, retried],
    )
    .await;
    let started = Instant::now();
    let got = proxy.http.get(proxy.listen, "/slow").await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(got.json()["error"], "upstream timed out");
    assert!(started.elapsed() < Duration::from_millis(700));
    for _ in 0..6 {
        let got = proxy.http.get(proxy.listen, "/x").await;
        assert_eq!((got.status, name(&got).as_str()), (StatusCode::OK, "fast"));
    }
}

#[tokio::test]
async fn circuit_breaker_answers_503_when_full() {
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_millis(400));
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut web = cluster("web", &[(slow.addr, 0)], v1::LbPolicy::RoundRobin);
    web.circuit_breaker = Some(v1::CircuitBreaker {
        max_requests: 2,
        ..Default::default()
    });
    configure(&mut fake, &[web], &[route_to("all", "/", "web")]).await;
    let listen = proxy.listen;
    let in_flight: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { HttpClient::new().get(listen, "/").await.status }))
        .collect();
    eventually("two in flight", || async { slow.requests() == 2 }).await;
    let started = Instant::now();
    let got = proxy.http.get(proxy.listen, "/").await;
    assert!(started.elapsed() < Duration::from_millis(300), "fast");
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.json()["error"], "circuit open");
    assert_eq!(got.headers["x-switchyard-overloaded"], "true");
    for request in in_flight {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let got = proxy.http.get(proxy.listen, "/").await;
    assert_eq!(got.status, StatusCode::OK, "closes again");
    let metrics = proxy.http.get(proxy.admin, "/metrics").await.text();
    assert!(metrics.contains("switchyard_proxy_cluster_circuit_open_total{cluster=\"web\"} 1"));
}

#[tokio::test]
async fn health_reports_snapshot_then_transitions() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let mut web = cluster("web", &[(a.addr, 0), (b.addr, 0)], v1::LbPolicy::RoundRobin);
    web.health_check = health_check(100, 1, 1);
    configure(&mut fake, &[web], &[route_to("all", "/", "web")]).await;
    // The stream opens with a snapshot (possibly before the config arrives: then the
    // endpoints follow as transitions). Fold reports into the control plane's view.
    let first = fake.next_report().await;
    assert!(first.health_snapshot, "a stream starts with a snapshot");
    assert_eq!(first.node_id, "test-node");
    let mut view = std::collections::HashMap::new();
    let mut report = first;
    loop {
        if report.health_snapshot {
            view.clear();
        }
        for h in &report.health {
            assert_eq!(h.cluster, "web");
            assert!(h.at_unix_ms > 0);
            view.insert(h.endpoint.clone(), h.healthy);
        }
        if view.len() == 2 && view.values().all(|healthy| *healthy) {
            break;
        }
        report = fake.next_report().await;
    }

    b.set_health(503);
    let started = Instant::now();
    let transition = loop {
        let report = fake.next_report().await;
        if let Some(h) = report.health.iter().find(|h| !h.healthy) {
            assert!(!report.health_snapshot);
            assert!(
                report.node_id.is_empty(),
                "node_id only on the first message"
            );
            break h.clone();
        }
    };
    assert_eq!(transition.endpoint, b.addr.to_string());
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "batched ≤ 1 s"
    );

    proxy.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), proxy.task)
        .await
        .expect("shutdown (with report flush) is bounded")
        .unwrap()
        .unwrap();
}
