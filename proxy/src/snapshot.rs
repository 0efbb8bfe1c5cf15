//! The immutable, compiled config the request path reads: router (with each route's filter
//! chain) plus one [`ClusterRuntime`] (balancer, connection pool, limits, health task) per
//! cluster, the API-key index and JWT verifiers, plus the [`ResourceSet`] it was built from
//! for `/config_dump`.
//!
//! Built once per applied xDS response by the xDS client (the only writer) and published
//! through an `ArcSwap`; a request loads it once and keeps that `Arc` to the end, so a config
//! swap never blocks or changes an in-flight request.

use std::collections::HashMap;
use std::sync::Arc;

pub use crate::cluster::ClusterRuntime;
use crate::filters::auth::ConsumerIndex;
use crate::filters::{BuildContext, RouteFilters};
use crate::jwt::JwtProviders;
use crate::resource_set::ResourceSet;
use crate::router::Router;

/// One published config.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub router: Router,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// Every API key, by hash (shared by the routes' auth filters).
    pub consumers: Arc<ConsumerIndex>,
    /// One verifier per JWT provider (kept across configs while a provider is unchanged).
    pub jwt: JwtProviders,
    /// Filter chains by route name: the next build takes long-lived state over from here.
    pub route_filters: HashMap<String, Arc<RouteFilters>>,
    pub resources: ResourceSet,
}

impl Snapshot {
    /// Compiles `resources` for a proxy without a zone, reusing what it can from `previous`.
    pub fn build(resources: ResourceSet, previous: &Snapshot) -> Self {
        Self::build_in_zone(resources, previous, None)
    }

    /// Compiles `resources` for a proxy in `zone` (zone-aware balancing), reusing what it can
    /// from `previous` and stopping the background work of clusters that are gone.
    pub fn build_in_zone(resources: ResourceSet, previous: &Snapshot, zone: Option<&str>) -> Self {
        let clusters: HashMap<String, Arc<ClusterRuntime>> = resources
            .clusters
            .iter()
            .map(|(name, held)| {
                let runtime = ClusterRuntime::build(&held.spec, previous.clusters.get(name), zone);
                (name.clone(), runtime)
            })
            .collect();
        for (name, runtime) in &previous.clusters {
            if !clusters.contains_key(name) {
                runtime.retire();
            }
        }
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
        let mut route_filters = HashMap::new();
        let router = Router::with_filters(
            resources.routes.values().map(|held| Arc::clone(&held.spec)),
            |route| {
                let ctx = BuildContext {
                    consumers: &consumers,
                    verifiers: &jwt,
                    previous: previous.route_filters.get(&route.name).map(|f| &**f),
                };
                let filters = RouteFilters::build(route, ctx)?;
                route_filters.insert(route.name.clone(), Arc::clone(&filters));
                Some(filters)
            },
        );
        Self {
            router,
            clusters,
            consumers,
            jwt,
            route_filters,
            resources,
        }
    }

    /// Whether the proxy holds a complete config (every type synced once).
    pub fn is_complete(&self) -> bool {
        self.resources.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterSpec;
    use crate::resource_set::Held;
    use switchyard_proto::v1;

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
        let first = Snapshot::build(resources.clone(), &Snapshot::default());
        let second = Snapshot::build(resources.clone(), &first);
        assert!(Arc::ptr_eq(&first.clusters["web"], &second.clusters["web"]));

        resources.clusters.insert("web".into(), held("b:1", 0));
        let third = Snapshot::build(resources, &second);
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
        let first = Snapshot::build(resources.clone(), &Snapshot::default());
        let limiter = |snapshot: &Snapshot| {
            Arc::clone(snapshot.route_filters["limited"].rate_limiter().unwrap())
        };
        resources.routes.insert("limited".into(), limited_route(5));
        let second = Snapshot::build(resources.clone(), &first);
        assert!(Arc::ptr_eq(&limiter(&first), &limiter(&second)));
        resources.routes.insert("limited".into(), limited_route(6));
        let third = Snapshot::build(resources, &second);
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
        let snapshot = Snapshot::build(plain, &third);
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
