//! RFC 9457 problem details: the one error type of every admin API handler, and the single
//! mapping from store and validation errors to HTTP statuses.
//!
//! Internal errors are logged here and answered with a generic detail: database text never
//! reaches a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{FieldError, Reference};
use crate::store::StoreError;

/// The class of a problem, serialised as its URN (`urn:switchyard:problem:invalid-input`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum ProblemType {
    /// Invalid fields, malformed JSON or unknown references (400).
    #[serde(rename = "urn:switchyard:problem:invalid-input")]
    InvalidInput,
    /// No such resource, kind or path (404).
    #[serde(rename = "urn:switchyard:problem:not-found")]
    NotFound,
    /// Missing or wrong bearer token (401).
    #[serde(rename = "urn:switchyard:problem:unauthorized")]
    Unauthorized,
    /// A bug or a database fault (500); details are in the log.
    #[serde(rename = "urn:switchyard:problem:internal")]
    Internal,
    /// `POST` of an existing name (409).
    #[serde(rename = "urn:switchyard:problem:already-exists")]
    AlreadyExists,
    /// `If-Match` does not match the current version (412).
    #[serde(rename = "urn:switchyard:problem:version-mismatch")]
    VersionMismatch,
    /// Delete of a resource that others refer to (409).
    #[serde(rename = "urn:switchyard:problem:in-use")]
    InUse,
    /// The database is unreachable (503).
    #[serde(rename = "urn:switchyard:problem:unavailable")]
    Unavailable,
    /// The body is not JSON (415).
    #[serde(rename = "urn:switchyard:problem:unsupported-media-type")]
    UnsupportedMediaType,
    /// The body is over the limit (413).
    #[serde(rename = "urn:switchyard:problem:too-large")]
    TooLarge,
    /// The body could not be read.
    #[serde(rename = "urn:switchyard:problem:bad-body")]
    BadBody,
    /// The method does not apply to the path (405).
    #[serde(rename = "urn:switchyard:problem:method-not-allowed")]
    MethodNotAllowed,
}

/// An error response (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the problem class.
    #[serde(rename = "type")]
    pub kind: ProblemType,
    /// Short summary of the class (the HTTP reason phrase).
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Every invalid field (400); empty otherwise.
    pub errors: Vec<FieldError>,
    /// `kind/name` of each resource that refers to the one a delete targeted (409).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

impl Problem {
    /// A problem of `status` and class `kind`, with a detail.
    pub fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            used_by: Vec::new(),
        }
    }

    /// 400 naming every invalid field.
    pub fn invalid(errors: Vec<FieldError>) -> Problem {
        let detail = match errors.as_slice() {
            [one] if one.field.is_empty() => one.message.clone(),
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} invalid fields", many.len()),
        };
        Problem {
            errors,
            ..Problem::new(StatusCode::BAD_REQUEST, ProblemType::InvalidInput, detail)
        }
    }

    /// 400 for one invalid field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Problem {
        Problem::invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, ProblemType::NotFound, detail)
    }

    /// 401, answered with a `WWW-Authenticate` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, ProblemType::Unauthorized, detail)
    }

    /// 500 with a generic detail; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "admin api internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Internal,
            "internal error; see the control-plane log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The field error of a reference to a resource that does not exist.
pub fn unknown_reference(reference: Reference) -> FieldError {
    FieldError {
        message: format!("unknown {} {:?}", reference.kind.singular(), reference.name),
        field: reference.field,
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound { .. }
            | StoreError::RevisionNotFound(_)
            | StoreError::KeyNotFound { .. } => Problem::not_found(e.to_string()),
            StoreError::AlreadyExists { .. } => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::AlreadyExists,
                e.to_string(),
            ),
            StoreError::VersionMismatch {
                kind,
                ref name,
                expected,
                current,
            } => {
                let detail = match current {
                    Some(v) => format!(
                        "{} {name:?} is at version {v}, not {expected}",
                        kind.singular()
                    ),
                    None => format!("{} {name:?} does not exist", kind.singular()),
                };
                Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    ProblemType::VersionMismatch,
                    detail,
                )
            }
            StoreError::InvalidInput(message) => Problem::invalid_field("", message),
            StoreError::MissingReferences(refs) => {
                Problem::invalid(refs.into_iter().map(unknown_reference).collect())
            }
            StoreError::InUse {
                kind,
                name,
                used_by,
            } => Problem {
                detail: format!(
                    "{} {name:?} is used by {}",
                    kind.singular(),
                    used_by.join(", ")
                ),
                used_by,
                ..Problem::new(StatusCode::CONFLICT, ProblemType::InUse, "")
            },
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ProblemType::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            StoreError::Config(_) | StoreError::Internal(_) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"switchyard\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn store_errors_map_to_statuses() {
        let missing = StoreError::MissingReferences(vec![Reference {
            field: "weighted_clusters[1].cluster".into(),
            kind: Kind::Cluster,
            name: "x".into(),
        }]);
        let p = Problem::from(missing);
        assert_eq!(p.status, 400);
        assert_eq!(p.errors[0].field, "weighted_clusters[1].cluster");
        assert_eq!(p.errors[0].message, "unknown cluster \"x\"");
        let in_use = StoreError::InUse {
            kind: Kind::Cluster,
            name: "web".into(),
            used_by: vec!["routes/a".into()],
        };
        let p = Problem::from(in_use);
        assert_eq!(
            (p.status, p.detail.as_str()),
            (409, "cluster \"web\" is used by routes/a")
        );
        assert_eq!(
            Problem::from(StoreError::Unavailable("x".into())).status,
            503
        );
        let p = Problem::from(StoreError::Internal("secret sql".into()));
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret"));
    }
}
