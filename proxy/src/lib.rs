//! Switchyard proxy: the data plane, configured over Delta ADS.
//!
//! # Layout
//!
//! The flow of config, then of a request, then what runs beside them:
//!
//! - [`config`]: startup settings ([`Config`]) and flag-format parsing.
//! - [`xds_client`]: the Delta ADS stream; the **only writer** of the snapshot. Decodes and
//!   validates resources, builds and publishes a new snapshot, ACKs or NACKs.
//! - [`model`]: wire protos → validated domain types (`TryFrom`; a failure is a NACK).
//! - [`resource_set`]: the resources held, with versions (what `initial_resource_versions` and
//!   `/config_dump` report).
//! - [`snapshot`]: immutable compiled config — [`router::Router`] (with each route's filter
//!   chain), one [`cluster::ClusterRuntime`] per cluster, the API-key index and the JWT
//!   verifiers — built by a pure function and read lock-free from the [`snapshot::SnapshotCell`].
//! - [`supervisor`]: on the control runtime, owns every task a snapshot needs (health checks,
//!   JWKS refreshes, idle-connection eviction) and reconciles them after each publish.
//! - [`workers`] / [`listeners`]: traffic threads, one current-thread runtime and one
//!   `SO_REUSEPORT` socket each; a worker holds a [`handler::WorkerHandle`] (snapshot cell and
//!   its own counters), nothing else.
//! - [`server`]: accept loop (HTTP/1.1 + h2c), graceful drain.
//! - [`handler`]: the request path — one snapshot load, route, filters, act, JSON errors,
//!   metrics.
//! - [`path_normalize`]: the request path in canonical form (dot segments, unreserved escapes,
//!   merged slashes) before routing; what the upstream receives too.
//! - [`router`]: host-indexed, pre-sorted route selection.
//! - [`filters`]: gateway policies (CORS, auth, rate limit, validation, transforms, cache),
//!   each a [`filters::Policy`] with a method per phase (request, upstream request, response,
//!   decorate, logging), compiled into a per-route chain once per config; a route without
//!   policies has no chain and runs no filter code. (Aggregation is a route action.)
//! - [`jwt`]: JWT providers — validated specs, JWKS (inline or fetched from `jwks_uri`), and
//!   the per-provider [`jwt::JwtVerifier`] the auth filter calls.
//! - [`upstream`]: the exchange (retries, timeouts), header rewrite ([`forwarding`]), response
//!   bodies that hand connections back; [`outlier`] detection.
//! - [`cluster`]: a cluster at run time — per-config [`cluster::ClusterRuntime`] (balancer,
//!   [`circuit_breaker`], connect settings) over the long-lived [`cluster::ClusterState`].
//! - [`balancer`]: endpoint choice per cluster (one file per policy), priority and zone.
//! - [`endpoint`]: the bottom layer — per-endpoint state, connection pool, latency EWMA; it
//!   imports nothing above it.
//! - [`health`]: the active health-check loop (the supervisor runs one per cluster).
//! - [`usage`]: per-worker usage counters (route, consumer, status class: requests, bytes, a
//!   log-bucket latency histogram), recorded by the metered response body into a thread-local
//!   table and flushed to the reporter once a second.
//! - [`reporter`]: the report stream — endpoint health, and usage batches held (bounded) until
//!   the control plane acknowledges them.
//! - [`error`]: request-path errors (status, who failed, retryable).
//! - [`admin`]: `/ready`, `/config_dump`, `/metrics` ([`metrics`]).
//! - [`state`]: what the control-side tasks share.
//!
//! Imports go one way: no two modules import each other, directly or round a circle
//! (`scripts/module-graph.py`, run by CI, checks it for top-level modules and for the
//! submodules inside each).
//!
//! Start with [`Proxy::bind`] (port 0 is fine; read back [`Proxy::listen_addr`] and
//! [`Proxy::admin_addr`]) then [`Proxy::serve`], or call [`run`] to do both.

#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod balancer;
pub(crate) mod body;
pub(crate) mod circuit_breaker;
pub(crate) mod cluster;
pub mod config;
pub mod endpoint;
pub(crate) mod error;
pub mod filters;
pub(crate) mod forwarding;
pub(crate) mod handler;
pub(crate) mod health;
pub mod jwt;
pub(crate) mod listeners;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod outlier;
pub(crate) mod path_normalize;
pub mod quota;
pub(crate) mod reporter;
pub mod resource_set;
pub mod router;
pub(crate) mod server;
pub mod snapshot;
pub(crate) mod state;
pub(crate) mod supervisor;
pub(crate) mod upstream;
pub mod usage;
pub(crate) mod workers;
pub mod xds_client;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, ConfigError};
use snapshot::SnapshotCell;
use state::ControlState;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a traffic worker: {source}")]
    Worker {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A proxy whose listeners are bound but not yet serving.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    /// One traffic socket per worker, all on `listen_addr`.
    listeners: Vec<std::net::TcpListener>,
    admin_listener: TcpListener,
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Proxy {
    /// Binds the traffic and admin listeners (so their ports are known before serving).
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        if config.control_plane.is_empty() {
            return Err(ConfigError::NoControlPlane.into());
        }
        let bind_error = |source| StartError::Bind {
            what: "listen",
            addr: config.listen,
            source,
        };
        let listeners = listeners::bind(config.listen, config.workers).map_err(bind_error)?;
        let listen_addr = listeners[0].local_addr().map_err(bind_error)?;
        let admin_listener = bind("admin", config.admin_addr).await?;
        let admin_addr = local_addr("admin", &admin_listener, config.admin_addr)?;
        Ok(Self {
            config,
            listeners,
            admin_listener,
            listen_addr,
            admin_addr,
        })
    }

    /// The bound client-traffic address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` completes, then stops accepting, drains in-flight requests
    /// (bounded by `drain_timeout`) and stops the config stream.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Proxy {
            config,
            listeners,
            admin_listener,
            listen_addr,
            admin_addr,
        } = self;
        let authorization = config
            .control_plane_token
            .as_deref()
            .map(config::control_plane_authorization)
            .transpose()?;
        let cell = Arc::new(SnapshotCell::default());
        let shared = Arc::new(
            ControlState::new(
                Arc::clone(&cell),
                config.node_id.clone(),
                config.labels.clone(),
                config.control_plane.clone(),
                listeners.len(),
            )
            .with_control_plane_authorization(authorization),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let (report_stop_tx, report_stop_rx) = watch::channel(false);
        let (supervisor_stop_tx, supervisor_stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervisor::run(Arc::clone(&cell), supervisor_stop_rx));
        let xds = tokio::spawn(xds_client::run(Arc::clone(&shared)));
        let (usage_sink, usage_flushes) = tokio::sync::mpsc::channel(usage::SINK_CAPACITY);
        let reporter = tokio::spawn(reporter::run(
            Arc::clone(&shared),
            usage_flushes,
            report_stop_rx,
        ));

        let admin_shared = Arc::clone(&shared);
        let admin = tokio::spawn(server::serve(
            "admin",
            admin_listener,
            move |request, _client| admin::handle(Arc::clone(&admin_shared), request),
            stop_rx.clone(),
            config.drain_timeout,
        ));
        let mut workers = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let handle = handler::WorkerHandle {
                snapshot: Arc::clone(&cell),
                metrics: Arc::clone(&shared.traffic[index]),
                usage: usage_sink.clone(),
            };
            let worker = workers::Worker::spawn(
                index,
                listener,
                handle,
                stop_rx.clone(),
                config.drain_timeout,
            )
            .map_err(|source| StartError::Worker { source })?;
            workers.push(worker);
        }
        tracing::info!(%listen_addr, %admin_addr, node_id = %config.node_id, workers = workers.len(), "proxy started");

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        for worker in workers {
            worker.join().await;
        }
        // Reports last, so they carry what happened while draining; bounded by the flush.
        let _ = report_stop_tx.send(true);
        let flush = reporter::FLUSH_TIMEOUT + std::time::Duration::from_millis(500);
        if tokio::time::timeout(flush, reporter).await.is_err() {
            tracing::warn!("report flush timed out");
        }
        xds.abort();
        let _ = supervisor_stop_tx.send(true);
        let _ = supervisor.await;
        let _ = admin.await;
        tracing::info!("proxy stopped");
        Ok(())
    }
}

/// Binds, serves until `shutdown`, drains: the whole life of a proxy.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    Proxy::bind(config).await?.serve(shutdown).await
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}
