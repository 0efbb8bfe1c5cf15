//! `auth`: who is calling. An API key (`x-api-key`) is looked up by its SHA-256 in the
//! snapshot's [`ConsumerIndex`]; a JWT (`authorization: Bearer …`) is checked by the route's
//! provider's verifier. Then the route's scopes are checked (403 when one is missing), the
//! credential header is stripped, and the upstream is told who called in `x-consumer`
//! (any client-sent `x-consumer` is replaced).
//!
//! A key is never compared in clear: the index is keyed by hash, so a lookup leaks nothing
//! about the key, and the found hash is compared again in constant time ([`ct_eq`]). The
//! index is built once per config; a revoked key is gone from the next snapshot.
//! This module does not verify JWT signatures itself: that is [`crate::jwt`]'s job, called
//! through `JwtCheck`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::{BuildContext, Policy, RequestContext};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::jwt::{JwtProviders, JwtVerifier};
use crate::model::{AuthSpec, ConsumerSpec, RouteSpec};

pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static X_CONSUMER: HeaderName = HeaderName::from_static("x-consumer");

/// Someone authenticated: a consumer (API key) or a JWT subject.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: Arc<str>,
    /// Sorted, deduplicated.
    pub scopes: Box<[String]>,
    /// The quota this consumer's requests are charged to (API-key consumers only).
    pub quota: Option<Box<str>>,
    /// `name` as the `x-consumer` value.
    header: HeaderValue,
}

impl Identity {
    /// `None` when `name` cannot be a header value.
    pub fn new(name: &str, mut scopes: Vec<String>) -> Option<Self> {
        let header = HeaderValue::from_str(name).ok()?;
        scopes.sort();
        scopes.dedup();
        Some(Self {
            name: name.into(),
            scopes: scopes.into_boxed_slice(),
            quota: None,
            header,
        })
    }

    /// The first of `required` (sorted) this identity lacks.
    pub fn missing_scope<'a>(&self, required: &'a [String]) -> Option<&'a String> {
        required
            .iter()
            .find(|scope| self.scopes.binary_search(scope).is_err())
    }
}

/// Every API key of the config, by SHA-256.
#[derive(Debug, Default)]
pub struct ConsumerIndex {
    by_hash: HashMap<[u8; 32], Arc<Identity>, BuildHasherDefault<DigestPrefix>>,
}

/// Hashes a SHA-256 digest by its first 8 bytes: the digest is already uniform, so hashing
/// it again (SipHash) buys nothing. Safe against flooding too: only the config inserts keys;
/// a client's key only ever looks one up.
#[derive(Debug, Default)]
struct DigestPrefix(u64);

impl Hasher for DigestPrefix {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(prefix) = bytes.first_chunk::<8>() {
            self.0 ^= u64::from_ne_bytes(*prefix);
        }
    }

    fn write_usize(&mut self, _length: usize) {
        // The slice length prefix: always 32 here.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl ConsumerIndex {
    pub fn build<'a>(consumers: impl IntoIterator<Item = &'a ConsumerSpec>) -> Self {
        let mut by_hash = HashMap::default();
        for consumer in consumers {
            let Some(mut identity) = Identity::new(&consumer.name, consumer.scopes.clone()) else {
                tracing::warn!(consumer = %consumer.name, "consumer name is not a valid header value; its keys are ignored");
                continue;
            };
            identity.quota = (!consumer.quota.is_empty()).then(|| consumer.quota.as_str().into());
            let identity = Arc::new(identity);
            for key in &consumer.keys {
                if let Some(other) = by_hash.insert(key.sha256, Arc::clone(&identity)) {
                    tracing::warn!(key_id = %key.id, consumer = %consumer.name, other = %other.name, "one key hash held by two consumers; the last one wins");
                }
            }
        }
        Self { by_hash }
    }

    /// The consumer holding `key`.
    pub fn lookup(&self, key: &[u8]) -> Option<&Arc<Identity>> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key);
        let hash: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        let (stored, identity) = self.by_hash.get_key_value(&hash)?;
        ct_eq(stored, &hash).then_some(identity)
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Equality whose time does not depend on where the inputs differ.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The compiled `auth` policy of one route.
#[derive(Debug)]
pub struct Auth {
    /// Set when the route accepts API keys.
    api_keys: Option<Arc<ConsumerIndex>>,
    jwt: Option<JwtCheck>,
    /// Sorted.
    scopes: Box<[String]>,
}

impl Auth {
    pub fn new(spec: &AuthSpec, consumers: &Arc<ConsumerIndex>, verifiers: &JwtProviders) -> Self {
        Self {
            api_keys: spec.api_key.then(|| Arc::clone(consumers)),
            jwt: spec.jwt.as_ref().map(|provider| JwtCheck {
                provider: provider.clone(),
                verifier: verifiers.get(provider).cloned(),
            }),
            scopes: spec.scopes.clone().into_boxed_slice(),
        }
    }

    /// Authenticates the request and rewrites its credential headers for the upstream.
    pub async fn apply(&self, headers: &mut HeaderMap) -> Result<Arc<Identity>, ProxyError> {
        let identity = self.identify(headers).await?;
        if let Some(scope) = identity.missing_scope(&self.scopes) {
            return Err(ProxyError::MissingScope(scope.clone()));
        }
        if self.api_keys.is_some() {
            headers.remove(&X_API_KEY);
        }
        headers.insert(X_CONSUMER.clone(), identity.header.clone());
        Ok(identity)
    }

    async fn identify(&self, headers: &mut HeaderMap) -> Result<Arc<Identity>, ProxyError> {
        if let Some(index) = &self.api_keys
            && let Some(key) = headers.get(&X_API_KEY)
        {
            return index
                .lookup(key.as_bytes())
                .cloned()
                .ok_or(ProxyError::Unauthorized("invalid API key"));
        }
        if let Some(jwt) = &self.jwt
            && let Some(token) = bearer(headers)
        {
            let identity = jwt.verify(token).await?;
            headers.remove(header::AUTHORIZATION);
            return Ok(identity);
        }
        Err(ProxyError::Unauthorized(
            match (&self.api_keys, &self.jwt) {
                (Some(_), None) => "missing API key (x-api-key)",
                (None, Some(_)) => "missing bearer token",
                _ => "missing credential (x-api-key or bearer token)",
            },
        ))
    }
}

/// The token of `authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The JWT branch of a route: its provider's verifier, resolved once per config.
#[derive(Debug)]
struct JwtCheck {
    provider: String,
    /// `None` when the provider is not (validly) in the config: 503, the proxy cannot judge.
    verifier: Option<JwtVerifier>,
}

impl JwtCheck {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>, ProxyError> {
        let Some(verifier) = &self.verifier else {
            return Err(ProxyError::JwtProviderUnavailable(self.provider.clone()));
        };
        jwt_identity(verifier, token).await
    }
}

// --- The one seam with `crate::jwt` -------------------------------------------------------

async fn jwt_identity(verifier: &JwtVerifier, token: &str) -> Result<Arc<Identity>, ProxyError> {
    let verified = verifier
        .verify(token, std::time::SystemTime::now())
        .await
        .map_err(|error| ProxyError::Unauthorized(error.reason()))?;
    Identity::new(&verified.subject, verified.scopes)
        .map(Arc::new)
        .ok_or(ProxyError::Unauthorized("token subject is not usable"))
}

impl Policy for Auth {
    type State = ();

    fn build(route: &RouteSpec, ctx: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        let spec = route.policies.auth.as_ref()?;
        Some(Auth::new(spec, ctx.consumers, ctx.verifiers))
    }

    async fn request(
        &self,
        parts: &mut http::request::Parts,
        ctx: &mut RequestContext<'_>,
        (): &mut (),
    ) -> Result<Option<http::Response<ProxyBody>>, ProxyError> {
        ctx.identity = Some(self.apply(&mut parts.headers).await?);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::consumer::ApiKeyHash;

    fn consumer(name: &str, scopes: &[&str], keys: &[&str]) -> ConsumerSpec {
        ConsumerSpec {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            quota: String::new(),
            keys: keys
                .iter()
                .map(|key| ApiKeyHash {
                    id: format!("id-{key}"),
                    sha256: ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
                        .as_ref()
                        .try_into()
                        .unwrap(),
                })
                .collect(),
        }
    }

    fn auth(spec: AuthSpec, consumers: &[ConsumerSpec]) -> Auth {
        let index = Arc::new(ConsumerIndex::build(consumers));
        Auth::new(&spec, &index, &JwtProviders::default())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[tokio::test]
    async fn api_keys_identify_strip_and_check_scopes() {
        let consumers = [
            consumer("acme", &["write", "read"], &["sy_a1", "sy_a2"]),
            consumer("bob", &["read"], &["sy_b"]),
        ];
        let spec = AuthSpec {
            api_key: true,
            jwt: None,
            scopes: vec!["read".into(), "write".into()],
        };
        let auth = auth(spec, &consumers);
        let mut request = headers(&[("x-api-key", "sy_a2"), ("x-consumer", "admin")]);
        let identity = auth.apply(&mut request).await.unwrap();
        assert_eq!(&*identity.name, "acme");
        assert!(!request.contains_key(&X_API_KEY), "credential stripped");
        assert_eq!(request[&X_CONSUMER], "acme", "client value replaced");

        let mut bob = headers(&[("x-api-key", "sy_b")]);
        assert_eq!(
            auth.apply(&mut bob).await.unwrap_err(),
            ProxyError::MissingScope("write".into())
        );
        let mut wrong = headers(&[("x-api-key", "sy_nope")]);
        assert_eq!(
            auth.apply(&mut wrong).await.unwrap_err(),
            ProxyError::Unauthorized("invalid API key")
        );
        let mut none = HeaderMap::new();
        assert_eq!(
            auth.apply(&mut none).await.unwrap_err().status(),
            http::StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn jwt_without_a_verifier_is_unavailable_and_api_key_still_works() {
        let spec = AuthSpec {
            api_key: true,
            jwt: Some("idp".into()),
            scopes: vec![],
        };
        let auth = auth(spec, &[consumer("acme", &[], &["sy_a"])]);
        let mut token = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(
            auth.apply(&mut token).await.unwrap_err(),
            ProxyError::JwtProviderUnavailable("idp".into())
        );
        let mut key = headers(&[("x-api-key", "sy_a"), ("authorization", "Basic x")]);
        assert_eq!(&*auth.apply(&mut key).await.unwrap().name, "acme");
        let mut nothing = headers(&[("authorization", "Basic x")]);
        assert_eq!(
            auth.apply(&mut nothing).await.unwrap_err(),
            ProxyError::Unauthorized("missing credential (x-api-key or bearer token)")
        );
    }

    #[test]
    fn constant_time_equality_and_bearer_parsing() {
        assert!(ct_eq(&[1; 32], &[1; 32]));
        let mut other = [1; 32];
        other[31] = 2;
        assert!(!ct_eq(&[1; 32], &other));
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer t0k")])),
            Some("t0k")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
    }
}
