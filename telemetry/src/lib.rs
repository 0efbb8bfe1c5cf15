//! Telemetry shared by both Switchyard binaries, so `control-plane` and `proxy` read their
//! environment the same way.
//!
//! Today this is log setup: `RUST_LOG` is the [`tracing_subscriber::EnvFilter`] directive
//! (default `info`; an unparseable one falls back to `info`) and `LOG_FORMAT` picks the output,
//! `text` (the default, also when empty) or `json`, case-insensitive. Any other `LOG_FORMAT` is a usage error the
//! binaries report before starting (exit 64, EX_USAGE). OpenTelemetry setup will live here too.
//!
//! ```no_run
//! let format = switchyard_telemetry::LogFormat::from_env().unwrap_or_else(|error| {
//!     eprintln!("error: {error}");
//!     std::process::exit(64);
//! });
//! switchyard_telemetry::init_logging(format);
//! ```

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The environment variable that selects the log format.
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";

/// The filter used when `RUST_LOG` is unset or unparseable.
const DEFAULT_FILTER: &str = "info";

/// How log lines are written (to stdout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A telemetry setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_FORMAT` holds something other than `text` or `json`.
    #[error("invalid {LOG_FORMAT_VAR} {0:?}: use text or json")]
    LogFormat(String),
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    /// `text` or `json`, case-insensitive, surrounding whitespace ignored.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let trimmed = value.trim();
        if trimmed.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if trimmed.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err(TelemetryError::LogFormat(value.to_owned()))
        }
    }
}

impl LogFormat {
    /// The format named by `LOG_FORMAT`; [`LogFormat::Text`] when it is unset.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_var(std::env::var_os(LOG_FORMAT_VAR))
    }

    /// The format named by a `LOG_FORMAT` value (`None`: unset). Empty counts as unset, as
    /// clap treats the binaries' other environment variables; a value that is not UTF-8 is an
    /// error like any other unknown one.
    pub fn from_var(value: Option<OsString>) -> Result<Self, TelemetryError> {
        match value {
            None => Ok(LogFormat::Text),
            Some(value) if value.is_empty() => Ok(LogFormat::Text),
            Some(value) => match value.to_str() {
                Some(text) => text.parse(),
                None => Err(TelemetryError::LogFormat(
                    value.to_string_lossy().into_owned(),
                )),
            },
        }
    }
}

/// Installs the process-wide log subscriber: `RUST_LOG` filter, `format` output. A second call
/// (or a subscriber installed by someone else) leaves the first in place.
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only when a global subscriber is already set; keeping it is what a
    // second call should do.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!(LogFormat::from_var(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_var(Some("".into())), Ok(LogFormat::Text));
        for (value, want) in [
            ("text", LogFormat::Text),
            ("TEXT", LogFormat::Text),
            ("json", LogFormat::Json),
            ("Json", LogFormat::Json),
            (" JSON ", LogFormat::Json),
        ] {
            assert_eq!(
                LogFormat::from_var(Some(value.into())),
                Ok(want),
                "{value:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_an_error_naming_the_variable() {
        for value in [" ", "xml", "jsonl", "pretty"] {
            let error = LogFormat::from_var(Some(value.into())).unwrap_err();
            assert_eq!(error, TelemetryError::LogFormat(value.to_owned()));
            assert!(error.to_string().contains("LOG_FORMAT"), "{error}");
        }
    }
}
