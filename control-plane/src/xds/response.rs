//! One Delta ADS response as a session sends it, and its wire form: a single gRPC message
//! frame.
//!
//! A response is an [`Update`] (type, revision, resources, removed names; possibly shared by
//! many sessions, see `snapshot::delta`) plus the nonce of the stream it goes to. The frame is
//! the gRPC prefix followed by the update's encoding under that nonce ([`Update::encode`]),
//! written straight from the snapshot's pre-encoded resources.
//!
//! No per-stream protobuf objects are built and no resource is re-encoded: each resource's
//! bytes are copied once from the shared snapshot into a frame allocated at its exact size,
//! which is freed as soon as it has been written to the connection. (tonic's own encoder keeps
//! a per-stream buffer as large as the largest message the stream ever sent, i.e. a whole first
//! sync per proxy, for as long as the stream lives.)

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::snapshot::Update;

/// The gRPC message prefix: a compressed flag and the big-endian message length.
pub const GRPC_PREFIX_LEN: usize = 5;

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
    /// tonic's prost codec would send for the equivalent `DeltaDiscoveryResponse`.
    pub fn to_frame(&self) -> Bytes {
        let len = self.update.encoded_len(&self.nonce);
        let prefix = u32::try_from(len).expect("a response is smaller than 4 GiB");
        let mut frame = Vec::with_capacity(GRPC_PREFIX_LEN + len);
        frame.put_u8(0);
        frame.put_u32(prefix);
        self.update.encode(&self.nonce, &mut frame);
        debug_assert_eq!(frame.len(), frame.capacity());
        Bytes::from(frame)
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
    use prost::Message;

    use super::*;
    use crate::model::Kind;
    use crate::snapshot::update::test_support::{prost_message, resource};

    /// What tonic's prost codec would have sent for `response`.
    fn prost_frame(response: &Response) -> Vec<u8> {
        let body = prost_message(&response.update, &response.nonce);
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn frame_is_what_tonics_prost_codec_sends_whether_shared_or_not() {
        let big = vec![7u8; 300]; // a length that needs a two-byte varint
        let resources = vec![resource("a", "41", b"x"), resource("b", "42", &big)];
        let removed = vec!["c".to_owned(), String::new()];
        let updates = [
            Update::new(Kind::Route, 42, resources.clone(), removed.clone()),
            Update::shared(Kind::Route, 42, resources, removed),
            Update::new(Kind::Cluster, 0, Vec::new(), Vec::new()),
            Update::shared(Kind::Cluster, 0, Vec::new(), Vec::new()),
        ];
        for update in updates.map(Arc::new) {
            for nonce in ["3", "12345678901234567890"] {
                let response = Response {
                    nonce: nonce.to_owned(),
                    update: Arc::clone(&update),
                };
                let frame = response.to_frame();
                assert_eq!(&frame[..], &prost_frame(&response)[..]);
                let decoded = DeltaDiscoveryResponse::decode(&frame[GRPC_PREFIX_LEN..]).unwrap();
                assert_eq!(decoded.nonce, nonce);
            }
        }
    }
}
