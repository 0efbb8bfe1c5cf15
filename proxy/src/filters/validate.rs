//! Request validation: `required_headers` (400 naming the first missing one) and
//! `max_body_bytes` (413). The size limit is enforced twice: at once when `content-length`
//! already says too much, and while streaming — [`RequestBody`] counts bytes as they pass and
//! fails the upload the moment the count exceeds the limit, so nothing is buffered to find out.
//!
//! Method and header *matching* is the router's (a request that does not match takes no route).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Request, Response, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::{BuildContext, Outcome, Policy, RequestContext};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::model::RouteSpec;

/// The compiled validation policy of one route.
#[derive(Debug)]
pub struct Validate {
    max_body_bytes: Option<u64>,
    required_headers: Box<[HeaderName]>,
}

impl Validate {
    /// `None` when the route validates nothing.
    pub fn new(max_body_bytes: Option<u64>, required_headers: &[HeaderName]) -> Option<Self> {
        if max_body_bytes.is_none() && required_headers.is_empty() {
            return None;
        }
        Some(Self {
            max_body_bytes,
            required_headers: required_headers.into(),
        })
    }

    /// Checks the head; returns the streaming limit to put on the body, if any.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<u64>, ProxyError> {
        if let Some(missing) = self
            .required_headers
            .iter()
            .find(|name| !headers.contains_key(*name))
        {
            return Err(ProxyError::MissingHeader(missing.as_str().to_owned()));
        }
        let Some(limit) = self.max_body_bytes else {
            return Ok(None);
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        Ok(Some(limit))
    }
}

/// The request body on a route with filters: the client's body, counted against an optional
/// limit. When the limit is crossed the body fails and [`LimitHit`] remembers it, so the
/// chain answers 413 instead of the upstream error the failed upload causes.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    limit: Option<(u64, LimitHit)>,
    seen: u64,
}

/// Set once a [`RequestBody`] went over its limit.
#[derive(Debug, Clone, Default)]
pub struct LimitHit(Arc<AtomicBool>);

impl LimitHit {
    pub fn is_hit(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The error a [`RequestBody`] fails with. (A concrete type rather than a `BoxError`, so the
/// upstream exchange's `Into<BoxError>` bound is a real conversion.)
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Client(#[from] hyper::Error),
}

impl RequestBody {
    /// The client's body, unlimited.
    pub fn new(inner: Incoming) -> Self {
        Self {
            inner,
            limit: None,
            seen: 0,
        }
    }

    /// Fails the body once more than `limit` bytes have passed; the returned flag tells.
    pub fn limit(&mut self, limit: u64) -> LimitHit {
        let hit = LimitHit::default();
        self.limit = Some((limit, hit.clone()));
        hit
    }
}

/// What one request keeps: the streaming limit the head check set, and whether it was hit.
#[derive(Debug, Default)]
pub struct Limit {
    bytes: Option<u64>,
    hit: Option<LimitHit>,
}

impl Policy for Validate {
    type State = Limit;

    fn build(route: &RouteSpec, _: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        let policies = &route.policies;
        Validate::new(policies.max_body_bytes, &policies.required_headers)
    }

    async fn request(
        &self,
        parts: &mut Parts,
        _: &mut RequestContext<'_>,
        limit: &mut Limit,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        limit.bytes = self.check(&parts.headers)?;
        Ok(None)
    }

    fn upstream_request(&self, request: &mut Request<RequestBody>, limit: &mut Limit) {
        if let Some(bytes) = limit.bytes {
            limit.hit = Some(request.body_mut().limit(bytes));
        }
    }

    async fn response(&self, outcome: Outcome, limit: &mut Limit) -> Outcome {
        match (&limit.hit, limit.bytes) {
            // The upload was cut at the limit; whatever the upstream said, the answer is 413.
            (Some(hit), Some(bytes)) if hit.is_hit() => Err(ProxyError::BodyTooLarge(bytes)),
            _ => outcome,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some((limit, hit)), Some(data)) = (&this.limit, frame.data_ref()) {
            this.seen += data.len() as u64;
            if this.seen > *limit {
                hit.0.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(RequestBodyError::TooLarge(*limit))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn required_headers_and_declared_length() {
        let validate = Validate::new(Some(10), &[HeaderName::from_static("x-tenant")]).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            validate.check(&headers).unwrap_err(),
            ProxyError::MissingHeader("x-tenant".into())
        );
        headers.insert("x-tenant", HeaderValue::from_static("t1"));
        assert_eq!(validate.check(&headers).unwrap(), Some(10));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(
            validate.check(&headers).unwrap_err(),
            ProxyError::BodyTooLarge(10)
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(validate.check(&headers).is_ok());
        assert!(Validate::new(None, &[]).is_none());
    }
}
