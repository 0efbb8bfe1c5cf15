//! Outlier ejection through the real binaries, after a history: one proxy (default
//! `--workers`) and three upstreams exercised by a series of clusters over the same three
//! addresses — weighted round robin, random, ring_hash and maglev with one endpoint removed
//! and re-added, ip_hash, least_request and least_response_time with one slow endpoint, an
//! active health check that marks one endpoint down and up again. Then a new cluster over the
//! same addresses with `outlier_detection` and one endpoint answering 500: once ejected, it
//! gets no request at all, on any worker, until its ejection ends — also when it leaves the
//! config and comes back meanwhile — and an endpoint that left while ejected does not count
//! against `max_ejection_percent` of the endpoints that remain.

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, HttpClient, Proxy, Upstream, wait_until};
use serde_json::{Value, json};

/// Bound on a config change reaching the proxy, or a health verdict changing.
const SETTLE: Duration = Duration::from_secs(10);
/// Requests per exercise of an earlier cluster.
const EXERCISE: usize = 24;
/// Requests while the endpoint fails, then requests that must all avoid it.
const REQUESTS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_gets_no_request_whatever_came_before() {
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let addresses: Vec<String> = upstreams.iter().map(Upstream::address).collect();
    let cp = ControlPlane::start(Db::Sqlite).await;
    let proxy = Proxy::start(&cp.xds_url(), "outlier-history", "").await;
    let apply = async |spec: Value, prefix: &str| {
        let name = spec["name"].as_str().expect("named").to_owned();
        cp.put_cluster(&spec).await;
        cp.put_route(&route(&name, prefix, &name)).await;
        in_sync(&cp, &proxy).await;
    };
    let over = |name: &str, policy: &str, weights: [u32; 3]| {
        let endpoints: Vec<(&str, u32)> =
            addresses.iter().map(String::as_str).zip(weights).collect();
        let mut spec = cluster(name, &endpoints);
        spec["lb_policy"] = json!(policy);
        spec
    };

    // Weighted round robin and random.
    apply(over("wrr", "round_robin", [3, 2, 1]), "/wrr").await;
    exercise(&proxy, "/wrr", &[]).await;
    apply(over("rand", "random", [1, 1, 1]), "/rand").await;
    exercise(&proxy, "/rand", &[]).await;

    // Consistent hashing, with one endpoint removed and re-added.
    for policy in ["ring_hash", "maglev"] {
        let prefix = format!("/{policy}");
        let mut spec = over(policy, policy, [1, 1, 1]);
        spec["hash_on"] = json!({"header": "x-user"});
        apply(spec.clone(), &prefix).await;
        exercise(&proxy, &prefix, &[("x-user", "alice")]).await;
        let mut without_c = spec.clone();
        without_c["endpoints"]
            .as_array_mut()
            .expect("endpoints")
            .pop();
        apply(without_c, &prefix).await;
        exercise(&proxy, &prefix, &[("x-user", "bob")]).await;
        apply(spec, &prefix).await;
        exercise(&proxy, &prefix, &[("x-user", "carol")]).await;
    }
    apply(over("iphash", "ip_hash", [1, 1, 1]), "/iphash").await;
    exercise(&proxy, "/iphash", &[]).await;

    // Load-aware policies with one slow endpoint.
    upstreams[2].set_delay(Duration::from_millis(40));
    for policy in ["least_request", "least_response_time"] {
        let prefix = format!("/{policy}");
        apply(over(policy, policy, [1, 1, 1]), &prefix).await;
        exercise(&proxy, &prefix, &[]).await;
    }
    upstreams[2].set_delay(Duration::ZERO);

    // An active health check marks one endpoint down, then up again.
    let mut checked = over("checked", "round_robin", [1, 1, 1]);
    checked["health_check"] = json!({
        "path": "/healthz", "interval_ms": 100, "timeout_ms": 50,
        "healthy_threshold": 1, "unhealthy_threshold": 1,
    });
    apply(checked, "/checked").await;
    exercise(&proxy, "/checked", &[]).await;
    upstreams[1].set_path_status("/healthz", 503);
    assert!(
        wait_until(SETTLE, async || !labels(&proxy, "/checked", 9)
            .await
            .iter()
            .any(|label| label == "b"))
        .await,
        "the health check takes b out"
    );
    upstreams[1].clear_path_status("/healthz");
    assert!(
        wait_until(SETTLE, async || labels(&proxy, "/checked", 9)
            .await
            .iter()
            .any(|label| label == "b"))
        .await,
        "the health check brings b back"
    );

    // A new cluster over the same addresses, with outlier detection; b answers 500.
    let mut guarded = over("guarded", "round_robin", [1, 1, 1]);
    guarded["outlier_detection"] = json!({
        "consecutive_5xx": 3, "base_ejection_ms": 30_000, "max_ejection_percent": 50,
    });
    apply(guarded.clone(), "/guarded").await;
    upstreams[1].set_status(500);
    for i in 0..REQUESTS {
        let response = proxy.get(&format!("/guarded/warm/{i}")).await;
        assert!(
            [200, 500].contains(&response.status),
            "request {i}: {} {}",
            response.status,
            response.body_excerpt()
        );
    }
    assert_eq!(
        guarded_hits(&upstreams[1]),
        3,
        "b is ejected after exactly consecutive_5xx = 3 failures in a row"
    );
    // Ejected for 30 s: no request reaches b, whichever worker serves it.
    avoided(&proxy, &upstreams, &[1], "kept").await;

    // b leaves the config and comes back while its ejection lasts: it is still out.
    let without_b = |spec: &Value| {
        let mut spec = spec.clone();
        spec["endpoints"]
            .as_array_mut()
            .expect("endpoints")
            .remove(1);
        spec
    };
    apply(without_b(&guarded), "/guarded").await;
    avoided(&proxy, &upstreams, &[1], "removed").await;
    apply(guarded.clone(), "/guarded").await;
    avoided(&proxy, &upstreams, &[1], "re-added").await;

    // b leaves again; then c fails too. Over the two endpoints left none is ejected, so c
    // may be (one ejection is always allowed): the departed b must not count against it.
    apply(without_b(&guarded), "/guarded").await;
    upstreams[2].set_status(500);
    let c_before = guarded_hits(&upstreams[2]);
    for i in 0..REQUESTS / 2 {
        let response = proxy.get(&format!("/guarded/c-fails/{i}")).await;
        assert!(
            [200, 500].contains(&response.status),
            "request {i}: {}",
            response.status
        );
    }
    assert_eq!(
        guarded_hits(&upstreams[2]) - c_before,
        3,
        "c is ejected after 3 failures although b was ejected when it left"
    );
    avoided(&proxy, &upstreams, &[1, 2], "c-ejected").await;
}

/// Requests of the `guarded` cluster that `upstream` received.
fn guarded_hits(upstream: &Upstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/guarded/"))
        .count()
}

/// [`REQUESTS`] requests through `/guarded/{phase}/…` — half on one client connection, half on
/// a new connection each (spread over the workers) — all answered 200 and none reaching the
/// ejected `upstreams[ejected]`.
async fn avoided(proxy: &Proxy, upstreams: &[Upstream], ejected: &[usize], phase: &str) {
    let before: Vec<usize> = ejected
        .iter()
        .map(|&i| guarded_hits(&upstreams[i]))
        .collect();
    for i in 0..REQUESTS {
        let path = format!("/guarded/{phase}/{i}");
        let response = if i % 2 == 0 {
            proxy.get(&path).await
        } else {
            HttpClient::new()
                .send(
                    "GET",
                    &format!("{}{path}", proxy.url()),
                    &[],
                    Default::default(),
                )
                .await
                .expect("an answer on a new client connection")
        };
        assert_eq!(
            response.status,
            200,
            "{phase}: request {i}: {}",
            response.body_excerpt()
        );
    }
    for (&index, before) in ejected.iter().zip(before) {
        let reached = guarded_hits(&upstreams[index]) - before;
        assert_eq!(
            reached,
            0,
            "{phase}: the ejected endpoint {} got {reached} of {REQUESTS} requests",
            upstreams[index].label()
        );
    }
}

/// Waits until the proxy has ACKed the newest revision.
async fn in_sync(cp: &ControlPlane, proxy: &Proxy) {
    assert!(
        wait_until(SETTLE, async || cp.fleet_in_sync(&[proxy.node_id()]).await).await,
        "the proxy ACKs the change: {:?}",
        cp.proxies().await
    );
}

/// [`EXERCISE`] requests through `prefix`, each answered 200.
async fn exercise(proxy: &Proxy, prefix: &str, headers: &[(&str, &str)]) {
    for i in 0..EXERCISE {
        let response = proxy.get_with(&format!("{prefix}/{i}"), headers).await;
        assert_eq!(
            response.status,
            200,
            "{prefix} request {i}: {}",
            response.body_excerpt()
        );
    }
}

/// The upstream label of each of `count` requests through `prefix`.
async fn labels(proxy: &Proxy, prefix: &str, count: usize) -> Vec<String> {
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let response = proxy.get(&format!("{prefix}/{i}")).await;
        labels.push(response.upstream().unwrap_or_default());
    }
    labels
}
