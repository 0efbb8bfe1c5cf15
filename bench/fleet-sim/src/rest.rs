//! The admin API calls the simulator makes: seed one cluster and R routes (in parallel, before
//! any proxy connects), and change one route (a new `timeout_ms`) per measured change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Name of the cluster every seeded route points at (its endpoint is never contacted).
pub const CLUSTER: &str = "fleet-sim";
/// REST writes in flight while seeding.
const SEED_CONCURRENCY: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("request failed: {0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    #[error("reading the body failed: {0}")]
    Body(#[from] hyper::Error),
    #[error("timed out after {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("{method} {path} answered {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("seeding task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A client for one control plane's admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    base: Arc<str>,
    /// `Bearer <admin token>`, when the admin API needs one.
    authorization: Option<Arc<str>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The name of seeded route `index`.
pub fn route_name(index: u32) -> String {
    format!("sim-{index:05}")
}

/// Route `index`; a change sets `timeout_ms` (the seed leaves it unset).
fn route_spec(index: u32, timeout_ms: Option<u32>) -> Value {
    let mut spec = json!({"match": {"path_prefix": format!("/sim/{index}/")}, "cluster": CLUSTER});
    if let Some(timeout_ms) = timeout_ms {
        spec["timeout_ms"] = timeout_ms.into();
    }
    spec
}

impl Admin {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').into(),
            authorization: token.map(|token| format!("Bearer {token}").into()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Whether `/healthz` answers 200.
    pub async fn healthy(&self) -> bool {
        matches!(
            self.call(Method::GET, "/healthz", None).await,
            Ok((StatusCode::OK, _))
        )
    }

    /// The control plane's `/metrics`: every sample without labels, by name.
    pub async fn metrics(&self) -> Result<HashMap<String, f64>, RestError> {
        let (status, answer) = self.call(Method::GET, "/metrics", None).await?;
        let text = match answer {
            Value::String(text) if status.is_success() => text,
            other => {
                return Err(RestError::Status {
                    method: Method::GET,
                    path: "/metrics".to_owned(),
                    status,
                    body: other.to_string(),
                });
            }
        };
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// Requests of every route in `GET /api/v1/usage` over the last `since` (e.g. `1h`).
    pub async fn usage_requests(&self, since: &str) -> Result<u64, RestError> {
        let path = format!("/api/v1/usage?by=route&since={since}");
        let (status, answer) = self.call(Method::GET, &path, None).await?;
        if !status.is_success() {
            return Err(RestError::Status {
                method: Method::GET,
                path,
                status,
                body: answer.to_string(),
            });
        }
        Ok(answer
            .get("items")
            .and_then(Value::as_array)
            .map_or(0, |items| {
                items
                    .iter()
                    .filter_map(|item| item.get("requests").and_then(Value::as_u64))
                    .sum()
            }))
    }

    /// The cluster, then routes `0..routes` (each `/sim/<i>/` → the cluster).
    pub async fn seed(&self, routes: u32) -> Result<(), RestError> {
        let cluster = json!({"lb_policy": "round_robin", "endpoints": [{"address": "127.0.0.1:9", "weight": 1}]});
        self.put(&format!("/api/v1/clusters/{CLUSTER}"), &cluster)
            .await?;
        let permits = Arc::new(Semaphore::new(SEED_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for index in 0..routes {
            let admin = self.clone();
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("never closed");
            tasks.spawn(async move {
                let _permit = permit;
                let path = format!("/api/v1/routes/{}", route_name(index));
                admin.put(&path, &route_spec(index, None)).await.map(|_| ())
            });
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }

    /// One-route change number `change` of seeded route `name`; returns the new version.
    pub async fn change_route(&self, name: &str, change: u32) -> Result<i64, RestError> {
        let index: u32 = name.trim_start_matches("sim-").parse().unwrap_or(0);
        let body = route_spec(index, Some(1000 + change % 100_000));
        let answer = self.put(&format!("/api/v1/routes/{name}"), &body).await?;
        Ok(answer.get("version").and_then(Value::as_i64).unwrap_or(0))
    }

    async fn put(&self, path: &str, body: &Value) -> Result<Value, RestError> {
        let (status, answer) = self.call(Method::PUT, path, Some(body)).await?;
        if !status.is_success() {
            return Err(RestError::Status {
                method: Method::PUT,
                path: path.to_owned(),
                status,
                body: answer.to_string(),
            });
        }
        Ok(answer)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), RestError> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.as_ref());
        }
        let request = request.body(Full::new(body))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| RestError::Timeout)??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }
}
