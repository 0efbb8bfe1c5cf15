//! The accept loop shared by the traffic and admin listeners: HTTP/1.1 and h2c on one port
//! (hyper-util's auto builder), TCP_NODELAY, and graceful shutdown — stop accepting, let open
//! connections finish their in-flight requests, bounded by a drain timeout.
//!
//! What a request does is the caller's handler; this module only runs connections.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::BoxError;
use crate::forwarding::ClientInfo;

/// Serves `listener` until `stop` turns true (or its sender is dropped), then drains.
pub async fn serve<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
) where
    H: Fn(Request<Incoming>, Arc<ClientInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(server = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(server = name, %error, "set_nodelay failed");
        }
        let client = Arc::new(ClientInfo::new(peer));
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(handler(request, client).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(server = name, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(server = name, "stopped accepting; draining connections");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            ?drain_timeout,
            "drain timed out; closing connections"
        );
    }
}

/// Completes once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
