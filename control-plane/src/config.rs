//! Control-plane settings: the fixed flags of the SPEC, each also read from its env var.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// How long a disconnected proxy stays in the fleet view by default.
pub const DEFAULT_PROXY_TTL: Duration = Duration::from_secs(3600);

/// How long per-minute usage is kept by default.
pub const DEFAULT_USAGE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// client that reaches `--xds-addr` may connect, and only a loopback `--xds-addr` is
    /// allowed.
    #[arg(long, env = "PROXY_TOKEN", hide_env_values = true)]
    pub proxy_token: Option<String>,
    /// How long a disconnected proxy stays in `GET /api/v1/proxies` (a humantime duration:
    /// `90s`, `30m`, `1h`); a proxy that reconnects within it keeps its record.
    #[arg(long, env = "PROXY_TTL", default_value = "1h", value_parser = parse_ttl)]
    pub proxy_ttl: Duration,
    /// MiB of whole configs (first syncs) sent at once: a stream's first sync waits until its
    /// config's size fits (a config larger than the budget goes alone) and holds its share
    /// until the proxy ACKs or NACKs, at most 5 s. Bounds the memory of a (re)connecting fleet.
    /// Default: 4 per CPU.
    #[arg(long, env = "FIRST_SYNC_BUDGET_MIB", value_parser = clap::value_parser!(u32).range(1..))]
    pub first_sync_budget_mib: Option<u32>,
    /// How long the per-minute usage of proxy reports is kept (a humantime duration of at
    /// least a minute: `90m`, `7d`); older minutes are pruned every minute, and
    /// `GET /api/v1/usage` cannot look back further.
    #[arg(long, env = "USAGE_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub usage_retention: Duration,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An open admin API on a non-loopback address.
    #[error(
        "refusing to serve an admin API without --admin-token on non-loopback address {0}; set ADMIN_TOKEN or bind 127.0.0.1"
    )]
    OpenAdminOnNetwork(SocketAddr),
    /// Open config streams on a non-loopback address.
    #[error(
        "refusing to serve xDS without --proxy-token on non-loopback --xds-addr {0}; set PROXY_TOKEN or bind 127.0.0.1"
    )]
    OpenXdsOnNetwork(SocketAddr),
    /// An empty token.
    #[error("{0} must not be empty")]
    EmptyToken(&'static str),
}

impl Config {
    /// Checks settings that flags alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.proxy_token {
            Some(token) if token.is_empty() => {
                return Err(ConfigError::EmptyToken("--proxy-token"));
            }
            None if !self.xds_addr.ip().is_loopback() => {
                return Err(ConfigError::OpenXdsOnNetwork(self.xds_addr));
            }
            _ => {}
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

/// A positive humantime duration (`30s`, `1h`).
fn parse_ttl(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(ttl) if ttl.is_zero() => Err("must be longer than 0".to_owned()),
        Ok(ttl) => Ok(ttl),
        Err(error) => Err(format!("{error} (e.g. 90s, 30m, 1h)")),
    }
}

/// A humantime duration of at least a minute (the granularity of stored usage).
fn parse_retention(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(retention) if retention < Duration::from_secs(60) => {
            Err("must be at least 1m".to_owned())
        }
        Ok(retention) => Ok(retention),
        Err(error) => Err(format!("{error} (e.g. 90m, 24h, 7d)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["control-plane"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv)
    }

    #[test]
    fn proxy_ttl_is_a_positive_duration() {
        assert_eq!(parse(&[]).unwrap().proxy_ttl, DEFAULT_PROXY_TTL);
        let config = parse(&["--proxy-ttl", "90s"]).unwrap();
        assert_eq!(config.proxy_ttl, Duration::from_secs(90));
        for bad in ["0s", "soon", "-1h"] {
            let error = parse(&[&format!("--proxy-ttl={bad}")]).unwrap_err();
            assert!(error.to_string().contains("--proxy-ttl"), "{bad}: {error}");
        }
    }

    #[test]
    fn usage_retention_is_at_least_a_minute() {
        assert_eq!(parse(&[]).unwrap().usage_retention, DEFAULT_USAGE_RETENTION);
        let config = parse(&["--usage-retention", "36h"]).unwrap();
        assert_eq!(config.usage_retention, Duration::from_secs(36 * 3600));
        assert_eq!(
            parse(&["--usage-retention=1m"]).unwrap().usage_retention,
            Duration::from_secs(60)
        );
        for bad in ["30s", "0", "forever", "-7d", ""] {
            let error = parse(&[&format!("--usage-retention={bad}")]).unwrap_err();
            assert!(
                error.to_string().contains("--usage-retention"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn open_listeners_must_be_loopback() {
        parse(&["--xds-addr", "127.0.0.1:1"])
            .unwrap()
            .validate()
            .unwrap();
        let open = parse(&["--xds-addr", "0.0.0.0:18000"]).unwrap();
        let error = open.validate().unwrap_err();
        assert!(matches!(error, ConfigError::OpenXdsOnNetwork(_)), "{error}");
        let message = error.to_string();
        assert!(message.contains("--proxy-token") && message.contains("--xds-addr"));
        parse(&["--xds-addr", "0.0.0.0:18000", "--proxy-token", "t"])
            .unwrap()
            .validate()
            .unwrap();
        let error = parse(&["--admin-addr", "[::]:8080"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            matches!(error, ConfigError::OpenAdminOnNetwork(_)),
            "{error}"
        );
    }
}
