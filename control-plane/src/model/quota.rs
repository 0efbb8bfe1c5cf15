//! `quotas`: a fleet-wide request budget per consumer and calendar window (UTC), and what a
//! proxy does when it cannot reach the control plane for more of it. Routes and consumers name
//! quotas (`quota`); the proxies charge them against leases granted by the control plane
//! (`crate::quota`, `crate::store::quotas`). This is only the definition.

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
    /// What a proxy does once its lease is spent and the control plane cannot be reached
    /// (default `allow`). Specs stored before this field existed read as `allow`.
    #[serde(default)]
    pub on_unavailable: QuotaUnavailable,
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

impl QuotaWindow {
    /// The window's length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            QuotaWindow::Minute => 60,
            QuotaWindow::Hour => 3_600,
            QuotaWindow::Day => 86_400,
        }
    }

    /// `minute`, `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaWindow::Minute => "minute",
            QuotaWindow::Hour => "hour",
            QuotaWindow::Day => "day",
        }
    }
}

/// What a proxy does with a quota's requests when its lease is spent and the control plane is
/// unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaUnavailable {
    /// Let them through, counted and reported once the control plane is back (fail open).
    #[default]
    Allow,
    /// Answer 429 (fail closed).
    Deny,
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
    let on_unavailable = obj.take("on_unavailable", errs, |v| match as_str(v)? {
        "allow" => Ok(QuotaUnavailable::Allow),
        "deny" => Ok(QuotaUnavailable::Deny),
        _ => Err("must be allow or deny".to_owned()),
    });
    Quota {
        limit: limit.unwrap_or(1) as u64,
        window: window.unwrap_or(QuotaWindow::Minute),
        on_unavailable: on_unavailable.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(body: serde_json::Value) -> Result<Quota, Vec<String>> {
        let mut errs = Errors::default();
        let mut obj = Obj::new("", &body, &mut errs).unwrap();
        let quota = parse(&mut obj, &mut errs);
        obj.finish(&mut errs);
        if errs.is_empty() {
            Ok(quota)
        } else {
            Err(errs.into_vec().into_iter().map(|e| e.field).collect())
        }
    }

    #[test]
    fn quota_rules() {
        for (body, want) in [
            (json!({}), vec!["limit", "window"]),
            (
                json!({"limit": 0, "window": "week"}),
                vec!["limit", "window"],
            ),
            (
                json!({"limit": 10, "window": "day", "on_unavailable": "maybe"}),
                vec!["on_unavailable"],
            ),
            (
                json!({"limit": 10, "window": "day", "on_unavailable": false}),
                vec!["on_unavailable"],
            ),
        ] {
            assert_eq!(check(body.clone()).unwrap_err(), want, "{body}");
        }
    }

    #[test]
    fn on_unavailable_defaults_to_allow() {
        let quota = check(json!({"limit": 10, "window": "day"})).unwrap();
        assert_eq!(quota.on_unavailable, QuotaUnavailable::Allow);
        let json = serde_json::to_value(&quota).unwrap();
        assert_eq!(
            json,
            json!({"limit": 10, "window": "day", "on_unavailable": "allow"})
        );
        let deny = check(json!({"limit": 10, "window": "hour", "on_unavailable": "deny"}));
        assert_eq!(deny.unwrap().on_unavailable, QuotaUnavailable::Deny);
        // A spec stored before the field existed.
        let old: Quota = serde_json::from_value(json!({"limit": 1, "window": "minute"})).unwrap();
        assert_eq!(old.on_unavailable, QuotaUnavailable::Allow);
    }

    #[test]
    fn windows_have_their_length() {
        assert_eq!(QuotaWindow::Minute.seconds(), 60);
        assert_eq!(QuotaWindow::Hour.seconds(), 3_600);
        assert_eq!(QuotaWindow::Day.seconds(), 86_400);
        assert_eq!(QuotaWindow::Hour.as_str(), "hour");
    }
}
