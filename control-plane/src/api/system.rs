//! Unauthenticated operational endpoints: `/healthz` (database reachable), `/metrics`
//! (Prometheus text) and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::ApiState;
use super::problem::{Problem, ProblemType};

/// The health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// 200 when the database answers, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Database unreachable", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn healthz(State(state): State<ApiState>) -> Result<Json<Health>, Problem> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "health check: database unreachable");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Unavailable,
            "the database is unreachable",
        )
    })?;
    Ok(Json(Health { status: "ok" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.metrics.render(&state.fleet);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        super::openapi::ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    });
    let mut response = doc.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
