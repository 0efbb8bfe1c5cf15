//! Gateway policies through a real proxy, configured by the scripted fake xDS server, against
//! real upstreams: API keys and scopes (and revocation), rate limits, validation, transforms,
//! CORS, the response cache and aggregation — each happy path and each refusal.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use support::fake_xds::FakeXds;
use support::http::Got;
use support::{cluster, configure_with_consumers, push, push_consumers, route_to, start_proxy};
use switchyard_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers JSON describing the request (path, headers, body length, a
/// request counter) plus fixed `password` / `profile.secret` fields; `/nostore…` answers
/// `cache-control: no-store`, `/fail` 500, `/text` plain text.
async fn echo(name: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = Arc::clone(&counter);
            let service = service_fn(move |request: Request<Incoming>| {
                let counter = Arc::clone(&counter);
                async move { Ok::<_, Infallible>(answer(name, &counter, request).await) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

async fn answer(
    name: &str,
    counter: &AtomicU64,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let path = request.uri().path().to_owned();
    let path_and_query = request.uri().path_and_query().map(|p| p.to_string());
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().into()))
        .collect();
    let body_len = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len() as i64,
        Err(_) => -1,
    };
    if path.ends_with("/text") {
        return Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(format!("plain from {name}"))))
            .unwrap();
    }
    let body = serde_json::json!({
        "upstream": name,
        "path": path_and_query,
        "headers": headers,
        "body_len": body_len,
        "n": n,
        "password": "hunter2",
        "profile": {"secret": 1, "city": "Lyon"},
    });
    let mut response = Response::builder()
        .status(if path == "/fail" { 500 } else { 200 })
        .header("content-type", "application/json")
        .header("server", "echo");
    if path.starts_with("/nostore") {
        response = response.header("cache-control", "no-store");
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn consumer(name: &str, scopes: &[&str], keys: &[&str]) -> v1::Consumer {
    v1::Consumer {
        name: name.into(),
        scopes: scopes.iter().map(|s| (*s).into()).collect(),
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, key)| v1::ApiKeyHash {
                id: format!("key_{i}"),
                sha256: Sha256::digest(key.as_bytes()).to_vec(),
            })
            .collect(),
        ..Default::default()
    }
}

fn with(mut route: v1::Route, edit: impl FnOnce(&mut v1::Route)) -> v1::Route {
    edit(&mut route);
    route
}

const KEY_ACME: &str = "sy_0000000000000000000000000000000000000000000000000000000000000001";
const KEY_BOB: &str = "sy_0000000000000000000000000000000000000000000000000000000000000002";

#[tokio::test]
async fn api_keys_scopes_and_revocation() {
    let (origin, _) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let keyed = with(route_to("keyed", "/keyed", "web"), |r| {
        r.auth = Some(v1::Auth {
            api_key: true,
            ..Default::default()
        })
    });
    let admin = with(route_to("admin", "/admin", "web"), |r| {
        r.auth = Some(v1::Auth {
            api_key: true,
            scopes: vec!["admin".into()],
            ..Default::default()
        })
    });
    let open = route_to("open", "/open", "web");
    configure_with_consumers(
        &mut fake,
        &[web],
        &[
            consumer("acme", &["admin", "read"], &[KEY_ACME]),
            consumer("bob", &["read"], &[KEY_BOB]),
        ],
        &[keyed, admin, open],
    )
    .await;

    let missing = proxy.http.get(proxy.listen, "/keyed").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json()["error"], "missing API key (x-api-key)");
    assert!(missing.json()["request_id"].is_string());
    assert!(missing.headers.contains_key("www-authenticate"));
    let wrong = proxy
        .http
        .get_with(proxy.listen, "/keyed", &[("x-api-key", "sy_nope")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid API key");

    let ok = proxy
        .http
        .get_with(
            proxy.listen,
            "/keyed",
            &[("x-api-key", KEY_ACME), ("x-consumer", "forged")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let seen = &ok.json()["headers"];
    assert_eq!(
        seen["x-consumer"], "acme",
        "set by the proxy, client value replaced"
    );
    assert!(seen.get("x-api-key").is_none(), "credential stripped");

    let forbidden = proxy
        .http
        .get_with(proxy.listen, "/admin", &[("x-api-key", KEY_BOB)])
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json()["error"], "missing scope \"admin\"");
    let allowed = proxy
        .http
        .get_with(proxy.listen, "/admin", &[("x-api-key", KEY_ACME)])
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        proxy.http.get(proxy.listen, "/open").await.status,
        StatusCode::OK,
        "a route without auth needs no key"
    );

    // Revoke acme's key: the next consumer update takes it away, without a restart.
    push_consumers(
        &mut fake,
        "2",
        &[consumer("acme", &["admin", "read"], &[])],
        &[],
    )
    .await;
    let revoked = proxy
        .http
        .get_with(proxy.listen, "/keyed", &[("x-api-key", KEY_ACME)])
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    // A new key works at once; a deleted consumer's keys stop working.
    push_consumers(
        &mut fake,
        "3",
        &[consumer("acme", &[], &["sy_new"])],
        &["bob"],
    )
    .await;
    let new_key = proxy
        .http
        .get_with(proxy.listen, "/keyed", &[("x-api-key", "sy_new")])
        .await;
    assert_eq!(new_key.status, StatusCode::OK);
    let bob = proxy
        .http
        .get_with(proxy.listen, "/keyed", &[("x-api-key", KEY_BOB)])
        .await;
    assert_eq!(bob.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers_then_recover() {
    let (origin, hits) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let limited = |requests| {
        with(route_to("limited", "/limited", "web"), move |r| {
            r.rate_limit = Some(v1::RateLimit {
                requests,
                per_seconds: 1,
                by: v1::RateLimitKey::Ip as i32,
            })
        })
    };
    configure_with_consumers(&mut fake, std::slice::from_ref(&web), &[], &[limited(2)]).await;

    let first = proxy.http.get(proxy.listen, "/limited").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["ratelimit-limit"], "2");
    assert_eq!(first.headers["ratelimit-remaining"], "1");
    assert_eq!(first.headers["ratelimit-policy"], "2;w=1");
    let second = proxy.http.get(proxy.listen, "/limited").await;
    assert_eq!(second.headers["ratelimit-remaining"], "0");
    let refused = proxy.http.get(proxy.listen, "/limited").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.json()["error"], "rate limit exceeded");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    assert_eq!(refused.headers["ratelimit-reset"], "1");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "refused requests never reach the upstream"
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        proxy.http.get(proxy.listen, "/limited").await.status,
        StatusCode::OK,
        "one token back after half the window"
    );

    // An unrelated config change keeps the buckets; a changed limit takes effect at once.
    push(&mut fake, "2", std::slice::from_ref(&web), &[limited(2)]).await;
    assert_eq!(
        proxy.http.get(proxy.listen, "/limited").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "bucket state survived the update"
    );
    push(&mut fake, "3", &[web], &[limited(100)]).await;
    for _ in 0..10 {
        let got = proxy.http.get(proxy.listen, "/limited").await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.headers["ratelimit-limit"], "100");
    }
}

/// Sends a raw HTTP/1.1 request and returns the status code.
async fn raw_status(addr: SocketAddr, request: &[u8], chunks: &[&[u8]]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    for chunk in chunks {
        // The proxy may have answered (and closed) already: ignore write errors.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buffer[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn validation_body_limits_and_required_headers() {
    let (origin, _) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let upload = with(route_to("upload", "/upload", "web"), |r| {
        r.max_body_bytes = 1_000;
        r.required_headers = vec!["x-tenant".into()];
    });
    configure_with_consumers(&mut fake, &[web], &[], &[upload]).await;

    let missing = proxy.http.get(proxy.listen, "/upload").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json()["error"],
        "missing required header \"x-tenant\""
    );

    let head = "POST /upload HTTP/1.1\r\nhost: x\r\nx-tenant: t\r\ncontent-length: 5000\r\n\r\n";
    assert_eq!(
        raw_status(proxy.listen, head.as_bytes(), &[]).await,
        413,
        "by content-length"
    );

    let small = "POST /upload HTTP/1.1\r\nhost: x\r\nx-tenant: t\r\ncontent-length: 10\r\nconnection: close\r\n\r\n0123456789";
    assert_eq!(raw_status(proxy.listen, small.as_bytes(), &[]).await, 200);

    // Chunked: no length up front, the limit is enforced while streaming.
    let chunked =
        "POST /upload HTTP/1.1\r\nhost: x\r\nx-tenant: t\r\ntransfer-encoding: chunked\r\n\r\n";
    let chunk = format!("190\r\n{}\r\n", "a".repeat(400));
    let chunk = chunk.as_bytes();
    let status = raw_status(
        proxy.listen,
        chunked.as_bytes(),
        &[chunk, chunk, chunk, chunk],
    )
    .await;
    assert_eq!(status, 413, "400-byte chunks cross 1000 bytes on the third");
}

#[tokio::test]
async fn transforms_rewrite_headers_and_response_fields() {
    let (origin, _) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let api = with(route_to("api", "/api", "web"), |r| {
        r.rewrite = Some(v1::Rewrite {
            strip_prefix: "/api".into(),
            prefix: "/v2".into(),
        });
        r.request_headers = Some(v1::HeaderOps {
            set: [("x-env".to_owned(), "prod".to_owned())].into(),
            remove: vec!["x-debug".into()],
        });
        r.response_headers = Some(v1::HeaderOps {
            set: [("x-served-by".to_owned(), "switchyard".to_owned())].into(),
            remove: vec!["server".into()],
        });
        r.remove_response_fields = vec!["password".into(), "profile.secret".into()];
    });
    configure_with_consumers(&mut fake, &[web], &[], &[api]).await;

    let got = proxy
        .http
        .get_with(
            proxy.listen,
            "/api/users?id=7",
            &[("x-debug", "1"), ("x-env", "dev")],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    let json = got.json();
    assert_eq!(json["path"], "/v2/users?id=7");
    assert_eq!(json["headers"]["x-env"], "prod");
    assert!(json["headers"].get("x-debug").is_none());
    assert!(json.get("password").is_none(), "field removed");
    assert_eq!(json["profile"], serde_json::json!({"city": "Lyon"}));
    assert_eq!(got.headers["x-served-by"], "switchyard");
    assert!(!got.headers.contains_key("server"));
    assert_eq!(
        got.headers["content-length"],
        got.body.len().to_string().as_str()
    );
    let text = proxy.http.get(proxy.listen, "/api/text").await;
    assert_eq!(
        text.text(),
        "plain from origin",
        "non-JSON bodies untouched"
    );
}

#[tokio::test]
async fn cors_preflights_and_response_headers() {
    let (origin, hits) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let app = with(route_to("app", "/app", "web"), |r| {
        // OPTIONS is not among them: preflights take the route of the method they announce.
        r.r#match.as_mut().unwrap().methods = vec!["GET".into(), "PUT".into(), "DELETE".into()];
        r.cors = Some(v1::Cors {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["x-api-key".into()],
            max_age_s: 600,
        });
        r.auth = Some(v1::Auth {
            api_key: true,
            ..Default::default()
        });
    });
    configure_with_consumers(
        &mut fake,
        &[web],
        &[consumer("acme", &[], &[KEY_ACME])],
        &[app],
    )
    .await;

    let preflight = |origin: &'static str, method: &'static str| {
        let http = &proxy.http;
        let listen = proxy.listen;
        async move { options(http, listen, "/app/x", origin, method).await }
    };
    let allowed = preflight("https://app.example.com", "PUT").await;
    assert_eq!(
        allowed.status,
        StatusCode::NO_CONTENT,
        "answered before auth"
    );
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(allowed.headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(allowed.headers["access-control-allow-headers"], "x-api-key");
    assert_eq!(allowed.headers["access-control-max-age"], "600");
    assert!(allowed.headers.contains_key("x-request-id"));
    let denied = preflight("https://evil.example", "PUT").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let denied = preflight("https://app.example.com", "DELETE").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "preflights never reach the upstream"
    );

    let simple = proxy
        .http
        .get_with(
            proxy.listen,
            "/app/x",
            &[
                ("origin", "https://app.example.com"),
                ("x-api-key", KEY_ACME),
            ],
        )
        .await;
    assert_eq!(simple.status, StatusCode::OK);
    assert_eq!(
        simple.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(simple.headers["vary"], "origin");
    let unauthorized = proxy
        .http
        .get_with(
            proxy.listen,
            "/app/x",
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert!(
        unauthorized
            .headers
            .contains_key("access-control-allow-origin"),
        "errors carry CORS headers so the page can read them"
    );
    let other = proxy
        .http
        .get_with(
            proxy.listen,
            "/app/x",
            &[("origin", "https://evil.example"), ("x-api-key", KEY_ACME)],
        )
        .await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
}

async fn options(
    http: &support::http::HttpClient,
    listen: SocketAddr,
    path: &str,
    origin: &'static str,
    method: &'static str,
) -> Got {
    http.request_with(
        http::Method::OPTIONS,
        listen,
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "x-api-key"),
        ],
    )
    .await
}

#[tokio::test]
async fn cache_hits_misses_and_no_store() {
    let (origin, hits) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let cached = with(route_to("cached", "/", "web"), |r| {
        r.cache = Some(v1::Cache { ttl_s: 60 });
    });
    configure_with_consumers(
        &mut fake,
        std::slice::from_ref(&web),
        &[],
        std::slice::from_ref(&cached),
    )
    .await;

    let first = proxy.http.get(proxy.listen, "/c?x=1").await;
    assert_eq!(first.headers["x-cache"], "MISS");
    let second = proxy.http.get(proxy.listen, "/c?x=1").await;
    assert_eq!(second.headers["x-cache"], "HIT");
    assert_eq!(second.json()["n"], first.json()["n"], "same stored body");
    assert!(second.headers.contains_key("age"));
    assert_ne!(
        second.headers["x-request-id"],
        first.headers["x-request-id"]
    );
    assert_eq!(
        proxy.http.get(proxy.listen, "/c?x=2").await.headers["x-cache"],
        "MISS",
        "the query is part of the key"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    for _ in 0..2 {
        let no_store = proxy.http.get(proxy.listen, "/nostore").await;
        assert_eq!(no_store.headers["x-cache"], "MISS");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "no-store responses are not kept"
    );

    // The cache survives an unrelated config update.
    push(&mut fake, "2", &[web], &[cached]).await;
    assert_eq!(
        proxy.http.get(proxy.listen, "/c?x=1").await.headers["x-cache"],
        "HIT"
    );
}

#[tokio::test]
async fn aggregation_combines_parts_and_names_the_failing_one() {
    let (users, _) = echo("users").await;
    let (orders, _) = echo("orders").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let part = |name: &str, cluster: &str, path: &str| v1::AggregatePart {
        name: name.into(),
        cluster: cluster.into(),
        path: path.into(),
    };
    let aggregate = |name: &str, prefix: &str, parts: Vec<v1::AggregatePart>| {
        let mut route = route_to(name, prefix, "unused");
        route.action = Some(v1::route::Action::Aggregate(v1::Aggregate { parts }));
        route.timeout_ms = 1_000;
        route
    };
    let dashboard = aggregate(
        "dashboard",
        "/dashboard",
        vec![
            part("user", "users", "/me"),
            part("orders", "orders", "/orders"),
            part("note", "users", "/text"),
        ],
    );
    let broken = aggregate(
        "broken",
        "/broken",
        vec![
            part("user", "users", "/me"),
            part("orders", "orders", "/fail"),
        ],
    );
    configure_with_consumers(
        &mut fake,
        &[
            cluster("users", &[(users, 0)], v1::LbPolicy::RoundRobin),
            cluster("orders", &[(orders, 0)], v1::LbPolicy::RoundRobin),
        ],
        &[],
        &[dashboard, broken],
    )
    .await;

    let got = proxy
        .http
        .get_with(
            proxy.listen,
            "/dashboard?id=3",
            &[("x-api-key", "sy_secret")],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let json = got.json();
    assert_eq!(json["user"]["upstream"], "users");
    assert_eq!(json["user"]["path"], "/me?id=3");
    assert!(json["user"]["headers"].get("x-api-key").is_none());
    assert_eq!(json["orders"]["upstream"], "orders");
    assert_eq!(json["note"], "plain from users");

    let failed = proxy.http.get(proxy.listen, "/broken").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        failed.json()["error"],
        "aggregate part \"orders\" failed: upstream answered 500"
    );
    assert!(failed.json()["request_id"].is_string());
}

const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn token(sub: &str, scope: &str, issuer: &str, expires_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "sub": sub, "iss": issuer, "aud": "api", "scope": scope,
        "iat": now, "exp": now + expires_in,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_bearer_tokens_identify_and_scope() {
    use base64::Engine as _;
    let (origin, _) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(JWT_SECRET);
    let provider = v1::JwtProvider {
        name: "idp".into(),
        issuer: "https://idp.example".into(),
        audiences: vec!["api".into()],
        jwks_json:
            serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": secret}]})
                .to_string(),
        algorithms: vec!["HS256".into()],
        ..Default::default()
    };
    let either = with(route_to("either", "/either", "web"), |r| {
        r.auth = Some(v1::Auth {
            api_key: true,
            jwt: "idp".into(),
            scopes: vec!["orders:read".into()],
        })
    });
    let ghost = with(route_to("ghost", "/ghost", "web"), |r| {
        r.auth = Some(v1::Auth {
            jwt: "nobody".into(),
            ..Default::default()
        })
    });
    support::subscriptions(&mut fake).await;
    push(&mut fake, "1", &[web], &[]).await;
    push_consumers(
        &mut fake,
        "1",
        &[consumer("acme", &["orders:read"], &[KEY_ACME])],
        &[],
    )
    .await;
    let resource = support::fake_xds::resource(
        "idp",
        "1",
        switchyard_proto::type_url::JWT_PROVIDER,
        &provider,
    );
    fake.send(support::fake_xds::response(
        switchyard_proto::type_url::JWT_PROVIDER,
        "j1",
        "1",
        vec![resource],
        &[],
    ));
    support::assert_ack(
        &fake.next_request().await,
        switchyard_proto::type_url::JWT_PROVIDER,
        "j1",
    );
    fake.send(support::fake_xds::response(
        switchyard_proto::type_url::QUOTA,
        "q1",
        "1",
        vec![],
        &[],
    ));
    support::assert_ack(
        &fake.next_request().await,
        switchyard_proto::type_url::QUOTA,
        "q1",
    );
    push(&mut fake, "1", &[], &[either, ghost]).await;

    let good = format!(
        "Bearer {}",
        token("user-42", "orders:read profile", "https://idp.example", 300)
    );
    let got = proxy
        .http
        .get_with(proxy.listen, "/either", &[("authorization", &good)])
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(got.json()["headers"]["x-consumer"], "user-42");
    assert!(
        got.json()["headers"].get("authorization").is_none(),
        "token stripped"
    );
    let by_key = proxy
        .http
        .get_with(proxy.listen, "/either", &[("x-api-key", KEY_ACME)])
        .await;
    assert_eq!(
        by_key.json()["headers"]["x-consumer"],
        "acme",
        "either credential"
    );

    let no_scope = format!(
        "Bearer {}",
        token("user-42", "profile", "https://idp.example", 300)
    );
    let got = proxy
        .http
        .get_with(proxy.listen, "/either", &[("authorization", &no_scope)])
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    for bad in [
        token("user-42", "orders:read", "https://evil.example", 300),
        token("user-42", "orders:read", "https://idp.example", -600),
        "not.a.jwt".to_owned(),
    ] {
        let got = proxy
            .http
            .get_with(
                proxy.listen,
                "/either",
                &[("authorization", &format!("Bearer {bad}"))],
            )
            .await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let unknown = proxy
        .http
        .get_with(proxy.listen, "/ghost", &[("authorization", &good)])
        .await;
    assert_eq!(unknown.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        unknown.json()["error"],
        "JWT provider \"nobody\" is not available"
    );
}

#[tokio::test]
async fn direct_responses_and_policy_free_routes_are_untouched() {
    let (origin, _) = echo("origin").await;
    let mut fake = FakeXds::start().await;
    let proxy = start_proxy(vec![fake.url()]).await;
    let web = cluster("web", &[(origin, 0)], v1::LbPolicy::RoundRobin);
    let mut direct = route_to("direct", "/direct", "web");
    direct.action = Some(v1::route::Action::DirectResponse(v1::DirectResponse {
        status: 418,
        body: "{\"teapot\":true}".into(),
    }));
    let plain = route_to("plain", "/", "web");
    configure_with_consumers(&mut fake, &[web], &[], &[direct, plain]).await;
    let got = proxy.http.get(proxy.listen, "/direct").await;
    assert_eq!(got.status.as_u16(), 418);
    assert_eq!(got.json()["teapot"], true);
    let plain = proxy
        .http
        .get_with(
            proxy.listen,
            "/x",
            &[
                ("x-api-key", "kept"),
                ("origin", "https://a"),
                ("x-consumer", "admin"),
            ],
        )
        .await;
    assert_eq!(plain.json()["headers"]["x-api-key"], "kept");
    assert!(
        plain.json()["headers"].get("x-consumer").is_none(),
        "a client cannot claim an identity"
    );
    for header in ["x-cache", "ratelimit-limit", "access-control-allow-origin"] {
        assert!(!plain.headers.contains_key(header), "{header}");
    }
    assert_eq!(plain.json()["password"], "hunter2");
}
