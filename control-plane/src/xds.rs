//! The Delta ADS server: streams the snapshot to proxies as incremental updates.
//!
//! - [`convert`]: stored specs → `switchyard.v1` protobuf messages.
//! - [`session`]: one proxy's session as a pure state machine (diff, nonces, ACK / NACK).
//! - [`server`]: the tonic service running one task per stream.

pub mod convert;
mod server;
pub mod session;

pub use server::AdsServer;
