//! Clocks for counters kept in atomics: monotonic nanoseconds since the first call (cheap,
//! comparable, fits a `u64`) and wall-clock milliseconds since the Unix epoch (what reports
//! carry).

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static CLOCK_BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Monotonic nanoseconds since the first call in this process.
pub fn monotonic_nanos() -> u64 {
    u64::try_from(CLOCK_BASE.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
