//! The one body type every proxy response uses, so upstream bodies stream through untouched and
//! locally generated bodies (errors, direct responses, transformed or cached bodies) fit the
//! same `Response` type.
//!
//! The error is boxed rather than `hyper::Error` so body wrappers (the request-size limit, the
//! cache tee) can fail with their own errors.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or in-memory body.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// Why a body failed. A concrete type rather than a bare [`BoxError`], so hyper's
/// `Into<BoxError>` bounds are a real conversion (an identity conversion of a boxed trait
/// object trips the compiler's `Send` check of the request future).
#[derive(Debug)]
pub struct BodyError(BoxError);

impl BodyError {
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body (zero-sized: boxing it allocates nothing).
pub fn empty() -> ProxyBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}
