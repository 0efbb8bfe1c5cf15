//! Bearer tokens: the admin token of the REST API and the bootstrap token proxies present on
//! the xDS and report streams. Only a SHA-256 of each is held; a presented token is hashed and
//! compared in constant time, and tokens are never logged.

use sha2::{Digest, Sha256};

/// The SHA-256 of a configured token.
pub type TokenDigest = [u8; 32];

/// Hashes a configured token.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization` value `Bearer <token>` (scheme case-insensitive).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether SHA-256(`token`) equals `expected`, comparing every byte whatever the first
/// difference.
pub fn matches(token: &str, expected: &TokenDigest) -> bool {
    let presented = digest(token);
    let diff = presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// A tonic interceptor admitting only streams that carry `authorization: Bearer <token>`
/// matching `expected`; everything passes when no token is configured.
pub fn grpc_interceptor(
    expected: Option<TokenDigest>,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        let Some(expected) = expected.as_ref() else {
            return Ok(request);
        };
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        match token {
            Some(token) if matches(token, expected) => Ok(request),
            Some(_) => Err(tonic::Status::unauthenticated("invalid proxy token")),
            None => Err(tonic::Status::unauthenticated(
                "a proxy token is required (authorization: Bearer <token>)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_compares_digests() {
        assert_eq!(bearer("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer("Bearer  s3cret "), Some("s3cret"));
        assert_eq!(bearer("Basic s3cret"), None);
        assert_eq!(bearer("Bearer "), None);
        let expected = digest("s3cret");
        assert!(matches("s3cret", &expected));
        assert!(!matches("s3cre", &expected));
    }

    #[test]
    fn interceptor_admits_only_the_token() {
        let open = grpc_interceptor(None);
        assert!(open(tonic::Request::new(())).is_ok());
        let guarded = grpc_interceptor(Some(digest("t0k")));
        assert_eq!(
            guarded(tonic::Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(guarded(request).is_err());
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer t0k".parse().unwrap());
        assert!(guarded(request).is_ok());
    }
}
