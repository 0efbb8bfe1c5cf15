//! `rate_limit`: a token bucket per route and key (the route, the consumer or the client IP),
//! kept as GCRA — one "theoretical arrival time" (TAT) per bucket, in nanoseconds since the
//! limiter's epoch — which is exactly a token bucket of `requests` tokens refilled at
//! `requests / per_seconds` per second, but needs one `u64` per key and no refill timer.
//!
//! - `by: route` is one `AtomicU64` updated with compare-and-swap: lock-free.
//! - `by: ip` / `by: consumer` keys live in [`SHARDS`] mutex-guarded maps picked by hash, so
//!   contention is spread and no lock is held across an await.
//! - Memory is bounded: at most `max_buckets` keys per route. A bucket whose TAT has passed is
//!   full again — indistinguishable from a missing one — so a full shard first drops those
//!   (idle for at least one refill of the whole bucket, i.e. full and untouched), then the one
//!   closest to full. A flood of distinct IPs therefore costs a bounded table, never the
//!   proxy's memory.
//!
//! The limiter lives across config updates while the route's name and limit are unchanged
//! (its `Policy::build` takes the previous config's limiter over). It does not coordinate across proxies: each proxy
//! enforces its own budget (fleet-wide budgets are quotas).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, header};

use super::{BuildContext, Policy, RequestContext, keep_if_unchanged};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::model::{RateLimitBy, RateLimitSpec, RouteSpec};

/// Shards of a keyed limiter's table.
pub const SHARDS: usize = 32;
/// Default bound on the keys one route's limiter tracks.
pub const MAX_BUCKETS: usize = 100_000;

const NANOS: u64 = 1_000_000_000;

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What a bucket is keyed by for one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// A client address as [`BucketKey::client`] keys it.
    Ip(IpAddr),
    Consumer(Arc<str>),
}

impl BucketKey {
    /// The bucket of a client address: an IPv4 address (IPv4-mapped IPv6 included) alone, an
    /// IPv6 address by its /64 — one host's share of a network, since a client usually holds a
    /// whole /64 and could otherwise take a new bucket per request.
    pub fn client(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                BucketKey::Ip(IpAddr::V6(network.into()))
            }
            v4 => BucketKey::Ip(v4),
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole requests left right now.
    pub remaining: u64,
    /// Seconds (rounded up) until the bucket is full again; when refused, until the next
    /// request is allowed.
    pub reset_s: u64,
    /// Seconds (rounded up) until a request is allowed; 0 when allowed.
    pub retry_after_s: u64,
}

/// One route's limiter.
#[derive(Debug)]
pub struct RateLimiter {
    spec: RateLimitSpec,
    /// Nanoseconds one token takes to come back.
    interval: u64,
    /// Nanoseconds the whole bucket takes to refill (`interval * requests`).
    capacity: u64,
    epoch: Instant,
    /// The TAT of the single `by: route` bucket.
    route: AtomicU64,
    shards: Box<[Mutex<HashMap<BucketKey, u64>>]>,
    per_shard: usize,
    /// Seeds the shard choice (see [`RateLimiter::shard_of`]).
    seed: u64,
    limit_value: HeaderValue,
    policy_value: HeaderValue,
}

impl RateLimiter {
    pub fn new(spec: RateLimitSpec) -> Self {
        Self::with_max_buckets(spec, MAX_BUCKETS)
    }

    /// A limiter that tracks at most `max_buckets` keys (rounded up to a multiple of
    /// [`SHARDS`]).
    pub fn with_max_buckets(spec: RateLimitSpec, max_buckets: usize) -> Self {
        let requests = u64::from(spec.requests.max(1));
        let window = u64::from(spec.per_seconds.max(1)) * NANOS;
        let interval = (window / requests).max(1);
        let shards = match spec.by {
            RateLimitBy::Route => Vec::new(),
            _ => (0..SHARDS).map(|_| Mutex::default()).collect(),
        };
        Self {
            spec,
            interval,
            capacity: interval * requests,
            epoch: Instant::now(),
            route: AtomicU64::new(0),
            shards: shards.into_boxed_slice(),
            per_shard: max_buckets.div_ceil(SHARDS).max(1),
            seed: fastrand::u64(..),
            limit_value: HeaderValue::from(spec.requests),
            policy_value: HeaderValue::from_str(&format!(
                "{};w={}",
                spec.requests, spec.per_seconds
            ))
            .expect("digits"),
        }
    }

    pub fn spec(&self) -> RateLimitSpec {
        self.spec
    }

    /// Takes one request from the bucket of `key` (ignored for `by: route`).
    pub fn check(&self, key: Option<BucketKey>) -> Decision {
        self.check_at(key, self.now())
    }

    fn now(&self) -> u64 {
        // Starts at one interval so a fresh (zero) TAT is always in the past.
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX) + self.capacity
    }

    fn check_at(&self, key: Option<BucketKey>, now: u64) -> Decision {
        let key = match (self.spec.by, key) {
            (RateLimitBy::Route, _) | (_, None) => return self.check_route(now),
            (_, Some(key)) => key,
        };
        let shard = &self.shards[self.shard_of(&key)];
        let mut buckets = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tat) = buckets.get_mut(&key) {
            let (next, decision) = gcra(*tat, now, self.interval, self.capacity);
            *tat = next;
            return decision;
        }
        let (next, decision) = gcra(0, now, self.interval, self.capacity);
        if buckets.len() >= self.per_shard {
            evict(&mut buckets, now);
        }
        buckets.insert(key, next);
        decision
    }

    /// The shard holding `key`: a seeded multiply-shift of the key's bits — one multiply,
    /// not a second SipHash (the shard's own map keeps SipHash, which is what protects it from
    /// chosen keys; a skewed shard choice would only cost lock sharing).
    fn shard_of(&self, key: &BucketKey) -> usize {
        let bits = match key {
            BucketKey::Ip(IpAddr::V4(v4)) => u64::from(u32::from(*v4)),
            BucketKey::Ip(IpAddr::V6(v6)) => {
                let all = u128::from(*v6);
                (all as u64) ^ ((all >> 64) as u64)
            }
            BucketKey::Consumer(name) => name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            }),
        };
        let mixed = (bits ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize % self.shards.len()
    }

    fn check_route(&self, now: u64) -> Decision {
        let mut current = self.route.load(Ordering::Acquire);
        loop {
            let (next, decision) = gcra(current, now, self.interval, self.capacity);
            if next == current {
                return decision;
            }
            match self.route.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }

    /// Keys tracked right now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |buckets| buckets.len()))
            .sum()
    }

    /// `RateLimit-Limit` / `-Remaining` / `-Reset` / `-Policy` for `decision`, plus
    /// `Retry-After` when refused.
    pub fn write_headers(&self, decision: &Decision, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT.clone(), self.limit_value.clone());
        headers.insert(RATELIMIT_REMAINING.clone(), decision.remaining.into());
        headers.insert(RATELIMIT_RESET.clone(), decision.reset_s.into());
        headers.insert(RATELIMIT_POLICY.clone(), self.policy_value.clone());
        if !decision.allowed {
            headers.insert(header::RETRY_AFTER, decision.retry_after_s.into());
        }
    }
}

/// One GCRA step: the bucket's new TAT and the decision, at `now`.
fn gcra(tat: u64, now: u64, interval: u64, capacity: u64) -> (u64, Decision) {
    let tat = tat.max(now);
    let next = tat + interval;
    // `next - now` is how much of the bucket is used once this request is counted.
    let used = next - now;
    if used > capacity {
        let wait = used - capacity;
        let seconds = wait.div_ceil(NANOS);
        return (
            tat,
            Decision {
                allowed: false,
                remaining: 0,
                reset_s: seconds,
                retry_after_s: seconds,
            },
        );
    }
    let decision = Decision {
        allowed: true,
        remaining: (capacity - used) / interval,
        reset_s: used.div_ceil(NANOS),
        retry_after_s: 0,
    };
    (next, decision)
}

/// Makes room in a full shard: drops every full bucket (TAT passed); when none is, drops the
/// sixteenth of buckets closest to full (the least used), so the scan is paid once per many
/// inserts and heavy users keep their buckets.
fn evict(buckets: &mut HashMap<BucketKey, u64>, now: u64) {
    let before = buckets.len();
    buckets.retain(|_, tat| *tat > now);
    if buckets.len() < before {
        return;
    }
    let mut tats: Vec<u64> = buckets.values().copied().collect();
    let batch = (tats.len() / 16).max(1);
    let (_, threshold, _) = tats.select_nth_unstable(batch - 1);
    let threshold = *threshold;
    buckets.retain(|_, tat| *tat > threshold);
}

impl Policy for Arc<RateLimiter> {
    /// This request's decision, for the response headers.
    type State = Option<Decision>;

    fn build(route: &RouteSpec, _: &BuildContext<'_>, previous: Option<&Self>) -> Option<Self> {
        let spec = route.policies.rate_limit?;
        Some(keep_if_unchanged(
            previous,
            spec,
            RateLimiter::spec,
            RateLimiter::new,
        ))
    }

    async fn request(
        &self,
        _: &mut Parts,
        ctx: &mut RequestContext<'_>,
        decided: &mut Self::State,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        let client = ctx.client.ip;
        let key = match self.spec().by {
            RateLimitBy::Route => None,
            RateLimitBy::Ip => Some(BucketKey::client(client)),
            RateLimitBy::Consumer => Some(match &ctx.identity {
                Some(identity) => BucketKey::Consumer(Arc::clone(&identity.name)),
                None => BucketKey::client(client),
            }),
        };
        let decision = self.check(key);
        *decided = Some(decision);
        if decision.allowed {
            Ok(None)
        } else {
            Err(ProxyError::RateLimited)
        }
    }

    fn decorate(&self, headers: &mut HeaderMap, decided: &Self::State) {
        if let Some(decision) = decided {
            self.write_headers(decision, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: u32, per_seconds: u32, by: RateLimitBy) -> RateLimitSpec {
        RateLimitSpec {
            requests,
            per_seconds,
            by,
        }
    }

    #[test]
    fn bucket_allows_burst_then_refuses_then_refills() {
        let limiter = RateLimiter::new(spec(3, 3, RateLimitBy::Route));
        let t0 = limiter.capacity;
        let remaining: Vec<u64> = (0..3)
            .map(|_| limiter.check_at(None, t0))
            .map(|d| {
                assert!(d.allowed);
                d.remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check_at(None, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 1, "one token per second");
        assert_eq!(refused.reset_s, 1);
        // Half a second later: still refused, Retry-After rounds up.
        let refused = limiter.check_at(None, t0 + NANOS / 2);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 1);
        // One second later: one token back.
        let allowed = limiter.check_at(None, t0 + NANOS);
        assert!(allowed.allowed);
        assert_eq!(allowed.remaining, 0);
        assert!(!limiter.check_at(None, t0 + NANOS).allowed);
        // Idle for the whole window: full again.
        let full = limiter.check_at(None, t0 + 10 * NANOS);
        assert_eq!((full.allowed, full.remaining), (true, 2));
        assert_eq!(full.reset_s, 1, "one token used, back in 1 s");
    }

    #[test]
    fn retry_after_and_reset_round_up_on_long_windows() {
        let limiter = RateLimiter::new(spec(2, 60, RateLimitBy::Route));
        let t0 = limiter.capacity;
        let first = limiter.check_at(None, t0);
        assert_eq!((first.remaining, first.reset_s), (1, 30));
        let second = limiter.check_at(None, t0);
        assert_eq!((second.remaining, second.reset_s), (0, 60));
        let refused = limiter.check_at(None, t0 + NANOS / 10);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_s, 30, "29.9 s rounds up");
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let limiter = RateLimiter::new(spec(1, 60, RateLimitBy::Ip));
        let t0 = limiter.capacity;
        let a = Some(BucketKey::Ip([10, 0, 0, 1].into()));
        let b = Some(BucketKey::Ip([10, 0, 0, 2].into()));
        assert!(limiter.check_at(a.clone(), t0).allowed);
        assert!(!limiter.check_at(a, t0).allowed);
        assert!(limiter.check_at(b, t0).allowed);
        let consumers = RateLimiter::new(spec(1, 60, RateLimitBy::Consumer));
        let acme = Some(BucketKey::Consumer("acme".into()));
        assert!(consumers.check_at(acme.clone(), t0).allowed);
        assert!(!consumers.check_at(acme, t0).allowed);
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limiter = RateLimiter::new(spec(1, 60, RateLimitBy::Ip));
        let t0 = limiter.capacity;
        let host = |text: &str| Some(BucketKey::client(text.parse().unwrap()));
        assert!(limiter.check_at(host("2001:db8:1:2::1"), t0).allowed);
        assert!(
            !limiter
                .check_at(host("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0)
                .allowed,
            "another address of the same /64 shares the bucket"
        );
        assert!(limiter.check_at(host("2001:db8:1:3::1"), t0).allowed);
        assert!(limiter.check_at(host("192.0.2.1"), t0).allowed);
        assert!(!limiter.check_at(host("::ffff:192.0.2.1"), t0).allowed);
        assert!(limiter.check_at(host("192.0.2.2"), t0).allowed);
    }

    #[test]
    fn a_flood_of_distinct_ips_stays_bounded() {
        let limiter = RateLimiter::with_max_buckets(spec(5, 60, RateLimitBy::Ip), 1_000);
        let bound = 1_000usize.div_ceil(SHARDS) * SHARDS;
        let t0 = limiter.capacity;
        let steady = Some(BucketKey::Ip([192, 168, 0, 1].into()));
        for _ in 0..4 {
            assert!(limiter.check_at(steady.clone(), t0).allowed);
        }
        for i in 0..200_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(limiter.check_at(Some(BucketKey::Ip(ip)), t0).allowed);
        }
        assert!(limiter.tracked() <= bound, "{}", limiter.tracked());
        let kept = limiter.check_at(steady, t0);
        assert!(
            kept.allowed && kept.remaining == 0,
            "the heavy user kept its bucket"
        );
        // Buckets that refilled are dropped first when room is needed.
        let later = t0 + 61 * NANOS;
        for i in 0..bound as u32 {
            let ip = IpAddr::from((i + 1_000_000).to_be_bytes());
            limiter.check_at(Some(BucketKey::Ip(ip)), later);
        }
        assert!(limiter.tracked() <= bound);
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let limiter = RateLimiter::new(spec(1, 10, RateLimitBy::Route));
        let t0 = limiter.capacity;
        let mut headers = HeaderMap::new();
        limiter.write_headers(&limiter.check_at(None, t0), &mut headers);
        assert_eq!(headers[&RATELIMIT_LIMIT], "1");
        assert_eq!(headers[&RATELIMIT_REMAINING], "0");
        assert_eq!(headers[&RATELIMIT_RESET], "10");
        assert_eq!(headers[&RATELIMIT_POLICY], "1;w=10");
        assert!(!headers.contains_key(header::RETRY_AFTER));
        limiter.write_headers(&limiter.check_at(None, t0 + NANOS), &mut headers);
        assert_eq!(headers[header::RETRY_AFTER], "9");
    }
}
