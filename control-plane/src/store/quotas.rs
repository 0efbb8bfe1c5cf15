//! Quota accounting, fleet-wide: one `quota_windows` row per (quota, consumer, window) with
//! the tokens granted to proxies in that window and the requests they report having let
//! through. Grants follow [`crate::quota`]; this module is their I/O.
//!
//! Correct across replicas: a grant ([`crate::store::Store::grant_quota`]) runs in one
//! transaction that locks each row it grants from (an upsert that returns the row: on
//! PostgreSQL it waits for any other replica's transaction holding it and then sees its
//! commit; SQLite writers are serialised), so the tokens granted in a window never sum past
//! the limit however many replicas grant at once.
//! Rows are locked in key order — here and where usage batches add their consumption, in
//! their own transaction — so two writers cannot deadlock.
//!
//! The quota's limit and window are read from the current config inside the transaction: a
//! changed limit applies to the next grant; a changed window counts in windows of the new
//! length (one that starts at the same second as an old one, an hour and its first minute,
//! shares that row: at worst the budget undershoots once).
//!
//! It does not prune by itself: the usage retention task does
//! ([`crate::store::Store::prune_usage`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use sqlx::{Any, AnyPool, Row, Transaction};

use super::columns::{MAX_KEY_BYTES, ROWS_PER_STATEMENT, from_column, multi_row_insert, to_column};
use super::{Backend, StoreError};
use crate::model::quota::QuotaWindow;
use crate::model::{Kind, Quota, syntax};
use crate::quota::{Window, decide};

/// The most grant requests one call answers (a proxy's message must not carry more).
pub const MAX_REQUESTS: usize = 1024;

/// A proxy asks for tokens of one quota for one consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaRequest {
    /// Quota name.
    pub quota: String,
    /// Consumer name, `""` for unauthenticated requests.
    pub consumer: String,
    /// Tokens wanted (0 counts as 1; more than the limit as the limit).
    pub want: u64,
}

/// Tokens granted for one (quota, consumer) in the control plane's current window.
///
/// A quota the control plane does not know (deleted, or a proxy ahead of the database) is
/// answered with `limit` 0, nothing granted and not `exhausted`: the proxy should treat it as
/// it treats an unreachable control plane until its config catches up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaGrant {
    /// Quota name.
    pub quota: String,
    /// Consumer name.
    pub consumer: String,
    /// Tokens added to the proxy's lease.
    pub granted: u64,
    /// Start of the window the tokens belong to, Unix seconds.
    pub window_start_unix_s: u64,
    /// End of that window, Unix milliseconds: the lease expires then.
    pub window_end_unix_ms: u64,
    /// Nothing was left to grant (`granted` is 0) until the window ends.
    pub exhausted: bool,
    /// The quota's limit.
    pub limit: u64,
    /// What the window's budget has given out, this grant included: tokens granted plus
    /// requests let through without a lease. `limit − window_granted` is what is left.
    pub window_granted: u64,
}

/// Requests a proxy let through against one quota for one consumer in one window, as it
/// reports them with a usage batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaConsumption {
    /// Quota name.
    pub quota: String,
    /// Consumer name, `""` for unauthenticated requests.
    pub consumer: String,
    /// Requests let through.
    pub used: u64,
    /// Start of their window, Unix seconds (a multiple of 60).
    pub window_start_unix_s: u64,
    /// Of `used`, those let through without a lease.
    pub unleased: u64,
}

/// A quota's accounting in its current window.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaUsage {
    /// The quota as configured now.
    pub quota: Quota,
    /// The current window.
    pub window: Window,
    /// Every consumer granted or charged anything in it, by name.
    pub items: Vec<QuotaUsageItem>,
}

/// One consumer's use of a quota in the current window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsageItem {
    /// Consumer name, `""` for unauthenticated requests.
    pub consumer: String,
    /// Requests let through, as the proxies have reported them.
    pub used: u64,
    /// `limit − used`, at least 0.
    pub remaining: u64,
    /// Tokens granted to proxies (spent or not).
    pub granted: u64,
}

/// What one `quota_windows` row is keyed by; ordered as rows are locked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::store) struct WindowKey {
    pub quota: String,
    pub consumer: String,
    pub window_start_unix_s: i64,
}

/// Consumption summed for one row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::store) struct Consumed {
    pub used: u64,
    pub unleased: u64,
}

/// Answers `requests` (at most [`MAX_REQUESTS`]) at `now` in one transaction, one grant per
/// request in their order; see the module doc.
pub(super) async fn grant(
    pool: &AnyPool,
    backend: Backend,
    requests: &[QuotaRequest],
    now: SystemTime,
) -> Result<Vec<QuotaGrant>, StoreError> {
    if requests.len() > MAX_REQUESTS {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_REQUESTS} quota requests at once"
        )));
    }
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = super::begin_write(pool, backend).await?;
    let result = grant_in(&mut tx, requests, now).await;
    super::finish(tx, result).await
}

async fn grant_in(
    tx: &mut Transaction<'_, Any>,
    requests: &[QuotaRequest],
    now: SystemTime,
) -> Result<Vec<QuotaGrant>, StoreError> {
    let mut specs: BTreeMap<&str, Option<Quota>> = BTreeMap::new();
    for request in requests {
        if !specs.contains_key(request.quota.as_str()) {
            let spec = quota_spec(&mut **tx, &request.quota).await?;
            specs.insert(&request.quota, spec);
        }
    }
    // Rows are locked in key order; the answers go back in the order asked.
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| (&requests[i].quota, &requests[i].consumer));
    let mut grants = vec![QuotaGrant::default(); requests.len()];
    for i in order {
        let request = &requests[i];
        grants[i] = match specs.get(request.quota.as_str()) {
            Some(Some(spec)) if request.consumer.len() <= MAX_KEY_BYTES => {
                grant_one(tx, request, spec, now).await?
            }
            _ => unknown(request, now),
        };
    }
    Ok(grants)
}

async fn grant_one(
    tx: &mut Transaction<'_, Any>,
    request: &QuotaRequest,
    spec: &Quota,
    now: SystemTime,
) -> Result<QuotaGrant, StoreError> {
    let window = Window::at(spec.window, now);
    // Locks the row (creating it empty) and reads it as last committed by any replica.
    let row = sqlx::query(
        "INSERT INTO quota_windows \
         (quota, consumer, window_start_unix_s, granted, used, unleased, updated_at_ms) \
         VALUES ($1, $2, $3, 0, 0, 0, $4) \
         ON CONFLICT (quota, consumer, window_start_unix_s) \
         DO UPDATE SET updated_at_ms = excluded.updated_at_ms \
         RETURNING granted, unleased",
    )
    .bind(request.quota.as_str())
    .bind(request.consumer.as_str())
    .bind(window.start_unix_s)
    .bind(super::now_ms())
    .fetch_one(&mut **tx)
    .await?;
    let taken =
        from_column(row.try_get("granted")?).saturating_add(from_column(row.try_get("unleased")?));
    let decision = decide(spec.limit, taken, request.want);
    if decision.granted > 0 {
        sqlx::query(
            "UPDATE quota_windows SET granted = granted + $1 \
             WHERE quota = $2 AND consumer = $3 AND window_start_unix_s = $4",
        )
        .bind(to_column(decision.granted))
        .bind(request.quota.as_str())
        .bind(request.consumer.as_str())
        .bind(window.start_unix_s)
        .execute(&mut **tx)
        .await?;
    }
    Ok(QuotaGrant {
        quota: request.quota.clone(),
        consumer: request.consumer.clone(),
        granted: decision.granted,
        window_start_unix_s: window.start_unix_s.max(0) as u64,
        window_end_unix_ms: window.end_unix_ms().max(0) as u64,
        exhausted: decision.exhausted,
        limit: spec.limit,
        window_granted: taken.saturating_add(decision.granted),
    })
}

/// The answer for a quota the config does not hold (see [`QuotaGrant`]).
fn unknown(request: &QuotaRequest, now: SystemTime) -> QuotaGrant {
    let window = Window::at(QuotaWindow::Minute, now);
    QuotaGrant {
        quota: request.quota.clone(),
        consumer: request.consumer.clone(),
        window_start_unix_s: window.start_unix_s.max(0) as u64,
        window_end_unix_ms: window.end_unix_ms().max(0) as u64,
        ..QuotaGrant::default()
    }
}

/// The current spec of quota `name`, if there is one.
async fn quota_spec<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<Quota>, StoreError> {
    if syntax::name(name).is_err() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT spec FROM resources WHERE kind = $1 AND name = $2")
        .bind(Kind::Quota.plural())
        .bind(name)
        .fetch_optional(executor)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let spec: String = row.try_get("spec")?;
    serde_json::from_str(&spec).map(Some).map_err(|e| {
        StoreError::Internal(format!(
            "quota {name:?}: stored spec does not match the model: {e}"
        ))
    })
}

/// Adds reported consumption to its windows' rows (creating them), in key order, inside the
/// caller's transaction.
pub(in crate::store) async fn add_consumed(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    consumed: &BTreeMap<WindowKey, Consumed>,
) -> Result<(), StoreError> {
    let now_ms = super::now_ms();
    let rows: Vec<_> = consumed.iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(
            backend,
            "INSERT INTO quota_windows \
             (quota, consumer, window_start_unix_s, granted, used, unleased, updated_at_ms) \
             VALUES ",
            7,
            chunk.len(),
            " ON CONFLICT (quota, consumer, window_start_unix_s) DO UPDATE SET \
             used = quota_windows.used + excluded.used, \
             unleased = quota_windows.unleased + excluded.unleased, \
             updated_at_ms = excluded.updated_at_ms",
        );
        // Built from the constants above and placeholders only.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, sums) in chunk {
            query = query
                .bind(key.quota.as_str())
                .bind(key.consumer.as_str())
                .bind(key.window_start_unix_s)
                .bind(0_i64)
                .bind(to_column(sums.used))
                .bind(to_column(sums.unleased))
                .bind(now_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Quota `name`'s accounting in the window that contains `now`; `None` if there is no such
/// quota.
pub(super) async fn usage(
    pool: &AnyPool,
    name: &str,
    now: SystemTime,
) -> Result<Option<QuotaUsage>, StoreError> {
    let Some(quota) = quota_spec(pool, name).await? else {
        return Ok(None);
    };
    let window = Window::at(quota.window, now);
    let rows = sqlx::query(
        "SELECT consumer, granted, used FROM quota_windows \
         WHERE quota = $1 AND window_start_unix_s = $2",
    )
    .bind(name)
    .bind(window.start_unix_s)
    .fetch_all(pool)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let used = from_column(row.try_get("used")?);
        items.push(QuotaUsageItem {
            consumer: row.try_get("consumer")?,
            used,
            remaining: quota.limit.saturating_sub(used),
            granted: from_column(row.try_get("granted")?),
        });
    }
    // Sorted here: the databases' collations differ.
    items.sort_by(|a, b| a.consumer.cmp(&b.consumer));
    Ok(Some(QuotaUsage {
        quota,
        window,
        items,
    }))
}

/// Deletes the windows that ended before `before_unix_s` (windows last at most a day, so the
/// rows that started a day before it); returns the rows deleted.
pub(super) async fn prune(pool: &AnyPool, before_unix_s: i64) -> Result<u64, StoreError> {
    let longest = QuotaWindow::Day.seconds() as i64;
    Ok(
        sqlx::query("DELETE FROM quota_windows WHERE window_start_unix_s < $1")
            .bind(before_unix_s.saturating_sub(longest))
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
