//! Keys from a `jwks_uri`: fetched by the proxy, cached, refetched when a token names an
//! unknown `kid` and on a timer.
//!
//! Readers load the current [`KeySet`] from an `ArcSwap` and never wait on a fetch. A miss
//! goes through `RemoteKeys::refetch_if_due`: it starts a fetch in the background when one is
//! due (at most one per `min_refetch_interval`, one at a time — the fetch runs in its own task
//! behind a `tokio` mutex, so a request that gives up does not cancel it), then waits for a
//! fetch to complete for at most `unknown_kid_wait`; callers that arrive while a fetch runs
//! share its result. A request is never held longer than that bound, however slow the identity
//! provider: past it, the token's key is unknown (401). A failed fetch keeps the previous keys. Bodies are bounded by
//! [`MAX_JWKS_BYTES`], each fetch by `fetch_timeout`; redirects are not followed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::algorithms::AlgorithmSet;
use super::keys::{JwksError, KeySet, MAX_JWKS_BYTES};

#[cfg(test)]
mod tests;

/// Timing of JWKS fetches; [`Default`] suits production, tests shorten it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// Least time between two fetches (unknown-`kid` refetches and timer refreshes alike), so
    /// a flood of tokens with made-up `kid`s cannot hammer the identity provider.
    pub min_refetch_interval: Duration,
    /// Period of the background refresh once keys are loaded; until then the background task
    /// retries every `min_refetch_interval`.
    pub refresh_interval: Duration,
    /// Bound of one fetch: connect, response and body.
    pub fetch_timeout: Duration,
    /// Longest a request with an unknown `kid` waits for a fetch (which goes on without it).
    pub unknown_kid_wait: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(600),
            fetch_timeout: Duration::from_secs(5),
            unknown_kid_wait: Duration::from_secs(1),
        }
    }
}

/// Why one fetch failed (logged; the previous keys stay in use).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("body is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("body could not be read: {0}")]
    Body(String),
    #[error("document {0}")]
    Jwks(#[from] JwksError),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The keys of one provider's `jwks_uri`, shared by its verifier and its refresh task.
pub(crate) struct RemoteKeys {
    provider: String,
    uri: Uri,
    allowed: AlgorithmSet,
    options: JwksOptions,
    client: HttpsClient,
    current: ArcSwap<KeySet>,
    /// Fetches completed (success or failure); bumped after `current` is stored, so a reader
    /// that saw `n` before loading keys has keys at least as new as fetch `n`.
    completed: AtomicU64,
    /// Woken after each completed fetch.
    fetched: Notify,
    /// A background fetch for a miss has been started and has not finished.
    miss_fetch_running: AtomicBool,
    /// Start of the last completed fetch, in ms after `epoch`; [`NEVER`] before the first.
    last_fetch_ms: AtomicU64,
    epoch: Instant,
    /// Held for the whole of a fetch: the single-flight gate.
    gate: tokio::sync::Mutex<()>,
}

/// `last_fetch_ms` before any fetch completed.
const NEVER: u64 = u64::MAX;

impl RemoteKeys {
    pub fn new(provider: String, uri: Uri, allowed: AlgorithmSet, options: JwksOptions) -> Self {
        Self {
            provider,
            uri,
            allowed,
            options,
            client: https_client(options.fetch_timeout),
            current: ArcSwap::from_pointee(KeySet::default()),
            completed: AtomicU64::new(0),
            fetched: Notify::new(),
            miss_fetch_running: AtomicBool::new(false),
            last_fetch_ms: AtomicU64::new(NEVER),
            epoch: Instant::now(),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// How many fetches have completed; read it *before* [`Self::current`].
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// The current keys (empty until the first successful fetch). Lock-free.
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// After a miss: unless a fetch completed since the caller's `seen` (then its result is
    /// already in [`Self::current`]), starts a background fetch when one is due, and waits for
    /// a running fetch to complete — at most `unknown_kid_wait`. Returns at once when no fetch
    /// runs and none is due.
    pub async fn refetch_if_due(self: &Arc<Self>, seen: u64) {
        let fetched = self.fetched.notified();
        tokio::pin!(fetched);
        // Registered before the checks below, so a completion in between is not missed.
        fetched.as_mut().enable();
        if self.completed() != seen {
            return;
        }
        let running = self.miss_fetch_running.load(Ordering::Acquire);
        if !running {
            if !self.due() {
                return;
            }
            if self
                .miss_fetch_running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    {
                        let _gate = this.gate.lock().await;
                        if this.completed() == seen && this.due() {
                            this.fetch("unknown kid").await;
                        }
                    }
                    this.miss_fetch_running.store(false, Ordering::Release);
                    // A fetch skipped as not due still ends the wait of those behind it.
                    this.fetched.notify_waiters();
                });
            }
        }
        let _ = tokio::time::timeout(self.options.unknown_kid_wait, fetched).await;
    }

    /// The background refresh: loads the keys at once, then every `refresh_interval`
    /// (every `min_refetch_interval` while none could be loaded). Runs until aborted or until
    /// the keys are dropped (it holds them only while fetching).
    pub async fn refresh_loop(keys: Weak<Self>) {
        loop {
            let Some(this) = keys.upgrade() else {
                return;
            };
            {
                let _gate = this.gate.lock().await;
                if this.due() {
                    this.fetch("timer").await;
                }
            }
            let delay = if this.current().is_empty() {
                this.options.min_refetch_interval
            } else {
                this.options.refresh_interval
            };
            drop(this);
            tokio::time::sleep(delay).await;
        }
    }

    fn due(&self) -> bool {
        let last = self.last_fetch_ms.load(Ordering::Acquire);
        last == NEVER || self.millis_since_epoch().saturating_sub(last) >= self.min_refetch_ms()
    }

    fn millis_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn min_refetch_ms(&self) -> u64 {
        u64::try_from(self.options.min_refetch_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// One fetch; the caller holds the gate. Recorded only once finished: a fetch cancelled
    /// (its verifier dropped) leaves the next one free to fetch.
    async fn fetch(&self, reason: &'static str) {
        let started = self.millis_since_epoch();
        let outcome = tokio::time::timeout(self.options.fetch_timeout, self.fetch_once())
            .await
            .unwrap_or(Err(FetchError::Timeout));
        match outcome {
            Ok(keys) => {
                tracing::debug!(provider = %self.provider, uri = %self.uri, reason,
                    keys = keys.len(), "jwks fetched");
                self.current.store(Arc::new(keys));
            }
            Err(error) => {
                tracing::warn!(provider = %self.provider, uri = %self.uri, reason,
                    %error, "jwks fetch failed; keeping the previous keys");
            }
        }
        self.last_fetch_ms.store(started, Ordering::Release);
        self.completed.fetch_add(1, Ordering::Release);
        self.fetched.notify_waiters();
    }

    async fn fetch_once(&self) -> Result<KeySet, FetchError> {
        let request = Request::get(self.uri.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "switchyard-proxy")
            .body(Empty::new())
            .map_err(|e| FetchError::Body(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(FetchError::Request)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Body(e.to_string())
                }
            })?
            .to_bytes();
        Ok(KeySet::parse(&body, self.allowed)?)
    }
}

/// http:// and https:// (rustls with the ring provider and the webpki roots), HTTP/1.1, no
/// idle pooling: fetches are minutes apart, and a pooled connection would outlive its runtime.
fn https_client(connect_timeout: Duration) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config().as_ref().clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Built once per process: parsing the root store is the costly part.
fn tls_config() -> &'static Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    })
}
