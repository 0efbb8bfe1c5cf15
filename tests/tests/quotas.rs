//! Fleet-wide quotas end to end: proxies spend grants from the control plane locally, the
//! fleet never lets more through than the quota's limit (on PostgreSQL with two proxies on
//! two replicas of one database), the rest is answered 429 with `Retry-After` and the
//! `RateLimit` headers, and `GET /api/v1/quotas/{name}/usage` agrees with what the clients saw.
//! Then the control plane goes away: `on_unavailable: allow` lets requests through once the
//! grants are spent, and reports them when it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;

use e2e::resources::{cluster, route};
use e2e::{ControlPlane, Db, HttpClient, Proxy, Upstream, on_every_database, wait_until};

on_every_database!(
    a_quota_holds_across_the_fleet,
    an_unreachable_control_plane_follows_on_unavailable
);

const LIMIT: u64 = 1_000;

/// Waits until at least `needed` seconds are left in the current minute, so a test's requests
/// all fall in one quota window.
async fn inside_one_minute(needed: u64) {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if 60 - into < needed {
        tokio::time::sleep(Duration::from_secs(60 - into)).await;
    }
}

/// Sends `total` GETs of `path`, `concurrency` at a time, spread over `urls`; returns the
/// statuses counted, and one 429 answer's headers.
async fn load(
    urls: &[String],
    path: &str,
    key: &str,
    total: u64,
    concurrency: u64,
) -> (u64, u64, Option<Vec<(String, String)>>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, urls, path, key) = (
            Arc::clone(&next),
            urls.to_vec(),
            path.to_owned(),
            key.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let (mut ok, mut limited, mut headers) = (0, 0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let url = format!("{}{path}", urls[i as usize % urls.len()]);
                let response = client
                    .send("GET", &url, &[("x-api-key", &key)], Bytes::new())
                    .await
                    .expect("an answer");
                match response.status {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        if headers.is_none() {
                            headers = Some(
                                ["retry-after", "ratelimit-policy", "ratelimit"]
                                    .iter()
                                    .map(|name| {
                                        (
                                            name.to_string(),
                                            response.header(name).unwrap_or_default().to_owned(),
                                        )
                                    })
                                    .collect::<Vec<_>>(),
                            );
                            assert_eq!(response.json()["error"], "quota exceeded");
                        }
                    }
                    other => panic!("unexpected {other}: {}", response.body_excerpt()),
                }
            }
            (ok, limited, headers)
        }));
    }
    let (mut ok, mut limited, mut headers) = (0, 0, None);
    for task in tasks {
        let (o, l, h) = task.await.unwrap();
        ok += o;
        limited += l;
        headers = headers.or(h);
    }
    (ok, limited, headers)
}

async fn setup(cp: &ControlPlane, upstream: &Upstream, on_unavailable: &str) -> String {
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.must(
        "PUT",
        "/api/v1/quotas/per-minute",
        Some(&json!({"name": "per-minute", "limit": LIMIT, "window": "minute", "on_unavailable": on_unavailable})),
    )
    .await;
    let key = cp.consumer_with_key("alice").await;
    let mut metered = route("metered", "/metered", "origin");
    metered["auth"] = json!({"api_key": true});
    metered["quota"] = json!("per-minute");
    cp.put_route(&metered).await;
    key
}

async fn a_quota_holds_across_the_fleet(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    let replica = match db {
        Db::Postgres => Some(ControlPlane::start_on(cp.database().clone(), None).await),
        Db::Sqlite => None,
    };
    let key = setup(&cp, &upstream, "allow").await;
    let second_cp = replica.as_ref().unwrap_or(&cp);
    let proxies = [
        Proxy::start(&cp.xds_url(), &format!("quota-{db}-1"), "").await,
        Proxy::start(&second_cp.xds_url(), &format!("quota-{db}-2"), "").await,
    ];
    let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .is_connected(proxies[0].node_id())
            .await
            && second_cp.is_connected(proxies[1].node_id()).await)
        .await
    );

    inside_one_minute(15).await;
    let (ok, limited, headers) = load(&urls, "/metered/x", &key, 3 * LIMIT, 16).await;
    eprintln!("quota: {ok} let through, {limited} refused");
    assert_eq!(ok + limited, 3 * LIMIT);
    assert!(
        ok <= LIMIT,
        "never more than the limit across the fleet: {ok}"
    );
    // Grants shrink near the end, so at most a few tokens per proxy stay unspent.
    assert!(
        ok >= LIMIT - 2 * 4,
        "the budget is spent, not stranded in leases: {ok}"
    );
    let headers = headers.expect("some requests were refused");
    let retry_after: u64 = headers[0].1.parse().expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{headers:?}");
    assert_eq!(
        headers[1].1,
        format!("\"per-minute\";q={LIMIT};w=60"),
        "{headers:?}"
    );
    assert!(
        headers[2].1.starts_with("\"per-minute\";r=0;t="),
        "{headers:?}"
    );

    let usage_matches = async || {
        let usage = cp
            .must("GET", "/api/v1/quotas/per-minute/usage", None)
            .await;
        let items = usage["items"].as_array().cloned().unwrap_or_default();
        items.len() == 1 && items[0]["consumer"] == "alice" && items[0]["used"] == ok
    };
    assert!(
        wait_until(Duration::from_secs(5), usage_matches).await,
        "the control plane counts what was let through: {}",
        cp.must("GET", "/api/v1/quotas/per-minute/usage", None)
            .await
    );
    let usage = cp
        .must("GET", "/api/v1/quotas/per-minute/usage", None)
        .await;
    assert_eq!(usage["limit"], LIMIT);
    assert_eq!(usage["window"], "minute");
    assert_eq!(usage["items"][0]["remaining"], LIMIT - ok);
    if let Some(replica) = &replica {
        let same = replica
            .must("GET", "/api/v1/quotas/per-minute/usage", None)
            .await;
        assert_eq!(
            same["items"], usage["items"],
            "every replica answers the same"
        );
    }
    assert_eq!(
        upstream.hits() as u64,
        ok,
        "refused requests never reach the upstream"
    );
}

async fn an_unreachable_control_plane_follows_on_unavailable(db: Db) {
    let upstream = Upstream::start("origin").await;
    let mut cp = ControlPlane::start(db).await;
    let key = setup(&cp, &upstream, "allow").await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("quota-down-{db}"), "").await;
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .is_connected(proxy.node_id())
            .await)
        .await
    );
    inside_one_minute(15).await;
    let urls = [proxy.url()];
    let (before, _, _) = load(&urls, "/metered/x", &key, 50, 4).await;
    assert_eq!(before, 50);

    cp.kill();
    // The grants held are spent first, then `allow` lets the rest through.
    let (during, limited, _) = load(&urls, "/metered/x", &key, 100, 4).await;
    assert_eq!(
        (during, limited),
        (100, 0),
        "allow while the control plane is away"
    );

    cp.restart().await;
    let reported = async || {
        let usage = cp
            .must("GET", "/api/v1/quotas/per-minute/usage", None)
            .await;
        usage["items"][0]["used"] == 150
    };
    assert!(
        wait_until(Duration::from_secs(8), reported).await,
        "what was let through meanwhile is reported, once: {}",
        cp.must("GET", "/api/v1/quotas/per-minute/usage", None)
            .await
    );

    // `deny`: once the grant is spent and the control plane is gone, 429.
    cp.must(
        "PUT",
        "/api/v1/quotas/per-minute",
        Some(&json!({"name": "per-minute", "limit": LIMIT, "window": "minute", "on_unavailable": "deny"})),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(5), async || cp
            .fleet_in_sync(&[proxy.node_id()])
            .await)
        .await,
        "the proxy holds the changed quota"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    cp.kill();
    let (_, denied, _) = load(&urls, "/metered/x", &key, 2 * LIMIT, 4).await;
    assert!(denied > 0, "deny: refused once the grant is spent");
}
