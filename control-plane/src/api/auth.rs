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
use sha2::{Digest, Sha256};

use super::ApiState;
use super::problem::Problem;

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
        Some(token) if digest_matches(token, &expected) => next.run(request).await,
        Some(_) => Problem::unauthorized("invalid token").into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether SHA-256(`token`) equals `expected`, comparing every byte whatever the first
/// difference.
fn digest_matches(token: &str, expected: &[u8; 32]) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let diff = digest
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn parses_bearer_and_compares_digests() {
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
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert!(digest_matches("s3cret", &expected));
        assert!(!digest_matches("s3cre", &expected));
    }
}
