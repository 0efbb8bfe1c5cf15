//! Usage retention: deletes the usage of minutes older than `--usage-retention`, and the quota
//! windows that ended before then, once at start and then every minute, until shutdown. Every replica sharing a database prunes; the deletes
//! are idempotent, so they need no coordination.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::MissedTickBehavior;

use crate::store::Store;
use crate::timestamp::minute_start;

/// How often old usage is pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Prunes usage older than `retention` every [`PRUNE_INTERVAL`] until `shutdown`; a failure
/// is logged and retried at the next tick.
pub async fn prune_usage(store: Store, retention: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(PRUNE_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let first_kept = first_kept_minute(SystemTime::now(), retention);
        tokio::select! {
            () = &mut shutdown => return,
            pruned = store.prune_usage(first_kept) => match pruned {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, first_kept, "old usage pruned"),
                Err(error) => tracing::warn!(%error, "usage pruning failed; retrying in a minute"),
            },
        }
    }
}

/// The start (Unix seconds) of the oldest minute kept: the one `retention` before `now`.
pub fn first_kept_minute(now: SystemTime, retention: Duration) -> i64 {
    minute_start(now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn keeps_the_minute_that_contains_now_minus_retention() {
        let now = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + 3 * 60 + 59);
        assert_eq!(
            first_kept_minute(now, Duration::from_secs(60)),
            1_704_067_200 + 2 * 60
        );
        assert_eq!(
            first_kept_minute(now, Duration::from_secs(10 * 365 * 86_400 * 10)),
            0
        );
    }
}
