//! Route matching with 10 / 1,000 / 10,000 routes, through the proxy's public router API.
//!
//! The route table is a realistic mix (see [`routes`]): mostly path prefixes with distinct
//! prefixes on any host, some exact-host and `*.suffix` routes, a few exact paths, and a
//! catch-all. The router pre-sorts each host list by priority then path length, so a request
//! whose best route has a *short* prefix is decided near the end of its list; the cases:
//!
//! - `short_prefix_near_end`: `GET /static/app.js` → route `/static` (after every longer prefix);
//! - `catch_all`: `GET /` → route `/` (the very last entry of the any-host list);
//! - `long_prefix`: `GET /api/svc-<last>/v1/users` → its own prefix route (sorted among the first);
//! - `exact_host`: `Host: svc-<i>.example.com` → answered from the host index.
//!
//! `cargo bench -p proxy --bench router` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use switchyard_proto::v1::{self, route::Action, route_match::Path};
use switchyard_proxy::model::RouteSpec;
use switchyard_proxy::router::Router;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn route(name: String, host: &str, path: Path) -> Arc<RouteSpec> {
    let proto = v1::Route {
        name,
        r#match: Some(v1::RouteMatch {
            host: host.to_owned(),
            path: Some(path),
            ..Default::default()
        }),
        action: Some(Action::Cluster("origins".into())),
        ..Default::default()
    };
    Arc::new(RouteSpec::try_from(&proto).expect("valid route"))
}

/// `n` routes: per 100, 90 path prefixes `/api/svc-<i>/v1` (any host), 5 exact hosts
/// `svc-<i>.example.com`, 3 `*.tenant-<i>.example.org`, 2 exact paths; plus `/static` and `/`.
fn routes(n: usize) -> Vec<Arc<RouteSpec>> {
    let mut routes = Vec::with_capacity(n + 2);
    for i in 0..n.saturating_sub(2) {
        let name = format!("r-{i}");
        routes.push(match i % 100 {
            0..=89 => route(name, "", Path::PathPrefix(format!("/api/svc-{i}/v1"))),
            90..=94 => route(
                name,
                &format!("svc-{i}.example.com"),
                Path::PathPrefix("/".into()),
            ),
            95..=97 => route(
                name,
                &format!("*.tenant-{i}.example.org"),
                Path::PathPrefix("/".into()),
            ),
            _ => route(name, "", Path::PathExact(format!("/health/svc-{i}"))),
        });
    }
    routes.push(route(
        "static".into(),
        "",
        Path::PathPrefix("/static".into()),
    ));
    routes.push(route("catch-all".into(), "", Path::PathPrefix("/".into())));
    routes
}

fn request(host: &str, target: &str) -> (Method, Uri, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(host).expect("valid host"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    (Method::GET, target.parse().expect("valid uri"), headers)
}

fn bench_router(c: &mut Criterion) {
    let mut group = c.benchmark_group("router");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for n in SIZES {
        let router = Router::new(routes(n));
        let last_prefix = (0..n.saturating_sub(2))
            .rev()
            .find(|i| i % 100 < 90)
            .unwrap_or(0);
        let last_host = (0..n.saturating_sub(2))
            .rev()
            .find(|i| (90..95).contains(&(i % 100)));
        let mut cases = vec![
            (
                "short_prefix_near_end",
                request("www.example.com", "/static/app.js"),
                "static".to_owned(),
            ),
            (
                "catch_all",
                request("www.example.com", "/"),
                "catch-all".to_owned(),
            ),
            (
                "long_prefix",
                request(
                    "www.example.com",
                    &format!("/api/svc-{last_prefix}/v1/users?id=7"),
                ),
                format!("r-{last_prefix}"),
            ),
        ];
        if let Some(i) = last_host {
            cases.push((
                "exact_host",
                request(&format!("svc-{i}.example.com:8000"), "/orders/42"),
                format!("r-{i}"),
            ));
        }
        for (case, (method, uri, headers), expected) in cases {
            let picked = router
                .route(&method, &uri, &headers)
                .map(|r| r.spec.name.clone());
            assert_eq!(
                picked.as_deref(),
                Some(expected.as_str()),
                "{case} with {n} routes"
            );
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, _| {
                b.iter(|| {
                    black_box(router.route(
                        black_box(&method),
                        black_box(&uri),
                        black_box(&headers),
                    ))
                    .is_some()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_router);
criterion_main!(benches);
