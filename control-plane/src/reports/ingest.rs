//! Group commit of usage. Every report stream hands its messages' usage to one writer task,
//! which stores all the messages that arrived while its previous transaction ran in the next
//! one: a quiet fleet gets a transaction per message with no added wait, a busy one a
//! transaction per many messages, with their counters summed per key before they are written
//! (1,000 proxies adding to the same routes' minute cost one row per key, not per proxy).
//!
//! A stream waits for its own message's outcome, so acknowledgements stay per message and in
//! order. When a group's transaction fails, each of its messages is tried alone, so a message
//! the database refuses fails only its own stream (which ends, and its proxy resends), never
//! the others of its group.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{InstanceUsage, Store, StoreError, UsageRecorded};

/// The most messages stored in one transaction.
const MAX_GROUP: usize = 256;
/// Messages waiting for the writer; a stream past it waits to queue (each stream has at
/// most one message waiting).
const QUEUE: usize = 4096;

/// What happened to one message's usage.
pub type Outcome = Result<UsageRecorded, Arc<StoreError>>;

struct Pending {
    report: InstanceUsage,
    reply: oneshot::Sender<Outcome>,
}

/// The handle streams send usage through; the writer ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct UsageIngest {
    queue: mpsc::Sender<Pending>,
}

impl UsageIngest {
    /// Starts the writer on the current runtime.
    pub fn spawn(store: Store, metrics: Arc<Metrics>) -> UsageIngest {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, metrics, pending));
        UsageIngest { queue }
    }

    /// Stores one message's usage (with the messages of other streams waiting then); its
    /// outcome once committed or refused.
    pub async fn record(&self, report: InstanceUsage) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Internal("the usage writer stopped".to_owned()));
        self.queue
            .send(Pending { report, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn write_groups(store: Store, metrics: Arc<Metrics>, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (reports, replies): (Vec<_>, Vec<_>) =
            group.drain(..).map(|p| (p.report, p.reply)).unzip();
        let alone = reports.len() == 1;
        metrics.usage_write();
        match store.record_usage_group(&reports).await {
            Ok(outcomes) => {
                for (reply, recorded) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(recorded));
                }
            }
            Err(error) if alone => {
                let _ = replies
                    .into_iter()
                    .next()
                    .map(|r| r.send(Err(Arc::new(error))));
            }
            Err(error) => {
                tracing::debug!(%error, messages = reports.len(), "usage group refused; storing its messages one by one");
                for (reply, report) in replies.into_iter().zip(reports) {
                    metrics.usage_write();
                    let outcome = store
                        .record_usage_group(std::slice::from_ref(&report))
                        .await
                        .map_err(Arc::new)
                        .and_then(|mut one| {
                            one.pop().ok_or_else(|| {
                                Arc::new(StoreError::Internal("no usage result".to_owned()))
                            })
                        });
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}
