//! Declarative config: `POST /api/v1/apply` makes the store hold a whole document
//! (`{"clusters": [...], "routes": [...], …}`, each item a resource with its `name`; JSON, or
//! YAML with `content-type: application/yaml`) in one revision, and `GET /api/v1/export`
//! returns that document (YAML when the client accepts `application/yaml`). Applying a
//! document validates every item first (a 400 names each bad field as `routes[2].match.path_prefix`, and each
//! reference to a resource neither the document nor the store holds), then writes only what
//! differs: the same document twice makes no second revision. `?prune=true` also deletes what
//! the document leaves out; `?dry_run=true` answers the diff and writes nothing. Updates are
//! conditional on the versions read, so a concurrent change makes the apply fail (409/412)
//! rather than be overwritten. Secrets never appear in an export: consumers' API keys are not
//! part of their spec (a consumer kept by an apply keeps its keys).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::{Problem, ProblemType, unknown_reference};
use super::resources::{is_json, media_type, read_bytes};
use crate::model::diff::{self, Config, ResourceDiff};
use crate::model::{self, FieldError, Kind, Reference};
use crate::store::{Change, Expect, Revision};

/// The largest document accepted, in bytes (a whole fleet's config).
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;
/// The YAML media type (`application/x-yaml` and `text/yaml` are read as well).
const YAML: &str = "application/yaml";

/// How to apply a document.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyOptions {
    /// Answer the diff and write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Also delete every resource the document leaves out.
    #[serde(default)]
    prune: bool,
}

/// What an apply did (or, with `dry_run`, would do).
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The revision written; `null` when nothing differed or on a dry run.
    pub revision: Option<Revision>,
    /// Each resource that differs between the store and the document.
    pub resources: Vec<ResourceDiff>,
}

/// A validated resource of the document.
struct Item {
    kind: Kind,
    name: String,
    spec: Value,
    refs: Vec<Reference>,
    /// `routes[2]`: the prefix of its field errors.
    at: String,
}

/// Make the store hold the config of a document, as one revision.
#[utoipa::path(post, path = "/api/v1/apply", tag = "revisions", params(ApplyOptions),
    request_body(content = Object, description = "`{\"clusters\": [...], \"routes\": [...], …}` \
        as JSON, or YAML with `content-type: application/yaml`"),
    responses(
        (status = 200, description = "What differed, and the revision written", body = Applied),
        (status = 400, description = "Invalid items, every field named", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "A resource created concurrently, or still in use",
            body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "A resource changed concurrently", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn apply(
    State(state): State<ApiState>,
    options: Result<Query<ApplyOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Applied>, Problem> {
    let Query(options) = options.map_err(|e| Problem::invalid_field("", e.body_text()))?;
    let document = read_document(&headers, body)?;
    let items = parse(&document)?;
    let current = state.store.list_all().await?;
    let versions: BTreeMap<(Kind, String), i64> = current
        .iter()
        .map(|r| ((r.kind, r.name.clone()), r.version))
        .collect();
    check_references(&items, &versions, options.prune)?;

    let before: Config = current
        .into_iter()
        .map(|r| ((r.kind, r.name), r.spec))
        .collect();
    let mut after = if options.prune {
        Config::new()
    } else {
        before.clone()
    };
    let mut changes = Vec::new();
    for item in items {
        let key = (item.kind, item.name.clone());
        if before.get(&key) != Some(&item.spec) {
            changes.push(Change::Put {
                kind: item.kind,
                name: item.name,
                spec: item.spec.clone(),
                refs: item.refs,
                expect: versions
                    .get(&key)
                    .map_or(Expect::Absent, |v| Expect::Version(*v)),
            });
        }
        after.insert(key, item.spec);
    }
    for ((kind, name), version) in &versions {
        if !after.contains_key(&(*kind, name.clone())) {
            changes.push(Change::Delete {
                kind: *kind,
                name: name.clone(),
                expect: Expect::Version(*version),
            });
        }
    }
    let resources = diff::diff(&before, &after);
    let revision = if options.dry_run || changes.is_empty() {
        None
    } else {
        Some(state.store.apply(changes, state.actor()).await?)
    };
    Ok(Json(Applied {
        dry_run: options.dry_run,
        revision,
        resources,
    }))
}

/// The whole config as a document for `POST /api/v1/apply`.
#[utoipa::path(get, path = "/api/v1/export", tag = "revisions",
    responses(
        (status = 200, description = "Every resource by plural kind, without server-set fields \
            (YAML when `accept: application/yaml`)", body = Object),
        (status = 401, description = "Missing or wrong token", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut document: BTreeMap<&'static str, Vec<Value>> =
        Kind::ALL.iter().map(|k| (k.plural(), Vec::new())).collect();
    for resource in state.store.list_all().await? {
        let mut object = Map::new();
        object.insert("name".into(), resource.name.into());
        if let Value::Object(spec) = resource.spec {
            object.extend(spec);
        }
        document
            .entry(resource.kind.plural())
            .or_default()
            .push(Value::Object(object));
    }
    if !accepts_yaml(&headers) {
        return Ok(Json(document).into_response());
    }
    let yaml = yaml_serde::to_string(&document).map_err(|e| Problem::internal(&e))?;
    let mut response = yaml.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(YAML));
    Ok(response)
}

/// The document of a JSON or YAML body: 415 for another type, 413 above
/// [`MAX_DOCUMENT_BYTES`], 400 for a malformed one (with the parser's message).
fn read_document(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Problem> {
    let essence = media_type(headers);
    let yaml = matches!(essence.as_str(), YAML | "application/x-yaml" | "text/yaml");
    if !yaml && !is_json(&essence) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::UnsupportedMediaType,
            format!(
                "the document must be JSON (application/json) or YAML ({YAML}), not {essence:?}"
            ),
        ));
    }
    let bytes = read_bytes(body, "16 MiB")?;
    if yaml {
        yaml_serde::from_slice(&bytes)
            .map_err(|e| Problem::invalid_field("", format!("malformed YAML: {e}")))
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| Problem::invalid_field("", format!("malformed JSON: {e}")))
    }
}

/// Whether `accept` names YAML before (or without) JSON.
fn accepts_yaml(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for range in accept.split(',') {
        let essence = range
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(essence.as_str(), YAML | "application/x-yaml" | "text/yaml") {
            return true;
        }
        if is_json(&essence) {
            return false;
        }
    }
    false
}

/// Validates every item of the document; a 400 names every bad field of every item.
fn parse(document: &Value) -> Result<Vec<Item>, Problem> {
    let Value::Object(kinds) = document else {
        return Err(Problem::invalid_field(
            "",
            "the document must be a JSON object of resource lists by kind",
        ));
    };
    let mut errors = Vec::new();
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for (plural, list) in kinds {
        let Some(kind) = Kind::from_plural(plural) else {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.plural()).collect();
            errors.push(FieldError {
                field: plural.clone(),
                message: format!("unknown resource kind (one of {})", known.join(", ")),
            });
            continue;
        };
        let Value::Array(list) = list else {
            errors.push(FieldError {
                field: plural.clone(),
                message: "must be a list of resources".into(),
            });
            continue;
        };
        for (i, body) in list.iter().enumerate() {
            let at = format!("{plural}[{i}]");
            let prefix = |e: FieldError| FieldError {
                field: if e.field.is_empty() {
                    at.clone()
                } else {
                    format!("{at}.{}", e.field)
                },
                message: e.message,
            };
            match model::validate(kind, None, body) {
                Ok(valid) if !seen.insert((kind, valid.name.clone())) => errors.push(FieldError {
                    field: format!("{at}.name"),
                    message: format!("{:?} appears twice in {plural}", valid.name),
                }),
                Ok(valid) => items.push(Item {
                    kind,
                    name: valid.name,
                    spec: valid.spec,
                    refs: valid.refs,
                    at,
                }),
                Err(invalid) => errors.extend(invalid.errors.into_iter().map(prefix)),
            }
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(Problem::invalid(errors))
    }
}

/// Every reference must name a resource of the document, or (without `prune`) one the store
/// holds; the write checks again inside its transaction.
fn check_references(
    items: &[Item],
    stored: &BTreeMap<(Kind, String), i64>,
    prune: bool,
) -> Result<(), Problem> {
    let documented: BTreeSet<(Kind, &str)> =
        items.iter().map(|i| (i.kind, i.name.as_str())).collect();
    let mut errors = Vec::new();
    for item in items {
        for reference in &item.refs {
            let target = (reference.kind, reference.name.clone());
            if !documented.contains(&(reference.kind, reference.name.as_str()))
                && (prune || !stored.contains_key(&target))
            {
                let mut error = unknown_reference(reference.clone());
                error.field = format!("{}.{}", item.at, error.field);
                errors.push(error);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors))
    }
}
