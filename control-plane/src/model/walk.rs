//! The validation walker: reads typed fields out of a raw JSON object at a dotted path,
//! records every problem as a [`FieldError`] instead of stopping at the first, and reports the
//! keys nobody asked for as unknown fields.
//!
//! It knows JSON types and numeric ranges only; what a valid value means for a resource lives in
//! each kind's module. `null` counts as absent everywhere, so clients may send `"x": null` to
//! mean "unset".
//!
//! Fields that name another resource are recorded as [`Reference`]s next to the errors, with
//! their exact paths, whether or not the rest of the body is valid: the store checks them, so
//! one answer can name the syntax errors and the unknown references together.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Kind, Reference};

/// One invalid field of a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field (`match.path_prefix`, `endpoints[2].address`); empty for the
    /// body as a whole.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The errors collected while walking one body, and the references its valid names make.
#[derive(Debug, Default)]
pub struct Errors {
    list: Vec<FieldError>,
    refs: Vec<Reference>,
}

impl Errors {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The fields recorded so far.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|e| e.field.as_str())
    }

    /// Records that `field` names resource `name` of `kind`, which must exist.
    pub fn refer(&mut self, field: impl Into<String>, kind: Kind, name: &str) {
        self.refs.push(Reference {
            field: field.into(),
            kind,
            name: name.to_owned(),
        });
    }

    /// The references recorded so far, in the order they were found.
    pub fn references(&self) -> &[Reference] {
        &self.refs
    }

    /// The collected errors, in the order they were found.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.list
    }

    /// The collected errors and references.
    pub fn into_parts(self) -> (Vec<FieldError>, Vec<Reference>) {
        (self.list, self.refs)
    }
}

/// `parent.key`, or `key` at the root.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A JSON object being validated: typed getters that record errors and remember which keys
/// were read, so [`Obj::finish`] can name the unknown ones.
#[derive(Debug)]
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    /// Views `value` (at `path`) as an object; records "must be an object" otherwise.
    pub fn new(path: &str, value: &'a Value, errs: &mut Errors) -> Option<Obj<'a>> {
        match value {
            Value::Object(map) => Some(Obj {
                path: path.to_owned(),
                map,
                known: Vec::new(),
            }),
            _ => {
                errs.add(path, "must be an object");
                None
            }
        }
    }

    /// The dotted path of `key` in this object.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Marks `key` as known without reading it (a read-only field the API ignores).
    pub fn ignore(&mut self, key: &'static str) {
        self.known.push(key);
    }

    /// Whether `key` is present and not `null`.
    pub fn has(&self, key: &str) -> bool {
        !matches!(self.map.get(key), None | Some(Value::Null))
    }

    /// The value of `key` without marking it known, `None` when absent or `null`.
    pub fn peek(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// The raw value of `key` (marked known), `None` when absent or `null`.
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Reads `key` with `parse`, which returns the error message for a wrong value.
    pub fn take<T>(
        &mut self,
        key: &'static str,
        errs: &mut Errors,
        parse: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.raw(key)?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(message) => {
                errs.add(self.path_of(key), message);
                None
            }
        }
    }

    /// Like [`Obj::take`], and records "is required" when the key is absent.
    pub fn require<T>(
        &mut self,
        key: &'static str,
        errs: &mut Errors,
        parse: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        if !self.has(key) {
            self.known.push(key);
            errs.add(self.path_of(key), "is required");
            return None;
        }
        self.take(key, errs, parse)
    }

    /// An optional string.
    pub fn str(&mut self, key: &'static str, errs: &mut Errors) -> Option<&'a str> {
        self.take(key, errs, as_str)
    }

    /// A required string.
    pub fn req_str(&mut self, key: &'static str, errs: &mut Errors) -> Option<&'a str> {
        self.require(key, errs, as_str)
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &'static str, errs: &mut Errors) -> Option<bool> {
        self.take(key, errs, as_bool)
    }

    /// An optional integer within `range`.
    pub fn int(
        &mut self,
        key: &'static str,
        range: RangeInclusive<i64>,
        errs: &mut Errors,
    ) -> Option<i64> {
        self.take(key, errs, |v| as_int(v, &range))
    }

    /// A required integer within `range`.
    pub fn req_int(
        &mut self,
        key: &'static str,
        range: RangeInclusive<i64>,
        errs: &mut Errors,
    ) -> Option<i64> {
        self.require(key, errs, |v| as_int(v, &range))
    }

    /// An optional nested object.
    pub fn obj(&mut self, key: &'static str, errs: &mut Errors) -> Option<Obj<'a>> {
        let value = self.raw(key)?;
        Obj::new(&self.path_of(key), value, errs)
    }

    /// A required nested object.
    pub fn req_obj(&mut self, key: &'static str, errs: &mut Errors) -> Option<Obj<'a>> {
        if !self.has(key) {
            self.known.push(key);
            errs.add(self.path_of(key), "is required");
            return None;
        }
        self.obj(key, errs)
    }

    /// An optional array of at most `max` items, each with its path (`key[i]`).
    pub fn array(
        &mut self,
        key: &'static str,
        max: usize,
        errs: &mut Errors,
    ) -> Option<Vec<(String, &'a Value)>> {
        let path = self.path_of(key);
        let items = self.take(key, errs, |v| match v {
            Value::Array(items) if items.len() > max => {
                Err(format!("must have at most {max} items"))
            }
            Value::Array(items) => Ok(items),
            _ => Err("must be an array".to_owned()),
        })?;
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (index(&path, i), v))
                .collect(),
        )
    }

    /// An optional array of strings (at most `max`), each checked by `check`, which may also
    /// normalise it. Invalid items are reported as `key[i]` and left out.
    pub fn str_list(
        &mut self,
        key: &'static str,
        max: usize,
        errs: &mut Errors,
        mut check: impl FnMut(&str) -> Result<String, String>,
    ) -> Option<Vec<String>> {
        let items = self.array(key, max, errs)?;
        let mut out = Vec::with_capacity(items.len());
        for (path, item) in items {
            match as_str(item).and_then(&mut check) {
                Ok(s) if out.contains(&s) => errs.add(path, format!("duplicate value {s:?}")),
                Ok(s) => out.push(s),
                Err(message) => errs.add(path, message),
            }
        }
        Some(out)
    }

    /// An optional object of string values (at most `max` entries); `check` validates and may
    /// normalise each key and value. Errors are reported at `key.<name>`.
    pub fn str_map(
        &mut self,
        key: &'static str,
        max: usize,
        errs: &mut Errors,
        mut check: impl FnMut(&str, &str) -> Result<(String, String), String>,
    ) -> Option<BTreeMap<String, String>> {
        let path = self.path_of(key);
        let map = self.take(key, errs, |v| match v {
            Value::Object(m) if m.len() > max => Err(format!("must have at most {max} entries")),
            Value::Object(m) => Ok(m),
            _ => Err("must be an object".to_owned()),
        })?;
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let field = join(&path, k);
            match as_str(v).and_then(|v| check(k, v)) {
                Ok((k, _)) if out.contains_key(&k) => {
                    errs.add(field, format!("duplicate key {k:?}"))
                }
                Ok((k, v)) => {
                    out.insert(k, v);
                }
                Err(message) => errs.add(field, message),
            }
        }
        Some(out)
    }

    /// Records every key of the object that no getter asked for.
    pub fn finish(self, errs: &mut Errors) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                errs.add(join(&self.path, key), "unknown field");
            }
        }
    }
}

/// A string, or "must be a string".
pub fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| "must be a string".to_owned())
}

/// A boolean, or "must be a boolean".
pub fn as_bool(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "must be a boolean".to_owned())
}

/// An integer within `range`. `5.0` is accepted as 5; `5.5` and `"5"` are not.
pub fn as_int(v: &Value, range: &RangeInclusive<i64>) -> Result<i64, String> {
    let Value::Number(n) = v else {
        return Err("must be an integer".to_owned());
    };
    let n = match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i,
        (None, Some(_), _) => i64::MAX,
        (None, None, Some(f)) if f.fract() == 0.0 => f as i64,
        _ => return Err("must be an integer".to_owned()),
    };
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "must be between {} and {}",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_typed_fields_and_reports_every_error() {
        let body = json!({
            "s": "x", "n": 5, "b": true, "bad_s": 5, "bad_n": "5", "low": 0, "frac": 1.5,
            "whole": 2.0, "nested": {"inner": 1, "extra": 2}, "null": null, "surprise": 1
        });
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        assert_eq!(obj.str("s", &mut errs), Some("x"));
        assert_eq!(obj.int("n", 1..=10, &mut errs), Some(5));
        assert_eq!(obj.bool("b", &mut errs), Some(true));
        assert_eq!(obj.str("bad_s", &mut errs), None);
        assert_eq!(obj.int("bad_n", 1..=10, &mut errs), None);
        assert_eq!(obj.int("low", 1..=10, &mut errs), None);
        assert_eq!(obj.int("frac", 1..=10, &mut errs), None);
        assert_eq!(obj.int("whole", 1..=10, &mut errs), Some(2));
        assert_eq!(obj.str("null", &mut errs), None);
        assert_eq!(obj.req_str("missing", &mut errs), None);
        let mut nested = obj.obj("nested", &mut errs).unwrap();
        assert_eq!(nested.int("inner", 0..=1, &mut errs), Some(1));
        nested.finish(&mut errs);
        obj.finish(&mut errs);
        let got: Vec<(String, String)> = errs
            .into_vec()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        let want = [
            ("bad_s", "must be a string"),
            ("bad_n", "must be an integer"),
            ("low", "must be between 1 and 10"),
            ("frac", "must be an integer"),
            ("missing", "is required"),
            ("nested.extra", "unknown field"),
            ("surprise", "unknown field"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn arrays_and_maps_name_each_item() {
        let body = json!({"list": ["a", 1, "a", "B"], "map": {"k": "v", "n": 2}, "big": [1, 2, 3]});
        let mut errs = Errors::default();
        let mut obj = Obj::new("root", &body, &mut errs).unwrap();
        let list = obj.str_list("list", 10, &mut errs, |s| Ok(s.to_lowercase()));
        assert_eq!(list, Some(vec!["a".to_owned(), "b".to_owned()]));
        let map = obj.str_map("map", 10, &mut errs, |k, v| {
            Ok((k.to_owned(), v.to_owned()))
        });
        assert_eq!(map.unwrap().len(), 1);
        assert!(obj.array("big", 2, &mut errs).is_none());
        obj.finish(&mut errs);
        let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["root.list[1]", "root.list[2]", "root.map.n", "root.big"]
        );
    }

    #[test]
    fn non_object_is_reported_at_its_path() {
        let mut errs = Errors::default();
        assert!(Obj::new("a.b", &json!([1]), &mut errs).is_none());
        assert_eq!(errs.into_vec()[0].field, "a.b");
    }
}
