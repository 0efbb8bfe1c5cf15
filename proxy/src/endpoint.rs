//! Endpoints at run time, the bottom layer of the upstream side: it depends on nothing above it
//! (no cluster, balancer, health or request code).
//!
//! - [`state`]: [`EndpointState`], the long-lived per-address state (in-flight count, latency
//!   estimate, health and ejection flags, outlier counters) every layer above reads or writes;
//!   [`InFlightGuard`] counts a request against it.
//! - [`group`]: [`EndpointGroup`], what one cluster's endpoints share: the availability epoch
//!   balancers watch and the in-flight counts of the zone-overload rule.
//! - [`pool`]: each endpoint's idle upstream HTTP/1.1 connections, connecting and sending.
//! - [`ewma`]: the lock-free peak EWMA of response time kept per endpoint.
//! - [`clock`]: the cheap monotonic and wall clocks the counters are stamped with.

pub mod clock;
pub mod ewma;
pub mod group;
pub mod pool;
pub mod state;

pub use group::EndpointGroup;
pub use state::{EndpointState, InFlightGuard};
