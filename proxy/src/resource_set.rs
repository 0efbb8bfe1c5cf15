//! The resources the proxy holds, as received and validated: per type, name → version, the
//! wire proto (for `/config_dump`) and the domain spec. Also which types have been synced and
//! the control plane's revision.
//!
//! Plain data: the xDS client mutates its own copy and hands a clone to each new snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use switchyard_proto::{type_url, v1};

use crate::jwt::JwtProviderSpec;
use crate::model::{ClusterSpec, ConsumerSpec, QuotaSpec, RouteSpec};

/// One held resource: the last good value and its version.
#[derive(Debug)]
pub struct Held<P, S> {
    pub version: String,
    pub proto: Arc<P>,
    pub spec: Arc<S>,
}

impl<P, S> Clone for Held<P, S> {
    fn clone(&self) -> Self {
        Self {
            version: self.version.clone(),
            proto: Arc::clone(&self.proto),
            spec: Arc::clone(&self.spec),
        }
    }
}

/// Everything the proxy holds.
#[derive(Debug, Clone, Default)]
pub struct ResourceSet {
    pub clusters: BTreeMap<String, Held<v1::Cluster, ClusterSpec>>,
    pub routes: BTreeMap<String, Held<v1::Route, RouteSpec>>,
    pub consumers: BTreeMap<String, Held<v1::Consumer, ConsumerSpec>>,
    pub jwt_providers: BTreeMap<String, Held<v1::JwtProvider, JwtProviderSpec>>,
    pub quotas: BTreeMap<String, Held<v1::Quota, QuotaSpec>>,
    /// Types for which a first response has been received and applied.
    pub synced: BTreeSet<&'static str>,
    /// `system_version_info` of the last applied response.
    pub revision: String,
}

impl ResourceSet {
    /// Name → version of every held resource of `type_url` (for `initial_resource_versions`).
    pub fn versions(&self, type_url: &str) -> HashMap<String, String> {
        match type_url {
            type_url::CLUSTER => versions_of(&self.clusters),
            type_url::ROUTE => versions_of(&self.routes),
            type_url::CONSUMER => versions_of(&self.consumers),
            type_url::JWT_PROVIDER => versions_of(&self.jwt_providers),
            type_url::QUOTA => versions_of(&self.quotas),
            _ => HashMap::new(),
        }
    }

    /// Whether every subscribed type has been synced at least once.
    pub fn is_complete(&self) -> bool {
        type_url::ALL.iter().all(|t| self.synced.contains(t))
    }
}

fn versions_of<P, S>(held: &BTreeMap<String, Held<P, S>>) -> HashMap<String, String> {
    held.iter()
        .map(|(name, held)| (name.clone(), held.version.clone()))
        .collect()
}
