//! The immutable, compiled config the request path reads: router (with each route's filter
//! chain) plus one [`ClusterRuntime`] (balancer, connect settings, limits) per cluster, the
//! API-key index and JWT verifiers, plus the [`ResourceSet`] it was built from for
//! `/config_dump`.
//!
//! [`Snapshot::build`] is a pure function of the decoded resources, the previous snapshot (for
//! state carried over by name or address) and [`BuildOptions`]: it spawns nothing, does no
//! I/O and reads no global, so it runs the same in a benchmark, a test or the proxy. What a
//! snapshot needs running (health checks, JWKS refreshes, idle-connection eviction) is the
//! supervisor's ([`crate::supervisor`]), which watches the [`SnapshotCell`].
//!
//! Built once per applied xDS response by the xDS client (the only writer) and published
//! through the cell's `ArcSwap`; a request loads it once and keeps that `Arc` to the end, so a
//! config swap never blocks or changes an in-flight request.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

pub use crate::cluster::ClusterRuntime;
use crate::filters::auth::ConsumerIndex;
use crate::filters::{BuildContext, RouteFilters};
use crate::jwt::JwtProviders;
use crate::quota::{QuotaBook, QuotaLink};
use crate::resource_set::ResourceSet;
use crate::router::Router;

/// One published config.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub router: Router,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// One verifier per JWT provider (kept across configs while a provider is unchanged).
    pub jwt: JwtProviders,
    /// One book of leases per quota (kept across configs while a quota is unchanged).
    pub quotas: Arc<HashMap<String, Arc<QuotaBook>>>,
    /// Filter chains by route name: the next build takes long-lived state over from here.
    pub route_filters: HashMap<String, Arc<RouteFilters>>,
    pub resources: ResourceSet,
}

/// What a build needs to know about the proxy it is for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The proxy's `zone` label (zone-aware balancing).
    pub zone: Option<String>,
    /// Traffic workers: each new endpoint pool gets one idle stack per worker.
    pub workers: usize,
    /// What new quota books share with the reporter.
    pub quota_link: Arc<QuotaLink>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            zone: None,
            workers: 1,
            quota_link: Arc::default(),
        }
    }
}

impl Snapshot {
    /// Compiles `resources`, reusing what it can from `previous`: unchanged clusters, filter
    /// state and JWT verifiers whole; endpoint states by address.
    pub fn build(resources: ResourceSet, previous: &Snapshot, options: &BuildOptions) -> Self {
        let zone = options.zone.as_deref();
        let clusters: HashMap<String, Arc<ClusterRuntime>> = resources
            .clusters
            .iter()
            .map(|(name, held)| {
                let previous = previous.clusters.get(name);
                let runtime = ClusterRuntime::build(&held.spec, previous, zone, options.workers);
                (name.clone(), runtime)
            })
            .collect();
        let consumers = Arc::new(ConsumerIndex::build(
            resources.consumers.values().map(|held| &*held.spec),
        ));
        let jwt = JwtProviders::build(
            resources
                .jwt_providers
                .values()
                .map(|held| (*held.spec).clone()),
            Some(&previous.jwt),
        );
        let quotas: Arc<HashMap<String, Arc<QuotaBook>>> = Arc::new(
            resources
                .quotas
                .iter()
                .map(|(name, held)| {
                    let book = match previous.quotas.get(name) {
                        Some(kept) if *kept.spec() == *held.spec => Arc::clone(kept),
                        _ => Arc::new(QuotaBook::new(
                            (*held.spec).clone(),
                            Arc::clone(&options.quota_link),
                        )),
                    };
                    (name.clone(), book)
                })
                .collect(),
        );
        let mut route_filters = HashMap::new();
        let router = Router::with_filters(
            resources.routes.values().map(|held| Arc::clone(&held.spec)),
            |route| {
                let ctx = BuildContext {
                    consumers: &consumers,
                    verifiers: &jwt,
                    quotas: &quotas,
                };
                let kept = previous.route_filters.get(&route.name).map(|f| &**f);
                let filters = RouteFilters::build(route, ctx, kept)?;
                route_filters.insert(route.name.clone(), Arc::clone(&filters));
                Some(filters)
            },
        );
        Self {
            router,
            clusters,
            jwt,
            quotas,
            route_filters,
            resources,
        }
    }

    /// Whether the proxy holds a complete config (every type synced once).
    pub fn is_complete(&self) -> bool {
        self.resources.is_complete()
    }
}

/// Where the current snapshot is published: lock-free loads for the request path, and a
/// version number that moves on every publish for whoever must react (the supervisor).
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    version: watch::Sender<u64>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            version: watch::Sender::new(0),
        }
    }
}

impl SnapshotCell {
    /// The current snapshot, for a short look (no reference-count traffic).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, to keep (a request holds it to its end).
    #[inline]
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` current, then tells the watchers.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
        self.version.send_modify(|version| *version += 1);
    }

    /// Wakes on every publish after this call.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterSpec;
    use crate::resource_set::Held;
    use switchyard_proto::v1;

    fn options() -> BuildOptions {
        BuildOptions::default()
    }

    fn held(address: &str, connect_timeout_ms: u32) -> Held<v1::Cluster, ClusterSpec> {
        let proto = v1::Cluster {
            name: "web".into(),
            endpoints: vec![v1::Endpoint {
                address: address.into(),
                ..Default::default()
            }],
            connect_timeout_ms,
            ..Default::default()
        };
        let spec = ClusterSpec::try_from(&proto).unwrap();
        Held {
            version: "1".into(),
            proto: Arc::new(proto),
            spec: Arc::new(spec),
        }
    }

    #[test]
    fn unchanged_clusters_keep_their_runtime() {
        let mut resources = ResourceSet::default();
        resources.clusters.insert("web".into(), held("a:1", 0));
        let first = Snapshot::build(resources.clone(), &Snapshot::default(), &options());
        let second = Snapshot::build(resources.clone(), &first, &options());
        assert!(Arc::ptr_eq(&first.clusters["web"], &second.clusters["web"]));

        resources.clusters.insert("web".into(), held("b:1", 0));
        let third = Snapshot::build(resources, &second, &options());
        assert!(!Arc::ptr_eq(
            &second.clusters["web"],
            &third.clusters["web"]
        ));
        let picked = third.clusters["web"].balancer.pick(
            &crate::balancer::PickContext {
                client_ip: [127, 0, 0, 1].into(),
                headers: &http::HeaderMap::new(),
            },
            &[],
        );
        assert_eq!(picked, Some(0));
        assert_eq!(third.clusters["web"].balancer.states()[0].address, "b:1");
        assert!(third.router.is_empty());
        assert!(!third.is_complete());
    }

    fn limited_route(requests: u32) -> Held<v1::Route, crate::model::RouteSpec> {
        let proto = v1::Route {
            name: "limited".into(),
            action: Some(v1::route::Action::Cluster("web".into())),
            rate_limit: Some(v1::RateLimit {
                requests,
                per_seconds: 60,
                by: v1::RateLimitKey::Route as i32,
            }),
            ..Default::default()
        };
        let spec = crate::model::RouteSpec::try_from(&proto).unwrap();
        Held {
            version: requests.to_string(),
            proto: Arc::new(proto),
            spec: Arc::new(spec),
        }
    }

    #[test]
    fn filter_state_survives_while_the_policy_is_unchanged() {
        let mut resources = ResourceSet::default();
        resources.routes.insert("limited".into(), limited_route(5));
        let first = Snapshot::build(resources.clone(), &Snapshot::default(), &options());
        let limiter = |snapshot: &Snapshot| {
            Arc::clone(snapshot.route_filters["limited"].rate_limiter().unwrap())
        };
        resources.routes.insert("limited".into(), limited_route(5));
        let second = Snapshot::build(resources.clone(), &first, &options());
        assert!(Arc::ptr_eq(&limiter(&first), &limiter(&second)));
        resources.routes.insert("limited".into(), limited_route(6));
        let third = Snapshot::build(resources, &second, &options());
        assert!(!Arc::ptr_eq(&limiter(&second), &limiter(&third)));

        let mut plain = ResourceSet::default();
        plain.routes.insert("plain".into(), {
            let proto = v1::Route {
                name: "plain".into(),
                action: Some(v1::route::Action::Cluster("web".into())),
                ..Default::default()
            };
            Held {
                version: "1".into(),
                spec: Arc::new(crate::model::RouteSpec::try_from(&proto).unwrap()),
                proto: Arc::new(proto),
            }
        });
        let snapshot = Snapshot::build(plain, &third, &options());
        let route = snapshot
            .router
            .route(
                &http::Method::GET,
                &"/".parse().unwrap(),
                &http::HeaderMap::new(),
            )
            .unwrap();
        assert!(
            route.filters.is_none(),
            "a route without policies has no chain"
        );
        assert!(snapshot.route_filters.is_empty());
    }
}
