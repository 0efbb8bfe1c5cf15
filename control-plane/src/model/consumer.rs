//! `consumers`: API callers. A consumer has scopes and optionally a quota; its API keys are
//! managed by their own endpoints and are not part of the spec written through `PUT`.
//!
//! `quota` names the fleet-wide budget charged for every request the consumer makes (on any
//! route; a route's own `quota` is charged too). It is checked as a reference, so a quota in
//! use cannot be deleted.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Kind;
use super::syntax;
use super::walk::{Errors, Obj, as_str};

/// An API caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Consumer {
    /// Scopes granted to the consumer's keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Name of the quota charged for this consumer's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

/// Reads and checks a consumer spec; the result is only meaningful when `errs` stays empty.
/// The quota it names is recorded in `errs` as a reference.
pub(super) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> Consumer {
    let scopes = obj
        .str_list("scopes", 64, errs, |s| syntax::token(s, 128))
        .unwrap_or_default();
    let quota = obj.take("quota", errs, |v| as_str(v).and_then(syntax::name));
    if let Some(q) = &quota {
        errs.refer(obj.path_of("quota"), Kind::Quota, q);
    }
    Consumer { scopes, quota }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn consumer_rules_and_references() {
        let body = json!({"scopes": ["read", "has space", "read"], "quota": "Bad"});
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        parse(&mut obj, &mut errs);
        let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["scopes[1]", "scopes[2]", "quota"]);

        let body = json!({"scopes": ["read"], "quota": "gold"});
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        parse(&mut obj, &mut errs);
        assert!(errs.is_empty());
        assert_eq!(errs.references()[0].name, "gold");
        assert_eq!(errs.references()[0].field, "quota");
    }
}
