//! Test helpers: signing tokens with the keys of [`super::test_keys`] and publishing their
//! public halves as JWKs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchyard_proto::v1;

use super::test_keys::{
    EC_P256_PRIVATE_PEM, EC_P384_PRIVATE_PEM, ED25519_PRIVATE_PEM, RSA_OTHER_PRIVATE_PEM,
    RSA_PRIVATE_PEM,
};

/// 64 bytes: long enough for HS256, HS384 and HS512.
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const ISSUER: &str = "https://issuer.example/";
pub const AUDIENCE: &str = "api";

/// The fixed "now" of the tests.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Seconds since the epoch of `now() + offset` (offset may be negative).
pub fn at(offset: i64) -> i64 {
    1_700_000_000 + offset
}

/// A test signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    Hmac,
    Rsa,
    RsaOther,
    P256,
    P384,
    Ed25519,
}

impl TestKey {
    pub fn encoding(self) -> EncodingKey {
        let pem = |pem: &str| pem.as_bytes().to_vec();
        match self {
            TestKey::Hmac => EncodingKey::from_secret(HMAC_SECRET),
            TestKey::Rsa => EncodingKey::from_rsa_pem(&pem(RSA_PRIVATE_PEM)).unwrap(),
            TestKey::RsaOther => EncodingKey::from_rsa_pem(&pem(RSA_OTHER_PRIVATE_PEM)).unwrap(),
            TestKey::P256 => EncodingKey::from_ec_pem(&pem(EC_P256_PRIVATE_PEM)).unwrap(),
            TestKey::P384 => EncodingKey::from_ec_pem(&pem(EC_P384_PRIVATE_PEM)).unwrap(),
            TestKey::Ed25519 => EncodingKey::from_ed_pem(&pem(ED25519_PRIVATE_PEM)).unwrap(),
        }
    }

    /// The public JWK (the secret, for HMAC) with `kid`, without an `alg` member.
    pub fn jwk(self, kid: Option<&str>) -> Value {
        let alg = match self {
            TestKey::Hmac => Algorithm::HS256,
            TestKey::Rsa | TestKey::RsaOther => Algorithm::RS256,
            TestKey::P256 => Algorithm::ES256,
            TestKey::P384 => Algorithm::ES384,
            TestKey::Ed25519 => Algorithm::EdDSA,
        };
        let mut jwk = if self == TestKey::Hmac {
            json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)})
        } else {
            serde_json::to_value(Jwk::from_encoding_key(&self.encoding(), alg).unwrap()).unwrap()
        };
        let object = jwk.as_object_mut().unwrap();
        object.remove("alg");
        if let Some(kid) = kid {
            object.insert("kid".into(), kid.into());
        }
        jwk
    }
}

/// Valid claims at [`now`]: issuer, audience, subject, an hour to live, two scopes.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": at(-10),
        "exp": at(3600),
        "scope": "read write",
    })
}

/// A token over `claims` signed with `key` under `alg`, `kid` in the header.
pub fn sign(alg: Algorithm, key: TestKey, kid: Option<&str>, claims: &Value) -> String {
    sign_with(alg, &key.encoding(), kid, claims)
}

pub fn sign_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token with any header, and `signature` as its third part (unsigned tokens).
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{signature}", part(header), part(claims))
}

/// A provider proto with an inline JWKS of `keys`.
pub fn inline_provider(algorithms: &[&str], keys: Vec<Value>) -> v1::JwtProvider {
    v1::JwtProvider {
        name: "test".into(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into(), "other-api".into()],
        jwks_json: json!({ "keys": keys }).to_string(),
        jwks_uri: String::new(),
        algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
    }
}
