//! Per-request cost of the API-key and rate-limit filters' core work: hashing and looking up
//! an `x-api-key` among 10 / 10,000 consumers' keys, and one rate-limit decision for a
//! route-wide bucket (lock-free) and for a per-IP bucket among 10,000 tracked addresses.
//!
//! `cargo bench -p proxy --bench filters` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_proto::v1;
use switchyard_proxy::filters::auth::ConsumerIndex;
use switchyard_proxy::filters::rate_limit::{BucketKey, RateLimiter};
use switchyard_proxy::model::{ConsumerSpec, RateLimitBy, RateLimitSpec};

fn consumers(n: usize) -> Vec<ConsumerSpec> {
    (0..n)
        .map(|i| {
            let key = format!("sy_{i:064}");
            let proto = v1::Consumer {
                name: format!("consumer-{i}"),
                scopes: vec!["read".into()],
                quota: String::new(),
                keys: vec![v1::ApiKeyHash {
                    id: format!("key_{i}"),
                    sha256: ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
                        .as_ref()
                        .to_vec(),
                }],
            };
            ConsumerSpec::try_from(&proto).expect("valid consumer")
        })
        .collect()
}

fn api_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("api_key_lookup");
    for n in [10, 10_000] {
        let specs = consumers(n);
        let index = ConsumerIndex::build(&specs);
        let key = format!("sy_{:064}", n / 2);
        group.bench_function(n.to_string(), |b| {
            b.iter(|| black_box(index.lookup(black_box(key.as_bytes()))).is_some())
        });
    }
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_check");
    // Never trips: the benchmark measures the decision, not refusals.
    let limit = |by| RateLimitSpec {
        requests: u32::MAX,
        per_seconds: 1,
        by,
    };
    let route = RateLimiter::new(limit(RateLimitBy::Route));
    group.bench_function("route", |b| b.iter(|| black_box(route.check(None)).allowed));
    let by_ip = RateLimiter::new(limit(RateLimitBy::Ip));
    for i in 0..10_000u32 {
        by_ip.check(Some(BucketKey::Ip(IpAddr::V4(Ipv4Addr::from(i)))));
    }
    let ip = IpAddr::V4(Ipv4Addr::from(4242));
    group.bench_function("ip_among_10000", |b| {
        b.iter(|| black_box(by_ip.check(Some(BucketKey::Ip(black_box(ip))))).allowed)
    });
    group.finish();
}

criterion_group!(benches, api_key, rate_limit);
criterion_main!(benches);
