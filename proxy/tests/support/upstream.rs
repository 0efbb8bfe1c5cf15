//! A controllable fake upstream: answers `{"upstream": name}` after `delay_ms`, with `status`;
//! `/health` answers `health_status`. [`Upstream::kill`] drops the listener and every open
//! connection, like a crashed process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug)]
pub struct Control {
    pub delay_ms: AtomicU64,
    pub status: AtomicU16,
    pub health_status: AtomicU16,
    pub requests: AtomicU64,
    pub health_checks: AtomicU64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            delay_ms: AtomicU64::new(0),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
        });
        let shared = Arc::clone(&control);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let control = Arc::clone(&shared);
                let service = service_fn(move |request: Request<Incoming>| {
                    let control = Arc::clone(&control);
                    async move { Ok::<_, Infallible>(answer(name, &control, request).await) }
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            control,
            task,
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.control
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_status(&self, status: u16) {
        self.control.status.store(status, Ordering::Relaxed);
    }

    pub fn set_health(&self, status: u16) {
        self.control.health_status.store(status, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.control.requests.load(Ordering::Relaxed)
    }

    pub fn health_checks(&self) -> u64 {
        self.control.health_checks.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection at once.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    name: &str,
    control: &Control,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path() == "/health" {
        control.health_checks.fetch_add(1, Ordering::Relaxed);
        let status = control.health_status.load(Ordering::Relaxed);
        return Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    control.requests.fetch_add(1, Ordering::Relaxed);
    let delay = control.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = control.status.load(Ordering::Relaxed);
    let body = serde_json::json!({ "upstream": name }).to_string();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
