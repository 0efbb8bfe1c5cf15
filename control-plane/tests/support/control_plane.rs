//! A real control plane on 127.0.0.1 (port 0) for the report-stream tests, and hyper's client
//! reading its admin API over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_control_plane::config::{Config, DEFAULT_PROXY_TTL, DEFAULT_USAGE_RETENTION};
use switchyard_control_plane::server::ControlPlane;
use tokio::sync::oneshot;

use super::report_stream::WAIT;

/// A control plane serving until dropped.
pub struct Harness {
    pub admin: SocketAddr,
    pub xds_url: String,
    pub token: Option<String>,
    _stop: oneshot::Sender<()>,
}

pub struct Options {
    pub admin_token: Option<&'static str>,
    pub usage_retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin_token: None,
            usage_retention: DEFAULT_USAGE_RETENTION,
        }
    }
}

pub async fn start(database_url: &str) -> Harness {
    start_with(database_url, Options::default()).await
}

pub async fn start_with(database_url: &str, options: Options) -> Harness {
    let config = Config {
        database_url: database_url.to_owned(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: options.admin_token.map(str::to_owned),
        proxy_token: None,
        first_sync_budget_mib: None,
        proxy_ttl: DEFAULT_PROXY_TTL,
        usage_retention: options.usage_retention,
    };
    let cp = ControlPlane::bind(&config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let harness = Harness {
        admin: cp.admin_addr(),
        xds_url: format!("http://{}", cp.xds_addr()),
        token: options.admin_token.map(str::to_owned),
        _stop: stop,
    };
    tokio::spawn(cp.serve(async {
        let _ = stopped.await;
    }));
    harness
}

/// An admin API answer.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Harness {
    /// `GET path` with hyper's client (and the harness's token, if any).
    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(json.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let exchange = async {
            let response = client.request(request.body(body).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, bytes)
        };
        let (status, content_type, bytes) = tokio::time::timeout(WAIT, exchange)
            .await
            .expect("an answer in time");
        Reply {
            status,
            content_type,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET /api/v1/usage?query`, which must succeed.
    pub async fn usage(&self, query: &str) -> Value {
        let reply = self.get(&format!("/api/v1/usage?{query}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.content_type, "application/json");
        reply.body
    }

    /// The value of counter or gauge `name` at `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let reply = self.get("/metrics").await;
        reply
            .text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {}", reply.text))
            .parse()
            .unwrap()
    }
}
