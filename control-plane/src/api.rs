//! The REST admin API (axum): config resources under `/api/v1/<kind>`, fleet status, revision
//! history and rollback, `/healthz`, `/metrics` and the OpenAPI document.
//!
//! Handlers validate with [`crate::model`], write through [`crate::store`] and answer errors as
//! RFC 9457 problem+json ([`problem`]). They hold no state of their own and never touch the
//! xDS side: proxies learn about writes from the store's commit notifications.
//!
//! # Layout
//! - [`resources`]: the CRUD logic shared by every kind; [`clusters`], [`routes`],
//!   [`consumers`], [`jwt_providers`], [`quotas`]: one module of handlers per kind;
//!   [`keys`]: consumers' API keys.
//! - [`proxies`], [`health`], [`usage`], [`quota_usage`], [`revisions`]: fleet, endpoint
//!   health, usage and quota use from proxy reports, and history; [`declarative`]: apply and
//!   export of the whole config as one document.
//! - [`system`]: health, metrics, OpenAPI; [`openapi`]: the document.
//! - [`auth`]: bearer-token check; [`publish`]: writes answered once streamed;
//!   [`problem`]: the error type.

pub mod auth;
pub mod clusters;
pub mod consumers;
pub mod declarative;
pub mod health;
pub mod jwt_providers;
pub mod keys;
pub mod openapi;
pub mod problem;
pub mod proxies;
pub mod publish;
pub mod quota_usage;
pub mod quotas;
pub mod resources;
pub mod revisions;
pub mod routes;
pub mod system;
pub mod usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::reports::HealthView;
use crate::snapshot::Snapshot;
use crate::store::Store;
use problem::{Problem, ProblemType};
use tokio::sync::watch;

/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the handlers share; cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The config store.
    pub store: Store,
    /// The proxies seen by the xDS server.
    pub fleet: Arc<Fleet>,
    /// Endpoint health as the connected proxies report it.
    pub health: Arc<HealthView>,
    /// The control plane's metrics, rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the admin token; `None` leaves the API open.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// The snapshots streamed to proxies: writes are answered once it includes them.
    pub published: watch::Receiver<Arc<Snapshot>>,
}

impl ApiState {
    /// Who a write is recorded as in the revision history.
    pub fn actor(&self) -> &'static str {
        if self.admin_token_sha256.is_some() {
            "admin"
        } else {
            "anonymous"
        }
    }
}

/// The admin API: `/api/v1/…` behind the token check, `/healthz`, `/metrics` and
/// `/api/v1/openapi.json` open. Unknown paths and methods get problem+json 404 / 405.
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .merge(clusters::routes())
        .merge(routes::routes())
        .merge(consumers::routes())
        .merge(jwt_providers::routes())
        .merge(quotas::routes())
        .route(
            "/api/v1/consumers/{name}/keys",
            get(keys::list).post(keys::create),
        )
        .route(
            "/api/v1/consumers/{name}/keys/{id}",
            axum::routing::delete(keys::revoke),
        )
        .route("/api/v1/proxies", get(proxies::list))
        .route("/api/v1/health", get(health::get))
        .route("/api/v1/usage", get(usage::get))
        .route("/api/v1/quotas/{name}/usage", get(quota_usage::get))
        .route("/api/v1/revisions", get(revisions::list))
        .route("/api/v1/revisions/{n}", get(revisions::get))
        .route("/api/v1/revisions/{n}/diff", get(revisions::diff))
        .route(
            "/api/v1/apply",
            post(declarative::apply).layer(DefaultBodyLimit::max(declarative::MAX_DOCUMENT_BYTES)),
        )
        .route("/api/v1/export", get(declarative::export))
        .route("/api/v1/revisions/{n}/rollback", post(revisions::rollback))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            publish::after_writes,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route("/api/v1/openapi.json", get(system::openapi))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    let path = uri.path();
    match path
        .strip_prefix("/api/v1/")
        .and_then(|rest| rest.split('/').next())
    {
        Some(kind) if !kind.is_empty() => {
            Problem::not_found(format!("unknown resource kind or path {path:?}"))
        }
        _ => Problem::not_found(format!("no such path {path:?}")),
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ProblemType::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
