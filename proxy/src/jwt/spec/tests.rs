//! Provider validation: every refusal names its field; unusable keys are skipped.

use serde_json::{Value, json};
use switchyard_proto::v1;

use crate::jwt::test_support::{TestKey, inline_provider};
use crate::jwt::{JwksSource, JwtProviderSpec, JwtVerifier};

fn with(mut value: Value, key: &str, member: Value) -> Value {
    value[key] = member;
    value
}

#[test]
fn provider_spec_validation_table() {
    let good = || inline_provider(&["RS256"], vec![TestKey::Rsa.jwk(Some("rsa"))]);
    let small_rsa = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD_B64_1024, "e": "AQAB"});
    let cases: Vec<(&str, v1::JwtProvider, Result<(), &str>)> = vec![
        ("valid inline", good(), Ok(())),
        (
            "no algorithms: RS256",
            v1::JwtProvider {
                algorithms: vec![],
                ..good()
            },
            Ok(()),
        ),
        (
            "valid uri",
            v1::JwtProvider {
                jwks_json: String::new(),
                jwks_uri: "https://issuer.example/.well-known/jwks.json".into(),
                ..good()
            },
            Ok(()),
        ),
        (
            "empty name",
            v1::JwtProvider {
                name: String::new(),
                ..good()
            },
            Err("name is empty"),
        ),
        (
            "empty issuer",
            v1::JwtProvider {
                issuer: String::new(),
                ..good()
            },
            Err("issuer is empty"),
        ),
        (
            "empty audience",
            v1::JwtProvider {
                audiences: vec!["a".into(), String::new()],
                ..good()
            },
            Err("audiences[1] is empty"),
        ),
        (
            "alg none",
            v1::JwtProvider {
                algorithms: vec!["RS256".into(), "none".into()],
                ..good()
            },
            Err("algorithms[1] \"none\" is not one of"),
        ),
        (
            "lowercase alg",
            v1::JwtProvider {
                algorithms: vec!["rs256".into()],
                ..good()
            },
            Err("algorithms[0] \"rs256\""),
        ),
        (
            "both sources",
            v1::JwtProvider {
                jwks_uri: "https://i/jwks".into(),
                ..good()
            },
            Err("jwks_json, jwks_uri: set exactly one"),
        ),
        (
            "neither source",
            v1::JwtProvider {
                jwks_json: String::new(),
                ..good()
            },
            Err("jwks_json, jwks_uri: set exactly one"),
        ),
        (
            "JWKS not JSON",
            v1::JwtProvider {
                jwks_json: "{keys".into(),
                ..good()
            },
            Err("jwks_json is not a JWKS document"),
        ),
        (
            "JWKS without keys array",
            v1::JwtProvider {
                jwks_json: r#"{"kty":"RSA"}"#.into(),
                ..good()
            },
            Err("jwks_json is not a JWKS document"),
        ),
        (
            "empty keys",
            v1::JwtProvider {
                jwks_json: r#"{"keys":[]}"#.into(),
                ..good()
            },
            Err("jwks_json has no key usable with algorithms {\"RS256\"}: the keys array is empty"),
        ),
        (
            "only a key of another type",
            inline_provider(&["RS256"], vec![TestKey::P256.jwk(Some("p"))]),
            Err("keys[0] (EC key) fits none of the configured algorithms"),
        ),
        (
            "encryption key",
            inline_provider(
                &["RS256"],
                vec![with(TestKey::Rsa.jwk(None), "use", json!("enc"))],
            ),
            Err("keys[0] has use \"enc\", not \"sig\""),
        ),
        (
            "small RSA modulus",
            inline_provider(&["RS256"], vec![small_rsa]),
            Err("keys[0] is an RSA key of 1024 bits (needs 2048 to 8192)"),
        ),
        (
            "short HMAC secret",
            inline_provider(&["HS256"], vec![json!({"kty": "oct", "k": "c2hvcnQ"})]),
            Err("keys[0] is an oct key of 5 bytes"),
        ),
        (
            "32-byte secret cannot serve HS512",
            inline_provider(
                &["HS512"],
                vec![json!({"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"})],
            ),
            Err("keys[0] (oct key) fits none of the configured algorithms"),
        ),
        (
            "EC coordinate of the wrong length",
            inline_provider(
                &["ES256"],
                vec![with(
                    TestKey::P256.jwk(None),
                    "y",
                    json!(URL_SAFE_NO_PAD_B64_31_BYTES),
                )],
            ),
            Err("keys[0] has EC coordinates that are not 32 bytes"),
        ),
        (
            "key alg that does not fit its kty",
            inline_provider(
                &["RS256"],
                vec![with(TestKey::Rsa.jwk(None), "alg", json!("ES256"))],
            ),
            Err("keys[0] has alg \"ES256\", which does not fit its kty"),
        ),
        (
            "P-521",
            inline_provider(
                &["ES256"],
                vec![with(TestKey::P256.jwk(None), "crv", json!("P-521"))],
            ),
            Err("keys[0] is an EC key whose crv is not P-256 or P-384"),
        ),
        (
            "ftp uri",
            v1::JwtProvider {
                jwks_json: String::new(),
                jwks_uri: "ftp://i/jwks".into(),
                ..good()
            },
            Err("jwks_uri \"ftp://i/jwks\" is not an http:// or https:// URL"),
        ),
        (
            "relative uri",
            v1::JwtProvider {
                jwks_json: String::new(),
                jwks_uri: "/jwks.json".into(),
                ..good()
            },
            Err("jwks_uri \"/jwks.json\""),
        ),
    ];
    let mut failures = Vec::new();
    for (name, proto, want) in cases {
        let got = JwtProviderSpec::try_from(&proto)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let matches = match (&got, want) {
            (Ok(()), Ok(())) => true,
            (Err(text), Err(prefix)) => text.contains(prefix),
            _ => false,
        };
        if !matches {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unusable_keys_are_skipped_when_another_is_usable() {
    let spec = JwtProviderSpec::try_from(&inline_provider(
        &["RS256"],
        vec![
            json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "weird"}),
            TestKey::Rsa.jwk(Some("rsa")),
        ],
    ))
    .unwrap();
    let JwksSource::Inline { keys, .. } = &spec.keys else {
        panic!("inline expected");
    };
    assert_eq!(keys.len(), 1);
    // Secrets stay out of Debug output.
    let hmac =
        JwtProviderSpec::try_from(&inline_provider(&["HS256"], vec![TestKey::Hmac.jwk(None)]))
            .unwrap();
    let debug = format!("{hmac:?} {:?}", JwtVerifier::new(hmac.clone()));
    assert!(
        !debug.contains("MDEy") && !debug.contains("0123"),
        "{debug}"
    );
}

/// 128 bytes of 0xff: a 1024-bit modulus.
const URL_SAFE_NO_PAD_B64_1024: &str = "__________________________________________________________________________________________________________________________________________________________________________8";
/// 31 bytes: one short of a P-256 coordinate.
const URL_SAFE_NO_PAD_B64_31_BYTES: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ";
