//! What differs between two configs: per resource added, removed or changed, and for a changed
//! one every field that differs, by dotted path (`endpoints[1].address`), with its value before
//! and after. Pure: the revision diff of the REST API (and declarative apply) build on it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::Kind;

/// A whole config: each resource's normalised spec by kind and name.
pub type Config = BTreeMap<(Kind, String), Value>;

/// How one resource differs.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ResourceDiff {
    /// Plural kind.
    #[schema(value_type = String)]
    pub kind: Kind,
    /// Resource name.
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// For `changed`: each field that differs (empty otherwise).
    pub fields: Vec<FieldChange>,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// Dotted path, array items by index (`endpoints[1].address`).
    pub field: String,
    /// The value before; absent when the field was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub before: Option<Value>,
    /// The value after; absent when the field was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub after: Option<Value>,
}

/// The resources that differ from `before` to `after`, by kind and name.
pub fn diff(before: &Config, after: &Config) -> Vec<ResourceDiff> {
    let mut out = Vec::new();
    let keys: BTreeSet<&(Kind, String)> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let (change, fields) = match (before.get(key), after.get(key)) {
            (None, Some(_)) => ("added", Vec::new()),
            (Some(_), None) => ("removed", Vec::new()),
            (Some(old), Some(new)) if old != new => {
                let mut fields = Vec::new();
                field_changes(String::new(), old, new, &mut fields);
                ("changed", fields)
            }
            _ => continue,
        };
        out.push(ResourceDiff {
            kind: key.0,
            name: key.1.clone(),
            change,
            fields,
        });
    }
    out
}

/// Appends the leaves of `old` → `new` that differ under `path`.
fn field_changes(path: String, old: &Value, new: &Value, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                child_changes(child, a.get(name), b.get(name), out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                child_changes(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        _ if old != new => out.push(FieldChange {
            field: path,
            before: Some(old.clone()),
            after: Some(new.clone()),
        }),
        _ => {}
    }
}

/// A field present on one side only is one change; on both, its leaves are compared.
fn child_changes(
    path: String,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (old, new) {
        (Some(x), Some(y)) => field_changes(path, x, y, out),
        (x, y) => out.push(FieldChange {
            field: path,
            before: x.cloned(),
            after: y.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(items: &[(Kind, &str, Value)]) -> Config {
        items
            .iter()
            .map(|(kind, name, spec)| ((*kind, (*name).to_owned()), spec.clone()))
            .collect()
    }

    #[test]
    fn resources_are_added_removed_changed_or_left_out() {
        let same = json!({"endpoints": [{"address": "a:1"}]});
        let before = config(&[
            (Kind::Cluster, "web", same.clone()),
            (Kind::Route, "old", json!({"cluster": "web"})),
            (
                Kind::Quota,
                "gold",
                json!({"limit": 10, "window": "minute"}),
            ),
        ]);
        let after = config(&[
            (Kind::Cluster, "web", same),
            (Kind::Route, "new", json!({"cluster": "web"})),
            (
                Kind::Quota,
                "gold",
                json!({"limit": 20, "window": "minute"}),
            ),
        ]);
        let changes: Vec<_> = diff(&before, &after)
            .into_iter()
            .map(|d| (d.kind, d.name, d.change, d.fields))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    Kind::Quota,
                    "gold".to_owned(),
                    "changed",
                    vec![FieldChange {
                        field: "limit".into(),
                        before: Some(json!(10)),
                        after: Some(json!(20)),
                    }]
                ),
                (Kind::Route, "new".to_owned(), "added", vec![]),
                (Kind::Route, "old".to_owned(), "removed", vec![]),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn fields_are_named_by_path_down_to_the_leaves() {
        let before = config(&[(
            Kind::Cluster,
            "web",
            json!({"endpoints": [{"address": "a:1", "weight": 1}, {"address": "b:1"}],
                   "health_check": {"path": "/h"}}),
        )]);
        let after = config(&[(
            Kind::Cluster,
            "web",
            json!({"endpoints": [{"address": "a:2", "weight": 1}],
                   "lb_policy": "random"}),
        )]);
        let fields: Vec<_> = diff(&before, &after).remove(0).fields;
        let summary: Vec<_> = fields
            .iter()
            .map(|f| (f.field.as_str(), f.before.is_some(), f.after.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("endpoints[0].address", true, true),
                ("endpoints[1]", true, false),
                ("health_check", true, false),
                ("lb_policy", false, true),
            ]
        );
        assert_eq!(fields[0].after, Some(json!("a:2")));
        assert_eq!(fields[1].before, Some(json!({"address": "b:1"})));
    }
}
