//! `/api/v1/revisions`: the global history of config writes, the full config at any revision,
//! the difference between two revisions, and rollback (which restores an old config as a new
//! revision, never rewriting history).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::Problem;
use super::resources::render;
use crate::model::Kind;
use crate::model::diff::{self, Config, ResourceDiff};
use crate::store::Revision;

/// The default page size of the revision list.
const DEFAULT_LIMIT: i64 = 50;
/// The largest page of the revision list.
const MAX_LIMIT: i64 = 1000;

/// Paging of the revision list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many revisions (1–1000, default 50).
    limit: Option<i64>,
    /// Only revisions numbered below this (the last `number` of the previous page).
    before: Option<i64>,
}

/// A revision and the whole config right after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionDetail {
    /// The revision record.
    pub revision: Revision,
    /// Every resource at that revision, by plural kind (`clusters`, `routes`, …).
    #[schema(value_type = Object)]
    pub config: BTreeMap<&'static str, Vec<Value>>,
}

/// Revisions, newest first.
#[utoipa::path(get, path = "/api/v1/revisions", tag = "revisions", params(Page),
    responses(
        (status = 200, description = "Revisions, newest first", body = [Revision]),
        (status = 400, description = "Bad paging", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<Revision>>, Problem> {
    let Query(page) = page.map_err(|e| Problem::invalid_field("", e.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(Json(state.store.revisions(limit, page.before).await?))
}

/// One revision and the full config at it.
#[utoipa::path(get, path = "/api/v1/revisions/{n}", tag = "revisions",
    params(("n" = i64, Path, description = "Revision number")),
    responses(
        (status = 200, description = "The revision and its config", body = RevisionDetail),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such revision", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    Path(n): Path<String>,
) -> Result<Json<RevisionDetail>, Problem> {
    let n = revision_number(&n)?;
    let revision = state
        .store
        .revision(n)
        .await?
        .ok_or_else(|| Problem::not_found(format!("revision {n} not found")))?;
    let mut config: BTreeMap<&'static str, Vec<Value>> =
        Kind::ALL.iter().map(|k| (k.plural(), Vec::new())).collect();
    for resource in state.store.config_at(n).await? {
        config
            .entry(resource.kind.plural())
            .or_default()
            .push(render(&resource));
    }
    Ok(Json(RevisionDetail { revision, config }))
}

/// Which revision a diff is taken against.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Against {
    /// The earlier side (default `n - 1`; 0 is the empty config before the first revision).
    against: Option<i64>,
}

/// How the config at one revision differs from the config at another.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionDiff {
    /// The later side.
    pub revision: i64,
    /// The earlier side.
    pub against: i64,
    /// Each resource that differs, by kind and name.
    pub resources: Vec<ResourceDiff>,
}

/// The config at revision `n` compared with the config at `against`: per resource added,
/// removed or changed, with every changed field.
#[utoipa::path(get, path = "/api/v1/revisions/{n}/diff", tag = "revisions",
    params(("n" = i64, Path, description = "Revision number"), Against),
    responses(
        (status = 200, description = "What differs", body = RevisionDiff),
        (status = 400, description = "Bad `against`", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such revision", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn diff(
    State(state): State<ApiState>,
    Path(n): Path<String>,
    against: Result<Query<Against>, QueryRejection>,
) -> Result<Json<RevisionDiff>, Problem> {
    let n = revision_number(&n)?;
    let Query(against) = against.map_err(|e| Problem::invalid_field("against", e.body_text()))?;
    let against = against.against.unwrap_or(n - 1);
    if against < 0 {
        return Err(Problem::invalid_field(
            "against",
            "must be a revision number (0: the empty config)",
        ));
    }
    let config = |resources: Vec<crate::store::StoredResource>| -> Config {
        resources
            .into_iter()
            .map(|r| ((r.kind, r.name), r.spec))
            .collect()
    };
    let after = config(state.store.config_at(n).await?);
    let before = config(state.store.config_at(against).await?);
    Ok(Json(RevisionDiff {
        revision: n,
        against,
        resources: diff::diff(&before, &after),
    }))
}

/// Restore the config of revision `n` as a new revision.
#[utoipa::path(post, path = "/api/v1/revisions/{n}/rollback", tag = "revisions",
    params(("n" = i64, Path, description = "Revision to restore")),
    responses(
        (status = 201, description = "The new revision", body = Revision),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such revision", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "The restored config conflicts with a concurrent change",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rollback(
    State(state): State<ApiState>,
    Path(n): Path<String>,
) -> Result<Response, Problem> {
    let n = revision_number(&n)?;
    let revision = state.store.rollback(n, state.actor()).await?;
    Ok((StatusCode::CREATED, Json(revision)).into_response())
}

fn revision_number(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::not_found(format!("revision {text:?} not found")))
}
