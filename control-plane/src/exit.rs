//! The process exit codes of `control-plane`, from sysexits(3) as the proxy uses them: what
//! a script or a supervisor can tell apart without reading the log.

use crate::server::ServeError;
use crate::store::StoreError;

/// Any failure not listed below (a listener that cannot bind, a server that fails).
pub const FAILURE: u8 = 1;
/// EX_USAGE: bad flags or environment (clap errors, settings that cannot work together,
/// `LOG_FORMAT`).
pub const USAGE: u8 = 64;
/// EX_UNAVAILABLE: the database cannot be reached.
pub const UNAVAILABLE: u8 = 69;
/// EX_CONFIG: the database URL is unusable (unparseable, unknown scheme, bad option).
pub const CONFIG: u8 = 78;

/// The exit code for a control plane that stopped with `error`.
pub fn code(error: &ServeError) -> u8 {
    match error {
        ServeError::Config(_) => USAGE,
        ServeError::Store(StoreError::Config(_)) => CONFIG,
        ServeError::Store(StoreError::Unavailable(_)) => UNAVAILABLE,
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    #[test]
    fn errors_map_to_sysexits() {
        let open = ConfigError::OpenAdminOnNetwork("0.0.0.0:80".parse().unwrap());
        assert_eq!(code(&ServeError::Config(open)), USAGE);
        let bad_url = StoreError::Config("unsupported database url".into());
        assert_eq!(code(&ServeError::Store(bad_url)), CONFIG);
        let down = StoreError::Unavailable("connection refused".into());
        assert_eq!(code(&ServeError::Store(down)), UNAVAILABLE);
        let other = StoreError::Internal("migration".into());
        assert_eq!(code(&ServeError::Store(other)), FAILURE);
    }
}
