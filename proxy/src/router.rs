//! The compiled router: picks the route for a request, built once per snapshot.
//!
//! Routes are indexed by host (exact name, `*.suffix`, any) and each index list is pre-sorted by
//! the selection order — highest `priority`, then longest path match (an exact path counts as
//! longest, a regex ranks by its pattern length), then the most specific host (exact, then the
//! longest `*.suffix`, then any), then name — so the first match in a list is
//! that list's best. A request looks at most a handful of lists (its exact host, each of its
//! dot-suffixes, the any-host list) and keeps the best first match; it never scans routes for
//! other hosts. This module matches only; what happens next is the handler's job.

mod route_match;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use crate::balancer::WeightedCycle;
use crate::model::{HostMatch, PathMatch, RouteAction, RouteSpec};

pub use route_match::RequestView;

/// Routes of one snapshot, indexed for selection.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Vec<Entry>>,
    suffix: HashMap<Box<str>, Vec<Entry>>,
    any: Vec<Entry>,
}

/// A route with its per-snapshot runtime state.
#[derive(Debug)]
pub struct CompiledRoute {
    pub spec: Arc<RouteSpec>,
    /// Smooth weighted cycle over `weighted_clusters` (indices into that list).
    pub split: Option<WeightedCycle>,
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
    /// Compiles the routes into host-indexed, pre-sorted lists.
    pub fn new(routes: impl IntoIterator<Item = Arc<RouteSpec>>) -> Self {
        let mut router = Router::default();
        for route in routes {
            let path_rank = match &route.matcher.path {
                PathMatch::Exact(_) => usize::MAX,
                PathMatch::Prefix(prefix) => prefix.len(),
                PathMatch::Regex { pattern, .. } => pattern.len(),
            };
            let list = match &route.matcher.host {
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
            list.push(Entry {
                route: CompiledRoute { spec: route, split },
                path_rank,
                host_rank,
            });
        }
        let lists = router
            .exact
            .values_mut()
            .chain(router.suffix.values_mut())
            .chain(std::iter::once(&mut router.any));
        for list in lists {
            list.sort_by(Entry::rank);
        }
        router
    }

    /// The best route for the request, if any matches.
    pub fn route(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<&CompiledRoute> {
        let host = request_host(uri, headers);
        let request = RequestView::new(method, uri, headers);
        let mut best: Option<&Entry> = None;
        if let Some(list) = self.exact.get(host.as_ref()) {
            consider(list, &request, &mut best);
        }
        if !self.suffix.is_empty() {
            for (index, _) in host.match_indices('.') {
                if let Some(list) = self.suffix.get(&host[index..]) {
                    consider(list, &request, &mut best);
                }
            }
        }
        consider(&self.any, &request, &mut best);
        best.map(|entry| &entry.route)
    }

    /// Number of routes compiled (for logs and tests).
    pub fn len(&self) -> usize {
        self.any.len()
            + self.exact.values().map(Vec::len).sum::<usize>()
            + self.suffix.values().map(Vec::len).sum::<usize>()
    }

    /// Whether no route was compiled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Replaces `best` with the first match of the pre-sorted `list` if that one ranks higher.
fn consider<'a>(list: &'a [Entry], request: &RequestView<'_>, best: &mut Option<&'a Entry>) {
    for entry in list {
        if best.is_some_and(|b| b.rank(entry).is_le()) {
            return; // the rest of this sorted list cannot beat `best`
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
