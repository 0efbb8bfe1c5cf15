//! `clusters`: an upstream service — its endpoints, the balancing policy, health checking,
//! outlier detection and circuit breaking.
//!
//! Defaults are written into the stored spec (endpoint weight 1, `round_robin`, health-check
//! timings), so what `GET` shows is what proxies run. `hash_on` is required by `ring_hash` and
//! `maglev` and refused by every other policy (`ip_hash` always hashes the client address).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::syntax;
use super::walk::{Errors, Obj, as_str};

/// The most endpoints one cluster may list.
pub const MAX_ENDPOINTS: usize = 1000;

/// An upstream service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Cluster {
    /// Where requests go.
    pub endpoints: Vec<Endpoint>,
    /// How a request picks an endpoint.
    pub lb_policy: LbPolicy,
    /// The hash key of `ring_hash` / `maglev`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// Active health checking; none means endpoints are healthy until outlier detection says
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive ejection of endpoints that keep failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Limits on concurrent work per proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Upstream TCP connect timeout (1–60000); none means the proxy default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 60000)]
    pub connect_timeout_ms: Option<u32>,
}

/// One upstream address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// `host:port`: an IPv4 literal, `[IPv6]:port`, or a DNS name the proxy re-resolves.
    #[schema(example = "10.0.0.1:8080")]
    pub address: String,
    /// Relative share of traffic (1–10000, default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: u32,
    /// Zone of the endpoint, for zone-aware balancing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// Lower numbers are used first; higher ones take over when too few are healthy (0–10).
    #[serde(default)]
    #[schema(maximum = 10)]
    pub priority: u32,
}

fn one() -> u32 {
    1
}

/// How a request picks an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Fewest in-flight requests (power of two choices).
    LeastRequest,
    /// Lowest recent latency.
    LeastResponseTime,
    /// Weighted random.
    Random,
    /// Hash of the client IP.
    IpHash,
    /// Consistent hashing on a ring.
    RingHash,
    /// Maglev consistent hashing.
    Maglev,
}

impl LbPolicy {
    const NAMES: [(&'static str, LbPolicy); 7] = [
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request", LbPolicy::LeastRequest),
        ("least_response_time", LbPolicy::LeastResponseTime),
        ("random", LbPolicy::Random),
        ("ip_hash", LbPolicy::IpHash),
        ("ring_hash", LbPolicy::RingHash),
        ("maglev", LbPolicy::Maglev),
    ];

    fn parse(s: &str) -> Result<LbPolicy, String> {
        LbPolicy::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let names: Vec<&str> = LbPolicy::NAMES.iter().map(|(n, _)| *n).collect();
                format!("must be one of {}", names.join(", "))
            })
    }

    /// Whether the policy hashes a request key (and so needs `hash_on`).
    pub fn needs_hash_key(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// The request key of the hashing policies: exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client IP (must be `true`).
    SourceIp(bool),
}

/// Active health checking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    /// HTTP path to GET (required unless `tcp`); 2xx is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Check by TCP connect instead of HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// Time between checks (100–3600000, default 5000).
    #[schema(minimum = 100, maximum = 3600000)]
    pub interval_ms: u32,
    /// Time a check may take (1–3600000, default 1000 or half `interval_ms` if less); may exceed
    /// `interval_ms`: the next check starts `interval_ms` after the previous one ends.
    #[schema(minimum = 1, maximum = 3600000)]
    pub timeout_ms: u32,
    /// Passing checks in a row to become healthy (1–100, default 2).
    #[schema(minimum = 1, maximum = 100)]
    pub healthy_threshold: u32,
    /// Failing checks in a row to become unhealthy (1–100, default 3).
    #[schema(minimum = 1, maximum = 100)]
    pub unhealthy_threshold: u32,
}

/// Passive outlier detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutlierDetection {
    /// 5xx responses in a row that eject an endpoint (1–1000, default 5).
    #[schema(minimum = 1, maximum = 1000)]
    pub consecutive_5xx: u32,
    /// First ejection time, growing with each ejection (1–3600000, default 30000).
    #[schema(minimum = 1, maximum = 3600000)]
    pub base_ejection_ms: u32,
    /// At most this share of endpoints is ejected at once (0–100, default 10).
    #[schema(maximum = 100)]
    pub max_ejection_percent: u32,
}

/// Per-proxy limits; a missing limit is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CircuitBreaker {
    /// Open upstream connections (1–1000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection (1–1000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_pending_requests: Option<u32>,
    /// In-flight requests (1–1000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_requests: Option<u32>,
}

/// Reads and checks a cluster spec; the result is only meaningful when `errs` stays empty.
pub(super) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> Cluster {
    let endpoints: Vec<(String, Endpoint)> = obj
        .array("endpoints", MAX_ENDPOINTS, errs)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(path, value)| Some((path.clone(), endpoint(&path, value, errs)?)))
        .collect();
    for (i, (path, e)) in endpoints.iter().enumerate() {
        if endpoints[..i]
            .iter()
            .any(|(_, prev)| prev.address == e.address)
        {
            errs.add(
                format!("{path}.address"),
                format!("duplicate endpoint {:?}", e.address),
            );
        }
    }
    let endpoints = endpoints.into_iter().map(|(_, e)| e).collect();
    let lb_policy = obj.take("lb_policy", errs, |v| as_str(v).and_then(LbPolicy::parse));
    let hash_on = obj.obj("hash_on", errs).and_then(|o| hash_on(o, errs));
    match (lb_policy, &hash_on) {
        (Some(p), None) if p.needs_hash_key() && !obj.has("hash_on") => errs.add(
            obj.path_of("hash_on"),
            "is required by lb_policy ring_hash and maglev",
        ),
        (p, Some(_)) if !p.unwrap_or_default().needs_hash_key() => errs.add(
            obj.path_of("hash_on"),
            "is only valid with lb_policy ring_hash or maglev (ip_hash always hashes the client IP)",
        ),
        _ => {}
    }
    let health_check = obj
        .obj("health_check", errs)
        .and_then(|o| health_check(o, errs));
    let outlier_detection = obj
        .obj("outlier_detection", errs)
        .map(|o| outlier_detection(o, errs));
    let circuit_breaker = obj
        .obj("circuit_breaker", errs)
        .map(|o| circuit_breaker(o, errs));
    let connect_timeout_ms = obj.int("connect_timeout_ms", 1..=60_000, errs);
    Cluster {
        endpoints,
        lb_policy: lb_policy.unwrap_or_default(),
        hash_on,
        health_check,
        outlier_detection,
        circuit_breaker,
        connect_timeout_ms: connect_timeout_ms.map(|n| n as u32),
    }
}

fn endpoint(path: &str, value: &serde_json::Value, errs: &mut Errors) -> Option<Endpoint> {
    let mut obj = Obj::new(path, value, errs)?;
    let address = obj.require("address", errs, |v| as_str(v).and_then(syntax::address));
    let weight = obj.int("weight", 1..=10_000, errs).unwrap_or(1);
    let zone = obj.take("zone", errs, |v| {
        as_str(v).and_then(|s| match s.len() {
            0..=63 => Ok(s.to_owned()),
            _ => Err("must be at most 63 characters".to_owned()),
        })
    });
    let priority = obj.int("priority", 0..=10, errs).unwrap_or(0);
    obj.finish(errs);
    Some(Endpoint {
        address: address?,
        weight: weight as u32,
        zone: zone.unwrap_or_default(),
        priority: priority as u32,
    })
}

fn hash_on(mut obj: Obj<'_>, errs: &mut Errors) -> Option<HashOn> {
    let header = obj.take("header", errs, |v| as_str(v).and_then(syntax::header_name));
    let cookie = obj.take("cookie", errs, |v| {
        as_str(v).and_then(|s| syntax::token(s, 256))
    });
    let source_ip = obj.take("source_ip", errs, |v| match v.as_bool() {
        Some(true) => Ok(true),
        _ => Err("must be true".to_owned()),
    });
    let set = [obj.has("header"), obj.has("cookie"), obj.has("source_ip")];
    if set.iter().filter(|s| **s).count() != 1 {
        errs.add(
            obj.path(),
            "must set exactly one of header, cookie, source_ip",
        );
    }
    obj.finish(errs);
    match (header, cookie, source_ip) {
        (Some(h), _, _) => Some(HashOn::Header(h)),
        (_, Some(c), _) => Some(HashOn::Cookie(c)),
        (_, _, Some(_)) => Some(HashOn::SourceIp(true)),
        _ => None,
    }
}

fn health_check(mut obj: Obj<'_>, errs: &mut Errors) -> Option<HealthCheck> {
    let tcp = obj.bool("tcp", errs).unwrap_or(false);
    let path = obj.take("path", errs, |v| as_str(v).and_then(syntax::path));
    if !tcp && path.is_none() && !obj.has("path") {
        errs.add(obj.path_of("path"), "is required unless tcp is true");
    }
    let interval_ms = obj.int("interval_ms", 100..=3_600_000, errs);
    // May exceed the interval, as in Envoy and Kong: the next check starts `interval_ms` after
    // the previous one ends, so checks never overlap.
    let timeout_ms = obj.int("timeout_ms", 1..=3_600_000, errs);
    let healthy_threshold = obj.int("healthy_threshold", 1..=100, errs);
    let unhealthy_threshold = obj.int("unhealthy_threshold", 1..=100, errs);
    obj.finish(errs);
    Some(HealthCheck {
        path,
        tcp,
        interval_ms: interval_ms.unwrap_or(5000) as u32,
        timeout_ms: timeout_ms.unwrap_or(1000.min(interval_ms.unwrap_or(5000) / 2)) as u32,
        healthy_threshold: healthy_threshold.unwrap_or(2) as u32,
        unhealthy_threshold: unhealthy_threshold.unwrap_or(3) as u32,
    })
}

fn outlier_detection(mut obj: Obj<'_>, errs: &mut Errors) -> OutlierDetection {
    let consecutive_5xx = obj.int("consecutive_5xx", 1..=1000, errs);
    let base_ejection_ms = obj.int("base_ejection_ms", 1..=3_600_000, errs);
    let max_ejection_percent = obj.int("max_ejection_percent", 0..=100, errs);
    obj.finish(errs);
    OutlierDetection {
        consecutive_5xx: consecutive_5xx.unwrap_or(5) as u32,
        base_ejection_ms: base_ejection_ms.unwrap_or(30_000) as u32,
        max_ejection_percent: max_ejection_percent.unwrap_or(10) as u32,
    }
}

fn circuit_breaker(mut obj: Obj<'_>, errs: &mut Errors) -> CircuitBreaker {
    let mut limit = |key| obj.int(key, 1..=1_000_000, errs).map(|n| n as u32);
    let cb = CircuitBreaker {
        max_connections: limit("max_connections"),
        max_pending_requests: limit("max_pending_requests"),
        max_requests: limit("max_requests"),
    };
    obj.finish(errs);
    cb
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn check(body: Value) -> Result<Cluster, Vec<(String, String)>> {
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        let cluster = parse(&mut obj, &mut errs);
        obj.finish(&mut errs);
        if errs.is_empty() {
            Ok(cluster)
        } else {
            Err(errs
                .into_vec()
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect())
        }
    }

    fn fields(body: Value) -> Vec<String> {
        check(body).unwrap_err().into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn minimal_cluster_gets_defaults() {
        let c = check(json!({"endpoints": [{"address": "10.0.0.1:80"}]})).unwrap();
        assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
        assert_eq!(c.endpoints[0].weight, 1);
        assert_eq!(c.endpoints[0].priority, 0);
        let stored = serde_json::to_value(&c).unwrap();
        assert_eq!(
            stored,
            json!({"endpoints": [{"address": "10.0.0.1:80", "weight": 1, "priority": 0}],
                   "lb_policy": "round_robin"})
        );
        assert_eq!(serde_json::from_value::<Cluster>(stored).unwrap(), c);
    }

    #[test]
    fn full_cluster() {
        let c = check(json!({
            "endpoints": [
                {"address": "a.svc:80", "weight": 3, "zone": "z1", "priority": 0},
                {"address": "[::1]:81", "weight": 10000, "priority": 10}
            ],
            "lb_policy": "ring_hash",
            "hash_on": {"header": "X-User"},
            "health_check": {"path": "/healthz", "interval_ms": 1000, "timeout_ms": 200,
                             "healthy_threshold": 1, "unhealthy_threshold": 100},
            "outlier_detection": {"consecutive_5xx": 3, "base_ejection_ms": 1000,
                                  "max_ejection_percent": 0},
            "circuit_breaker": {"max_connections": 1, "max_pending_requests": 1000000,
                                "max_requests": 5},
            "connect_timeout_ms": 60000
        }))
        .unwrap();
        assert_eq!(c.hash_on, Some(HashOn::Header("x-user".into())));
        assert_eq!(c.health_check.unwrap().timeout_ms, 200);
    }

    #[test]
    fn endpoint_rules() {
        let f = fields(json!({"endpoints": [
            {"address": "10.0.0.1"},
            {"address": "ok:80", "weight": 0},
            {"address": "ok2:80", "weight": 10001, "priority": 11},
            {"weight": 1},
            {"address": 5, "colour": "red"},
            {"address": "ok:80"},
            "nope"
        ]}));
        assert_eq!(
            f,
            [
                "endpoints[0].address",
                "endpoints[1].weight",
                "endpoints[2].weight",
                "endpoints[2].priority",
                "endpoints[3].address",
                "endpoints[4].address",
                "endpoints[4].colour",
                "endpoints[6]",
                "endpoints[5].address",
            ]
        );
    }

    #[test]
    fn policy_and_hash_on() {
        assert_eq!(fields(json!({"lb_policy": "fastest"})), ["lb_policy"]);
        assert_eq!(fields(json!({"lb_policy": "maglev"})), ["hash_on"]);
        assert_eq!(
            fields(json!({"lb_policy": "ip_hash", "hash_on": {"source_ip": true}})),
            ["hash_on"]
        );
        assert_eq!(
            fields(json!({"lb_policy": "ring_hash", "hash_on": {"header": "a", "cookie": "b"}})),
            ["hash_on"]
        );
        assert_eq!(
            fields(json!({"lb_policy": "ring_hash", "hash_on": {"source_ip": false}})),
            ["hash_on.source_ip"]
        );
        assert!(check(json!({"lb_policy": "maglev", "hash_on": {"cookie": "sid"}})).is_ok());
    }

    #[test]
    fn health_check_rules() {
        assert_eq!(fields(json!({"health_check": {}})), ["health_check.path"]);
        assert!(check(json!({"health_check": {"tcp": true}})).is_ok());
        assert_eq!(
            fields(json!({"health_check": {"path": "health", "interval_ms": 99,
                "timeout_ms": 0, "healthy_threshold": 0, "unhealthy_threshold": 101}})),
            [
                "health_check.path",
                "health_check.interval_ms",
                "health_check.timeout_ms",
                "health_check.healthy_threshold",
                "health_check.unhealthy_threshold"
            ]
        );
        for timeout_ms in [1000, 5000] {
            let c = check(json!({"health_check": {"path": "/", "interval_ms": 1000,
                "timeout_ms": timeout_ms}}))
            .unwrap();
            assert_eq!(c.health_check.unwrap().timeout_ms, timeout_ms, "not capped");
        }
        assert_eq!(
            fields(json!({"health_check": {"path": "/", "timeout_ms": 3600001}})),
            ["health_check.timeout_ms"]
        );
        let c = check(json!({"health_check": {"path": "/", "interval_ms": 100}})).unwrap();
        assert_eq!(c.health_check.unwrap().timeout_ms, 50);
    }

    #[test]
    fn outlier_breaker_timeout_rules() {
        assert_eq!(
            fields(json!({
                "outlier_detection": {"consecutive_5xx": 0, "base_ejection_ms": 3600001,
                                      "max_ejection_percent": 101},
                "circuit_breaker": {"max_connections": 0, "max_pending_requests": 1000001,
                                    "max_requests": "1"},
                "connect_timeout_ms": 60001
            })),
            [
                "outlier_detection.consecutive_5xx",
                "outlier_detection.base_ejection_ms",
                "outlier_detection.max_ejection_percent",
                "circuit_breaker.max_connections",
                "circuit_breaker.max_pending_requests",
                "circuit_breaker.max_requests",
                "connect_timeout_ms"
            ]
        );
    }
}
