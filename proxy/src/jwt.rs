//! JWT verification for routes with `auth.jwt`: one [`JwtVerifier`] per provider, built once
//! per config, called from the request path.
//!
//! A token is accepted when all of this holds: it is a compact JWS whose `alg` is one of the
//! provider's `algorithms` (never `none`); the key picked by `kid` (or the only fitting key when
//! there is no `kid`) is of the type that `alg` needs, so an HS256 token is never checked with
//! an RSA, EC or OKP key; the signature verifies; `iss` equals the issuer; `aud` holds one of
//! the audiences (when any are configured); `exp` is present and not passed, `nbf` and `iat`
//! are not in the future — each within [`CLOCK_SKEW`]; `sub` is present. Scopes come from the
//! `scope` claim (space-separated) and the `scopes` array.
//!
//! - [`spec`]: `switchyard.v1.JwtProvider` → [`JwtProviderSpec`] (a failure is a NACK).
//! - [`keys`]: a JWKS document → decoded keys, and key selection by `kid` / `alg`.
//! - `token`: splitting a token, its header, its claims (pure).
//! - [`remote`]: keys from a `jwks_uri` — fetch, cache, single-flight refetch, refresh timer.
//! - [`algorithms`]: the accepted algorithm names and sets.
//!
//! Signatures are checked with `ring` (the provider rustls already links); each key is decoded
//! once per key set. Per request the verifier allocates only the decoded header and payload and
//! what it returns (the signature is decoded on the stack). Measured (`cargo bench --bench jwt`,
//! 2-core dev box): HS256 ≈ 1.3 µs, RS256 ≈ 25 µs, ES256 ≈ 66 µs, EdDSA ≈ 60 µs per `verify`.
//!
//! Not here: reading route policies and the bearer token, scope checks against a route,
//! stripping the credential or setting `x-consumer` — that is the auth filter's job.

pub mod algorithms;
pub mod keys;
pub mod remote;
pub mod spec;
mod token;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use algorithms::{Algorithm, AlgorithmSet};
pub use keys::{JwksError, KeySet};
pub use remote::JwksOptions;
pub use spec::{JwksSource, JwtProviderSpec, JwtSpecError};

use keys::{Key, KeyMiss};
use remote::RemoteKeys;
use token::{ClaimRules, Compact};

/// Allowed clock difference for `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Longest token accepted; larger ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest signature: RSA-8192. Decoded on the stack; its base64 decoder wants a little slack.
const MAX_SIGNATURE_BYTES: usize = 1024 + 8;

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim: what the proxy sends upstream as `x-consumer`.
    pub subject: String,
    /// From `scope` (space-separated) then `scopes` (array).
    pub scopes: Vec<String>,
    /// The `exp` claim.
    pub expires_at: Option<SystemTime>,
}

/// Why a token was refused. Every variant is a 401; [`JwtError::reason`] is safe to send to
/// the client: it never holds key material or any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    BadHeader,
    Unsigned,
    UnsupportedAlgorithm,
    /// The algorithm is known but not in the provider's `algorithms`.
    AlgorithmNotAllowed(Algorithm),
    CriticalHeader,
    UnknownKey,
    KeyAlgorithmMismatch,
    AmbiguousKey,
    NoKeyForAlgorithm,
    /// A `jwks_uri` provider whose keys could not be fetched yet.
    KeysUnavailable,
    BadSignature,
    MalformedClaims,
    MissingExpiry,
    MissingSubject,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for JwtError {}

impl JwtError {
    /// The client-facing text (also the `Display`).
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "token is too large",
            JwtError::Malformed => "token is not a signed JWT (base64url header.payload.signature)",
            JwtError::BadHeader => "token header is not a valid JOSE header",
            JwtError::Unsigned => "unsigned tokens (alg none) are not accepted",
            JwtError::UnsupportedAlgorithm => "token algorithm is not supported",
            JwtError::AlgorithmNotAllowed(_) => "token algorithm is not accepted by this provider",
            JwtError::CriticalHeader => "token header has critical extensions (crit)",
            JwtError::UnknownKey => "no signing key matches the token's kid",
            JwtError::KeyAlgorithmMismatch => {
                "the signing key named by the token's kid does not accept its algorithm"
            }
            JwtError::AmbiguousKey => "token has no kid and several signing keys fit its algorithm",
            JwtError::NoKeyForAlgorithm => "no signing key fits the token's algorithm",
            JwtError::KeysUnavailable => "the provider's signing keys are unavailable",
            JwtError::BadSignature => "token signature is invalid",
            JwtError::MalformedClaims => "token claims are not a valid JSON claims set",
            JwtError::MissingExpiry => "token has no exp claim",
            JwtError::MissingSubject => "token has no sub claim",
            JwtError::Expired => "token has expired",
            JwtError::NotYetValid => "token is not valid yet (nbf)",
            JwtError::IssuedInFuture => "token was issued in the future (iat)",
            JwtError::WrongIssuer => "token issuer is not accepted",
            JwtError::WrongAudience => "token audience is not accepted",
        }
    }
}

/// Verifies tokens for one provider. Cheap to clone (one `Arc`). A `jwks_uri` provider's
/// background refresh is [`JwtVerifier::refresher`], for the caller to run.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    spec: JwtProviderSpec,
    keys: KeySource,
}

enum KeySource {
    Inline(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("spec", &self.inner.spec)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier with the default [`JwksOptions`].
    pub fn new(spec: JwtProviderSpec) -> Self {
        Self::with_options(spec, JwksOptions::default())
    }

    /// A verifier; building one starts nothing and fetches nothing. A `jwks_uri` provider's
    /// keys are fetched by its [`JwtVerifier::refresher`] when someone runs it, else on the
    /// first `verify`.
    pub fn with_options(spec: JwtProviderSpec, options: JwksOptions) -> Self {
        let keys = match &spec.keys {
            JwksSource::Inline { keys, .. } => KeySource::Inline(Arc::clone(keys)),
            JwksSource::Uri(uri) => KeySource::Remote(Arc::new(RemoteKeys::new(
                spec.name.clone(),
                uri.clone(),
                spec.algorithms,
                options,
            ))),
        };
        Self {
            inner: Arc::new(Inner { spec, keys }),
        }
    }

    /// The background refresh of a `jwks_uri` provider's keys (first fetch at once, then every
    /// `refresh_interval`), for the caller to spawn; `None` for inline keys. It ends by itself
    /// once every clone of this verifier has been dropped.
    pub fn refresher(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        match &self.inner.keys {
            KeySource::Remote(remote) => Some(RemoteKeys::refresh_loop(Arc::downgrade(remote))),
            KeySource::Inline(_) => None,
        }
    }

    /// Whether `other` is a clone of this verifier (the same keys, the same refresh).
    pub fn same(&self, other: &JwtVerifier) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn spec(&self) -> &JwtProviderSpec {
        &self.inner.spec
    }

    /// Checks `token` (the part after `Bearer `) at time `now`. Only an unknown `kid` of a
    /// `jwks_uri` provider can wait (on the single refetch); every other path is lock-free.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let compact = token::split(token)?;
        let header_json = token::decode_part(compact.header)?;
        let header = token::parse_header(&header_json)?;
        let alg = header.alg;
        if !self.inner.spec.algorithms.contains(alg) {
            return Err(JwtError::AlgorithmNotAllowed(alg));
        }
        let kid = header.kid.as_deref();
        let remote = match &self.inner.keys {
            KeySource::Inline(keys) => {
                let key = keys.select(kid, alg).map_err(miss_error)?;
                return self.check(&compact, key, alg, now);
            }
            KeySource::Remote(remote) => remote,
        };
        let seen = remote.completed();
        {
            let keys = remote.current();
            match keys.select(kid, alg) {
                Ok(key) => return self.check(&compact, key, alg, now),
                Err(miss) if miss != KeyMiss::UnknownKid && !keys.is_empty() => {
                    return Err(miss_error(miss));
                }
                Err(_) => {}
            }
        }
        remote.refetch_if_due(seen).await;
        let keys = remote.current();
        if keys.is_empty() {
            return Err(JwtError::KeysUnavailable);
        }
        let key = keys.select(kid, alg).map_err(miss_error)?;
        self.check(&compact, key, alg, now)
    }

    fn check(
        &self,
        compact: &Compact<'_>,
        key: &Key,
        alg: Algorithm,
        now: SystemTime,
    ) -> Result<VerifiedToken, JwtError> {
        let mut signature = [0u8; MAX_SIGNATURE_BYTES];
        let len = URL_SAFE_NO_PAD
            .decode_slice(compact.signature, &mut signature)
            .map_err(|_| JwtError::BadSignature)?;
        if !key.verify(alg, compact.signing_input.as_bytes(), &signature[..len]) {
            return Err(JwtError::BadSignature);
        }
        let payload = token::decode_part(compact.payload)?;
        let spec = &self.inner.spec;
        let rules = ClaimRules {
            issuer: &spec.issuer,
            audiences: &spec.audiences,
            leeway: CLOCK_SKEW,
        };
        token::check_claims(&payload, &rules, now)
    }
}

fn miss_error(miss: KeyMiss) -> JwtError {
    match miss {
        KeyMiss::UnknownKid => JwtError::UnknownKey,
        KeyMiss::WrongAlgorithm => JwtError::KeyAlgorithmMismatch,
        KeyMiss::Ambiguous => JwtError::AmbiguousKey,
        KeyMiss::NoKeyForAlgorithm => JwtError::NoKeyForAlgorithm,
    }
}

/// The verifiers of one config, by provider name.
#[derive(Debug, Clone, Default)]
pub struct JwtProviders {
    by_name: HashMap<String, JwtVerifier>,
}

impl JwtProviders {
    /// Builds a verifier per spec, reusing `previous`'s verifier for every provider whose spec
    /// is unchanged, so a config push does not refetch every `jwks_uri`.
    pub fn build(
        specs: impl IntoIterator<Item = JwtProviderSpec>,
        previous: Option<&JwtProviders>,
    ) -> Self {
        let by_name = specs
            .into_iter()
            .map(|spec| {
                let name = spec.name.clone();
                let reused = previous
                    .and_then(|previous| previous.get(&name))
                    .filter(|verifier| *verifier.spec() == spec)
                    .cloned();
                let verifier = reused.unwrap_or_else(|| JwtVerifier::new(spec));
                (name, verifier)
            })
            .collect();
        Self { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&JwtVerifier> {
        self.by_name.get(name)
    }

    /// Every verifier, with its provider's name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &JwtVerifier)> {
        self.by_name.iter().map(|(name, v)| (name.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
