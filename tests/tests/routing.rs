//! Routing through two proxies: by path prefix, by host and by header, to two upstreams; a JSON
//! 404 when no route matches; the forwarding headers an upstream sees.

use std::time::Duration;

use e2e::resources::{cluster, route, route_matching};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until};
use serde_json::json;

on_every_database!(routing);

/// A request path, its headers and the upstream it must reach.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

async fn routing(db: Db) {
    let alpha = Upstream::start("alpha").await;
    let beta = Upstream::start("beta").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("alpha", &[(&alpha.address(), 1)]))
        .await;
    cp.put_cluster(&cluster("beta", &[(&beta.address(), 1)]))
        .await;
    cp.put_route(&route("to-alpha", "/alpha", "alpha")).await;
    cp.put_route(&route("to-beta", "/beta", "beta")).await;
    cp.put_route(&route_matching(
        "beta-by-host",
        json!({"host": "beta.example.com", "path_prefix": "/"}),
        "beta",
    ))
    .await;
    cp.put_route(&route_matching(
        "alpha-by-header",
        json!({"path_prefix": "/tagged", "headers": {"x-target": "alpha"}}),
        "alpha",
    ))
    .await;

    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("routing-{db}-1"), "zone=a").await,
        Proxy::start(&cp.xds_url(), &format!("routing-{db}-2"), "zone=b").await,
    ];

    for proxy in &proxies {
        let node = proxy.node_id();
        // /ready means a complete config, so every route is there from the first request on.
        let cases: [Case; 5] = [
            ("/alpha/one", &[], "alpha"),
            ("/beta/two?q=1", &[], "beta"),
            ("/anything", &[("host", "beta.example.com")], "beta"),
            ("/tagged/x", &[("x-target", "alpha")], "alpha"),
            // The longer path match wins over the host route's "/".
            ("/alpha/with-host", &[("host", "beta.example.com")], "alpha"),
        ];
        for (path, headers, want) in cases {
            let response = proxy.get_with(path, headers).await;
            assert_eq!(
                (response.status, response.upstream().as_deref()),
                (200, Some(want)),
                "{node}: GET {path} {headers:?} answered {} {}",
                response.status,
                response.body_excerpt()
            );
            assert_eq!(
                response.json()["path"],
                json!(path),
                "{node}: the path reached the upstream unchanged"
            );
        }

        for (path, headers) in [
            ("/nowhere", &[][..]),
            ("/tagged/x", &[("x-target", "beta")][..]),
            ("/tagged/x", &[][..]),
        ] {
            let response = proxy.get_with(path, headers).await;
            assert_eq!(
                response.status,
                404,
                "{node}: GET {path} {headers:?}: {}",
                response.body_excerpt()
            );
            let body = response.json();
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty())
                    && body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{node}: a 404 is JSON {{\"error\", \"request_id\"}}, got {:?} {}",
                response.header("content-type"),
                response.body_excerpt()
            );
        }
    }

    // Forwarding headers, on a fresh request id and on a kept incoming one.
    let proxy = &proxies[0];
    alpha.reset();
    let response = proxy.get("/alpha/headers").await;
    assert_eq!(response.status, 200);
    let incoming_id = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
    let response = proxy
        .get_with("/alpha/kept", &[("x-request-id", incoming_id)])
        .await;
    assert_eq!(response.status, 200);
    let seen = alpha.requests();
    assert_eq!(seen.len(), 2, "alpha saw {seen:?}");

    let fresh = &seen[0];
    let request_id = fresh.header("x-request-id").unwrap_or_default();
    assert!(
        !request_id.is_empty(),
        "the proxy adds x-request-id: {:?}",
        fresh.headers
    );
    assert!(
        fresh
            .header("x-forwarded-for")
            .is_some_and(|v| v.contains("127.0.0.1")),
        "x-forwarded-for names the client: {:?}",
        fresh.headers
    );
    assert_eq!(
        fresh.header("x-forwarded-proto"),
        Some("http"),
        "{:?}",
        fresh.headers
    );
    let forwarded = fresh
        .header("forwarded")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        forwarded.contains("for=")
            && forwarded.contains("127.0.0.1")
            && forwarded.contains("proto=http"),
        "forwarded (RFC 7239) names the client and the protocol: {:?}",
        fresh.headers
    );
    assert_eq!(
        seen[1].header("x-request-id"),
        Some(incoming_id),
        "a valid incoming x-request-id is kept"
    );

    // Both proxies are in the fleet view with their labels.
    let node_ids: Vec<&str> = proxies.iter().map(Proxy::node_id).collect();
    assert!(
        wait_until(Duration::from_secs(5), async || {
            let fleet = cp.proxies().await;
            node_ids.iter().zip(["a", "b"]).all(|(node_id, zone)| {
                fleet
                    .iter()
                    .any(|p| p["node_id"] == json!(node_id) && p["labels"]["zone"] == zone)
            })
        })
        .await,
        "the fleet view lists both proxies with their labels: {:?}",
        cp.proxies().await
    );
}
