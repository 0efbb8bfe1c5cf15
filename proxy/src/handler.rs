//! The request path: one snapshot load, route, act (forward, split, direct response), and
//! turn failures into JSON errors; then the metrics and the access-log line.
//!
//! Balancing, retries and the rest of the upstream side are [`crate::upstream::exchange`]'s.
//! Filters (auth, rate limits, transforms…) slot in between routing and balancing in a later
//! issue; this module deliberately holds no state of its own.

use std::time::Instant;

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, full};
use crate::error::{Blame, ProxyError};
use crate::forwarding::{self, ClientInfo, X_REQUEST_ID};
use crate::model::RouteAction;
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
    let mut response = match dispatch(shared, client, request, &request_id).await {
        Ok(response) => response,
        Err(error) => {
            if error.blame() == Blame::Upstream {
                shared.metrics.upstream_error();
            }
            error.to_response(&request_id)
        }
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
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn dispatch(
    shared: &Shared,
    client: &ClientInfo,
    request: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError> {
    let snapshot = shared.snapshot.load_full();
    let route = snapshot
        .router
        .route(request.method(), request.uri(), request.headers())
        .ok_or(ProxyError::NoRoute)?;
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
        RouteAction::Aggregate => return Err(ProxyError::Unsupported("aggregate")),
    };
    let cluster = snapshot
        .clusters
        .get(cluster_name)
        .ok_or(ProxyError::ClusterNotFound)?;
    exchange::forward(cluster, &route.spec, request, client, request_id).await
}
