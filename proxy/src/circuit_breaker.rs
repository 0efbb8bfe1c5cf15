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

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::{ClusterState, ClusterStats};
use crate::error::ProxyError;
use crate::model::CircuitBreakerSpec;

/// A cluster's limits and connection slots.
#[derive(Debug)]
pub struct CircuitBreaker {
    limits: CircuitBreakerSpec,
    connections: Option<Arc<Semaphore>>,
}

/// One admitted request; releases its `max_requests` slot when dropped.
#[derive(Debug)]
pub struct RequestPermit {
    cluster: Arc<ClusterState>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.cluster.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements a counter when dropped.
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CircuitBreaker {
    /// Keeps `previous`' connection slots when `max_connections` did not change (so the permits
    /// held by in-flight requests still count).
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
        }
    }

    /// Admits a request under `max_requests`.
    pub fn admit(&self, cluster: &Arc<ClusterState>) -> Result<RequestPermit, ProxyError> {
        let before = cluster.requests.fetch_add(1, Ordering::Relaxed);
        let permit = RequestPermit {
            cluster: Arc::clone(cluster),
        };
        if self.limits.max_requests.is_some_and(|max| before >= max) {
            ClusterStats::add(&cluster.stats.circuit_open);
            return Err(ProxyError::CircuitOpen);
        }
        Ok(permit)
    }

    /// A connection slot for one attempt (`None` when connections are unlimited); waits as a
    /// pending request when all slots are taken, unless `max_pending_requests` are already
    /// waiting.
    pub async fn connection(
        &self,
        cluster: &ClusterState,
    ) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(slots) = &self.connections else {
            return Ok(None);
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Ok(Some(permit));
        }
        let waiting = cluster.pending.fetch_add(1, Ordering::Relaxed) + 1;
        let _pending = Counted(&cluster.pending);
        if self
            .limits
            .max_pending_requests
            .is_some_and(|max| waiting > max)
        {
            ClusterStats::add(&cluster.stats.circuit_open);
            return Err(ProxyError::CircuitOpen);
        }
        Arc::clone(slots)
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| ProxyError::CircuitOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_requests_and_pending() {
        let cluster = Arc::new(ClusterState::default());
        let limits = CircuitBreakerSpec {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            max_requests: Some(3),
        };
        let breaker = CircuitBreaker::new(limits, None);
        let admitted: Vec<_> = (0..3).map(|_| breaker.admit(&cluster).unwrap()).collect();
        assert_eq!(
            breaker.admit(&cluster).unwrap_err(),
            ProxyError::CircuitOpen
        );
        drop(admitted);
        assert!(breaker.admit(&cluster).is_ok(), "slots come back");

        let held = breaker.connection(&cluster).await.unwrap().unwrap();
        let waiter = {
            let cluster = Arc::clone(&cluster);
            let breaker = CircuitBreaker::new(limits, Some(&breaker));
            tokio::spawn(async move { breaker.connection(&cluster).await.map(|p| p.is_some()) })
        };
        while cluster.pending.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            breaker.connection(&cluster).await.unwrap_err(),
            ProxyError::CircuitOpen,
            "a second waiter is over max_pending_requests"
        );
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(true));
        assert_eq!(cluster.stats.circuit_open.load(Ordering::Relaxed), 2);
        let unlimited = CircuitBreaker::new(CircuitBreakerSpec::default(), None);
        assert!(unlimited.connection(&cluster).await.unwrap().is_none());
    }
}
