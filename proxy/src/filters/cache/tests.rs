//! Cache policy: Cache-Control parsing, keys and Vary, storage rules and the byte-bounded LRU.

use super::*;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

const TTL: Duration = Duration::from_secs(60);

#[test]
fn cache_control_decides_storage_and_ttl() {
    let ok = StatusCode::OK;
    assert_eq!(storable_for(ok, &HeaderMap::new(), TTL, false), Some(TTL));
    let short = headers(&[("cache-control", "public, max-age=5")]);
    assert_eq!(
        storable_for(ok, &short, TTL, false),
        Some(Duration::from_secs(5))
    );
    let long = headers(&[("cache-control", "max-age=600")]);
    assert_eq!(
        storable_for(ok, &long, TTL, false),
        Some(TTL),
        "min of ttl and max-age"
    );
    let shared = headers(&[("cache-control", "max-age=600, s-maxage=7")]);
    assert_eq!(
        storable_for(ok, &shared, TTL, false),
        Some(Duration::from_secs(7))
    );
    for refused in [
        "no-store",
        "private",
        "no-cache",
        "max-age=0",
        "Private, max-age=9",
    ] {
        let h = headers(&[("cache-control", refused)]);
        assert_eq!(storable_for(ok, &h, TTL, false), None, "{refused}");
    }
    assert_eq!(
        storable_for(ok, &headers(&[("vary", "*")]), TTL, false),
        None
    );
    assert_eq!(
        storable_for(ok, &headers(&[("set-cookie", "a=b")]), TTL, false),
        None
    );
    assert_eq!(
        storable_for(
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            TTL,
            false
        ),
        None
    );
    assert_eq!(
        storable_for(ok, &HeaderMap::new(), TTL, true),
        None,
        "authorized request"
    );
    assert_eq!(
        storable_for(ok, &short, TTL, true),
        Some(Duration::from_secs(5)),
        "public"
    );
}

#[test]
fn keys_cover_method_host_path_query_and_vary() {
    let uri: http::Uri = "/a/b?x=1".parse().unwrap();
    let request = headers(&[("host", "API.example.com"), ("accept-language", "fr")]);
    let primary = primary_key(None, &Method::GET, &uri, &request);
    assert_eq!(primary, "GET api.example.com/a/b?x=1");
    assert_ne!(primary, primary_key(None, &Method::HEAD, &uri, &request));
    let vary = [HeaderName::from_static("accept-language")];
    assert_eq!(
        &*full_key(&primary, &vary, &request),
        "GET api.example.com/a/b?x=1\naccept-language:fr"
    );
}

fn get(path: &str, extra: &[(&'static str, &'static str)]) -> http::request::Parts {
    let mut request = Request::get(path).header("host", "h");
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    request.body(()).unwrap().into_parts().0
}

async fn miss_then_store(
    cache: &Arc<ResponseCache>,
    parts: &http::request::Parts,
    response: Response<ProxyBody>,
) {
    miss_then_store_as(cache, parts, None, response).await;
}

async fn miss_then_store_as(
    cache: &Arc<ResponseCache>,
    parts: &http::request::Parts,
    identity: Option<&str>,
    response: Response<ProxyBody>,
) {
    let Lookup::Miss(miss) = cache.lookup(parts, identity) else {
        panic!("expected a miss")
    };
    let stored = cache.store_on_end(miss, response);
    stored.into_body().collect().await.unwrap();
}

fn response(body: &'static str, extra: &[(&'static str, &'static str)]) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.headers_mut() = headers(extra);
    response
}

#[tokio::test]
async fn stores_when_the_body_ends_and_honours_vary() {
    let cache = Arc::new(ResponseCache::new(CacheSpec { ttl: TTL }));
    let parts = get("/x", &[("accept-language", "fr")]);
    miss_then_store(
        &cache,
        &parts,
        response("bonjour", &[("vary", "accept-language")]),
    )
    .await;
    let Lookup::Hit(hit) = cache.lookup(&parts, None) else {
        panic!("expected a hit")
    };
    assert_eq!(hit.headers()[header::AGE], "0");
    assert_eq!(
        &hit.into_body().collect().await.unwrap().to_bytes()[..],
        b"bonjour"
    );
    assert!(matches!(
        cache.lookup(&get("/x", &[("accept-language", "en")]), None),
        Lookup::Miss(_)
    ));
    assert!(matches!(
        cache.lookup(
            &get(
                "/x",
                &[("cache-control", "no-cache"), ("accept-language", "fr")]
            ),
            None
        ),
        Lookup::Miss(_)
    ));
    let post = Request::post("/x").body(()).unwrap().into_parts().0;
    assert!(matches!(cache.lookup(&post, None), Lookup::Bypass));

    let no_store = get("/n", &[]);
    miss_then_store(
        &cache,
        &no_store,
        response("x", &[("cache-control", "no-store")]),
    )
    .await;
    assert!(matches!(cache.lookup(&no_store, None), Lookup::Miss(_)));
}

#[tokio::test]
async fn memory_is_bounded_least_recently_used_first() {
    let cache = Arc::new(ResponseCache::with_limits(
        CacheSpec { ttl: TTL },
        4_000,
        1_500,
    ));
    let body: &'static str = Box::leak("x".repeat(900).into_boxed_str());
    for i in 0..10 {
        let parts = get(&format!("/{i}"), &[]);
        miss_then_store(&cache, &parts, response(body, &[])).await;
        if i == 1 {
            // /0 is used again, so /1 is the least recently used and goes first.
            assert!(matches!(
                cache.lookup(&get("/0", &[]), None),
                Lookup::Hit(_)
            ));
        }
    }
    assert!(cache.bytes() <= 4_000, "{}", cache.bytes());
    assert!(matches!(
        cache.lookup(&get("/9", &[]), None),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        cache.lookup(&get("/1", &[]), None),
        Lookup::Miss(_)
    ));
    let big: &'static str = Box::leak("y".repeat(2_000).into_boxed_str());
    miss_then_store(&cache, &get("/big", &[]), response(big, &[])).await;
    assert!(
        matches!(cache.lookup(&get("/big", &[]), None), Lookup::Miss(_)),
        "over the entry limit"
    );
}

async fn body_of(lookup: Lookup) -> Bytes {
    let Lookup::Hit(hit) = lookup else {
        panic!("expected a hit, got {lookup:?}")
    };
    hit.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn each_identity_has_its_own_partition() {
    let cache = Arc::new(ResponseCache::new(CacheSpec { ttl: TTL }));
    let parts = get("/me", &[]);
    miss_then_store_as(&cache, &parts, Some("acme"), response("acme's", &[])).await;
    assert!(
        matches!(cache.lookup(&parts, Some("bob")), Lookup::Miss(_)),
        "another consumer misses"
    );
    assert!(
        matches!(cache.lookup(&parts, None), Lookup::Miss(_)),
        "an anonymous request misses"
    );
    miss_then_store_as(&cache, &parts, Some("bob"), response("bob's", &[])).await;
    assert_eq!(
        &body_of(cache.lookup(&parts, Some("acme"))).await[..],
        b"acme's"
    );
    assert_eq!(
        &body_of(cache.lookup(&parts, Some("bob"))).await[..],
        b"bob's"
    );

    // A `Vary` on a header an anonymous client controls cannot reach into a partition.
    let public = get("/p", &[]);
    miss_then_store_as(&cache, &public, Some("acme"), response("acme's", &[])).await;
    let spoof = get("/p", &[("x", "acme")]);
    miss_then_store(&cache, &spoof, response("anon", &[("vary", "x")])).await;
    assert_eq!(&body_of(cache.lookup(&spoof, None)).await[..], b"anon");
    assert_eq!(
        &body_of(cache.lookup(&public, Some("acme"))).await[..],
        b"acme's"
    );
}

#[tokio::test]
async fn a_credential_forwarded_to_the_upstream_is_not_shared() {
    let cache = Arc::new(ResponseCache::new(CacheSpec { ttl: TTL }));
    for credential in ["authorization", "x-api-key"] {
        let parts = get("/u", &[(credential, "secret")]);
        miss_then_store(&cache, &parts, response("private", &[])).await;
        assert!(
            matches!(cache.lookup(&get("/u", &[]), None), Lookup::Miss(_)),
            "{credential}: not stored without `public`"
        );
    }
    let parts = get("/shared", &[("authorization", "Basic x")]);
    miss_then_store(
        &cache,
        &parts,
        response("shared", &[("cache-control", "public")]),
    )
    .await;
    assert_eq!(
        &body_of(cache.lookup(&get("/shared", &[]), None)).await[..],
        b"shared"
    );
}
