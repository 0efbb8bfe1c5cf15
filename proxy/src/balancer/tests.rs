//! Balancer-level behaviour: priority failover and return, zone preference and overload
//! spill, every policy skipping unavailable and already-tried endpoints.

use std::sync::Arc;

use http::HeaderMap;

use super::*;
use crate::endpoint::InFlightGuard;
use crate::model::{ClusterSpec, EndpointSpec};

fn endpoint(address: &str, zone: &str, priority: u32) -> EndpointSpec {
    EndpointSpec {
        address: address.into(),
        authority: address.parse().unwrap(),
        weight: 1,
        zone: zone.into(),
        priority,
    }
}

fn spec(policy: LbPolicy, endpoints: Vec<EndpointSpec>) -> ClusterSpec {
    ClusterSpec {
        name: "c".into(),
        endpoints,
        lb_policy: policy,
        hash_on: HashOn::SourceIp,
        health_check: None,
        outlier_detection: None,
        circuit_breaker: Default::default(),
        connect_timeout: std::time::Duration::from_secs(1),
    }
}

fn build(spec: &ClusterSpec, zone: Option<&str>) -> (Balancer, Arc<EndpointGroup>) {
    let cluster = Arc::new(EndpointGroup::default());
    let states = spec
        .endpoints
        .iter()
        .map(|e| Arc::new(EndpointState::new(&e.address, 1)))
        .collect();
    (
        Balancer::new(spec, states, Arc::clone(&cluster), zone),
        cluster,
    )
}

fn counts(balancer: &Balancer, picks: usize) -> Vec<usize> {
    let headers = HeaderMap::new();
    let mut counts = vec![0; balancer.states().len()];
    for i in 0..picks {
        let ctx = PickContext {
            client_ip: IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]),
            headers: &headers,
        };
        counts[balancer.pick(&ctx, &[]).expect("an endpoint")] += 1;
    }
    counts
}

#[test]
fn priority_failover_and_return() {
    let spec = spec(
        LbPolicy::RoundRobin,
        vec![
            endpoint("a:1", "", 0),
            endpoint("b:1", "", 0),
            endpoint("c:1", "", 1),
        ],
    );
    let (balancer, cluster) = build(&spec, None);
    assert_eq!(counts(&balancer, 100), [50, 50, 0], "priority 0 takes all");
    balancer.states()[0].set_active_healthy(false, &cluster);
    // Half of priority 0 healthy: 1.4 × 50% = 70% stays, 30% spills to priority 1.
    let spread = counts(&balancer, 10_000);
    assert_eq!(spread[0], 0);
    assert!((6500..7500).contains(&spread[1]), "{spread:?}");
    balancer.states()[1].set_active_healthy(false, &cluster);
    assert_eq!(counts(&balancer, 100), [0, 0, 100], "fails over whole");
    balancer.states()[0].set_active_healthy(true, &cluster);
    balancer.states()[1].set_active_healthy(true, &cluster);
    assert_eq!(counts(&balancer, 100), [50, 50, 0], "returns");
    assert_eq!(balancer.healthy_count(), 3);
}

#[test]
fn all_unavailable_is_none() {
    let spec = spec(LbPolicy::LeastRequest, vec![endpoint("a:1", "", 0)]);
    let (balancer, cluster) = build(&spec, None);
    balancer.states()[0].set_ejected(true, &cluster);
    let headers = HeaderMap::new();
    let ctx = PickContext {
        client_ip: [127, 0, 0, 1].into(),
        headers: &headers,
    };
    assert_eq!(balancer.pick(&ctx, &[]), None);
    assert_eq!(balancer.healthy_count(), 0);
}

#[test]
fn zone_preferred_while_healthy_and_not_overloaded() {
    let spec = spec(
        LbPolicy::RoundRobin,
        vec![
            endpoint("a:1", "z1", 0),
            endpoint("b:1", "z2", 0),
            endpoint("c:1", "z2", 0),
        ],
    );
    let (balancer, cluster) = build(&spec, Some("z1"));
    assert!(balancer.is_local(0) && !balancer.is_local(1));
    assert_eq!(counts(&balancer, 90), [90, 0, 0], "same zone first");
    // Overloaded: 10 in flight on the one local endpoint vs a cluster average of 10/3.
    let busy: Vec<_> = (0..10)
        .map(|_| InFlightGuard::new(&balancer.states()[0], &cluster, true))
        .collect();
    assert_eq!(counts(&balancer, 90), [30, 30, 30], "spills to all zones");
    drop(busy);
    balancer.states()[0].set_active_healthy(false, &cluster);
    assert_eq!(counts(&balancer, 90), [0, 45, 45], "local zone down");
    let (no_zone, _) = build(&spec, None);
    assert_eq!(counts(&no_zone, 90), [30, 30, 30]);
}

#[test]
fn every_policy_skips_unavailable_and_tried() {
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastRequest,
        LbPolicy::LeastResponseTime,
        LbPolicy::IpHash,
        LbPolicy::RingHash,
        LbPolicy::Maglev,
    ] {
        let spec = spec(
            policy,
            vec![
                endpoint("10.0.0.1:80", "", 0),
                endpoint("10.0.0.2:80", "", 0),
                endpoint("10.0.0.3:80", "", 0),
            ],
        );
        let (balancer, cluster) = build(&spec, None);
        let spread = counts(&balancer, 3000);
        assert!(spread.iter().all(|&c| c > 500), "{policy:?}: {spread:?}");
        balancer.states()[1].set_active_healthy(false, &cluster);
        assert_eq!(counts(&balancer, 300)[1], 0, "{policy:?}");
        let headers = HeaderMap::new();
        let ctx = PickContext {
            client_ip: [127, 0, 0, 1].into(),
            headers: &headers,
        };
        for _ in 0..50 {
            assert_eq!(balancer.pick(&ctx, &[0]), Some(2), "{policy:?}");
        }
    }
}

#[test]
fn hash_policies_are_sticky() {
    let mut spec = spec(
        LbPolicy::RingHash,
        (1..=5)
            .map(|i| endpoint(&format!("10.0.0.{i}:80"), "", 0))
            .collect(),
    );
    spec.hash_on = HashOn::Header("x-user".parse().unwrap());
    for policy in [LbPolicy::RingHash, LbPolicy::Maglev] {
        spec.lb_policy = policy;
        let (balancer, _) = build(&spec, None);
        let (again, _) = build(&spec, None);
        for user in ["alice", "bob", "carol", "dave"] {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", user.parse().unwrap());
            let ctx = PickContext {
                client_ip: [127, 0, 0, 1].into(),
                headers: &headers,
            };
            let first = balancer.pick(&ctx, &[]);
            for _ in 0..10 {
                assert_eq!(balancer.pick(&ctx, &[]), first, "{policy:?}");
            }
            assert_eq!(again.pick(&ctx, &[]), first, "same on another proxy");
        }
    }
}
