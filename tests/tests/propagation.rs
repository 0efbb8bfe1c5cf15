//! Config propagation to two proxies: a route's new prefix and a route's deletion reach both
//! within a second of the REST answer (time measured and printed), and the fleet view then shows
//! both connected at the newest revision.

use std::time::{Duration, Instant};

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until, wait_until_every};

on_every_database!(propagation);

const BUDGET: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(5);

async fn propagation(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.put_route(&route("moving", "/v1", "origin")).await;
    cp.put_route(&route("doomed", "/doomed", "origin")).await;
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("prop-{db}-1"), "").await,
        Proxy::start(&cp.xds_url(), &format!("prop-{db}-2"), "").await,
    ];
    for proxy in &proxies {
        assert_eq!(
            proxy.status_of("/v1/x").await,
            Some(200),
            "{}",
            proxy.node_id()
        );
        assert_eq!(
            proxy.status_of("/v2/x").await,
            Some(404),
            "{}",
            proxy.node_id()
        );
        assert_eq!(
            proxy.status_of("/doomed/x").await,
            Some(200),
            "{}",
            proxy.node_id()
        );
    }

    cp.put_route(&route("moving", "/v2", "origin")).await;
    let changed = Instant::now();
    let took = until_all(&proxies, changed, async |proxy| {
        proxy.status_of("/v2/x").await == Some(200)
    })
    .await;
    eprintln!("[{db}] route change: served by both proxies {took:?} after the PUT answered");
    for proxy in &proxies {
        assert_eq!(
            proxy.status_of("/v1/x").await,
            Some(404),
            "{}: the old prefix is gone",
            proxy.node_id()
        );
    }

    cp.delete_route("doomed").await;
    let deleted = Instant::now();
    let took = until_all(&proxies, deleted, async |proxy| {
        proxy.status_of("/doomed/x").await == Some(404)
    })
    .await;
    eprintln!("[{db}] route delete: 404 on both proxies {took:?} after the DELETE answered");

    let node_ids: Vec<&str> = proxies.iter().map(Proxy::node_id).collect();
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .fleet_in_sync(&node_ids)
            .await)
        .await,
        "the fleet view shows both proxies connected at revision {}: {:?}",
        cp.latest_revision().await,
        cp.proxies().await
    );
}

/// Polls every proxy every 5 ms until `serves_new_config` holds for each; returns the time from
/// `since` until the last one did, and fails past the one-second budget.
async fn until_all(
    proxies: &[Proxy],
    since: Instant,
    mut serves_new_config: impl AsyncFnMut(&Proxy) -> bool,
) -> Duration {
    let mut done = vec![None; proxies.len()];
    let all_done = wait_until_every(Duration::from_secs(5), POLL, async || {
        for (proxy, done) in proxies.iter().zip(done.iter_mut()) {
            if done.is_none() && serves_new_config(proxy).await {
                *done = Some(since.elapsed());
            }
        }
        done.iter().all(Option::is_some)
    })
    .await;
    let pending: Vec<&str> = proxies
        .iter()
        .zip(&done)
        .filter(|(_, d)| d.is_none())
        .map(|(p, _)| p.node_id())
        .collect();
    assert!(all_done, "not followed within 5 s by {pending:?}");
    for (proxy, took) in proxies.iter().zip(&done) {
        eprintln!("  {}: {:?}", proxy.node_id(), took.unwrap_or_default());
    }
    let slowest = done.into_iter().flatten().max().unwrap_or_default();
    assert!(
        slowest < BUDGET,
        "propagation took {slowest:?}, budget {BUDGET:?}"
    );
    slowest
}
