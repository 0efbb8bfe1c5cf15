//! The Delta ADS server: streams the snapshot to proxies as incremental updates.
//!
//! What is sent (the encoded resources, the updates between snapshots and the diff) is the
//! [`snapshot`](crate::snapshot)'s; this module runs the streams.
//!
//! - [`session`]: one proxy's session as a pure state machine (subscriptions, nonces,
//!   ACK / NACK).
//! - [`response`]: a response (an update under one stream's nonce) and its gRPC frame.
//! - [`first_sync`]: the bound on streams sending a whole config at once.
//! - [`server`]: the gRPC service running one task per stream, over `body`'s response body.

mod body;
pub mod first_sync;
pub mod response;
mod server;
pub mod session;

pub use first_sync::FirstSyncLimit;
pub use server::AdsServer;
