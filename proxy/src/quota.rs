//! Fleet-wide quotas on the proxy, modelled on Envoy's RLQS: no RPC per request. For each
//! quota the proxy holds a [`QuotaBook`]: per consumer a lease of tokens granted by the control
//! plane for the current window, spent locally (one uncontended shard lock, no I/O).
//!
//! - A request takes a token from its lease. When the lease runs low (below half of the last
//!   grant) it is marked *wanted* and the reporter is woken ([`QuotaLink`]); it asks the
//!   control plane at once on the report stream, and the grant tops the lease up before it
//!   is empty, so steady traffic never waits.
//! - A lease that is empty waits for its grant, at most [`GRANT_WAIT`]: the first request of
//!   a consumer in a window on this proxy, or one after a burst.
//! - The control plane accounts grants in its database (the fleet's grants never exceed the
//!   limit) and shrinks them as the budget nears its end; `exhausted` means nothing more this
//!   window: requests get 429 with the seconds to the window's end.
//! - When no grant comes (the control plane is unreachable, or slow past [`GRANT_WAIT`]) the
//!   quota's `on_unavailable` decides: `allow` lets the request through — counted as
//!   *unleased*, so the control plane learns what was let through when it is back — or
//!   `deny` refuses it.
//! - Every request let through is counted per (consumer, window) and reported with the next
//!   usage batch ([`QuotaBook::take_used`]), exactly once.
//!
//! Windows are calendar-aligned (UTC) and the control plane's clock is the authority: a grant
//! names its window, and a lease follows it. A new window starts with an empty lease.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_proto::v1;
use tokio::sync::Notify;

use crate::endpoint::clock::unix_millis;
use crate::model::QuotaSpec;

/// Longest a request waits for a grant when its lease is empty.
pub const GRANT_WAIT: Duration = Duration::from_secs(1);
/// Shards of a book's lease table.
const SHARDS: usize = 16;

/// What a book and the reporter share, for the whole process: the reporter's wake-up and
/// whether the report stream is up.
#[derive(Debug, Default)]
pub struct QuotaLink {
    wake: Notify,
    connected: AtomicBool,
}

impl QuotaLink {
    /// Completes when some lease wants a grant.
    pub async fn wanted(&self) {
        self.wake.notified().await;
    }

    /// The report stream went up or down.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// One consumer's lease in one window.
#[derive(Debug)]
struct Lease {
    window_start: u64,
    tokens: u64,
    exhausted: bool,
    /// Asking for more is due (the reporter has not sent the request yet).
    wanted: bool,
    /// A request is on its way; no second one until it is answered.
    in_flight: bool,
    /// The next request's size (doubles with each grant, up to a tenth of the limit).
    want: u64,
    /// The last grant's size: more is asked for once fewer than half of it are left.
    last_granted: u64,
    /// Let through since the last report, and of those without a grant.
    used: u64,
    unleased: u64,
    /// The fleet's grants in this window, as of the last grant (for `RateLimit`).
    window_granted: u64,
}

impl Lease {
    fn new(window_start: u64, first_want: u64) -> Self {
        Self {
            window_start,
            tokens: 0,
            exhausted: false,
            wanted: false,
            in_flight: false,
            want: first_want,
            last_granted: 0,
            used: 0,
            unleased: 0,
            window_granted: 0,
        }
    }
}

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds until the window resets.
    pub retry_after_s: u64,
    /// What is left fleet-wide, as far as this proxy knows.
    pub remaining: u64,
}

/// The outcome of one attempt on a lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    Taken,
    Refused(Refusal),
    Empty,
}

/// One shard of a book: consumer → lease.
type Leases = HashMap<Box<str>, Lease>;

impl Take {
    /// The answer, unless the lease is empty.
    fn decided(self) -> Option<Result<(), Refusal>> {
        match self {
            Take::Taken => Some(Ok(())),
            Take::Refused(refusal) => Some(Err(refusal)),
            Take::Empty => None,
        }
    }
}

/// One quota's leases on this proxy, kept across configs while the quota is unchanged.
#[derive(Debug)]
pub struct QuotaBook {
    spec: QuotaSpec,
    link: Arc<QuotaLink>,
    shards: Box<[Mutex<Leases>]>,
    /// Counts of past windows, taken off their leases when a new window began and not yet
    /// reported.
    retired: Mutex<Vec<v1::QuotaConsumption>>,
    /// Woken after each grant lands.
    granted: Notify,
}

impl QuotaBook {
    pub fn new(spec: QuotaSpec, link: Arc<QuotaLink>) -> Self {
        Self {
            spec,
            link,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            retired: Mutex::default(),
            granted: Notify::new(),
        }
    }

    pub fn spec(&self) -> &QuotaSpec {
        &self.spec
    }

    /// The start (Unix seconds) of the window `unix_ms` falls in.
    pub fn window_start(&self, unix_ms: u64) -> u64 {
        let length = self.spec.window_seconds();
        unix_ms / 1000 / length * length
    }

    fn first_want(&self) -> u64 {
        (self.spec.limit / 100).max(1)
    }

    fn shard(&self, consumer: &str) -> MutexGuard<'_, Leases> {
        let hash = foldhash::fast::FixedState::default().hash_one(consumer);
        let shard = &self.shards[hash as usize % self.shards.len()];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets one request of `consumer` through, or says why not; waits (at most
    /// [`GRANT_WAIT`]) only when the lease is empty and the control plane is reachable.
    pub async fn acquire(&self, consumer: &str) -> Result<(), Refusal> {
        if let Some(decided) = self.try_take(consumer, unix_millis()).decided() {
            return decided;
        }
        let deadline = tokio::time::Instant::now() + GRANT_WAIT;
        while self.link.is_connected() {
            // Registered before the attempt, so a grant landing in between is not missed.
            let granted = self.granted.notified();
            tokio::pin!(granted);
            granted.as_mut().enable();
            if let Some(decided) = self.try_take(consumer, unix_millis()).decided() {
                return decided;
            }
            if tokio::time::timeout_at(deadline, granted).await.is_err() {
                break;
            }
        }
        self.unavailable(consumer, unix_millis())
    }

    /// One attempt at `now_ms` (Unix ms), without waiting: what [`QuotaBook::acquire`] does
    /// first; the hot path.
    pub fn try_take(&self, consumer: &str, now_ms: u64) -> Take {
        let window = self.window_start(now_ms);
        let first_want = self.first_want();
        let mut wake = false;
        let take = {
            let mut shard = self.shard(consumer);
            let lease = match shard.get_mut(consumer) {
                Some(lease) => lease,
                None => shard
                    .entry(consumer.into())
                    .or_insert_with(|| Lease::new(window, first_want)),
            };
            if lease.window_start < window {
                self.retire(consumer, lease, window, first_want);
            }
            if lease.tokens > 0 {
                lease.tokens -= 1;
                lease.used += 1;
                if lease.tokens < lease.last_granted.div_ceil(2)
                    && !lease.wanted
                    && !lease.in_flight
                {
                    lease.wanted = true;
                    wake = true;
                }
                Take::Taken
            } else if lease.exhausted {
                Take::Refused(self.refusal(lease, now_ms))
            } else {
                if !lease.wanted && !lease.in_flight {
                    lease.wanted = true;
                    wake = true;
                }
                Take::Empty
            }
        };
        if wake {
            self.link.wake.notify_one();
        }
        take
    }

    /// Starts `lease` over in `window`, keeping what it let through in the old one for the
    /// next report.
    fn retire(&self, consumer: &str, lease: &mut Lease, window: u64, first_want: u64) {
        if lease.used > 0 {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            retired.push(v1::QuotaConsumption {
                quota: self.spec.name.clone(),
                consumer: consumer.to_owned(),
                used: lease.used,
                window_start_unix_s: lease.window_start,
                unleased: lease.unleased,
            });
        }
        let in_flight = lease.in_flight;
        *lease = Lease::new(window, first_want);
        lease.in_flight = in_flight;
    }

    /// No grant: the quota's `on_unavailable` decides.
    fn unavailable(&self, consumer: &str, now_ms: u64) -> Result<(), Refusal> {
        let mut shard = self.shard(consumer);
        let Some(lease) = shard.get_mut(consumer) else {
            return Err(Refusal {
                retry_after_s: 1,
                remaining: 0,
            });
        };
        if self.spec.allow_when_unavailable {
            lease.used += 1;
            lease.unleased += 1;
            Ok(())
        } else {
            Err(Refusal {
                retry_after_s: self.seconds_left(lease, now_ms).clamp(1, GRANT_RETRY_S),
                remaining: 0,
            })
        }
    }

    fn seconds_left(&self, lease: &Lease, now_ms: u64) -> u64 {
        let end_ms = (lease.window_start + self.spec.window_seconds()) * 1000;
        end_ms.saturating_sub(now_ms).div_ceil(1000)
    }

    fn refusal(&self, lease: &Lease, now_ms: u64) -> Refusal {
        Refusal {
            retry_after_s: self.seconds_left(lease, now_ms).max(1),
            remaining: self.spec.limit.saturating_sub(lease.window_granted),
        }
    }

    /// The grant requests due (each lease asks once until answered).
    pub fn wants(&self) -> Vec<v1::QuotaRequest> {
        let mut wants = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (consumer, lease) in shard.iter_mut() {
                if lease.wanted && !lease.in_flight {
                    lease.wanted = false;
                    lease.in_flight = true;
                    wants.push(v1::QuotaRequest {
                        quota: self.spec.name.clone(),
                        consumer: consumer.to_string(),
                        want: lease.want,
                    });
                }
            }
        }
        wants
    }

    /// A new report stream: requests in flight on the old one are asked again.
    pub fn stream_restarted(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for lease in shard.values_mut() {
                if lease.in_flight {
                    lease.in_flight = false;
                    lease.wanted = true;
                }
            }
        }
    }

    /// Applies the control plane's grant and wakes the requests waiting for one.
    pub fn grant(&self, grant: &v1::QuotaGrant) {
        let cap = (self.spec.limit / 10).max(1);
        {
            let mut shard = self.shard(&grant.consumer);
            let lease = match shard.get_mut(grant.consumer.as_str()) {
                Some(lease) => lease,
                None => shard
                    .entry(grant.consumer.as_str().into())
                    .or_insert_with(|| Lease::new(grant.window_start_unix_s, self.first_want())),
            };
            if grant.window_start_unix_s > lease.window_start {
                self.retire(
                    &grant.consumer,
                    lease,
                    grant.window_start_unix_s,
                    self.first_want(),
                );
            }
            if grant.window_start_unix_s == lease.window_start {
                lease.tokens += grant.granted;
                lease.last_granted = grant.granted;
                lease.exhausted = grant.exhausted;
                lease.window_granted = grant.window_granted;
            }
            lease.in_flight = false;
            lease.want = (lease.want * 2).min(cap).max(1);
        }
        self.granted.notify_waiters();
    }

    /// What was let through since the last call, per consumer and window (then forgotten);
    /// leases of past windows with nothing left to report are dropped.
    pub fn take_used(&self) -> Vec<v1::QuotaConsumption> {
        let current = self.window_start(unix_millis());
        let mut used = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|consumer, lease| {
                if lease.used > 0 {
                    used.push(v1::QuotaConsumption {
                        quota: self.spec.name.clone(),
                        consumer: consumer.to_string(),
                        used: lease.used,
                        window_start_unix_s: lease.window_start,
                        unleased: lease.unleased,
                    });
                    lease.used = 0;
                    lease.unleased = 0;
                }
                lease.window_start >= current || lease.in_flight
            });
        }
        used
    }
}

/// Longest `Retry-After` when refusing for want of a control plane (it may be back soon).
const GRANT_RETRY_S: u64 = 5;

#[cfg(test)]
mod tests;
