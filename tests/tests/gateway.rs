//! Gateway policies through the real binaries, configured over the control plane's REST API:
//! a consumer and its API key guard a route (401 without, 200 with, the upstream told who
//! called and never shown the key); revoking the key locks it out on both proxies within a
//! second; a rate limit answers 429 with its headers, and a changed limit takes effect without
//! restarting the proxy.

use std::time::{Duration, Instant};

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database, wait_until_every};
use serde_json::json;

on_every_database!(api_keys_and_revocation, rate_limit_changes_apply_live);

const BUDGET: Duration = Duration::from_secs(1);

async fn api_keys_and_revocation(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.must(
        "PUT",
        "/api/v1/consumers/acme",
        Some(&json!({"name": "acme", "scopes": ["orders:read"]})),
    )
    .await;
    let created = cp
        .must("POST", "/api/v1/consumers/acme/keys", Some(&json!({})))
        .await;
    let key = created["key"]
        .as_str()
        .expect("the key, shown once")
        .to_owned();
    let key_id = created["id"].as_str().expect("the key id").to_owned();
    assert!(key.starts_with("sy_"), "{key}");
    let mut secure = route("secure", "/orders", "origin");
    secure["auth"] = json!({"api_key": true, "scopes": ["orders:read"]});
    cp.put_route(&secure).await;
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("keys-{db}-1"), "").await,
        Proxy::start(&cp.xds_url(), &format!("keys-{db}-2"), "").await,
    ];

    for proxy in &proxies {
        let without = proxy.get("/orders/1").await;
        assert_eq!(
            without.status,
            401,
            "{}: {}",
            proxy.node_id(),
            without.body_excerpt()
        );
        assert_eq!(without.json()["error"], "missing API key (x-api-key)");
        let wrong = proxy
            .get_with("/orders/1", &[("x-api-key", "sy_not-a-key")])
            .await;
        assert_eq!(wrong.status, 401);
        upstream.reset();
        let with = proxy.get_with("/orders/1", &[("x-api-key", &key)]).await;
        assert_eq!(
            with.status,
            200,
            "{}: {}",
            proxy.node_id(),
            with.body_excerpt()
        );
        let seen = upstream.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("x-consumer"), Some("acme"));
        assert_eq!(
            seen[0].header("x-api-key"),
            None,
            "the key never reaches the upstream"
        );
    }

    cp.must(
        "DELETE",
        &format!("/api/v1/consumers/acme/keys/{key_id}"),
        None,
    )
    .await;
    let revoked = Instant::now();
    let mut locked_out = vec![None; proxies.len()];
    let all = wait_until_every(
        Duration::from_secs(5),
        Duration::from_millis(5),
        async || {
            for (proxy, done) in proxies.iter().zip(locked_out.iter_mut()) {
                if done.is_none()
                    && proxy
                        .get_with("/orders/1", &[("x-api-key", &key)])
                        .await
                        .status
                        == 401
                {
                    *done = Some(revoked.elapsed());
                }
            }
            locked_out.iter().all(Option::is_some)
        },
    )
    .await;
    assert!(all, "revoked key still accepted after 5 s: {locked_out:?}");
    let slowest = locked_out.into_iter().flatten().max().unwrap_or_default();
    eprintln!("[{db}] key revocation: 401 on both proxies {slowest:?} after the DELETE answered");
    assert!(
        slowest < BUDGET,
        "revocation took {slowest:?}, budget {BUDGET:?}"
    );
}

async fn rate_limit_changes_apply_live(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    let mut limited = route("limited", "/", "origin");
    limited["rate_limit"] = json!({"requests": 2, "per_seconds": 60, "by": "ip"});
    cp.put_route(&limited).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("limits-{db}"), "").await;

    let first = proxy.get("/x").await;
    assert_eq!(first.status, 200, "{}", first.body_excerpt());
    assert_eq!(first.header("ratelimit-limit"), Some("2"));
    assert_eq!(first.header("ratelimit-remaining"), Some("1"));
    assert_eq!(proxy.get("/x").await.status, 200);
    let refused = proxy.get("/x").await;
    assert_eq!(refused.status, 429, "{}", refused.body_excerpt());
    assert_eq!(refused.json()["error"], "rate limit exceeded");
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert!(refused.header("ratelimit-reset").is_some());
    assert_eq!(
        upstream.hits(),
        2,
        "refused requests never reach the upstream"
    );

    limited["rate_limit"] = json!({"requests": 100, "per_seconds": 60, "by": "ip"});
    cp.put_route(&limited).await;
    let changed = Instant::now();
    let applied = wait_until_every(
        Duration::from_secs(5),
        Duration::from_millis(5),
        async || proxy.get("/x").await.status == 200,
    )
    .await;
    assert!(applied, "the new limit never applied");
    let took = changed.elapsed();
    eprintln!("[{db}] rate-limit change: applied {took:?} after the PUT answered");
    assert!(took < BUDGET, "took {took:?}");
    let got = proxy.get("/x").await;
    assert_eq!(got.header("ratelimit-limit"), Some("100"));
}
