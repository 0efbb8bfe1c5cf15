//! The request path: the path normalised ([`crate::path_normalize`]), one snapshot load, route, then either straight to the route's action
//! (a route without policies: no filter code runs) or through the route's filter chain
//! ([`crate::filters`]) around the action; failures become JSON errors; then the metrics and
//! the access-log line.
//!
//! Balancing, retries and the rest of the upstream side are [`crate::upstream::exchange`]'s;
//! this module deliberately holds no state of its own.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use hyper::body::{Body, Incoming};

use crate::body::{BoxError, ProxyBody, full};
use crate::error::{Blame, ProxyError};
use crate::filters::aggregate;
use crate::filters::auth::X_CONSUMER;
use crate::filters::cors::Cors;
use crate::filters::{FilterState, RequestContext, RouteFilters};
use crate::forwarding::{self, ClientInfo, X_REQUEST_ID};
use crate::metrics::TrafficMetrics;
use crate::model::RouteAction;
use crate::path_normalize;
use crate::router::{CompiledRoute, Router};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::exchange;
use crate::usage::UsageSink;
use crate::usage::meter::{Attribution, Metered};

/// All a traffic worker holds: where to load the snapshot from, its own counters, and where
/// its usage flushes go.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    pub snapshot: Arc<SnapshotCell>,
    pub metrics: Arc<TrafficMetrics>,
    pub usage: UsageSink,
}

/// Serves one client request; never fails (errors become responses). The response body is
/// metered: it records the request's usage when it ends.
pub async fn handle(
    worker: &WorkerHandle,
    client: &ClientInfo,
    request: Request<Incoming>,
) -> Response<Metered> {
    let started = Instant::now();
    let request_id = forwarding::request_id(request.headers());
    let method = request.method().clone();
    // `Uri` clones share their bytes: no allocation for the access log.
    let uri = request.uri().clone();
    let mut attribution = Attribution {
        // hyper knows the declared length already: no header parsing here.
        bytes_in: request.body().size_hint().exact().unwrap_or(0),
        ..Attribution::default()
    };
    let dispatched = dispatch(worker, client, request, &request_id, &mut attribution).await;
    let mut response = match dispatched {
        Ok(response) => response,
        Err(error) => error_response(&worker.metrics, &error, &request_id),
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    // The proxy answers in its own HTTP version (RFC 9110 §6.2), whatever the upstream spoke:
    // an HTTP/1.0 origin's response goes to an HTTP/1.1 client as `HTTP/1.1`.
    *response.version_mut() = Version::HTTP_11;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    worker.metrics.observe_request(status, elapsed);
    tracing::info!(
        target: "switchyard_proxy::access",
        request_id = request_id.to_str().unwrap_or_default(),
        client = %client.ip,
        %method,
        path = uri.path(),
        status,
        consumer = attribution.consumer.as_deref(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    response.map(|body| Metered::new(body, attribution, status, latency_us))
}

async fn dispatch(
    worker: &WorkerHandle,
    client: &ClientInfo,
    mut request: Request<Incoming>,
    request_id: &HeaderValue,
    attribution: &mut Attribution,
) -> Result<Response<ProxyBody>, ProxyError> {
    // `x-consumer` is the proxy's word on who called: never the client's.
    request.headers_mut().remove(&X_CONSUMER);
    let escaped_slash = normalize_path(&mut request)?;
    let snapshot = worker.snapshot.load_full();
    let route = match snapshot
        .router
        .route(request.method(), request.uri(), request.headers())
    {
        Some(route) => route,
        None => preflight_route(&snapshot.router, &request).ok_or(ProxyError::NoRoute)?,
    };
    attribution.route = Some(Arc::clone(&route.spec));
    if escaped_slash && !route.spec.allow_encoded_slashes {
        return Err(ProxyError::BadPath(
            "escaped '/' or '\\' in the request path (the route does not allow encoded slashes)",
        ));
    }
    let Some(filters) = route.filters.as_deref() else {
        return act(&snapshot, route, request, client, request_id).await;
    };
    let mut ctx = RequestContext::new(client);
    let mut state = FilterState::default();
    let outcome = filters
        .run(request, &mut ctx, &mut state, |request| {
            act(&snapshot, route, request, client, request_id)
        })
        .await;
    // CORS, rate-limit and cache headers go on whatever answered, errors included.
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => error_response(&worker.metrics, &error, request_id),
    };
    filters.decorate(response.headers_mut(), &state);
    filters.log(response.status(), &ctx, &state);
    attribution.consumer = ctx.identity.map(|identity| Arc::clone(&identity.name));
    Ok(response)
}

/// Replaces the request's path by its normalised form ([`path_normalize`]) when it differs, so
/// routing, filters and the upstream all see the same path. Returns whether the path holds an
/// escaped slash.
fn normalize_path<B>(request: &mut Request<B>) -> Result<bool, ProxyError> {
    let (path, escaped_slash) = match path_normalize::normalize(request.uri().path()) {
        Ok(normalized) => match normalized.path {
            Cow::Owned(path) => (path, normalized.escaped_slash),
            Cow::Borrowed(_) => return Ok(normalized.escaped_slash),
        },
        Err(_) => {
            return Err(ProxyError::BadPath(
                "invalid percent-escape in the request path",
            ));
        }
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
            .map_err(|_| ProxyError::BadPath("invalid request path"))?,
    );
    *request.uri_mut() =
        Uri::from_parts(parts).map_err(|_| ProxyError::BadPath("invalid request path"))?;
    Ok(escaped_slash)
}

/// The JSON error response, counting upstream failures.
fn error_response(
    metrics: &TrafficMetrics,
    error: &ProxyError,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    if error.blame() == Blame::Upstream {
        metrics.upstream_error();
    }
    error.to_response(request_id)
}

/// A CORS preflight is an `OPTIONS` for a request with another method: when no route takes
/// the `OPTIONS` itself, the route of the announced method answers it if it has a CORS policy.
fn preflight_route<'a>(
    router: &'a Router,
    request: &Request<Incoming>,
) -> Option<&'a CompiledRoute> {
    if !Cors::is_preflight(request.method(), request.headers()) {
        return None;
    }
    let announced = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok())?;
    router
        .route(&announced, request.uri(), request.headers())
        .filter(|route| route.filters.as_deref().is_some_and(RouteFilters::has_cors))
}

/// The route's action: forward (one cluster or a weighted split), fan out, or answer directly.
async fn act<B>(
    snapshot: &Snapshot,
    route: &CompiledRoute,
    request: Request<B>,
    client: &ClientInfo,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let cluster_name = match &route.spec.action {
        RouteAction::Cluster(name) => name,
        RouteAction::WeightedClusters(clusters) => {
            let index = route
                .split
                .as_ref()
                .and_then(|split| split.next_index())
                .ok_or(ProxyError::NoEndpoint)?;
            &clusters[index].0
        }
        RouteAction::DirectResponse { status, body } => {
            let mut response = Response::new(full(body.clone()));
            *response.status_mut() = *status;
            let content_type = if body.starts_with(b"{") || body.starts_with(b"[") {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            return Ok(response);
        }
        RouteAction::Aggregate(parts) => {
            let (head, _body) = request.into_parts();
            return aggregate::aggregate(
                &snapshot.clusters,
                &route.spec,
                parts,
                &head,
                client,
                request_id,
            )
            .await;
        }
    };
    let cluster = snapshot
        .clusters
        .get(cluster_name)
        .ok_or(ProxyError::ClusterNotFound)?;
    exchange::forward(cluster, &route.spec, request, client, request_id).await
}
