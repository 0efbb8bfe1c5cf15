//! A cluster's retry budget (Finagle / linkerd style token bucket, atomics only): each request
//! deposits [`RATIO_MILLI`]/1000 of a token, each retry withdraws one, and [`MIN_PER_SECOND`]
//! tokens a second are added regardless, so a cluster retries at most ~20% of its requests
//! plus 3/s. The balance is capped at [`MAX_BALANCE`] tokens to bound bursts. Kept across
//! configs with the rest of [`super::ClusterState`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::endpoint::clock::monotonic_nanos;

/// Milli-tokens deposited per request (0.2 of a retry).
pub const RATIO_MILLI: i64 = 200;
/// Retries always allowed per second.
pub const MIN_PER_SECOND: i64 = 3;
/// Largest balance, in tokens.
pub const MAX_BALANCE: i64 = 100;

const TOKEN: i64 = 1000;

/// A cluster's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    /// Milli-tokens.
    balance: AtomicI64,
    /// Monotonic milliseconds of the last time-based refill.
    refilled_at_ms: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(now_ms())
    }
}

impl RetryBudget {
    /// A budget holding one second's minimum, as of `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            balance: AtomicI64::new(MIN_PER_SECOND * TOKEN),
            refilled_at_ms: AtomicU64::new(now_ms),
        }
    }

    /// One request: adds its share.
    pub fn deposit(&self) {
        let before = self.balance.fetch_add(RATIO_MILLI, Ordering::Relaxed);
        if before + RATIO_MILLI > MAX_BALANCE * TOKEN {
            self.balance
                .fetch_min(MAX_BALANCE * TOKEN, Ordering::Relaxed);
        }
    }

    /// Takes one retry's token if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(now_ms())
    }

    /// [`RetryBudget::try_withdraw`] at a given time (tests).
    pub fn try_withdraw_at(&self, now_ms: u64) -> bool {
        let last = self.refilled_at_ms.load(Ordering::Relaxed);
        if now_ms > last
            && self
                .refilled_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // MIN_PER_SECOND tokens a second = MIN_PER_SECOND milli-tokens a millisecond.
            let refill = ((now_ms - last) as i64).saturating_mul(MIN_PER_SECOND);
            let before = self
                .balance
                .fetch_add(refill.min(MAX_BALANCE * TOKEN), Ordering::Relaxed);
            if before + refill > MAX_BALANCE * TOKEN {
                self.balance
                    .fetch_min(MAX_BALANCE * TOKEN, Ordering::Relaxed);
            }
        }
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance >= TOKEN).then_some(balance - TOKEN)
            })
            .is_ok()
    }
}

fn now_ms() -> u64 {
    monotonic_nanos() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_twenty_percent_plus_a_minimum() {
        let budget = RetryBudget::new(0);
        let drain = |at| (0..1000).take_while(|_| budget.try_withdraw_at(at)).count();
        assert_eq!(drain(0), 3, "the minimum is there from the start");
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(drain(0), 20, "20% of 100 requests");
        assert_eq!(drain(1000), 3, "3 more a second");
        assert_eq!(drain(1000), 0);
        for _ in 0..10_000 {
            budget.deposit();
        }
        assert_eq!(drain(1000), MAX_BALANCE as usize, "capped");
    }
}
