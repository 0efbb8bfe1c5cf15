//! Fake upstreams that answer JSON naming themselves, and a tiny HTTP client for the tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Starts an upstream named `name`: every answer is `{"upstream": name, "path": …, "headers": {…}}`;
/// `/slow` waits 2 s first.
pub async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service_fn(move |request: Request<Incoming>| async move {
                if request.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let headers: serde_json::Map<String, serde_json::Value> = request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().into()))
                    .collect();
                let body = serde_json::json!({
                    "upstream": name,
                    "path": request.uri().path_and_query().map(|p| p.as_str()),
                    "headers": headers,
                });
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .header("connection", "keep-alive")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl HttpClient {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn h2c() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn get(&self, addr: SocketAddr, path: &str) -> Got {
        self.get_with(addr, path, &[]).await
    }

    pub async fn get_with(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
        self.request_with(http::Method::GET, addr, path, headers)
            .await
    }

    /// A bodiless request with any method.
    pub async fn request_with(
        &self,
        method: http::Method,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Got {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), self.client.request(request))
            .await
            .expect("request timed out")
            .expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
