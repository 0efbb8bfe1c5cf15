//! Upstream HTTP/1.1 connections, pooled per endpoint.
//!
//! Each endpoint's [`EndpointState`](super::EndpointState) owns a [`ConnectionPool`], which
//! knows where it connects to and nothing else about the endpoint:
//! a LIFO stack of idle connections (the most recently used first, so a quiet period lets the
//! older ones time out). The balancer's pick *is* the pool key — no hashing of a host/port key
//! per request, no pool-wide lock. A request checks out an idle connection or opens one
//! ([`connect`]); the response body hands it back when it has been read to its end
//! ([`Pooled::release`]). A body dropped early closes the connection (HTTP/1.1 cannot abandon
//! an exchange and keep the connection).
//!
//! Each pool has one idle stack per traffic worker (the count is a snapshot build input; a
//! worker thread says which it is with [`enter_worker`]): a connection's task runs on the
//! worker that opened it, and the worker that serves a request takes connections from its own
//! stack, so an exchange never wakes another thread.
//!
//! Idle timeout: the proxy's supervisor calls [`ConnectionPool::evict_idle`] every few seconds,
//! dropping connections that have sat in their pool for [`PoolSettings::idle_timeout`]
//! (dropping the last handle of an idle HTTP/1.1 connection makes its task close the socket).
//! The request path pays nothing for it: no timer per connection or per request. A connection the upstream closed is noticed at checkout
//! (`is_ready` is false) and skipped.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::clock::monotonic_nanos;
use crate::body::ProxyBody;
use crate::error::ProxyError;

/// How long an idle upstream connection is kept by default (nginx's `keepalive_timeout` for
/// upstreams is 60 s; Envoy's is 1 h; this is hyper-util's old default).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per endpoint and worker; beyond this a returned connection is closed.
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Connect settings of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

thread_local! {
    /// The traffic worker this thread is (0 on every other thread).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as traffic worker `index`.
pub fn enter_worker(index: usize) {
    WORKER.set(index);
}

/// One endpoint's idle connections, a stack per traffic worker.
#[derive(Debug)]
pub struct ConnectionPool {
    /// `host:port` connected to.
    address: Box<str>,
    /// `address` when it is a literal `ip:port` (connecting needs no name resolution).
    socket_addr: Option<SocketAddr>,
    idle: Box<[Mutex<Vec<Idle>>]>,
    /// Connections opened to this endpoint so far (`/metrics`, tests).
    opened: AtomicU64,
}

impl ConnectionPool {
    /// An empty pool of connections to `address` (`host:port`), with one idle stack per
    /// traffic worker (at least one).
    pub fn new(address: &str, workers: usize) -> Self {
        Self {
            address: address.into(),
            socket_addr: address.parse().ok(),
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            opened: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    /// When it last went idle (see [`monotonic_nanos`]).
    idle_since: u64,
}

impl ConnectionPool {
    /// Connections opened to this endpoint since it joined the cluster.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle connections right now, over all workers (some may have been closed by the
    /// upstream since).
    pub fn idle(&self) -> usize {
        self.idle.iter().map(|stack| lock(stack).len()).sum()
    }

    /// Idle connections right now that are still open.
    #[cfg(test)]
    pub(crate) fn idle_and_open(&self) -> usize {
        self.idle
            .iter()
            .map(|stack| lock(stack).iter().filter(|c| !c.sender.is_closed()).count())
            .sum()
    }

    /// The calling worker's stack.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        lock(&self.idle[WORKER.get() % self.idle.len()])
    }

    /// The most recently used live connection, if any.
    fn checkout(&self) -> Option<Idle> {
        let mut idle = self.lock();
        while let Some(candidate) = idle.pop() {
            if candidate.sender.is_ready() {
                return Some(candidate);
            }
            // Closed by the upstream while idle: dropping it is all there is to do.
        }
        None
    }

    fn checkin(&self, mut connection: Idle) {
        connection.idle_since = monotonic_nanos();
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(connection);
        }
    }

    /// Drops the connections idle for `idle_timeout` or more, and those already closed;
    /// returns how many were dropped.
    pub fn evict_idle(&self, idle_timeout: Duration) -> usize {
        self.idle
            .iter()
            .map(|stack| evict_expired(stack, idle_timeout))
            .sum()
    }
}

fn lock(stack: &Mutex<Vec<Idle>>) -> std::sync::MutexGuard<'_, Vec<Idle>> {
    // A panic while holding this lock leaves a plain Vec behind: still consistent.
    stack
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops the connections of `stack` idle for `idle_timeout` or more, and those closed.
fn evict_expired(stack: &Mutex<Vec<Idle>>, idle_timeout: Duration) -> usize {
    let timeout = u64::try_from(idle_timeout.as_nanos()).unwrap_or(u64::MAX);
    let now = monotonic_nanos();
    let evicted: Vec<Idle> = {
        let mut idle = lock(stack);
        let (evicted, kept) = idle.drain(..).partition(|connection: &Idle| {
            now.saturating_sub(connection.idle_since) >= timeout || connection.sender.is_closed()
        });
        *idle = kept;
        evicted
    };
    evicted.len() // the connections close as `evicted` drops, outside the lock
}

/// A connection carrying one exchange. Give it back with [`Pooled::release`] once the
/// response has been read to its end; dropping it instead closes the connection.
#[derive(Debug)]
pub struct Pooled {
    connection: Idle,
}

impl Pooled {
    /// Returns the connection to `home` (the pool it was opened from): at once when it can
    /// take the next request, else as soon as its task has caught up with the end of the
    /// exchange.
    pub fn release(self, home: &Arc<ConnectionPool>) {
        let mut connection = self.connection;
        if connection.sender.is_ready() {
            home.checkin(connection);
        } else if !connection.sender.is_closed() {
            let home = Arc::clone(home);
            tokio::spawn(async move {
                if connection.sender.ready().await.is_ok() {
                    home.checkin(connection);
                }
            });
        }
    }
}

/// Sends `request` (origin-form URI, `Host` set) to `endpoint` over an idle connection or a
/// new one, and waits for the response head. A pooled connection that turns out to have been
/// closed before the request was written (the upstream's keep-alive timer won the race) costs
/// nothing: the request goes out once more on a new connection.
pub async fn send(
    endpoint: &ConnectionPool,
    settings: PoolSettings,
    request: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Pooled), ProxyError> {
    let (mut connection, reused) = match endpoint.checkout() {
        Some(idle) => (idle, true),
        None => (connect(endpoint, settings).await?, false),
    };
    let error = match connection.sender.try_send_request(request).await {
        Ok(response) => return Ok((response, Pooled { connection })),
        Err(error) => error,
    };
    let mut error = error;
    match error.take_message() {
        Some(request) if reused => {
            tracing::debug!(endpoint = %endpoint.address, "idle upstream connection was closed; reconnecting");
            let mut connection = connect(endpoint, settings).await?;
            match connection.sender.send_request(request).await {
                Ok(response) => Ok((response, Pooled { connection })),
                Err(error) => Err(exchange_failed(endpoint, &error)),
            }
        }
        _ => Err(exchange_failed(endpoint, error.error())),
    }
}

fn exchange_failed(endpoint: &ConnectionPool, error: &hyper::Error) -> ProxyError {
    tracing::debug!(endpoint = %endpoint.address, %error, "upstream exchange failed");
    ProxyError::UpstreamReset
}

async fn connect(endpoint: &ConnectionPool, settings: PoolSettings) -> Result<Idle, ProxyError> {
    let address = &*endpoint.address;
    let connecting = async {
        let stream = match endpoint.socket_addr {
            Some(addr) => TcpStream::connect(addr).await?,
            None => connect_by_name(address).await?,
        };
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    };
    let stream = match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(endpoint = %address, %error, "upstream connect failed");
            return Err(ProxyError::UpstreamConnect);
        }
        Err(_) => {
            tracing::debug!(endpoint = %address, "upstream connect timed out");
            return Err(ProxyError::UpstreamConnect);
        }
    };
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| {
            tracing::debug!(endpoint = %address, %error, "upstream handshake failed");
            ProxyError::UpstreamConnect
        })?;
    endpoint.opened.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(Idle {
        sender,
        idle_since: monotonic_nanos(),
    })
}

/// Tries each address `host:port` resolves to, in order.
async fn connect_by_name(address: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the name resolved to no address")))
}

#[cfg(test)]
mod tests;
