//! The cluster's resilience settings as domain types: the hash key of the hashing policies,
//! active health checking, passive outlier detection and circuit-breaker limits.
//!
//! Zero values on the wire mean "unset" and get the control plane's documented defaults here,
//! so a proxy behaves the same whether or not the control plane wrote them. Running the checks
//! and enforcing the limits is done elsewhere ([`crate::health`], [`crate::outlier`],
//! [`crate::circuit_breaker`]).

use std::time::Duration;

use http::HeaderName;
use switchyard_proto::v1::{self, hash_on};

use super::ClusterError;

/// Default time between health checks.
pub const DEFAULT_HC_INTERVAL: Duration = Duration::from_millis(5000);
/// Default time one health check may take (at most half the interval when `timeout_ms` is
/// unset).
pub const DEFAULT_HC_TIMEOUT: Duration = Duration::from_millis(1000);
/// Default consecutive passing checks to become healthy again.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default consecutive failing checks to become unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default consecutive 5xx / connect failures that eject an endpoint.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
/// Default first ejection time.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_millis(30_000);

/// What the hashing policies hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashOn {
    /// A request header's value (absent header: a random endpoint).
    Header(HeaderName),
    /// A cookie's value (absent cookie: a random endpoint).
    Cookie(String),
    /// The client IP (what `ip_hash` always uses).
    #[default]
    SourceIp,
}

/// Active health checking of every endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// `Some(path)` for an HTTP GET expecting 2xx, `None` for a TCP connect.
    pub http_path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Passive outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSpec {
    pub consecutive_5xx: u32,
    pub base_ejection: Duration,
    /// 0 disables ejection.
    pub max_ejection_percent: u32,
}

/// Per-proxy limits on a cluster; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitBreakerSpec {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
}

impl TryFrom<Option<&v1::HashOn>> for HashOn {
    type Error = ClusterError;

    fn try_from(proto: Option<&v1::HashOn>) -> Result<Self, Self::Error> {
        match proto.and_then(|h| h.key.as_ref()) {
            None | Some(hash_on::Key::SourceIp(_)) => Ok(HashOn::SourceIp),
            Some(hash_on::Key::Header(name)) => {
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map(HashOn::Header)
                    .map_err(|_| ClusterError::BadHashHeader(name.clone()))
            }
            Some(hash_on::Key::Cookie(name)) if name.is_empty() => Err(ClusterError::BadHashCookie),
            Some(hash_on::Key::Cookie(name)) => Ok(HashOn::Cookie(name.clone())),
        }
    }
}

impl TryFrom<&v1::HealthCheck> for HealthCheckSpec {
    type Error = ClusterError;

    fn try_from(proto: &v1::HealthCheck) -> Result<Self, Self::Error> {
        let http_path = if proto.tcp {
            None
        } else if proto.path.starts_with('/')
            && proto.path.parse::<http::uri::PathAndQuery>().is_ok()
        {
            Some(proto.path.clone())
        } else {
            return Err(ClusterError::BadHealthCheckPath(proto.path.clone()));
        };
        let interval = millis_or(proto.interval_ms, DEFAULT_HC_INTERVAL);
        let timeout = millis_or(proto.timeout_ms, DEFAULT_HC_TIMEOUT.min(interval / 2));
        Ok(Self {
            http_path,
            interval,
            // May exceed the interval (as in Envoy and Kong): the next round starts `interval`
            // after the previous one ends, so rounds never overlap.
            timeout,
            healthy_threshold: nonzero_or(proto.healthy_threshold, DEFAULT_HEALTHY_THRESHOLD),
            unhealthy_threshold: nonzero_or(proto.unhealthy_threshold, DEFAULT_UNHEALTHY_THRESHOLD),
        })
    }
}

impl From<&v1::OutlierDetection> for OutlierSpec {
    fn from(proto: &v1::OutlierDetection) -> Self {
        Self {
            consecutive_5xx: nonzero_or(proto.consecutive_5xx, DEFAULT_CONSECUTIVE_5XX),
            base_ejection: millis_or(proto.base_ejection_ms, DEFAULT_BASE_EJECTION),
            max_ejection_percent: proto.max_ejection_percent.min(100),
        }
    }
}

impl From<&v1::CircuitBreaker> for CircuitBreakerSpec {
    fn from(proto: &v1::CircuitBreaker) -> Self {
        let limit = |n: u32| (n > 0).then_some(n);
        Self {
            max_connections: limit(proto.max_connections),
            max_pending_requests: limit(proto.max_pending_requests),
            max_requests: limit(proto.max_requests),
        }
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    match ms {
        0 => default,
        ms => Duration::from_millis(u64::from(ms)),
    }
}

fn nonzero_or(n: u32, default: u32) -> u32 {
    if n == 0 { default } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_zero_values() {
        let hc = HealthCheckSpec::try_from(&v1::HealthCheck {
            path: "/healthz".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(hc.http_path.as_deref(), Some("/healthz"));
        assert_eq!(hc.interval, DEFAULT_HC_INTERVAL);
        assert_eq!(hc.timeout, DEFAULT_HC_TIMEOUT);
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
        let tcp = HealthCheckSpec::try_from(&v1::HealthCheck {
            tcp: true,
            interval_ms: 100,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(tcp.http_path, None);
        assert_eq!(tcp.timeout, Duration::from_millis(50));
        let slow = HealthCheckSpec::try_from(&v1::HealthCheck {
            tcp: true,
            interval_ms: 100,
            timeout_ms: 250,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            slow.timeout,
            Duration::from_millis(250),
            "a timeout above the interval is kept"
        );
        assert!(
            HealthCheckSpec::try_from(&v1::HealthCheck {
                path: "nope".into(),
                ..Default::default()
            })
            .is_err()
        );
        let outlier = OutlierSpec::from(&v1::OutlierDetection::default());
        assert_eq!(outlier.consecutive_5xx, 5);
        assert_eq!(outlier.max_ejection_percent, 0);
        assert_eq!(
            CircuitBreakerSpec::from(&v1::CircuitBreaker::default()),
            CircuitBreakerSpec::default(),
            "no limit set"
        );
    }

    #[test]
    fn hash_keys() {
        let header = v1::HashOn {
            key: Some(hash_on::Key::Header("X-User".into())),
        };
        assert_eq!(
            HashOn::try_from(Some(&header)).unwrap(),
            HashOn::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(HashOn::try_from(None).unwrap(), HashOn::SourceIp);
        let bad = v1::HashOn {
            key: Some(hash_on::Key::Header("a b".into())),
        };
        assert!(HashOn::try_from(Some(&bad)).is_err());
    }
}
