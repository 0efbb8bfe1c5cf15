//! One Delta ADS response as a session builds it, and its wire form: a single gRPC message
//! frame written straight from the snapshot's pre-encoded resources.
//!
//! No per-stream protobuf objects are built and no resource is re-encoded: each resource's
//! bytes are copied once from the shared snapshot into a frame allocated at its exact size,
//! which is freed as soon as it has been written to the connection. (tonic's own encoder keeps
//! a per-stream buffer as large as the largest message the stream ever sent, i.e. a whole first
//! sync per proxy, for as long as the stream lives.)

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::model::Kind;
use crate::snapshot::XdsResource;

/// The gRPC message prefix: a compressed flag and the big-endian message length.
pub const GRPC_PREFIX_LEN: usize = 5;

// Field numbers of `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
const SYSTEM_VERSION_INFO: u32 = 1;
const RESOURCES: u32 = 2;
const TYPE_URL: u32 = 4;
const NONCE: u32 = 5;
const REMOVED_RESOURCES: u32 = 6;

/// A `DeltaDiscoveryResponse` to send to one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The resource type.
    pub kind: Kind,
    /// The snapshot revision (`system_version_info`).
    pub revision: i64,
    /// The nonce the proxy answers with.
    pub nonce: String,
    /// Resources to add or replace, sorted by name; shared with the snapshot.
    pub resources: Vec<Arc<XdsResource>>,
    /// Names to remove.
    pub removed: Vec<String>,
}

impl Response {
    /// The response as one length-prefixed gRPC message (uncompressed), field for field what
    /// prost would encode for the equivalent `DeltaDiscoveryResponse`.
    pub fn to_frame(&self) -> Bytes {
        let version = self.revision.to_string();
        let type_url = self.kind.type_url();
        let resources = self.resources.iter().map(|r| &r.encoded[..]);
        let removed = self.removed.iter().map(String::as_bytes);
        let len = string_len(SYSTEM_VERSION_INFO, version.as_bytes())
            + resources
                .clone()
                .map(|r| field_len(RESOURCES, r))
                .sum::<usize>()
            + string_len(TYPE_URL, type_url.as_bytes())
            + string_len(NONCE, self.nonce.as_bytes())
            + removed
                .clone()
                .map(|r| field_len(REMOVED_RESOURCES, r))
                .sum::<usize>();
        let prefix = u32::try_from(len).expect("a response is smaller than 4 GiB");

        let mut frame = Vec::with_capacity(GRPC_PREFIX_LEN + len);
        frame.put_u8(0);
        frame.put_u32(prefix);
        put_string(&mut frame, SYSTEM_VERSION_INFO, version.as_bytes());
        resources.for_each(|r| put_field(&mut frame, RESOURCES, r));
        put_string(&mut frame, TYPE_URL, type_url.as_bytes());
        put_string(&mut frame, NONCE, self.nonce.as_bytes());
        removed.for_each(|r| put_field(&mut frame, REMOVED_RESOURCES, r));
        debug_assert_eq!(frame.len(), frame.capacity());
        Bytes::from(frame)
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

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    use super::*;

    fn resource(name: &str, version: &str, value: &[u8]) -> Arc<XdsResource> {
        let any = Any {
            type_url: Kind::Route.type_url().to_owned(),
            value: value.to_vec(),
        };
        Arc::new(XdsResource::new(name.to_owned(), version.to_owned(), any))
    }

    /// What tonic's prost codec would have sent for `response`.
    fn prost_frame(response: &Response) -> Vec<u8> {
        let message = DeltaDiscoveryResponse {
            system_version_info: response.revision.to_string(),
            resources: response
                .resources
                .iter()
                .map(|r| Resource::decode(r.encoded.clone()).unwrap())
                .collect(),
            type_url: response.kind.type_url().to_owned(),
            removed_resources: response.removed.clone(),
            nonce: response.nonce.clone(),
            ..Default::default()
        };
        let body = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn frame_is_what_prost_encodes() {
        let big = vec![7u8; 300]; // a length that needs a two-byte varint
        let response = Response {
            kind: Kind::Route,
            revision: 42,
            nonce: "3".to_owned(),
            resources: vec![resource("a", "41", b"x"), resource("b", "42", &big)],
            removed: vec!["c".to_owned(), String::new()],
        };
        let frame = response.to_frame();
        assert_eq!(&frame[..], &prost_frame(&response)[..]);
        let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
        assert_eq!(decoded.resources.len(), 2);
        assert_eq!(decoded.resources[1].resource.as_ref().unwrap().value, big);
        assert_eq!(decoded.removed_resources, ["c", ""]);
    }

    #[test]
    fn empty_response_still_names_type_version_and_nonce() {
        let response = Response {
            kind: Kind::Cluster,
            revision: 0,
            nonce: "1".to_owned(),
            resources: Vec::new(),
            removed: Vec::new(),
        };
        let frame = response.to_frame();
        assert_eq!(&frame[..], &prost_frame(&response)[..]);
        let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
        assert_eq!(decoded.type_url, Kind::Cluster.type_url());
        assert_eq!(decoded.system_version_info, "0");
        assert_eq!(decoded.nonce, "1");
    }
}
