//! API keys of consumers: reads, and the writes that [`super::writes`] applies inside a
//! revision. Only SHA-256 hashes are stored. Creating or revoking a key bumps the consumer's
//! version, so the change streams to proxies like any other consumer change.

use sqlx::{Any, AnyPool, Row, Transaction};

use super::StoreError;
use crate::model::Kind;

/// A stored API key (its hash, never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Public identifier, used to revoke it.
    pub id: String,
    /// The consumer it authenticates.
    pub consumer: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// Unix milliseconds of creation.
    pub created_at_ms: i64,
}

/// Keys of `consumer` (all consumers when `None`), oldest first.
pub(super) async fn list(
    pool: &AnyPool,
    consumer: Option<&str>,
) -> Result<Vec<ApiKey>, StoreError> {
    let rows = match consumer {
        Some(consumer) => {
            sqlx::query(
                "SELECT id, consumer, sha256, created_at_ms FROM api_keys \
                 WHERE consumer = $1 ORDER BY created_at_ms, id",
            )
            .bind(consumer)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT id, consumer, sha256, created_at_ms FROM api_keys \
                 ORDER BY consumer, created_at_ms, id",
            )
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter()
        .map(|row| {
            Ok(ApiKey {
                id: row.try_get("id")?,
                consumer: row.try_get("consumer")?,
                sha256: row.try_get("sha256")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect()
}

pub(super) async fn insert(
    tx: &mut Transaction<'_, Any>,
    now_ms: i64,
    consumer: &str,
    id: &str,
    sha256: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, consumer, sha256, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(consumer)
    .bind(sha256)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn delete(
    tx: &mut Transaction<'_, Any>,
    consumer: &str,
    id: &str,
) -> Result<(), StoreError> {
    let deleted = sqlx::query("DELETE FROM api_keys WHERE consumer = $1 AND id = $2")
        .bind(consumer)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::KeyNotFound {
            consumer: consumer.to_owned(),
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// Removes every key of a consumer being deleted.
pub(super) async fn delete_all(
    tx: &mut Transaction<'_, Any>,
    kind: Kind,
    name: &str,
) -> Result<(), StoreError> {
    if kind == Kind::Consumer {
        sqlx::query("DELETE FROM api_keys WHERE consumer = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
