//! `switchyard.v1.Consumer` → [`ConsumerSpec`]: a caller with scopes and the SHA-256 hashes of
//! its API keys (the proxy never sees a key in clear from the control plane).
//!
//! Indexing the hashes for lookup is the snapshot's job ([`crate::filters::auth`]).

use switchyard_proto::v1;

/// A validated consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub name: String,
    /// Sorted, deduplicated.
    pub scopes: Vec<String>,
    /// Quota name; empty when none.
    pub quota: String,
    pub keys: Vec<ApiKeyHash>,
}

/// One key of a consumer, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyHash {
    pub id: String,
    pub sha256: [u8; 32],
}

/// Why a consumer was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConsumerError {
    #[error("name is empty")]
    EmptyName,
    #[error("key {id:?}: sha256 must be 32 bytes, got {len}")]
    BadKeyHash { id: String, len: usize },
}

impl TryFrom<&v1::Consumer> for ConsumerSpec {
    type Error = ConsumerError;

    fn try_from(proto: &v1::Consumer) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(ConsumerError::EmptyName);
        }
        let keys = proto
            .keys
            .iter()
            .map(|key| {
                let sha256 = <[u8; 32]>::try_from(key.sha256.as_slice()).map_err(|_| {
                    ConsumerError::BadKeyHash {
                        id: key.id.clone(),
                        len: key.sha256.len(),
                    }
                })?;
                Ok(ApiKeyHash {
                    id: key.id.clone(),
                    sha256,
                })
            })
            .collect::<Result<_, ConsumerError>>()?;
        let mut scopes = proto.scopes.clone();
        scopes.sort();
        scopes.dedup();
        Ok(Self {
            name: proto.name.clone(),
            scopes,
            quota: proto.quota.clone(),
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_must_be_32_bytes() {
        let mut proto = v1::Consumer {
            name: "acme".into(),
            scopes: vec!["write".into(), "read".into()],
            keys: vec![v1::ApiKeyHash {
                id: "k1".into(),
                sha256: vec![7; 32],
            }],
            ..Default::default()
        };
        let spec = ConsumerSpec::try_from(&proto).unwrap();
        assert_eq!(spec.scopes, ["read", "write"]);
        assert_eq!(spec.keys[0].sha256, [7; 32]);
        proto.keys[0].sha256.pop();
        assert_eq!(
            ConsumerSpec::try_from(&proto).unwrap_err(),
            ConsumerError::BadKeyHash {
                id: "k1".into(),
                len: 31
            }
        );
    }
}
