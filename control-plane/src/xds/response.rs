//! One Delta ADS response as a session builds it, and its wire form: a single gRPC message
//! frame written straight from the snapshot's pre-encoded resources.
//!
//! A response is an [`Update`] (type, revision, resources, removed names) plus the nonce of the
//! stream it goes to. An update one session computed for itself is encoded only when framed; an
//! update shared by many sessions (see `xds::delta`) encodes every field but the nonce once, and
//! each stream's frame copies those bytes around its own nonce.
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
    /// An update for one stream, encoded when framed.
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

/// A `DeltaDiscoveryResponse` to send to one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The nonce the proxy answers with.
    pub nonce: String,
    /// Everything else; possibly shared with other streams.
    pub update: Arc<Update>,
}

impl Response {
    /// The response as one length-prefixed gRPC message (uncompressed), byte for byte what
    /// prost would encode for the equivalent `DeltaDiscoveryResponse`.
    pub fn to_frame(&self) -> Bytes {
        let update = &*self.update;
        let nonce = self.nonce.as_bytes();
        match &update.encoded {
            Some((head, tail)) => frame(
                head.len(),
                |buf| buf.put_slice(head),
                nonce,
                tail.len(),
                |buf| buf.put_slice(tail),
            ),
            None => {
                let version = update.revision.to_string();
                frame(
                    update.head_len(&version),
                    |buf| update.put_head(&version, buf),
                    nonce,
                    update.tail_len(),
                    |buf| update.put_tail(buf),
                )
            }
        }
    }
}

/// One gRPC frame: `head_len` bytes written by `head`, the nonce, `tail_len` bytes by `tail`.
fn frame(
    head_len: usize,
    head: impl FnOnce(&mut Vec<u8>),
    nonce: &[u8],
    tail_len: usize,
    tail: impl FnOnce(&mut Vec<u8>),
) -> Bytes {
    let len = head_len + string_len(NONCE, nonce) + tail_len;
    let prefix = u32::try_from(len).expect("a response is smaller than 4 GiB");
    let mut frame = Vec::with_capacity(GRPC_PREFIX_LEN + len);
    frame.put_u8(0);
    frame.put_u32(prefix);
    head(&mut frame);
    put_string(&mut frame, NONCE, nonce);
    tail(&mut frame);
    debug_assert_eq!(frame.len(), frame.capacity());
    Bytes::from(frame)
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
        let update = &response.update;
        let message = DeltaDiscoveryResponse {
            system_version_info: update.revision.to_string(),
            resources: update
                .resources
                .iter()
                .map(|r| Resource::decode(r.encoded.clone()).unwrap())
                .collect(),
            type_url: update.kind.type_url().to_owned(),
            removed_resources: update.removed.clone(),
            nonce: response.nonce.clone(),
            ..Default::default()
        };
        let body = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    fn response(nonce: &str, update: Update) -> Response {
        Response {
            nonce: nonce.to_owned(),
            update: Arc::new(update),
        }
    }

    #[test]
    fn frame_is_what_prost_encodes_whether_shared_or_not() {
        let big = vec![7u8; 300]; // a length that needs a two-byte varint
        let resources = vec![resource("a", "41", b"x"), resource("b", "42", &big)];
        let removed = vec!["c".to_owned(), String::new()];
        let own = Update::new(Kind::Route, 42, resources.clone(), removed.clone());
        let shared = Update::shared(Kind::Route, 42, resources, removed);
        for response in [response("3", own), response("3", shared)] {
            let frame = response.to_frame();
            assert_eq!(&frame[..], &prost_frame(&response)[..]);
            let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
            assert_eq!(decoded.resources.len(), 2);
            assert_eq!(decoded.resources[1].resource.as_ref().unwrap().value, big);
            assert_eq!(decoded.removed_resources, ["c", ""]);
            assert_eq!(decoded.nonce, "3");
        }
    }

    #[test]
    fn a_shared_update_is_framed_with_each_streams_nonce() {
        let removed = vec!["gone".to_owned()];
        let update = Update::shared(Kind::Route, 7, vec![resource("a", "7", b"x")], removed);
        let update = Arc::new(update);
        for nonce in ["1", "12345678901234567890"] {
            let response = Response {
                nonce: nonce.to_owned(),
                update: Arc::clone(&update),
            };
            let frame = response.to_frame();
            assert_eq!(&frame[..], &prost_frame(&response)[..]);
            let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
            assert_eq!(decoded.nonce, nonce);
            assert_eq!(decoded.removed_resources, ["gone"]);
        }
    }

    #[test]
    fn empty_response_still_names_type_version_and_nonce() {
        for update in [
            Update::new(Kind::Cluster, 0, Vec::new(), Vec::new()),
            Update::shared(Kind::Cluster, 0, Vec::new(), Vec::new()),
        ] {
            let response = response("1", update);
            let frame = response.to_frame();
            assert_eq!(&frame[..], &prost_frame(&response)[..]);
            let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
            assert_eq!(decoded.type_url, Kind::Cluster.type_url());
            assert_eq!(decoded.system_version_info, "0");
            assert_eq!(decoded.nonce, "1");
        }
    }
}
