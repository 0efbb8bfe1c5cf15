//! Bounded polling: every wait in the sandbox ends, by time and by number of attempts.

use std::time::{Duration, Instant};

/// Default polling interval.
pub const POLL_INTERVAL: Duration = Duration::from_millis(15);

/// Polls `condition` every 15 ms until it holds (`true`) or `timeout` passes (`false`).
///
/// Callers assert on the result; the panic makes every running process print its log tail.
#[must_use = "assert on the outcome of the wait"]
pub async fn wait_until(timeout: Duration, condition: impl AsyncFnMut() -> bool) -> bool {
    wait_until_every(timeout, POLL_INTERVAL, condition).await
}

/// Polls `condition` every `interval` until it holds (`true`) or `timeout` passes (`false`).
///
/// A slow condition counts against the timeout too; the number of attempts is capped at
/// `timeout / interval + 1` besides.
#[must_use = "assert on the outcome of the wait"]
pub async fn wait_until_every(
    timeout: Duration,
    interval: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> bool {
    let interval = interval.max(Duration::from_millis(1));
    let max_attempts = timeout.as_millis() / interval.as_millis() + 1;
    let deadline = Instant::now() + timeout;
    for _ in 0..max_attempts {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(true) = tokio::time::timeout(remaining.max(interval), condition()).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(interval).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{wait_until, wait_until_every};

    #[tokio::test]
    async fn ends_when_true_or_at_the_deadline() {
        let mut calls = 0;
        assert!(
            wait_until(Duration::from_secs(1), async || {
                calls += 1;
                calls == 3
            })
            .await
        );
        assert_eq!(calls, 3);

        let started = Instant::now();
        assert!(
            !wait_until_every(
                Duration::from_millis(100),
                Duration::from_millis(10),
                async || false
            )
            .await
        );
        assert!(started.elapsed() < Duration::from_millis(500));

        // A condition that hangs is cut at the deadline.
        let started = Instant::now();
        let hangs = wait_until(Duration::from_millis(100), async || {
            tokio::time::sleep(Duration::from_secs(60)).await;
            true
        });
        assert!(!hangs.await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
