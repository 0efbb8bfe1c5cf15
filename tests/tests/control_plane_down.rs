//! The control plane goes away and comes back: proxies keep serving their last config while it is
//! down, reconnect to the restarted process (same ports, same database) and resynchronise with a
//! change made after the restart.

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(control_plane_down);

async fn control_plane_down(db: Db) {
    let upstream = Upstream::start("origin").await;
    let mut cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.put_route(&route("api", "/api", "origin")).await;
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("down-{db}-1"), "").await,
        Proxy::start(&cp.xds_url(), &format!("down-{db}-2"), "").await,
    ];
    let node_ids: Vec<&str> = proxies.iter().map(Proxy::node_id).collect();
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .fleet_in_sync(&node_ids)
            .await)
        .await,
        "both proxies connected before the crash: {:?}",
        cp.proxies().await
    );

    cp.kill();
    // Serve through the outage, including past a reconnect attempt or two.
    for round in 0..15 {
        for proxy in &proxies {
            let response = proxy.get("/api/during-outage").await;
            assert_eq!(
                response.status,
                200,
                "{} round {round}: the last config keeps serving while the control plane is down: {}",
                proxy.node_id(),
                response.body_excerpt()
            );
            assert_eq!(
                proxy.status_of("/other").await,
                Some(404),
                "{}",
                proxy.node_id()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cp.restart().await;
    assert!(
        wait_until(Duration::from_secs(5), async || {
            let mut all = true;
            for node_id in &node_ids {
                all &= cp.is_connected(node_id).await;
            }
            all
        })
        .await,
        "both proxies reconnect within 5 s of the restart: {:?}",
        cp.proxies().await
    );

    // A change after the restart reaches both: the resync works on the new stream.
    cp.put_route(&route("other", "/other", "origin")).await;
    for proxy in &proxies {
        assert!(
            wait_until(Duration::from_secs(5), async || proxy
                .status_of("/other/x")
                .await
                == Some(200))
            .await,
            "{} follows a change made after the restart",
            proxy.node_id()
        );
        assert_eq!(
            proxy.status_of("/api/x").await,
            Some(200),
            "{} still serves the old route",
            proxy.node_id()
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .fleet_in_sync(&node_ids)
            .await)
        .await,
        "both proxies ACK the newest revision after the restart: {:?}",
        cp.proxies().await
    );
}
