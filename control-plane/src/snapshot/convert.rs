//! Stored specs → `switchyard.v1` protobuf messages in `Any` payloads.
//!
//! Specs were validated by [`crate::model`] when written, so they are read back with serde and
//! mapped field by field; a failure here means a bug or a spec written by an incompatible
//! version. Optional sub-messages stay `None` when unset; enums go by value. Nothing is
//! validated again here (the proxy does that on receipt).

use prost::Message;
use serde::de::DeserializeOwned;
use switchyard_proto::v1 as pb;

use crate::model::cluster::{self, HashOn, LbPolicy};
use crate::model::quota::{QuotaUnavailable, QuotaWindow};
use crate::model::route::{self, RateLimitKey, RetryOn};
use crate::model::{Cluster, Consumer, JwtProvider, Kind, Quota, Route};

/// Why a stored spec could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?}: stored spec does not match the model: {source}")]
pub struct ConvertError {
    /// Kind of the resource.
    pub kind: Kind,
    /// Name of the resource.
    pub name: String,
    /// The serde error.
    pub source: serde_json::Error,
}

/// Converts the stored spec of `kind` / `name` into its wire message, packed in an `Any`.
pub fn to_any(
    kind: Kind,
    name: &str,
    spec: &serde_json::Value,
) -> Result<prost_types::Any, ConvertError> {
    let value = match kind {
        Kind::Cluster => cluster_to_proto(name, &decode(kind, name, spec)?).encode_to_vec(),
        Kind::Route => route_to_proto(name, &decode(kind, name, spec)?).encode_to_vec(),
        Kind::Consumer => consumer_to_proto(name, &decode(kind, name, spec)?).encode_to_vec(),
        Kind::JwtProvider => {
            jwt_provider_to_proto(name, &decode(kind, name, spec)?).encode_to_vec()
        }
        Kind::Quota => quota_to_proto(name, &decode(kind, name, spec)?).encode_to_vec(),
    };
    Ok(prost_types::Any {
        type_url: kind.type_url().to_owned(),
        value,
    })
}

fn decode<T: DeserializeOwned>(
    kind: Kind,
    name: &str,
    spec: &serde_json::Value,
) -> Result<T, ConvertError> {
    T::deserialize(spec).map_err(|source| ConvertError {
        kind,
        name: name.to_owned(),
        source,
    })
}

/// A cluster as its wire message.
pub fn cluster_to_proto(name: &str, c: &Cluster) -> pb::Cluster {
    pb::Cluster {
        name: name.to_owned(),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| pb::Endpoint {
                address: e.address.clone(),
                weight: e.weight,
                zone: e.zone.clone(),
                priority: e.priority,
            })
            .collect(),
        lb_policy: lb_policy(c.lb_policy) as i32,
        hash_on: c.hash_on.as_ref().map(|h| pb::HashOn {
            key: Some(match h {
                HashOn::Header(s) => pb::hash_on::Key::Header(s.clone()),
                HashOn::Cookie(s) => pb::hash_on::Key::Cookie(s.clone()),
                HashOn::SourceIp(b) => pb::hash_on::Key::SourceIp(*b),
            }),
        }),
        health_check: c.health_check.as_ref().map(health_check),
        outlier_detection: c.outlier_detection.as_ref().map(|o| pb::OutlierDetection {
            consecutive_5xx: o.consecutive_5xx,
            base_ejection_ms: o.base_ejection_ms,
            max_ejection_percent: o.max_ejection_percent,
        }),
        circuit_breaker: c.circuit_breaker.as_ref().map(|b| pb::CircuitBreaker {
            max_connections: b.max_connections.unwrap_or(0),
            max_pending_requests: b.max_pending_requests.unwrap_or(0),
            max_requests: b.max_requests.unwrap_or(0),
        }),
        connect_timeout_ms: c.connect_timeout_ms.unwrap_or(0),
    }
}

fn lb_policy(p: LbPolicy) -> pb::LbPolicy {
    match p {
        LbPolicy::RoundRobin => pb::LbPolicy::RoundRobin,
        LbPolicy::LeastRequest => pb::LbPolicy::LeastRequest,
        LbPolicy::LeastResponseTime => pb::LbPolicy::LeastResponseTime,
        LbPolicy::Random => pb::LbPolicy::Random,
        LbPolicy::IpHash => pb::LbPolicy::IpHash,
        LbPolicy::RingHash => pb::LbPolicy::RingHash,
        LbPolicy::Maglev => pb::LbPolicy::Maglev,
    }
}

fn health_check(h: &cluster::HealthCheck) -> pb::HealthCheck {
    pb::HealthCheck {
        path: h.path.clone().unwrap_or_default(),
        tcp: h.tcp,
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
    }
}

/// A route as its wire message.
pub fn route_to_proto(name: &str, r: &Route) -> pb::Route {
    let m = &r.matcher;
    let path = match (&m.path_prefix, &m.path_exact, &m.path_regex) {
        (Some(p), _, _) => Some(pb::route_match::Path::PathPrefix(p.clone())),
        (_, Some(p), _) => Some(pb::route_match::Path::PathExact(p.clone())),
        (_, _, Some(p)) => Some(pb::route_match::Path::PathRegex(p.clone())),
        _ => None,
    };
    pb::Route {
        name: name.to_owned(),
        r#match: Some(pb::RouteMatch {
            host: m.host.clone().unwrap_or_default(),
            path,
            methods: m.methods.clone(),
            headers: m.headers.clone().into_iter().collect(),
            query: m.query.clone().into_iter().collect(),
        }),
        priority: r.priority,
        action: r.action().map(action),
        rewrite: r.rewrite.as_ref().map(|w| pb::Rewrite {
            strip_prefix: w.strip_prefix.clone().unwrap_or_default(),
            prefix: w.prefix.clone().unwrap_or_default(),
        }),
        request_headers: r.request_headers.as_ref().map(header_ops),
        response_headers: r.response_headers.as_ref().map(header_ops),
        remove_response_fields: r.remove_response_fields.clone(),
        auth: r.auth.as_ref().map(|a| pb::Auth {
            api_key: a.api_key,
            jwt: a.jwt.clone().unwrap_or_default(),
            scopes: a.scopes.clone(),
        }),
        rate_limit: r.rate_limit.as_ref().map(|l| pb::RateLimit {
            requests: l.requests,
            per_seconds: l.per_seconds,
            by: match l.by {
                RateLimitKey::Route => pb::RateLimitKey::Route,
                RateLimitKey::Consumer => pb::RateLimitKey::Consumer,
                RateLimitKey::Ip => pb::RateLimitKey::Ip,
            } as i32,
        }),
        quota: r.quota.clone().unwrap_or_default(),
        timeout_ms: r.timeout_ms.unwrap_or(0),
        retries: r.retries.as_ref().map(|t| pb::Retries {
            attempts: t.attempts,
            on: t
                .on
                .iter()
                .map(|on| match on {
                    RetryOn::Status5xx => pb::RetryOn::RetryOn5xx,
                    RetryOn::ConnectFailure => pb::RetryOn::ConnectFailure,
                    RetryOn::Reset => pb::RetryOn::Reset,
                } as i32)
                .collect(),
            per_try_timeout_ms: t.per_try_timeout_ms.unwrap_or(0),
        }),
        cors: r.cors.as_ref().map(|c| pb::Cors {
            allow_origins: c.allow_origins.clone(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            max_age_s: c.max_age_s.unwrap_or(0),
        }),
        cache: r.cache.as_ref().map(|c| pb::Cache { ttl_s: c.ttl_s }),
        max_body_bytes: r.max_body_bytes.unwrap_or(0),
        required_headers: r.required_headers.clone(),
        compress: r.compress,
        allow_encoded_slashes: r.allow_encoded_slashes,
    }
}

fn action(a: route::Action<'_>) -> pb::route::Action {
    match a {
        route::Action::Cluster(c) => pb::route::Action::Cluster(c.to_owned()),
        route::Action::WeightedClusters(w) => {
            pb::route::Action::WeightedClusters(pb::WeightedClusters {
                clusters: w
                    .iter()
                    .map(|w| pb::WeightedCluster {
                        cluster: w.cluster.clone(),
                        weight: w.weight,
                    })
                    .collect(),
            })
        }
        route::Action::Aggregate(a) => pb::route::Action::Aggregate(pb::Aggregate {
            parts: a
                .parts
                .iter()
                .map(|p| pb::AggregatePart {
                    name: p.name.clone(),
                    cluster: p.cluster.clone(),
                    path: p.path.clone(),
                })
                .collect(),
        }),
        route::Action::DirectResponse(d) => pb::route::Action::DirectResponse(pb::DirectResponse {
            status: u32::from(d.status),
            body: d.body.clone(),
        }),
    }
}

fn header_ops(h: &route::HeaderOps) -> pb::HeaderOps {
    pb::HeaderOps {
        set: h.set.clone().into_iter().collect(),
        remove: h.remove.clone(),
    }
}

/// A consumer with its API key hashes, packed in an `Any`.
pub fn consumer_to_any(
    name: &str,
    spec: &serde_json::Value,
    keys: Vec<pb::ApiKeyHash>,
) -> Result<prost_types::Any, ConvertError> {
    let mut consumer = consumer_to_proto(name, &decode(Kind::Consumer, name, spec)?);
    consumer.keys = keys;
    Ok(prost_types::Any {
        type_url: Kind::Consumer.type_url().to_owned(),
        value: consumer.encode_to_vec(),
    })
}

/// A consumer as its wire message, without keys (see [`consumer_to_any`]).
pub fn consumer_to_proto(name: &str, c: &Consumer) -> pb::Consumer {
    pb::Consumer {
        name: name.to_owned(),
        scopes: c.scopes.clone(),
        quota: c.quota.clone().unwrap_or_default(),
        keys: Vec::new(),
    }
}

/// A JWT provider as its wire message.
pub fn jwt_provider_to_proto(name: &str, j: &JwtProvider) -> pb::JwtProvider {
    pb::JwtProvider {
        name: name.to_owned(),
        issuer: j.issuer.clone(),
        audiences: j.audiences.clone(),
        jwks_json: j.jwks.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        jwks_uri: j.jwks_uri.clone().unwrap_or_default(),
        algorithms: j.algorithms.clone(),
    }
}

/// A quota as its wire message.
pub fn quota_to_proto(name: &str, q: &Quota) -> pb::Quota {
    pb::Quota {
        name: name.to_owned(),
        limit: q.limit,
        window: match q.window {
            QuotaWindow::Minute => pb::QuotaWindow::Minute,
            QuotaWindow::Hour => pb::QuotaWindow::Hour,
            QuotaWindow::Day => pb::QuotaWindow::Day,
        } as i32,
        on_unavailable: match q.on_unavailable {
            QuotaUnavailable::Allow => pb::QuotaUnavailable::Allow,
            QuotaUnavailable::Deny => pb::QuotaUnavailable::Deny,
        } as i32,
    }
}

#[cfg(test)]
mod tests;
