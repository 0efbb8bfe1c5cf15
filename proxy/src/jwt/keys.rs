//! A JWKS document → a [`KeySet`]: each usable key decoded once, tagged with the algorithms
//! it may verify, and picked per token by `kid` and `alg`.
//!
//! A key's algorithms are what its type allows (`oct` → HS*, `RSA` → RS*/PS*, `EC` P-256 →
//! ES256, P-384 → ES384, `OKP` Ed25519 → EdDSA), narrowed by its own `alg` and by the
//! provider's list. That table is what refuses algorithm confusion: an HS256 token can only
//! ever be checked against an `oct` key. Keys that cannot be used (encryption keys, unknown
//! curves, short secrets, small RSA moduli) are skipped; a document with none left is refused.
//! Signatures are checked with `ring` (constant-time HMAC comparison). An EC or Ed25519 key of
//! the right length but not on its curve is not detected here: every signature fails against it.
//! This module does no I/O: fetching is [`super::remote`]'s job.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use super::algorithms::{self, Algorithm, AlgorithmSet};

/// Largest JWKS document accepted, inline or fetched.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys one JWKS may hold.
pub const MAX_KEYS: usize = 100;
/// `ring`'s RSA bounds: smaller moduli are unsafe, larger ones it refuses at verification.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Why a JWKS document was refused. The text names the problem, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("is not a JWKS document ({{\"keys\": [...]}}): {0}")]
    NotJwks(String),
    #[error("holds {0} keys (at most {MAX_KEYS})")]
    TooManyKeys(usize),
    #[error("has no key usable with algorithms {algorithms}: {reasons}")]
    NoUsableKey { algorithms: String, reasons: String },
}

/// The decoded keys of one JWKS document. Immutable; replaced whole on a refetch.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// One verification key.
#[derive(Debug)]
pub(crate) struct Key {
    pub kid: Option<String>,
    /// Never empty, always within the provider's algorithms.
    pub algorithms: AlgorithmSet,
    material: Material,
}

/// A key in the form `ring` verifies with, decoded once.
enum Material {
    /// One `ring` HMAC key per usable hash (HS256, HS384, HS512).
    Hmac(Box<[Option<hmac::Key>; 3]>),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// Uncompressed SEC1 point (`04 || x || y`).
    Ec(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl fmt::Debug for Material {
    /// Names the kind only: an HMAC key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Material::Hmac(_) => "Hmac",
            Material::Rsa(_) => "Rsa",
            Material::Ec(_) => "Ec",
            Material::Ed25519(_) => "Ed25519",
        })
    }
}

impl Key {
    /// Whether `signature` over `message` is valid under `alg`. `false` for an `alg` this key
    /// does not accept, whatever the bytes.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.algorithms.contains(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Hmac(keys), Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                let index = match alg {
                    Algorithm::HS256 => 0,
                    Algorithm::HS384 => 1,
                    _ => 2,
                };
                keys[index]
                    .as_ref()
                    .is_some_and(|key| hmac::verify(key, message, signature).is_ok())
            }
            (Material::Rsa(components), _) => {
                let params = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                components.verify(params, message, signature).is_ok()
            }
            (Material::Ec(point), Algorithm::ES256) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Ec(point), Algorithm::ES384) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Ed25519(public), Algorithm::EdDSA) => {
                UnparsedPublicKey::new(&sig::ED25519, public)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// Why no key was selected for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMiss {
    /// No key carries the token's `kid`.
    UnknownKid,
    /// Keys carry the `kid`, but none of them may verify the token's `alg`.
    WrongAlgorithm,
    /// No `kid`, and more than one key fits the `alg`.
    Ambiguous,
    /// No `kid`, and no key fits the `alg`.
    NoKeyForAlgorithm,
}

impl KeySet {
    /// Decodes `json`, keeping the keys usable with `allowed`; refused when none is.
    pub fn parse(json: &[u8], allowed: AlgorithmSet) -> Result<Self, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let document: RawJwks =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        if document.keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(document.keys.len()));
        }
        let mut keys = Vec::with_capacity(document.keys.len());
        let mut reasons = Vec::new();
        for (index, value) in document.keys.into_iter().enumerate() {
            let built = RawJwk::deserialize(value)
                .map_err(|_| "is not a JWK (kty and string members)".to_owned())
                .and_then(|raw| decode_key(&raw, allowed));
            match built {
                Ok(key) => keys.push(key),
                Err(reason) => reasons.push(format!("keys[{index}] {reason}")),
            }
        }
        if keys.is_empty() {
            if reasons.is_empty() {
                reasons.push("the keys array is empty".to_owned());
            }
            return Err(JwksError::NoUsableKey {
                algorithms: format!("{allowed:?}"),
                reasons: reasons.join("; "),
            });
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key that verifies a token with this `kid` and `alg`: by `kid` when the token has
    /// one, else the only key that fits `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, KeyMiss> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(KeyMiss::UnknownKid);
                }
                named
                    .find(|key| key.algorithms.contains(alg))
                    .ok_or(KeyMiss::WrongAlgorithm)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|key| key.algorithms.contains(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    (Some(_), Some(_)) => Err(KeyMiss::Ambiguous),
                    (None, _) => Err(KeyMiss::NoKeyForAlgorithm),
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// The JWK members the verifier reads (RFC 7517 / 7518 / 8037); others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
}

/// Decodes one JWK, or says (without key material) why it cannot verify signatures here.
fn decode_key(raw: &RawJwk, allowed: AlgorithmSet) -> Result<Key, String> {
    if let Some(usage) = raw.public_key_use.as_deref()
        && usage != "sig"
    {
        return Err(format!("has use {usage:?}, not \"sig\""));
    }
    if let Some(ops) = &raw.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("has key_ops without \"verify\"".to_owned());
    }
    let (fitting, material) = match raw.kty.as_str() {
        "oct" => {
            let secret = base64url(member(&raw.k, "k")?, "k")?;
            // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
            let hashes = [
                (Algorithm::HS256, 32, hmac::HMAC_SHA256),
                (Algorithm::HS384, 48, hmac::HMAC_SHA384),
                (Algorithm::HS512, 64, hmac::HMAC_SHA512),
            ];
            let mut fitting = AlgorithmSet::EMPTY;
            let mut keys = [None, None, None];
            for (slot, (alg, min_len, hash)) in keys.iter_mut().zip(hashes) {
                if secret.len() >= min_len {
                    fitting = fitting.with(alg);
                    *slot = Some(hmac::Key::new(hash, &secret));
                }
            }
            if secret.len() < 32 {
                return Err(format!(
                    "is an oct key of {} bytes (HMAC needs at least 32)",
                    secret.len()
                ));
            }
            (fitting, Material::Hmac(Box::new(keys)))
        }
        "RSA" => {
            let n = base64url(member(&raw.n, "n")?, "n")?;
            let e = base64url(member(&raw.e, "e")?, "e")?;
            check_rsa(&n, &e)?;
            (
                AlgorithmSet::RSA,
                Material::Rsa(RsaPublicKeyComponents { n, e }),
            )
        }
        "EC" => {
            let (alg, len) = match raw.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err("is an EC key whose crv is not P-256 or P-384".to_owned()),
            };
            let x = base64url(member(&raw.x, "x")?, "x")?;
            let y = base64url(member(&raw.y, "y")?, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("has EC coordinates that are not {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (AlgorithmSet::of(&[alg]), Material::Ec(point))
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err("is an OKP key whose crv is not Ed25519".to_owned());
            }
            let x = base64url(member(&raw.x, "x")?, "x")?;
            if x.len() != 32 {
                return Err("has an Ed25519 x that is not 32 bytes".to_owned());
            }
            (AlgorithmSet::of(&[Algorithm::EdDSA]), Material::Ed25519(x))
        }
        _ => return Err("has a kty other than oct, RSA, EC or OKP".to_owned()),
    };
    let mut algorithms = fitting.intersection(allowed);
    if let Some(name) = raw.alg.as_deref() {
        match algorithms::parse(name) {
            Some(alg) if fitting.contains(alg) => {
                algorithms = algorithms.intersection(AlgorithmSet::of(&[alg]));
            }
            _ => return Err(format!("has alg {name:?}, which does not fit its kty")),
        }
    }
    if algorithms.is_empty() {
        return Err(format!(
            "({} key) fits none of the configured algorithms",
            raw.kty
        ));
    }
    Ok(Key {
        kid: raw.kid.clone(),
        algorithms,
        material,
    })
}

fn member<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .ok_or_else(|| format!("has no {name:?} member"))
}

fn base64url(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("has a {name:?} that is not base64url"))
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = trim_leading_zeros(n);
    let bits = n
        .first()
        .map_or(0, |first| n.len() * 8 - first.leading_zeros() as usize);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "is an RSA key of {bits} bits (needs {MIN_RSA_BITS} to {MAX_RSA_BITS})"
        ));
    }
    let e = trim_leading_zeros(e);
    let exponent = (e.len() <= 5).then(|| e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)));
    match exponent {
        // `ring`'s bounds for a public exponent.
        Some(value) if (3..1 << 33).contains(&value) && value % 2 == 1 => Ok(()),
        _ => Err("has an unusable RSA exponent".to_owned()),
    }
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
