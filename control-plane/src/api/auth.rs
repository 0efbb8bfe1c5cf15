//! Bearer-token authentication of the admin API.
//!
//! Only the SHA-256 of the admin token is held; a presented token is hashed and compared in
//! constant time. With no token configured the API is open (the control plane then refuses a
//! non-loopback admin address at start-up). Roles (`viewer`) are not implemented yet: the one
//! token has full rights.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::problem::Problem;
use crate::credentials;

/// Middleware: lets the request through when no token is configured or the bearer token
/// matches; answers 401 otherwise.
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token_sha256 else {
        return next.run(request).await;
    };
    match bearer(request.headers()) {
        None => Problem::unauthorized("a bearer token is required (Authorization: Bearer <token>)")
            .into_response(),
        Some(token) if credentials::matches(token, &expected) => next.run(request).await,
        Some(_) => Problem::unauthorized("invalid token").into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    credentials::bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn reads_the_bearer_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert_eq!(bearer(&headers), Some("s3cret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert_eq!(bearer(&headers), None);
    }
}
