//! The supervisor against real sockets: health-check tasks started, kept, replaced and stopped
//! as snapshots are published, and snapshot builds that need no runtime at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard_proto::v1;
use tokio::net::TcpListener;

use super::*;
use crate::balancer::test_support::cluster_proto;
use crate::model::ClusterSpec;
use crate::resource_set::{Held, ResourceSet};
use crate::snapshot::BuildOptions;

fn cluster(name: &str, addresses: &[&str], checked: bool) -> Held<v1::Cluster, ClusterSpec> {
    let proto = v1::Cluster {
        health_check: checked.then(|| v1::HealthCheck {
            path: "/healthz".into(),
            interval_ms: 20,
            timeout_ms: 100,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            ..Default::default()
        }),
        ..cluster_proto(name, addresses)
    };
    Held {
        version: "1".into(),
        spec: Arc::new(ClusterSpec::try_from(&proto).unwrap()),
        proto: Arc::new(proto),
    }
}

fn build(clusters: Vec<Held<v1::Cluster, ClusterSpec>>, previous: &Snapshot) -> Arc<Snapshot> {
    let mut resources = ResourceSet::default();
    for held in clusters {
        resources.clusters.insert(held.proto.name.clone(), held);
    }
    Arc::new(Snapshot::build(
        resources,
        previous,
        &BuildOptions::default(),
    ))
}

/// An upstream that accepts and hangs up at once (every HTTP check fails), counting accepts.
async fn hanging_up_upstream() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (address, accepted, task)
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_removed_check_stops_its_task_and_clears_its_verdicts() {
    let (address, accepted, upstream) = hanging_up_upstream().await;
    let cell = Arc::new(SnapshotCell::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let supervisor = tokio::spawn(run(Arc::clone(&cell), stop_rx));

    let checked = build(vec![cluster("web", &[&address], true)], &cell.load());
    cell.publish(Arc::clone(&checked));
    let endpoint = Arc::clone(&checked.clusters["web"].balancer.states()[0]);
    eventually("the failing check marks the endpoint down", || {
        !endpoint.is_available()
    })
    .await;

    let unchecked = build(vec![cluster("web", &[&address], false)], &checked);
    assert!(
        Arc::ptr_eq(&unchecked.clusters["web"].balancer.states()[0], &endpoint),
        "the endpoint state is carried over"
    );
    assert!(!endpoint.is_available(), "building changes no endpoint");
    cell.publish(unchecked);
    eventually("no check: the endpoint takes traffic again", || {
        endpoint.is_available()
    })
    .await;
    let probes = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        probes,
        "the stopped task probes no more"
    );
    assert!(endpoint.is_available(), "and no late verdict lands");

    stop_tx.send(true).unwrap();
    supervisor.await.unwrap();
    upstream.abort();
}

#[tokio::test]
async fn a_check_is_kept_while_its_cluster_is_and_replaced_when_it_changes() {
    let mut supervisor = Supervisor::default();
    let first = build(
        vec![cluster("web", &["127.0.0.1:9"], true)],
        &Snapshot::default(),
    );
    supervisor.reconcile(&first).await;
    let task = |supervisor: &Supervisor| supervisor.health["web"].task.id();
    let started = task(&supervisor);

    let unrelated = build(
        vec![
            cluster("web", &["127.0.0.1:9"], true),
            cluster("api", &["127.0.0.1:10"], false),
        ],
        &first,
    );
    supervisor.reconcile(&unrelated).await;
    assert_eq!(task(&supervisor), started, "same check, same endpoints");
    assert_eq!(
        supervisor.health.len(),
        1,
        "no task for a cluster without a check"
    );

    let moved = build(
        vec![cluster("web", &["127.0.0.1:9", "127.0.0.1:11"], true)],
        &unrelated,
    );
    supervisor.reconcile(&moved).await;
    assert_ne!(task(&supervisor), started, "new endpoints: a new task");

    supervisor.reconcile(&build(vec![], &moved)).await;
    assert!(
        supervisor.health.is_empty(),
        "a removed cluster's task is stopped"
    );
    supervisor.shutdown().await;
}

/// Outside any Tokio runtime: a build with health checks and a `jwks_uri` provider succeeds
/// and starts nothing (before the supervisor, health checks silently did not run here).
#[test]
fn snapshots_build_without_a_runtime() {
    let mut resources = ResourceSet::default();
    let checked = cluster("web", &["127.0.0.1:9"], true);
    resources.clusters.insert("web".into(), checked);
    let proto = v1::JwtProvider {
        name: "idp".into(),
        issuer: "https://idp.example".into(),
        jwks_uri: "https://idp.example/jwks.json".into(),
        algorithms: vec!["RS256".into()],
        ..Default::default()
    };
    let spec = crate::jwt::JwtProviderSpec::try_from(&proto).unwrap();
    resources.jwt_providers.insert(
        "idp".into(),
        Held {
            version: "1".into(),
            spec: Arc::new(spec),
            proto: Arc::new(proto),
        },
    );
    let snapshot = Snapshot::build(resources, &Snapshot::default(), &BuildOptions::default());
    assert!(snapshot.clusters["web"].spec.health_check.is_some());
    let verifier = snapshot.jwt.get("idp").unwrap();
    assert!(
        verifier.refresher().is_some(),
        "its refresh is the caller's to run"
    );
}
