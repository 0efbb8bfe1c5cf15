//! Fleet-wide quotas, the pure part (modelled on Envoy's RLQS): which window a time falls in,
//! and how many tokens one grant request gets. The store applies this inside its transaction
//! (`crate::store::quotas`); nothing here does I/O.
//!
//! # Leases
//! Proxies never ask per request. Each holds a lease of tokens per (quota, consumer) and
//! spends it locally; when it runs low it asks the control plane for more. The control plane
//! records every token it grants, so the tokens granted in a window never exceed the limit:
//! while proxies can reach it, no more requests are let through than the limit. Leases die
//! with their window (calendar-aligned, UTC): what a proxy did not spend is reclaimed by the
//! next window starting from zero.
//!
//! # Grant size
//! A grant is a quarter of what is left (rounded up), at most what was asked for:
//! `g = min(want, max(1, ceil(remaining / 4)))` with `remaining = limit − taken`. Early in a
//! window proxies get large leases (few round trips); near its end every grant shrinks to one
//! token, so at most about one token per proxy is left unspent in leases when the budget runs
//! out, instead of a whole lease each.
//!
//! `taken` counts the tokens granted plus the requests proxies let through without a lease
//! (control plane unreachable, `on_unavailable: allow`): those used the budget too. They are
//! the only way a window admits more than its limit, by what the proxies let through blind.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::quota::QuotaWindow;

/// The window of a quota that contains some instant, in Unix seconds: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First second of the window (a multiple of its length: windows align to UTC).
    pub start_unix_s: i64,
    /// First second after it.
    pub end_unix_s: i64,
}

impl Window {
    /// The `window` that contains `at` (the first one for a time before 1970).
    pub fn at(window: QuotaWindow, at: SystemTime) -> Window {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let length = window.seconds();
        // Unix time has no leap seconds, and 1970-01-01 began a minute, an hour and a day.
        let start = i64::try_from(secs - secs % length).unwrap_or(i64::MAX / 2);
        Window {
            start_unix_s: start,
            end_unix_s: start.saturating_add(length as i64),
        }
    }

    /// The end, in Unix milliseconds.
    pub fn end_unix_ms(self) -> i64 {
        self.end_unix_s.saturating_mul(1000)
    }
}

/// The answer to one grant request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Tokens added to the proxy's lease.
    pub granted: u64,
    /// Nothing was left to grant: no more until the window ends.
    pub exhausted: bool,
}

/// How many of `want` tokens to grant from a window with `limit` of which `taken` are gone.
/// `want` 0 counts as 1, and more than `limit` as `limit`.
pub fn decide(limit: u64, taken: u64, want: u64) -> Decision {
    let remaining = limit.saturating_sub(taken);
    if remaining == 0 {
        return Decision {
            granted: 0,
            exhausted: true,
        };
    }
    let want = want.clamp(1, limit.max(1));
    Decision {
        granted: want.min(remaining.div_ceil(4)),
        exhausted: false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const NEW_YEAR: u64 = 1_704_067_200;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn windows_align_to_utc_minutes_hours_and_days() {
        let t = at(NEW_YEAR + 86_400 + 2 * 3600 + 5 * 60 + 7) + Duration::from_millis(999);
        let minute = Window::at(QuotaWindow::Minute, t);
        assert_eq!(
            (minute.start_unix_s, minute.end_unix_s),
            (
                (NEW_YEAR + 86_400 + 2 * 3600 + 300) as i64,
                (NEW_YEAR + 86_400 + 2 * 3600 + 360) as i64
            )
        );
        let hour = Window::at(QuotaWindow::Hour, t);
        assert_eq!(hour.start_unix_s, (NEW_YEAR + 86_400 + 2 * 3600) as i64);
        assert_eq!(hour.end_unix_s - hour.start_unix_s, 3600);
        let day = Window::at(QuotaWindow::Day, t);
        assert_eq!(day.start_unix_s, (NEW_YEAR + 86_400) as i64);
        assert_eq!(day.end_unix_ms(), (NEW_YEAR + 2 * 86_400) as i64 * 1000);
        // The last instant of a window is still in it; the next second starts the next one.
        let last = at(NEW_YEAR + 59) + Duration::from_millis(999);
        assert_eq!(
            Window::at(QuotaWindow::Minute, last).start_unix_s,
            NEW_YEAR as i64
        );
        assert_eq!(
            Window::at(QuotaWindow::Minute, at(NEW_YEAR + 60)).start_unix_s,
            NEW_YEAR as i64 + 60
        );
        assert_eq!(
            Window::at(QuotaWindow::Day, UNIX_EPOCH - Duration::from_secs(1)).start_unix_s,
            0
        );
    }

    #[test]
    fn grants_are_a_quarter_of_what_is_left_at_most_what_was_asked() {
        assert_eq!(decide(1000, 0, 100).granted, 100);
        assert_eq!(
            decide(1000, 0, 5000).granted,
            250,
            "want capped by the quarter"
        );
        assert_eq!(decide(1000, 900, 100).granted, 25);
        assert_eq!(decide(1000, 997, 100).granted, 1, "ceil(3 / 4)");
        assert_eq!(decide(1000, 999, 100).granted, 1);
        assert_eq!(decide(10, 0, 0).granted, 1, "want 0 counts as 1");
        assert_eq!(decide(1, 0, 100).granted, 1);
        for (limit, taken) in [(1000, 1000), (1000, 1500), (1, 1)] {
            assert_eq!(
                decide(limit, taken, 10),
                Decision {
                    granted: 0,
                    exhausted: true
                }
            );
        }
        assert!(!decide(1000, 999, 10).exhausted);
    }

    #[test]
    fn a_window_never_grants_past_its_limit_and_strands_little() {
        for (limit, want) in [(1000, 100), (1000, 1000), (7, 3), (1, 1)] {
            let mut taken = 0;
            let mut grants = 0;
            // Proxies take turns asking until the budget is spent.
            loop {
                let decision = decide(limit, taken, want);
                if decision.exhausted {
                    break;
                }
                assert!(decision.granted >= 1);
                taken += decision.granted;
                grants += 1;
                assert!(taken <= limit, "{limit} {want}");
            }
            assert_eq!(taken, limit, "the whole budget is handed out");
            // With 4 or fewer left every grant is a single token: that is all a proxy can be
            // left holding unspent when the others run dry.
            let last = decide(limit, limit - 4.min(limit), want);
            assert_eq!(last.granted, 1, "{limit}");
            assert!(grants <= 64, "logarithmic round trips: {grants}");
        }
    }
}
