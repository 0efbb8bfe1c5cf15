//! Sending requests upstream over the endpoints' connection pools ([`crate::endpoint::pool`]):
//! the request head rewrite, and the response body that hands its connection back.
//! [`exchange`] runs one request through the cluster (circuit breaker, balancing, retries,
//! timeouts, outlier detection); [`retry`] holds the retry rules.
//!
//! Bodies stream both ways; only a small request body on a route with retries is buffered (see
//! [`retry`]). A response body carries the request's guards ([`GuardedBody`]) so in-flight
//! counts and connection slots are released when it ends, not at response headers, and its
//! connection goes back to the endpoint's pool only once the body has been read to its end.

pub mod exchange;
pub mod retry;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Uri, Version, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::body::BodyError;
use crate::endpoint::InFlightGuard;
use crate::endpoint::pool::Pooled;
use crate::forwarding::{self, ClientInfo};

/// Rewrites a client request's head for the upstream once, whatever the endpoint: `Host` kept
/// from the client (`:authority` for HTTP/2), HTTP/1.1, forwarding headers, request id.
pub fn prepare(parts: &mut http::request::Parts, client: &ClientInfo, request_id: &HeaderValue) {
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    parts.version = Version::HTTP_11;
    origin_form(parts);
    forwarding::prepare_upstream_request(&mut parts.headers, client, request_id);
}

/// Makes the request URI origin-form (`/path?query`), what an HTTP/1.1 origin expects; a
/// client's absolute-form target has already given `Host` its value in [`prepare`].
fn origin_form(parts: &mut http::request::Parts) {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
    }
}

/// An upstream response body that holds its attempt (the endpoint's in-flight count) and
/// `guard` until the body is done (or dropped), and returns its connection to that endpoint's
/// pool once the body has been read to its end.
#[derive(Debug)]
pub struct GuardedBody<G> {
    inner: Incoming,
    connection: Option<Pooled>,
    attempt: InFlightGuard,
    _guard: G,
}

impl<G> GuardedBody<G> {
    pub fn new(inner: Incoming, connection: Pooled, attempt: InFlightGuard, guard: G) -> Self {
        let mut body = Self {
            inner,
            connection: Some(connection),
            attempt,
            _guard: guard,
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release(&self.attempt.endpoint().connections);
        }
    }
}

impl<G: Unpin> Body for GuardedBody<G> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // An error leaves the connection mid-message: it is dropped, never pooled.
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        frame.map_err(BodyError::new)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
