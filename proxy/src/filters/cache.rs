//! `cache`: a per-route, in-memory response cache for GET and HEAD.
//!
//! - Key: the caller's identity when the route authenticated one (consumer name or JWT `sub`),
//!   then method + host + path + query, plus the request's values of the headers the stored
//!   response `Vary`s on (`Vary: *` is never stored). An authenticated response is therefore
//!   only ever served to the same identity: each consumer has its own partition of the cache.
//! - Freshness: the route's `ttl_s`, shortened by the upstream's `s-maxage` / `max-age`;
//!   `no-store`, `no-cache`, `private` and `set-cookie` responses are not stored, and neither
//!   are responses to requests that carry a credential the proxy did not consume
//!   (`authorization` or `x-api-key` forwarded to the upstream) unless the upstream says
//!   `public` / `s-maxage` (RFC 9111 §3.5). A client's `cache-control: no-cache` / `no-store`
//!   skips the lookup.
//! - Memory: at most [`MAX_ENTRY_BYTES`] per response and [`MAX_TOTAL_BYTES`] per route,
//!   least-recently-used first out. A response is stored as it streams to the client
//!   ([`StoreOnEnd`]): nothing waits for the cache, and a body that outgrows the entry limit
//!   simply is not stored.
//! - The cache lives across config updates while the route's name and `ttl_s` are unchanged.
//!
//! Responses carry `x-cache: HIT` or `MISS` and, on hits, `age`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use hyper::body::{Body, Frame, SizeHint};

use super::{BuildContext, Outcome, Policy, RequestContext, keep_if_unchanged};
use crate::body::{BodyError, ProxyBody, full};
use crate::error::ProxyError;
use crate::filters::auth::X_API_KEY;
use crate::model::{CacheSpec, RouteSpec};

pub const MAX_ENTRY_BYTES: usize = 1 << 20;
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Statuses stored (RFC 9110's heuristically cacheable ones that make sense here).
const CACHEABLE: [u16; 8] = [200, 203, 204, 300, 301, 308, 404, 410];

/// A stored response.
#[derive(Debug)]
pub struct Cached {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    expires: Instant,
}

#[derive(Debug)]
struct Entry {
    cached: Arc<Cached>,
    tick: u64,
    size: usize,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<Box<str>, Entry>,
    /// Use order: tick → key.
    lru: BTreeMap<u64, Box<str>>,
    /// Primary key → the header names its last stored response varied on.
    vary: HashMap<Box<str>, Box<[HeaderName]>>,
    tick: u64,
    bytes: usize,
}

/// One route's cache.
#[derive(Debug)]
pub struct ResponseCache {
    spec: CacheSpec,
    max_total: usize,
    max_entry: usize,
    store: Mutex<Store>,
}

/// A request that missed: what is needed to store its response.
#[derive(Debug)]
pub struct Miss {
    primary: Box<str>,
    /// The request's headers (for the `Vary` values).
    request_headers: HeaderMap,
    /// The request still carries a credential for the upstream (not consumed by the proxy).
    forwards_credential: bool,
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    Hit(Response<ProxyBody>),
    Miss(Miss),
    /// Not a cacheable request (method).
    Bypass,
}

impl ResponseCache {
    pub fn new(spec: CacheSpec) -> Self {
        Self::with_limits(spec, MAX_TOTAL_BYTES, MAX_ENTRY_BYTES)
    }

    pub fn with_limits(spec: CacheSpec, max_total: usize, max_entry: usize) -> Self {
        Self {
            spec,
            max_total,
            max_entry: max_entry.min(max_total),
            store: Mutex::default(),
        }
    }

    pub fn spec(&self) -> CacheSpec {
        self.spec
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks `request` up in the partition of `identity` (who the route's auth says called;
    /// `None` for an unauthenticated route).
    pub fn lookup(&self, parts: &http::request::Parts, identity: Option<&str>) -> Lookup {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Lookup::Bypass;
        }
        let primary = primary_key(identity, &parts.method, &parts.uri, &parts.headers);
        let skip =
            directives(&parts.headers).any(|(name, _)| name == "no-cache" || name == "no-store");
        if !skip {
            let now = Instant::now();
            let mut store = self.lock();
            let key = match store.vary.get(&*primary) {
                Some(names) => full_key(&primary, names, &parts.headers),
                None => primary.clone().into(),
            };
            let found = store.entries.get(&key).map(|e| Arc::clone(&e.cached));
            match found {
                Some(cached) if cached.expires > now => {
                    store.touch(&key);
                    drop(store);
                    return Lookup::Hit(cached.to_response(now));
                }
                Some(_) => store.remove(&key),
                None => {}
            }
        }
        Lookup::Miss(Miss {
            primary: primary.into(),
            request_headers: parts.headers.clone(),
            forwards_credential: parts.headers.contains_key(header::AUTHORIZATION)
                || parts.headers.contains_key(&X_API_KEY),
        })
    }

    /// Wraps `response`'s body so it is stored when it ends, when the response may be stored.
    pub fn store_on_end(
        self: &Arc<Self>,
        miss: Miss,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let Some(ttl) = storable_for(
            response.status(),
            response.headers(),
            self.spec.ttl,
            miss.forwards_credential,
        ) else {
            return response;
        };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > self.max_entry) {
            return response;
        }
        let vary: Box<[HeaderName]> = vary_names(response.headers());
        let key = full_key(&miss.primary, &vary, &miss.request_headers);
        let (parts, body) = response.into_parts();
        let pending = Pending {
            cache: Arc::clone(self),
            primary: miss.primary,
            key,
            vary,
            status: parts.status,
            headers: parts.headers.clone(),
            ttl,
            buffer: BytesMut::new(),
        };
        let mut body = StoreOnEnd {
            inner: body,
            pending: Some(pending),
        };
        if body.inner.is_end_stream() {
            // Nothing to stream (e.g. HEAD): a server may never poll it.
            body.finish();
        }
        Response::from_parts(parts, http_body_util::BodyExt::boxed(body))
    }

    fn insert(&self, pending: Pending, body: Bytes) {
        let now = Instant::now();
        let size = body.len() + pending.key.len() + header_bytes(&pending.headers);
        if size > self.max_entry {
            return;
        }
        let cached = Arc::new(Cached {
            status: pending.status,
            headers: pending.headers,
            body,
            stored: now,
            expires: now + pending.ttl,
        });
        let mut store = self.lock();
        store.remove(&pending.key);
        while store.bytes + size > self.max_total {
            let Some((_, oldest)) = store.lru.pop_first() else {
                break;
            };
            if let Some(entry) = store.entries.remove(&oldest) {
                store.bytes -= entry.size;
            }
        }
        if store.vary.len() > 2 * store.entries.len() + 64 {
            // Stale vary lists of evicted entries: forget them all (lookups just miss).
            store.vary.clear();
        }
        if pending.vary.is_empty() {
            store.vary.remove(&pending.primary);
        } else {
            store.vary.insert(pending.primary, pending.vary);
        }
        store.tick += 1;
        let tick = store.tick;
        store.lru.insert(tick, pending.key.clone());
        store.bytes += size;
        store
            .entries
            .insert(pending.key, Entry { cached, tick, size });
    }

    /// Bytes held (bodies, keys and headers).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store {
    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(key) {
            if let Some(key) = self.lru.remove(&entry.tick) {
                self.lru.insert(tick, key);
            }
            entry.tick = tick;
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.lru.remove(&entry.tick);
            self.bytes -= entry.size;
        }
    }
}

impl Cached {
    fn to_response(&self, now: Instant) -> Response<ProxyBody> {
        let mut response = Response::new(full(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        let age = now.duration_since(self.stored).as_secs();
        response.headers_mut().insert(header::AGE, age.into());
        response
    }
}

/// `METHOD host/path?query`, prefixed with `\0identity\0` for an authenticated request.
///
/// The prefix makes the partitions disjoint: an identity is a valid header value (no NUL),
/// and no unauthenticated key starts with NUL (it starts with the method) or contains one
/// (paths and the `Vary` values appended by [`full_key`] cannot hold NUL either).
pub fn primary_key(
    identity: Option<&str>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let host = host.to_ascii_lowercase();
    match identity {
        Some(identity) => format!("\0{identity}\0{method} {host}{path}"),
        None => format!("{method} {host}{path}"),
    }
}

/// The primary key plus, per `Vary` header name, the request's values.
pub fn full_key(primary: &str, vary: &[HeaderName], request: &HeaderMap) -> Box<str> {
    let mut key = String::from(primary);
    for name in vary {
        key.push('\n');
        key.push_str(name.as_str());
        key.push(':');
        for (i, value) in request.get_all(name).iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
    key.into()
}

/// Lowercase `Cache-Control` directives: `(name, value)`.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let directive = directive.trim();
            if directive.is_empty() {
                return None;
            }
            Some(match directive.split_once('=') {
                Some((name, value)) => (
                    name.trim().to_ascii_lowercase(),
                    Some(value.trim().trim_matches('"').to_owned()),
                ),
                None => (directive.to_ascii_lowercase(), None),
            })
        })
}

/// How long a response may be stored, or `None` when it may not.
pub fn storable_for(
    status: StatusCode,
    headers: &HeaderMap,
    ttl: Duration,
    request_forwards_credential: bool,
) -> Option<Duration> {
    if !CACHEABLE.contains(&status.as_u16()) || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    if vary_names(headers).iter().any(|name| name == "*")
        || headers.get_all(header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|p| p.trim_ascii() == b"*")
        })
    {
        return None;
    }
    let mut max_age = None;
    let mut shared_max_age = None;
    let mut public = false;
    for (name, value) in directives(headers) {
        match name.as_str() {
            "no-store" | "no-cache" | "private" => return None,
            "public" => public = true,
            "max-age" => max_age = value.and_then(|v| v.parse::<u64>().ok()).or(Some(0)),
            "s-maxage" => shared_max_age = value.and_then(|v| v.parse::<u64>().ok()).or(Some(0)),
            _ => {}
        }
    }
    if request_forwards_credential && !public && shared_max_age.is_none() {
        return None;
    }
    let ttl = match shared_max_age.or(max_age) {
        Some(seconds) => ttl.min(Duration::from_secs(seconds)),
        None => ttl,
    };
    (!ttl.is_zero()).then_some(ttl)
}

fn vary_names(headers: &HeaderMap) -> Box<[HeaderName]> {
    let mut names: Vec<HeaderName> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names.into()
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// A response on its way to the cache.
struct Pending {
    cache: Arc<ResponseCache>,
    primary: Box<str>,
    key: Box<str>,
    vary: Box<[HeaderName]>,
    status: StatusCode,
    headers: HeaderMap,
    ttl: Duration,
    buffer: BytesMut,
}

/// Streams a response to the client and keeps a copy; stores it when the body ends whole
/// within the entry limit. An error, trailers or an oversized body drop the copy.
struct StoreOnEnd {
    inner: ProxyBody,
    pending: Option<Pending>,
}

impl StoreOnEnd {
    /// Stores the copy now (the body is complete).
    fn finish(&mut self) {
        if let Some(mut pending) = self.pending.take() {
            let body = std::mem::take(&mut pending.buffer).freeze();
            let cache = Arc::clone(&pending.cache);
            cache.insert(pending, body);
        }
    }
}

impl Body for StoreOnEnd {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match (frame.data_ref(), &mut this.pending) {
                (Some(data), Some(pending)) => {
                    if pending.buffer.len() + data.len() > pending.cache.max_entry {
                        this.pending = None;
                    } else {
                        pending.buffer.extend_from_slice(data);
                        // A server that knows the length stops polling after the last byte.
                        if this.inner.is_end_stream() {
                            this.finish();
                        }
                    }
                }
                (None, _) => this.pending = None,
                _ => {}
            },
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What one request keeps: its `x-cache` verdict and, on a miss, what storing needs.
#[derive(Debug, Default)]
pub struct CacheState {
    verdict: Option<HeaderValue>,
    miss: Option<Miss>,
}

impl Policy for Arc<ResponseCache> {
    type State = CacheState;

    fn build(route: &RouteSpec, _: &BuildContext<'_>, previous: Option<&Self>) -> Option<Self> {
        let spec = route.policies.cache?;
        Some(keep_if_unchanged(
            previous,
            spec,
            ResponseCache::spec,
            ResponseCache::new,
        ))
    }

    async fn request(
        &self,
        parts: &mut Parts,
        ctx: &mut RequestContext<'_>,
        state: &mut CacheState,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        let identity = ctx.identity.as_ref().map(|identity| &*identity.name);
        match self.lookup(parts, identity) {
            Lookup::Hit(response) => {
                state.verdict = Some(HeaderValue::from_static("HIT"));
                Ok(Some(response))
            }
            Lookup::Miss(miss) => {
                state.verdict = Some(HeaderValue::from_static("MISS"));
                state.miss = Some(miss);
                Ok(None)
            }
            Lookup::Bypass => Ok(None),
        }
    }

    async fn response(&self, outcome: Outcome, state: &mut CacheState) -> Outcome {
        match (outcome, state.miss.take()) {
            (Ok(response), Some(miss)) => Ok(self.store_on_end(miss, response)),
            (outcome, _) => outcome,
        }
    }

    fn decorate(&self, headers: &mut HeaderMap, state: &CacheState) {
        if let Some(verdict) = &state.verdict {
            headers.insert(X_CACHE.clone(), verdict.clone());
        }
    }
}

#[cfg(test)]
mod tests;
