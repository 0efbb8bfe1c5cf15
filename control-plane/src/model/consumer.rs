//! `consumers`: API callers. A consumer has scopes and optionally a quota; its API keys are
//! managed by their own endpoints and are not part of the spec written through `PUT`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Kind;
use super::syntax;
use super::walk::{Errors, Obj, as_str};
use crate::store::Reference;

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

impl Consumer {
    /// The resources this consumer refers to.
    pub fn references(&self) -> Vec<Reference> {
        self.quota
            .iter()
            .map(|q| Reference {
                field: "quota".to_owned(),
                kind: Kind::Quota,
                name: q.clone(),
            })
            .collect()
    }
}

/// Reads and checks a consumer spec; the result is only meaningful when `errs` stays empty.
pub(super) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> Consumer {
    let scopes = obj
        .str_list("scopes", 64, errs, |s| syntax::token(s, 128))
        .unwrap_or_default();
    let quota = obj.take("quota", errs, |v| as_str(v).and_then(syntax::name));
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
        let c = parse(&mut obj, &mut errs);
        assert!(errs.is_empty());
        assert_eq!(c.references()[0].name, "gold");
    }
}
