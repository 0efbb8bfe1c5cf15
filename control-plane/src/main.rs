//! `control-plane`: parse flags, start logging, serve until SIGTERM / SIGINT.
//!
//! Exit codes follow sysexits(3) ([`switchyard_control_plane::exit`]): 64 for bad flags or
//! `LOG_FORMAT` (`--help` and `--version` exit 0), 69 for an unreachable database, 78 for a bad
//! database URL, 1 for anything else.

use std::process::ExitCode;

use clap::Parser;
use switchyard_control_plane::config::Config;
use switchyard_control_plane::exit;
use switchyard_control_plane::server::run;
use switchyard_telemetry::LogFormat;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(exit::USAGE);
        }
    };
    let log_format = match LogFormat::from_env() {
        Ok(format) => format,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(exit::USAGE);
        }
    };
    switchyard_telemetry::init_logging(log_format);
    serve(config)
}

#[tokio::main]
async fn serve(config: Config) -> ExitCode {
    match run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit::code(&error);
            tracing::error!(%error, code, "control plane failed");
            ExitCode::from(code)
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the control plane");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
