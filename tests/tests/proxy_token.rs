//! Proxy authentication: a control plane started with `--proxy-token` serves only proxies that
//! present it (`--control-plane-token`); others never become ready nor appear in the fleet.

use std::time::Duration;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Database, Db, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(proxy_token);

async fn proxy_token(db: Db) {
    let upstream = Upstream::start("a").await;
    let cp =
        ControlPlane::start_with(Database::create(db), None, &["--proxy-token", "b00tstrap"]).await;
    cp.put_cluster(&cluster("web", &[(&upstream.address(), 1)]))
        .await;
    cp.put_route(&route("web", "/", "web")).await;

    let mut intruder = Proxy::spawn(
        &cp.xds_url(),
        "intruder",
        "",
        &["--control-plane-token", "guess"],
    );
    let mut anonymous = Proxy::spawn(&cp.xds_url(), "anonymous", "", &[]);
    let mut member = Proxy::spawn(
        &cp.xds_url(),
        "member",
        "",
        &["--control-plane-token", "b00tstrap"],
    );
    member.wait_ready().await;
    assert_eq!(member.get("/x").await.status, 200);

    // The others were refused: not ready, unknown to the fleet view.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for refused in [&mut intruder, &mut anonymous] {
        let ready = refused
            .admin_get("/ready")
            .await
            .map(|r| r.status)
            .unwrap_or(0);
        assert_eq!(ready, 503, "{} must not get config", refused.node_id());
    }
    let seen = wait_until(Duration::from_secs(5), async || {
        cp.is_connected("member").await
    })
    .await;
    assert!(seen);
    let nodes: Vec<String> = cp
        .proxies()
        .await
        .iter()
        .map(|p| p["node_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(nodes, ["member"]);
}
