//! The admin listener: `GET /ready`, `GET /config_dump`, `GET /metrics`.
//!
//! Read-only views of the shared state; nothing here can change config.

mod render;

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use switchyard_proto::type_url;

use crate::body::{ProxyBody, full};
use crate::state::ControlState;

/// Serves one admin request.
pub async fn handle(shared: Arc<ControlState>, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        );
    }
    match request.uri().path() {
        "/ready" => {
            let ready = shared.snapshot.load().is_complete();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &json!({ "ready": ready }))
        }
        "/config_dump" => json_response(StatusCode::OK, &config_dump(&shared)),
        "/metrics" => {
            let mut text = crate::metrics::render(&shared.traffic, &shared.metrics);
            crate::metrics::render_usage(&mut text, &shared.route_usage, &shared.report_usage);
            crate::metrics::render_clusters(&mut text, &shared.snapshot.load());
            let mut response = Response::new(full(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Node identity, connection status, revision, held resources and the last NACK.
fn config_dump(shared: &ControlState) -> Value {
    let snapshot = shared.snapshot.load_full();
    let resources = &snapshot.resources;
    let status = shared.xds_status();
    let clusters: Vec<Value> = resources
        .clusters
        .iter()
        .map(|(name, held)| {
            json!({"name": name, "version": held.version, "resource": render::cluster(&held.proto)})
        })
        .collect();
    let routes: Vec<Value> = resources
        .routes
        .iter()
        .map(|(name, held)| {
            json!({"name": name, "version": held.version, "resource": render::route(&held.proto)})
        })
        .collect();
    let consumers: Vec<Value> = resources
        .consumers
        .iter()
        .map(|(name, held)| {
            json!({"name": name, "version": held.version, "resource": render::consumer(&held.proto)})
        })
        .collect();
    let jwt_providers: Vec<Value> = resources
        .jwt_providers
        .iter()
        .map(|(name, held)| {
            json!({"name": name, "version": held.version, "resource": render::jwt_provider(&held.proto)})
        })
        .collect();
    let quotas: Vec<Value> = resources
        .quotas
        .iter()
        .map(|(name, held)| {
            json!({"name": name, "version": held.version, "resource": render::quota(&held.proto)})
        })
        .collect();
    json!({
        "node": { "id": shared.node_id, "labels": shared.labels },
        "control_plane": {
            "addresses": shared.control_planes,
            "address": status.address,
            "connected": shared.metrics.connected(),
        },
        "ready": snapshot.is_complete(),
        "revision": resources.revision,
        "synced_types": resources.synced,
        "resources": {
            "clusters": { "type_url": type_url::CLUSTER, "items": clusters },
            "routes": { "type_url": type_url::ROUTE, "items": routes },
            "consumers": { "type_url": type_url::CONSUMER, "items": consumers },
            "jwt_providers": { "type_url": type_url::JWT_PROVIDER, "items": jwt_providers },
            "quotas": { "type_url": type_url::QUOTA, "items": quotas },
        },
        "last_nack": status.last_nack.map(|nack| json!({
            "type_url": nack.type_url,
            "nonce": nack.nonce,
            "revision": nack.revision,
            "message": nack.message,
        })),
    })
}
