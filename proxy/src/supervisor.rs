//! The supervisor: the one owner of what a snapshot needs running, on the control runtime.
//! Snapshot builds are pure ([`crate::snapshot`]); this task watches the [`SnapshotCell`] and,
//! after each publish, brings the running tasks in line with the new snapshot:
//!
//! - **Health checks**: one task per cluster with a `health_check` ([`health::run`]), kept
//!   while the new config has the same check over the same endpoint states. Otherwise it is
//!   stopped *and waited for* before anything else touches those endpoints, so two tasks never
//!   write one endpoint and a stopped task's last verdict cannot land after the next step: a
//!   replacement starts, or — when the check is gone — the endpoints are marked healthy
//!   (nothing else would ever do it).
//! - **JWKS refreshes**: one per `jwks_uri` provider's verifier ([`JwtVerifier::refresher`]),
//!   kept while the snapshot holds the same verifier.
//! - **Idle connections**: every [`REAP_INTERVAL`], pooled connections idle past their
//!   cluster's idle timeout are closed; those of endpoints that left the config while ejected
//!   at once, on the publish that removed them.
//!
//! Listeners and connection drains join here as they come. Stopping the supervisor stops every
//! task it started and waits for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::ClusterRuntime;
use crate::endpoint::EndpointState;
use crate::health;
use crate::jwt::JwtVerifier;
use crate::model::HealthCheckSpec;
use crate::snapshot::{Snapshot, SnapshotCell};

/// How often idle upstream connections are looked at.
pub const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true (or its sender is dropped), then stops every task it started.
pub async fn run(cell: Arc<SnapshotCell>, mut stop: watch::Receiver<bool>) {
    let mut published = cell.watch();
    let mut supervisor = Supervisor::default();
    supervisor.reconcile(&cell.load_full()).await;
    let mut reap = tokio::time::interval(REAP_INTERVAL);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reap.tick().await; // the first tick is immediate: nothing has been idle yet
    loop {
        tokio::select! {
            changed = published.changed() => {
                if changed.is_err() {
                    break;
                }
                published.borrow_and_update();
                supervisor.reconcile(&cell.load_full()).await;
            }
            _ = reap.tick() => evict_idle(&cell.load()),
            () = stopped(&mut stop) => break,
        }
    }
    supervisor.shutdown().await;
}

/// Completes when `stop` turns true or its sender is dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

/// The tasks started for the current snapshot.
#[derive(Debug, Default)]
pub struct Supervisor {
    health: HashMap<String, HealthRun>,
    jwks: HashMap<String, JwksRun>,
}

/// A running health check and what it checks.
#[derive(Debug)]
struct HealthRun {
    check: HealthCheckSpec,
    endpoints: Vec<Arc<EndpointState>>,
    task: JoinHandle<()>,
}

impl HealthRun {
    fn serves(&self, check: &HealthCheckSpec, endpoints: &[Arc<EndpointState>]) -> bool {
        self.check == *check
            && self.endpoints.len() == endpoints.len()
            && self
                .endpoints
                .iter()
                .zip(endpoints)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// A running JWKS refresh and the verifier it refreshes.
#[derive(Debug)]
struct JwksRun {
    verifier: JwtVerifier,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Brings the running tasks in line with `snapshot`.
    pub async fn reconcile(&mut self, snapshot: &Snapshot) {
        self.reconcile_health(snapshot).await;
        self.reconcile_jwks(snapshot).await;
        for cluster in snapshot.clusters.values() {
            for departed in cluster.departed_endpoints() {
                departed.connections.evict_idle(Duration::ZERO);
            }
        }
    }

    async fn reconcile_health(&mut self, snapshot: &Snapshot) {
        let stale: Vec<String> = self
            .health
            .iter()
            .filter(|(name, run)| {
                let wanted = snapshot.clusters.get(*name).and_then(|cluster| {
                    let check = cluster.spec.health_check.as_ref()?;
                    Some((check, cluster.balancer.states()))
                });
                !wanted.is_some_and(|(check, states)| run.serves(check, states))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(run) = self.health.remove(&name) {
                stop(run.task).await;
            }
            if let Some(cluster) = snapshot.clusters.get(&name)
                && cluster.spec.health_check.is_none()
            {
                mark_healthy(cluster);
            }
        }
        for (name, cluster) in &snapshot.clusters {
            let Some(check) = &cluster.spec.health_check else {
                continue;
            };
            if self.health.contains_key(name) {
                continue;
            }
            let endpoints = cluster.balancer.states().to_vec();
            let task = tokio::spawn(health::run(
                name.clone(),
                check.clone(),
                endpoints.clone(),
                Arc::clone(&cluster.state),
            ));
            let check = check.clone();
            self.health.insert(
                name.clone(),
                HealthRun {
                    check,
                    endpoints,
                    task,
                },
            );
        }
    }

    async fn reconcile_jwks(&mut self, snapshot: &Snapshot) {
        let stale: Vec<String> = self
            .jwks
            .iter()
            .filter(|(name, run)| {
                !snapshot
                    .jwt
                    .get(name)
                    .is_some_and(|verifier| verifier.same(&run.verifier))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(run) = self.jwks.remove(&name) {
                stop(run.task).await;
            }
        }
        for (name, verifier) in snapshot.jwt.iter() {
            if self.jwks.contains_key(name) {
                continue;
            }
            if let Some(refresher) = verifier.refresher() {
                let run = JwksRun {
                    verifier: verifier.clone(),
                    task: tokio::spawn(refresher),
                };
                self.jwks.insert(name.to_owned(), run);
            }
        }
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(&mut self) {
        for (_, run) in self.health.drain() {
            stop(run.task).await;
        }
        for (_, run) in self.jwks.drain() {
            stop(run.task).await;
        }
    }
}

/// Aborts `task` and waits until it has stopped running.
async fn stop(task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
}

/// A cluster without active checks: every endpoint passes (an earlier check's verdicts go).
fn mark_healthy(cluster: &ClusterRuntime) {
    for endpoint in cluster.balancer.states() {
        endpoint.set_active_healthy(true, &cluster.state.endpoints);
    }
}

/// Closes the pooled connections of the snapshot's clusters idle past their idle timeout.
fn evict_idle(snapshot: &Snapshot) {
    let mut evicted = 0;
    for cluster in snapshot.clusters.values() {
        for endpoint in cluster.balancer.states() {
            evicted += endpoint.connections.evict_idle(cluster.pool.idle_timeout);
        }
    }
    if evicted > 0 {
        tracing::debug!(evicted, "closed idle upstream connections");
    }
}

#[cfg(test)]
mod tests;
