//! A small HTTP/1.1 client for the tests: hyper-util's legacy client, one per sandbox object so
//! its pooled connections live in the test's runtime, and a 5 s bound on every exchange
//! (request, response head and body).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Bound on one request/response exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A response, body read in full.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `upstream` label a fake [`Upstream`](crate::Upstream) puts in its answers.
    pub fn upstream(&self) -> Option<String> {
        self.json()
            .get("upstream")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The first 300 characters of the body, for assertion messages.
    pub fn body_excerpt(&self) -> String {
        self.text().chars().take(300).collect()
    }
}

/// A request that got no HTTP response: connection refused, reset, timed out, bad header.
#[derive(Debug)]
pub struct ClientError(String);

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// An HTTP/1.1 client with connection reuse.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// Must be created inside a tokio runtime (its connections run as tasks of that runtime).
    pub fn new() -> Self {
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .build_http();
        Self { inner }
    }

    /// Sends one request; `body` goes out as-is, with the caller's headers.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let fail =
            |what: &str, e: &dyn fmt::Display| ClientError(format!("{method} {url}: {what}: {e}"));
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| fail("method", &e))?;
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body))
            .map_err(|e| fail("request", &e))?;
        for (name, value) in headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| fail("header name", &e))?;
            let value = HeaderValue::from_str(value).map_err(|e| fail("header value", &e))?;
            request.headers_mut().append(name, value);
        }
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| fail("send", &ErrorChain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| fail("body", &e))?
                .to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError(format!("{url}: no response within {REQUEST_TIMEOUT:?}")))?
    }

    /// Sends a JSON body (or none) with `content-type: application/json`.
    pub async fn send_json(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        json: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let Some(json) = json else {
            return self.send(method, url, headers, Bytes::new()).await;
        };
        let mut all_headers = vec![("content-type", "application/json")];
        all_headers.extend_from_slice(headers);
        let body = Bytes::from(serde_json::to_vec(json).expect("a Value serializes"));
        self.send(method, url, &all_headers, body).await
    }
}

/// Formats an error with its sources: hyper-util's errors say little at the top level.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
