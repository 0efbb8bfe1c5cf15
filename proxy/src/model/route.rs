//! `switchyard.v1.Route` → [`RouteSpec`]: host patterns normalised, path regexes compiled
//! (anchored to the whole path), methods and header names parsed, the action checked.
//!
//! Policies (auth, rate limits, transforms…) are validated by [`super::policy`] and carried as
//! [`RoutePolicies`]; `compress` is not carried over yet.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;
use switchyard_proto::v1::{self, route::Action, route_match::Path};

use super::policy::{PolicyError, RoutePolicies};

/// Compiled size limit for one path regex, so a hostile pattern cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub matcher: RouteMatchSpec,
    pub priority: i32,
    pub action: RouteAction,
    /// Whole-request timeout (all tries together); `None` when the route sets 0.
    pub timeout: Option<Duration>,
    /// `None` when the route sets no retries or a single attempt.
    pub retries: Option<RetrySpec>,
    /// Gateway policies; empty for a plain route.
    pub policies: RoutePolicies,
    /// Requests whose path holds `%2F` / `%5C` are accepted (else 400).
    pub allow_encoded_slashes: bool,
}

/// Most parts an aggregate may fan out to.
pub const MAX_AGGREGATE_PARTS: usize = 20;

/// Most attempts (first included) a route may ask for.
pub const MAX_ATTEMPTS: u32 = 10;

/// How failed upstream attempts are retried (on another endpoint, within the cluster's budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySpec {
    /// Total attempts, the first included: 2..=[`MAX_ATTEMPTS`].
    pub attempts: u32,
    pub on: RetryOn,
    /// Bound of each attempt's wait for response headers.
    pub per_try_timeout: Option<Duration>,
}

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// A 5xx response (and a per-try timeout).
    pub status_5xx: bool,
    /// The connection could not be made (the request was never sent).
    pub connect_failure: bool,
    /// The connection broke before response headers.
    pub reset: bool,
}

/// What a request must look like to take this route.
#[derive(Debug, Clone)]
pub struct RouteMatchSpec {
    pub host: HostMatch,
    pub path: PathMatch,
    /// Empty matches any method.
    pub methods: Vec<Method>,
    /// Header name → exact value, sorted by name.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Query parameter → exact (decoded) value, sorted by name.
    pub query: Vec<(String, String)>,
}

/// Host part of a match; names are lowercase and carry no port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches any host ending with it.
    Suffix(String),
}

/// Path part of a match; a route without one matches every path (`Prefix("/")`).
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Anchored (`^(?:…)$`) when compiled; `pattern` is the configured text.
    Regex {
        pattern: String,
        regex: Regex,
    },
}

/// What the proxy does with a matched request.
#[derive(Debug, Clone)]
pub enum RouteAction {
    Cluster(String),
    /// `(cluster, weight)`; at least one weight is non-zero.
    WeightedClusters(Vec<(String, u32)>),
    /// Fan-out: every part fetched concurrently, bodies combined by part name.
    Aggregate(Vec<AggregatePart>),
    DirectResponse {
        status: StatusCode,
        body: Bytes,
    },
}

/// One call of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatePart {
    pub name: String,
    pub cluster: String,
    pub path: PathAndQuery,
}

/// Why a route was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("name is empty")]
    EmptyName,
    #[error("no action (cluster, weighted_clusters, aggregate or direct_response)")]
    MissingAction,
    #[error("match.host {0:?} is not a host name or *.suffix")]
    BadHost(String),
    #[error("match.{field} {value:?} must start with '/'")]
    PathNotAbsolute { field: &'static str, value: String },
    #[error("match.path_regex {pattern:?} is invalid: {source}")]
    BadRegex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("match.methods {0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("match.headers {0:?} is not a valid header name")]
    BadHeaderName(String),
    #[error("match.headers[{0:?}] value is not a valid header value")]
    BadHeaderValue(String),
    #[error("action.cluster is empty")]
    EmptyCluster,
    #[error("weighted_clusters is empty, names an empty cluster, or has only zero weights")]
    BadWeightedClusters,
    #[error("direct_response.status {0} is not 100-599")]
    BadStatus(u32),
    #[error("retries.on value {0} is unknown")]
    BadRetryOn(i32),
    #[error(
        "aggregate.parts must hold 1-{MAX_AGGREGATE_PARTS} parts with unique, non-empty names and clusters"
    )]
    BadAggregate,
    #[error("aggregate part {0:?} path must be an absolute path")]
    BadAggregatePath(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl TryFrom<&v1::Route> for RouteSpec {
    type Error = RouteError;

    fn try_from(proto: &v1::Route) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(RouteError::EmptyName);
        }
        let default_match = v1::RouteMatch::default();
        let matcher = RouteMatchSpec::try_from(proto.r#match.as_ref().unwrap_or(&default_match))?;
        let action = match proto.action.as_ref().ok_or(RouteError::MissingAction)? {
            Action::Cluster(name) if name.is_empty() => return Err(RouteError::EmptyCluster),
            Action::Cluster(name) => RouteAction::Cluster(name.clone()),
            Action::WeightedClusters(weighted) => {
                let clusters: Vec<(String, u32)> = weighted
                    .clusters
                    .iter()
                    .map(|c| (c.cluster.clone(), c.weight))
                    .collect();
                let bad = clusters.iter().any(|(name, _)| name.is_empty())
                    || clusters.iter().all(|(_, weight)| *weight == 0);
                if bad {
                    return Err(RouteError::BadWeightedClusters);
                }
                RouteAction::WeightedClusters(clusters)
            }
            Action::Aggregate(aggregate) => RouteAction::Aggregate(aggregate_parts(aggregate)?),
            Action::DirectResponse(direct) => {
                let status = match direct.status {
                    0 => StatusCode::OK,
                    code => u16::try_from(code)
                        .ok()
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .ok_or(RouteError::BadStatus(code))?,
                };
                RouteAction::DirectResponse {
                    status,
                    body: Bytes::from(direct.body.clone()),
                }
            }
        };
        let timeout = match proto.timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        };
        let retries = proto
            .retries
            .as_ref()
            .map(retry_spec)
            .transpose()?
            .flatten();
        Ok(Self {
            name: proto.name.clone(),
            matcher,
            priority: proto.priority,
            action,
            timeout,
            retries,
            policies: RoutePolicies::try_from(proto)?,
            allow_encoded_slashes: proto.allow_encoded_slashes,
        })
    }
}

fn aggregate_parts(proto: &v1::Aggregate) -> Result<Vec<AggregatePart>, RouteError> {
    let mut names = std::collections::HashSet::new();
    let valid = !proto.parts.is_empty()
        && proto.parts.len() <= MAX_AGGREGATE_PARTS
        && proto
            .parts
            .iter()
            .all(|p| !p.name.is_empty() && !p.cluster.is_empty() && names.insert(&p.name));
    if !valid {
        return Err(RouteError::BadAggregate);
    }
    proto
        .parts
        .iter()
        .map(|part| {
            let path = match part.path.as_str() {
                "" => PathAndQuery::from_static("/"),
                path if path.starts_with('/') => path
                    .parse()
                    .map_err(|_| RouteError::BadAggregatePath(part.name.clone()))?,
                _ => return Err(RouteError::BadAggregatePath(part.name.clone())),
            };
            Ok(AggregatePart {
                name: part.name.clone(),
                cluster: part.cluster.clone(),
                path,
            })
        })
        .collect()
}

/// `None` for a single attempt; an empty `on` means the default `5xx` + `connect_failure`.
fn retry_spec(proto: &v1::Retries) -> Result<Option<RetrySpec>, RouteError> {
    let mut on = RetryOn::default();
    for value in &proto.on {
        match v1::RetryOn::try_from(*value) {
            Ok(v1::RetryOn::RetryOn5xx) => on.status_5xx = true,
            Ok(v1::RetryOn::ConnectFailure) => on.connect_failure = true,
            Ok(v1::RetryOn::Reset) => on.reset = true,
            Err(_) => return Err(RouteError::BadRetryOn(*value)),
        }
    }
    if proto.on.is_empty() {
        on.status_5xx = true;
        on.connect_failure = true;
    }
    let attempts = proto.attempts.min(MAX_ATTEMPTS);
    if attempts < 2 {
        return Ok(None);
    }
    let per_try_timeout = match proto.per_try_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    };
    Ok(Some(RetrySpec {
        attempts,
        on,
        per_try_timeout,
    }))
}

impl TryFrom<&v1::RouteMatch> for RouteMatchSpec {
    type Error = RouteError;

    fn try_from(proto: &v1::RouteMatch) -> Result<Self, Self::Error> {
        let host = parse_host(&proto.host)?;
        let path = match &proto.path {
            None => PathMatch::Prefix("/".to_owned()),
            Some(Path::PathPrefix(prefix)) if prefix.is_empty() => {
                PathMatch::Prefix("/".to_owned())
            }
            Some(Path::PathPrefix(prefix)) => {
                require_absolute("path_prefix", prefix)?;
                PathMatch::Prefix(prefix.clone())
            }
            Some(Path::PathExact(exact)) => {
                require_absolute("path_exact", exact)?;
                PathMatch::Exact(exact.clone())
            }
            Some(Path::PathRegex(pattern)) => {
                let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|source| RouteError::BadRegex {
                        pattern: pattern.clone(),
                        source,
                    })?;
                PathMatch::Regex {
                    pattern: pattern.clone(),
                    regex,
                }
            }
        };
        let methods = proto
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| RouteError::BadMethod(m.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut headers = proto
            .headers
            .iter()
            .map(|(name, value)| {
                let header_name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| RouteError::BadHeaderName(name.clone()))?;
                let header_value = HeaderValue::from_str(value)
                    .map_err(|_| RouteError::BadHeaderValue(name.clone()))?;
                Ok((header_name, header_value))
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut query: Vec<(String, String)> = proto
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        Ok(Self {
            host,
            path,
            methods,
            headers,
            query,
        })
    }
}

fn require_absolute(field: &'static str, value: &str) -> Result<(), RouteError> {
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(RouteError::PathNotAbsolute {
            field,
            value: value.to_owned(),
        })
    }
}

fn parse_host(host: &str) -> Result<HostMatch, RouteError> {
    let lower = host.trim().to_ascii_lowercase();
    if lower.is_empty() || lower == "*" {
        return Ok(HostMatch::Any);
    }
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    if let Some(suffix) = lower.strip_prefix("*.") {
        if !valid(suffix) {
            return Err(RouteError::BadHost(host.to_owned()));
        }
        return Ok(HostMatch::Suffix(format!(".{suffix}")));
    }
    if !valid(&lower) {
        return Err(RouteError::BadHost(host.to_owned()));
    }
    Ok(HostMatch::Exact(lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: Option<Path>) -> v1::Route {
        v1::Route {
            name: "r".into(),
            r#match: Some(v1::RouteMatch {
                path,
                ..Default::default()
            }),
            action: Some(Action::Cluster("c".into())),
            ..Default::default()
        }
    }

    #[test]
    fn compiles_valid_routes() {
        let spec = RouteSpec::try_from(&route(None)).unwrap();
        assert!(matches!(spec.matcher.path, PathMatch::Prefix(ref p) if p == "/"));
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.retries, None);
        let mut retried = route(None);
        retried.retries = Some(v1::Retries {
            attempts: 3,
            on: vec![],
            per_try_timeout_ms: 100,
        });
        let retries = RouteSpec::try_from(&retried).unwrap().retries.unwrap();
        assert_eq!(retries.attempts, 3);
        assert!(retries.on.status_5xx && retries.on.connect_failure && !retries.on.reset);
        assert_eq!(retries.per_try_timeout, Some(Duration::from_millis(100)));
        retried.retries.as_mut().unwrap().on = vec![42];
        assert!(matches!(
            RouteSpec::try_from(&retried),
            Err(RouteError::BadRetryOn(42))
        ));
        let spec = RouteSpec::try_from(&route(Some(Path::PathRegex("/a/[0-9]+".into())))).unwrap();
        let PathMatch::Regex { regex, .. } = &spec.matcher.path else {
            panic!("regex expected")
        };
        assert!(regex.is_match("/a/12"));
        assert!(!regex.is_match("/a/12/x"), "anchored at the end");
        assert!(!regex.is_match("/x/a/12"), "anchored at the start");
    }

    #[test]
    fn refuses_invalid_routes() {
        let err = RouteSpec::try_from(&route(Some(Path::PathRegex("/a/(".into())))).unwrap_err();
        assert!(matches!(err, RouteError::BadRegex { .. }), "{err}");
        assert!(err.to_string().contains("path_regex"));
        let err = RouteSpec::try_from(&route(Some(Path::PathPrefix("a".into())))).unwrap_err();
        assert!(matches!(err, RouteError::PathNotAbsolute { .. }));

        let mut no_action = route(None);
        no_action.action = None;
        assert!(matches!(
            RouteSpec::try_from(&no_action),
            Err(RouteError::MissingAction)
        ));

        let mut bad_host = route(None);
        bad_host.r#match.as_mut().unwrap().host = "a b".into();
        assert!(matches!(
            RouteSpec::try_from(&bad_host),
            Err(RouteError::BadHost(_))
        ));

        let mut bad_status = route(None);
        bad_status.action = Some(Action::DirectResponse(v1::DirectResponse {
            status: 1000,
            body: String::new(),
        }));
        assert!(matches!(
            RouteSpec::try_from(&bad_status),
            Err(RouteError::BadStatus(1000))
        ));

        let mut zero_weights = route(None);
        zero_weights.action = Some(Action::WeightedClusters(v1::WeightedClusters {
            clusters: vec![v1::WeightedCluster {
                cluster: "a".into(),
                weight: 0,
            }],
        }));
        assert!(matches!(
            RouteSpec::try_from(&zero_weights),
            Err(RouteError::BadWeightedClusters)
        ));
    }

    #[test]
    fn host_patterns_normalise() {
        assert_eq!(parse_host("").unwrap(), HostMatch::Any);
        assert_eq!(
            parse_host("API.Example.com").unwrap(),
            HostMatch::Exact("api.example.com".into())
        );
        assert_eq!(
            parse_host("*.Example.com").unwrap(),
            HostMatch::Suffix(".example.com".into())
        );
        assert!(parse_host("*.").is_err());
    }
}
