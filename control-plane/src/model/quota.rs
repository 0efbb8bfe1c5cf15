//! `quotas`: a fleet-wide request budget per consumer and window. Accounting lives elsewhere;
//! this is only the definition.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::walk::{Errors, Obj, as_str};

/// The largest quota limit.
pub const MAX_LIMIT: i64 = 1_000_000_000_000;

/// A request budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    /// Requests per consumer per window (1–10^12).
    #[schema(minimum = 1)]
    pub limit: u64,
    /// The accounting window.
    pub window: QuotaWindow,
}

/// A quota's accounting window (calendar-aligned, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaWindow {
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A day.
    Day,
}

/// Reads and checks a quota spec; the result is only meaningful when `errs` stays empty.
pub(super) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> Quota {
    let limit = obj.req_int("limit", 1..=MAX_LIMIT, errs);
    let window = obj.require("window", errs, |v| match as_str(v)? {
        "minute" => Ok(QuotaWindow::Minute),
        "hour" => Ok(QuotaWindow::Hour),
        "day" => Ok(QuotaWindow::Day),
        _ => Err("must be one of minute, hour, day".to_owned()),
    });
    Quota {
        limit: limit.unwrap_or(1) as u64,
        window: window.unwrap_or(QuotaWindow::Minute),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quota_rules() {
        for (body, want) in [
            (json!({}), vec!["limit", "window"]),
            (
                json!({"limit": 0, "window": "week"}),
                vec!["limit", "window"],
            ),
            (json!({"limit": 10, "window": "day"}), vec![]),
        ] {
            let mut errs = Errors::default();
            let mut obj = Obj::new("", &body, &mut errs).unwrap();
            parse(&mut obj, &mut errs);
            let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
            assert_eq!(fields, want, "{body}");
        }
    }
}
