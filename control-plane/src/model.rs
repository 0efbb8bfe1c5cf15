//! Validated domain types of the config resources, and their validation from REST JSON.
//!
//! Validation walks the raw JSON so that every invalid field is reported at once, each with
//! its dotted path (`match.path_prefix`, `endpoints[2].address`). A validated spec is stored as
//! normalised JSON (defaults filled in, names lowercased, without `name` / `version` /
//! `updated_at`) and read back with serde (trusted). This module does no I/O: references to
//! other resources are returned for the store to check inside its transaction.
//!
//! # Layout
//! - [`walk`]: the JSON walker that records errors and unknown fields.
//! - [`syntax`]: names, hosts, addresses, headers, paths.
//! - one module per kind: [`cluster`], [`route`], [`consumer`], [`jwt_provider`], [`quota`].
//! - [`diff`]: what differs between two configs, per resource and field.

pub mod cluster;
pub mod consumer;
pub mod diff;
pub mod jwt_provider;
mod kind;
pub mod quota;
pub mod route;
pub mod syntax;
pub mod walk;

pub use cluster::Cluster;
pub use consumer::Consumer;
pub use jwt_provider::JwtProvider;
pub use kind::Kind;
pub use quota::Quota;
pub use route::Route;
pub use walk::FieldError;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use walk::{Errors, Obj, as_str};

/// A reference from one resource's field to another resource. Validation records one for every
/// field that names another resource; the store enforces them: a put fails if the target is
/// missing, a delete fails while anything refers to the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The referring field's path, e.g. `cluster` or `weighted_clusters[1].cluster`.
    pub field: String,
    /// Kind of the referenced resource.
    pub kind: Kind,
    /// Name of the referenced resource.
    pub name: String,
}

/// A spec that passed validation, ready for the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The resource name (from the URL, or from the body for `POST`).
    pub name: String,
    /// The normalised spec to store.
    pub spec: Value,
    /// What the spec refers to, for the store to check.
    pub refs: Vec<Reference>,
}

/// A body that failed validation: every invalid field, and the references its valid names
/// make (for the caller to check, so one answer can also name the unknown ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    /// Every invalid field, in the order found.
    pub errors: Vec<FieldError>,
    /// References made by the fields that are valid.
    pub refs: Vec<Reference>,
}

/// Validates a REST body for a resource of `kind`.
///
/// `path_name` is the name in the URL (`PUT`); the body's `name`, if present, must equal it.
/// Without one (`POST`), the body must carry the name. `version` and `updated_at` in the body
/// are read-only and ignored, so a `GET` result can be edited and `PUT` back.
pub fn validate(kind: Kind, path_name: Option<&str>, body: &Value) -> Result<Validated, Invalid> {
    let mut errs = Errors::default();
    let Value::Object(_) = body else {
        errs.add("", "the body must be a JSON object");
        let (errors, refs) = errs.into_parts();
        return Err(Invalid { errors, refs });
    };
    let mut obj = Obj::new("", body, &mut errs).expect("an object");
    let name = resource_name(&mut obj, path_name, &mut errs);
    obj.ignore("version");
    obj.ignore("updated_at");
    let spec = match kind {
        Kind::Cluster => to_json(&cluster::parse(&mut obj, &mut errs)),
        Kind::Route => to_json(&route::parse(&mut obj, &mut errs)),
        Kind::Consumer => to_json(&consumer::parse(&mut obj, &mut errs)),
        Kind::JwtProvider => to_json(&jwt_provider::parse(&mut obj, &mut errs)),
        Kind::Quota => to_json(&quota::parse(&mut obj, &mut errs)),
    };
    obj.finish(&mut errs);
    let (errors, refs) = errs.into_parts();
    match name {
        Some(name) if errors.is_empty() => Ok(Validated { name, spec, refs }),
        _ => Err(Invalid { errors, refs }),
    }
}

fn resource_name(obj: &mut Obj<'_>, path_name: Option<&str>, errs: &mut Errors) -> Option<String> {
    let Some(path_name) = path_name else {
        return obj.require("name", errs, |v| as_str(v).and_then(syntax::name));
    };
    let body_name = obj.take("name", errs, |v| as_str(v).map(str::to_owned));
    if let Err(message) = syntax::name(path_name) {
        errs.add("name", message);
        return None;
    }
    if body_name.is_some_and(|n| n != path_name) {
        errs.add(
            "name",
            format!("must equal the name in the URL ({path_name:?})"),
        );
        return None;
    }
    Some(path_name.to_owned())
}

fn to_json<T: serde::Serialize>(spec: &T) -> Value {
    serde_json::to_value(spec).expect("model types serialise to JSON")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(r: Result<Validated, Invalid>) -> Vec<String> {
        r.unwrap_err().errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn names_from_path_or_body() {
        let body = json!({"endpoints": [], "version": 3, "updated_at": "x"});
        let v = validate(Kind::Cluster, Some("web"), &body).unwrap();
        assert_eq!(v.name, "web");
        assert_eq!(v.spec, json!({"endpoints": [], "lb_policy": "round_robin"}));
        let body = json!({"name": "other", "endpoints": []});
        assert_eq!(
            fields(validate(Kind::Cluster, Some("web"), &body)),
            ["name"]
        );
        assert_eq!(
            fields(validate(Kind::Cluster, Some("Web"), &json!({}))),
            ["name"]
        );
        assert_eq!(fields(validate(Kind::Cluster, None, &json!({}))), ["name"]);
        let v = validate(Kind::Cluster, None, &json!({"name": "a"})).unwrap();
        assert_eq!(v.name, "a");
    }

    #[test]
    fn every_error_at_once() {
        let body = json!({"name": 5, "endpoints": [{"address": "x"}], "lb_policy": 1, "x": 1});
        assert_eq!(
            fields(validate(Kind::Cluster, None, &body)),
            ["name", "endpoints[0].address", "lb_policy", "x"]
        );
        assert_eq!(fields(validate(Kind::Route, None, &json!([1]))), [""]);
    }

    #[test]
    fn route_references() {
        let body = json!({"weighted_clusters": [{"cluster": "a", "weight": 1},
                                                {"cluster": "b", "weight": 2}],
                          "auth": {"jwt": "idp"}});
        let v = validate(Kind::Route, Some("r"), &body).unwrap();
        let refs: Vec<(String, Kind, String)> = v
            .refs
            .into_iter()
            .map(|r| (r.field, r.kind, r.name))
            .collect();
        assert_eq!(
            refs,
            [
                (
                    "weighted_clusters[0].cluster".into(),
                    Kind::Cluster,
                    "a".into()
                ),
                (
                    "weighted_clusters[1].cluster".into(),
                    Kind::Cluster,
                    "b".into()
                ),
                ("auth.jwt".into(), Kind::JwtProvider, "idp".into()),
            ]
        );
    }

    #[test]
    fn an_invalid_body_still_reports_its_references() {
        let body = json!({"match": {"path_prefix": 5}, "cluster": "nope"});
        let invalid = validate(Kind::Route, Some("bad"), &body).unwrap_err();
        let fields: Vec<&str> = invalid.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["match.path_prefix"]);
        assert_eq!(invalid.refs.len(), 1);
        assert_eq!(
            (
                invalid.refs[0].field.as_str(),
                invalid.refs[0].name.as_str()
            ),
            ("cluster", "nope")
        );
        let body = json!({"scopes": 5, "quota": "gold"});
        let invalid = validate(Kind::Consumer, Some("c"), &body).unwrap_err();
        assert_eq!(invalid.refs[0].kind, Kind::Quota);
    }

    #[test]
    fn every_kind_validates() {
        for (kind, body) in [
            (Kind::Consumer, json!({"scopes": ["a"]})),
            (Kind::Quota, json!({"limit": 5, "window": "hour"})),
            (
                Kind::JwtProvider,
                json!({"issuer": "i", "jwks_uri": "https://i/k"}),
            ),
        ] {
            validate(kind, Some("x"), &body).unwrap();
        }
    }
}
