//! Raw HTTP/1.1 over a TCP socket, for what a well-behaved client library will not send or
//! hides: request targets exactly as an attacker writes them (`/pub/../admin`, `/%61dmin`,
//! `\`), and the response's status line as the proxy wrote it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read to the end of a `connection: close` exchange.
#[derive(Debug)]
pub struct RawResponse {
    /// The first line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    /// Everything after the head (as sent: chunked framing is not undone).
    pub body: String,
}

/// Sends `GET <target> HTTP/1.1` with `headers` and `connection: close` to `addr`
/// (`host:port`) and reads the whole answer, within 5 s.
pub async fn get(addr: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write the request");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to GET {target} within 5 s"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?} (GET {target})"));
    RawResponse {
        status_line,
        status,
        body: body.to_owned(),
    }
}
