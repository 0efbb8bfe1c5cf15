//! `jwt-providers`: JWT issuers a route's `auth.jwt` can name — the issuer, accepted audiences
//! and algorithms, and the keys (an inline JWKS or a `jwks_uri` the proxy fetches).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::syntax;
use super::walk::{Errors, Obj, as_str};

/// Signature algorithms a provider may allow.
pub const ALGORITHMS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// A JWT issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct JwtProvider {
    /// Required `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Inline JWKS document (`{"keys": [...]}`); exactly one of `jwks`, `jwks_uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// URL of the JWKS document, fetched and refreshed by the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Accepted `alg` values (default `RS256`).
    pub algorithms: Vec<String>,
}

/// Reads and checks a JWT provider spec; the result is only meaningful when `errs` stays
/// empty.
pub(super) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> JwtProvider {
    let issuer = obj.require("issuer", errs, |v| {
        as_str(v).and_then(|s| match s.len() {
            1..=1024 => Ok(s.to_owned()),
            _ => Err("must be 1 to 1024 characters".to_owned()),
        })
    });
    let audiences = obj
        .str_list("audiences", 64, errs, |s| syntax::token(s, 1024))
        .unwrap_or_default();
    let jwks_path = obj.path_of("jwks");
    let jwks = obj.take("jwks", errs, |v| jwks(&jwks_path, v));
    let jwks_uri = obj.take("jwks_uri", errs, |v| as_str(v).and_then(jwks_uri));
    if obj.has("jwks") == obj.has("jwks_uri") {
        errs.add(obj.path_of("jwks"), "set exactly one of jwks, jwks_uri");
    }
    let algorithms = obj
        .str_list("algorithms", ALGORITHMS.len(), errs, |s| {
            if ALGORITHMS.contains(&s) {
                Ok(s.to_owned())
            } else {
                Err(format!("must be one of {}", ALGORITHMS.join(", ")))
            }
        })
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| vec!["RS256".to_owned()]);
    JwtProvider {
        issuer: issuer.unwrap_or_default(),
        audiences,
        jwks,
        jwks_uri,
        algorithms,
    }
}

/// A JWKS document: an object whose `keys` is an array of objects with a `kty`.
fn jwks(path: &str, v: &Value) -> Result<Value, String> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "must be a JWKS document: {\"keys\": [...]}".to_owned())?;
    if keys.is_empty() || keys.len() > 100 {
        return Err("must hold 1 to 100 keys".to_owned());
    }
    for (i, key) in keys.iter().enumerate() {
        if key.get("kty").and_then(Value::as_str).is_none() {
            return Err(format!("{path}.keys[{i}] must be a JWK with a \"kty\""));
        }
    }
    Ok(v.clone())
}

fn jwks_uri(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("{s:?} is not a valid URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(h)) if !h.is_empty() => Ok(s.to_owned()),
        _ => Err("must be an http:// or https:// URL".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(body: Value) -> Vec<String> {
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        parse(&mut obj, &mut errs);
        errs.into_vec().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn jwt_provider_rules() {
        assert_eq!(fields(json!({})), ["issuer", "jwks"]);
        assert_eq!(
            fields(json!({"issuer": "i", "jwks": {"keys": [{"kty": "RSA"}]},
                          "jwks_uri": "https://i/jwks"})),
            ["jwks"]
        );
        assert_eq!(
            fields(json!({"issuer": "i", "jwks": {"keys": [{}]}, "algorithms": ["none"]})),
            ["jwks", "algorithms[0]"]
        );
        assert_eq!(
            fields(json!({"issuer": "i", "jwks_uri": "ftp://x"})),
            ["jwks_uri"]
        );
        assert!(
            fields(
                json!({"issuer": "i", "jwks_uri": "https://i/.well-known/jwks.json",
                               "audiences": ["api"], "algorithms": ["ES256"]})
            )
            .is_empty()
        );
    }
}
