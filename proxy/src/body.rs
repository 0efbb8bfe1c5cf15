//! The one body type every proxy response uses, so upstream bodies stream through untouched and
//! locally generated bodies (errors, direct responses) fit the same `Response` type.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// A streamed or in-memory body.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// An in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
