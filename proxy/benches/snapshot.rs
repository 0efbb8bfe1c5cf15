//! Snapshot build cost with 10 / 1,000 / 10,000 routes, through the proxy's public API:
//!
//! - `router_new`: compiling the router from already validated routes;
//! - `full_sync`: what a first sync costs the proxy — apply one Delta xDS response carrying
//!   every route (decode + validate each) and build the snapshot (`xds_client::delta::apply`
//!   + `Snapshot::build`);
//! - `one_route_change`: what one changed route costs — apply a one-resource response to a
//!   proxy holding N routes and rebuild the snapshot, as the xDS client does per response.
//!   Ideally flat in N; today it is O(N) (the snapshot is rebuilt whole).
//!
//! `cargo bench -p proxy --bench snapshot` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use switchyard_proto::type_url;
use switchyard_proto::v1::{self, route::Action, route_match::Path};
use switchyard_proxy::resource_set::ResourceSet;
use switchyard_proxy::router::Router;
use switchyard_proxy::snapshot::{BuildOptions, Snapshot};
use switchyard_proxy::xds_client::delta;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn route_proto(i: usize, timeout_ms: u32) -> v1::Route {
    v1::Route {
        name: format!("r-{i}"),
        r#match: Some(v1::RouteMatch {
            host: if i % 20 == 19 {
                format!("svc-{i}.example.com")
            } else {
                String::new()
            },
            path: Some(Path::PathPrefix(format!("/api/svc-{i}/v1"))),
            ..Default::default()
        }),
        action: Some(Action::Cluster("origins".into())),
        timeout_ms,
        ..Default::default()
    }
}

fn resource<M: Message>(name: &str, version: &str, url: &str, message: &M) -> Resource {
    Resource {
        name: name.to_owned(),
        version: version.to_owned(),
        resource: Some(Any {
            type_url: url.to_owned(),
            value: message.encode_to_vec(),
        }),
        ..Default::default()
    }
}

fn response(url: &str, nonce: &str, resources: Vec<Resource>) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: nonce.to_owned(),
        type_url: url.to_owned(),
        nonce: nonce.to_owned(),
        resources,
        ..Default::default()
    }
}

fn cluster_response() -> DeltaDiscoveryResponse {
    let cluster = v1::Cluster {
        name: "origins".into(),
        endpoints: vec![
            v1::Endpoint {
                address: "127.0.0.1:18081".into(),
                weight: 1,
                ..Default::default()
            },
            v1::Endpoint {
                address: "127.0.0.1:18082".into(),
                weight: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    response(
        type_url::CLUSTER,
        "1",
        vec![resource("origins", "1", type_url::CLUSTER, &cluster)],
    )
}

fn routes_response(n: usize) -> DeltaDiscoveryResponse {
    let resources = (0..n)
        .map(|i| resource(&format!("r-{i}"), "2", type_url::ROUTE, &route_proto(i, 0)))
        .collect();
    response(type_url::ROUTE, "2", resources)
}

/// A proxy that has applied the cluster and `n` routes, and the snapshot it built.
fn synced(n: usize) -> (ResourceSet, Snapshot) {
    let mut held = ResourceSet::default();
    delta::apply(&mut held, &cluster_response());
    delta::apply(&mut held, &routes_response(n));
    let snapshot = Snapshot::build(held.clone(), &Snapshot::default(), &BuildOptions::default());
    (held, snapshot)
}

fn bench_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for n in SIZES {
        let (held, snapshot) = synced(n);
        assert_eq!(snapshot.router.len(), n);
        let specs: Vec<_> = held.routes.values().map(|h| Arc::clone(&h.spec)).collect();
        group.bench_with_input(BenchmarkId::new("router_new", n), &n, |b, _| {
            b.iter(|| black_box(Router::new(specs.iter().cloned())))
        });

        let routes = routes_response(n);
        let clusters = cluster_response();
        group.bench_with_input(BenchmarkId::new("full_sync", n), &n, |b, _| {
            b.iter(|| {
                let mut held = ResourceSet::default();
                delta::apply(&mut held, &clusters);
                let applied = delta::apply(&mut held, black_box(&routes));
                assert!(applied.errors.is_empty());
                black_box(Snapshot::build(
                    held,
                    &Snapshot::default(),
                    &BuildOptions::default(),
                ))
            })
        });

        let change = response(
            type_url::ROUTE,
            "3",
            vec![resource(
                "r-0",
                "3",
                type_url::ROUTE,
                &route_proto(0, 2_000),
            )],
        );
        group.bench_with_input(BenchmarkId::new("one_route_change", n), &n, |b, _| {
            b.iter_batched_ref(
                || held.clone(),
                |held| {
                    delta::apply(held, black_box(&change));
                    black_box(Snapshot::build(
                        held.clone(),
                        &snapshot,
                        &BuildOptions::default(),
                    ))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_snapshot);
criterion_main!(benches);
