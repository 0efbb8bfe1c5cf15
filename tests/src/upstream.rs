//! A fake upstream: an HTTP/1.1 server on 127.0.0.1 (port 0) in the test's tokio runtime. It
//! answers every request with JSON `{"upstream": <label>, "path", "method", "headers"}`, counts
//! and records the requests, and can be told to answer another status (on every path or on one,
//! such as a health-check path), to answer late, or to stop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lowercase names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Debug)]
struct Behaviour {
    status: StatusCode,
    /// Overrides of `status` by exact path (query excluded).
    path_status: BTreeMap<String, StatusCode>,
    delay: Duration,
    /// Extra headers on every later answer.
    response_headers: Vec<(String, String)>,
    requests: Vec<RecordedRequest>,
}

/// A running fake upstream; stopped on drop.
#[derive(Debug)]
pub struct Upstream {
    label: String,
    addr: SocketAddr,
    state: Arc<Mutex<Behaviour>>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// Owns the accept loop, which owns every connection task: aborting it closes them all.
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Upstream {
    /// Starts an upstream answering 200 at once.
    pub async fn start(label: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream on 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream local_addr");
        let state = Arc::new(Mutex::new(Behaviour {
            status: StatusCode::OK,
            path_status: BTreeMap::new(),
            delay: Duration::ZERO,
            response_headers: Vec::new(),
            requests: Vec::new(),
        }));
        let connections = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve(
            listener,
            label.to_owned(),
            state.clone(),
            Arc::clone(&connections),
        ));
        Upstream {
            label: label.to_owned(),
            addr,
            state,
            connections,
            server: Some(server),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// `127.0.0.1:<port>`, for a cluster endpoint.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Status of every later answer.
    pub fn set_status(&self, status: u16) {
        self.lock().status = StatusCode::from_u16(status).expect("a valid status code");
    }

    /// Status of later answers to `path` only (exact, query excluded), e.g. a health-check
    /// path; it wins over [`set_status`](Self::set_status) until
    /// [`clear_path_status`](Self::clear_path_status).
    pub fn set_path_status(&self, path: &str, status: u16) {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        self.lock().path_status.insert(path.to_owned(), status);
    }

    /// Answers to `path` follow [`set_status`](Self::set_status) again.
    pub fn clear_path_status(&self, path: &str) {
        self.lock().path_status.remove(path);
    }

    /// Delay before every later answer.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Adds a header to every later answer (on top of `content-type`).
    pub fn set_response_header(&self, name: &str, value: &str) {
        self.lock()
            .response_headers
            .push((name.to_owned(), value.to_owned()));
    }

    /// Requests received so far.
    /// TCP connections accepted so far (how well the proxy reuses its upstream connections).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn hits(&self) -> usize {
        self.lock().requests.len()
    }

    /// Copies of the requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn reset(&self) {
        self.lock().requests.clear();
    }

    /// Closes the listener and every open connection; the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: TcpListener,
    label: String,
    state: Arc<Mutex<Behaviour>>,
    accepted: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        // Reap finished connection tasks so the set does not grow with every connection.
        while connections.try_join_next().is_some() {}
        let label = label.clone();
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(request, label.clone(), state.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    label: String,
    state: Arc<Mutex<Behaviour>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let method = parts.method.as_str().to_owned();
    let bare_path = parts.uri.path().to_owned();
    let payload: Value = json!({
        "upstream": label,
        "path": path,
        "method": method,
        "headers": headers,
    });
    let (status, delay, extra_headers) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push(RecordedRequest {
            method,
            path,
            headers,
            body,
        });
        let status = state
            .path_status
            .get(&bare_path)
            .copied()
            .unwrap_or(state.status);
        (status, state.delay, state.response_headers.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in &extra_headers {
        response = response.header(name.as_str(), value.as_str());
    }
    let response = response
        .body(Full::new(Bytes::from(payload.to_string())))
        .expect("a valid response");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::Upstream;
    use crate::client::HttpClient;

    #[tokio::test]
    async fn echoes_records_and_stops() {
        let mut upstream = Upstream::start("u1").await;
        let client = HttpClient::new();
        let url = format!("http://{}/p?q=1", upstream.address());
        let response = client
            .send("POST", &url, &[("x-test", "a")], Bytes::from_static(b"hi"))
            .await
            .expect("answer");
        assert_eq!(response.status, 200);
        assert_eq!(response.upstream().as_deref(), Some("u1"));
        assert_eq!(response.json()["path"], "/p?q=1");
        assert_eq!(response.json()["headers"]["x-test"], "a");
        let seen = upstream.requests();
        assert_eq!((seen.len(), seen[0].method.as_str()), (1, "POST"));
        assert_eq!(seen[0].body, Bytes::from_static(b"hi"));

        upstream.set_status(503);
        upstream.set_delay(Duration::from_millis(100));
        let started = Instant::now();
        let response = client
            .send("GET", &url, &[], Bytes::new())
            .await
            .expect("answer");
        assert_eq!(response.status, 503);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(upstream.hits(), 2);

        upstream.set_status(200);
        upstream.set_path_status("/healthz", 503);
        let status_of = async |path: &str| {
            let url = format!("http://{}{path}", upstream.address());
            client
                .send("GET", &url, &[], Bytes::new())
                .await
                .expect("answer")
                .status
        };
        upstream.set_delay(Duration::ZERO);
        assert_eq!(status_of("/healthz?x=1").await, 503);
        assert_eq!(status_of("/other").await, 200);
        upstream.clear_path_status("/healthz");
        assert_eq!(status_of("/healthz").await, 200);

        upstream.stop();
        let fresh = HttpClient::new();
        assert!(fresh.send("GET", &url, &[], Bytes::new()).await.is_err());
    }
}
