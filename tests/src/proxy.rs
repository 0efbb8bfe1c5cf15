//! The `proxy` binary in the sandbox: started against one or more control planes on free ports of
//! 127.0.0.1, waited for until its admin `/ready` answers 200 (it holds a complete config), with a
//! client for its listener and its admin endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::binaries::binaries;
use crate::client::{ClientError, HttpClient, Response};
use crate::ports::free_addr;
use crate::process::Process;
use crate::scratch::Scratch;
use crate::wait::wait_until;

/// Bound on a proxy's first complete config.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    // Field order is drop order: the process goes before its log dir.
    process: Process,
    client: HttpClient,
    node_id: String,
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
    _scratch: Scratch,
}

impl Proxy {
    /// Starts `proxy --control-plane <cp_urls> --node-id <node_id> [--labels <labels>]` and
    /// waits for `/ready`. `cp_urls` is comma-separated; `labels` is `key=value,…` or empty.
    pub async fn start(cp_urls: &str, node_id: &str, labels: &str) -> Self {
        let mut proxy = Self::spawn(cp_urls, node_id, labels, &[]);
        proxy.wait_ready().await;
        proxy
    }

    /// Starts a proxy with extra command-line arguments, without waiting for `/ready`.
    pub fn spawn(cp_urls: &str, node_id: &str, labels: &str, extra_args: &[&str]) -> Self {
        let scratch = Scratch::new(&format!("proxy-{node_id}"));
        let listen_addr = free_addr();
        let admin_addr = free_addr();
        let mut args = vec![
            "--control-plane".to_owned(),
            cp_urls.to_owned(),
            "--listen".to_owned(),
            listen_addr.to_string(),
            "--admin-addr".to_owned(),
            admin_addr.to_string(),
            "--node-id".to_owned(),
            node_id.to_owned(),
        ];
        if !labels.is_empty() {
            args.extend(["--labels".to_owned(), labels.to_owned()]);
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let log = scratch.path().join("proxy.log");
        let process = Process::spawn(&format!("proxy {node_id}"), &binaries().proxy, args, log);
        Proxy {
            process,
            client: HttpClient::new(),
            node_id: node_id.to_owned(),
            listen_addr,
            admin_addr,
            _scratch: scratch,
        }
    }

    /// Waits (bounded) until the proxy answers `/ready` with 200; fails the test otherwise.
    pub async fn wait_ready(&mut self) {
        let ready = wait_until(
            READY_TIMEOUT,
            async || matches!(self.admin_get("/ready").await, Ok(r) if r.status == 200),
        )
        .await;
        self.process.assert_running("starting");
        assert!(
            ready,
            "proxy {} not /ready within {READY_TIMEOUT:?}; log {}:\n{}",
            self.node_id,
            self.process.log_path().display(),
            self.process.log_tail(40)
        );
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `http://127.0.0.1:<listen port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen_addr)
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// A request through the proxy's listener.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{path}", self.url());
        self.client.send(method, &url, headers, body).await
    }

    /// `GET path` through the proxy; panics when no HTTP answer comes.
    pub async fn get(&self, path: &str) -> Response {
        self.get_with(path, &[]).await
    }

    /// `GET path` with headers through the proxy; panics when no HTTP answer comes.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("proxy {} gave no answer: {e}", self.node_id))
    }

    /// The status of `GET path` through the proxy, `None` when no HTTP answer comes.
    pub async fn status_of(&self, path: &str) -> Option<u16> {
        self.request("GET", path, &[], Bytes::new())
            .await
            .ok()
            .map(|r| r.status)
    }

    /// `GET path` on the proxy's admin address (`/ready`, `/config_dump`, `/metrics`).
    pub async fn admin_get(&self, path: &str) -> Result<Response, ClientError> {
        let url = format!("{}{path}", self.admin_url());
        self.client.send("GET", &url, &[], Bytes::new()).await
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits (bounded) for the proxy to exit on its own; its exit code, `None` if it kept
    /// running or died by a signal.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return status.and_then(|status| status.code());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
