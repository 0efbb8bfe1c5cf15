//! The Delta ADS server: streams the snapshot to proxies as incremental updates.
//!
//! - [`convert`]: stored specs → `switchyard.v1` protobuf messages.
//! - [`session`]: one proxy's session as a pure state machine (diff, nonces, ACK / NACK).
//! - [`response`]: a response and its wire form, framed from the snapshot's encoded resources.
//! - [`delta`]: the diff of one type, and the update from one snapshot to the next computed
//!   once for every session holding the former.
//! - [`first_sync`]: the bound on streams sending a whole config at once.
//! - [`server`]: the gRPC service running one task per stream, over `body`'s response body.

mod body;
pub mod convert;
pub mod delta;
pub mod first_sync;
pub mod response;
mod server;
pub mod session;

pub use first_sync::FirstSyncLimit;
pub use server::AdsServer;
