//! Switchyard control plane: stores config in SQL, serves it over REST and streams it to
//! proxies over Delta ADS.
//!
//! # Layout
//! - [`config`]: process settings (flags / env).
//! - [`api`]: the REST admin API (axum), one file per resource, problem+json errors, OpenAPI.
//! - [`model`]: validated domain types and the references between resources; REST JSON → model
//!   with every invalid field named.
//! - [`quota`]: fleet-wide quotas, the pure part: calendar windows and the grant size.
//! - [`store`]: SQLite / PostgreSQL persistence, revisions and history; proxy usage per
//!   minute, stored exactly once per report batch; quota windows (tokens granted, requests
//!   let through).
//! - [`snapshot`]: the xDS view of the config, rebuilt incrementally (debounced) after commits:
//!   model → proto conversion, each resource encoded once, the diff and the update from one
//!   snapshot to the next (encoded once for every stream).
//! - [`xds`]: the Delta ADS server: per-stream sessions (subscriptions, nonces, ACK / NACK),
//!   gRPC framing, the first-sync limit.
//! - [`fleet`]: what the control plane knows of each proxy (connection, ACKed revision, NACKs).
//! - [`reports`]: the report stream from proxies (health into the fleet-wide view, usage and
//!   quota consumption into the store, acknowledged; quota leases granted) and the pruning of
//!   old usage.
//! - [`metrics`]: Prometheus counters.
//! - [`timestamp`]: how times are written and read (RFC 3339), and usage minutes.
//! - [`credentials`]: bearer tokens (admin API, proxy bootstrap token).
//! - [`server`]: process wiring: bind, serve, shut down gracefully.
//! - [`exit`]: the binary's exit codes (sysexits).
//!
//! Imports go one way, with no cycle (`scripts/module-graph.py control-plane/src` checks):
//! `model` ← `quota` ← `store` ← `snapshot` ← `fleet` ← `metrics` ← `xds` and `reports` ← `api`, on the
//! leaves `config`, `timestamp` and `credentials`; `server` (and `exit`) wire them together.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod credentials;
pub mod exit;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod quota;
pub mod reports;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod timestamp;
pub mod xds;
