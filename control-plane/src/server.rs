//! Process wiring: opens the store, binds the admin and xDS listeners, runs the snapshot
//! builder, the usage pruning, the REST API and the gRPC server (ADS and report streams) until
//! shutdown, then stops them in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1::report_service_server::ReportServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

use crate::api::{ApiState, router};
use crate::config::{Config, ConfigError};
use crate::credentials;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::reports::{self, HealthView, ReportServer};
use crate::snapshot::{self, Snapshot};
use crate::store::{Store, StoreError};
use crate::xds::{AdsServer, FirstSyncLimit, first_sync};

/// How long shutdown waits for in-flight admin requests and config streams.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the control plane could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server (config and report streams) failed.
    #[error("xds server: {0}")]
    Xds(#[from] tonic::transport::Error),
    /// The admin server failed.
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// A control plane with its listeners bound, ready to serve.
#[derive(Debug)]
pub struct ControlPlane {
    admin: TcpListener,
    xds: TcpListener,
    store: Store,
    fleet: Arc<Fleet>,
    health: Arc<HealthView>,
    metrics: Arc<Metrics>,
    admin_token_sha256: Option<[u8; 32]>,
    proxy_token_sha256: Option<credentials::TokenDigest>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    first_sync: FirstSyncLimit,
    usage_retention: Duration,
}

impl ControlPlane {
    /// Validates `config`, opens and migrates the store and binds both listeners (port 0
    /// picks a free port; see [`ControlPlane::admin_addr`]).
    pub async fn bind(config: &Config) -> Result<ControlPlane, ServeError> {
        config.validate()?;
        let store = Store::connect(&config.database_url).await?;
        let admin = bind(config.admin_addr).await?;
        let xds = bind(config.xds_addr).await?;
        let first = snapshot::load(&store).await?;
        tracing::info!(
            revision = first.revision,
            resources = first.len(),
            "config loaded"
        );
        let (snapshots, _) = watch::channel(Arc::new(first));
        Ok(ControlPlane {
            snapshots,
            admin,
            xds,
            store,
            fleet: Arc::new(Fleet::new(config.proxy_ttl)),
            health: Arc::default(),
            metrics: Arc::default(),
            admin_token_sha256: config.admin_token.as_deref().map(credentials::digest),
            proxy_token_sha256: config.proxy_token.as_deref().map(credentials::digest),
            first_sync: FirstSyncLimit::new(
                (config.first_sync_budget_mib).unwrap_or_else(first_sync::default_budget_mib)
                    as usize
                    * (1 << 20),
                first_sync::DEFAULT_HOLD,
            ),
            usage_retention: config.usage_retention,
        })
    }

    /// The store this control plane serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The fleet registry.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The fleet-wide endpoint health view fed by the report streams.
    pub fn health(&self) -> &Arc<HealthView> {
        &self.health
    }

    /// The snapshots published to the config streams, newest first.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.subscribe()
    }

    /// The bound admin API address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener")
    }

    /// The bound xDS address.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends the config streams and
    /// waits (bounded) for in-flight work.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let reports = ReportServer::new(
            self.store.clone(),
            self.health.clone(),
            self.metrics.clone(),
            stop_rx.clone(),
        );
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };

        let snapshot_rx = self.snapshots.subscribe();
        let published = self.snapshots.subscribe();
        let xds_addr = self.xds_addr();
        let admin_addr = self.admin_addr();
        let replicas = tokio::spawn({
            let store = self.store.clone();
            let stopped = stopped();
            async move { store.follow_other_replicas(stopped).await }
        });
        let expiry = tokio::spawn({
            let fleet = self.fleet.clone();
            let stopped = stopped();
            async move { fleet.expire(stopped).await }
        });
        let retention = tokio::spawn(reports::retention::prune_usage(
            self.store.clone(),
            self.usage_retention,
            stopped(),
        ));
        let builder = tokio::spawn(snapshot::run_builder(
            self.store.clone(),
            self.snapshots,
            stopped(),
        ));

        let ads = AdsServer::new(
            snapshot_rx,
            self.fleet.clone(),
            self.metrics.clone(),
            self.first_sync,
        );
        let xds = tokio::spawn(
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(InterceptedService::new(
                    ads,
                    credentials::grpc_interceptor(self.proxy_token_sha256),
                ))
                .add_service(ReportServiceServer::with_interceptor(
                    reports,
                    credentials::grpc_interceptor(self.proxy_token_sha256),
                ))
                .serve_with_incoming_shutdown(TcpListenerStream::new(self.xds), stopped()),
        );

        let app = router(ApiState {
            store: self.store.clone(),
            fleet: self.fleet.clone(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            admin_token_sha256: self.admin_token_sha256,
            published,
        });
        let admin = tokio::spawn(
            axum::serve(self.admin, app)
                .with_graceful_shutdown(stopped())
                .into_future(),
        );
        tracing::info!(%admin_addr, %xds_addr, backend = ?self.store.backend(), "control plane serving");

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let _ = builder.await;
            let _ = replicas.await;
            let _ = expiry.await;
            let _ = retention.await;
            (xds.await, admin.await)
        })
        .await;
        match drained {
            Ok((xds, admin)) => {
                if let Ok(result) = xds {
                    result?;
                }
                if let Ok(result) = admin {
                    result.map_err(ServeError::Admin)?;
                }
            }
            Err(_) => tracing::warn!("shutdown grace period over; closing remaining connections"),
        }
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Binds and serves `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    ControlPlane::bind(&config).await?.serve(shutdown).await
}
