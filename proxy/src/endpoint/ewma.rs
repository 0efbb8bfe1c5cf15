//! A lock-free peak EWMA of an endpoint's time to response headers (linkerd2-proxy /
//! Finagle): it jumps straight up to any slower sample (the "peak") and decays with a time
//! constant of [`DECAY`]; `least_response_time` balancing reads it.
//!
//! New endpoints start at [`DEFAULT_RTT`], a penalty that keeps them from being flooded before
//! the first sample. The estimate is two atomics (value as `f64` bits, timestamp) updated with
//! a compare-and-swap loop: no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Decay time constant of the estimate.
pub const DECAY: Duration = Duration::from_secs(10);
/// Estimate of an endpoint with no sample yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// `stamp_nanos` of an estimate without samples: it stays at [`DEFAULT_RTT`], undecayed, so
/// fresh endpoints tie rather than favouring the oldest.
const NEVER: u64 = u64::MAX;

/// A lock-free peak EWMA of latency, in nanoseconds.
#[derive(Debug)]
pub struct PeakEwma {
    value_bits: AtomicU64,
    stamp_nanos: AtomicU64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self {
            value_bits: AtomicU64::new((DEFAULT_RTT.as_nanos() as f64).to_bits()),
            stamp_nanos: AtomicU64::new(NEVER),
        }
    }
}

impl PeakEwma {
    /// Folds in one sample taken at `now` (monotonic nanoseconds).
    pub fn observe(&self, rtt: Duration, now: u64) {
        let sample = rtt.as_nanos() as f64;
        let previous = self.stamp_nanos.swap(now, Ordering::Relaxed);
        let weight = match previous {
            NEVER => 1.0,
            previous => decay_weight(now.saturating_sub(previous)),
        };
        let _ = self
            .value_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let value = f64::from_bits(bits);
                let next = if sample > value {
                    sample
                } else {
                    value * weight + sample * (1.0 - weight)
                };
                Some(next.to_bits())
            });
    }

    /// The estimate at `now`, decayed since the last sample (so a starved endpoint that was slow
    /// once gets probed again eventually).
    #[inline]
    pub fn estimate(&self, now: u64) -> f64 {
        let value = f64::from_bits(self.value_bits.load(Ordering::Relaxed));
        match self.stamp_nanos.load(Ordering::Relaxed) {
            NEVER => value,
            stamp => value * decay_weight(now.saturating_sub(stamp)),
        }
    }
}

#[inline]
fn decay_weight(elapsed_nanos: u64) -> f64 {
    (-(elapsed_nanos as f64) / DECAY.as_nanos() as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::clock::monotonic_nanos;

    #[test]
    fn peak_then_decay() {
        let ewma = PeakEwma::default();
        let start = monotonic_nanos();
        ewma.observe(Duration::from_millis(100), start);
        assert!(
            (ewma.estimate(start) - 100e6).abs() < 1.0,
            "peak taken at once"
        );
        ewma.observe(Duration::from_millis(10), start + 1_000_000);
        assert!(
            ewma.estimate(start + 1_000_000) > 99e6,
            "a fast sample barely moves it"
        );
        let later = start + DECAY.as_nanos() as u64;
        let decayed = ewma.estimate(later);
        assert!(
            decayed < 40e6 && decayed > 30e6,
            "decays by 1/e per DECAY: {decayed}"
        );
    }
}
