//! Failover between two control-plane replicas on one database: a proxy given both addresses
//! moves to the survivor when the one it is connected to dies, keeps serving throughout, and
//! follows a change made through the survivor.
//!
//! On SQLite the second replica starts after the config is written, so it reads it at start; a
//! write through one replica reaching proxies of another is only promised on PostgreSQL and is not
//! what this test checks.

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Database, Db, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(failover);

async fn failover(db: Db) {
    let upstream = Upstream::start("origin").await;
    let database = Database::create(db);
    let first = ControlPlane::start_on(database.clone(), None).await;
    first
        .put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    first.put_route(&route("api", "/api", "origin")).await;
    let second = ControlPlane::start_on(database, None).await;
    let mut replicas = [first, second];

    let urls = format!("{},{}", replicas[0].xds_url(), replicas[1].xds_url());
    let proxy = Proxy::start(&urls, &format!("failover-{db}"), "").await;
    let node_id = proxy.node_id();
    assert_eq!(proxy.status_of("/api/x").await, Some(200));

    let mut connected_to = None;
    assert!(
        wait_until(Duration::from_secs(5), async || {
            for (i, replica) in replicas.iter().enumerate() {
                if replica.is_connected(node_id).await {
                    connected_to = Some(i);
                    return true;
                }
            }
            false
        })
        .await,
        "a replica's fleet view shows the proxy connected: {:?} / {:?}",
        replicas[0].proxies().await,
        replicas[1].proxies().await
    );
    let dead = connected_to.expect("set when the wait succeeded");
    let survivor = 1 - dead;
    eprintln!("[{db}] proxy connected to replica {dead}; killing it");

    replicas[dead].kill();
    let survivor = &replicas[survivor];
    let mut served = 0;
    assert!(
        wait_until(Duration::from_secs(5), async || {
            let status = proxy.status_of("/api/during-failover").await;
            assert_eq!(
                status,
                Some(200),
                "the proxy keeps serving during the failover"
            );
            served += 1;
            survivor.is_connected(node_id).await
        })
        .await,
        "the survivor's fleet view shows the proxy connected within 5 s: {:?}",
        survivor.proxies().await
    );
    eprintln!("[{db}] proxy moved to the survivor; {served} requests served meanwhile");

    survivor
        .put_route(&route("fresh", "/fresh", "origin"))
        .await;
    assert!(
        wait_until(Duration::from_secs(5), async || proxy
            .status_of("/fresh/x")
            .await
            == Some(200))
        .await,
        "a change made through the survivor reaches the proxy"
    );
    assert_eq!(
        proxy.status_of("/api/x").await,
        Some(200),
        "the older route still serves"
    );
    assert!(
        wait_until(Duration::from_secs(5), async || survivor
            .fleet_in_sync(&[node_id])
            .await)
        .await,
        "the survivor shows the proxy at the newest revision: {:?}",
        survivor.proxies().await
    );
}
