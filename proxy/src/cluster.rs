//! A cluster at run time: [`ClusterRuntime`] (built per config from one spec: balancer,
//! connect settings, breaker limits) over [`ClusterState`] (long-lived, kept by cluster name
//! across configs: endpoint group, retry budget, counters).
//!
//! - [`runtime`]: the per-config runtime and its pure build;
//! - [`state`]: the long-lived state and the per-cluster `/metrics` counters;
//! - [`retry_budget`]: the token bucket that caps retries.

pub mod retry_budget;
pub mod runtime;
pub mod state;

pub use runtime::ClusterRuntime;
pub use state::{ClusterState, ClusterStats};
