//! One client request through a cluster: circuit breaker admission, balancing, the attempt,
//! outlier accounting, latency for `least_response_time`, and retries on another endpoint
//! within the retry budget — all under the route's `timeout_ms` (→ 504 for all tries together).
//!
//! Per attempt: pick (avoiding endpoints already tried), take a connection slot, count the
//! attempt in flight, send, classify the outcome ([`Outcome`]). The last attempt's response (or
//! error) is what the client gets; its body holds the request's guards until it ends.

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use tokio::sync::OwnedSemaphorePermit;

use super::GuardedBody;
use super::retry::{MAX_REPLAY_BODY, Outcome, should_retry};
use crate::balancer::PickContext;
use crate::body::{BodyError, BoxError, ProxyBody, empty, full};
use crate::circuit_breaker::RequestPermit;
use crate::cluster::{ClusterRuntime, ClusterStats};
use crate::endpoint::InFlightGuard;
use crate::endpoint::pool::{self, Pooled};
use crate::error::ProxyError;
use crate::forwarding::{self, ClientInfo};
use crate::model::RouteSpec;
use crate::model::route::MAX_ATTEMPTS;
use crate::outlier;

/// What a response body keeps alive until it ends, besides its attempt (see [`GuardedBody`]).
#[derive(Debug)]
struct Held {
    _request: RequestPermit,
    _connection: Option<OwnedSemaphorePermit>,
}

/// Forwards `request` to `cluster` under `route`'s timeout and retry policy. The body is
/// usually the client's `Incoming` as is; filters may wrap it (e.g. the size limit).
pub async fn forward<B>(
    cluster: &ClusterRuntime,
    route: &RouteSpec,
    request: Request<B>,
    client: &ClientInfo,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let admitted = cluster
        .breaker
        .admit()
        .inspect_err(|_| circuit_open(cluster))?;
    cluster.state.retry_budget.deposit();
    let attempts = attempts(cluster, route, request, client, request_id, admitted);
    match route.timeout {
        Some(limit) => tokio::time::timeout(limit, attempts)
            .await
            .map_err(|_| ProxyError::Timeout)?,
        None => attempts.await,
    }
}

/// Counts a request the circuit breaker refused.
fn circuit_open(cluster: &ClusterRuntime) {
    ClusterStats::add(&cluster.state.stats.circuit_open);
}

async fn attempts<B>(
    cluster: &ClusterRuntime,
    route: &RouteSpec,
    request: Request<B>,
    client: &ClientInfo,
    request_id: &HeaderValue,
    admitted: RequestPermit,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    super::prepare(&mut parts, client, request_id);
    let (mut stream, replay) = match route.retries {
        Some(_) => replayable(&parts.headers, body).await?,
        None => (Some(body), None),
    };
    let max_attempts = match (&replay, route.retries) {
        (Some(_), Some(retries)) => retries.attempts.min(MAX_ATTEMPTS) as usize,
        _ => 1,
    };
    let method = parts.method.clone();
    let mut head = Some(parts);
    let mut tried = [0usize; MAX_ATTEMPTS as usize];
    let mut attempt = 0;
    let states = cluster.balancer.states();
    loop {
        let template = head
            .as_ref()
            .expect("a head remains until the last attempt");
        let ctx = PickContext {
            client_ip: client.ip,
            headers: &template.headers,
        };
        let index = cluster
            .balancer
            .pick(&ctx, &tried[..attempt])
            .or_else(|| {
                (attempt > 0)
                    .then(|| cluster.balancer.pick(&ctx, &[]))
                    .flatten()
            })
            .ok_or(ProxyError::NoEndpoint)?;
        tried[attempt] = index;
        attempt += 1;
        let mut parts = if attempt < max_attempts {
            clone_head(template)
        } else {
            head.take().expect("taken once, on the last attempt")
        };
        let endpoint = &cluster.spec.endpoints[index];
        if !parts.headers.contains_key(header::HOST) {
            // An HTTP/1.0 client without `Host`: name the endpoint, as HTTP/1.1 requires.
            if let Ok(host) = HeaderValue::from_str(endpoint.authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
        }
        let body = match &replay {
            Some(bytes) if bytes.is_empty() => empty(),
            Some(bytes) => full(bytes.clone()),
            None if stream.as_ref().is_some_and(Body::is_end_stream) => empty(),
            None => stream
                .take()
                .expect("a streamed body has one attempt")
                .map_err(BodyError::new)
                .boxed(),
        };
        let connection = cluster
            .breaker
            .connection()
            .await
            .inspect_err(|_| circuit_open(cluster))?;
        let state = &states[index];
        let guard = InFlightGuard::new(
            state,
            &cluster.state.endpoints,
            cluster.balancer.is_local(index),
        );
        let started = Instant::now();
        let send = pool::send(
            &state.connections,
            cluster.pool,
            Request::from_parts(parts, body),
        );
        let per_try = route.retries.and_then(|r| r.per_try_timeout);
        let result = match per_try {
            Some(limit) => tokio::time::timeout(limit, send)
                .await
                .unwrap_or(Err(ProxyError::Timeout)),
            None => send.await,
        };
        let outcome = classify(&result);
        if outcome != Outcome::ConnectFailure {
            state.observe_latency(started.elapsed());
        }
        outlier::record(
            cluster.spec.outlier_detection.as_ref(),
            &cluster.state,
            states,
            state,
            outcome.is_failure(),
        );
        let retryable = attempt < max_attempts
            && route
                .retries
                .is_some_and(|retries| should_retry(retries.on, outcome, &method));
        if retryable {
            if cluster.state.retry_budget.try_withdraw() {
                ClusterStats::add(&cluster.state.stats.retries);
                tracing::debug!(endpoint = %endpoint.address, ?outcome, attempt, "retrying");
                continue;
            }
            ClusterStats::add(&cluster.state.stats.retries_budget_exhausted);
        }
        let (response, pooled) = result?;
        let (mut parts, body) = response.into_parts();
        forwarding::prepare_downstream_response(&mut parts.headers);
        let held = Held {
            _request: admitted,
            _connection: connection,
        };
        return Ok(Response::from_parts(
            parts,
            GuardedBody::new(body, pooled, guard, held).boxed(),
        ));
    }
}

fn classify(result: &Result<(Response<Incoming>, Pooled), ProxyError>) -> Outcome {
    match result {
        Ok((response, _)) if response.status().is_server_error() => Outcome::Status5xx,
        Ok(_) => Outcome::Success,
        Err(ProxyError::UpstreamConnect) => Outcome::ConnectFailure,
        Err(ProxyError::Timeout) => Outcome::PerTryTimeout,
        Err(_) => Outcome::Reset,
    }
}

/// Splits the body into "stream it once" or "replay these bytes": empty bodies and small
/// bodies of known length are buffered so the request can be retried.
async fn replayable<B>(
    headers: &HeaderMap,
    body: B,
) -> Result<(Option<B>, Option<Bytes>), ProxyError>
where
    B: Body<Data = Bytes>,
{
    if body.is_end_stream() {
        return Ok((None, Some(Bytes::new())));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match length {
        Some(length) if length <= MAX_REPLAY_BODY => {
            let bytes = body
                .collect()
                .await
                .map_err(|_| ProxyError::ClientBody)?
                .to_bytes();
            Ok((None, Some(bytes)))
        }
        _ => Ok((Some(body), None)),
    }
}

/// A copy of a request head for one more attempt (extensions are not carried).
fn clone_head(parts: &Parts) -> Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}
