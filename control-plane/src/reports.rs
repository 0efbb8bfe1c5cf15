//! The report stream (SPEC §3, modelled on Envoy's LRS and RLQS): proxies send endpoint
//! health, usage, quota consumption and quota requests over
//! `switchyard.v1.ReportService/StreamReports`; the control plane turns health into the
//! fleet-wide view served at `GET /api/v1/health`, stores usage and quota consumption (exactly
//! once per batch) for `GET /api/v1/usage` and `GET /api/v1/quotas/{name}/usage`, and answers
//! quota requests with grants (token leases).
//!
//! # Layout
//! - [`health`]: [`HealthView`], the pure per-node health state and its aggregate.
//! - [`service`]: [`ReportServer`], the gRPC service: one task per stream feeding the view,
//!   writing usage to the store (acknowledged in `ReportResponse.usage_acked`) and granting
//!   quota tokens (`ReportResponse.grants`).
//! - [`ingest`]: [`UsageIngest`], the group-commit writer every stream's usage goes through.
//! - [`retention`]: the background task that prunes old usage and ended quota windows.

pub mod health;
pub mod ingest;
pub mod retention;
pub mod service;

pub use health::HealthView;
pub use ingest::UsageIngest;
pub use service::ReportServer;
