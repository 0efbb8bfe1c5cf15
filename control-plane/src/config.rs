//! Control-plane settings: the fixed flags of the SPEC, each also read from its env var.

use std::net::SocketAddr;

use clap::Parser;

/// Flags and environment of the `control-plane` binary.
#[derive(Clone, Debug, Parser)]
#[command(name = "control-plane", version, about = "Switchyard control plane")]
pub struct Config {
    /// `sqlite://…` (embedded default, created if missing) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://switchyard.db")]
    pub database_url: String,
    /// REST admin API, `/metrics` and `/healthz`.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:8080")]
    pub admin_addr: SocketAddr,
    /// gRPC config and report streams.
    #[arg(long, env = "XDS_ADDR", default_value = "127.0.0.1:18000")]
    pub xds_addr: SocketAddr,
    /// Bearer token with full rights on the admin API. Without one the API is open, and only
    /// a loopback `--admin-addr` is allowed.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bootstrap token proxies must present on the xDS and report streams. Without one any
    /// client that reaches `--xds-addr` may connect.
    #[arg(long, env = "PROXY_TOKEN", hide_env_values = true)]
    pub proxy_token: Option<String>,
    /// MiB of whole configs (first syncs) sent at once: a stream's first sync waits until its
    /// config's size fits (a config larger than the budget goes alone) and holds its share
    /// until the proxy ACKs or NACKs, at most 5 s. Bounds the memory of a (re)connecting fleet.
    /// Default: 4 per CPU.
    #[arg(long, env = "FIRST_SYNC_BUDGET_MIB", value_parser = clap::value_parser!(u32).range(1..))]
    pub first_sync_budget_mib: Option<u32>,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An open admin API on a non-loopback address.
    #[error(
        "refusing to serve an admin API without --admin-token on non-loopback address {0}; set ADMIN_TOKEN or bind 127.0.0.1"
    )]
    OpenAdminOnNetwork(SocketAddr),
    /// An empty token.
    #[error("{0} must not be empty")]
    EmptyToken(&'static str),
}

impl Config {
    /// Checks settings that flags alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.proxy_token.as_deref() == Some("") {
            return Err(ConfigError::EmptyToken("--proxy-token"));
        }
        match &self.admin_token {
            Some(token) if token.is_empty() => Err(ConfigError::EmptyToken("--admin-token")),
            None if !self.admin_addr.ip().is_loopback() => {
                Err(ConfigError::OpenAdminOnNetwork(self.admin_addr))
            }
            _ => Ok(()),
        }
    }
}
