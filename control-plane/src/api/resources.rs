//! The CRUD logic shared by every config kind: body parsing (content type, size, JSON),
//! validation, `If-Match`, the store call and the response (`ETag`, `Location`, status).
//!
//! The per-kind modules are thin: [`resource_handlers!`] gives each kind its own handlers so
//! the OpenAPI document names each kind's paths and schema.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiState;
use super::problem::{Problem, ProblemType, unknown_reference};
use crate::model::{self, Invalid, Kind};
use crate::store::{Expect, StoredResource};
use crate::timestamp::rfc3339_ms;

/// A resource as the API shows it: the spec plus the server-set fields.
#[derive(Serialize, ToSchema)]
pub struct Resource<T> {
    /// Unique per kind: 1–63 chars of `a-z 0-9 - _ .`.
    pub name: String,
    /// Revision of the last change; send it back in `If-Match`.
    pub version: i64,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// The spec.
    #[serde(flatten)]
    pub spec: T,
}

/// A `POST` body: the spec plus its name.
#[derive(Serialize, ToSchema)]
pub struct NewResource<T> {
    /// Unique per kind: 1–63 chars of `a-z 0-9 - _ .`.
    pub name: String,
    /// The spec.
    #[serde(flatten)]
    pub spec: T,
}

/// The JSON of a stored resource.
pub fn render(resource: &StoredResource) -> Value {
    let mut object = match &resource.spec {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    object.insert("name".into(), resource.name.clone().into());
    object.insert("version".into(), resource.version.into());
    object.insert(
        "updated_at".into(),
        rfc3339_ms(resource.updated_at_ms).into(),
    );
    Value::Object(object)
}

fn respond(status: StatusCode, resource: &StoredResource) -> Response {
    let mut response = (status, Json(render(resource))).into_response();
    let etag = HeaderValue::from_str(&format!("\"{}\"", resource.version)).expect("digits");
    response.headers_mut().insert(header::ETAG, etag);
    if status == StatusCode::CREATED {
        let location = format!("/api/v1/{}/{}", resource.kind.plural(), resource.name);
        if let Ok(location) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

/// `GET /api/v1/{kind}`.
pub async fn list(state: &ApiState, kind: Kind) -> Result<Response, Problem> {
    let resources = state.store.list(kind).await?;
    let items: Vec<Value> = resources.iter().map(render).collect();
    Ok(Json(items).into_response())
}

/// `GET /api/v1/{kind}/{name}`.
pub async fn get(state: &ApiState, kind: Kind, name: &str) -> Result<Response, Problem> {
    match state.store.get(kind, name).await? {
        Some(resource) => Ok(respond(StatusCode::OK, &resource)),
        None => Err(not_found(kind, name)),
    }
}

/// `POST /api/v1/{kind}`: create, 409 if it exists.
pub async fn create(
    state: &ApiState,
    kind: Kind,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = read_json(headers, body)?;
    let valid = validate(state, kind, None, &body).await?;
    let stored = state
        .store
        .put(
            kind,
            &valid.name,
            valid.spec,
            valid.refs,
            Expect::Absent,
            state.actor(),
        )
        .await?;
    Ok(respond(StatusCode::CREATED, &stored.resource))
}

/// `PUT /api/v1/{kind}/{name}`: create (201) or replace (200); `If-Match` makes it
/// conditional on the current version.
pub async fn put(
    state: &ApiState,
    kind: Kind,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = read_json(headers, body)?;
    let valid = validate(state, kind, Some(name), &body).await?;
    let actor = state.actor();
    let store = &state.store;
    let expect = if_match(state, kind, name, headers)
        .await?
        .unwrap_or(Expect::Any);
    // The store says, from inside its transaction, whether this created the resource.
    let written = store
        .put(kind, name, valid.spec, valid.refs, expect, actor)
        .await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, &written.resource))
}

/// `DELETE /api/v1/{kind}/{name}`: 204; 409 while other resources refer to it.
pub async fn delete(
    state: &ApiState,
    kind: Kind,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let expect = if_match(state, kind, name, headers)
        .await?
        .unwrap_or(Expect::Any);
    state
        .store
        .delete(kind, name, expect, state.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Validates a body; a 400 names every invalid field and, after them, every reference to a
/// resource that does not exist. A valid body's references are checked by the write itself,
/// inside its transaction.
async fn validate(
    state: &ApiState,
    kind: Kind,
    path_name: Option<&str>,
    body: &Value,
) -> Result<model::Validated, Problem> {
    let Invalid { mut errors, refs } = match model::validate(kind, path_name, body) {
        Ok(valid) => return Ok(valid),
        Err(invalid) => invalid,
    };
    match state.store.missing_references(&refs).await {
        Ok(missing) => errors.extend(missing.into_iter().map(unknown_reference)),
        // The body is refused either way: answer its own errors rather than a 503.
        Err(error) => tracing::warn!(%error, "cannot check the references of an invalid body"),
    }
    Err(Problem::invalid(errors))
}

fn not_found(kind: Kind, name: &str) -> Problem {
    Problem::not_found(format!("{} {name:?} not found", kind.singular()))
}

/// The precondition of an `If-Match` header: `"7"` or `7` (a version), or `*` (whatever
/// version exists now). `None` without the header.
async fn if_match(
    state: &ApiState,
    kind: Kind,
    name: &str,
    headers: &HeaderMap,
) -> Result<Option<Expect>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return match state.store.get(kind, name).await? {
            Some(current) => Ok(Some(Expect::Version(current.version))),
            None => Err(Problem::new(
                StatusCode::PRECONDITION_FAILED,
                ProblemType::VersionMismatch,
                format!("{} {name:?} does not exist", kind.singular()),
            )),
        };
    }
    parse_version(text)
        .map(|v| Some(Expect::Version(v)))
        .ok_or_else(|| {
            Problem::invalid_field(
                "If-Match",
                "must be a resource version, e.g. \"7\" (from the ETag or the version field)",
            )
        })
}

/// A version from an ETag-like value: `7`, `"7"` or `W/"7"`.
fn parse_version(text: &str) -> Option<i64> {
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse().ok().filter(|v| *v > 0)
}

/// The body as JSON: 415 unless the content type is JSON, 413 above the body limit, 400 for
/// malformed JSON (with serde's message).
pub fn read_json(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Problem> {
    if !is_json(&media_type(headers)) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::UnsupportedMediaType,
            format!(
                "the body must be JSON (Content-Type: application/json), not {:?}",
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            ),
        ));
    }
    let bytes = read_bytes(body, "1 MiB")?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid_field("", format!("malformed JSON: {e}")))
}

/// The essence of the request's media type, lowercased (`application/json`); empty without one.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or an `application/…+json` type.
pub fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body's bytes: 413 above the route's limit (`limit` says it in words), 400 for a body
/// that could not be read.
pub fn read_bytes(body: Result<Bytes, BytesRejection>, limit: &str) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                status,
                ProblemType::TooLarge,
                format!("the body is larger than {limit}"),
            )
        } else {
            Problem::new(status, ProblemType::BadBody, rejection.body_text())
        }
    })
}

/// The five handlers of one kind, with their OpenAPI description, and its routes.
macro_rules! resource_handlers {
    ($kind:expr, $model:ident, $tag:tt, $list_path:tt, $item_path:tt) => {
        use axum::body::Bytes;
        use axum::extract::rejection::BytesRejection;
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        use axum::response::Response;
        use axum::routing::get;

        use super::problem::Problem;
        use super::resources::{self, NewResource, Resource};
        use super::ApiState;

        /// This kind's routes.
        pub fn routes() -> axum::Router<ApiState> {
            axum::Router::new()
                .route($list_path, get(list).post(create))
                .route($item_path, get(read).put(put).delete(delete))
        }

        /// List every resource of this kind, by name.
        #[utoipa::path(get, path = $list_path, tag = $tag,
            responses(
                (status = 200, description = "All resources, by name", body = [Resource<$model>]),
                (status = 401, description = "Missing or wrong token", body = Problem,
                    content_type = "application/problem+json"),
                (status = 503, description = "Database unavailable", body = Problem,
                    content_type = "application/problem+json"),
            ))]
        pub async fn list(State(state): State<ApiState>) -> Result<Response, Problem> {
            resources::list(&state, $kind).await
        }

        /// Create a resource; 409 if one of that name exists.
        #[utoipa::path(post, path = $list_path, tag = $tag,
            request_body(content = NewResource<$model>, content_type = "application/json"),
            responses(
                (status = 201, description = "Created", body = Resource<$model>,
                    headers(("ETag" = String, description = "The version, quoted"))),
                (status = 400, description = "Invalid fields (each named) or unknown references",
                    body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "Missing or wrong token", body = Problem,
                    content_type = "application/problem+json"),
                (status = 409, description = "Exists", body = Problem,
                    content_type = "application/problem+json"),
                (status = 413, description = "Body over 1 MiB", body = Problem,
                    content_type = "application/problem+json"),
                (status = 415, description = "Not JSON", body = Problem,
                    content_type = "application/problem+json"),
                (status = 503, description = "Database unavailable", body = Problem,
                    content_type = "application/problem+json"),
            ))]
        pub async fn create(
            State(state): State<ApiState>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Response, Problem> {
            resources::create(&state, $kind, &headers, body).await
        }

        /// Read one resource.
        #[utoipa::path(get, path = $item_path, tag = $tag,
            params(("name" = String, Path, description = "Resource name")),
            responses(
                (status = 200, description = "The resource", body = Resource<$model>,
                    headers(("ETag" = String, description = "The version, quoted"))),
                (status = 401, description = "Missing or wrong token", body = Problem,
                    content_type = "application/problem+json"),
                (status = 404, description = "No such resource", body = Problem,
                    content_type = "application/problem+json"),
            ))]
        pub async fn read(
            State(state): State<ApiState>,
            Path(name): Path<String>,
        ) -> Result<Response, Problem> {
            resources::get(&state, $kind, &name).await
        }

        /// Create or replace a resource. With `If-Match: <version>` the write only happens
        /// while the resource is at that version (412 otherwise). A `name` in the body must
        /// equal the one in the path; `version` and `updated_at` in the body are ignored.
        #[utoipa::path(put, path = $item_path, tag = $tag,
            params(
                ("name" = String, Path, description = "Resource name"),
                ("If-Match" = Option<String>, Header, description = "Expected current version"),
            ),
            request_body(content = $model, content_type = "application/json"),
            responses(
                (status = 200, description = "Replaced", body = Resource<$model>),
                (status = 201, description = "Created", body = Resource<$model>),
                (status = 400, description = "Invalid fields (each named) or unknown references",
                    body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "Missing or wrong token", body = Problem,
                    content_type = "application/problem+json"),
                (status = 412, description = "Version mismatch", body = Problem,
                    content_type = "application/problem+json"),
                (status = 413, description = "Body over 1 MiB", body = Problem,
                    content_type = "application/problem+json"),
                (status = 415, description = "Not JSON", body = Problem,
                    content_type = "application/problem+json"),
                (status = 503, description = "Database unavailable", body = Problem,
                    content_type = "application/problem+json"),
            ))]
        pub async fn put(
            State(state): State<ApiState>,
            Path(name): Path<String>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Response, Problem> {
            resources::put(&state, $kind, &name, &headers, body).await
        }

        /// Delete a resource; 409 while other resources refer to it.
        #[utoipa::path(delete, path = $item_path, tag = $tag,
            params(
                ("name" = String, Path, description = "Resource name"),
                ("If-Match" = Option<String>, Header, description = "Expected current version"),
            ),
            responses(
                (status = 204, description = "Deleted"),
                (status = 401, description = "Missing or wrong token", body = Problem,
                    content_type = "application/problem+json"),
                (status = 404, description = "No such resource", body = Problem,
                    content_type = "application/problem+json"),
                (status = 409, description = "Referenced by other resources (see used_by)",
                    body = Problem, content_type = "application/problem+json"),
                (status = 412, description = "Version mismatch", body = Problem,
                    content_type = "application/problem+json"),
            ))]
        pub async fn delete(
            State(state): State<ApiState>,
            Path(name): Path<String>,
            headers: HeaderMap,
        ) -> Result<Response, Problem> {
            resources::delete(&state, $kind, &name, &headers).await
        }
    };
}

pub(crate) use resource_handlers;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("7"), Some(7));
        assert_eq!(parse_version("\"7\""), Some(7));
        assert_eq!(parse_version("W/\"7\""), Some(7));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version("0"), None);
    }

    #[test]
    fn renders_spec_with_server_fields() {
        let resource = StoredResource {
            kind: Kind::Cluster,
            name: "web".into(),
            version: 3,
            updated_at_ms: 0,
            spec: serde_json::json!({"lb_policy": "random"}),
        };
        assert_eq!(
            render(&resource),
            serde_json::json!({"name": "web", "version": 3,
                "updated_at": "1970-01-01T00:00:00.000Z", "lb_policy": "random"})
        );
    }
}
