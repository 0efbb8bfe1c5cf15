//! The proxy's startup configuration, shared by `main.rs` (flags) and tests (built in code).
//!
//! Parsing helpers for the flag formats live here so that malformed input is refused before
//! anything is started; this module does not read flags or environment variables itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything [`crate::Proxy::bind`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Control-plane gRPC addresses (`http://host:port`), tried in order; the client fails over
    /// to the next one when the current one is unreachable.
    pub control_plane: Vec<String>,
    /// Client traffic listener; port 0 picks a free port (see [`crate::Proxy::listen_addr`]).
    pub listen: SocketAddr,
    /// Admin listener (`/ready`, `/config_dump`, `/metrics`); port 0 allowed.
    pub admin_addr: SocketAddr,
    /// Identity in the fleet, sent in the xDS `Node`.
    pub node_id: String,
    /// Node labels, sent as `Node.metadata`.
    pub labels: BTreeMap<String, String>,
    /// Traffic worker threads, each with its own listener socket (`SO_REUSEPORT`) and
    /// current-thread runtime; default: the number of CPUs this process may use.
    pub workers: usize,
    /// How long graceful shutdown waits for in-flight requests before giving up.
    pub drain_timeout: Duration,
    /// Bootstrap token presented to the control plane on the config and report streams
    /// (`authorization: Bearer <token>`); `None` when the control plane needs none.
    pub control_plane_token: Option<String>,
}

impl Config {
    /// A config with the documented defaults and the given control-plane addresses.
    pub fn new(control_plane: Vec<String>) -> Self {
        Self {
            control_plane,
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9901)),
            node_id: default_node_id(),
            labels: BTreeMap::new(),
            workers: default_workers(),
            drain_timeout: Duration::from_secs(10),
            control_plane_token: None,
        }
    }
}

/// A flag value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("label {0:?} is not key=value")]
    LabelNotKeyValue(String),
    #[error("label {0:?} has an empty key")]
    LabelEmptyKey(String),
    #[error("label key {0:?} appears twice")]
    LabelDuplicate(String),
    #[error("control-plane list is empty")]
    NoControlPlane,
    #[error("control-plane address {0:?} is not http://host:port")]
    BadControlPlane(String),
    #[error(
        "control-plane address {0:?} is https://, but this proxy cannot speak TLS to the control plane yet; use http:// (with --control-plane-token) on a trusted network"
    )]
    TlsControlPlane(String),
    #[error("the control-plane token must be non-empty visible ASCII")]
    BadControlPlaneToken,
}

/// The `authorization` metadata value carrying `token`.
pub fn control_plane_authorization(
    token: &str,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, ConfigError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::BadControlPlaneToken);
    }
    format!("Bearer {token}")
        .parse()
        .map_err(|_| ConfigError::BadControlPlaneToken)
}

/// Parses `key=value,key2=value2` (empty string = no labels; whitespace around items ignored).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let Some((key, value)) = item.split_once('=') else {
            return Err(ConfigError::LabelNotKeyValue(item.to_owned()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::LabelEmptyKey(item.to_owned()));
        }
        if labels
            .insert(key.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(ConfigError::LabelDuplicate(key.to_owned()));
        }
    }
    Ok(labels)
}

/// Parses a comma-separated list of control-plane addresses; `host:port` gets `http://`.
pub fn parse_control_plane(text: &str) -> Result<Vec<String>, ConfigError> {
    let mut addresses = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let address = if item.contains("://") {
            item.to_owned()
        } else {
            format!("http://{item}")
        };
        let uri: http::Uri = address
            .parse()
            .map_err(|_| ConfigError::BadControlPlane(item.to_owned()))?;
        if uri.scheme_str() == Some("https") {
            return Err(ConfigError::TlsControlPlane(item.to_owned()));
        }
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ConfigError::BadControlPlane(item.to_owned()));
        }
        addresses.push(address);
    }
    if addresses.is_empty() {
        return Err(ConfigError::NoControlPlane);
    }
    Ok(addresses)
}

/// One worker per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Hostname + "-" + pid; the hostname comes from `/proc/sys/kernel/hostname`, else "proxy".
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "proxy".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_reject() {
        let labels = parse_labels("zone=a, team = web ,").unwrap();
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(labels.get("team").map(String::as_str), Some("web"));
        assert!(parse_labels("").unwrap().is_empty());
        assert_eq!(
            parse_labels("zone"),
            Err(ConfigError::LabelNotKeyValue("zone".into()))
        );
        assert_eq!(
            parse_labels("=a"),
            Err(ConfigError::LabelEmptyKey("=a".into()))
        );
        assert_eq!(
            parse_labels("a=1,a=2"),
            Err(ConfigError::LabelDuplicate("a".into()))
        );
    }

    #[test]
    fn control_plane_list() {
        assert_eq!(
            parse_control_plane("http://a:1, b:2").unwrap(),
            vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
        );
        assert_eq!(parse_control_plane(" "), Err(ConfigError::NoControlPlane));
        assert!(parse_control_plane("ftp://a:1").is_err());
        assert_eq!(
            parse_control_plane("http://a:1,https://b:2"),
            Err(ConfigError::TlsControlPlane("https://b:2".into()))
        );
    }
}
