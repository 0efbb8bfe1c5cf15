//! `routes`: how a request is matched and what happens to it — exactly one action (a cluster,
//! a weighted split, an aggregate fan-out or a direct response) plus optional policies.
//!
//! The match is optional: an empty match is a catch-all. At most one path matcher is set.
//! Policies that need a caller identity (`rate_limit.by: consumer`) require `auth`. The
//! clusters, the JWT provider and the quota a route names are recorded as references (with
//! their field paths) while parsing, for the store to check. `compress: true` is refused (400)
//! until the proxy compresses responses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Kind;

mod parse;

pub(super) use parse::parse;

/// A routing rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Route {
    /// Which requests this route takes; empty matches everything.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Higher wins (-1000–1000); ties go to the longest path match.
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Action: send to this cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Action: split traffic across clusters by weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_clusters: Option<Vec<WeightedCluster>>,
    /// Action: call several clusters and combine their JSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Action: answer without an upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Path rewrite before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Headers set / removed on the upstream request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderOps>,
    /// Headers set / removed on the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderOps>,
    /// Dotted paths of JSON response fields to strip (`user.password`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_response_fields: Vec<String>,
    /// Who may call the route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Per-proxy request rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Name of a fleet-wide quota charged per consumer (unauthenticated callers share one
    /// budget, consumer `""`); over it the proxy answers 429.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// Whole-request timeout (1–3600000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3600000)]
    pub timeout_ms: Option<u32>,
    /// Retries of failed upstream attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// CORS; the proxy answers preflights itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Response caching of GET / HEAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// Largest request body accepted (413 above).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_body_bytes: Option<u64>,
    /// Headers a request must carry (400 otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_headers: Vec<String>,
    /// Compress responses (gzip, brotli) when the client accepts it. Only `false` is accepted
    /// until the proxy compresses responses (`true` is a 400).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// Accept request paths holding an escaped `/` or `\` (`%2F`, `%5C`), forwarded as sent;
    /// without it the proxy answers such requests 400.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_encoded_slashes: bool,
}

/// The action of a validated route, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    /// `cluster`.
    Cluster(&'a str),
    /// `weighted_clusters`.
    WeightedClusters(&'a [WeightedCluster]),
    /// `aggregate`.
    Aggregate(&'a Aggregate),
    /// `direct_response`.
    DirectResponse(&'a DirectResponse),
}

impl Route {
    /// The route's action; `None` only for an unvalidated route.
    pub fn action(&self) -> Option<Action<'_>> {
        if let Some(c) = &self.cluster {
            return Some(Action::Cluster(c));
        }
        if let Some(w) = &self.weighted_clusters {
            return Some(Action::WeightedClusters(w));
        }
        if let Some(a) = &self.aggregate {
            return Some(Action::Aggregate(a));
        }
        self.direct_response.as_ref().map(Action::DirectResponse)
    }
}

/// Request matching; every set condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RouteMatch {
    /// Exact host or `*.example.com`; none matches any host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path starts with this (segment-wise is up to the proxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Path equals this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    /// Path matches this regex (Rust `regex` syntax, whole path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Uppercase methods; empty matches any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Lowercase header name → exact value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameter → exact value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
}

/// One cluster of a traffic split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WeightedCluster {
    /// Cluster name.
    pub cluster: String,
    /// Relative share (1–10000).
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: u32,
}

/// Fan out to several clusters and combine the JSON bodies into one object keyed by part name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Aggregate {
    /// 1–20 parts with unique names.
    pub parts: Vec<AggregatePart>,
}

/// One upstream call of an aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AggregatePart {
    /// Key of this part's body in the combined object.
    pub name: String,
    /// Cluster called.
    pub cluster: String,
    /// Path requested from the cluster.
    pub path: String,
}

/// A fixed answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectResponse {
    /// HTTP status (100–599).
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    /// Body (at most 64 KiB).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// Path rewrite: strip `strip_prefix`, then prepend `prefix`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Rewrite {
    /// Removed from the start of the path when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Put in front of the (stripped) path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Header changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct HeaderOps {
    /// Lowercase name → value, replacing any existing value.
    pub set: BTreeMap<String, String>,
    /// Lowercase names removed.
    pub remove: Vec<String>,
}

/// Authentication and authorisation of callers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Auth {
    /// Accept API keys (`x-api-key`).
    pub api_key: bool,
    /// Accept JWTs from this provider (`authorization: Bearer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// Every one of these scopes is required.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A token-bucket rate limit per proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateLimit {
    /// Requests allowed per window (at least 1).
    #[schema(minimum = 1)]
    pub requests: u32,
    /// Window length (1–86400).
    #[schema(minimum = 1, maximum = 86400)]
    pub per_seconds: u32,
    /// What one bucket counts.
    #[serde(default)]
    pub by: RateLimitKey,
}

/// What a rate-limit bucket counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// One bucket for the route.
    #[default]
    Route,
    /// One bucket per authenticated consumer (needs `auth`).
    Consumer,
    /// One bucket per client IP.
    Ip,
}

/// Retries of failed upstream attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Retries {
    /// Total attempts, the first included (1–10).
    #[schema(minimum = 1, maximum = 10)]
    pub attempts: u32,
    /// Failures that are retried (default `5xx`, `connect_failure`).
    pub on: Vec<RetryOn>,
    /// Timeout of each attempt (1–3600000, at most `timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3600000)]
    pub per_try_timeout_ms: Option<u32>,
}

/// A retryable failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RetryOn {
    /// A 5xx response.
    #[serde(rename = "5xx")]
    Status5xx,
    /// The connection could not be made.
    #[serde(rename = "connect_failure")]
    ConnectFailure,
    /// The connection was reset mid-request.
    #[serde(rename = "reset")]
    Reset,
}

/// CORS policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Cors {
    /// `*` or origins (`https://app.example.com`).
    pub allow_origins: Vec<String>,
    /// Uppercase methods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Lowercase header names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Preflight cache time (0–86400).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 86400)]
    pub max_age_s: Option<u32>,
}

/// Response caching (GET / HEAD, honours `Cache-Control`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cache {
    /// Time to live (1–86400).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_s: u32,
}

#[cfg(test)]
mod tests;
