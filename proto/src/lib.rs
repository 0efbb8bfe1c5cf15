//! Switchyard's wire protocol: the config resources streamed over Delta ADS and the report
//! stream, generated from `proto/` at build time.
//!
//! This crate holds only generated code and the type URLs; conversion to domain types lives at
//! each edge (the control plane's `xds::convert`, the proxy's snapshot builder).

/// Generated messages and services of package `switchyard.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("switchyard.v1");
}

/// Type URLs of the resources carried in `Any` payloads.
pub mod type_url {
    /// `switchyard.v1.Cluster`
    pub const CLUSTER: &str = "type.googleapis.com/switchyard.v1.Cluster";
    /// `switchyard.v1.Route`
    pub const ROUTE: &str = "type.googleapis.com/switchyard.v1.Route";
    /// `switchyard.v1.Consumer`
    pub const CONSUMER: &str = "type.googleapis.com/switchyard.v1.Consumer";
    /// `switchyard.v1.JwtProvider`
    pub const JWT_PROVIDER: &str = "type.googleapis.com/switchyard.v1.JwtProvider";
    /// `switchyard.v1.Quota`
    pub const QUOTA: &str = "type.googleapis.com/switchyard.v1.Quota";

    /// Every type the proxy subscribes to, in the order the control plane sends them
    /// (resources that others refer to first): clusters, then the identities and budgets that
    /// route policies use, then routes — so a route never arrives before what it needs.
    pub const ALL: [&str; 5] = [CLUSTER, CONSUMER, JWT_PROVIDER, QUOTA, ROUTE];
}
