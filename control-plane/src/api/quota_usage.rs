//! `/api/v1/quotas/{name}/usage`: a quota's accounting in its current window, per consumer,
//! from the consumption proxies report. Read-only; every replica sharing a database answers
//! the same.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::problem::Problem;
use crate::store::QuotaUsage;
use crate::timestamp::rfc3339_ms;

/// A quota's use in its current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaUsageView {
    /// The quota's name.
    #[schema(example = "gold")]
    pub quota: String,
    /// Requests per consumer per window.
    pub limit: u64,
    /// `minute`, `hour` or `day` (calendar-aligned, UTC).
    #[schema(example = "minute")]
    pub window: &'static str,
    /// Every consumer that used or was granted any of the quota in the current window, by
    /// name (`""` is unauthenticated traffic).
    pub items: Vec<QuotaUsageEntry>,
}

/// One consumer's use of a quota in the current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaUsageEntry {
    /// Consumer name (or JWT `sub`); `""` for unauthenticated requests.
    pub consumer: String,
    /// Requests let through, as reported by the proxies (within about 2 s).
    pub used: u64,
    /// `limit − used`, at least 0.
    pub remaining: u64,
    /// RFC 3339 end of the current window, when the budget starts again.
    pub resets_at: String,
}

/// A quota's use per consumer in the window that contains now, summed over every proxy
/// (whichever replica it reports to).
#[utoipa::path(get, path = "/api/v1/quotas/{name}/usage", tag = "quotas",
    params(("name" = String, Path, description = "Quota name")),
    responses(
        (status = 200, description = "Use per consumer", body = QuotaUsageView),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such quota", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<QuotaUsageView>, Problem> {
    match state.store.quota_usage(&name, SystemTime::now()).await? {
        Some(usage) => Ok(Json(view(name, usage))),
        None => Err(Problem::not_found(format!("quota {name:?} not found"))),
    }
}

fn view(name: String, usage: QuotaUsage) -> QuotaUsageView {
    let resets_at = rfc3339_ms(usage.window.end_unix_ms());
    QuotaUsageView {
        quota: name,
        limit: usage.quota.limit,
        window: usage.quota.window.as_str(),
        items: usage
            .items
            .into_iter()
            .map(|item| QuotaUsageEntry {
                consumer: item.consumer,
                used: item.used,
                remaining: item.remaining,
                resets_at: resets_at.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Quota;
    use crate::model::quota::{QuotaUnavailable, QuotaWindow};
    use crate::quota::Window;
    use crate::store::QuotaUsageItem;

    #[test]
    fn renders_the_fixed_shape() {
        let usage = QuotaUsage {
            quota: Quota {
                limit: 100,
                window: QuotaWindow::Hour,
                on_unavailable: QuotaUnavailable::Deny,
            },
            window: Window {
                start_unix_s: 1_704_067_200,
                end_unix_s: 1_704_070_800,
            },
            items: vec![QuotaUsageItem {
                consumer: "alice".into(),
                used: 120,
                remaining: 0,
                granted: 125,
            }],
        };
        assert_eq!(
            serde_json::to_value(view("gold".into(), usage)).unwrap(),
            serde_json::json!({
                "quota": "gold", "limit": 100, "window": "hour",
                "items": [{"consumer": "alice", "used": 120, "remaining": 0,
                           "resets_at": "2024-01-01T01:00:00.000Z"}],
            })
        );
    }
}
