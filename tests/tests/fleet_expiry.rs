//! The fleet view forgets disconnected proxies, through the real binaries: with
//! `--proxy-ttl 2s`, a connected proxy shows `expires_at: null`; once it is stopped it shows
//! `connected: false` and when it will be forgotten (`expires_at` after `last_seen`), and it is
//! gone from `GET /api/v1/proxies` after the TTL while a proxy still connected stays.

use std::time::{Duration, Instant};

use e2e::{ControlPlane, Database, Db, Proxy, wait_until};
use serde_json::Value;

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_proxies_expire_after_the_ttl() {
    let cp =
        ControlPlane::start_with(Database::create(Db::Sqlite), None, &["--proxy-ttl", "2s"]).await;
    let mut leaving = Proxy::start(&cp.xds_url(), "ttl-leaving", "").await;
    let _staying = Proxy::start(&cp.xds_url(), "ttl-staying", "").await;
    let both = wait_until(Duration::from_secs(10), async || {
        cp.is_connected("ttl-leaving").await && cp.is_connected("ttl-staying").await
    })
    .await;
    assert!(both, "both proxies connected: {:?}", cp.proxies().await);
    let status = cp.proxy_status("ttl-leaving").await.expect("listed");
    assert_eq!(status["expires_at"], Value::Null, "connected: {status}");

    leaving.kill();
    let stopped = Instant::now();
    let mut disconnected = None;
    let seen = wait_until(Duration::from_secs(10), async || {
        disconnected = cp
            .proxy_status("ttl-leaving")
            .await
            .filter(|p| p["connected"] == Value::Bool(false));
        disconnected.is_some()
    })
    .await;
    assert!(seen, "the stopped proxy shows as disconnected first");
    let disconnected = disconnected.expect("seen");
    let (last_seen, expires_at) = (
        disconnected["last_seen"].as_str().expect("last_seen"),
        disconnected["expires_at"]
            .as_str()
            .expect("expires_at is a time"),
    );
    // Both RFC 3339 in UTC with the same precision: the text order is the time order.
    assert!(expires_at > last_seen, "{disconnected}");

    let forgotten = wait_until(Duration::from_secs(15), async || {
        cp.proxy_status("ttl-leaving").await.is_none()
    })
    .await;
    assert!(
        forgotten,
        "forgotten after the TTL: {:?}",
        cp.proxies().await
    );
    assert!(
        stopped.elapsed() >= TTL - Duration::from_millis(500),
        "not before the TTL ({:?})",
        stopped.elapsed()
    );
    let staying = cp.proxy_status("ttl-staying").await.expect("still listed");
    assert_eq!(staying["connected"], Value::Bool(true));
    assert_eq!(staying["expires_at"], Value::Null);
}
