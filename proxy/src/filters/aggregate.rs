//! `aggregate`: one request fans out to every part concurrently — each through its cluster's
//! balancer, pool, retries and breaker ([`exchange::forward`]) with the part's path — and the
//! bodies are combined into one JSON object keyed by part name (a non-JSON body is included as
//! a string). The route's `timeout_ms` bounds every part, body included. The first part that
//! fails (transport error, non-2xx status, body over [`MAX_PART_BYTES`], timeout) fails the
//! whole request with an error naming it; the other parts are dropped at once.
//!
//! Parts are `GET`s with the client's headers minus hop-by-hop headers, body headers and the
//! client's credentials; the client's query string is passed on when the part's path has none.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use super::auth::X_API_KEY;
use crate::body::{ProxyBody, full};
use crate::cluster::ClusterRuntime;
use crate::error::ProxyError;
use crate::forwarding::ClientInfo;
use crate::model::{AggregatePart, RouteSpec};
use crate::upstream::exchange;

/// Largest body accepted from one part.
pub const MAX_PART_BYTES: usize = 8 << 20;

/// Fetches every part of `parts` and combines them.
pub async fn aggregate(
    clusters: &HashMap<String, Arc<ClusterRuntime>>,
    route: &RouteSpec,
    parts: &[AggregatePart],
    head: &http::request::Parts,
    client: &ClientInfo,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError> {
    let headers = part_headers(&head.headers);
    let mut pending: Vec<_> = parts
        .iter()
        .map(|part| {
            let request = part_request(part, head, &headers);
            Some(Box::pin(fetch(
                clusters, route, part, request, client, request_id,
            )))
        })
        .collect();
    let mut values: Vec<Option<Value>> = vec![None; parts.len()];
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, value) in pending.iter_mut().zip(values.iter_mut()) {
            let Some(future) = slot else { continue };
            match future.as_mut().poll(cx) {
                Poll::Ready(Ok(done)) => {
                    *value = Some(done);
                    *slot = None;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await?;
    let combined: serde_json::Map<String, Value> = parts
        .iter()
        .zip(values)
        .map(|(part, value)| (part.name.clone(), value.unwrap_or(Value::Null)))
        .collect();
    let body = Bytes::from(Value::Object(combined).to_string());
    let mut response = Response::new(full(body.clone()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    Ok(response)
}

async fn fetch(
    clusters: &HashMap<String, Arc<ClusterRuntime>>,
    route: &RouteSpec,
    part: &AggregatePart,
    request: Request<Empty<Bytes>>,
    client: &ClientInfo,
    request_id: &HeaderValue,
) -> Result<Value, ProxyError> {
    let failed = |reason: String, timed_out: bool| ProxyError::AggregatePart {
        part: part.name.clone(),
        reason,
        timed_out,
    };
    let work = async {
        let cluster = clusters
            .get(&part.cluster)
            .ok_or_else(|| failed(format!("cluster {:?} not found", part.cluster), false))?;
        let response = exchange::forward(cluster, route, request, client, request_id)
            .await
            .map_err(|error| failed(error.to_string(), error == ProxyError::Timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(
                format!("upstream answered {}", status.as_u16()),
                false,
            ));
        }
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = Limited::new(response.into_body(), MAX_PART_BYTES)
            .collect()
            .await
            .map_err(|error| failed(format!("body: {error}"), false))?
            .to_bytes();
        let value = match is_json.then(|| serde_json::from_slice::<Value>(&body)) {
            Some(Ok(value)) => value,
            _ => Value::String(String::from_utf8_lossy(&body).into_owned()),
        };
        Ok(value)
    };
    match route.timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(failed("upstream timed out".into(), true))),
        None => work.await,
    }
}

/// The client's headers as every part sends them.
fn part_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
    for name in [
        &header::CONTENT_LENGTH,
        &header::CONTENT_TYPE,
        &header::CONTENT_ENCODING,
        &header::AUTHORIZATION,
        &header::COOKIE,
        &header::EXPECT,
        &X_API_KEY,
    ] {
        headers.remove(name);
    }
    crate::forwarding::strip_hop_by_hop(&mut headers);
    headers
}

fn part_request(
    part: &AggregatePart,
    head: &http::request::Parts,
    headers: &HeaderMap,
) -> Request<Empty<Bytes>> {
    let path = match (part.path.query(), head.uri.query()) {
        (None, Some(query)) => PathAndQuery::try_from(format!("{}?{query}", part.path.path()))
            .unwrap_or_else(|_| part.path.clone()),
        _ => part.path.clone(),
    };
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = http::Uri::from(path);
    *request.headers_mut() = headers.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_drop_credentials_and_body_headers_and_keep_the_query() {
        let head = Request::post("/dash?user=7")
            .header("x-api-key", "sy_x")
            .header("authorization", "Bearer t")
            .header("content-length", "3")
            .header("connection", "close")
            .header("x-consumer", "acme")
            .header("accept", "application/json")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let headers = part_headers(&head.headers);
        let part = AggregatePart {
            name: "p".into(),
            cluster: "c".into(),
            path: PathAndQuery::from_static("/profile"),
        };
        let request = part_request(&part, &head, &headers);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/profile?user=7");
        let sent = request.headers();
        for gone in ["x-api-key", "authorization", "content-length", "connection"] {
            assert!(!sent.contains_key(gone), "{gone}");
        }
        assert_eq!(sent["x-consumer"], "acme");
        assert_eq!(sent["accept"], "application/json");
        let own_query = AggregatePart {
            path: PathAndQuery::from_static("/orders?limit=5"),
            ..part
        };
        assert_eq!(
            part_request(&own_query, &head, &headers).uri(),
            "/orders?limit=5"
        );
    }
}
