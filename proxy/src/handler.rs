//! The request path: one snapshot load, route, then either straight to the route's action
//! (a route without policies: no filter code runs) or through the route's filter chain
//! ([`crate::filters`]) around the action; failures become JSON errors; then the metrics and
//! the access-log line.
//!
//! Balancing, retries and the rest of the upstream side are [`crate::upstream::exchange`]'s;
//! this module deliberately holds no state of its own.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::{Body, Incoming};

use crate::body::{BoxError, ProxyBody, full};
use crate::error::{Blame, ProxyError};
use crate::filters::aggregate;
use crate::filters::auth::X_CONSUMER;
use crate::filters::cors::Cors;
use crate::filters::{Decorations, RouteFilters};
use crate::forwarding::{self, ClientInfo, X_REQUEST_ID};
use crate::model::RouteAction;
use crate::router::{CompiledRoute, Router};
use crate::snapshot::Snapshot;
use crate::state::Shared;
use crate::upstream::exchange;

/// Serves one client request; never fails (errors become responses).
pub async fn handle(
    shared: &Shared,
    client: &ClientInfo,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let request_id = forwarding::request_id(request.headers());
    let method = request.method().clone();
    // `Uri` clones share their bytes: no allocation for the access log.
    let uri = request.uri().clone();
    let mut decorations = Decorations::default();
    let mut response = match dispatch(shared, client, request, &request_id, &mut decorations).await
    {
        Ok(response) => response,
        Err(error) => error_response(shared, &error, &request_id),
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    shared.metrics.observe_request(status, elapsed);
    tracing::info!(
        target: "switchyard_proxy::access",
        request_id = request_id.to_str().unwrap_or_default(),
        client = %client.ip,
        %method,
        path = uri.path(),
        status,
        consumer = decorations.consumer.as_deref(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn dispatch(
    shared: &Shared,
    client: &ClientInfo,
    mut request: Request<Incoming>,
    request_id: &HeaderValue,
    decorations: &mut Decorations,
) -> Result<Response<ProxyBody>, ProxyError> {
    // `x-consumer` is the proxy's word on who called: never the client's.
    request.headers_mut().remove(&X_CONSUMER);
    let snapshot = shared.snapshot.load_full();
    let route = match snapshot
        .router
        .route(request.method(), request.uri(), request.headers())
    {
        Some(route) => route,
        None => preflight_route(&snapshot.router, &request).ok_or(ProxyError::NoRoute)?,
    };
    let Some(filters) = route.filters.as_deref() else {
        return act(&snapshot, route, request, client, request_id).await;
    };
    let result = filters
        .run(request, client, decorations, |request| {
            act(&snapshot, route, request, client, request_id)
        })
        .await;
    // CORS, rate-limit and cache headers go on whatever answered, errors included.
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error_response(shared, &error, request_id),
    };
    decorations.apply(response.headers_mut());
    Ok(response)
}

/// The JSON error response, counting upstream failures.
fn error_response(
    shared: &Shared,
    error: &ProxyError,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    if error.blame() == Blame::Upstream {
        shared.metrics.upstream_error();
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
