//! Validated domain types built from the wire protos with `TryFrom`.
//!
//! Invalid config is refused here (and NACKed by the xDS client), never discovered while
//! routing. This module holds plain data only: compiling it into routers and balancers is the
//! snapshot's job.

pub mod cluster;
pub mod consumer;
pub mod policy;
pub mod quota;
pub mod route;

pub use cluster::{
    CircuitBreakerSpec, ClusterError, ClusterSpec, EndpointSpec, HashOn, HealthCheckSpec, LbPolicy,
    OutlierSpec,
};
pub use consumer::{ConsumerError, ConsumerSpec};
pub use policy::{
    AuthSpec, CacheSpec, CorsSpec, HeaderOpsSpec, PolicyError, RateLimitBy, RateLimitSpec,
    RewriteSpec, RoutePolicies,
};
pub use quota::{QuotaError, QuotaSpec};
pub use route::{
    AggregatePart, HostMatch, PathMatch, RetryOn, RetrySpec, RouteAction, RouteError,
    RouteMatchSpec, RouteSpec,
};
