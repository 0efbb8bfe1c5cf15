//! Bounds the bytes of whole configs being sent at once.
//!
//! A stream's first response of a type carries every resource of that type (about 1 MB for
//! 10,000 routes), and after a control-plane restart every proxy subscribes at once. So a
//! stream takes permits worth the size of the whole config (in KiB, at most the whole budget)
//! before it answers a subscription to a type it has not subscribed to yet, and gives them back
//! once every response sent under them has been ACKed or NACKed, when the stream ends, or after
//! the limit's `hold` time at the latest, so that a proxy that never answers cannot keep the
//! others waiting. Small configs thus sync many proxies at once, large ones a few at a time.
//! Responses to new snapshots never wait for permits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, oneshot};

/// How long a stream may keep its permits while its first responses go unanswered.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);
/// Bytes per permit.
const UNIT: usize = 1024;

/// The default budget in MiB: 4 per CPU the process may run on (four 10,000-route configs).
pub fn default_budget_mib() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    u32::try_from(4 * cpus).unwrap_or(u32::MAX)
}

/// The permits shared by every stream of one server.
#[derive(Clone, Debug)]
pub struct FirstSyncLimit {
    permits: Arc<Semaphore>,
    total: u32,
    hold: Duration,
}

impl FirstSyncLimit {
    /// At most `budget` bytes (at least 1 KiB) of whole configs being sent at once, each
    /// stream holding its share for at most `hold`.
    pub fn new(budget: usize, hold: Duration) -> FirstSyncLimit {
        let total = u32::try_from(budget / UNIT).unwrap_or(u32::MAX).max(1);
        FirstSyncLimit {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            hold,
        }
    }

    /// A gate for one stream, holding nothing yet.
    pub fn gate(&self) -> FirstSyncGate {
        FirstSyncGate {
            limit: self.clone(),
            waiting: None,
            granted: None,
        }
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// One stream's use of the [`FirstSyncLimit`]: idle, queued for a permit, or granted one.
pub struct FirstSyncGate {
    limit: FirstSyncLimit,
    waiting: Option<Acquire>,
    /// Dropping it releases the permit (which a timer also releases after `hold`).
    granted: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for FirstSyncGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstSyncGate")
            .field("waiting", &self.waiting.is_some())
            .field("granted", &self.granted.is_some())
            .finish()
    }
}

impl FirstSyncGate {
    /// Whether a permit was granted and not released yet (its hold time may be over: the
    /// stream goes on with its first sync, but no longer keeps others waiting).
    pub fn is_granted(&self) -> bool {
        self.granted.is_some()
    }

    /// Queues for the permits to send a config of `size` bytes, unless queued or granted
    /// already. Requests are granted in order.
    pub fn request(&mut self, size: usize) {
        if self.waiting.is_none() && self.granted.is_none() {
            let wanted = u32::try_from(size.div_ceil(UNIT)).unwrap_or(u32::MAX);
            let wanted = wanted.clamp(1, self.limit.total);
            let permits = Arc::clone(&self.limit.permits);
            self.waiting = Some(Box::pin(permits.acquire_many_owned(wanted)));
        }
    }

    /// Completes once the permit queued for with [`FirstSyncGate::request`] is granted; never
    /// completes when not queued. Cancel-safe: dropping the future keeps the place in the queue.
    pub async fn granted(&mut self) {
        let Some(waiting) = self.waiting.as_mut() else {
            return std::future::pending().await;
        };
        let permit = waiting.await.expect("the semaphore is never closed");
        self.waiting = None;
        let (release, released) = oneshot::channel::<()>();
        let hold = self.limit.hold;
        tokio::spawn(async move {
            // Released by the stream (the sender dropped) or at the end of the hold time.
            let _ = tokio::time::timeout(hold, released).await;
            drop(permit);
        });
        self.granted = Some(release);
    }

    /// Gives the permit back (nothing when none was granted).
    pub fn release(&mut self) {
        self.granted = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(150);
    const LONG: Duration = Duration::from_secs(10);
    const KIB: usize = 1024;

    async fn granted_within(gate: &mut FirstSyncGate, within: Duration) -> bool {
        tokio::time::timeout(within, gate.granted()).await.is_ok()
    }

    #[tokio::test]
    async fn second_stream_waits_until_the_first_releases() {
        let limit = FirstSyncLimit::new(KIB, LONG);
        let (mut first, mut second) = (limit.gate(), limit.gate());
        first.request(100);
        assert!(granted_within(&mut first, SHORT).await);
        second.request(100);
        assert!(!granted_within(&mut second, SHORT).await);
        first.release();
        assert!(granted_within(&mut second, LONG).await);
        assert!(second.is_granted());
    }

    #[tokio::test]
    async fn small_configs_share_the_budget_and_a_large_one_takes_it_all() {
        let limit = FirstSyncLimit::new(4 * KIB, LONG);
        let mut small: Vec<FirstSyncGate> = (0..4).map(|_| limit.gate()).collect();
        for gate in &mut small {
            gate.request(KIB);
            assert!(granted_within(gate, SHORT).await, "four 1 KiB configs fit");
        }
        let mut large = limit.gate();
        large.request(100 * KIB); // more than the budget: waits for all of it, then goes alone
        assert!(!granted_within(&mut large, SHORT).await);
        small.truncate(1);
        assert!(!granted_within(&mut large, SHORT).await);
        small.clear();
        assert!(granted_within(&mut large, LONG).await);
        let mut after = limit.gate();
        after.request(1);
        assert!(!granted_within(&mut after, SHORT).await);
    }

    #[tokio::test]
    async fn a_permit_held_too_long_is_released() {
        let hold = Duration::from_millis(300);
        let limit = FirstSyncLimit::new(KIB, hold);
        let (mut stuck, mut next) = (limit.gate(), limit.gate());
        stuck.request(KIB);
        assert!(granted_within(&mut stuck, SHORT).await);
        let started = tokio::time::Instant::now();
        next.request(KIB);
        assert!(granted_within(&mut next, LONG).await);
        assert!(started.elapsed() >= hold - Duration::from_millis(50));
        assert!(stuck.is_granted(), "the stuck stream itself goes on");
    }

    #[tokio::test]
    async fn a_stream_that_ends_releases_its_permit() {
        let limit = FirstSyncLimit::new(KIB, LONG);
        let mut ended = limit.gate();
        ended.request(KIB);
        assert!(granted_within(&mut ended, SHORT).await);
        let mut next = limit.gate();
        next.request(KIB);
        assert!(!granted_within(&mut next, SHORT).await);
        drop(ended);
        assert!(granted_within(&mut next, LONG).await);
    }

    #[tokio::test]
    async fn an_idle_gate_is_never_granted_and_requests_once() {
        let limit = FirstSyncLimit::new(2 * KIB, LONG);
        let mut idle = limit.gate();
        assert!(!granted_within(&mut idle, SHORT).await);
        let mut gate = limit.gate();
        gate.request(KIB);
        assert!(granted_within(&mut gate, SHORT).await);
        gate.request(KIB); // already granted: takes nothing more
        let mut other = limit.gate();
        other.request(KIB);
        assert!(granted_within(&mut other, SHORT).await);
    }
}
