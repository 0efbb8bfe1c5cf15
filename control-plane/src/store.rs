//! The config store: resources, their references and the global revision history, in SQLite
//! or PostgreSQL through one sqlx `Any` implementation.
//!
//! Every write is one transaction that also records a revision (number, time, actor, what
//! changed) and the resulting value of each changed resource in `resource_history`, so the full
//! config at any revision can be rebuilt. Writes are serialised (an in-process lock, plus a
//! PostgreSQL advisory lock so several control-plane replicas number revisions in commit order).
//! The store knows nothing about resource fields: specs are JSON validated by `model`, and
//! references between resources are passed in explicitly (as [`Reference`]s, which validation
//! returns) so the store can enforce them inside the write transaction.
//!
//! Usage reported by proxies ([`usage`]) lives beside the config, outside revisions: counters
//! per minute, written exactly once per proxy batch, summed fleet-wide on read, pruned by age.
//! So does quota accounting ([`quotas`]): the tokens granted to proxies per quota, consumer and
//! window, in one transaction that is correct across replicas, and the requests let through
//! (written with the usage batches that report them). Quotas are the one place the store reads
//! a spec: a grant needs the quota's current limit and window inside its transaction.

mod columns;
mod error;
mod history;
mod keys;
pub mod quotas;
mod replicas;
mod schema;
pub mod usage;
mod writes;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, watch};

use crate::model::{Kind, Reference};

pub use error::StoreError;
pub use history::{ChangeSummary, ResourceChange, Revision};
pub use keys::ApiKey;
pub use quotas::{QuotaConsumption, QuotaGrant, QuotaRequest, QuotaUsage, QuotaUsageItem};
pub use usage::{InstanceUsage, UsageBatch, UsageBy, UsageCounter, UsageItem, UsageRecorded};

/// A stored resource: its validated spec plus server-set fields.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResource {
    /// The resource kind.
    pub kind: Kind,
    /// Unique per kind.
    pub name: String,
    /// The revision number of the write that last changed it.
    pub version: i64,
    /// Unix milliseconds of that write.
    pub updated_at_ms: i64,
    /// The validated spec, as JSON (without `name`, `version`, `updated_at`).
    pub spec: serde_json::Value,
}

/// The result of [`Store::put`].
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The resource as stored.
    pub resource: StoredResource,
    /// Whether the put created it (rather than replacing it).
    pub created: bool,
}

/// What a write expects to find, for `POST` (must not exist) and `If-Match` (optimistic
/// concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Create or replace, whatever is there.
    Any,
    /// The resource must not exist yet.
    Absent,
    /// The resource must exist at exactly this version.
    Version(i64),
}

/// One change of a write.
#[derive(Clone, Debug)]
pub enum Change {
    /// Create or replace a resource.
    Put {
        /// Resource kind.
        kind: Kind,
        /// Resource name.
        name: String,
        /// Validated spec.
        spec: serde_json::Value,
        /// References the spec makes to other resources.
        refs: Vec<Reference>,
        /// Precondition.
        expect: Expect,
    },
    /// Add an API key (by its hash) to a consumer.
    CreateKey {
        /// The consumer.
        consumer: String,
        /// Public key id.
        id: String,
        /// Lowercase hex SHA-256 of the key.
        sha256: String,
    },
    /// Revoke one of a consumer's API keys.
    RevokeKey {
        /// The consumer.
        consumer: String,
        /// The key id.
        id: String,
    },
    /// Delete a resource.
    Delete {
        /// Resource kind.
        kind: Kind,
        /// Resource name.
        name: String,
        /// Precondition (`Expect::Absent` is meaningless here and treated as `Any`).
        expect: Expect,
    },
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// Production, and several replicas.
    Postgres,
}

/// Handle to the config store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    write_lock: std::sync::Arc<Mutex<()>>,
    committed: watch::Sender<i64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Connects to `database_url` (`sqlite://…`, created if missing, or `postgres://…`) and runs
    /// the migrations of that backend.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database url {database_url:?}: use sqlite://… or postgres://…"
            )));
        };
        let url = match backend {
            Backend::Sqlite if !database_url.contains("mode=") => {
                let sep = if database_url.contains('?') { '&' } else { '?' };
                format!("{database_url}{sep}mode=rwc")
            }
            _ => database_url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            })
            .acquire_timeout(Duration::from_secs(3))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // Write-ahead logging: one fsync per commit instead of the rollback journal's
            // several, and readers (`GET /api/v1/usage`) do not wait for writers. Kept in the
            // file, so every connection of every process uses it; durability is unchanged
            // (`synchronous` stays FULL).
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        schema::migrate(&pool, backend).await?;
        let head = history::head(&pool).await?;
        let (committed, _) = watch::channel(head);
        Ok(Store {
            pool,
            backend,
            url: database_url.to_owned(),
            write_lock: Default::default(),
            committed,
        })
    }

    /// The database in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The latest committed revision number, updated after every commit through this handle.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// The newest committed revision number in the database (including other replicas').
    pub async fn head(&self) -> Result<i64, StoreError> {
        history::head(&self.pool).await
    }

    /// With PostgreSQL, follows the commits of other replicas sharing the database (LISTEN /
    /// NOTIFY) until `shutdown`, so [`Store::subscribe`] also reports them. Returns at once
    /// on SQLite, which has one control plane per file.
    pub async fn follow_other_replicas(&self, shutdown: impl std::future::Future<Output = ()>) {
        if self.backend == Backend::Postgres {
            replicas::follow(self.url.clone(), self.committed.clone(), shutdown).await;
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// All resources of a kind, ordered by name.
    pub async fn list(&self, kind: Kind) -> Result<Vec<StoredResource>, StoreError> {
        history::list(&self.pool, Some(kind)).await
    }

    /// All resources of every kind.
    pub async fn list_all(&self) -> Result<Vec<StoredResource>, StoreError> {
        history::list(&self.pool, None).await
    }

    /// One resource, if it exists.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredResource>, StoreError> {
        history::get(&self.pool, kind, name).await
    }

    /// The references of `refs` whose target does not exist now. A plain read, outside any
    /// write: it names the unknown references of a body refused for other reasons (a write
    /// checks its references again inside its own transaction).
    pub async fn missing_references(
        &self,
        refs: &[Reference],
    ) -> Result<Vec<Reference>, StoreError> {
        history::missing(&self.pool, refs).await
    }

    /// Applies `changes` atomically as one new revision by `actor`, returning the revision.
    /// Nothing is written when any change fails its precondition or reference check.
    pub async fn apply(&self, changes: Vec<Change>, actor: &str) -> Result<Revision, StoreError> {
        let _serialised = self.write_lock.lock().await;
        let revision = writes::apply(&self.pool, self.backend, changes, actor).await?;
        self.committed
            .send_if_modified(|head| raise(head, revision.number));
        Ok(revision)
    }

    /// Creates or replaces one resource; returns it as stored, and whether it was created.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        spec: serde_json::Value,
        refs: Vec<Reference>,
        expect: Expect,
        actor: &str,
    ) -> Result<Written, StoreError> {
        let revision = self
            .apply(
                vec![Change::Put {
                    kind,
                    name: name.to_owned(),
                    spec: spec.clone(),
                    refs,
                    expect,
                }],
                actor,
            )
            .await?;
        Ok(Written {
            created: revision.changes.first().is_some_and(|c| c.op == "create"),
            resource: StoredResource {
                kind,
                name: name.to_owned(),
                version: revision.number,
                updated_at_ms: revision.created_at_ms,
                spec,
            },
        })
    }

    /// Deletes one resource; `NotFound` if it does not exist.
    pub async fn delete(
        &self,
        kind: Kind,
        name: &str,
        expect: Expect,
        actor: &str,
    ) -> Result<Revision, StoreError> {
        self.apply(
            vec![Change::Delete {
                kind,
                name: name.to_owned(),
                expect,
            }],
            actor,
        )
        .await
    }

    /// The API keys (hashes) of one consumer, or of all consumers.
    pub async fn keys(&self, consumer: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        keys::list(&self.pool, consumer).await
    }

    /// Revision history, newest first: at most `limit` revisions numbered below `before`.
    pub async fn revisions(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<Revision>, StoreError> {
        history::revisions(&self.pool, limit, before).await
    }

    /// One revision's record.
    pub async fn revision(&self, number: i64) -> Result<Option<Revision>, StoreError> {
        history::revision(&self.pool, number).await
    }

    /// The whole config as it was right after revision `number`.
    pub async fn config_at(&self, number: i64) -> Result<Vec<StoredResource>, StoreError> {
        history::config_at(&self.pool, number).await
    }

    /// Every resource change committed after revision `after` (up to `upto`), the latest value
    /// of each changed resource (`None` when deleted). Used to build incremental snapshots.
    pub async fn changes_since(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<ResourceChange>, StoreError> {
        history::changes_since(&self.pool, after, upto).await
    }

    /// Stores the usage `batches` of proxy process `instance_id` (on node `node_id`) in one
    /// transaction, each batch exactly once: `batches` come oldest first, and one at or below
    /// the instance's stored sequence (or a previous batch of the call) is skipped as already
    /// counted; invalid counters are skipped and counted. The batches' quota consumption is
    /// added to the quota windows in the same transaction.
    /// Returns the acknowledgement (the instance's highest stored sequence) and what was done.
    pub async fn record_usage(
        &self,
        node_id: &str,
        instance_id: &str,
        batches: Vec<UsageBatch>,
    ) -> Result<UsageRecorded, StoreError> {
        let report = InstanceUsage {
            node_id: node_id.to_owned(),
            instance_id: instance_id.to_owned(),
            batches,
        };
        let mut recorded = usage::record(&self.pool, self.backend, &[report]).await?;
        recorded
            .pop()
            .ok_or_else(|| StoreError::Internal("no usage result".to_owned()))
    }

    /// Stores the reports of many instances as [`Store::record_usage`] does each, in one
    /// transaction (their counters summed per key first); what was done with each report, in
    /// their order. Reports of one instance are taken in their order.
    pub async fn record_usage_group(
        &self,
        reports: &[InstanceUsage],
    ) -> Result<Vec<UsageRecorded>, StoreError> {
        usage::record(&self.pool, self.backend, reports).await
    }

    /// Fleet-wide usage per route or consumer over the minutes that start at or after
    /// `since_minute_unix_s`, ordered by key.
    pub async fn usage(
        &self,
        by: UsageBy,
        since_minute_unix_s: i64,
    ) -> Result<Vec<UsageItem>, StoreError> {
        usage::query(&self.pool, by, since_minute_unix_s).await
    }

    /// Deletes the usage of minutes before `before_minute_unix_s` and the quota windows that
    /// ended before it; returns the rows deleted.
    pub async fn prune_usage(&self, before_minute_unix_s: i64) -> Result<u64, StoreError> {
        let usage = usage::prune(&self.pool, before_minute_unix_s).await?;
        let quotas = quotas::prune(&self.pool, before_minute_unix_s).await?;
        Ok(usage + quotas)
    }

    /// Grants tokens for `requests` (at most [`quotas::MAX_REQUESTS`]) from the windows that
    /// contain `now`, in one transaction; one grant per request, in their order. The tokens
    /// granted in a window never sum past the quota's limit, whichever replicas grant them.
    pub async fn grant_quota(
        &self,
        requests: &[QuotaRequest],
        now: std::time::SystemTime,
    ) -> Result<Vec<QuotaGrant>, StoreError> {
        quotas::grant(&self.pool, self.backend, requests, now).await
    }

    /// Quota `name`'s accounting in the window that contains `now`, per consumer; `None` if
    /// there is no such quota.
    pub async fn quota_usage(
        &self,
        name: &str,
        now: std::time::SystemTime,
    ) -> Result<Option<QuotaUsage>, StoreError> {
        quotas::usage(&self.pool, name, now).await
    }

    /// Restores the config of revision `number` as a new revision by `actor`.
    pub async fn rollback(&self, number: i64, actor: &str) -> Result<Revision, StoreError> {
        let _serialised = self.write_lock.lock().await;
        let revision = writes::rollback(&self.pool, self.backend, number, actor).await?;
        self.committed
            .send_if_modified(|head| raise(head, revision.number));
        Ok(revision)
    }
}

/// Begins a write transaction. SQLite takes its write lock up front (a deferred transaction
/// that reads first can fail to upgrade without waiting); PostgreSQL writers lock rows.
/// [`finish`] ends it.
async fn begin_write(
    pool: &AnyPool,
    backend: Backend,
) -> Result<Transaction<'static, Any>, StoreError> {
    Ok(match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    })
}

/// Commits `tx` when its body's `result` is a success; otherwise rolls it back at once (its
/// locks released now rather than when the connection is next used) and returns the error.
async fn finish<T>(
    tx: Transaction<'static, Any>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, %error, "rollback of a failed write failed");
            }
            Err(error)
        }
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Raises the head to `number` if that is newer; whether it changed.
fn raise(head: &mut i64, number: i64) -> bool {
    let newer = number > *head;
    if newer {
        *head = number;
    }
    newer
}
