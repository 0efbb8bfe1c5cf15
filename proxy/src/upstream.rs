//! Sending requests upstream: a pooled hyper client per cluster ([`Upstream`]), the URI and
//! header rewrite, and mapping transport failures to [`ProxyError`]s. [`exchange`] runs one
//! request through the cluster (circuit breaker, balancing, retries, timeouts, outlier
//! detection); [`retry`] holds the retry rules and budget.
//!
//! Bodies stream both ways; only a small request body on a route with retries is buffered (see
//! [`retry`]). A response body carries the request's guards ([`GuardedBody`]) so in-flight
//! counts and connection slots are released when it ends, not at response headers.

pub mod exchange;
pub mod retry;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyError, ProxyBody};
use crate::error::ProxyError;
use crate::forwarding::{self, ClientInfo};

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A cluster's connection pool. Cloning shares the pool, so a new snapshot can keep the
/// previous one's warm connections when the connect settings did not change.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
    connect_timeout: Duration,
}

impl Upstream {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            client,
            connect_timeout,
        }
    }

    /// The connect timeout this pool was built with (pools are reused only when it matches).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Sends one prepared request (see [`prepare`] and [`set_authority`]) and waits for the
    /// response headers.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.client.request(request).await.map_err(|error| {
            tracing::debug!(uri = %error_uri(&error), %error, "upstream request failed");
            if error.is_connect() {
                ProxyError::UpstreamConnect
            } else {
                ProxyError::UpstreamReset
            }
        })
    }
}

fn error_uri(error: &hyper_util::client::legacy::Error) -> String {
    std::error::Error::source(error).map_or_else(String::new, |source| source.to_string())
}

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
    forwarding::prepare_upstream_request(&mut parts.headers, client, request_id);
}

/// Points the request URI at `authority` (`http://authority/path?query`).
pub fn set_authority(
    parts: &mut http::request::Parts,
    authority: &http::uri::Authority,
) -> Result<(), ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(path_and_query);
    parts.uri = Uri::from_parts(uri).map_err(|_| ProxyError::UpstreamConnect)?;
    Ok(())
}

/// An upstream response body that holds `guard` until the body is done (or dropped).
#[derive(Debug)]
pub struct GuardedBody<G> {
    inner: Incoming,
    _guard: G,
}

impl<G> GuardedBody<G> {
    pub fn new(inner: Incoming, guard: G) -> Self {
        Self {
            inner,
            _guard: guard,
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
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BodyError::new)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
