//! Full specs of every kind, validated as the API would, converted and decoded again.

use std::collections::HashMap;

use prost::Message;
use serde_json::json;
use switchyard_proto::v1 as pb;

use super::to_any;
use crate::model::{Kind, validate};

fn convert<M: Message + Default>(kind: Kind, body: serde_json::Value) -> M {
    let v = validate(kind, Some("x"), &body).expect("valid spec");
    let any = to_any(kind, &v.name, &v.spec).expect("converts");
    assert_eq!(any.type_url, kind.type_url());
    M::decode(any.value.as_slice()).expect("decodes")
}

#[test]
fn full_cluster_round_trips() {
    let c: pb::Cluster = convert(
        Kind::Cluster,
        json!({
            "endpoints": [
                {"address": "a.svc:80", "weight": 3, "zone": "z1", "priority": 1},
                {"address": "10.0.0.2:81"}
            ],
            "lb_policy": "maglev",
            "hash_on": {"cookie": "sid"},
            "health_check": {"path": "/hc", "interval_ms": 2000, "timeout_ms": 300,
                             "healthy_threshold": 4, "unhealthy_threshold": 5},
            "outlier_detection": {"consecutive_5xx": 7, "base_ejection_ms": 900,
                                  "max_ejection_percent": 50},
            "circuit_breaker": {"max_connections": 10, "max_pending_requests": 20,
                                "max_requests": 30},
            "connect_timeout_ms": 250
        }),
    );
    let want = pb::Cluster {
        name: "x".into(),
        endpoints: vec![
            pb::Endpoint {
                address: "a.svc:80".into(),
                weight: 3,
                zone: "z1".into(),
                priority: 1,
            },
            pb::Endpoint {
                address: "10.0.0.2:81".into(),
                weight: 1,
                zone: String::new(),
                priority: 0,
            },
        ],
        lb_policy: pb::LbPolicy::Maglev as i32,
        hash_on: Some(pb::HashOn {
            key: Some(pb::hash_on::Key::Cookie("sid".into())),
        }),
        health_check: Some(pb::HealthCheck {
            path: "/hc".into(),
            tcp: false,
            interval_ms: 2000,
            timeout_ms: 300,
            healthy_threshold: 4,
            unhealthy_threshold: 5,
        }),
        outlier_detection: Some(pb::OutlierDetection {
            consecutive_5xx: 7,
            base_ejection_ms: 900,
            max_ejection_percent: 50,
        }),
        circuit_breaker: Some(pb::CircuitBreaker {
            max_connections: 10,
            max_pending_requests: 20,
            max_requests: 30,
        }),
        connect_timeout_ms: 250,
    };
    assert_eq!(c, want);
}

#[test]
fn minimal_cluster_leaves_sub_messages_unset() {
    let c: pb::Cluster = convert(Kind::Cluster, json!({}));
    assert_eq!(c.lb_policy, pb::LbPolicy::RoundRobin as i32);
    assert!(c.hash_on.is_none() && c.health_check.is_none());
    assert!(c.outlier_detection.is_none() && c.circuit_breaker.is_none());
}

#[test]
fn full_route_round_trips() {
    let r: pb::Route = convert(
        Kind::Route,
        json!({
            "match": {"host": "*.example.com", "path_regex": "^/users/[0-9]+$",
                      "methods": ["get", "POST"], "headers": {"X-Env": "prod"},
                      "query": {"v": "2"}},
            "priority": -5,
            "weighted_clusters": [{"cluster": "blue", "weight": 90},
                                  {"cluster": "green", "weight": 10}],
            "rewrite": {"strip_prefix": "/users", "prefix": "/v2"},
            "request_headers": {"set": {"X-A": "1"}, "remove": ["X-B"]},
            "response_headers": {"set": {"x-c": "3"}},
            "remove_response_fields": ["user.password"],
            "auth": {"api_key": true, "jwt": "idp", "scopes": ["read"]},
            "rate_limit": {"requests": 100, "per_seconds": 60, "by": "consumer"},
            "quota": "gold",
            "timeout_ms": 5000,
            "retries": {"attempts": 3, "on": ["reset", "5xx"], "per_try_timeout_ms": 1000},
            "cors": {"allow_origins": ["https://app.example.com"], "allow_methods": ["get"],
                     "allow_headers": ["X-Token"], "max_age_s": 600},
            "cache": {"ttl_s": 30},
            "max_body_bytes": 1048576,
            "required_headers": ["X-Tenant"]
        }),
    );
    let want = pb::Route {
        name: "x".into(),
        r#match: Some(pb::RouteMatch {
            host: "*.example.com".into(),
            path: Some(pb::route_match::Path::PathRegex("^/users/[0-9]+$".into())),
            methods: vec!["GET".into(), "POST".into()],
            headers: HashMap::from([("x-env".into(), "prod".into())]),
            query: HashMap::from([("v".into(), "2".into())]),
        }),
        priority: -5,
        action: Some(pb::route::Action::WeightedClusters(pb::WeightedClusters {
            clusters: vec![
                pb::WeightedCluster {
                    cluster: "blue".into(),
                    weight: 90,
                },
                pb::WeightedCluster {
                    cluster: "green".into(),
                    weight: 10,
                },
            ],
        })),
        rewrite: Some(pb::Rewrite {
            strip_prefix: "/users".into(),
            prefix: "/v2".into(),
        }),
        request_headers: Some(pb::HeaderOps {
            set: HashMap::from([("x-a".into(), "1".into())]),
            remove: vec!["x-b".into()],
        }),
        response_headers: Some(pb::HeaderOps {
            set: HashMap::from([("x-c".into(), "3".into())]),
            remove: vec![],
        }),
        remove_response_fields: vec!["user.password".into()],
        auth: Some(pb::Auth {
            api_key: true,
            jwt: "idp".into(),
            scopes: vec!["read".into()],
        }),
        rate_limit: Some(pb::RateLimit {
            requests: 100,
            per_seconds: 60,
            by: pb::RateLimitKey::Consumer as i32,
        }),
        quota: "gold".into(),
        timeout_ms: 5000,
        retries: Some(pb::Retries {
            attempts: 3,
            on: vec![pb::RetryOn::Reset as i32, pb::RetryOn::RetryOn5xx as i32],
            per_try_timeout_ms: 1000,
        }),
        cors: Some(pb::Cors {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["GET".into()],
            allow_headers: vec!["x-token".into()],
            max_age_s: 600,
        }),
        cache: Some(pb::Cache { ttl_s: 30 }),
        max_body_bytes: 1_048_576,
        required_headers: vec!["x-tenant".into()],
        compress: false,
        allow_encoded_slashes: false,
    };
    assert_eq!(r, want);
}

#[test]
fn route_actions() {
    let r: pb::Route = convert(Kind::Route, json!({"cluster": "web"}));
    assert_eq!(r.action, Some(pb::route::Action::Cluster("web".into())));
    assert!(r.r#match.unwrap().path.is_none());
    assert!(r.auth.is_none() && r.retries.is_none() && r.cors.is_none());

    let r: pb::Route = convert(
        Kind::Route,
        json!({"match": {"path_prefix": "/a"},
               "aggregate": {"parts": [{"name": "u", "cluster": "users", "path": "/me"}]}}),
    );
    let Some(pb::route::Action::Aggregate(a)) = r.action else {
        panic!("aggregate expected");
    };
    assert_eq!(
        (
            a.parts[0].name.as_str(),
            a.parts[0].cluster.as_str(),
            a.parts[0].path.as_str()
        ),
        ("u", "users", "/me")
    );

    let r: pb::Route = convert(
        Kind::Route,
        json!({"match": {"path_exact": "/teapot"},
               "direct_response": {"status": 418, "body": "short and stout"}}),
    );
    assert_eq!(
        r.action,
        Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 418,
            body: "short and stout".into()
        }))
    );
}

#[test]
fn other_kinds() {
    let c: pb::Consumer = convert(Kind::Consumer, json!({"scopes": ["a"], "quota": "q"}));
    assert_eq!(
        (c.name.as_str(), c.scopes, c.quota.as_str()),
        ("x", vec!["a".to_owned()], "q")
    );
    let j: pb::JwtProvider = convert(
        Kind::JwtProvider,
        json!({"issuer": "https://idp", "audiences": ["api"],
               "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "algorithms": ["HS256"]}),
    );
    assert_eq!(j.issuer, "https://idp");
    let jwks: serde_json::Value = serde_json::from_str(&j.jwks_json).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "oct");
    assert_eq!(j.algorithms, ["HS256"]);
    let q: pb::Quota = convert(Kind::Quota, json!({"limit": 1000, "window": "day"}));
    assert_eq!(
        (q.limit, q.window, q.on_unavailable),
        (
            1000,
            pb::QuotaWindow::Day as i32,
            pb::QuotaUnavailable::Allow as i32
        )
    );
    let q: pb::Quota = convert(
        Kind::Quota,
        json!({"limit": 5, "window": "minute", "on_unavailable": "deny"}),
    );
    assert_eq!(
        (q.window, q.on_unavailable),
        (
            pb::QuotaWindow::Minute as i32,
            pb::QuotaUnavailable::Deny as i32
        )
    );
}

#[test]
fn mismatched_spec_is_an_error() {
    let err = to_any(Kind::Route, "r", &json!({"priority": "high"})).unwrap_err();
    assert!(err.to_string().contains("routes \"r\""), "{err}");
}
