//! Usage reported by proxies: per-minute counters by route, consumer and status class, with
//! latency histograms, each proxy batch stored exactly once; the fleet-wide sums read back for
//! `GET /api/v1/usage`; pruning by age.
//!
//! Exactly once: a batch carries a sequence number, increasing per proxy process (instance).
//! The instance's highest stored sequence lives in `usage_instances` and advances in the
//! transaction that adds the batch's counters, so a batch resent after a lost acknowledgement
//! (a reconnect, a failover to another replica) is recognised and skipped. The instance rows
//! are upserted first, which locks them: two replicas handed the same batch serialise there and
//! the second one skips it.
//!
//! One write may hold the reports of many instances (group commit, see
//! `crate::reports::ingest`): their counters are summed before they are written, so a fleet
//! adding to the same keys costs a row per key, not per proxy. Instance rows are locked in id
//! order and counters upserted in key order, so replicas sharing a PostgreSQL cannot deadlock.
//!
//! Counters only grow, by upserts that add (`requests = requests + excluded.requests`):
//! replicas sharing a PostgreSQL may add to the same minute at once.
//!
//! A batch also carries the requests let through against each quota
//! ([`super::quotas::QuotaConsumption`]); they are added to the quota windows in the same
//! transaction, so they too count exactly once.
//!
//! # Layout
//! - [`tally`]: checks and sums one report's counters and quota consumption before they are
//!   written.
//! - [`latency`]: [`LatencyHistogram`], merging and percentiles.
//!
//! It does not know the config: keys are stored as reported, and the usage of a deleted route
//! stays until it ages out.

mod latency;
mod tally;

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

pub use super::columns::{MAX_KEY_BYTES, MAX_VALUE};
use super::columns::{ROWS_PER_STATEMENT, from_column, multi_row_insert, to_column};
use super::quotas::{self, QuotaConsumption};
use super::{Backend, StoreError};
pub use latency::LatencyHistogram;
use tally::{CounterKey, Tally, Totals};
pub use tally::{InvalidCounter, MAX_BUCKETS};

/// The longest instance id accepted, in bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 128;

/// One flush of a proxy's usage counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Increasing per proxy instance.
    pub sequence: u64,
    /// The counters.
    pub counters: Vec<UsageCounter>,
    /// Requests the proxy could not count (its buffer was full).
    pub dropped_requests: u64,
    /// Requests let through against quotas since the previous batch.
    pub quota_used: Vec<QuotaConsumption>,
}

/// Requests of one route, consumer, status class and minute, as a proxy reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageCounter {
    /// Route name.
    pub route: String,
    /// Consumer name, `""` for unauthenticated traffic.
    pub consumer: String,
    /// 1..=5 for 1xx..5xx.
    pub status_class: u32,
    /// Requests.
    pub requests: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Sum of the requests' latencies, µs.
    pub latency_sum_us: u64,
    /// Count of each bucket of `latency_bounds_us`.
    pub latency_buckets: Vec<u64>,
    /// Inclusive upper bounds (µs) of the non-empty latency buckets, ascending.
    pub latency_bounds_us: Vec<u64>,
    /// Start of the minute, Unix seconds (a multiple of 60).
    pub minute_unix_s: u64,
}

/// What [`crate::store::Store::record_usage`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageRecorded {
    /// Every batch of the instance up to this sequence is stored: the acknowledgement.
    pub acked: u64,
    /// Batches stored now.
    pub batches: u64,
    /// Batches skipped as already stored (resent).
    pub duplicates: u64,
    /// Counters stored.
    pub counters: u64,
    /// Quota consumption entries stored.
    pub quota_entries: u64,
    /// Counters and quota consumption entries skipped as invalid.
    pub invalid: u64,
    /// Why the first skipped entry was skipped.
    pub first_invalid: Option<InvalidCounter>,
    /// Requests the proxy could not count, summed over the batches stored now.
    pub dropped_requests: u64,
    /// Requests let through against quotas, summed over the entries stored now.
    pub quota_used: u64,
    /// Of those, the ones let through without a lease.
    pub quota_unleased: u64,
}

/// The dimension usage is summed by (over the other one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageBy {
    /// Per route, every consumer together.
    Route,
    /// Per consumer (`""`: unauthenticated), every route together.
    Consumer,
}

impl UsageBy {
    /// `route` or `consumer`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Route => "route",
            UsageBy::Consumer => "consumer",
        }
    }
}

/// The usage of one route or consumer, fleet-wide, since some minute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageItem {
    /// Route or consumer name.
    pub key: String,
    /// Requests of every status class.
    pub requests: u64,
    /// Requests per status class: `status[0]` is 1xx, …, `status[4]` 5xx.
    pub status: [u64; 5],
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Sum of the requests' latencies, µs.
    pub latency_sum_us: u64,
    /// Latency of every request, merged across proxies and minutes.
    pub latency: LatencyHistogram,
}

/// The batches one report stream message carries: one proxy instance's, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceUsage {
    /// The proxy's node id.
    pub node_id: String,
    /// The proxy process (a restart is a new instance, with sequences from 1 again).
    pub instance_id: String,
    /// Its batches, oldest first.
    pub batches: Vec<UsageBatch>,
}

fn check_instance_id(instance_id: &str) -> Result<(), StoreError> {
    if instance_id.is_empty() || instance_id.len() > MAX_INSTANCE_ID_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "instance_id must be 1 to {MAX_INSTANCE_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Stores `reports` (of one or many instances) in one transaction; what was done with each,
/// in their order. See the module doc.
pub(super) async fn record(
    pool: &AnyPool,
    backend: Backend,
    reports: &[InstanceUsage],
) -> Result<Vec<UsageRecorded>, StoreError> {
    for report in reports {
        check_instance_id(&report.instance_id)?;
    }
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = super::begin_write(pool, backend).await?;
    let result = record_in(&mut tx, backend, reports).await;
    super::finish(tx, result).await
}

async fn record_in(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    reports: &[InstanceUsage],
) -> Result<Vec<UsageRecorded>, StoreError> {
    let instances: BTreeMap<&str, &str> = reports
        .iter()
        .map(|r| (r.instance_id.as_str(), r.node_id.as_str()))
        .collect();
    let stored = lock_instances(tx, backend, &instances).await?;
    // The newest sequence of each instance, stored or earlier in this write.
    let mut newest: BTreeMap<String, i64> = stored.clone();
    let mut tally = Tally::default();
    let mut recorded = Vec::with_capacity(reports.len());
    for report in reports {
        let newest = newest
            .get_mut(&report.instance_id)
            .ok_or_else(|| StoreError::Internal("usage instance not locked".to_owned()))?;
        recorded.push(add_report(&mut tally, newest, &report.batches));
    }
    upsert_counters(tx, backend, &tally.counters).await?;
    upsert_latency(tx, backend, &tally).await?;
    quotas::add_consumed(tx, backend, &tally.quota).await?;
    let advanced: Vec<(&str, i64)> = newest
        .iter()
        .filter(|(id, sequence)| stored.get(*id).is_some_and(|s| *sequence > s))
        .map(|(id, sequence)| (id.as_str(), *sequence))
        .collect();
    advance_instances(tx, backend, &advanced).await?;
    Ok(recorded)
}

/// Adds one message's batches to `tally`, skipping those at or below `newest` (repeats) and
/// raising it; what was done with the message.
fn add_report(tally: &mut Tally, newest: &mut i64, batches: &[UsageBatch]) -> UsageRecorded {
    let before = (
        tally.accepted,
        tally.quota_accepted,
        tally.invalid,
        tally.quota_used,
        tally.quota_unleased,
    );
    let mut recorded = UsageRecorded::default();
    for batch in batches {
        match i64::try_from(batch.sequence) {
            // Batches come oldest first: one at or below the newest seen so far is a repeat,
            // whether stored before or earlier in this write.
            Ok(sequence) if sequence > *newest => {
                *newest = sequence;
                recorded.batches += 1;
                recorded.dropped_requests = recorded
                    .dropped_requests
                    .saturating_add(batch.dropped_requests);
                for counter in &batch.counters {
                    tally.add(counter);
                }
                for consumption in &batch.quota_used {
                    tally.add_quota(consumption);
                }
            }
            Ok(_) => recorded.duplicates += 1,
            Err(_) => tally.skip(
                batch.counters.len() + batch.quota_used.len(),
                InvalidCounter::Sequence,
            ),
        }
    }
    recorded.acked = u64::try_from(*newest).unwrap_or(0);
    recorded.counters = tally.accepted - before.0;
    recorded.quota_entries = tally.quota_accepted - before.1;
    recorded.invalid = tally.invalid - before.2;
    recorded.quota_used = tally.quota_used - before.3;
    recorded.quota_unleased = tally.quota_unleased - before.4;
    recorded.first_invalid = tally.first_invalid.take();
    recorded
}

/// Locks the rows of `instances` (id → node id) in id order, creating missing ones at -1
/// ("nothing stored yet"), and reads the highest sequence each has stored through any replica.
async fn lock_instances(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    instances: &BTreeMap<&str, &str>,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows: Vec<_> = instances
        .iter()
        .map(|(id, node)| (*id, *node, -1))
        .collect();
    let mut stored = BTreeMap::new();
    let tail = " ON CONFLICT (instance_id) DO UPDATE SET node_id = excluded.node_id, \
                updated_at_ms = excluded.updated_at_ms RETURNING instance_id, last_sequence";
    for row in upsert_instances(tx, backend, &rows, tail).await? {
        stored.insert(row.try_get("instance_id")?, row.try_get("last_sequence")?);
    }
    Ok(stored)
}

/// Sets the highest stored sequence of the (locked) instances of `advanced`.
async fn advance_instances(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    advanced: &[(&str, i64)],
) -> Result<(), StoreError> {
    let rows: Vec<_> = advanced.iter().map(|(id, seq)| (*id, "", *seq)).collect();
    let tail = " ON CONFLICT (instance_id) DO UPDATE SET last_sequence = excluded.last_sequence";
    upsert_instances(tx, backend, &rows, tail).await?;
    Ok(())
}

/// Upserts `(instance_id, node_id, last_sequence)` rows, in their order, with `tail` saying
/// what a conflict does; the rows the statements return.
async fn upsert_instances(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    rows: &[(&str, &str, i64)],
    tail: &str,
) -> Result<Vec<AnyRow>, StoreError> {
    let now_ms = super::now_ms();
    let mut returned = Vec::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(
            backend,
            "INSERT INTO usage_instances (instance_id, node_id, last_sequence, updated_at_ms) \
             VALUES ",
            4,
            chunk.len(),
            tail,
        );
        // Built from the constants of the callers and placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (instance_id, node_id, sequence) in chunk {
            query = query
                .bind(*instance_id)
                .bind(*node_id)
                .bind(*sequence)
                .bind(now_ms);
        }
        returned.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(returned)
}

async fn upsert_counters(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    counters: &BTreeMap<CounterKey, Totals>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = counters.iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(
            backend,
            "INSERT INTO usage_counters \
             (minute_unix_s, route, consumer, status_class, requests, bytes_in, bytes_out, \
             latency_sum_us) VALUES ",
            8,
            chunk.len(),
            " ON CONFLICT (minute_unix_s, route, consumer, status_class) DO UPDATE SET \
             requests = usage_counters.requests + excluded.requests, \
             bytes_in = usage_counters.bytes_in + excluded.bytes_in, \
             bytes_out = usage_counters.bytes_out + excluded.bytes_out, \
             latency_sum_us = usage_counters.latency_sum_us + excluded.latency_sum_us",
        );
        // Built from the constants above and placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, totals) in chunk {
            query = query
                .bind(key.minute_unix_s)
                .bind(key.route.as_str())
                .bind(key.consumer.as_str())
                .bind(key.status_class)
                .bind(to_column(totals.requests))
                .bind(to_column(totals.bytes_in))
                .bind(to_column(totals.bytes_out))
                .bind(to_column(totals.latency_sum_us));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn upsert_latency(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    tally: &Tally,
) -> Result<(), StoreError> {
    let rows: Vec<_> = tally.latency_rows().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(
            backend,
            "INSERT INTO usage_latency \
             (minute_unix_s, route, consumer, status_class, bound_us, count) VALUES ",
            6,
            chunk.len(),
            " ON CONFLICT (minute_unix_s, route, consumer, status_class, bound_us) \
             DO UPDATE SET count = usage_latency.count + excluded.count",
        );
        // Built from the constants above and placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, bound_us, count) in chunk {
            query = query
                .bind(key.minute_unix_s)
                .bind(key.route.as_str())
                .bind(key.consumer.as_str())
                .bind(key.status_class)
                .bind(*bound_us)
                .bind(to_column(*count));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `SELECT`s of the sums since `$1`, by the column `$by`.
macro_rules! usage_queries {
    ($by:literal) => {
        (
            concat!(
                "SELECT ",
                $by,
                " AS usage_key, CAST(status_class AS BIGINT) AS status_class, ",
                "CAST(SUM(requests) AS BIGINT) AS requests, ",
                "CAST(SUM(bytes_in) AS BIGINT) AS bytes_in, ",
                "CAST(SUM(bytes_out) AS BIGINT) AS bytes_out, ",
                "CAST(SUM(latency_sum_us) AS BIGINT) AS latency_sum_us ",
                "FROM usage_counters WHERE minute_unix_s >= $1 GROUP BY ",
                $by,
                ", status_class"
            ),
            concat!(
                "SELECT ",
                $by,
                " AS usage_key, bound_us, CAST(SUM(count) AS BIGINT) AS count ",
                "FROM usage_latency WHERE minute_unix_s >= $1 GROUP BY ",
                $by,
                ", bound_us"
            ),
        )
    };
}

/// Usage per route or consumer over the minutes starting at or after `since_minute_unix_s`,
/// by key.
pub(super) async fn query(
    pool: &AnyPool,
    by: UsageBy,
    since_minute_unix_s: i64,
) -> Result<Vec<UsageItem>, StoreError> {
    let (counters_sql, latency_sql) = match by {
        UsageBy::Route => usage_queries!("route"),
        UsageBy::Consumer => usage_queries!("consumer"),
    };
    let mut items: BTreeMap<String, UsageItem> = BTreeMap::new();
    let rows = sqlx::query(counters_sql)
        .bind(since_minute_unix_s)
        .fetch_all(pool)
        .await?;
    for row in &rows {
        let key: String = row.try_get("usage_key")?;
        let class: i64 = row.try_get("status_class")?;
        let requests = from_column(row.try_get("requests")?);
        let item = items.entry(key.clone()).or_insert_with(|| UsageItem {
            key,
            ..UsageItem::default()
        });
        item.requests = item.requests.saturating_add(requests);
        if let Some(slot) = usize::try_from(class - 1)
            .ok()
            .and_then(|i| item.status.get_mut(i))
        {
            *slot = slot.saturating_add(requests);
        }
        item.bytes_in = item
            .bytes_in
            .saturating_add(from_column(row.try_get("bytes_in")?));
        item.bytes_out = item
            .bytes_out
            .saturating_add(from_column(row.try_get("bytes_out")?));
        item.latency_sum_us = item
            .latency_sum_us
            .saturating_add(from_column(row.try_get("latency_sum_us")?));
    }
    let rows = sqlx::query(latency_sql)
        .bind(since_minute_unix_s)
        .fetch_all(pool)
        .await?;
    for row in &rows {
        let key: String = row.try_get("usage_key")?;
        let bound = from_column(row.try_get("bound_us")?);
        let count = from_column(row.try_get("count")?);
        items
            .entry(key.clone())
            .or_insert_with(|| UsageItem {
                key,
                ..UsageItem::default()
            })
            .latency
            .add(bound, count);
    }
    Ok(items.into_values().collect())
}

/// Deletes the usage of minutes before `before_minute_unix_s`, and the instances silent since
/// then (a batch they might still resend is older than what is kept). Returns the rows deleted.
pub(super) async fn prune(pool: &AnyPool, before_minute_unix_s: i64) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for sql in [
        "DELETE FROM usage_counters WHERE minute_unix_s < $1",
        "DELETE FROM usage_latency WHERE minute_unix_s < $1",
    ] {
        deleted += sqlx::query(sql)
            .bind(before_minute_unix_s)
            .execute(pool)
            .await?
            .rows_affected();
    }
    deleted += sqlx::query("DELETE FROM usage_instances WHERE updated_at_ms < $1")
        .bind(before_minute_unix_s.saturating_mul(1000))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(deleted)
}
