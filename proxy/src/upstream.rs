//! Sending a request to one upstream endpoint: a pooled hyper client per cluster, the URI and
//! header rewrite, the route timeout, and mapping transport failures to [`ProxyError`]s.
//!
//! Bodies stream both ways (never buffered). Retries and circuit breaking come in a later issue.

use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::forwarding::{self, ClientInfo};
use crate::model::EndpointSpec;

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

    /// Forwards `request` to `endpoint`; `timeout` bounds the wait for response headers.
    pub async fn forward(
        &self,
        endpoint: &EndpointSpec,
        request: Request<Incoming>,
        client: &ClientInfo,
        request_id: &HeaderValue,
        timeout: Option<Duration>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        // HTTP/2 clients send `:authority` instead of `Host`: keep the name the client used.
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(endpoint.authority.clone());
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri).map_err(|_| ProxyError::UpstreamConnect)?;
        parts.version = Version::HTTP_11;
        forwarding::prepare_upstream_request(&mut parts.headers, client, request_id);

        let pending = self
            .client
            .request(Request::from_parts(parts, body.boxed()));
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, pending)
                .await
                .map_err(|_| ProxyError::Timeout)?,
            None => pending.await,
        };
        let response = result.map_err(|error| {
            tracing::debug!(endpoint = %endpoint.address, %error, "upstream request failed");
            if error.is_connect() {
                ProxyError::UpstreamConnect
            } else {
                ProxyError::UpstreamReset
            }
        })?;
        let (mut parts, body) = response.into_parts();
        forwarding::prepare_downstream_response(&mut parts.headers, request_id);
        Ok(Response::from_parts(parts, body.boxed()))
    }
}
