//! `switchyard.v1.JwtProvider` → [`JwtProviderSpec`]: algorithm names parsed, the inline JWKS
//! decoded (or the `jwks_uri` checked), every refusal naming its field (a failure is a NACK).

use std::fmt;
use std::sync::Arc;

use switchyard_proto::v1;

use super::algorithms::{self, AlgorithmSet};
use super::keys::{JwksError, KeySet};

#[cfg(test)]
mod tests;

/// Longest accepted `jwks_uri`.
const MAX_URI_LEN: usize = 2048;

/// A validated JWT provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtProviderSpec {
    pub name: String,
    /// Required, exact `iss` claim.
    pub issuer: String,
    /// The token's `aud` must hold one of these; empty accepts any audience.
    pub audiences: Vec<String>,
    /// The only `alg` header values accepted.
    pub algorithms: AlgorithmSet,
    pub keys: JwksSource,
}

/// Where a provider's keys come from.
#[derive(Clone)]
pub enum JwksSource {
    /// Decoded at validation; `json` is kept to compare specs.
    Inline { json: String, keys: Arc<KeySet> },
    /// Fetched and refreshed by the verifier.
    Uri(http::Uri),
}

impl PartialEq for JwksSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Inline { json: a, .. }, Self::Inline { json: b, .. }) => a == b,
            (Self::Uri(a), Self::Uri(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for JwksSource {}

impl fmt::Debug for JwksSource {
    /// Inline keys are summarised: secrets (`oct` keys) must not reach logs or dumps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline { keys, .. } => write!(f, "Inline({} keys)", keys.len()),
            Self::Uri(uri) => write!(f, "Uri({uri})"),
        }
    }
}

/// Why a JWT provider was refused; the text starts with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSpecError {
    #[error("name is empty")]
    EmptyName,
    #[error("issuer is empty")]
    EmptyIssuer,
    #[error("audiences[{0}] is empty")]
    EmptyAudience(usize),
    #[error("algorithms[{index}] {value:?} is not one of {known}")]
    UnknownAlgorithm {
        index: usize,
        value: String,
        known: &'static str,
    },
    #[error("jwks_json, jwks_uri: set exactly one")]
    KeySource,
    #[error("jwks_json {0}")]
    Jwks(#[from] JwksError),
    #[error("jwks_uri {0:?} is not an http:// or https:// URL with a host")]
    BadUri(String),
}

const KNOWN_ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

impl TryFrom<&v1::JwtProvider> for JwtProviderSpec {
    type Error = JwtSpecError;

    fn try_from(proto: &v1::JwtProvider) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(JwtSpecError::EmptyName);
        }
        if proto.issuer.is_empty() {
            return Err(JwtSpecError::EmptyIssuer);
        }
        if let Some(index) = proto.audiences.iter().position(String::is_empty) {
            return Err(JwtSpecError::EmptyAudience(index));
        }
        let algorithms = parse_algorithms(&proto.algorithms)?;
        let keys = match (proto.jwks_json.is_empty(), proto.jwks_uri.is_empty()) {
            (false, true) => JwksSource::Inline {
                keys: Arc::new(KeySet::parse(proto.jwks_json.as_bytes(), algorithms)?),
                json: proto.jwks_json.clone(),
            },
            (true, false) => JwksSource::Uri(parse_uri(&proto.jwks_uri)?),
            _ => return Err(JwtSpecError::KeySource),
        };
        Ok(Self {
            name: proto.name.clone(),
            issuer: proto.issuer.clone(),
            audiences: proto.audiences.clone(),
            algorithms,
            keys,
        })
    }
}

fn parse_algorithms(names: &[String]) -> Result<AlgorithmSet, JwtSpecError> {
    // A provider that lists none accepts RS256, as the control plane documents.
    if names.is_empty() {
        return Ok(AlgorithmSet::of(&[algorithms::Algorithm::RS256]));
    }
    names
        .iter()
        .enumerate()
        .try_fold(
            AlgorithmSet::EMPTY,
            |set, (index, name)| match algorithms::parse(name) {
                Some(alg) => Ok(set.with(alg)),
                None => Err(JwtSpecError::UnknownAlgorithm {
                    index,
                    value: name.clone(),
                    known: KNOWN_ALGORITHMS,
                }),
            },
        )
}

fn parse_uri(text: &str) -> Result<http::Uri, JwtSpecError> {
    let bad = || JwtSpecError::BadUri(text.to_owned());
    if text.len() > MAX_URI_LEN {
        return Err(bad());
    }
    let uri: http::Uri = text.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(bad()),
    }
}
