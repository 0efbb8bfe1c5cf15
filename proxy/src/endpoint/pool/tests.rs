//! The pool against a real HTTP/1.1 server on 127.0.0.1:0 that counts the connections it
//! accepts and sees closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{PoolSettings, send};
use crate::body::{ProxyBody, empty};
use crate::endpoint::{EndpointGroup, EndpointState, InFlightGuard};
use crate::error::ProxyError;
use crate::upstream::GuardedBody;

#[derive(Clone, Copy)]
enum Reply {
    /// `ok`, keep-alive.
    Ok,
    /// `ok` after a delay.
    Slow(Duration),
    /// `ok` with `connection: close`.
    Close,
    /// A chunked body that ends only after a long pause.
    Endless,
}

struct Origin {
    address: String,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (task_accepted, task_closed) = (Arc::clone(&accepted), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                task_accepted.fetch_add(1, Ordering::SeqCst);
                let closed = Arc::clone(&task_closed);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| answer(reply));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(!matches!(reply, Reply::Close))
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            address,
            accepted,
            closed,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

async fn answer(reply: Reply) -> Result<Response<ProxyBody>, Infallible> {
    let body = match reply {
        Reply::Ok | Reply::Close => Full::new(Bytes::from_static(b"ok"))
            .map_err(|never| match never {})
            .boxed(),
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Full::new(Bytes::from_static(b"ok"))
                .map_err(|never| match never {})
                .boxed()
        }
        Reply::Endless => {
            let frames = part_then_silence();
            StreamBody::new(frames).boxed()
        }
    };
    Ok(Response::new(body))
}

/// One chunk now, the end a minute later (the test drops the body long before).
fn part_then_silence()
-> tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, crate::body::BodyError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _ = sender
            .send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

fn settings(idle_timeout: Duration) -> PoolSettings {
    PoolSettings {
        connect_timeout: Duration::from_secs(2),
        idle_timeout,
    }
}

fn get(origin: &Origin) -> Request<ProxyBody> {
    Request::builder()
        .uri("/")
        .header(header::HOST, origin.address.as_str())
        .body(empty())
        .unwrap()
}

/// One exchange, the body read to its end through [`GuardedBody`] (which returns the
/// connection to the pool).
async fn exchange(endpoint: &Arc<EndpointState>, origin: &Origin, settings: PoolSettings) -> Bytes {
    let (response, pooled) = send(&endpoint.connections, settings, get(origin))
        .await
        .unwrap();
    let (_, body) = response.into_parts();
    GuardedBody::new(body, pooled, attempt(endpoint), ())
        .collect()
        .await
        .unwrap()
        .to_bytes()
}

/// An attempt on `endpoint` (in a cluster of its own), as the exchange takes one per try.
fn attempt(endpoint: &Arc<EndpointState>) -> InFlightGuard {
    InFlightGuard::new(endpoint, &Arc::new(EndpointGroup::default()), true)
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let origin = Origin::start(Reply::Ok).await;
    let endpoint = Arc::new(EndpointState::new(&origin.address, 1));
    for _ in 0..5 {
        assert_eq!(
            exchange(&endpoint, &origin, settings(Duration::from_secs(90))).await,
            "ok"
        );
    }
    assert_eq!(origin.accepted(), 1);
    assert_eq!(endpoint.connections.opened(), 1);
    assert_eq!(endpoint.connections.idle(), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_all_return_to_the_pool() {
    let origin = Origin::start(Reply::Slow(Duration::from_millis(100))).await;
    let endpoint = Arc::new(EndpointState::new(&origin.address, 1));
    let settings = settings(Duration::from_secs(90));
    let (a, b, c) = tokio::join!(
        exchange(&endpoint, &origin, settings),
        exchange(&endpoint, &origin, settings),
        exchange(&endpoint, &origin, settings),
    );
    assert_eq!(
        (a, b, c),
        (Bytes::from("ok"), Bytes::from("ok"), Bytes::from("ok"))
    );
    assert_eq!(origin.accepted(), 3);
    assert_eq!(endpoint.connections.idle(), 3);
    exchange(&endpoint, &origin, settings).await;
    assert_eq!(origin.accepted(), 3, "the next request reuses one of them");
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let origin = Origin::start(Reply::Endless).await;
    let endpoint = Arc::new(EndpointState::new(&origin.address, 1));
    let settings = settings(Duration::from_secs(90));
    let (response, pooled) = send(&endpoint.connections, settings, get(&origin))
        .await
        .unwrap();
    let mut body = GuardedBody::new(response.into_body(), pooled, attempt(&endpoint), ());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "part");
    drop(body);
    assert_eq!(endpoint.connections.idle(), 0);
    eventually("the origin sees the connection closed", || {
        origin.closed() == 1
    })
    .await;
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let origin = Origin::start(Reply::Ok).await;
    let endpoint = Arc::new(EndpointState::new(&origin.address, 1));
    let settings = settings(Duration::from_millis(100));
    exchange(&endpoint, &origin, settings).await;
    assert_eq!(endpoint.connections.idle(), 1);
    assert_eq!(
        endpoint.connections.evict_idle(settings.idle_timeout),
        0,
        "not yet"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(endpoint.connections.evict_idle(settings.idle_timeout), 1);
    assert_eq!(endpoint.connections.idle(), 0);
    eventually("the origin sees the idle connection closed", || {
        origin.closed() == 1
    })
    .await;
    exchange(&endpoint, &origin, settings).await;
    assert_eq!(origin.accepted(), 2, "a new connection");
    assert_eq!(endpoint.connections.opened(), 2);
}

#[tokio::test]
async fn connections_the_origin_closes_are_not_reused() {
    let origin = Origin::start(Reply::Close).await;
    let endpoint = Arc::new(EndpointState::new(&origin.address, 1));
    let settings = settings(Duration::from_secs(90));
    for _ in 0..3 {
        assert_eq!(exchange(&endpoint, &origin, settings).await, "ok");
    }
    assert_eq!(origin.accepted(), 3);
}

#[tokio::test]
async fn connections_the_origin_closes_while_idle_are_skipped() {
    // An origin that answers with keep-alive and then hangs up (its keep-alive timer, say).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let endpoint = Arc::new(EndpointState::new(&address, 1));
    let settings = settings(Duration::from_secs(90));
    for round in 1..=3 {
        let request = Request::builder()
            .uri("/")
            .header(header::HOST, address.as_str())
            .body(empty())
            .unwrap();
        let (response, pooled) = send(&endpoint.connections, settings, request)
            .await
            .unwrap();
        let body = GuardedBody::new(response.into_body(), pooled, attempt(&endpoint), ());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
        eventually("the pool notices the hang-up", || {
            endpoint.connections.idle_and_open() == 0
        })
        .await;
        assert_eq!(accepted.load(Ordering::SeqCst), round);
    }
    server.abort();
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let endpoint = Arc::new(EndpointState::new(&address, 1));
    let request = Request::builder().uri("/").body(empty()).unwrap();
    let error = send(
        &endpoint.connections,
        settings(Duration::from_secs(90)),
        request,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProxyError::UpstreamConnect), "{error:?}");
}
