//! Wire protos rendered as JSON for `/config_dump`, in the REST API's shape (field names as in
//! the `.proto`, enums as lowercase names, unset sub-messages omitted).

use serde_json::{Map, Value, json};
use switchyard_proto::v1::{self, hash_on, route::Action, route_match::Path};

pub fn cluster(cluster: &v1::Cluster) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(cluster.name));
    let endpoints: Vec<Value> = cluster
        .endpoints
        .iter()
        .map(|e| json!({"address": e.address, "weight": e.weight, "zone": e.zone, "priority": e.priority}))
        .collect();
    out.insert("endpoints".into(), Value::Array(endpoints));
    let policy = v1::LbPolicy::try_from(cluster.lb_policy)
        .map(|p| {
            p.as_str_name()
                .trim_start_matches("LB_POLICY_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| cluster.lb_policy.to_string());
    out.insert("lb_policy".into(), json!(policy));
    if let Some(key) = cluster.hash_on.as_ref().and_then(|h| h.key.as_ref()) {
        let hash_on = match key {
            hash_on::Key::Header(name) => json!({"header": name}),
            hash_on::Key::Cookie(name) => json!({"cookie": name}),
            hash_on::Key::SourceIp(on) => json!({"source_ip": on}),
        };
        out.insert("hash_on".into(), hash_on);
    }
    if let Some(h) = &cluster.health_check {
        out.insert(
            "health_check".into(),
            json!({"path": h.path, "tcp": h.tcp, "interval_ms": h.interval_ms,
                   "timeout_ms": h.timeout_ms, "healthy_threshold": h.healthy_threshold,
                   "unhealthy_threshold": h.unhealthy_threshold}),
        );
    }
    if let Some(o) = &cluster.outlier_detection {
        out.insert(
            "outlier_detection".into(),
            json!({"consecutive_5xx": o.consecutive_5xx, "base_ejection_ms": o.base_ejection_ms,
                   "max_ejection_percent": o.max_ejection_percent}),
        );
    }
    if let Some(c) = &cluster.circuit_breaker {
        out.insert(
            "circuit_breaker".into(),
            json!({"max_connections": c.max_connections,
                   "max_pending_requests": c.max_pending_requests, "max_requests": c.max_requests}),
        );
    }
    out.insert(
        "connect_timeout_ms".into(),
        json!(cluster.connect_timeout_ms),
    );
    Value::Object(out)
}

pub fn route(route: &v1::Route) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(route.name));
    if let Some(m) = &route.r#match {
        let mut matcher = Map::new();
        matcher.insert("host".into(), json!(m.host));
        match &m.path {
            Some(Path::PathPrefix(p)) => matcher.insert("path_prefix".into(), json!(p)),
            Some(Path::PathExact(p)) => matcher.insert("path_exact".into(), json!(p)),
            Some(Path::PathRegex(p)) => matcher.insert("path_regex".into(), json!(p)),
            None => None,
        };
        matcher.insert("methods".into(), json!(m.methods));
        matcher.insert("headers".into(), json!(m.headers));
        matcher.insert("query".into(), json!(m.query));
        out.insert("match".into(), Value::Object(matcher));
    }
    out.insert("priority".into(), json!(route.priority));
    match &route.action {
        Some(Action::Cluster(name)) => {
            out.insert("cluster".into(), json!(name));
        }
        Some(Action::WeightedClusters(w)) => {
            let list: Vec<Value> = w
                .clusters
                .iter()
                .map(|c| json!({"cluster": c.cluster, "weight": c.weight}))
                .collect();
            out.insert("weighted_clusters".into(), Value::Array(list));
        }
        Some(Action::Aggregate(a)) => {
            let parts: Vec<Value> = a
                .parts
                .iter()
                .map(|p| json!({"name": p.name, "cluster": p.cluster, "path": p.path}))
                .collect();
            out.insert("aggregate".into(), json!({ "parts": parts }));
        }
        Some(Action::DirectResponse(d)) => {
            out.insert(
                "direct_response".into(),
                json!({"status": d.status, "body": d.body}),
            );
        }
        None => {}
    }
    if let Some(r) = &route.rewrite {
        out.insert(
            "rewrite".into(),
            json!({"strip_prefix": r.strip_prefix, "prefix": r.prefix}),
        );
    }
    for (key, ops) in [
        ("request_headers", &route.request_headers),
        ("response_headers", &route.response_headers),
    ] {
        if let Some(ops) = ops {
            out.insert(key.into(), json!({"set": ops.set, "remove": ops.remove}));
        }
    }
    if !route.remove_response_fields.is_empty() {
        out.insert(
            "remove_response_fields".into(),
            json!(route.remove_response_fields),
        );
    }
    if let Some(a) = &route.auth {
        out.insert(
            "auth".into(),
            json!({"api_key": a.api_key, "jwt": a.jwt, "scopes": a.scopes}),
        );
    }
    if let Some(r) = &route.rate_limit {
        let by = v1::RateLimitKey::try_from(r.by)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("RATE_LIMIT_KEY_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| r.by.to_string());
        out.insert(
            "rate_limit".into(),
            json!({"requests": r.requests, "per_seconds": r.per_seconds, "by": by}),
        );
    }
    if !route.quota.is_empty() {
        out.insert("quota".into(), json!(route.quota));
    }
    out.insert("timeout_ms".into(), json!(route.timeout_ms));
    if let Some(r) = &route.retries {
        let on: Vec<String> =
            r.on.iter()
                .map(|o| {
                    v1::RetryOn::try_from(*o)
                        .map(|k| {
                            k.as_str_name()
                                .trim_start_matches("RETRY_ON_")
                                .to_ascii_lowercase()
                        })
                        .unwrap_or_else(|_| o.to_string())
                })
                .collect();
        out.insert(
            "retries".into(),
            json!({"attempts": r.attempts, "on": on, "per_try_timeout_ms": r.per_try_timeout_ms}),
        );
    }
    if let Some(c) = &route.cors {
        out.insert(
            "cors".into(),
            json!({"allow_origins": c.allow_origins, "allow_methods": c.allow_methods,
                   "allow_headers": c.allow_headers, "max_age_s": c.max_age_s}),
        );
    }
    if let Some(c) = &route.cache {
        out.insert("cache".into(), json!({"ttl_s": c.ttl_s}));
    }
    if route.max_body_bytes != 0 {
        out.insert("max_body_bytes".into(), json!(route.max_body_bytes));
    }
    if !route.required_headers.is_empty() {
        out.insert("required_headers".into(), json!(route.required_headers));
    }
    out.insert("compress".into(), json!(route.compress));
    if route.allow_encoded_slashes {
        out.insert("allow_encoded_slashes".into(), json!(true));
    }
    Value::Object(out)
}

/// A consumer without its key hashes: name, scopes, quota and key ids.
pub fn consumer(consumer: &v1::Consumer) -> Value {
    json!({
        "name": consumer.name,
        "scopes": consumer.scopes,
        "quota": consumer.quota,
        "key_ids": consumer.keys.iter().map(|key| key.id.as_str()).collect::<Vec<_>>(),
    })
}

/// A JWT provider without key material: an inline JWKS may hold HMAC secrets, so only the
/// number of its keys is shown.
pub fn jwt_provider(provider: &v1::JwtProvider) -> Value {
    let inline_keys = serde_json::from_str::<Value>(&provider.jwks_json)
        .ok()
        .and_then(|jwks| jwks.get("keys").and_then(Value::as_array).map(Vec::len));
    json!({
        "name": provider.name,
        "issuer": provider.issuer,
        "audiences": provider.audiences,
        "algorithms": provider.algorithms,
        "jwks_uri": provider.jwks_uri,
        "inline_keys": inline_keys,
    })
}

/// A quota.
pub fn quota(quota: &v1::Quota) -> Value {
    let window = match v1::QuotaWindow::try_from(quota.window) {
        Ok(v1::QuotaWindow::Minute) => "minute",
        Ok(v1::QuotaWindow::Hour) => "hour",
        Ok(v1::QuotaWindow::Day) => "day",
        Err(_) => "unknown",
    };
    json!({"name": quota.name, "limit": quota.limit, "window": window})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cluster_and_route() {
        let c = v1::Cluster {
            name: "web".into(),
            endpoints: vec![v1::Endpoint {
                address: "127.0.0.1:80".into(),
                weight: 2,
                ..Default::default()
            }],
            lb_policy: v1::LbPolicy::LeastRequest as i32,
            ..Default::default()
        };
        let json = cluster(&c);
        assert_eq!(json["lb_policy"], "least_request");
        assert_eq!(json["endpoints"][0]["weight"], 2);
        let r = v1::Route {
            name: "r".into(),
            r#match: Some(v1::RouteMatch {
                path: Some(Path::PathPrefix("/api".into())),
                ..Default::default()
            }),
            action: Some(Action::Cluster("web".into())),
            ..Default::default()
        };
        let json = route(&r);
        assert_eq!(json["match"]["path_prefix"], "/api");
        assert_eq!(json["cluster"], "web");
    }

    #[test]
    fn secrets_are_not_dumped() {
        let consumer = consumer(&v1::Consumer {
            name: "acme".into(),
            keys: vec![v1::ApiKeyHash {
                id: "key_1".into(),
                sha256: vec![0xab; 32],
            }],
            ..Default::default()
        });
        assert_eq!(consumer["key_ids"], json!(["key_1"]));
        assert!(!consumer.to_string().contains("abab"));
        let provider = jwt_provider(&v1::JwtProvider {
            name: "idp".into(),
            jwks_json: r#"{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldA"}]}"#.into(),
            ..Default::default()
        });
        assert_eq!(provider["inline_keys"], 1);
        assert!(!provider.to_string().contains("c2VjcmV0"));
    }
}
