//! `switchyard.v1.Cluster` → [`ClusterSpec`]: endpoint addresses parsed into authorities,
//! weights normalised, defaults applied; the resilience settings live in [`resilience`].

pub mod resilience;

use std::net::Ipv6Addr;
use std::time::Duration;

use http::uri::Authority;
use switchyard_proto::v1;

pub use resilience::{CircuitBreakerSpec, HashOn, HealthCheckSpec, OutlierSpec};

/// Upstream connect timeout when the cluster leaves `connect_timeout_ms` at 0.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// An upstream service the proxy can balance across.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub endpoints: Vec<EndpointSpec>,
    pub lb_policy: LbPolicy,
    /// The key of `ring_hash` / `maglev` (`ip_hash` always uses the source IP).
    pub hash_on: HashOn,
    pub health_check: Option<HealthCheckSpec>,
    pub outlier_detection: Option<OutlierSpec>,
    pub circuit_breaker: CircuitBreakerSpec,
    pub connect_timeout: Duration,
}

/// One upstream endpoint; `authority` is pre-parsed so the request path never re-parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub address: String,
    pub authority: Authority,
    /// Never 0: a weight of 0 on the wire means 1.
    pub weight: u32,
    pub zone: String,
    pub priority: u32,
}

/// Balancing policy as configured (see [`crate::balancer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    LeastResponseTime,
    Random,
    IpHash,
    RingHash,
    Maglev,
}

/// Why a cluster was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error("name is empty")]
    EmptyName,
    #[error("endpoints[{index}].address {address:?} is not host:port ({reason})")]
    BadAddress {
        index: usize,
        address: String,
        reason: &'static str,
    },
    #[error("endpoints[{index}].address {address:?} appears more than once")]
    DuplicateEndpoint { index: usize, address: String },
    #[error("lb_policy {0} is unknown")]
    UnknownLbPolicy(i32),
    #[error("hash_on.header {0:?} is not a valid header name")]
    BadHashHeader(String),
    #[error("hash_on.cookie is empty")]
    BadHashCookie,
    #[error("health_check.path {0:?} must be an absolute path (or set tcp)")]
    BadHealthCheckPath(String),
}

impl TryFrom<&v1::Cluster> for ClusterSpec {
    type Error = ClusterError;

    fn try_from(proto: &v1::Cluster) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(ClusterError::EmptyName);
        }
        let lb_policy = match v1::LbPolicy::try_from(proto.lb_policy) {
            Ok(v1::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
            Ok(v1::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
            Ok(v1::LbPolicy::LeastResponseTime) => LbPolicy::LeastResponseTime,
            Ok(v1::LbPolicy::Random) => LbPolicy::Random,
            Ok(v1::LbPolicy::IpHash) => LbPolicy::IpHash,
            Ok(v1::LbPolicy::RingHash) => LbPolicy::RingHash,
            Ok(v1::LbPolicy::Maglev) => LbPolicy::Maglev,
            Err(_) => return Err(ClusterError::UnknownLbPolicy(proto.lb_policy)),
        };
        let mut endpoints: Vec<EndpointSpec> = Vec::with_capacity(proto.endpoints.len());
        for (index, endpoint) in proto.endpoints.iter().enumerate() {
            let authority =
                parse_address(&endpoint.address).map_err(|reason| ClusterError::BadAddress {
                    index,
                    address: endpoint.address.clone(),
                    reason,
                })?;
            if endpoints.iter().any(|e| e.address == endpoint.address) {
                return Err(ClusterError::DuplicateEndpoint {
                    index,
                    address: endpoint.address.clone(),
                });
            }
            endpoints.push(EndpointSpec {
                address: endpoint.address.clone(),
                authority,
                weight: endpoint.weight.max(1),
                zone: endpoint.zone.clone(),
                priority: endpoint.priority,
            });
        }
        let connect_timeout = match proto.connect_timeout_ms {
            0 => DEFAULT_CONNECT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let hash_on = match lb_policy {
            LbPolicy::IpHash => HashOn::SourceIp,
            _ => HashOn::try_from(proto.hash_on.as_ref())?,
        };
        let health_check = proto
            .health_check
            .as_ref()
            .map(HealthCheckSpec::try_from)
            .transpose()?;
        Ok(Self {
            name: proto.name.clone(),
            endpoints,
            lb_policy,
            hash_on,
            health_check,
            outlier_detection: proto.outlier_detection.as_ref().map(OutlierSpec::from),
            circuit_breaker: proto
                .circuit_breaker
                .as_ref()
                .map(CircuitBreakerSpec::from)
                .unwrap_or_default(),
            connect_timeout,
        })
    }
}

/// Checks `host:port` (host: DNS name, IPv4, or `[IPv6]`; port 1–65535).
fn parse_address(address: &str) -> Result<Authority, &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("missing :port")?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("port must be 1-65535"),
        Ok(_) => {}
    }
    if host.is_empty() {
        return Err("empty host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unterminated [")?;
        inner.parse::<Ipv6Addr>().map_err(|_| "bad IPv6 address")?;
    } else if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("bad host name");
    }
    address.parse::<Authority>().map_err(|_| "bad authority")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(addresses: &[&str]) -> v1::Cluster {
        crate::balancer::test_support::cluster_proto("c", addresses)
    }

    #[test]
    fn accepts_hosts_and_defaults() {
        let spec = ClusterSpec::try_from(&cluster(&["127.0.0.1:80", "[::1]:8080", "svc.local:9"]))
            .unwrap();
        assert_eq!(spec.endpoints.len(), 3);
        assert_eq!(spec.endpoints[0].weight, 1, "weight 0 means 1");
        assert_eq!(spec.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(spec.lb_policy, LbPolicy::RoundRobin);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "nohost", "a:0", "a:99999", ":80", "[::1:80", "a b:80", "::1:80",
        ] {
            let err = ClusterSpec::try_from(&cluster(&[bad])).unwrap_err();
            assert!(
                matches!(err, ClusterError::BadAddress { index: 0, .. }),
                "{bad}: {err}"
            );
        }
        let err = ClusterSpec::try_from(&cluster(&["a:1", "a:1"])).unwrap_err();
        assert!(matches!(
            err,
            ClusterError::DuplicateEndpoint { index: 1, .. }
        ));
        let mut unnamed = cluster(&[]);
        unnamed.name.clear();
        assert_eq!(
            ClusterSpec::try_from(&unnamed),
            Err(ClusterError::EmptyName)
        );
        let mut policy = cluster(&[]);
        policy.lb_policy = 42;
        assert_eq!(
            ClusterSpec::try_from(&policy),
            Err(ClusterError::UnknownLbPolicy(42))
        );
    }
}
