//! JSON builders for the REST shapes of SPEC §2, so tests read as the config they set up.
//! Extra fields are added on the returned `Value` (`route["timeout_ms"] = json!(200)`).

use serde_json::{Value, json};

/// A `round_robin` cluster over `(address, weight)` endpoints.
pub fn cluster(name: &str, endpoints: &[(&str, u32)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, weight)| json!({"address": address, "weight": weight}))
        .collect();
    json!({"name": name, "lb_policy": "round_robin", "endpoints": endpoints})
}

/// A route sending `path_prefix` to `cluster`.
pub fn route(name: &str, path_prefix: &str, cluster: &str) -> Value {
    route_matching(name, json!({"path_prefix": path_prefix}), cluster)
}

/// A route with a full `match` object.
pub fn route_matching(name: &str, matcher: Value, cluster: &str) -> Value {
    json!({"name": name, "match": matcher, "cluster": cluster})
}

/// Whether any string anywhere in `json` (keys or values) equals `needle`.
pub fn mentions(json: &Value, needle: &str) -> bool {
    match json {
        Value::String(s) => s == needle,
        Value::Array(items) => items.iter().any(|item| mentions(item, needle)),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key == needle || mentions(value, needle)),
        _ => false,
    }
}
