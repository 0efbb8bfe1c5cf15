//! One health probe: a TCP connect, or an HTTP/1.1 `GET <path>` on a fresh connection whose
//! status must be 2xx — bounded by the check's timeout. No pooling: a probe also proves that
//! new connections work.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange failed: {0}")]
    Http(#[source] hyper::Error),
    #[error("bad request for path {0:?}")]
    Request(String),
    #[error("status {0}")]
    Status(u16),
    #[error("connection closed before the response")]
    Closed,
}

/// Probes `address` (`host:port`): TCP when `path` is `None`, else HTTP GET `path`.
pub async fn probe(address: &str, path: Option<&str>, timeout: Duration) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, exchange(address, path))
        .await
        .map_err(|_| ProbeError::Timeout)?
}

async fn exchange(address: &str, path: Option<&str>) -> Result<(), ProbeError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(ProbeError::Connect)?;
    let Some(path) = path else { return Ok(()) };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProbeError::Http)?;
    let request = Request::get(path)
        .header(header::HOST, address)
        .header(header::USER_AGENT, "switchyard-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeError::Request(path.to_owned()))?;
    let connection = async move {
        // Drives the connection; ends when the probe is done and `sender` is dropped.
        let _ = connection.await;
    };
    tokio::pin!(connection);
    let response = tokio::select! {
        response = sender.send_request(request) => response.map_err(ProbeError::Http)?,
        () = &mut connection => return Err(ProbeError::Closed),
    };
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(response.status().as_u16()))
    }
}
