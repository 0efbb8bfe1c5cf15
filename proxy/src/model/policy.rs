//! A route's policies (`switchyard.v1.Route` fields 8–20) → validated plain data: header
//! names and values parsed, field paths split, zero values turned into `None`.
//!
//! Compiling these into a filter chain (with long-lived state such as rate-limit buckets or a
//! cache) is [`crate::filters`]' job; this module only checks and normalises.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use switchyard_proto::v1;

/// Policies of one route; [`RoutePolicies::is_empty`] routes get no filter chain at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicies {
    pub cors: Option<CorsSpec>,
    pub auth: Option<AuthSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    /// `max_body_bytes`; `None` when 0.
    pub max_body_bytes: Option<u64>,
    pub required_headers: Vec<HeaderName>,
    pub rewrite: Option<RewriteSpec>,
    pub request_headers: Option<HeaderOpsSpec>,
    pub response_headers: Option<HeaderOpsSpec>,
    /// Dotted paths, split into segments.
    pub remove_response_fields: Vec<Vec<String>>,
    pub cache: Option<CacheSpec>,
    /// The quota charged per consumer on this route.
    pub quota: Option<String>,
}

impl RoutePolicies {
    /// Whether the route sets no policy at all.
    pub fn is_empty(&self) -> bool {
        *self == RoutePolicies::default()
    }
}

/// `auth`: which credentials are accepted and which scopes are required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSpec {
    pub api_key: bool,
    /// JWT provider name.
    pub jwt: Option<String>,
    pub scopes: Vec<String>,
}

/// What one rate-limit bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitBy {
    Route,
    Consumer,
    Ip,
}

/// `rate_limit`: `requests` per `per_seconds`, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimitSpec {
    pub requests: u32,
    pub per_seconds: u32,
    pub by: RateLimitBy,
}

/// `rewrite`: strip `strip_prefix` (segment-wise), then prepend `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteSpec {
    pub strip_prefix: Option<String>,
    pub prefix: Option<String>,
}

/// `request_headers` / `response_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOpsSpec {
    /// Sorted by name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// `cors`. Origins are lowercase; `"*"` allows any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSpec {
    pub allow_origins: Vec<String>,
    /// Empty means the default list (see the CORS filter).
    pub allow_methods: Vec<Method>,
    /// Empty means "reflect what the preflight asks for".
    pub allow_headers: Vec<HeaderName>,
    pub max_age_s: Option<u32>,
}

/// `cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheSpec {
    pub ttl: Duration,
}

/// Why a route's policies were refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{field} {name:?} is not a valid header name")]
    BadHeaderName { field: &'static str, name: String },
    #[error("{field}[{name:?}] is not a valid header value")]
    BadHeaderValue { field: &'static str, name: String },
    #[error("auth sets neither api_key nor jwt")]
    AuthWithoutCredential,
    #[error("rate_limit.requests and rate_limit.per_seconds must be at least 1")]
    BadRateLimit,
    #[error("rate_limit.by value {0} is unknown")]
    BadRateLimitKey(i32),
    #[error("rewrite.{field} {value:?} must start with '/'")]
    BadRewrite { field: &'static str, value: String },
    #[error("remove_response_fields {0:?} is not a dotted field path")]
    BadFieldPath(String),
    #[error("cors.allow_origins is empty")]
    NoCorsOrigin,
    #[error("cors.allow_methods {0:?} is not an HTTP method")]
    BadCorsMethod(String),
    #[error("cache.ttl_s must be at least 1")]
    BadCacheTtl,
}

impl TryFrom<&v1::Route> for RoutePolicies {
    type Error = PolicyError;

    fn try_from(proto: &v1::Route) -> Result<Self, Self::Error> {
        Ok(Self {
            cors: proto.cors.as_ref().map(cors).transpose()?,
            auth: proto.auth.as_ref().map(auth).transpose()?,
            rate_limit: proto.rate_limit.as_ref().map(rate_limit).transpose()?,
            max_body_bytes: (proto.max_body_bytes > 0).then_some(proto.max_body_bytes),
            required_headers: proto
                .required_headers
                .iter()
                .map(|name| header_name("required_headers", name))
                .collect::<Result<_, _>>()?,
            rewrite: proto.rewrite.as_ref().map(rewrite).transpose()?.flatten(),
            request_headers: header_ops("request_headers", proto.request_headers.as_ref())?,
            response_headers: header_ops("response_headers", proto.response_headers.as_ref())?,
            remove_response_fields: proto
                .remove_response_fields
                .iter()
                .map(|path| field_path(path))
                .collect::<Result<_, _>>()?,
            cache: proto
                .cache
                .as_ref()
                .map(|cache| match cache.ttl_s {
                    0 => Err(PolicyError::BadCacheTtl),
                    ttl => Ok(CacheSpec {
                        ttl: Duration::from_secs(u64::from(ttl)),
                    }),
                })
                .transpose()?,
            quota: (!proto.quota.is_empty()).then(|| proto.quota.clone()),
        })
    }
}

fn header_name(field: &'static str, name: &str) -> Result<HeaderName, PolicyError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
        PolicyError::BadHeaderName {
            field,
            name: name.to_owned(),
        }
    })
}

fn auth(proto: &v1::Auth) -> Result<AuthSpec, PolicyError> {
    let jwt = (!proto.jwt.is_empty()).then(|| proto.jwt.clone());
    if !proto.api_key && jwt.is_none() {
        return Err(PolicyError::AuthWithoutCredential);
    }
    let mut scopes = proto.scopes.clone();
    scopes.sort();
    scopes.dedup();
    Ok(AuthSpec {
        api_key: proto.api_key,
        jwt,
        scopes,
    })
}

fn rate_limit(proto: &v1::RateLimit) -> Result<RateLimitSpec, PolicyError> {
    if proto.requests == 0 || proto.per_seconds == 0 {
        return Err(PolicyError::BadRateLimit);
    }
    let by = match v1::RateLimitKey::try_from(proto.by) {
        Ok(v1::RateLimitKey::Route) => RateLimitBy::Route,
        Ok(v1::RateLimitKey::Consumer) => RateLimitBy::Consumer,
        Ok(v1::RateLimitKey::Ip) => RateLimitBy::Ip,
        Err(_) => return Err(PolicyError::BadRateLimitKey(proto.by)),
    };
    Ok(RateLimitSpec {
        requests: proto.requests,
        per_seconds: proto.per_seconds,
        by,
    })
}

/// `None` when neither part is set.
fn rewrite(proto: &v1::Rewrite) -> Result<Option<RewriteSpec>, PolicyError> {
    let part = |field: &'static str, value: &str| -> Result<Option<String>, PolicyError> {
        if value.is_empty() {
            return Ok(None);
        }
        if !value.starts_with('/') {
            return Err(PolicyError::BadRewrite {
                field,
                value: value.to_owned(),
            });
        }
        Ok(Some(value.to_owned()))
    };
    let strip_prefix = part("strip_prefix", &proto.strip_prefix)?;
    let prefix = part("prefix", &proto.prefix)?;
    if strip_prefix.is_none() && prefix.is_none() {
        return Ok(None);
    }
    Ok(Some(RewriteSpec {
        strip_prefix,
        prefix,
    }))
}

/// `None` when the ops are absent or empty.
fn header_ops(
    field: &'static str,
    proto: Option<&v1::HeaderOps>,
) -> Result<Option<HeaderOpsSpec>, PolicyError> {
    let Some(proto) = proto else {
        return Ok(None);
    };
    let mut set = proto
        .set
        .iter()
        .map(|(name, value)| {
            let header = header_name(field, name)?;
            let value = HeaderValue::from_str(value).map_err(|_| PolicyError::BadHeaderValue {
                field,
                name: name.clone(),
            })?;
            Ok((header, value))
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;
    set.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let remove = proto
        .remove
        .iter()
        .map(|name| header_name(field, name))
        .collect::<Result<Vec<_>, _>>()?;
    if set.is_empty() && remove.is_empty() {
        return Ok(None);
    }
    Ok(Some(HeaderOpsSpec { set, remove }))
}

fn field_path(path: &str) -> Result<Vec<String>, PolicyError> {
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(PolicyError::BadFieldPath(path.to_owned()));
    }
    Ok(segments)
}

fn cors(proto: &v1::Cors) -> Result<CorsSpec, PolicyError> {
    if proto.allow_origins.is_empty() {
        return Err(PolicyError::NoCorsOrigin);
    }
    let allow_methods = proto
        .allow_methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| PolicyError::BadCorsMethod(m.clone()))
        })
        .collect::<Result<_, _>>()?;
    let allow_headers = proto
        .allow_headers
        .iter()
        .map(|name| header_name("cors.allow_headers", name))
        .collect::<Result<_, _>>()?;
    Ok(CorsSpec {
        allow_origins: proto
            .allow_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect(),
        allow_methods,
        allow_headers,
        max_age_s: (proto.max_age_s > 0).then_some(proto.max_age_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_route_has_no_policies() {
        let policies = RoutePolicies::try_from(&v1::Route::default()).unwrap();
        assert!(policies.is_empty());
        let route = v1::Route {
            rewrite: Some(v1::Rewrite::default()),
            request_headers: Some(v1::HeaderOps::default()),
            ..Default::default()
        };
        assert!(RoutePolicies::try_from(&route).unwrap().is_empty());
    }

    #[test]
    fn parses_and_refuses() {
        let route = v1::Route {
            auth: Some(v1::Auth {
                api_key: true,
                jwt: String::new(),
                scopes: vec!["b".into(), "a".into(), "a".into()],
            }),
            rate_limit: Some(v1::RateLimit {
                requests: 5,
                per_seconds: 10,
                by: v1::RateLimitKey::Ip as i32,
            }),
            remove_response_fields: vec!["user.password".into()],
            required_headers: vec!["X-Tenant".into()],
            ..Default::default()
        };
        let policies = RoutePolicies::try_from(&route).unwrap();
        assert_eq!(policies.auth.unwrap().scopes, ["a", "b"]);
        assert_eq!(policies.rate_limit.unwrap().by, RateLimitBy::Ip);
        assert_eq!(policies.remove_response_fields, [["user", "password"]]);
        assert_eq!(policies.required_headers[0], "x-tenant");

        let bad = |edit: fn(&mut v1::Route)| {
            let mut route = v1::Route::default();
            edit(&mut route);
            RoutePolicies::try_from(&route).unwrap_err()
        };
        assert_eq!(
            bad(|r| r.auth = Some(v1::Auth::default())),
            PolicyError::AuthWithoutCredential
        );
        assert_eq!(
            bad(|r| r.rate_limit = Some(v1::RateLimit::default())),
            PolicyError::BadRateLimit
        );
        assert!(matches!(
            bad(|r| r.remove_response_fields = vec!["a..b".into()]),
            PolicyError::BadFieldPath(_)
        ));
        assert!(matches!(
            bad(|r| r.rewrite = Some(v1::Rewrite {
                strip_prefix: "api".into(),
                prefix: String::new()
            })),
            PolicyError::BadRewrite { .. }
        ));
        assert_eq!(
            bad(|r| r.cors = Some(v1::Cors::default())),
            PolicyError::NoCorsOrigin
        );
        assert_eq!(
            bad(|r| r.cache = Some(v1::Cache { ttl_s: 0 })),
            PolicyError::BadCacheTtl
        );
    }
}
