//! The request path tried as an attacker and a new user would, through the real binaries:
//! - paths are normalised before routing: dot segments, escaped unreserved characters and
//!   doubled slashes cannot walk past a route's auth onto an unauthenticated catch-all, escaped
//!   slashes are refused unless the route opts in, and the upstream gets the normalised path;
//! - the response cache never serves one consumer's authenticated response to another;
//! - an HTTP/1.0 upstream's answer reaches an HTTP/1.1 client as `HTTP/1.1`;
//! - an `https://` control-plane URL is a usage error at start.
//!
//! Nothing here is about storage, so each scenario runs on the embedded SQLite default.

use std::time::Duration;

use e2e::resources::route;
use e2e::{ControlPlane, Db, Proxy, Upstream, raw};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn cluster(name: &str, upstream: &Upstream) -> serde_json::Value {
    e2e::resources::cluster(name, &[(&upstream.address(), 1)])
}

async fn consumer_with_key(cp: &ControlPlane, name: &str) -> String {
    cp.must(
        "PUT",
        &format!("/api/v1/consumers/{name}"),
        Some(&json!({"name": name})),
    )
    .await;
    let created = cp
        .must(
            "POST",
            &format!("/api/v1/consumers/{name}/keys"),
            Some(&json!({})),
        )
        .await;
    created["key"].as_str().expect("the key").to_owned()
}

/// Request targets that must not reach `/admin`'s upstream without a key, nor the catch-all:
/// each is either normalised onto `/admin` (401, its auth applies) or refused (400).
const ATTACKS: &[(&str, u16)] = &[
    ("/pub/../admin", 401),
    ("/%61dmin", 401),
    ("/ad%6Din/users", 401),
    ("/./admin", 401),
    ("/pub/%2e%2e/admin", 401),
    ("/pub/%2E%2E/admin", 401),
    ("/pub/.%2e/admin", 401),
    ("/%2e/admin", 401),
    ("//admin", 401),
    ("/pub/..//admin", 401),
    ("/pub/x/../../admin", 401),
    ("/../admin", 401),
    ("/admin/./", 401),
    ("/pub/..%2fadmin", 400),
    ("/pub%2F..%2Fadmin", 400),
    ("/pub/..%5cadmin", 400),
    ("/pub/%2e%2e%2fadmin", 400),
    ("/admin%2f", 400),
    ("/%zzadmin", 400),
    ("/pub/..\\admin", 401),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing() {
    let admin = Upstream::start("admin").await;
    let public = Upstream::start("public").await;
    let files = Upstream::start("files").await;
    let cp = ControlPlane::start(Db::Sqlite).await;
    cp.put_cluster(&cluster("admin", &admin)).await;
    cp.put_cluster(&cluster("public", &public)).await;
    cp.put_cluster(&cluster("files", &files)).await;
    let key = consumer_with_key(&cp, "ops").await;
    let mut guarded = route("admin", "/admin", "admin");
    guarded["auth"] = json!({"api_key": true});
    cp.put_route(&guarded).await;
    cp.put_route(&route("public", "/", "public")).await;
    let mut opted_in = route("files", "/files/", "files");
    opted_in["allow_encoded_slashes"] = json!(true);
    cp.put_route(&opted_in).await;
    let proxy = Proxy::start(&cp.xds_url(), "normalise", "").await;
    let addr = proxy.url().trim_start_matches("http://").to_owned();

    for (target, want) in ATTACKS {
        let answer = raw::get(&addr, target, &[]).await;
        assert_eq!(
            answer.status, *want,
            "GET {target}: {} {}",
            answer.status_line, answer.body
        );
    }
    assert_eq!(
        (admin.hits(), public.hits()),
        (0, 0),
        "no attack reached an upstream: public saw {:?}",
        public
            .requests()
            .iter()
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );

    // With the key, a non-canonical path is served by `/admin`, and the upstream is sent the
    // normalised path (the query as the client wrote it).
    let answer = raw::get(
        &addr,
        "/pub/%2e%2e//admin/./users?q=%2e%2e",
        &[("x-api-key", &key)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = admin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/admin/users?q=%2e%2e");

    // A route that opts in takes escaped slashes, forwarded as sent (hex in uppercase).
    let answer = raw::get(&addr, "/files/a%2fb", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(files.requests()[0].path, "/files/a%2Fb");

    // The control plane refuses a route that could never match a normalised path.
    let refused = cp
        .put(
            "/api/v1/routes/dotted",
            &json!({"match": {"path_prefix": "/a/../admin"}, "cluster": "public"}),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.json);
    assert_eq!(refused.json["errors"][0]["field"], "match.path_prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_responses_stay_with_their_consumer() {
    let origin = Upstream::start("origin").await;
    let cp = ControlPlane::start(Db::Sqlite).await;
    cp.put_cluster(&cluster("origin", &origin)).await;
    let acme = consumer_with_key(&cp, "acme").await;
    let bob = consumer_with_key(&cp, "bob").await;
    let mut cached = route("account", "/account", "origin");
    cached["auth"] = json!({"api_key": true});
    cached["cache"] = json!({"ttl_s": 60});
    cp.put_route(&cached).await;
    let proxy = Proxy::start(&cp.xds_url(), "cache-isolation", "").await;

    let caller = |response: &e2e::Response| {
        response.json()["headers"]["x-consumer"]
            .as_str()
            .map(str::to_owned)
    };
    for round in 0..2 {
        for (name, key) in [("acme", &acme), ("bob", &bob)] {
            let response = proxy.get_with("/account", &[("x-api-key", key)]).await;
            assert_eq!(response.status, 200, "{}", response.body_excerpt());
            assert_eq!(
                caller(&response).as_deref(),
                Some(name),
                "round {round}: {name} sees its own body"
            );
            let want = if round == 0 { "MISS" } else { "HIT" };
            assert_eq!(
                response.header("x-cache"),
                Some(want),
                "round {round}, {name}"
            );
        }
    }
    assert_eq!(origin.hits(), 2, "one upstream request per consumer");
    let anonymous = proxy.get("/account").await;
    assert_eq!(anonymous.status, 401, "no key, no cached body");
}

/// An origin that answers every connection with an HTTP/1.0 response and closes, as
/// `python3 -m http.server` does.
async fn http10_origin() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\nhello from 1.0")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_upstream_is_answered_in_http11() {
    let origin = http10_origin().await;
    let cp = ControlPlane::start(Db::Sqlite).await;
    cp.put_cluster(&e2e::resources::cluster("old", &[(&origin, 1)]))
        .await;
    cp.put_route(&route("old", "/", "old")).await;
    let proxy = Proxy::start(&cp.xds_url(), "http10", "").await;
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    let answer = raw::get(&addr, "/", &[]).await;
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{answer:?}");
    assert!(answer.body.contains("hello from 1.0"), "{answer:?}");
}

#[tokio::test]
async fn an_https_control_plane_url_is_a_usage_error() {
    let mut proxy = Proxy::spawn("https://127.0.0.1:1", "tls-cp", "", &[]);
    assert_eq!(
        proxy.exit_code(Duration::from_secs(10)).await,
        Some(64),
        "exit code 64 (EX_USAGE); log: {}",
        proxy.log_tail(5)
    );
    let log = proxy.log_tail(5);
    assert!(
        log.contains("https://127.0.0.1:1") && log.contains("TLS"),
        "{log}"
    );
}
