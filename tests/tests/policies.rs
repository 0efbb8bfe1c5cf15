//! Route policies through the real binaries, configured over the control plane's REST API only:
//! JWT auth with an inline HS256 JWKS (tokens minted here), request and response transforms with
//! validation, CORS preflights, the response cache, aggregation over two clusters (and a part
//! that fails), direct responses and an exact weighted split.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use e2e::ports::free_addr;
use e2e::resources::{cluster, route, route_matching};
use e2e::{ControlPlane, Db, Proxy, Upstream, on_every_database};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_every_database!(
    jwt_auth,
    transforms_and_validation,
    cors_preflight,
    cache_hits,
    aggregation,
    direct_response_and_weighted_split,
);

const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const ISSUER: &str = "https://idp.test/";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An HS256 JWT over `claims`, signed with `secret`, header naming key `k1`.
fn mint(claims: &Value, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let signature = ring::hmac::sign(&key, signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

fn claims(iss: &str, exp: i64, scope: &str) -> Value {
    json!({"iss": iss, "aud": "api", "sub": "alice", "iat": now() - 10, "exp": exp,
           "scope": scope})
}

async fn jwt_auth(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    cp.must(
        "PUT",
        "/api/v1/jwt-providers/idp",
        Some(&json!({
            "name": "idp",
            "issuer": ISSUER,
            "audiences": ["api"],
            "jwks": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256",
                               "k": URL_SAFE_NO_PAD.encode(SECRET)}]},
            "algorithms": ["HS256"],
        })),
    )
    .await;
    let mut secure = route("secure", "/orders", "origin");
    secure["auth"] = json!({"jwt": "idp", "scopes": ["orders:read"]});
    cp.put_route(&secure).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("jwt-{db}"), "").await;

    let valid = mint(&claims(ISSUER, now() + 300, "profile orders:read"), SECRET);
    let ok = proxy
        .get_with(
            "/orders/1",
            &[("authorization", &format!("Bearer {valid}"))],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body_excerpt());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-consumer"), Some("alice"));
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the token never reaches the upstream"
    );

    let refused = |label: &'static str, token: Option<String>, status: u16| {
        let proxy = &proxy;
        async move {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            let got = proxy.get_with("/orders/1", &headers).await;
            assert_eq!(got.status, status, "{label}: {}", got.body_excerpt());
            assert!(
                got.json()["error"].is_string(),
                "{label}: refusal is JSON with an error: {}",
                got.body_excerpt()
            );
        }
    };
    refused("no token", None, 401).await;
    let expired = mint(&claims(ISSUER, now() - 3600, "orders:read"), SECRET);
    refused("expired", Some(expired), 401).await;
    let wrong_issuer = mint(
        &claims("https://evil.test/", now() + 300, "orders:read"),
        SECRET,
    );
    refused("wrong issuer", Some(wrong_issuer), 401).await;
    let wrong_key = mint(
        &claims(ISSUER, now() + 300, "orders:read"),
        b"another secret of thirty-two by.",
    );
    refused("bad signature", Some(wrong_key), 401).await;
    let mut other_audience = claims(ISSUER, now() + 300, "orders:read");
    other_audience["aud"] = json!("another-api");
    refused("wrong audience", Some(mint(&other_audience, SECRET)), 401).await;
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims(ISSUER, now() + 300, "orders:read").to_string())
    );
    refused("alg none", Some(unsigned), 401).await;
    let no_scope = mint(&claims(ISSUER, now() + 300, "orders:write"), SECRET);
    refused("missing scope", Some(no_scope), 403).await;
    assert_eq!(
        upstream.hits(),
        1,
        "refused requests never reach the upstream"
    );
}

async fn transforms_and_validation(db: Db) {
    let upstream = Upstream::start("origin").await;
    upstream.set_response_header("x-internal", "secret");
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    let mut api = route("api", "/api", "origin");
    api["rewrite"] = json!({"strip_prefix": "/api", "prefix": "/v2"});
    api["request_headers"] = json!({"set": {"x-env": "prod"}, "remove": ["x-debug"]});
    api["response_headers"] = json!({"set": {"x-served-by": "switchyard"},
                                     "remove": ["x-internal"]});
    api["remove_response_fields"] = json!(["headers.x-tenant"]);
    api["required_headers"] = json!(["x-tenant"]);
    api["max_body_bytes"] = json!(64);
    cp.put_route(&api).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("transforms-{db}"), "").await;

    let got = proxy
        .get_with(
            "/api/users?id=7",
            &[("x-tenant", "t1"), ("x-debug", "1"), ("x-env", "dev")],
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body_excerpt());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v2/users?id=7");
    assert_eq!(seen[0].header("x-env"), Some("prod"));
    assert_eq!(seen[0].header("x-debug"), None);
    assert_eq!(seen[0].header("x-tenant"), Some("t1"));
    assert_eq!(got.header("x-served-by"), Some("switchyard"));
    assert_eq!(got.header("x-internal"), None);
    let body = got.json();
    assert_eq!(body["path"], "/v2/users?id=7", "{}", got.body_excerpt());
    assert_eq!(body["headers"]["x-env"], "prod");
    assert!(
        body["headers"].get("x-tenant").is_none(),
        "nested field removed: {}",
        got.body_excerpt()
    );

    let missing = proxy.get("/api/users").await;
    assert_eq!(missing.status, 400, "{}", missing.body_excerpt());
    assert!(missing.json()["error"].is_string());

    let small = proxy
        .request(
            "POST",
            "/api/items",
            &[("x-tenant", "t1")],
            Bytes::from_static(b"{\"ok\":true}"),
        )
        .await
        .expect("an answer");
    assert_eq!(small.status, 200, "{}", small.body_excerpt());
    let big = proxy
        .request(
            "POST",
            "/api/items",
            &[("x-tenant", "t1")],
            Bytes::from(vec![b'x'; 1000]),
        )
        .await
        .expect("an answer");
    assert_eq!(big.status, 413, "{}", big.body_excerpt());
    assert_eq!(
        upstream.hits(),
        2,
        "requests refused up front never reach the upstream"
    );
    let streamed = chunked_post(&proxy, "/api/items", &[vec![b'y'; 40], vec![b'z'; 40]]).await;
    assert!(
        streamed.starts_with("HTTP/1.1 413"),
        "a chunked body over the limit: {streamed}"
    );
    // The body streams, so the upstream may have seen the request start, never the whole body.
    let seen = upstream.requests();
    eprintln!(
        "[{db}] streamed over-limit body: upstream saw {} request(s), last body {} bytes",
        seen.len(),
        seen.last().map_or(0, |r| r.body.len())
    );
    assert!(
        seen.iter().all(|r| r.body.len() < 80),
        "whole body forwarded"
    );
}

/// A `POST` with a chunked body (no `content-length`) over a raw connection; the answer's text.
async fn chunked_post(proxy: &Proxy, path: &str, chunks: &[Vec<u8>]) -> String {
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    let exchange = async {
        let mut stream = TcpStream::connect(&addr)
            .await
            .expect("connect to the proxy");
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nx-tenant: t1\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in chunks {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The proxy may answer and close before reading all of it.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("an answer to the chunked POST within 5 s")
}

async fn cors_preflight(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    let mut web = route("web", "/", "origin");
    web["cors"] = json!({"allow_origins": ["https://app.example.com"],
                         "allow_methods": ["GET", "PUT"],
                         "allow_headers": ["x-api-key"], "max_age_s": 600});
    cp.put_route(&web).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("cors-{db}"), "").await;

    let preflight = async |origin: &str, method: &str| {
        proxy
            .request(
                "OPTIONS",
                "/things",
                &[
                    ("origin", origin),
                    ("access-control-request-method", method),
                ],
                Bytes::new(),
            )
            .await
            .expect("an answer")
    };
    let allowed = preflight("https://app.example.com", "PUT").await;
    assert_eq!(allowed.status, 204, "{}", allowed.body_excerpt());
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let bad_origin = preflight("https://evil.example.com", "PUT").await;
    assert_eq!(bad_origin.status, 403, "{}", bad_origin.body_excerpt());
    assert_eq!(bad_origin.header("access-control-allow-origin"), None);
    let bad_method = preflight("https://app.example.com", "DELETE").await;
    assert_eq!(bad_method.status, 403, "{}", bad_method.body_excerpt());
    assert_eq!(upstream.hits(), 0, "preflights are answered by the proxy");

    let actual = proxy
        .get_with("/things", &[("origin", "https://app.example.com")])
        .await;
    assert_eq!(actual.status, 200, "{}", actual.body_excerpt());
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(upstream.hits(), 1);
}

async fn cache_hits(db: Db) {
    let upstream = Upstream::start("origin").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("origin", &[(&upstream.address(), 1)]))
        .await;
    let mut cached = route("cached", "/", "origin");
    cached["cache"] = json!({"ttl_s": 60});
    cp.put_route(&cached).await;
    let private = Upstream::start("private").await;
    cp.put_cluster(&cluster("private", &[(&private.address(), 1)]))
        .await;
    let mut uncacheable = route("uncacheable", "/private", "private");
    uncacheable["cache"] = json!({"ttl_s": 60});
    cp.put_route(&uncacheable).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("cache-{db}"), "").await;

    let first = proxy.get("/catalog?page=1").await;
    assert_eq!(first.status, 200, "{}", first.body_excerpt());
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = proxy.get("/catalog?page=1").await;
    assert_eq!(second.status, 200, "{}", second.body_excerpt());
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
    assert_eq!(upstream.hits(), 1, "the second GET came from the cache");
    let other = proxy.get("/catalog?page=2").await;
    assert_eq!(
        other.header("x-cache"),
        Some("MISS"),
        "the query is in the key"
    );
    assert_eq!(upstream.hits(), 2);
}

async fn aggregation(db: Db) {
    let users = Upstream::start("users").await;
    let orders = Upstream::start("orders").await;
    let slow = Upstream::start("slow").await;
    slow.set_delay(Duration::from_millis(1500));
    let closed = free_addr().to_string();
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("users", &[(&users.address(), 1)]))
        .await;
    cp.put_cluster(&cluster("orders", &[(&orders.address(), 1)]))
        .await;
    cp.put_cluster(&cluster("dead", &[(&closed, 1)])).await;
    cp.put_cluster(&cluster("slow", &[(&slow.address(), 1)]))
        .await;
    cp.put_route(&json!({
        "name": "late", "match": {"path_exact": "/late"}, "timeout_ms": 300,
        "aggregate": {"parts": [{"name": "user", "cluster": "users", "path": "/me"},
                                {"name": "sluggish", "cluster": "slow", "path": "/x"}]},
    }))
    .await;
    cp.put_route(&json!({
        "name": "dashboard", "match": {"path_exact": "/dashboard"}, "timeout_ms": 2000,
        "aggregate": {"parts": [{"name": "user", "cluster": "users", "path": "/me"},
                                {"name": "orders", "cluster": "orders", "path": "/orders"}]},
    }))
    .await;
    cp.put_route(&json!({
        "name": "broken", "match": {"path_exact": "/broken"}, "timeout_ms": 2000,
        "aggregate": {"parts": [{"name": "user", "cluster": "users", "path": "/me"},
                                {"name": "ghost", "cluster": "dead", "path": "/x"}]},
    }))
    .await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("aggregate-{db}"), "").await;

    let got = proxy.get("/dashboard").await;
    assert_eq!(got.status, 200, "{}", got.body_excerpt());
    let body = got.json();
    let keys: Vec<&String> = body
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {}", got.body_excerpt()))
        .keys()
        .collect();
    assert_eq!(keys, ["orders", "user"], "{}", got.body_excerpt());
    assert_eq!(body["user"]["upstream"], "users");
    assert_eq!(body["user"]["path"], "/me");
    assert_eq!(body["orders"]["upstream"], "orders");
    assert_eq!(body["orders"]["path"], "/orders");
    assert_eq!((users.hits(), orders.hits()), (1, 1));

    let failed = proxy.get("/broken").await;
    assert_eq!(failed.status, 502, "{}", failed.body_excerpt());
    let error = failed.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("aggregate part \"ghost\" failed"),
        "error names the failed part: {}",
        failed.body_excerpt()
    );

    let late = proxy.get("/late").await;
    assert_eq!(late.status, 504, "{}", late.body_excerpt());
}

async fn direct_response_and_weighted_split(db: Db) {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let cp = ControlPlane::start(db).await;
    cp.put_cluster(&cluster("blue", &[(&blue.address(), 1)]))
        .await;
    cp.put_cluster(&cluster("green", &[(&green.address(), 1)]))
        .await;
    cp.put_route(&json!({
        "name": "status", "match": {"path_exact": "/status"},
        "direct_response": {"status": 200, "body": "ok"},
    }))
    .await;
    let mut split = route_matching("split", json!({"path_prefix": "/shop"}), "blue");
    split
        .as_object_mut()
        .expect("a route object")
        .remove("cluster");
    split["weighted_clusters"] = json!([{"cluster": "blue", "weight": 90},
                                        {"cluster": "green", "weight": 10}]);
    cp.put_route(&split).await;
    let proxy = Proxy::start(&cp.xds_url(), &format!("split-{db}"), "").await;

    let direct = proxy.get("/status").await;
    assert_eq!(direct.status, 200);
    assert_eq!(direct.text(), "ok");
    assert_eq!(blue.hits() + green.hits(), 0, "answered by the proxy");

    let mut counts = (0, 0);
    for i in 0..100 {
        let got = proxy.get(&format!("/shop/{i}")).await;
        assert_eq!(got.status, 200, "{}", got.body_excerpt());
        match got.upstream().as_deref() {
            Some("blue") => counts.0 += 1,
            Some("green") => counts.1 += 1,
            other => panic!("unexpected upstream {other:?}"),
        }
    }
    assert_eq!(counts, (90, 10), "(blue, green) over 100 requests");
    assert_eq!((blue.hits(), green.hits()), (90, 10));
}
