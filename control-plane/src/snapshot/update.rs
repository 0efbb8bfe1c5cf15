//! What one Delta ADS response carries apart from its nonce ([`Update`]: type, revision,
//! resources, removed names), and its encoding as a `DeltaDiscoveryResponse` written straight
//! from the snapshot's pre-encoded resources.
//!
//! An update one session computed for itself is encoded only when sent; an update shared by
//! many sessions (a snapshot's follow-up, see [`super::delta`]) encodes every field but the
//! nonce once, and each stream's message copies those bytes around its own nonce. Either way no
//! protobuf object is built and no resource is re-encoded. The stream's framing of the message
//! (the gRPC prefix) is `xds::response`'s.

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::XdsResource;
use crate::model::Kind;

// Field numbers of `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
const SYSTEM_VERSION_INFO: u32 = 1;
const RESOURCES: u32 = 2;
const TYPE_URL: u32 = 4;
const NONCE: u32 = 5;
const REMOVED_RESOURCES: u32 = 6;

/// What a `DeltaDiscoveryResponse` carries apart from its nonce.
#[derive(Debug, PartialEq)]
pub struct Update {
    /// The resource type.
    pub kind: Kind,
    /// The snapshot revision (`system_version_info`).
    pub revision: i64,
    /// Resources to add or replace, sorted by name; shared with the snapshot.
    pub resources: Vec<Arc<XdsResource>>,
    /// Names to remove.
    pub removed: Vec<String>,
    /// For a shared update: the fields before the nonce and those after it, encoded.
    encoded: Option<(Bytes, Bytes)>,
}

impl Update {
    /// An update for one stream, encoded when sent.
    pub fn new(
        kind: Kind,
        revision: i64,
        resources: Vec<Arc<XdsResource>>,
        removed: Vec<String>,
    ) -> Update {
        Update {
            kind,
            revision,
            resources,
            removed,
            encoded: None,
        }
    }

    /// An update for many streams: every field but the nonce is encoded once, here.
    pub fn shared(
        kind: Kind,
        revision: i64,
        resources: Vec<Arc<XdsResource>>,
        removed: Vec<String>,
    ) -> Update {
        let mut update = Update::new(kind, revision, resources, removed);
        let version = revision.to_string();
        let mut head = Vec::with_capacity(update.head_len(&version));
        update.put_head(&version, &mut head);
        let mut tail = Vec::with_capacity(update.tail_len());
        update.put_tail(&mut tail);
        update.encoded = Some((head.into(), tail.into()));
        update
    }

    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.removed.is_empty()
    }

    /// Length of the `DeltaDiscoveryResponse` this update makes under `nonce`: what
    /// [`Update::encode`] appends.
    pub fn encoded_len(&self, nonce: &str) -> usize {
        let nonce_len = string_len(NONCE, nonce.as_bytes());
        match &self.encoded {
            Some((head, tail)) => head.len() + nonce_len + tail.len(),
            None => self.head_len(&self.revision.to_string()) + nonce_len + self.tail_len(),
        }
    }

    /// Appends the `DeltaDiscoveryResponse` this update makes under `nonce` to `buf`, byte for
    /// byte what prost would encode for the equivalent message.
    pub fn encode(&self, nonce: &str, buf: &mut Vec<u8>) {
        match &self.encoded {
            Some((head, tail)) => {
                buf.put_slice(head);
                put_string(buf, NONCE, nonce.as_bytes());
                buf.put_slice(tail);
            }
            None => {
                self.put_head(&self.revision.to_string(), buf);
                put_string(buf, NONCE, nonce.as_bytes());
                self.put_tail(buf);
            }
        }
    }

    /// Length of the fields before the nonce: version, resources, type URL.
    fn head_len(&self, version: &str) -> usize {
        string_len(SYSTEM_VERSION_INFO, version.as_bytes())
            + self
                .resources
                .iter()
                .map(|r| field_len(RESOURCES, &r.encoded))
                .sum::<usize>()
            + string_len(TYPE_URL, self.kind.type_url().as_bytes())
    }

    fn put_head(&self, version: &str, buf: &mut Vec<u8>) {
        put_string(buf, SYSTEM_VERSION_INFO, version.as_bytes());
        for resource in &self.resources {
            put_field(buf, RESOURCES, &resource.encoded);
        }
        put_string(buf, TYPE_URL, self.kind.type_url().as_bytes());
    }

    /// Length of the fields after the nonce: the removed names.
    fn tail_len(&self) -> usize {
        let removed = self.removed.iter();
        removed
            .map(|r| field_len(REMOVED_RESOURCES, r.as_bytes()))
            .sum()
    }

    fn put_tail(&self, buf: &mut Vec<u8>) {
        for name in &self.removed {
            put_field(buf, REMOVED_RESOURCES, name.as_bytes());
        }
    }
}

/// Encoded length of a length-delimited field.
fn field_len(tag: u32, value: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
}

/// Encoded length of a singular proto3 string: nothing when empty.
fn string_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        field_len(tag, value)
    }
}

fn put_field(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

fn put_string(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        put_field(buf, tag, value);
    }
}

/// Builders the update and framing tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    use super::Update;
    use crate::model::Kind;
    use crate::snapshot::XdsResource;

    /// A `kind` resource named `name` (also its value) at `version`, with its kind.
    pub fn keyed_resource(kind: Kind, name: &str, version: i64) -> (Kind, XdsResource) {
        let any = Any {
            type_url: kind.type_url().to_owned(),
            value: name.as_bytes().to_vec(),
        };
        (
            kind,
            XdsResource::new(name.to_owned(), version.to_string(), any),
        )
    }

    /// A route resource named `name` at `version` holding `value`.
    pub fn resource(name: &str, version: &str, value: &[u8]) -> Arc<XdsResource> {
        let any = Any {
            type_url: Kind::Route.type_url().to_owned(),
            value: value.to_vec(),
        };
        Arc::new(XdsResource::new(name.to_owned(), version.to_owned(), any))
    }

    /// What prost would encode for `update` under `nonce`.
    pub fn prost_message(update: &Update, nonce: &str) -> Vec<u8> {
        let message = DeltaDiscoveryResponse {
            system_version_info: update.revision.to_string(),
            resources: update
                .resources
                .iter()
                .map(|r| Resource::decode(r.encoded.clone()).unwrap())
                .collect(),
            type_url: update.kind.type_url().to_owned(),
            removed_resources: update.removed.clone(),
            nonce: nonce.to_owned(),
            ..Default::default()
        };
        message.encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
    use prost::Message;

    use super::test_support::{prost_message, resource};
    use super::*;

    /// `update` encoded under `nonce`, checked against its announced length.
    fn encoded(update: &Update, nonce: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        update.encode(nonce, &mut buf);
        assert_eq!(buf.len(), update.encoded_len(nonce));
        buf
    }

    #[test]
    fn encoding_is_what_prost_encodes_whether_shared_or_not() {
        let big = vec![7u8; 300]; // a length that needs a two-byte varint
        let resources = vec![resource("a", "41", b"x"), resource("b", "42", &big)];
        let removed = vec!["c".to_owned(), String::new()];
        let own = Update::new(Kind::Route, 42, resources.clone(), removed.clone());
        let shared = Update::shared(Kind::Route, 42, resources, removed);
        for update in [own, shared] {
            let message = encoded(&update, "3");
            assert_eq!(message, prost_message(&update, "3"));
            let decoded = DeltaDiscoveryResponse::decode(message.as_slice()).unwrap();
            assert_eq!(decoded.resources.len(), 2);
            assert_eq!(decoded.resources[1].resource.as_ref().unwrap().value, big);
            assert_eq!(decoded.removed_resources, ["c", ""]);
            assert_eq!(decoded.nonce, "3");
        }
    }

    #[test]
    fn a_shared_update_is_encoded_with_each_streams_nonce() {
        let removed = vec!["gone".to_owned()];
        let update = Update::shared(Kind::Route, 7, vec![resource("a", "7", b"x")], removed);
        for nonce in ["1", "12345678901234567890"] {
            let message = encoded(&update, nonce);
            assert_eq!(message, prost_message(&update, nonce));
            let decoded = DeltaDiscoveryResponse::decode(message.as_slice()).unwrap();
            assert_eq!(decoded.nonce, nonce);
            assert_eq!(decoded.removed_resources, ["gone"]);
        }
    }

    #[test]
    fn an_empty_update_still_names_type_version_and_nonce() {
        for update in [
            Update::new(Kind::Cluster, 0, Vec::new(), Vec::new()),
            Update::shared(Kind::Cluster, 0, Vec::new(), Vec::new()),
        ] {
            let message = encoded(&update, "1");
            assert_eq!(message, prost_message(&update, "1"));
            let decoded = DeltaDiscoveryResponse::decode(message.as_slice()).unwrap();
            assert_eq!(decoded.type_url, Kind::Cluster.type_url());
            assert_eq!(decoded.system_version_info, "0");
            assert_eq!(decoded.nonce, "1");
        }
    }
}
