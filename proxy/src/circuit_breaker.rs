//! Per-cluster circuit breaking (Envoy's three thresholds), enforced per proxy:
//!
//! - `max_requests`: requests in flight to the cluster (admission, counted until the response
//!   body ends);
//! - `max_connections`: upstream connections, approximated as attempts holding a connection
//!   (one per in-flight HTTP/1.1 exchange) — a semaphore, kept across configs while the limit
//!   is unchanged;
//! - `max_pending_requests`: attempts waiting for a connection slot once `max_connections` is
//!   reached (meaningful only with `max_connections`).
//!
//! Over a limit the request fails fast with 503 `{"error": "circuit open"}` and
//! `x-switchyard-overloaded: true`. Fast path: one atomic add (plus a semaphore `try_acquire`
//! when connections are limited); this module never waits except for a connection slot.
//! The counters are the breaker's own ([`Load`]), carried from one config's breaker to the
//! next, so the module depends on nothing but the spec; the caller counts refusals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ProxyError;
use crate::model::CircuitBreakerSpec;

/// A cluster's limits and connection slots.
/// One cluster's breaker for one config.
#[derive(Debug)]
pub struct CircuitBreaker {
    limits: CircuitBreakerSpec,
    /// Connection slots, when `max_connections` is set.
    connections: Option<Arc<Semaphore>>,
    load: Arc<Load>,
}

/// What the breaker counts, kept across configs.
#[derive(Debug, Default)]
pub struct Load {
    /// Requests in flight through the breaker (`max_requests`).
    requests: AtomicU32,
    /// Attempts waiting for a connection slot (`max_pending_requests`).
    pending: AtomicU32,
}

/// One admitted request; releases its place on drop.
#[derive(Debug)]
pub struct RequestPermit {
    load: Arc<Load>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.load.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements a counter on drop.
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CircuitBreaker {
    /// A breaker with `limits` that takes over `previous`' counts (and its connection slots
    /// while `max_connections` is unchanged).
    pub fn new(limits: CircuitBreakerSpec, previous: Option<&CircuitBreaker>) -> Self {
        let connections = match (limits.max_connections, previous) {
            (None, _) => None,
            (Some(max), Some(previous)) if previous.limits.max_connections == Some(max) => {
                previous.connections.clone()
            }
            (Some(max), _) => Some(Arc::new(Semaphore::new(max as usize))),
        };
        Self {
            limits,
            connections,
            load: previous.map_or_else(Arc::default, |p| Arc::clone(&p.load)),
        }
    }

    /// Admits one request, or refuses it when `max_requests` are in flight.
    pub fn admit(&self) -> Result<RequestPermit, ProxyError> {
        let before = self.load.requests.fetch_add(1, Ordering::Relaxed);
        let permit = RequestPermit {
            load: Arc::clone(&self.load),
        };
        if self.limits.max_requests.is_some_and(|max| before >= max) {
            return Err(ProxyError::CircuitOpen);
        }
        Ok(permit)
    }

    /// A connection slot for one attempt (`None` when connections are unlimited): at once if
    /// one is free, else after waiting — unless `max_pending_requests` already wait.
    pub async fn connection(&self) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(slots) = &self.connections else {
            return Ok(None);
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Ok(Some(permit));
        }
        let waiting = self.load.pending.fetch_add(1, Ordering::Relaxed) + 1;
        let _pending = Counted(&self.load.pending);
        if self
            .limits
            .max_pending_requests
            .is_some_and(|max| waiting > max)
        {
            return Err(ProxyError::CircuitOpen);
        }
        Arc::clone(slots)
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| ProxyError::CircuitOpen)
    }

    /// Attempts waiting for a connection slot right now.
    #[cfg(test)]
    fn pending(&self) -> u32 {
        self.load.pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_requests_and_pending() {
        let limits = CircuitBreakerSpec {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            max_requests: Some(3),
        };
        let breaker = CircuitBreaker::new(limits, None);
        let admitted: Vec<_> = (0..3).map(|_| breaker.admit().unwrap()).collect();
        assert_eq!(breaker.admit().unwrap_err(), ProxyError::CircuitOpen);
        drop(admitted);
        assert!(breaker.admit().is_ok(), "slots come back");

        let held = breaker.connection().await.unwrap().unwrap();
        let waiter = {
            let breaker = CircuitBreaker::new(limits, Some(&breaker));
            tokio::spawn(async move { breaker.connection().await.map(|p| p.is_some()) })
        };
        while breaker.pending() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            breaker.connection().await.unwrap_err(),
            ProxyError::CircuitOpen,
            "a second waiter is over max_pending_requests"
        );
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(true));
        let unlimited = CircuitBreaker::new(CircuitBreakerSpec::default(), None);
        assert!(unlimited.connection().await.unwrap().is_none());
    }
}
