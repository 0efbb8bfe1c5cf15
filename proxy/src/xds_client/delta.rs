//! Delta xDS stream state, without I/O: the subscribe requests for a (re)connect, applying one
//! `DeltaDiscoveryResponse` to the held [`ResourceSet`], and the ACK/NACK that answers it.
//!
//! A resource that fails to decode or validate keeps its previous good value (or stays absent)
//! and is named in the NACK; the other resources of the same response still apply.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use envoy_types::pb::google::rpc::Status;
use prost::Message;
use switchyard_proto::type_url;

use crate::resource_set::{Held, ResourceSet};

/// gRPC `INVALID_ARGUMENT`, the code of every NACK.
const INVALID_ARGUMENT: i32 = 3;

/// The wildcard subscription for `type_url`, with the versions already held.
pub fn subscribe_request(type_url: &str, node: &Node, held: &ResourceSet) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node.clone()),
        type_url: type_url.to_owned(),
        initial_resource_versions: held.versions(type_url),
        ..Default::default()
    }
}

/// Result of applying one response.
#[derive(Debug, Default)]
pub struct Applied {
    /// One line per refused resource (or for the whole response when its type is unknown).
    pub errors: Vec<String>,
    /// Whether `held` changed in a way that needs a new snapshot.
    pub changed: bool,
}

impl Applied {
    /// The ACK (no errors) or NACK answering `response`.
    pub fn reply(&self, response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let error_detail = (!self.errors.is_empty()).then(|| Status {
            code: INVALID_ARGUMENT,
            message: self.errors.join("; "),
            ..Default::default()
        });
        DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail,
            ..Default::default()
        }
    }
}

/// Applies `response` to `held`.
pub fn apply(held: &mut ResourceSet, response: &DeltaDiscoveryResponse) -> Applied {
    let mut applied = Applied::default();
    let type_url = match response.type_url.as_str() {
        type_url::CLUSTER => {
            apply_typed(&mut held.clusters, "cluster", response, &mut applied);
            type_url::CLUSTER
        }
        type_url::ROUTE => {
            apply_typed(&mut held.routes, "route", response, &mut applied);
            type_url::ROUTE
        }
        type_url::CONSUMER => {
            apply_typed(&mut held.consumers, "consumer", response, &mut applied);
            type_url::CONSUMER
        }
        type_url::JWT_PROVIDER => {
            apply_typed(
                &mut held.jwt_providers,
                "jwt provider",
                response,
                &mut applied,
            );
            type_url::JWT_PROVIDER
        }
        type_url::QUOTA => {
            apply_typed(&mut held.quotas, "quota", response, &mut applied);
            type_url::QUOTA
        }
        other => {
            applied
                .errors
                .push(format!("type_url {other:?} is not supported by this proxy"));
            return applied;
        }
    };
    if held.synced.insert(type_url) {
        applied.changed = true;
    }
    // The revision is only claimed once a response applied whole.
    if applied.errors.is_empty()
        && !response.system_version_info.is_empty()
        && held.revision != response.system_version_info
    {
        held.revision = response.system_version_info.clone();
        applied.changed = true;
    }
    applied
}

fn apply_typed<P, S, E>(
    held: &mut BTreeMap<String, Held<P, S>>,
    kind: &str,
    response: &DeltaDiscoveryResponse,
    applied: &mut Applied,
) where
    P: Message + Default + HasName,
    S: for<'a> TryFrom<&'a P, Error = E>,
    E: Display,
{
    for resource in &response.resources {
        match decode::<P, S, E>(resource, &response.type_url) {
            Ok((proto, spec)) => {
                held.insert(
                    resource.name.clone(),
                    Held {
                        version: resource.version.clone(),
                        proto: Arc::new(proto),
                        spec: Arc::new(spec),
                    },
                );
                applied.changed = true;
            }
            Err(error) => applied
                .errors
                .push(format!("{kind} {:?}: {error}", resource.name)),
        }
    }
    for name in &response.removed_resources {
        if held.remove(name).is_some() {
            applied.changed = true;
        }
    }
}

fn decode<P, S, E>(resource: &Resource, type_url: &str) -> Result<(P, S), String>
where
    P: Message + Default + HasName,
    S: for<'a> TryFrom<&'a P, Error = E>,
    E: Display,
{
    if resource.name.is_empty() {
        return Err("resource has no name".to_owned());
    }
    let any = resource
        .resource
        .as_ref()
        .ok_or_else(|| "resource body is missing".to_owned())?;
    if any.type_url != type_url {
        return Err(format!(
            "body type {:?} does not match {type_url:?}",
            any.type_url
        ));
    }
    let proto = P::decode(any.value.as_slice()).map_err(|error| format!("undecodable: {error}"))?;
    if proto.name() != resource.name {
        return Err(format!(
            "body name {:?} does not match the resource name",
            proto.name()
        ));
    }
    let spec = S::try_from(&proto).map_err(|error| error.to_string())?;
    Ok((proto, spec))
}

/// Resource messages carry their own name, checked against `Resource.name`.
pub trait HasName {
    fn name(&self) -> &str;
}

impl HasName for switchyard_proto::v1::Cluster {
    fn name(&self) -> &str {
        &self.name
    }
}

macro_rules! has_name {
    ($($message:ident),+) => {
        $(impl HasName for switchyard_proto::v1::$message {
            fn name(&self) -> &str {
                &self.name
            }
        })+
    };
}

has_name!(Route, Consumer, JwtProvider, Quota);

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;
    use switchyard_proto::v1::{self, route::Action, route_match::Path};

    fn route_resource(name: &str, version: &str, regex: &str) -> Resource {
        let route = v1::Route {
            name: name.into(),
            r#match: Some(v1::RouteMatch {
                path: Some(Path::PathRegex(regex.into())),
                ..Default::default()
            }),
            action: Some(Action::Cluster("c".into())),
            ..Default::default()
        };
        Resource {
            name: name.into(),
            version: version.into(),
            resource: Some(Any {
                type_url: type_url::ROUTE.into(),
                value: route.encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    fn response(resources: Vec<Resource>, removed: &[&str]) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: "7".into(),
            type_url: type_url::ROUTE.into(),
            resources,
            removed_resources: removed.iter().map(|s| (*s).into()).collect(),
            nonce: "n1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_resource_keeps_previous_value_and_is_named() {
        let mut held = ResourceSet::default();
        let first = apply(
            &mut held,
            &response(vec![route_resource("r", "1", "/a")], &[]),
        );
        assert!(first.errors.is_empty());
        let ack = first.reply(&response(vec![], &[]));
        assert_eq!(ack.response_nonce, "n1");
        assert!(ack.error_detail.is_none());

        let second = apply(
            &mut held,
            &response(
                vec![
                    route_resource("r", "2", "/a/("),
                    route_resource("s", "1", "/s"),
                ],
                &[],
            ),
        );
        assert_eq!(second.errors.len(), 1);
        assert!(
            second.errors[0].starts_with("route \"r\": match.path_regex"),
            "{}",
            second.errors[0]
        );
        assert_eq!(held.routes["r"].version, "1", "previous good value kept");
        assert_eq!(held.routes["s"].version, "1", "others still apply");
        held.revision.clear();
        apply(
            &mut held,
            &response(vec![route_resource("r", "3", "/a/(")], &[]),
        );
        assert_eq!(
            held.revision, "",
            "a NACKed response does not claim its revision"
        );
        let nack = second.reply(&response(vec![], &[]));
        let detail = nack.error_detail.unwrap();
        assert_eq!(detail.code, 3);
        assert!(detail.message.contains("\"r\""));

        let third = apply(&mut held, &response(vec![], &["r"]));
        assert!(third.changed && third.errors.is_empty());
        assert!(!held.routes.contains_key("r"));
        assert_eq!(held.revision, "7");
        assert!(held.synced.contains(type_url::ROUTE));
        assert!(!held.is_complete(), "clusters not synced yet");
    }

    #[test]
    fn mismatched_body_and_unknown_type_are_refused() {
        let mut held = ResourceSet::default();
        let mut resource = route_resource("r", "1", "/a");
        resource.name = "other".into();
        let applied = apply(&mut held, &response(vec![resource], &[]));
        assert!(applied.errors[0].contains("does not match the resource name"));
        let mut unknown = response(vec![], &[]);
        unknown.type_url = "type.googleapis.com/x.Y".into();
        let applied = apply(&mut held, &unknown);
        assert_eq!(applied.errors.len(), 1);
        assert!(!held.synced.contains("type.googleapis.com/x.Y"));
        assert_eq!(held.synced.len(), 1);
    }
}
