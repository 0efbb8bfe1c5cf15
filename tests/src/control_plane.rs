//! The `control-plane` binary in the sandbox: started on free ports of 127.0.0.1 with a database
//! of its own (or one shared with other replicas), waited for until `GET /healthz` answers 200,
//! killed and restarted on the same ports and database. Small clients for the REST admin API and
//! the fleet, health and revision views.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderMap;
use serde_json::Value;

use crate::binaries::binaries;
use crate::client::HttpClient;
use crate::database::{Database, Db};
use crate::ports::free_addr;
use crate::process::Process;
use crate::scratch::Scratch;
use crate::wait::wait_until;

/// Bound on the start of a control plane (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A REST admin API answer. `json` is `Value::Null` for an empty body and the raw text as a
/// `Value::String` for a body that is not JSON.
#[derive(Clone, Debug)]
pub struct ApiReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

impl ApiReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the process goes before its log dir and its database.
    process: Process,
    client: HttpClient,
    admin_addr: SocketAddr,
    xds_addr: SocketAddr,
    admin_token: Option<String>,
    database: Arc<Database>,
    _scratch: Scratch,
}

impl ControlPlane {
    /// Starts a control plane on a fresh database of kind `db`.
    pub async fn start(db: Db) -> Self {
        Self::start_on(Database::create(db), None).await
    }

    /// Starts a control plane on `database` (shared with other replicas when cloned), with an
    /// admin token if given.
    pub async fn start_on(database: Arc<Database>, admin_token: Option<&str>) -> Self {
        Self::start_with(database, admin_token, &[]).await
    }

    /// Like [`ControlPlane::start_on`], with extra command-line arguments.
    pub async fn start_with(
        database: Arc<Database>,
        admin_token: Option<&str>,
        extra_args: &[&str],
    ) -> Self {
        let scratch = Scratch::new("control-plane");
        let admin_addr = free_addr();
        let xds_addr = free_addr();
        let mut args = vec![
            "--database-url".to_owned(),
            database.url().to_owned(),
            "--admin-addr".to_owned(),
            admin_addr.to_string(),
            "--xds-addr".to_owned(),
            xds_addr.to_string(),
        ];
        if let Some(token) = admin_token {
            args.extend(["--admin-token".to_owned(), token.to_owned()]);
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let name = format!("control-plane@{admin_addr}");
        let log = scratch.path().join("control-plane.log");
        let process = Process::spawn(&name, &binaries().control_plane, args, log);
        let mut control_plane = ControlPlane {
            process,
            client: HttpClient::new(),
            admin_addr,
            xds_addr,
            admin_token: admin_token.map(str::to_owned),
            database,
            _scratch: scratch,
        };
        control_plane.wait_healthy().await;
        control_plane
    }

    /// SIGKILL: no graceful shutdown, as in a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the control plane again on the same ports and database (killing it first if it
    /// still runs) and waits for `/healthz`.
    pub async fn restart(&mut self) {
        self.process.respawn();
        // Connections pooled to the previous process are dead.
        self.client = HttpClient::new();
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let url = format!("{}/healthz", self.admin_url());
        let client = self.client.clone();
        let healthy = wait_until(START_TIMEOUT, async || {
            matches!(client.send("GET", &url, &[], Default::default()).await, Ok(r) if r.status == 200)
        })
        .await;
        self.process.assert_running("starting");
        assert!(
            healthy,
            "{} did not answer GET /healthz with 200 within {START_TIMEOUT:?}; log {}:\n{}",
            self.process.name(),
            self.process.log_path().display(),
            self.process.log_tail(40)
        );
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// `http://127.0.0.1:<xds port>`, for the proxy's `--control-plane`.
    pub fn xds_url(&self) -> String {
        format!("http://{}", self.xds_addr)
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    // ----- REST admin API -----

    /// Any method on the admin API; panics only when no HTTP answer comes.
    pub async fn call(&self, method: &str, path: &str, json: Option<&Value>) -> ApiReply {
        let url = format!("{}{path}", self.admin_url());
        let bearer = self.admin_token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let response = self
            .client
            .send_json(method, &url, &headers, json)
            .await
            .unwrap_or_else(|e| panic!("{} gave no answer: {e}", self.process.name()));
        let json = if response.body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&response.body)
                .unwrap_or_else(|_| Value::String(response.text()))
        };
        ApiReply {
            status: response.status,
            headers: response.headers,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> ApiReply {
        self.call("GET", path, None).await
    }

    pub async fn put(&self, path: &str, json: &Value) -> ApiReply {
        self.call("PUT", path, Some(json)).await
    }

    pub async fn post(&self, path: &str, json: &Value) -> ApiReply {
        self.call("POST", path, Some(json)).await
    }

    pub async fn delete(&self, path: &str) -> ApiReply {
        self.call("DELETE", path, None).await
    }

    /// Like [`call`](Self::call), panicking unless the status is 2xx; returns the JSON body.
    pub async fn must(&self, method: &str, path: &str, json: Option<&Value>) -> Value {
        let reply = self.call(method, path, json).await;
        assert!(
            reply.is_success(),
            "{method} {path} answered {}: {}",
            reply.status,
            excerpt(&reply.json)
        );
        reply.json
    }

    /// `PUT /api/v1/clusters/{spec.name}`, must succeed.
    pub async fn put_cluster(&self, spec: &Value) -> Value {
        self.must(
            "PUT",
            &format!("/api/v1/clusters/{}", name_of(spec)),
            Some(spec),
        )
        .await
    }

    /// `PUT /api/v1/routes/{spec.name}`, must succeed.
    pub async fn put_route(&self, spec: &Value) -> Value {
        self.must(
            "PUT",
            &format!("/api/v1/routes/{}", name_of(spec)),
            Some(spec),
        )
        .await
    }

    /// Creates consumer `name` (no scopes) and one API key for it; returns the key.
    pub async fn consumer_with_key(&self, name: &str) -> String {
        let consumer = serde_json::json!({ "name": name });
        self.must("PUT", &format!("/api/v1/consumers/{name}"), Some(&consumer))
            .await;
        let empty = serde_json::json!({});
        self.must(
            "POST",
            &format!("/api/v1/consumers/{name}/keys"),
            Some(&empty),
        )
        .await["key"]
            .as_str()
            .expect("the key, shown once")
            .to_owned()
    }

    /// `DELETE /api/v1/routes/{name}`, must succeed.
    pub async fn delete_route(&self, name: &str) {
        self.must("DELETE", &format!("/api/v1/routes/{name}"), None)
            .await;
    }

    // ----- fleet and revisions -----

    /// `GET /api/v1/proxies`: the fleet view, an array.
    pub async fn proxies(&self) -> Vec<Value> {
        let view = self.must("GET", "/api/v1/proxies", None).await;
        match view {
            Value::Array(proxies) => proxies,
            other => panic!(
                "GET /api/v1/proxies is not a JSON array: {}",
                excerpt(&other)
            ),
        }
    }

    /// The fleet-view entry of `node_id`, if the control plane has seen it.
    pub async fn proxy_status(&self, node_id: &str) -> Option<Value> {
        self.proxies()
            .await
            .into_iter()
            .find(|p| p.get("node_id").and_then(Value::as_str) == Some(node_id))
    }

    /// Whether the fleet view shows `node_id` with `connected: true`.
    pub async fn is_connected(&self, node_id: &str) -> bool {
        self.proxy_status(node_id)
            .await
            .is_some_and(|p| p.get("connected") == Some(&Value::Bool(true)))
    }

    /// `GET /api/v1/health`: `{"clusters": [{"name", "endpoints": [{"address", "healthy",
    /// "unhealthy", "last_change", "unhealthy_on"}]}]}`.
    pub async fn health(&self) -> Value {
        self.must("GET", "/api/v1/health", None).await
    }

    /// The health-view entry of endpoint `address` of `cluster`, if any proxy reports it.
    pub async fn endpoint_health(&self, cluster: &str, address: &str) -> Option<Value> {
        let view = self.health().await;
        view.get("clusters")?
            .as_array()?
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(cluster))?
            .get("endpoints")?
            .as_array()?
            .iter()
            .find(|e| e.get("address").and_then(Value::as_str) == Some(address))
            .cloned()
    }

    /// The `number` of the newest revision (`GET /api/v1/revisions`, newest first).
    pub async fn latest_revision(&self) -> i64 {
        let revisions = self.must("GET", "/api/v1/revisions", None).await;
        let Some(newest) = revisions.as_array().and_then(|r| r.first()) else {
            panic!(
                "GET /api/v1/revisions is not a non-empty JSON array: {}",
                excerpt(&revisions)
            );
        };
        newest
            .get("number")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("newest revision has no integer `number`: {newest}"))
    }

    /// Whether every one of `node_ids` is connected and has ACKed the newest revision.
    pub async fn fleet_in_sync(&self, node_ids: &[&str]) -> bool {
        let latest = self.latest_revision().await;
        let proxies = self.proxies().await;
        node_ids.iter().all(|node_id| {
            proxies.iter().any(|p| {
                p.get("node_id").and_then(Value::as_str) == Some(*node_id)
                    && p.get("connected") == Some(&Value::Bool(true))
                    && p.get("config_revision").and_then(Value::as_i64) == Some(latest)
            })
        })
    }
}

fn name_of(spec: &Value) -> &str {
    spec.get("name")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("resource spec without a `name`: {spec}"))
}

/// The first 400 characters of a JSON value, for assertion messages.
pub fn excerpt(json: &Value) -> String {
    json.to_string().chars().take(400).collect()
}
