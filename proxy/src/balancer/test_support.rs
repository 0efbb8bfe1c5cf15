//! Builders shared by the policy tests.

use std::sync::Arc;

use super::Member;
use crate::endpoint::{EndpointGroup, EndpointState};
use crate::model::ClusterSpec;

/// Addresses `10.0.0.<i>:80`, leaked so members can borrow them for the test's life.
fn address(index: usize) -> &'static str {
    Box::leak(format!("10.0.{}.{}:80", index / 250, index % 250).into_boxed_str())
}

pub fn states(n: usize) -> Vec<Arc<EndpointState>> {
    (0..n)
        .map(|i| Arc::new(EndpointState::new(address(i), 1)))
        .collect()
}

/// A cluster `name` over `addresses`, every other field at its default.
pub fn cluster_proto(name: &str, addresses: &[&str]) -> switchyard_proto::v1::Cluster {
    switchyard_proto::v1::Cluster {
        name: name.into(),
        endpoints: addresses
            .iter()
            .map(|address| switchyard_proto::v1::Endpoint {
                address: (*address).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A round-robin cluster `web` over `addresses`, validated as the xDS client would.
pub fn web_spec(addresses: &[&str]) -> Arc<ClusterSpec> {
    let proto = cluster_proto("web", addresses);
    Arc::new(ClusterSpec::try_from(&proto).expect("a valid cluster"))
}

pub fn cluster() -> Arc<EndpointGroup> {
    Arc::new(EndpointGroup::default())
}

/// Members with the given weights and distinct addresses.
pub fn members(weights: &[u32]) -> Vec<Member<'static>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Member {
            index: i as u32,
            weight,
            address: address(i),
        })
        .collect()
}

pub fn named_members(n: usize) -> Vec<Member<'static>> {
    members(&vec![1; n])
}

/// Share of 100 000 spread keys whose pick differs between `before` and `after`.
pub fn moved_fraction(
    before: impl Fn(u64) -> Option<usize>,
    after: impl Fn(u64) -> Option<usize>,
) -> f64 {
    let keys = 100_000u64;
    let moved = (0..keys)
        .map(super::hash::fmix64)
        .filter(|&key| before(key) != after(key))
        .count();
    moved as f64 / keys as f64
}
