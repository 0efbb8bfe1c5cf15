//! The report stream (SPEC §3): proxies send endpoint health, usage and quota consumption over
//! `switchyard.v1.ReportService/StreamReports`; the control plane turns health into the
//! fleet-wide view served at `GET /api/v1/health`.
//!
//! # Layout
//! - [`health`]: [`HealthView`], the pure per-node health state and its aggregate.
//! - [`service`]: [`ReportServer`], the gRPC service: one task per stream feeding the view.
//!
//! Usage counters and quota consumption are accepted and ignored for now; no
//! `ReportResponse` is sent until quota grants exist.

pub mod health;
pub mod service;

pub use health::HealthView;
pub use service::ReportServer;
