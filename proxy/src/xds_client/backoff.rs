//! Reconnect delays: exponential with jitter, capped low (1 s) so a proxy resynchronises within
//! a second or two of a control plane coming back.

use std::time::Duration;

const BASE: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { current: BASE }
    }
}

impl Backoff {
    /// The next delay: uniformly in `[current/2, current]`, then `current` doubles (≤ cap).
    pub fn next_delay(&mut self) -> Duration {
        let upper = self.current;
        self.current = (self.current * 2).min(CAP);
        let half = upper / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the base delay after a healthy stream.
    pub fn reset(&mut self) {
        self.current = BASE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_with_jitter() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= BASE / 2 && first <= BASE);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= CAP);
        }
        assert!(backoff.next_delay() >= CAP / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= BASE);
    }
}
