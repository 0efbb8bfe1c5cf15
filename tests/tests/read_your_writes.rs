//! A write is answered only once the config streamed to proxies includes it: a proxy started
//! right after a `PUT` serves the new route on its first request, with no waiting.

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database};

on_every_database!(read_your_writes);

async fn read_your_writes(db: Db) {
    let upstream = Upstream::start("a").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("web", &[(&upstream.address(), 1)]))
        .await;
    for i in 0..3 {
        cp.put_route(&route(&format!("r{i}"), &format!("/r{i}"), "web"))
            .await;
        let proxy = Proxy::start(&cp.xds_url(), &format!("ryw-{db}-{i}"), "").await;
        let response = proxy.get(&format!("/r{i}/x")).await;
        assert_eq!(
            response.status, 200,
            "proxy {i} answered {}",
            response.status
        );
    }
}
