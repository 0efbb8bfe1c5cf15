//! The validation table (inline JWKS), provider spec validation, and the small helpers.

use jsonwebtoken::{Algorithm as Alg, EncodingKey};
use serde_json::{Value, json};

use super::test_keys::RSA_PUBLIC_PEM;
use super::test_support::{
    AUDIENCE, ISSUER, TestKey, at, claims, inline_provider, now, raw_token, sign, sign_with,
};
use super::*;

const ALL_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn verifier(algorithms: &[&str], keys: Vec<Value>) -> JwtVerifier {
    let spec = JwtProviderSpec::try_from(&inline_provider(algorithms, keys)).unwrap();
    JwtVerifier::new(spec)
}

/// Every algorithm, one key of each type, each with a `kid`.
fn full_provider() -> JwtVerifier {
    verifier(
        &ALL_ALGORITHMS,
        vec![
            TestKey::Hmac.jwk(Some("hmac")),
            TestKey::Rsa.jwk(Some("rsa")),
            TestKey::P256.jwk(Some("p256")),
            TestKey::P384.jwk(Some("p384")),
            TestKey::Ed25519.jwk(Some("ed")),
        ],
    )
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn validation_table() {
    let full = full_provider();
    // RS256 only, one RSA key and no kid anywhere.
    let rs256_only = verifier(&["RS256"], vec![TestKey::Rsa.jwk(None)]);
    // HS256 allowed, but the only key is RSA: the classic confusion set-up.
    let rsa_and_hs = verifier(&["RS256", "HS256"], vec![TestKey::Rsa.jwk(Some("rsa"))]);
    // The RSA key pinned to RS256 by its own `alg`.
    let mut pinned_jwk = TestKey::Rsa.jwk(Some("rsa"));
    pinned_jwk["alg"] = "RS256".into();
    let pinned = verifier(&["RS256", "RS384"], vec![pinned_jwk]);
    let no_audiences = {
        let mut proto = inline_provider(&["HS256"], vec![TestKey::Hmac.jwk(None)]);
        proto.audiences.clear();
        JwtVerifier::new(JwtProviderSpec::try_from(&proto).unwrap())
    };
    let two_hmac = verifier(
        &["HS256"],
        vec![TestKey::Hmac.jwk(Some("a")), TestKey::Hmac.jwk(Some("b"))],
    );
    let confusion_secret = EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes());
    let ok = claims();
    let hs = |claims: &Value| sign(Alg::HS256, TestKey::Hmac, Some("hmac"), claims);

    let cases: Vec<(&str, &JwtVerifier, String, Result<(), JwtError>)> = vec![
        // One valid token per algorithm.
        ("HS256", &full, hs(&ok), Ok(())),
        (
            "HS384",
            &full,
            sign(Alg::HS384, TestKey::Hmac, Some("hmac"), &ok),
            Ok(()),
        ),
        (
            "HS512",
            &full,
            sign(Alg::HS512, TestKey::Hmac, Some("hmac"), &ok),
            Ok(()),
        ),
        (
            "RS256",
            &full,
            sign(Alg::RS256, TestKey::Rsa, Some("rsa"), &ok),
            Ok(()),
        ),
        (
            "RS384",
            &full,
            sign(Alg::RS384, TestKey::Rsa, Some("rsa"), &ok),
            Ok(()),
        ),
        (
            "RS512",
            &full,
            sign(Alg::RS512, TestKey::Rsa, Some("rsa"), &ok),
            Ok(()),
        ),
        (
            "PS256",
            &full,
            sign(Alg::PS256, TestKey::Rsa, Some("rsa"), &ok),
            Ok(()),
        ),
        (
            "ES256",
            &full,
            sign(Alg::ES256, TestKey::P256, Some("p256"), &ok),
            Ok(()),
        ),
        (
            "ES384",
            &full,
            sign(Alg::ES384, TestKey::P384, Some("p384"), &ok),
            Ok(()),
        ),
        (
            "EdDSA",
            &full,
            sign(Alg::EdDSA, TestKey::Ed25519, Some("ed"), &ok),
            Ok(()),
        ),
        (
            "no kid, one fitting key",
            &rs256_only,
            sign(Alg::RS256, TestKey::Rsa, None, &ok),
            Ok(()),
        ),
        (
            "no audiences configured: any aud",
            &no_audiences,
            sign(
                Alg::HS256,
                TestKey::Hmac,
                None,
                &with(ok.clone(), "aud", json!("x")),
            ),
            Ok(()),
        ),
        (
            "aud array holding an accepted audience",
            &full,
            hs(&with(ok.clone(), "aud", json!(["x", "other-api"]))),
            Ok(()),
        ),
        (
            "expired within skew",
            &full,
            hs(&with(ok.clone(), "exp", json!(at(-30)))),
            Ok(()),
        ),
        (
            "nbf within skew",
            &full,
            hs(&with(ok.clone(), "nbf", json!(at(30)))),
            Ok(()),
        ),
        (
            "fractional exp",
            &full,
            hs(&with(ok.clone(), "exp", json!(at(10) as f64 + 0.5))),
            Ok(()),
        ),
        // Signatures.
        (
            "wrong signature (other RSA key)",
            &full,
            sign(Alg::RS256, TestKey::RsaOther, Some("rsa"), &ok),
            Err(JwtError::BadSignature),
        ),
        (
            "tampered payload",
            &full,
            {
                let token = hs(&ok);
                let other = hs(&with(ok.clone(), "sub", json!("admin")));
                let (head, _) = token.rsplit_once('.').unwrap();
                let (_, sig) = other.rsplit_once('.').unwrap();
                format!("{head}.{sig}")
            },
            Err(JwtError::BadSignature),
        ),
        (
            "alg none, empty signature",
            &full,
            raw_token(&json!({"alg": "none"}), &ok, ""),
            Err(JwtError::Unsigned),
        ),
        (
            "alg NONE with a signature",
            &full,
            raw_token(&json!({"alg": "NONE", "kid": "hmac"}), &ok, "c2ln"),
            Err(JwtError::Unsigned),
        ),
        (
            "unknown alg",
            &full,
            raw_token(&json!({"alg": "HS1024"}), &ok, "c2ln"),
            Err(JwtError::UnsupportedAlgorithm),
        ),
        // Algorithm confusion.
        (
            "HS256 signed with the RSA public key, kid of the RSA key",
            &rsa_and_hs,
            sign_with(Alg::HS256, &confusion_secret, Some("rsa"), &ok),
            Err(JwtError::KeyAlgorithmMismatch),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            &rsa_and_hs,
            sign_with(Alg::HS256, &confusion_secret, None, &ok),
            Err(JwtError::NoKeyForAlgorithm),
        ),
        (
            "HS256 signed with the RSA public key, HS256 not allowed",
            &rs256_only,
            sign_with(Alg::HS256, &confusion_secret, None, &ok),
            Err(JwtError::AlgorithmNotAllowed(Algorithm::HS256)),
        ),
        (
            "HS256 with the kid of an EC key",
            &full,
            sign(Alg::HS256, TestKey::Hmac, Some("p256"), &ok),
            Err(JwtError::KeyAlgorithmMismatch),
        ),
        (
            "ES384 with the kid of the P-256 key",
            &full,
            sign(Alg::ES384, TestKey::P384, Some("p256"), &ok),
            Err(JwtError::KeyAlgorithmMismatch),
        ),
        (
            "RS384 against a key whose alg is RS256",
            &pinned,
            sign(Alg::RS384, TestKey::Rsa, Some("rsa"), &ok),
            Err(JwtError::KeyAlgorithmMismatch),
        ),
        (
            "algorithm not in the provider's list",
            &rs256_only,
            sign(Alg::ES256, TestKey::P256, None, &ok),
            Err(JwtError::AlgorithmNotAllowed(Algorithm::ES256)),
        ),
        // Keys.
        (
            "unknown kid, inline JWKS",
            &full,
            sign(Alg::HS256, TestKey::Hmac, Some("nope"), &ok),
            Err(JwtError::UnknownKey),
        ),
        (
            "no kid, several fitting keys",
            &two_hmac,
            sign(Alg::HS256, TestKey::Hmac, None, &ok),
            Err(JwtError::AmbiguousKey),
        ),
        // Claims.
        (
            "wrong issuer",
            &full,
            hs(&with(ok.clone(), "iss", json!("https://evil/"))),
            Err(JwtError::WrongIssuer),
        ),
        (
            "missing issuer",
            &full,
            hs(&without(ok.clone(), "iss")),
            Err(JwtError::WrongIssuer),
        ),
        (
            "wrong audience",
            &full,
            hs(&with(ok.clone(), "aud", json!("web"))),
            Err(JwtError::WrongAudience),
        ),
        (
            "aud array without an accepted audience",
            &full,
            hs(&with(ok.clone(), "aud", json!(["web", "mobile"]))),
            Err(JwtError::WrongAudience),
        ),
        (
            "missing audience",
            &full,
            hs(&without(ok.clone(), "aud")),
            Err(JwtError::WrongAudience),
        ),
        (
            "expired",
            &full,
            hs(&with(ok.clone(), "exp", json!(at(-61)))),
            Err(JwtError::Expired),
        ),
        (
            "missing exp",
            &full,
            hs(&without(ok.clone(), "exp")),
            Err(JwtError::MissingExpiry),
        ),
        (
            "nbf in the future",
            &full,
            hs(&with(ok.clone(), "nbf", json!(at(120)))),
            Err(JwtError::NotYetValid),
        ),
        (
            "iat in the future",
            &full,
            hs(&with(ok.clone(), "iat", json!(at(120)))),
            Err(JwtError::IssuedInFuture),
        ),
        (
            "missing sub",
            &full,
            hs(&without(ok.clone(), "sub")),
            Err(JwtError::MissingSubject),
        ),
        (
            "exp not a number",
            &full,
            hs(&with(ok.clone(), "exp", json!("soon"))),
            Err(JwtError::MalformedClaims),
        ),
        // Shape.
        ("not a JWT", &full, "abc".into(), Err(JwtError::Malformed)),
        (
            "five parts (JWE)",
            &full,
            "a.b.c.d.e".into(),
            Err(JwtError::Malformed),
        ),
        (
            "header not base64url",
            &full,
            "***.e30.sig".into(),
            Err(JwtError::Malformed),
        ),
        (
            "header not JSON",
            &full,
            "bm90IGpzb24.e30.c2ln".into(),
            Err(JwtError::BadHeader),
        ),
        (
            "crit header",
            &full,
            raw_token(
                &json!({"alg": "HS256", "kid": "hmac", "crit": ["exp"]}),
                &ok,
                "c2ln",
            ),
            Err(JwtError::CriticalHeader),
        ),
        (
            "too large",
            &full,
            "a".repeat(MAX_TOKEN_BYTES + 1),
            Err(JwtError::TooLarge),
        ),
    ];

    block_on(async {
        let mut failures = Vec::new();
        for (name, verifier, token, want) in cases {
            let got = verifier.verify(&token, now()).await.map(|_| ());
            if got != want {
                failures.push(format!("{name}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

#[test]
fn subject_scopes_and_expiry_are_extracted() {
    let full = full_provider();
    block_on(async {
        let token = sign(Alg::HS256, TestKey::Hmac, Some("hmac"), &claims());
        let verified = full.verify(&token, now()).await.unwrap();
        assert_eq!(verified.subject, "user-1");
        assert_eq!(verified.scopes, ["read", "write"]);
        assert_eq!(
            verified.expires_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at(3600) as u64))
        );

        let from_array = with(without(claims(), "scope"), "scopes", json!(["a", "b"]));
        let token = sign(Alg::HS256, TestKey::Hmac, Some("hmac"), &from_array);
        assert_eq!(full.verify(&token, now()).await.unwrap().scopes, ["a", "b"]);

        let spaced = with(without(claims(), "scope"), "scope", json!("  a\tb  c "));
        let token = sign(Alg::HS256, TestKey::Hmac, Some("hmac"), &spaced);
        assert_eq!(
            full.verify(&token, now()).await.unwrap().scopes,
            ["a", "b", "c"]
        );

        let none = without(claims(), "scope");
        let token = sign(Alg::HS256, TestKey::Hmac, Some("hmac"), &none);
        assert!(full.verify(&token, now()).await.unwrap().scopes.is_empty());
    });
}

#[test]
fn errors_never_echo_the_token() {
    let full = full_provider();
    block_on(async {
        let token = sign(
            Alg::HS256,
            TestKey::Hmac,
            Some("secret-kid-value"),
            &with(claims(), "iss", json!("https://secret-issuer/")),
        );
        let error = full.verify(&token, now()).await.unwrap_err();
        let text = error.to_string();
        assert!(
            !text.contains("secret") && !text.contains(&token[..10]),
            "{text}"
        );
        assert_eq!(error.to_string(), error.reason());
    });
}

#[test]
fn providers_reuse_unchanged_verifiers() {
    let spec = |issuer: &str| {
        let mut proto = inline_provider(&["HS256"], vec![TestKey::Hmac.jwk(None)]);
        proto.issuer = issuer.into();
        JwtProviderSpec::try_from(&proto).unwrap()
    };
    let first = JwtProviders::build([spec(ISSUER)], None);
    let same = JwtProviders::build([spec(ISSUER)], Some(&first));
    let changed = JwtProviders::build([spec("https://other/")], Some(&first));
    let ptr = |providers: &JwtProviders| Arc::as_ptr(&providers.get("test").unwrap().inner);
    assert_eq!(ptr(&first), ptr(&same));
    assert_ne!(ptr(&first), ptr(&changed));
    assert_eq!(changed.get("test").unwrap().spec().issuer, "https://other/");
    assert!(first.get("missing").is_none());
    let _ = AUDIENCE;
}

#[test]
fn verifier_and_its_future_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<JwtVerifier>();
    let verifier = full_provider();
    assert_send(&verifier.verify("a.b.c", now()));
}
