//! `fleet-sim`: opens N simulated proxies — real Delta ADS streams with distinct node ids,
//! ACKing every response like the real proxy — against one control plane, applies K one-route
//! changes through the REST API, and reports per change how long until every proxy ACKed it,
//! how many bytes each proxy received, and what the control plane spent (CPU, resident memory).
//!
//! # Layout
//!
//! - [`control_plane`]: the control plane under test — started from a binary on a temporary
//!   SQLite database, or an already running one — and its `/proc` figures (RSS, CPU time).
//! - [`rest`]: the few admin API calls (seed a cluster and R routes, change one route).
//! - [`fleet`]: the simulated proxies, many streams multiplexed over a few HTTP/2 connections.
//! - [`usage`]: `--report-usage`, each simulated proxy's report stream sending one usage batch
//!   a second and checking that each is acknowledged.
//! - [`database`]: `--postgres`, a fresh PostgreSQL database for the started control plane,
//!   and that server's figures.
//! - [`report`]: percentiles, the table and the JSON.
//!
//! Everything is bounded: N, R, K, `--seconds`, a per-change timeout and a global `--timeout`;
//! the control plane it starts is stopped (by PID) when the run ends, whatever the outcome, and
//! a database made by `--postgres` is dropped.

#![forbid(unsafe_code)]

mod control_plane;
mod database;
mod fleet;
mod report;
mod rest;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use control_plane::ControlPlane;
use database::FreshPostgres;
use fleet::Fleet;
use report::{ChangeResult, Report, UsageMetrics, UsageResult};

/// Simulate a fleet of Switchyard proxies against one control plane.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// Control-plane binary to start on a temporary SQLite database with free loopback ports
    /// (instead of --xds-url / --admin-url).
    #[arg(long, conflicts_with_all = ["xds_url", "admin_url"])]
    control_plane_bin: Option<PathBuf>,
    /// CPU list (taskset syntax) to pin a started control plane to, e.g. `1`.
    #[arg(long, requires = "control_plane_bin")]
    control_plane_cpu: Option<String>,
    /// Run the started control plane on a fresh PostgreSQL database (created with psql on the
    /// server of this base URL, dropped at the end) instead of a temporary SQLite file.
    #[arg(
        long,
        requires = "control_plane_bin",
        num_args = 0..=1,
        default_missing_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "BASE_URL"
    )]
    postgres: Option<String>,
    /// xDS URL of a running control plane, e.g. http://127.0.0.1:18000.
    #[arg(long, requires = "admin_url")]
    xds_url: Option<String>,
    /// Admin URL of that control plane, e.g. http://127.0.0.1:8080.
    #[arg(long, requires = "xds_url")]
    admin_url: Option<String>,
    /// PID of that control plane, for its RSS and CPU figures (omitted from the report without).
    #[arg(long, requires = "xds_url")]
    control_plane_pid: Option<u32>,
    /// Number of simulated proxies (ADS streams).
    #[arg(short = 'n', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    proxies: u32,
    /// Streams multiplexed over one HTTP/2 connection.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams_per_connection: u32,
    /// Streams being set up at the same time while connecting the fleet.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Routes to seed before connecting (plus one cluster).
    #[arg(short = 'r', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    routes: u32,
    /// One-route changes to apply and time (after the usage phase with --report-usage).
    #[arg(short = 'k', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    changes: u32,
    /// Also open a report stream per proxy and send one usage batch a second for --seconds;
    /// measures the control plane's CPU and database writes and the send → ack lag.
    #[arg(long)]
    report_usage: bool,
    /// Usage counters per batch (distinct route × consumer × status class keys).
    #[arg(long, default_value_t = 20, requires = "report_usage", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    usage_counters: u32,
    /// Batches each proxy sends, one a second.
    #[arg(long, default_value_t = 20, requires = "report_usage", value_parser = clap::value_parser!(u32).range(1..=3_600))]
    seconds: u32,
    /// How long to wait for acknowledgements after the last batch.
    #[arg(long, default_value = "10s", requires = "report_usage", value_parser = humantime::parse_duration)]
    usage_drain: Duration,
    /// Pause between two changes.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pause: Duration,
    /// Give up on one change (report the proxies that had not ACKed) after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    change_timeout: Duration,
    /// Bound on the whole run (start, seed, connect, changes).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Bootstrap token the simulated proxies present (the control plane's --proxy-token).
    #[arg(long, env = "FLEET_SIM_PROXY_TOKEN", hide_env_values = true)]
    proxy_token: Option<String>,
    /// Admin API bearer token (the control plane's --admin-token), for an external one.
    #[arg(long, env = "FLEET_SIM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Node id prefix; proxy i is `<prefix>-<i>`.
    #[arg(long, default_value = "fleet-sim")]
    node_prefix: String,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let postgres = match &flags.postgres {
        Some(base) => Some(FreshPostgres::create(base).await?),
        None => None,
    };
    let outcome = run_with(&flags, postgres.as_ref()).await;
    if let Some(postgres) = postgres {
        postgres.drop_database().await;
    }
    outcome
}

async fn run_with(flags: &Flags, postgres: Option<&FreshPostgres>) -> anyhow::Result<()> {
    let mut control_plane = match &flags.control_plane_bin {
        Some(binary) => ControlPlane::start(
            binary,
            flags.control_plane_cpu.as_deref(),
            flags.proxy_token.as_deref(),
            postgres.map(FreshPostgres::url),
        )
        .await
        .context("starting the control plane")?,
        None => ControlPlane::external(
            flags
                .xds_url
                .clone()
                .context("--xds-url or --control-plane-bin is required")?,
            flags.admin_url.clone().context("--admin-url is required")?,
            flags.control_plane_pid,
        ),
    };
    // Whatever ends the run (done, timeout, Ctrl-C, SIGTERM), a started control plane is
    // stopped before returning.
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(flags.timeout, simulate(flags, &control_plane, postgres)) => outcome
            .map_err(|_| anyhow::anyhow!("global --timeout {:?} reached", flags.timeout))
            .and_then(|report| report),
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    control_plane.stop().await;
    let report = outcome?;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report.json())?;
    println!("{json}");
    if let Some(path) = &flags.json {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn simulate(
    flags: &Flags,
    control_plane: &ControlPlane,
    postgres: Option<&FreshPostgres>,
) -> anyhow::Result<Report> {
    let admin = rest::Admin::new(control_plane.admin_url(), flags.admin_token.as_deref());
    let started = Instant::now();
    admin.seed(flags.routes).await.context("seeding routes")?;
    let seed_time = started.elapsed();
    eprintln!(
        "fleet-sim: seeded 1 cluster + {} routes in {:.1} s",
        flags.routes,
        seed_time.as_secs_f64()
    );
    // Let the snapshot builder publish the seed before measuring the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = control_plane.rss_kb();

    let connect_started = Instant::now();
    let mut fleet = Fleet::connect(fleet::Settings {
        xds_url: control_plane.xds_url().to_owned(),
        proxies: flags.proxies,
        streams_per_connection: flags.streams_per_connection,
        connect_concurrency: flags.connect_concurrency,
        node_prefix: flags.node_prefix.clone(),
        token: flags.proxy_token.clone(),
    })
    .await
    .context("connecting the simulated proxies")?;
    let connect_time = connect_started.elapsed();
    let initial_bytes = fleet.bytes_received();
    eprintln!(
        "fleet-sim: {} proxies synced over {} connections in {:.1} s",
        flags.proxies,
        fleet.connections(),
        connect_time.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = control_plane.rss_kb();

    // Idle CPU of the control plane with the fleet connected, to read the per-change CPU against.
    let idle_window = Duration::from_secs(2);
    let idle_cpu_before = control_plane.cpu_time();
    tokio::time::sleep(idle_window).await;
    let idle_cpu = control_plane
        .cpu_time()
        .zip(idle_cpu_before)
        .map(|(after, before)| after.saturating_sub(before));

    let usage = if flags.report_usage {
        Some(
            simulate_usage(flags, control_plane, &admin, &fleet, postgres)
                .await
                .context("usage reports")?,
        )
    } else {
        None
    };

    let mut changes = Vec::new();
    let mut bytes_before_changes = fleet.bytes_received();
    for index in 0..flags.changes {
        let name = rest::route_name(index % flags.routes);
        let cpu_before = control_plane.cpu_time();
        let change = fleet.start_change(index, &name);
        let put_started = Instant::now();
        admin
            .change_route(&name, index)
            .await
            .with_context(|| format!("change {index}: PUT route {name}"))?;
        let put_time = put_started.elapsed();
        let acks = fleet.wait_acks(&change, flags.change_timeout).await;
        let cpu = control_plane
            .cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let bytes_now = fleet.bytes_received();
        let result = ChangeResult {
            index,
            route: name,
            put_time,
            latencies: acks.latencies,
            bytes_per_proxy: acks.bytes,
            stream_bytes_total: bytes_now - bytes_before_changes,
            missing: acks.missing,
            control_plane_cpu: cpu,
        };
        bytes_before_changes = bytes_now;
        eprintln!("fleet-sim: {}", result.one_line(flags.proxies));
        changes.push(result);
        tokio::time::sleep(flags.pause).await;
    }
    let errors = fleet.errors();
    let connections = fleet.connections();
    fleet.close();
    Ok(Report {
        proxies: flags.proxies,
        connections,
        routes: flags.routes,
        seed_time,
        connect_time,
        initial_bytes_per_proxy: initial_bytes as f64 / f64::from(flags.proxies),
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
        idle_cpu,
        idle_window,
        changes,
        stream_errors: errors,
        usage,
    })
}

/// How long to wait, after the report streams closed, for the control plane to finish the
/// writes it had started.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--report-usage`: opens the report streams, lets every proxy send one batch a second for
/// `--seconds`, and reads the control plane's figures at the start and end of that window.
async fn simulate_usage(
    flags: &Flags,
    control_plane: &ControlPlane,
    admin: &rest::Admin,
    fleet: &Fleet,
    postgres: Option<&FreshPostgres>,
) -> anyhow::Result<UsageResult> {
    let settings = usage::Settings {
        proxies: flags.proxies,
        counters: flags.usage_counters,
        seconds: flags.seconds,
        drain: flags.usage_drain,
        connect_concurrency: flags.connect_concurrency,
        node_prefix: flags.node_prefix.clone(),
        token: flags.proxy_token.clone(),
    };
    let rss_before = control_plane.rss_kb();
    let open_started = Instant::now();
    let reporters = usage::Reporters::open(&settings, fleet.channels()).await?;
    let open_time = open_started.elapsed();
    eprintln!(
        "fleet-sim: {} report streams open in {:.2} s; {} batches of {} counters each, one a second",
        flags.proxies,
        open_time.as_secs_f64(),
        flags.seconds,
        flags.usage_counters
    );
    let scrape = || async {
        match admin.metrics().await {
            Ok(metrics) => Some(usage_metrics(&metrics)),
            Err(error) => {
                eprintln!("fleet-sim: warning: /metrics: {error}");
                None
            }
        }
    };
    // Let the first message of every stream be taken in before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now() + Duration::from_millis(200);
    reporters.start(t0);
    let wait_for = |at: Instant| tokio::time::sleep_until(at.into());
    // The figures just before the first batch (it is sent at t0) …
    wait_for(t0 - Duration::from_millis(100)).await;
    let metrics_start = scrape().await;
    let pg_start = match postgres {
        Some(pg) => pg.snapshot().await,
        None => None,
    };
    let ticks = control_plane::clock_ticks();
    let own_start = control_plane::cpu_time_of(std::process::id(), ticks);
    let cpu_start = control_plane.cpu_time();
    let system_start = control_plane.system_cpu_time();
    let io_start = control_plane.storage_write_bytes();
    let start = Instant::now();
    // … and `--seconds` later, when every proxy has sent its last batch.
    let end_at = t0 + Duration::from_secs(u64::from(flags.seconds));
    wait_for(end_at).await;
    let cpu_end = control_plane.cpu_time();
    let own_end = control_plane::cpu_time_of(std::process::id(), ticks);
    let system_end = control_plane.system_cpu_time();
    let io_end = control_plane.storage_write_bytes();
    let window = start.elapsed();
    let metrics_end = scrape().await;
    let pg_end = match postgres {
        Some(pg) => pg.snapshot().await,
        None => None,
    };
    let rss_end = control_plane.rss_kb();
    let totals = reporters.finish(flags.seconds).await;
    // The streams are closed: wait (bounded) until the control plane stores no more batches,
    // then read back what it holds.
    let mut metrics_final = scrape().await;
    let settle_deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut settled = false;
    while Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = scrape().await;
        let same = matches!((now, metrics_final), (Some(a), Some(b)) if a.batches == b.batches);
        metrics_final = now;
        if same {
            settled = true;
            break;
        }
    }
    let requests_stored = match admin.usage_requests("1h").await {
        Ok(requests) => Some(requests),
        Err(error) => {
            eprintln!("fleet-sim: warning: GET /api/v1/usage: {error}");
            None
        }
    };
    let delta = |a: Option<UsageMetrics>, b: Option<UsageMetrics>| Some(a?.delta(&b?));
    let result = UsageResult {
        proxies: flags.proxies,
        counters_per_batch: flags.usage_counters,
        latency_buckets_per_counter: usage::LATENCY_BUCKETS,
        key_space: usage::key_space(flags.usage_counters),
        seconds: flags.seconds,
        database: if postgres.is_some() {
            "PostgreSQL".to_owned()
        } else if flags.control_plane_bin.is_some() {
            "SQLite".to_owned()
        } else {
            "external control plane".to_owned()
        },
        open_time,
        window,
        window_metrics: delta(metrics_start, metrics_end),
        total_metrics: delta(metrics_start, metrics_final),
        control_plane_cpu: cpu_end
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start)),
        simulator_cpu: own_end
            .zip(own_start)
            .map(|(end, start)| end.saturating_sub(start)),
        control_plane_system_cpu: system_end
            .zip(system_start)
            .map(|(end, start)| end.saturating_sub(start)),
        storage_write_bytes: io_end
            .zip(io_start)
            .map(|(end, start)| end.saturating_sub(start)),
        postgres: pg_start.zip(pg_end).map(|(start, end)| start.delta(&end)),
        rss_before_kb: rss_before,
        rss_end_kb: rss_end,
        settled,
        requests_stored,
        requests_per_batch: usage::requests_per_batch(flags.usage_counters),
        totals,
    };
    eprintln!(
        "fleet-sim: usage: {} sent, {} acknowledged ({} without an answer of their own), {} unacknowledged",
        result.totals.sent, result.totals.acked, result.totals.covered, result.totals.unacked
    );
    Ok(result)
}

/// The usage counters of one `/metrics` scrape (0 for those the control plane lacks).
fn usage_metrics(metrics: &std::collections::HashMap<String, f64>) -> UsageMetrics {
    let get = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
    UsageMetrics {
        batches: get("switchyard_usage_batches_total"),
        counters: get("switchyard_usage_counters_total"),
        duplicates: get("switchyard_usage_batches_duplicate_total"),
        invalid: get("switchyard_usage_counters_invalid_total"),
        write_failures: get("switchyard_usage_write_failures_total"),
        messages: get("switchyard_report_messages_total"),
        writes: get("switchyard_usage_writes_total"),
    }
}
