//! `proxy`: parse flags, start tracing, run the proxy until SIGTERM/SIGINT.
//!
//! Bad configuration (flags, `LOG_FORMAT`) exits with code 64 (EX_USAGE); everything else lives
//! in the library.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchyard_proxy::{Config, config};
use switchyard_telemetry::LogFormat;

/// Exit code for unusable flags (sysexits.h EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// Switchyard proxy: the data plane, configured by the control plane over Delta ADS.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// Control-plane gRPC addresses, comma-separated; fails over between them.
    #[arg(long, env = "CONTROL_PLANE", default_value = "http://127.0.0.1:18000")]
    control_plane: String,
    /// HTTP listener for client traffic.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Admin listener: /ready, /metrics, /config_dump.
    #[arg(long, env = "PROXY_ADMIN_ADDR", default_value = "127.0.0.1:9901")]
    admin_addr: SocketAddr,
    /// Identity in the fleet (default: hostname-pid).
    #[arg(long, env = "NODE_ID")]
    node_id: Option<String>,
    /// Node labels, key=value,…
    #[arg(long, env = "NODE_LABELS", default_value = "")]
    labels: String,
    /// Traffic worker threads (default: one per CPU available to the process).
    #[arg(long, env = "WORKERS")]
    workers: Option<usize>,
    /// Bootstrap token for the control plane's `--proxy-token`.
    #[arg(long, env = "CONTROL_PLANE_TOKEN", hide_env_values = true)]
    control_plane_token: Option<String>,
}

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match build_config(flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let log_format = match LogFormat::from_env() {
        Ok(format) => format,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    switchyard_telemetry::init_logging(log_format);
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_config(flags: Flags) -> anyhow::Result<Config> {
    let control_plane =
        config::parse_control_plane(&flags.control_plane).context("invalid --control-plane")?;
    let labels = config::parse_labels(&flags.labels).context("invalid --labels")?;
    let mut config = Config::new(control_plane);
    config.listen = flags.listen;
    config.admin_addr = flags.admin_addr;
    config.labels = labels;
    match flags.workers {
        Some(0) => anyhow::bail!("invalid --workers: must be at least 1"),
        Some(workers) => config.workers = workers,
        None => {}
    }
    if let Some(token) = flags.control_plane_token {
        config::control_plane_authorization(&token).context("invalid --control-plane-token")?;
        config.control_plane_token = Some(token);
    }
    match flags.node_id {
        Some(node_id) if node_id.trim().is_empty() => anyhow::bail!("invalid --node-id: empty"),
        Some(node_id) => config.node_id = node_id,
        None => {}
    }
    Ok(config)
}

/// The control side (xDS, admin, reports, health checks) runs on this thread's runtime; traffic
/// runs on the worker threads the proxy starts.
#[tokio::main(flavor = "current_thread")]
async fn serve(config: Config) -> anyhow::Result<()> {
    switchyard_proxy::run(config, shutdown_signal())
        .await
        .context("proxy failed")
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
