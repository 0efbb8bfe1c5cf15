//! `/api/v1/health`: how the connected proxies see each upstream endpoint. Read-only; written
//! by the report streams through [`crate::reports::HealthView`].

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::Problem;
use crate::reports::health::ClusterHealth;

/// Filter of the health view.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthFilter {
    /// Only this cluster (an unknown or unreported name gives an empty list).
    cluster: Option<String>,
}

/// The fleet-wide health view.
#[derive(Debug, Serialize, ToSchema)]
pub struct FleetHealth {
    /// Clusters reported by at least one connected proxy, by name.
    pub clusters: Vec<ClusterHealth>,
}

/// Per cluster and endpoint: how many connected proxies see it healthy and unhealthy, which
/// ones see it unhealthy, and the last change any of them saw. A proxy counts from its first
/// report until its report stream closes.
#[utoipa::path(get, path = "/api/v1/health", tag = "fleet", params(HealthFilter),
    responses(
        (status = 200, description = "Endpoint health by cluster", body = FleetHealth),
        (status = 400, description = "Bad query", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    filter: Result<Query<HealthFilter>, QueryRejection>,
) -> Result<Json<FleetHealth>, Problem> {
    let Query(filter) = filter.map_err(|e| Problem::invalid_field("", e.body_text()))?;
    Ok(Json(FleetHealth {
        clusters: state.health.clusters(filter.cluster.as_deref()),
    }))
}
