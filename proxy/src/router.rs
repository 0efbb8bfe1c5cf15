//! The compiled router: picks the route for a request, built once per snapshot.
//!
//! Routes are indexed by host (exact name, `*.suffix`, any), and within a host by path: exact
//! paths and prefixes in hash maps keyed by the path text, regexes in a list. Every bucket is
//! pre-sorted by the selection order — highest `priority`, then longest path match (an exact
//! path counts as longest, a regex ranks by its pattern length), then the most specific host
//! (exact, then the longest `*.suffix`, then any), then name — so the first match in a bucket
//! is that bucket's best.
//!
//! A request looks up its exact host, each of its dot-suffixes and the any-host routes; in each,
//! its exact path, then each of its own prefixes whose length some route uses, then the regex
//! routes; it keeps the best first match. The cost depends on the request (its host's labels,
//! the distinct prefix lengths in use, the number of regex routes), not on how many routes are
//! configured: 10 or 10,000 prefix routes cost the same lookups. This module matches only; what
//! happens next is the handler's job.

mod route_match;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use crate::balancer::WeightedCycle;
use crate::filters::RouteFilters;
use crate::model::{HostMatch, PathMatch, RouteAction, RouteSpec};

pub use route_match::RequestView;

/// Routes of one snapshot, indexed for selection.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, PathIndex>,
    suffix: HashMap<Box<str>, PathIndex>,
    any: PathIndex,
}

/// The routes of one host key, indexed by path.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, Vec<Entry>>,
    prefix: HashMap<Box<str>, Vec<Entry>>,
    /// Distinct lengths of the prefixes in `prefix`, longest first.
    prefix_lengths: Vec<usize>,
    regex: Vec<Entry>,
}

impl PathIndex {
    fn insert(&mut self, entry: Entry) {
        let bucket = match &entry.route.spec.matcher.path {
            PathMatch::Exact(path) => self.exact.entry(path.as_str().into()).or_default(),
            PathMatch::Prefix(prefix) => self.prefix.entry(prefix.as_str().into()).or_default(),
            PathMatch::Regex { .. } => &mut self.regex,
        };
        bucket.push(entry);
    }

    /// Sorts every bucket and records the prefix lengths in use.
    fn seal(&mut self) {
        let buckets = self
            .exact
            .values_mut()
            .chain(self.prefix.values_mut())
            .chain(std::iter::once(&mut self.regex));
        for bucket in buckets {
            bucket.sort_by(Entry::rank);
        }
        self.prefix_lengths = self.prefix.keys().map(|p| p.len()).collect();
        self.prefix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        self.prefix_lengths.dedup();
    }

    /// Offers this host's best match for `request` to `best`.
    fn consider<'a>(&'a self, request: &RequestView<'_>, best: &mut Option<&'a Entry>) {
        let path = request.path();
        if let Some(bucket) = self.exact.get(path) {
            consider(bucket, request, best);
        }
        for &length in &self.prefix_lengths {
            let Some(prefix) = path.get(..length) else {
                continue; // longer than the path, or not on a character boundary
            };
            if let Some(bucket) = self.prefix.get(prefix) {
                consider(bucket, request, best);
            }
        }
        consider(&self.regex, request, best);
    }

    fn len(&self) -> usize {
        self.exact.values().map(Vec::len).sum::<usize>()
            + self.prefix.values().map(Vec::len).sum::<usize>()
            + self.regex.len()
    }
}

/// A route with its per-snapshot runtime state.
#[derive(Debug)]
pub struct CompiledRoute {
    pub spec: Arc<RouteSpec>,
    /// Smooth weighted cycle over `weighted_clusters` (indices into that list).
    pub split: Option<WeightedCycle>,
    /// The route's filter chain; `None` for a route without policies (no filter code runs).
    pub filters: Option<Arc<RouteFilters>>,
}

#[derive(Debug)]
struct Entry {
    route: CompiledRoute,
    path_rank: usize,
    host_rank: usize,
}

impl Entry {
    /// Selection order: `Less` means `self` wins.
    fn rank(&self, other: &Entry) -> Ordering {
        other
            .route
            .spec
            .priority
            .cmp(&self.route.spec.priority)
            .then(other.path_rank.cmp(&self.path_rank))
            .then(other.host_rank.cmp(&self.host_rank))
            .then_with(|| self.route.spec.name.cmp(&other.route.spec.name))
    }
}

impl Router {
    /// Compiles the routes into host- and path-indexed, pre-sorted buckets, without filters.
    pub fn new(routes: impl IntoIterator<Item = Arc<RouteSpec>>) -> Self {
        Self::with_filters(routes, |_| None)
    }

    /// Like [`Router::new`], with each route's filter chain from `filters`.
    pub fn with_filters(
        routes: impl IntoIterator<Item = Arc<RouteSpec>>,
        mut filters: impl FnMut(&RouteSpec) -> Option<Arc<RouteFilters>>,
    ) -> Self {
        let mut router = Router::default();
        for route in routes {
            let path_rank = match &route.matcher.path {
                PathMatch::Exact(_) => usize::MAX,
                PathMatch::Prefix(prefix) => prefix.len(),
                PathMatch::Regex { pattern, .. } => pattern.len(),
            };
            let index = match &route.matcher.host {
                HostMatch::Any => &mut router.any,
                HostMatch::Exact(host) => router.exact.entry(host.as_str().into()).or_default(),
                HostMatch::Suffix(suffix) => {
                    router.suffix.entry(suffix.as_str().into()).or_default()
                }
            };
            let host_rank = match &route.matcher.host {
                HostMatch::Any => 0,
                HostMatch::Suffix(suffix) => suffix.len(),
                HostMatch::Exact(_) => usize::MAX,
            };
            let split = match &route.action {
                RouteAction::WeightedClusters(clusters) => {
                    let weights: Vec<u32> = clusters.iter().map(|(_, weight)| *weight).collect();
                    Some(WeightedCycle::new(&weights))
                }
                _ => None,
            };
            let filters = filters(&route);
            index.insert(Entry {
                route: CompiledRoute {
                    spec: route,
                    split,
                    filters,
                },
                path_rank,
                host_rank,
            });
        }
        let indexes = router
            .exact
            .values_mut()
            .chain(router.suffix.values_mut())
            .chain(std::iter::once(&mut router.any));
        for index in indexes {
            index.seal();
        }
        router
    }

    /// The best route for the request, if any matches.
    pub fn route(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<&CompiledRoute> {
        let host = request_host(uri, headers);
        let request = RequestView::new(method, uri, headers);
        let mut best: Option<&Entry> = None;
        if let Some(index) = self.exact.get(host.as_ref()) {
            index.consider(&request, &mut best);
        }
        if !self.suffix.is_empty() {
            for (dot, _) in host.match_indices('.') {
                if let Some(index) = self.suffix.get(&host[dot..]) {
                    index.consider(&request, &mut best);
                }
            }
        }
        self.any.consider(&request, &mut best);
        best.map(|entry| &entry.route)
    }

    /// Number of routes compiled (for logs and tests).
    pub fn len(&self) -> usize {
        self.any.len()
            + self.exact.values().map(PathIndex::len).sum::<usize>()
            + self.suffix.values().map(PathIndex::len).sum::<usize>()
    }

    /// Whether no route was compiled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Replaces `best` with the first match of the pre-sorted `bucket` if that one ranks higher.
fn consider<'a>(bucket: &'a [Entry], request: &RequestView<'_>, best: &mut Option<&'a Entry>) {
    for entry in bucket {
        if best.is_some_and(|b| b.rank(entry).is_le()) {
            return; // the rest of this sorted bucket cannot beat `best`
        }
        if request.matches(&entry.route.spec.matcher) {
            *best = Some(entry);
            return;
        }
    }
}

/// Host of the request (`:authority`, else `Host`), without port, lowercase. Allocates only
/// when the client sent uppercase letters.
fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Cow<'a, str> {
    let raw = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(""),
    };
    let raw = raw.rsplit_once('@').map_or(raw, |(_, host)| host);
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.split_once(':').map_or(raw, |(host, _)| host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests;
