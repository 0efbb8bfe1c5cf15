//! Cost of one `JwtVerifier::verify` per algorithm (inline JWKS, valid token with a `kid`):
//! split + base64 + header + key lookup + signature + claims, i.e. the whole per-request JWT
//! work of the auth filter.
//!
//! `verify` never awaits for inline keys, so each iteration polls it once with a no-op waker:
//! no runtime overhead is measured.
//!
//! `cargo bench -p proxy --bench jwt` (add `-- --quick` for a fast pass).

#[path = "../src/jwt/test_keys.rs"]
#[allow(dead_code)]
mod test_keys;

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use switchyard_proto::v1;
use switchyard_proxy::jwt::{JwtProviderSpec, JwtVerifier, VerifiedToken};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn setup(alg: Algorithm, key: EncodingKey, name: &str) -> (JwtVerifier, String) {
    let mut jwk = if alg == Algorithm::HS256 {
        json!({"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"})
    } else {
        serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap()
    };
    jwk["kid"] = "k1".into();
    let proto = v1::JwtProvider {
        name: "bench".into(),
        issuer: "https://issuer.example/".into(),
        audiences: vec!["api".into()],
        jwks_json: json!({ "keys": [jwk] }).to_string(),
        jwks_uri: String::new(),
        algorithms: vec![name.into()],
    };
    let verifier = JwtVerifier::new(JwtProviderSpec::try_from(&proto).unwrap());
    let claims = json!({
        "iss": "https://issuer.example/", "aud": "api", "sub": "user-1",
        "iat": NOW - 10, "exp": NOW + 3600, "scope": "read write",
    });
    let header = Header {
        kid: Some("k1".into()),
        ..Header::new(alg)
    };
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    (verifier, token)
}

fn verify_now(verifier: &JwtVerifier, token: &str, now: SystemTime) -> VerifiedToken {
    let mut future = pin!(verifier.verify(token, now));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(verified) => verified.unwrap(),
        Poll::Pending => unreachable!("inline keys never wait"),
    }
}

fn bench(c: &mut Criterion) {
    let pem = |text: &str| text.as_bytes().to_vec();
    let cases = [
        ("HS256", Algorithm::HS256, EncodingKey::from_secret(SECRET)),
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem(test_keys::RSA_PRIVATE_PEM)).unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem(test_keys::EC_P256_PRIVATE_PEM)).unwrap(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem(test_keys::ED25519_PRIVATE_PEM)).unwrap(),
        ),
    ];
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let mut group = c.benchmark_group("jwt_verify");
    for (name, alg, key) in cases {
        let (verifier, token) = setup(alg, key, name);
        assert_eq!(verify_now(&verifier, &token, now).subject, "user-1");
        group.bench_function(name, |b| {
            b.iter(|| verify_now(&verifier, black_box(&token), now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
