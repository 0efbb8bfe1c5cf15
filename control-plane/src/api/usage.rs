//! `/api/v1/usage`: fleet-wide usage from the proxies' reports, per route or per consumer,
//! over the whole minutes since a time. Read-only; the report streams write it through the
//! store, so every replica sharing a database answers the same.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::Problem;
use crate::model::FieldError;
use crate::store::{self, UsageBy};
use crate::timestamp::{minute_start, parse_rfc3339, rfc3339_ms};

/// How far back usage is summed when `since` is not given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

/// What to sum, and from when.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `route` (the default) or `consumer`: what each item is, summed over the other.
    by: Option<String>,
    /// An RFC 3339 time (`2024-01-01T00:00:00Z`) or a duration back from now (`30s`, `5m`,
    /// `1h`, `7d`); default `1h`. Rounded down to its minute: whole minutes are counted.
    since: Option<String>,
}

/// Usage per route or consumer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// `route` or `consumer`.
    #[schema(example = "route")]
    pub by: &'static str,
    /// RFC 3339 start of the first minute counted (`since` rounded down to the minute).
    pub since: String,
    /// One item per route or consumer with requests since then, by key.
    pub items: Vec<UsageItem>,
}

/// The usage of one route or consumer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageItem {
    /// Route or consumer name; `""` is unauthenticated traffic (by consumer).
    pub key: String,
    /// Requests, every status class (1xx, e.g. WebSocket upgrades, included).
    pub requests: u64,
    /// Requests by status class.
    pub status: StatusCounts,
    /// Latency (request start to response headers) percentiles, in milliseconds.
    pub latency_ms: LatencyPercentiles,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// Requests by status class.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCounts {
    /// 200–299.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// 300–399.
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    /// 400–499.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// 500–599.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

/// Latency percentiles from the histogram merged across proxies and minutes: the upper bound
/// of the bucket holding the percentile (so at most that); `null` without latency data.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyPercentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Requests, status classes, latency and bytes per route or consumer, summed over every proxy
/// (whichever replica it reported to) and every whole minute since `since`.
#[utoipa::path(get, path = "/api/v1/usage", tag = "fleet", params(UsageQuery),
    responses(
        (status = 200, description = "Usage by route or consumer", body = Usage),
        (status = 400, description = "Bad `by` or `since`", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Usage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::invalid_field("", e.body_text()))?;
    let by = parse_by(query.by.as_deref());
    let since = since_minute(query.since.as_deref(), SystemTime::now());
    let (Ok(by), Ok(since)) = (by, since) else {
        let errors = [("by", by.err()), ("since", since.err())]
            .into_iter()
            .filter_map(|(field, message)| {
                Some(FieldError {
                    field: field.to_owned(),
                    message: message?.to_owned(),
                })
            })
            .collect();
        return Err(Problem::invalid(errors));
    };
    let items = state.store.usage(by, since).await?;
    Ok(Json(Usage {
        by: by.as_str(),
        since: rfc3339_ms(since.saturating_mul(1000)),
        items: items.into_iter().map(item).collect(),
    }))
}

fn parse_by(by: Option<&str>) -> Result<UsageBy, &'static str> {
    match by {
        None | Some("route") => Ok(UsageBy::Route),
        Some("consumer") => Ok(UsageBy::Consumer),
        Some(_) => Err("must be route or consumer"),
    }
}

/// The start (Unix seconds) of the first minute counted for `since` at `now`.
fn since_minute(since: Option<&str>, now: SystemTime) -> Result<i64, &'static str> {
    let at = match since {
        None => now.checked_sub(DEFAULT_SINCE),
        Some(text) => match humantime::parse_duration(text) {
            Ok(ago) => Some(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)),
            Err(_) => Some(parse_rfc3339(text).ok_or(
                "must be an RFC 3339 time (2024-01-01T00:00:00Z) or a duration (30s, 5m, 1h, 7d)",
            )?),
        },
    };
    Ok(minute_start(at.unwrap_or(SystemTime::UNIX_EPOCH)))
}

fn item(usage: store::UsageItem) -> UsageItem {
    let ms = |per_mille| {
        usage
            .latency
            .quantile_us(per_mille)
            .map(|us| us as f64 / 1000.0)
    };
    UsageItem {
        latency_ms: LatencyPercentiles {
            p50: ms(500),
            p99: ms(990),
        },
        status: StatusCounts {
            s2xx: usage.status[1],
            s3xx: usage.status[2],
            s4xx: usage.status[3],
            s5xx: usage.status[4],
        },
        key: usage.key,
        requests: usage.requests,
        bytes_in: usage.bytes_in,
        bytes_out: usage.bytes_out,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::store::usage::LatencyHistogram;

    #[test]
    fn by_defaults_to_route() {
        assert_eq!(parse_by(None), Ok(UsageBy::Route));
        assert_eq!(parse_by(Some("route")), Ok(UsageBy::Route));
        assert_eq!(parse_by(Some("consumer")), Ok(UsageBy::Consumer));
        for bad in ["", "Route", "cluster"] {
            assert!(parse_by(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn since_is_a_duration_or_a_time_rounded_down_to_its_minute() {
        let now = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + 3600 + 59);
        let hour_ago = 1_704_067_200;
        assert_eq!(since_minute(None, now), Ok(hour_ago));
        assert_eq!(since_minute(Some("1h"), now), Ok(hour_ago));
        assert_eq!(since_minute(Some("60m"), now), Ok(hour_ago));
        assert_eq!(since_minute(Some("30s"), now), Ok(hour_ago + 3600));
        assert_eq!(since_minute(Some("0s"), now), Ok(hour_ago + 3600));
        assert_eq!(since_minute(Some("1d"), now), Ok(hour_ago + 3600 - 86_400));
        assert_eq!(since_minute(Some("100000d"), now), Ok(0));
        assert_eq!(
            since_minute(Some("2024-01-01T00:00:59Z"), now),
            Ok(hour_ago)
        );
        assert_eq!(
            since_minute(Some("2024-01-01T01:00:00+01:00"), now),
            Ok(hour_ago)
        );
        for bad in ["", "soon", "-5m", "5 minutes ago", "2024-01-01"] {
            assert!(since_minute(Some(bad), now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn items_show_milliseconds_and_the_four_classes() {
        let latency: LatencyHistogram = [(1_500, 99), (250_000, 1)].into_iter().collect();
        let shown = item(store::UsageItem {
            key: "r".into(),
            requests: 101,
            status: [1, 90, 0, 6, 4],
            bytes_in: 10,
            bytes_out: 20,
            latency_sum_us: 400_000,
            latency,
        });
        assert_eq!(
            serde_json::to_value(&shown).unwrap(),
            serde_json::json!({
                "key": "r", "requests": 101,
                "status": {"2xx": 90, "3xx": 0, "4xx": 6, "5xx": 4},
                "latency_ms": {"p50": 1.5, "p99": 1.5},
                "bytes_in": 10, "bytes_out": 20,
            })
        );
        let empty = item(store::UsageItem::default());
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["latency_ms"],
            serde_json::json!({"p50": null, "p99": null})
        );
    }
}
