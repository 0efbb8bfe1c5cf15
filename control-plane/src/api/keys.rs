//! `/api/v1/consumers/{name}/keys`: API keys. A new key is returned once, in the response
//! that creates it; only its SHA-256 is stored and streamed to proxies, and nothing here logs
//! it. Revoking a key streams the consumer without it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::ApiState;
use super::problem::Problem;
use crate::model::Kind;
use crate::store::{ApiKey, Change};
use crate::timestamp::rfc3339_ms;

/// Prefix of every key, so leaked keys are easy to recognise (and to scan for).
const KEY_PREFIX: &str = "sy_";

/// A key just created: the only time `key` is ever shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    /// Public id, used to revoke the key.
    pub id: String,
    /// The key; send it in the `x-api-key` header. Not retrievable later.
    pub key: String,
    /// The consumer it authenticates.
    pub consumer: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A stored key, without any secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    /// Public id.
    pub id: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// Create an API key for a consumer; the key is in this response only.
#[utoipa::path(post, path = "/api/v1/consumers/{name}/keys", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses(
        (status = 201, description = "The new key (shown once)", body = NewKey),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such consumer", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Path(consumer): Path<String>,
) -> Result<Response, Problem> {
    let id = format!("key_{}", random_hex::<8>()?);
    let key = format!("{KEY_PREFIX}{}", random_hex::<32>()?);
    let sha256 = hex(&Sha256::digest(key.as_bytes()));
    let revision = state
        .store
        .apply(
            vec![Change::CreateKey {
                consumer: consumer.clone(),
                id: id.clone(),
                sha256,
            }],
            state.actor(),
        )
        .await?;
    let created = NewKey {
        id,
        key,
        consumer,
        created_at: revision.time,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The ids of a consumer's keys (never the keys).
#[utoipa::path(get, path = "/api/v1/consumers/{name}/keys", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Key ids, oldest first", body = [KeyInfo]),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such consumer", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    Path(consumer): Path<String>,
) -> Result<Json<Vec<KeyInfo>>, Problem> {
    if state.store.get(Kind::Consumer, &consumer).await?.is_none() {
        return Err(Problem::not_found(format!(
            "consumer {consumer:?} not found"
        )));
    }
    let keys = state.store.keys(Some(&consumer)).await?;
    Ok(Json(keys.iter().map(info).collect()))
}

/// Revoke a key: every proxy stops accepting it within the propagation time.
#[utoipa::path(delete, path = "/api/v1/consumers/{name}/keys/{id}", tag = "consumers",
    params(
        ("name" = String, Path, description = "Consumer name"),
        ("id" = String, Path, description = "Key id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such consumer or key", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<ApiState>,
    Path((consumer, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    state
        .store
        .apply(vec![Change::RevokeKey { consumer, id }], state.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn info(key: &ApiKey) -> KeyInfo {
    KeyInfo {
        id: key.id.clone(),
        created_at: rfc3339_ms(key.created_at_ms),
    }
}

/// `N` random bytes from the OS, as lowercase hex.
fn random_hex<const N: usize>() -> Result<String, Problem> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| Problem::internal(&error))?;
    Ok(hex(&bytes))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
