//! The immutable, compiled config the request path reads: router plus one runtime (balancer,
//! connection pool) per cluster, plus the [`ResourceSet`] it was built from for `/config_dump`.
//!
//! Built once per applied xDS response by the xDS client (the only writer) and published
//! through an `ArcSwap`; a request loads it once and keeps that `Arc` to the end, so a config
//! swap never blocks or changes an in-flight request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::balancer::Balancer;
use crate::model::ClusterSpec;
use crate::resource_set::ResourceSet;
use crate::router::Router;
use crate::upstream::Upstream;

/// One published config.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub router: Router,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    pub resources: ResourceSet,
}

/// A cluster ready to take traffic.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub spec: Arc<ClusterSpec>,
    pub balancer: Balancer,
    pub upstream: Upstream,
}

impl ClusterRuntime {
    /// Reuses `previous` whole when the spec is unchanged (keeping the balancer's position),
    /// else builds a new balancer and keeps `previous`' pool if the connect settings match.
    fn build(spec: &Arc<ClusterSpec>, previous: Option<&Arc<ClusterRuntime>>) -> Arc<Self> {
        if let Some(previous) = previous
            && (Arc::ptr_eq(&previous.spec, spec) || previous.spec == *spec)
        {
            return Arc::clone(previous);
        }
        let upstream = match previous {
            Some(previous) if previous.upstream.connect_timeout() == spec.connect_timeout => {
                previous.upstream.clone()
            }
            _ => Upstream::new(spec.connect_timeout),
        };
        Arc::new(Self {
            spec: Arc::clone(spec),
            balancer: Balancer::new(spec),
            upstream,
        })
    }
}

impl Snapshot {
    /// Compiles `resources`, reusing what it can from `previous`.
    pub fn build(resources: ResourceSet, previous: &Snapshot) -> Self {
        let clusters = resources
            .clusters
            .iter()
            .map(|(name, held)| {
                let runtime = ClusterRuntime::build(&held.spec, previous.clusters.get(name));
                (name.clone(), runtime)
            })
            .collect();
        let router = Router::new(resources.routes.values().map(|held| Arc::clone(&held.spec)));
        Self {
            router,
            clusters,
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
        let picked = third.clusters["web"]
            .balancer
            .pick(&crate::balancer::PickContext {
                client_ip: [127, 0, 0, 1].into(),
                headers: &http::HeaderMap::new(),
            });
        assert_eq!(picked.unwrap().address, "b:1");
        assert!(third.router.is_empty());
        assert!(!third.is_complete());
    }
}
