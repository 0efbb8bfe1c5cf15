//! `control-plane`: parse flags, start logging, serve until SIGTERM / SIGINT.

use clap::Parser;
use switchyard_control_plane::config::Config;
use switchyard_control_plane::server::{ServeError, run};

/// sysexits' EX_CONFIG-ish "usage" code for settings that cannot work.
const EXIT_BAD_CONFIG: i32 = 64;

#[tokio::main]
async fn main() {
    let config = Config::parse();
    init_tracing();
    match run(config, shutdown_signal()).await {
        Ok(()) => {}
        Err(error @ ServeError::Config(_)) => {
            tracing::error!(%error, "bad configuration");
            std::process::exit(EXIT_BAD_CONFIG);
        }
        Err(error) => {
            tracing::error!(%error, "control plane failed");
            std::process::exit(1);
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
