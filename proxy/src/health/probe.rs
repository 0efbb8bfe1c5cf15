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
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        response = &mut send => response,
        // An upstream that closes after answering (HTTP/1.0, `Connection: close`) may end the
        // connection in the same poll that reads the response: the response (or the error)
        // has been handed to `send` by then.
        () = &mut connection => send.await,
    }
    .map_err(ProbeError::Http)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(response.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream that closes right after answering (as HTTP/1.0 servers such as
    /// `python3 -m http.server`, or any `Connection: close` one, do) passes every probe.
    #[tokio::test]
    async fn an_answer_followed_by_a_close_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                // Answered after a moment, in one write, then closed.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        for attempt in 0..20 {
            let result = probe(&address, Some("/health"), Duration::from_secs(2)).await;
            assert!(result.is_ok(), "probe {attempt}: {result:?}");
        }
        server.abort();
    }
}
