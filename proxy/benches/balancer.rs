//! Cost of one balancer pick per policy, with 3 and 1,000 endpoints (all healthy, no zone):
//! what the request path pays to choose an endpoint (the closing-note figures).
//!
//! `cargo bench -p proxy --bench balancer` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use switchyard_proxy::balancer::{Balancer, PickContext};
use switchyard_proxy::endpoint::{EndpointGroup, EndpointState};
use switchyard_proxy::model::{ClusterSpec, EndpointSpec, HashOn, LbPolicy};

const POLICIES: [(&str, LbPolicy); 7] = [
    ("round_robin", LbPolicy::RoundRobin),
    ("random", LbPolicy::Random),
    ("least_request", LbPolicy::LeastRequest),
    ("least_response_time", LbPolicy::LeastResponseTime),
    ("ip_hash", LbPolicy::IpHash),
    ("ring_hash", LbPolicy::RingHash),
    ("maglev", LbPolicy::Maglev),
];

fn balancer(policy: LbPolicy, n: usize) -> Balancer {
    let endpoints: Vec<EndpointSpec> = (0..n)
        .map(|i| {
            let address = format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256);
            EndpointSpec {
                authority: address.parse().unwrap(),
                address,
                weight: 1,
                zone: String::new(),
                priority: 0,
            }
        })
        .collect();
    let spec = ClusterSpec {
        name: "bench".into(),
        lb_policy: policy,
        hash_on: HashOn::Header("x-user".parse().unwrap()),
        health_check: None,
        outlier_detection: None,
        circuit_breaker: Default::default(),
        connect_timeout: Duration::from_secs(1),
        endpoints,
    };
    let states = spec
        .endpoints
        .iter()
        .map(|e| Arc::new(EndpointState::new(&e.address, 1)))
        .collect();
    Balancer::new(&spec, states, Arc::new(EndpointGroup::default()), None)
}

fn picks(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("user-4242"));
    let ctx = PickContext {
        client_ip: [192, 168, 7, 9].into(),
        headers: &headers,
    };
    let mut group = c.benchmark_group("pick");
    for (name, policy) in POLICIES {
        for n in [3, 1_000] {
            let balancer = balancer(policy, n);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(balancer.pick(black_box(&ctx), &[])))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
