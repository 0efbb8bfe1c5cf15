//! One test per route rule: each invalid field is named with its dotted path.

use serde_json::{Value, json};

use super::*;
use crate::model::walk::{Errors, Obj};

fn check(body: Value) -> Result<Route, Vec<(String, String)>> {
    let mut errs = Errors::default();
    let mut obj = Obj::new("", &body, &mut errs).unwrap();
    let route = parse(&mut obj, &mut errs);
    obj.finish(&mut errs);
    if errs.is_empty() {
        Ok(route)
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

/// A valid route plus `extra`.
fn with(extra: Value) -> Value {
    let mut body = json!({"cluster": "web"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[test]
fn catch_all_route_normalises() {
    let r = check(json!({"cluster": "web"})).unwrap();
    assert_eq!(r.action(), Some(Action::Cluster("web")));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"match": {}, "priority": 0, "cluster": "web"})
    );
}

#[test]
fn exactly_one_action() {
    let errs = check(json!({})).unwrap_err();
    assert_eq!(errs[0].0, "");
    assert!(errs[0].1.contains("got none"), "{errs:?}");
    let errs = check(json!({"cluster": "a", "direct_response": {"status": 200}})).unwrap_err();
    assert_eq!(errs[0].0, "direct_response");
    assert!(errs[0].1.contains("cluster, direct_response"), "{errs:?}");
    assert_eq!(fields(json!({"cluster": "Bad Name"})), ["cluster"]);
}

#[test]
fn match_rules() {
    let errs = check(with(json!({"match": {"path_prefix": 5}}))).unwrap_err();
    assert_eq!(
        errs,
        [(
            "match.path_prefix".to_owned(),
            "must be a string".to_owned()
        )]
    );
    assert_eq!(
        fields(with(json!({"match": {
            "host": "bad host",
            "path_exact": "no-slash",
            "methods": ["GET", "FETCH"],
            "headers": {"bad header": "x", "ok": 1},
            "query": {"": "x"},
            "colour": "red"
        }}))),
        [
            "match.host",
            "match.path_exact",
            "match.methods[1]",
            "match.headers.bad header",
            "match.headers.ok",
            "match.query.",
            "match.colour"
        ]
    );
    assert_eq!(
        fields(with(
            json!({"match": {"path_prefix": "/a", "path_exact": "/a"}})
        )),
        ["match.path_exact"]
    );
    let errs = check(with(json!({"match": {"path_regex": "/a(b"}}))).unwrap_err();
    assert_eq!(errs[0].0, "match.path_regex");
    assert!(errs[0].1.starts_with("invalid regex"), "{errs:?}");
    let r = check(with(
        json!({"match": {"host": "*.Example.com", "methods": ["get"],
        "headers": {"X-A": "b"}, "path_regex": "^/v[0-9]+/"}}),
    ))
    .unwrap();
    assert_eq!(r.matcher.host.as_deref(), Some("*.example.com"));
    assert_eq!(r.matcher.methods, ["GET"]);
    assert!(r.matcher.headers.contains_key("x-a"));
}

#[test]
fn priority_range() {
    assert_eq!(fields(with(json!({"priority": 1001}))), ["priority"]);
    assert_eq!(fields(with(json!({"priority": -1001}))), ["priority"]);
    assert!(check(with(json!({"priority": -1000}))).is_ok());
}

#[test]
fn weighted_clusters_rules() {
    assert_eq!(
        fields(json!({"weighted_clusters": []})),
        ["weighted_clusters"]
    );
    assert_eq!(
        fields(json!({"weighted_clusters": [
            {"cluster": "a", "weight": 0},
            {"cluster": "b", "weight": 10001},
            {"weight": 1},
            {"cluster": "a", "weight": 1}
        ]})),
        [
            "weighted_clusters[0].weight",
            "weighted_clusters[1].weight",
            "weighted_clusters[2].cluster",
            "weighted_clusters[3].cluster"
        ]
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"cluster": format!("c{i}"), "weight": 1}))
        .collect();
    assert_eq!(
        fields(json!({"weighted_clusters": many})),
        ["weighted_clusters"]
    );
}

#[test]
fn aggregate_rules() {
    assert_eq!(
        fields(json!({"aggregate": {"parts": []}})),
        ["aggregate.parts"]
    );
    assert_eq!(fields(json!({"aggregate": {}})), ["aggregate.parts"]);
    assert_eq!(
        fields(json!({"aggregate": {"parts": [
            {"name": "a", "cluster": "x", "path": "rel"},
            {"name": "a", "cluster": "y", "path": "/p"},
            {"cluster": "z", "path": "/q"}
        ]}})),
        [
            "aggregate.parts[0].path",
            "aggregate.parts[1].name",
            "aggregate.parts[2].name"
        ]
    );
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"name": format!("p{i}"), "cluster": "c", "path": "/"}))
        .collect();
    assert_eq!(
        fields(json!({"aggregate": {"parts": many}})),
        ["aggregate.parts"]
    );
}

#[test]
fn direct_response_rules() {
    assert_eq!(
        fields(json!({"direct_response": {"status": 99}})),
        ["direct_response.status"]
    );
    assert_eq!(
        fields(json!({"direct_response": {"status": 600}})),
        ["direct_response.status"]
    );
    assert_eq!(
        fields(json!({"direct_response": {"status": 200, "body": "x".repeat(65_537)}})),
        ["direct_response.body"]
    );
    assert_eq!(
        fields(json!({"direct_response": {}})),
        ["direct_response.status"]
    );
    assert!(check(json!({"direct_response": {"status": 204}})).is_ok());
}

#[test]
fn rewrite_and_header_rules() {
    assert_eq!(fields(with(json!({"rewrite": {}}))), ["rewrite"]);
    assert_eq!(
        fields(with(
            json!({"rewrite": {"strip_prefix": "api", "prefix": "/v2"}})
        )),
        ["rewrite.strip_prefix"]
    );
    assert_eq!(
        fields(with(json!({
            "request_headers": {"set": {"bad name": "v", "x-ok": "bad\nvalue"},
                                "remove": ["ok", "bad name"]},
            "response_headers": {"add": {}}
        }))),
        [
            "request_headers.set.bad name",
            "request_headers.set.x-ok",
            "request_headers.remove[1]",
            "response_headers.add"
        ]
    );
    assert_eq!(
        fields(with(json!({"remove_response_fields": ["a.b", "a..b", ""]}))),
        ["remove_response_fields[1]", "remove_response_fields[2]"]
    );
    assert_eq!(
        fields(with(
            json!({"required_headers": ["x-tenant", "bad header"]})
        )),
        ["required_headers[1]"]
    );
}

#[test]
fn auth_rate_limit_rules() {
    assert_eq!(fields(with(json!({"auth": {}}))), ["auth"]);
    assert_eq!(
        fields(with(json!({"auth": {"jwt": "Bad", "scopes": ["a b"]}}))),
        ["auth.jwt", "auth.scopes[0]"]
    );
    assert_eq!(
        fields(with(
            json!({"rate_limit": {"requests": 0, "per_seconds": 86401, "by": "user"}})
        )),
        [
            "rate_limit.requests",
            "rate_limit.per_seconds",
            "rate_limit.by"
        ]
    );
    assert_eq!(
        fields(with(
            json!({"rate_limit": {"requests": 1, "per_seconds": 1, "by": "consumer"}})
        )),
        ["rate_limit.by"]
    );
    assert!(
        check(with(json!({"auth": {"api_key": true},
            "rate_limit": {"requests": 5, "per_seconds": 1, "by": "consumer"}})))
        .is_ok()
    );
}

#[test]
fn timeout_retries_rules() {
    assert_eq!(fields(with(json!({"timeout_ms": 0}))), ["timeout_ms"]);
    assert_eq!(
        fields(with(json!({"timeout_ms": 3_600_001}))),
        ["timeout_ms"]
    );
    assert_eq!(
        fields(with(
            json!({"retries": {"attempts": 11, "on": ["5xx", "timeout"],
            "per_try_timeout_ms": 0}})
        )),
        [
            "retries.attempts",
            "retries.on[1]",
            "retries.per_try_timeout_ms"
        ]
    );
    assert_eq!(
        fields(with(json!({"timeout_ms": 100,
            "retries": {"attempts": 2, "per_try_timeout_ms": 200}}))),
        ["retries.per_try_timeout_ms"]
    );
    let r = check(with(json!({"retries": {"attempts": 2}}))).unwrap();
    assert_eq!(
        r.retries.unwrap().on,
        [RetryOn::Status5xx, RetryOn::ConnectFailure]
    );
}

#[test]
fn cors_cache_body_compress_rules() {
    assert_eq!(fields(with(json!({"cors": {}}))), ["cors.allow_origins"]);
    assert_eq!(
        fields(with(
            json!({"cors": {"allow_origins": ["ftp://x", "https://ok.example",
            "https://a/b"], "allow_methods": ["GOT"], "allow_headers": ["a b"],
            "max_age_s": 86401}})
        )),
        [
            "cors.allow_origins[0]",
            "cors.allow_origins[2]",
            "cors.allow_methods[0]",
            "cors.allow_headers[0]",
            "cors.max_age_s"
        ]
    );
    assert!(check(with(json!({"cors": {"allow_origins": ["*"]}}))).is_ok());
    assert!(
        check(with(
            json!({"cors": {"allow_origins": ["http://localhost:3000"]}})
        ))
        .is_ok()
    );
    assert_eq!(
        fields(with(json!({"cache": {"ttl_s": 0}}))),
        ["cache.ttl_s"]
    );
    assert_eq!(
        fields(with(json!({"cache": {"ttl_s": 86401}}))),
        ["cache.ttl_s"]
    );
    assert_eq!(
        fields(with(json!({"max_body_bytes": 0}))),
        ["max_body_bytes"]
    );
    assert_eq!(fields(with(json!({"compress": "yes"}))), ["compress"]);
}

#[test]
fn references_name_each_field() {
    let refs = |body: Value| -> Vec<(String, Kind, String)> {
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        parse(&mut obj, &mut errs);
        errs.references()
            .iter()
            .map(|r| (r.field.clone(), r.kind, r.name.clone()))
            .collect()
    };
    let cluster = |field: &str, name: &str| (field.to_owned(), Kind::Cluster, name.to_owned());
    assert_eq!(
        refs(json!({"aggregate": {"parts": [
            {"name": "a", "cluster": "x", "path": "/a"},
            {"name": "b", "cluster": "y", "path": "/b"}]}})),
        [
            cluster("aggregate.parts[0].cluster", "x"),
            cluster("aggregate.parts[1].cluster", "y")
        ]
    );
    // In an invalid body too, each at its own path: a bad entry does not shift the next.
    assert_eq!(
        refs(
            json!({"weighted_clusters": [{"cluster": "a", "weight": 0}, "x",
                                          {"cluster": "b", "weight": 1}],
                    "auth": {"jwt": "idp"}, "match": {"path_prefix": 5}})
        ),
        [
            cluster("weighted_clusters[0].cluster", "a"),
            cluster("weighted_clusters[2].cluster", "b"),
            ("auth.jwt".to_owned(), Kind::JwtProvider, "idp".to_owned()),
        ]
    );
    assert_eq!(
        refs(json!({"cluster": "nope", "match": {"path_prefix": 5}})),
        [cluster("cluster", "nope")]
    );
}

#[test]
fn quota_is_a_reference_and_compress_is_refused() {
    let mut errs = Errors::default();
    let body = with(json!({"quota": "gold"}));
    let mut obj = Obj::new("", &body, &mut errs).unwrap();
    let r = parse(&mut obj, &mut errs);
    assert!(errs.is_empty(), "{:?}", errs.into_vec());
    assert_eq!(r.quota.as_deref(), Some("gold"));
    let refs: Vec<_> = errs
        .references()
        .iter()
        .map(|r| (r.field.as_str(), r.kind, r.name.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("cluster", Kind::Cluster, "web"),
            ("quota", Kind::Quota, "gold")
        ]
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap()["quota"],
        json!("gold"),
        "stored as given"
    );
    assert_eq!(fields(with(json!({"quota": "Gold"}))), ["quota"]);
    assert_eq!(fields(with(json!({"quota": 5}))), ["quota"]);

    let errs = check(with(json!({"compress": true}))).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "compress");
    assert!(errs[0].1.contains("not supported yet"), "{errs:?}");
    let r = check(with(json!({"compress": false, "quota": null}))).unwrap();
    assert!(!r.compress && r.quota.is_none());
}
