//! `/api/v1/proxies`: the fleet as the control plane sees it. Read-only; written by the xDS
//! streams through [`crate::fleet::Fleet`].

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::problem::Problem;
use crate::fleet::ProxyStatus;

/// Every proxy seen since start and not yet expired (disconnected for longer than
/// `--proxy-ttl`): connection, ACKed revision, pending and NACKed resources, `expires_at`.
#[utoipa::path(get, path = "/api/v1/proxies", tag = "fleet",
    responses(
        (status = 200, description = "Proxies by node id", body = [ProxyStatus]),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list(State(state): State<ApiState>) -> Json<Vec<ProxyStatus>> {
    Json(state.fleet.list())
}
