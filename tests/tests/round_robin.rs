//! Round robin on every proxy: weights 1/1 alternate exactly, weights 3/1 split 75/25 (smooth
//! weighted round robin, so every window of four picks holds three of one and one of the other).

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(round_robin);

const REQUESTS: usize = 100;

async fn round_robin(db: Db) {
    let left = Upstream::start("left").await;
    let right = Upstream::start("right").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster(
        "pair",
        &[(&left.address(), 1), (&right.address(), 1)],
    ))
    .await;
    cp.put_route(&route("all", "/", "pair")).await;
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("rr-{db}-1"), "").await,
        Proxy::start(&cp.xds_url(), &format!("rr-{db}-2"), "").await,
    ];

    for proxy in &proxies {
        let picks = picks(proxy).await;
        let lefts = picks.iter().filter(|p| *p == "left").count();
        assert_eq!(
            (lefts, REQUESTS - lefts),
            (50, 50),
            "{}: weights 1/1: {picks:?}",
            proxy.node_id()
        );
        assert!(
            picks.windows(2).all(|pair| pair[0] != pair[1]),
            "{}: weights 1/1 alternate: {picks:?}",
            proxy.node_id()
        );
    }

    cp.put_cluster(&cluster(
        "pair",
        &[(&left.address(), 3), (&right.address(), 1)],
    ))
    .await;
    let node_ids: Vec<&str> = proxies.iter().map(Proxy::node_id).collect();
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .fleet_in_sync(&node_ids)
            .await)
        .await,
        "both proxies ACK the reweighted cluster: {:?}",
        cp.proxies().await
    );
    for proxy in &proxies {
        let picks = picks(proxy).await;
        let lefts = picks.iter().filter(|p| *p == "left").count();
        assert_eq!(
            (lefts, REQUESTS - lefts),
            (75, 25),
            "{}: weights 3/1: {picks:?}",
            proxy.node_id()
        );
        assert!(
            picks.windows(2).all(|pair| pair != ["right", "right"]),
            "{}: weights 3/1 are interleaved smoothly: {picks:?}",
            proxy.node_id()
        );
    }
}

/// The upstream label of each of `REQUESTS` sequential requests.
async fn picks(proxy: &Proxy) -> Vec<String> {
    let mut picks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let response = proxy.get(&format!("/rr/{i}")).await;
        assert_eq!(
            response.status,
            200,
            "{}: request {i}: {}",
            proxy.node_id(),
            response.body_excerpt()
        );
        picks.push(response.upstream().unwrap_or_default());
    }
    picks
}
