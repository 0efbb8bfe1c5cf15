//! Writes: one transaction per call, numbered as one revision, with preconditions checked
//! before anything is written and reference integrity checked after all changes are applied
//! (so a multi-change write is valid as a whole, whatever its order).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Any, AnyPool, Row, Transaction};

use super::history::{self, ChangeSummary, Revision, SummaryColumn};
use super::{Backend, Change, Expect, StoreError};
use super::{keys, replicas};
use crate::model::{Kind, Reference};

/// Arbitrary key of the PostgreSQL advisory lock that orders config writes across replicas.
const WRITE_LOCK_KEY: i64 = 0x5377_6974_6368; // "Switch"

pub(super) async fn apply(
    pool: &AnyPool,
    backend: Backend,
    changes: Vec<Change>,
    actor: &str,
) -> Result<Revision, StoreError> {
    apply_with(pool, backend, changes, actor, None).await
}

/// Restores the config of revision `number` as a new revision.
pub(super) async fn rollback(
    pool: &AnyPool,
    backend: Backend,
    number: i64,
    actor: &str,
) -> Result<Revision, StoreError> {
    let target = history::config_at(pool, number).await?;
    let mut target_refs: BTreeMap<(Kind, String), String> = history::refs_at(pool, number)
        .await?
        .into_iter()
        .map(|(kind, name, refs)| ((kind, name), refs))
        .collect();
    let current = history::list(pool, None).await?;
    let mut changes = Vec::new();
    let target_keys: BTreeSet<(Kind, &str)> =
        target.iter().map(|r| (r.kind, r.name.as_str())).collect();
    for resource in &current {
        if !target_keys.contains(&(resource.kind, resource.name.as_str())) {
            changes.push(Change::Delete {
                kind: resource.kind,
                name: resource.name.clone(),
                expect: Expect::Version(resource.version),
            });
        }
    }
    for resource in target {
        let now = current
            .iter()
            .find(|c| c.kind == resource.kind && c.name == resource.name);
        if now.is_some_and(|c| c.spec == resource.spec) {
            continue;
        }
        let refs_json = target_refs
            .remove(&(resource.kind, resource.name.clone()))
            .unwrap_or_else(|| "[]".to_owned());
        let refs: Vec<Reference> = serde_json::from_str(&refs_json)
            .map_err(|e| StoreError::Internal(format!("stored refs: {e}")))?;
        changes.push(Change::Put {
            kind: resource.kind,
            name: resource.name,
            spec: resource.spec,
            refs,
            expect: now.map_or(Expect::Absent, |c| Expect::Version(c.version)),
        });
    }
    apply_with(pool, backend, changes, actor, Some(number)).await
}

async fn apply_with(
    pool: &AnyPool,
    backend: Backend,
    changes: Vec<Change>,
    actor: &str,
    rollback_of: Option<i64>,
) -> Result<Revision, StoreError> {
    // PostgreSQL: the advisory lock in `write` orders config writers.
    let mut tx = super::begin_write(pool, backend).await?;
    let result = write(&mut tx, backend, changes, actor, rollback_of).await;
    super::finish(tx, result).await
}

/// The body of one write transaction; the caller commits or rolls back.
async fn write(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    changes: Vec<Change>,
    actor: &str,
    rollback_of: Option<i64>,
) -> Result<Revision, StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut **tx)
            .await?;
    }
    let number: i64 = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM revisions")
        .fetch_one(&mut **tx)
        .await?
        .try_get("next")?;
    let now_ms = super::now_ms();

    let mut summary = SummaryColumn {
        changes: Vec::with_capacity(changes.len()),
        rollback_of,
    };
    let mut puts: Vec<Vec<Reference>> = Vec::new();
    let mut deletes: Vec<(Kind, String)> = Vec::new();
    for change in changes {
        match change {
            Change::Put {
                kind,
                name,
                spec,
                refs,
                expect,
            } => {
                let current = current_version(tx, kind, &name).await?;
                check_expect(kind, &name, expect, current)?;
                put(tx, number, now_ms, kind, &name, &spec, &refs).await?;
                let op = if current.is_some() {
                    "update"
                } else {
                    "create"
                };
                summary.changes.push(summary_of(op, kind, &name));
                puts.push(refs);
            }
            Change::Delete { kind, name, expect } => {
                let expect = if expect == Expect::Absent {
                    Expect::Any
                } else {
                    expect
                };
                let current = current_version(tx, kind, &name).await?;
                if current.is_none() {
                    return Err(StoreError::NotFound { kind, name });
                }
                check_expect(kind, &name, expect, current)?;
                delete(tx, number, kind, &name).await?;
                summary.changes.push(summary_of("delete", kind, &name));
                deletes.push((kind, name));
            }
            Change::CreateKey {
                consumer,
                id,
                sha256,
            } => {
                keys::insert(tx, now_ms, &consumer, &id, &sha256).await?;
                bump(tx, number, now_ms, Kind::Consumer, &consumer).await?;
                summary
                    .changes
                    .push(summary_of("create_key", Kind::Consumer, &consumer));
            }
            Change::RevokeKey { consumer, id } => {
                keys::delete(tx, &consumer, &id).await?;
                bump(tx, number, now_ms, Kind::Consumer, &consumer).await?;
                summary
                    .changes
                    .push(summary_of("revoke_key", Kind::Consumer, &consumer));
            }
        }
    }
    check_integrity(tx, &puts, &deletes).await?;

    let summary_json = serde_json::to_string(&summary)
        .map_err(|e| StoreError::Internal(format!("revision summary: {e}")))?;
    sqlx::query(
        "INSERT INTO revisions (number, created_at_ms, actor, summary) VALUES ($1, $2, $3, $4)",
    )
    .bind(number)
    .bind(now_ms)
    .bind(actor)
    .bind(summary_json)
    .execute(&mut **tx)
    .await?;
    if backend == Backend::Postgres {
        replicas::announce(tx, number).await?;
    }
    Ok(Revision {
        number,
        time: crate::timestamp::rfc3339_ms(now_ms),
        created_at_ms: now_ms,
        actor: actor.to_owned(),
        changes: summary.changes,
        rollback_of,
    })
}

async fn current_version(
    tx: &mut Transaction<'_, Any>,
    kind: Kind,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT version FROM resources WHERE kind = $1 AND name = $2")
        .bind(kind.plural())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get("version")).transpose()?)
}

/// Whether `expect` holds for a resource now at version `current` (`None`: absent).
fn check_expect(
    kind: Kind,
    name: &str,
    expect: Expect,
    current: Option<i64>,
) -> Result<(), StoreError> {
    match (expect, current) {
        (Expect::Absent, Some(_)) => Err(StoreError::AlreadyExists {
            kind,
            name: name.to_owned(),
        }),
        (Expect::Version(expected), current) if current != Some(expected) => {
            Err(StoreError::VersionMismatch {
                kind,
                name: name.to_owned(),
                expected,
                current,
            })
        }
        _ => Ok(()),
    }
}

async fn put(
    tx: &mut Transaction<'_, Any>,
    number: i64,
    now_ms: i64,
    kind: Kind,
    name: &str,
    spec: &serde_json::Value,
    refs: &[Reference],
) -> Result<(), StoreError> {
    let spec = spec.to_string();
    let refs_json =
        serde_json::to_string(refs).map_err(|e| StoreError::Internal(format!("refs: {e}")))?;
    sqlx::query(
        "INSERT INTO resources (kind, name, version, updated_at_ms, spec, refs) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, \
         updated_at_ms = excluded.updated_at_ms, spec = excluded.spec, refs = excluded.refs",
    )
    .bind(kind.plural())
    .bind(name)
    .bind(number)
    .bind(now_ms)
    .bind(&spec)
    .bind(&refs_json)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM resource_refs WHERE from_kind = $1 AND from_name = $2")
        .bind(kind.plural())
        .bind(name)
        .execute(&mut **tx)
        .await?;
    let targets: BTreeSet<(Kind, &str)> = refs.iter().map(|r| (r.kind, r.name.as_str())).collect();
    for (to_kind, to_name) in targets {
        sqlx::query(
            "INSERT INTO resource_refs (from_kind, from_name, to_kind, to_name) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(kind.plural())
        .bind(name)
        .bind(to_kind.plural())
        .bind(to_name)
        .execute(&mut **tx)
        .await?;
    }
    record_history(tx, number, kind, name, Some(&spec), Some(&refs_json)).await
}

/// Gives an existing resource a new version without changing its spec (its keys changed).
async fn bump(
    tx: &mut Transaction<'_, Any>,
    number: i64,
    now_ms: i64,
    kind: Kind,
    name: &str,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT spec, refs FROM resources WHERE kind = $1 AND name = $2")
        .bind(kind.plural())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind,
            name: name.to_owned(),
        })?;
    let spec: String = row.try_get("spec")?;
    let refs: String = row.try_get("refs")?;
    sqlx::query(
        "UPDATE resources SET version = $1, updated_at_ms = $2 WHERE kind = $3 AND name = $4",
    )
    .bind(number)
    .bind(now_ms)
    .bind(kind.plural())
    .bind(name)
    .execute(&mut **tx)
    .await?;
    record_history(tx, number, kind, name, Some(&spec), Some(&refs)).await
}

async fn delete(
    tx: &mut Transaction<'_, Any>,
    number: i64,
    kind: Kind,
    name: &str,
) -> Result<(), StoreError> {
    keys::delete_all(tx, kind, name).await?;
    for sql in [
        "DELETE FROM resources WHERE kind = $1 AND name = $2",
        "DELETE FROM resource_refs WHERE from_kind = $1 AND from_name = $2",
    ] {
        sqlx::query(sql)
            .bind(kind.plural())
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    record_history(tx, number, kind, name, None, None).await
}

async fn record_history(
    tx: &mut Transaction<'_, Any>,
    number: i64,
    kind: Kind,
    name: &str,
    spec: Option<&str>,
    refs: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resource_history (revision, kind, name, spec, refs) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (revision, kind, name) DO UPDATE SET spec = excluded.spec, refs = excluded.refs",
    )
    .bind(number)
    .bind(kind.plural())
    .bind(name)
    .bind(spec.map(str::to_owned))
    .bind(refs.map(str::to_owned))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// After every change of the write: each reference of a put names an existing resource, and
/// no deleted resource is still referred to.
async fn check_integrity(
    tx: &mut Transaction<'_, Any>,
    puts: &[Vec<Reference>],
    deletes: &[(Kind, String)],
) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    for reference in puts.iter().flatten() {
        let exists = sqlx::query("SELECT 1 AS one FROM resources WHERE kind = $1 AND name = $2")
            .bind(reference.kind.plural())
            .bind(&reference.name)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if !exists {
            missing.push(reference.clone());
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::MissingReferences(missing));
    }
    for (kind, name) in deletes {
        let rows = sqlx::query(
            "SELECT from_kind, from_name FROM resource_refs \
             WHERE to_kind = $1 AND to_name = $2 ORDER BY from_kind, from_name",
        )
        .bind(kind.plural())
        .bind(name)
        .fetch_all(&mut **tx)
        .await?;
        if !rows.is_empty() {
            let used_by = rows
                .iter()
                .map(|row| {
                    let from_kind: String = row.try_get("from_kind")?;
                    let from_name: String = row.try_get("from_name")?;
                    Ok(format!("{from_kind}/{from_name}"))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            return Err(StoreError::InUse {
                kind: *kind,
                name: name.clone(),
                used_by,
            });
        }
    }
    Ok(())
}

fn summary_of(op: &str, kind: Kind, name: &str) -> ChangeSummary {
    ChangeSummary {
        op: op.to_owned(),
        kind: kind.plural().to_owned(),
        name: name.to_owned(),
    }
}
