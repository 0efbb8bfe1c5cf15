//! Reads: current resources, revision records, the config at a revision and the changes since
//! one. Rows become model-agnostic [`StoredResource`]s here; nothing above the store sees SQL.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{StoreError, StoredResource};
use crate::model::{Kind, Reference};
use crate::timestamp::rfc3339_ms;

/// One revision of the config: a committed write.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Revision {
    /// Global, increasing by one per write.
    pub number: i64,
    /// RFC 3339 commit time.
    pub time: String,
    /// Unix milliseconds of the commit.
    #[serde(skip)]
    pub created_at_ms: i64,
    /// Who made the change.
    pub actor: String,
    /// What changed.
    pub changes: Vec<ChangeSummary>,
    /// Set when this revision restored an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
}

/// One resource changed by a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeSummary {
    /// `create`, `update`, `delete`, or for a consumer's keys `create_key` / `revoke_key`.
    pub op: String,
    /// Plural kind.
    pub kind: String,
    /// Resource name.
    pub name: String,
}

/// The summary column: what changed, and the revision restored by a rollback.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct SummaryColumn {
    pub changes: Vec<ChangeSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
}

/// A resource changed after some revision: its latest value, `None` when deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceChange {
    /// Kind of the changed resource.
    pub kind: Kind,
    /// Name of the changed resource.
    pub name: String,
    /// The value now, or `None` if it was deleted.
    pub value: Option<StoredResource>,
}

/// The newest revision number (0 for an empty store).
pub(super) async fn head(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(number), 0) AS head FROM revisions")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>("head")?)
}

pub(super) async fn list(
    pool: &AnyPool,
    kind: Option<Kind>,
) -> Result<Vec<StoredResource>, StoreError> {
    let rows = match kind {
        Some(kind) => {
            sqlx::query(
                "SELECT kind, name, version, updated_at_ms, spec FROM resources \
                 WHERE kind = $1 ORDER BY name",
            )
            .bind(kind.plural())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT kind, name, version, updated_at_ms, spec FROM resources \
                 ORDER BY kind, name",
            )
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(resource_from_row).collect()
}

pub(super) async fn get(
    pool: &AnyPool,
    kind: Kind,
    name: &str,
) -> Result<Option<StoredResource>, StoreError> {
    let row = sqlx::query(
        "SELECT kind, name, version, updated_at_ms, spec FROM resources \
         WHERE kind = $1 AND name = $2",
    )
    .bind(kind.plural())
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(resource_from_row).transpose()
}

/// The references of `refs` whose target does not exist now.
pub(super) async fn missing(
    pool: &AnyPool,
    refs: &[Reference],
) -> Result<Vec<Reference>, StoreError> {
    let mut missing = Vec::new();
    for reference in refs {
        let exists = sqlx::query("SELECT 1 AS one FROM resources WHERE kind = $1 AND name = $2")
            .bind(reference.kind.plural())
            .bind(&reference.name)
            .fetch_optional(pool)
            .await?
            .is_some();
        if !exists {
            missing.push(reference.clone());
        }
    }
    Ok(missing)
}

pub(super) async fn revisions(
    pool: &AnyPool,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Revision>, StoreError> {
    let rows = sqlx::query(
        "SELECT number, created_at_ms, actor, summary FROM revisions \
         WHERE number < $1 ORDER BY number DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 1000))
    .fetch_all(pool)
    .await?;
    rows.iter().map(revision_from_row).collect()
}

pub(super) async fn revision(pool: &AnyPool, number: i64) -> Result<Option<Revision>, StoreError> {
    let row = sqlx::query(
        "SELECT number, created_at_ms, actor, summary FROM revisions WHERE number = $1",
    )
    .bind(number)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(revision_from_row).transpose()
}

/// The latest history entry of each resource with revision in `(after, upto]`.
const LATEST_IN_RANGE: &str = "\
    SELECT h.kind, h.name, h.revision AS version, r.created_at_ms AS updated_at_ms, h.spec \
    FROM resource_history h JOIN revisions r ON r.number = h.revision \
    WHERE h.revision = (SELECT MAX(h2.revision) FROM resource_history h2 \
                        WHERE h2.kind = h.kind AND h2.name = h.name \
                          AND h2.revision > $1 AND h2.revision <= $2) \
    ORDER BY h.kind, h.name";

pub(super) async fn config_at(
    pool: &AnyPool,
    number: i64,
) -> Result<Vec<StoredResource>, StoreError> {
    if number != 0 && revision(pool, number).await?.is_none() {
        return Err(StoreError::RevisionNotFound(number));
    }
    let rows = sqlx::query(LATEST_IN_RANGE)
        .bind(0_i64)
        .bind(number)
        .fetch_all(pool)
        .await?;
    let mut config = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(resource) = history_row(row)? {
            config.push(resource);
        }
    }
    Ok(config)
}

pub(super) async fn changes_since(
    pool: &AnyPool,
    after: i64,
    upto: i64,
) -> Result<Vec<ResourceChange>, StoreError> {
    let rows = sqlx::query(LATEST_IN_RANGE)
        .bind(after)
        .bind(upto)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let kind = kind_of(row)?;
            let name: String = row.try_get("name")?;
            Ok(ResourceChange {
                kind,
                name,
                value: history_row(row)?,
            })
        })
        .collect()
}

/// Kind, name and references (JSON) of every resource that existed right after revision
/// `number`.
pub(super) async fn refs_at(
    pool: &AnyPool,
    number: i64,
) -> Result<Vec<(Kind, String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT h.kind, h.name, h.refs FROM resource_history h \
         WHERE h.spec IS NOT NULL AND h.revision = (SELECT MAX(h2.revision) \
             FROM resource_history h2 WHERE h2.kind = h.kind AND h2.name = h.name \
               AND h2.revision <= $1)",
    )
    .bind(number)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let refs: Option<String> = row.try_get("refs")?;
            Ok((
                kind_of(row)?,
                row.try_get("name")?,
                refs.unwrap_or_else(|| "[]".to_owned()),
            ))
        })
        .collect()
}

fn history_row(row: &AnyRow) -> Result<Option<StoredResource>, StoreError> {
    let spec: Option<String> = row.try_get("spec")?;
    match spec {
        None => Ok(None),
        Some(_) => resource_from_row(row).map(Some),
    }
}

fn kind_of(row: &AnyRow) -> Result<Kind, StoreError> {
    let kind: String = row.try_get("kind")?;
    Kind::from_plural(&kind).ok_or_else(|| StoreError::Internal(format!("unknown kind {kind:?}")))
}

fn resource_from_row(row: &AnyRow) -> Result<StoredResource, StoreError> {
    let spec: String = row.try_get("spec")?;
    Ok(StoredResource {
        kind: kind_of(row)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Internal(format!("stored spec is not JSON: {e}")))?,
    })
}

fn revision_from_row(row: &AnyRow) -> Result<Revision, StoreError> {
    let summary: String = row.try_get("summary")?;
    let summary: SummaryColumn = serde_json::from_str(&summary)
        .map_err(|e| StoreError::Internal(format!("stored revision summary: {e}")))?;
    let created_at_ms: i64 = row.try_get("created_at_ms")?;
    Ok(Revision {
        number: row.try_get("number")?,
        time: rfc3339_ms(created_at_ms),
        created_at_ms,
        actor: row.try_get("actor")?,
        changes: summary.changes,
        rollback_of: summary.rollback_of,
    })
}
