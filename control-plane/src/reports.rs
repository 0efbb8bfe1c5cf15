//! The report stream (SPEC §3): proxies send endpoint health, usage and quota consumption over
//! `switchyard.v1.ReportService/StreamReports`; the control plane turns health into the
//! fleet-wide view served at `GET /api/v1/health`, and stores usage (exactly once per batch)
//! for `GET /api/v1/usage`.
//!
//! # Layout
//! - [`health`]: [`HealthView`], the pure per-node health state and its aggregate.
//! - [`service`]: [`ReportServer`], the gRPC service: one task per stream feeding the view and
//!   writing usage to the store, acknowledged in `ReportResponse.usage_acked`.
//! - [`retention`]: the background task that prunes old usage.
//!
//! Quota consumption is accepted and ignored for now: responses carry no grants yet.

pub mod health;
pub mod retention;
pub mod service;

pub use health::HealthView;
pub use service::ReportServer;
