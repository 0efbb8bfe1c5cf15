//! `ip_hash`: the client IP picks the endpoint, so a client sticks to one endpoint across
//! requests and across proxies of the fleet.
//!
//! Unlike nginx's `ip_hash` (a modulo, which reshuffles most clients when an endpoint is added
//! or removed) this is consistent: it is a [`Maglev`] table keyed by the hash of the source IP
//! (IPv4-mapped IPv6 addresses count as IPv4). `ring_hash` / `maglev` with
//! `hash_on: {source_ip: true}` behave the same; `ip_hash` is the shorthand.

use std::net::IpAddr;

use super::hash::ip_key;
use super::maglev::Maglev;
use super::{Candidates, Member};

/// The `ip_hash` policy.
#[derive(Debug)]
pub struct IpHash {
    table: Maglev,
}

impl IpHash {
    pub fn new(members: &[Member<'_>]) -> Self {
        Self {
            table: Maglev::new(members),
        }
    }

    pub fn pick(&self, client_ip: IpAddr, candidates: &Candidates<'_>) -> Option<usize> {
        self.table.pick(ip_key(client_ip), candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{named_members, states};
    use super::*;

    #[test]
    fn same_ip_same_endpoint_and_spread() {
        let members = named_members(4);
        let policy = IpHash::new(&members);
        let states = states(4);
        let candidates = Candidates::new(&states, &[]);
        let mut counts = [0u32; 4];
        for last in 0..=255u8 {
            for third in 0..40u8 {
                let ip = IpAddr::from([10, 1, third, last]);
                let first = policy.pick(ip, &candidates).unwrap();
                assert_eq!(policy.pick(ip, &candidates), Some(first));
                counts[first] += 1;
            }
        }
        assert!(
            counts.iter().all(|&c| (2000..3100).contains(&c)),
            "{counts:?}"
        );
        let rebuilt = IpHash::new(&members);
        let ip = IpAddr::from([192, 168, 1, 9]);
        assert_eq!(
            rebuilt.pick(ip, &candidates),
            policy.pick(ip, &candidates),
            "deterministic across builds (and proxies)"
        );
    }
}
