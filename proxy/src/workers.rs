//! Traffic workers: one OS thread per worker, each with a current-thread Tokio runtime serving
//! its own listener ([`crate::listeners`]). A request lives and dies on one thread — its
//! client connection, its filters, its upstream connection (each worker has its own idle
//! stack in every endpoint pool) — so the request path has no cross-thread wake-ups and no
//! work-stealing scheduler. A worker holds only a [`WorkerHandle`] (the snapshot cell and its
//! own counters). The control side (xDS client, admin, reports, the supervisor's health checks)
//! runs on the caller's runtime, apart from traffic, as Envoy's main thread does.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::endpoint::pool;
use crate::forwarding::ClientInfo;
use crate::handler::{self, WorkerHandle};
use crate::{server, usage};

/// A running worker; [`Worker::join`] waits until it has drained and stopped.
#[derive(Debug)]
pub struct Worker {
    done: oneshot::Receiver<()>,
}

impl Worker {
    /// Starts worker `index` serving `listener` until `stop` turns true.
    pub fn spawn(
        index: usize,
        listener: std::net::TcpListener,
        handle: WorkerHandle,
        stop: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                pool::enter_worker(index);
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(worker = index, %error, "cannot adopt the listener");
                            return;
                        }
                    };
                    let flusher = tokio::spawn(usage::flush_every_second(handle.usage.clone()));
                    let sink = handle.usage.clone();
                    let handle = Arc::new(handle);
                    let handler = move |request, client: Arc<ClientInfo>| {
                        let handle = Arc::clone(&handle);
                        async move { handler::handle(&handle, &client, request).await }
                    };
                    server::serve("proxy", listener, handler, stop, drain_timeout).await;
                    // Drained: what the last requests counted goes out before the reports stop.
                    flusher.abort();
                    usage::flush(&sink, &mut 0);
                });
                // Upstream connection tasks of this worker end with its runtime.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        Ok(Self { done })
    }

    /// Completes once the worker has drained its connections and stopped.
    pub async fn join(self) {
        let _ = self.done.await;
    }
}
