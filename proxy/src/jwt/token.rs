//! The pure parts of checking one token: splitting the compact form, reading the header, and
//! checking the claims of a payload whose signature has already been verified.
//!
//! Nothing here looks at keys or does I/O; [`super::JwtVerifier::verify`] puts it together.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::algorithms::{self, Algorithm};
use super::{JwtError, VerifiedToken};

/// The three base64url parts of a compact JWS, borrowed from the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compact<'t> {
    pub header: &'t str,
    pub payload: &'t str,
    pub signature: &'t str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'t str,
}

/// Splits `header.payload.signature`; anything else (a JWE's five parts, an empty header or
/// payload) is malformed. An empty signature passes here so that `alg: none` is named as such.
pub(crate) fn split(token: &str) -> Result<Compact<'_>, JwtError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(JwtError::Malformed);
    }
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Decodes one base64url part (no padding, as RFC 7515 requires).
pub(crate) fn decode_part(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

/// The header members the verifier acts on.
#[derive(Debug)]
pub(crate) struct Header<'h> {
    pub alg: Algorithm,
    pub kid: Option<Cow<'h, str>>,
}

#[derive(Deserialize)]
struct RawHeader<'h> {
    #[serde(borrow)]
    alg: Cow<'h, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'h, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Reads the decoded header: `alg: none` and unknown algorithms are refused here, as is any
/// `crit` extension (RFC 7515 §4.1.11: a recipient that does not understand one must reject).
pub(crate) fn parse_header(json: &[u8]) -> Result<Header<'_>, JwtError> {
    let raw: RawHeader<'_> = serde_json::from_slice(json).map_err(|_| JwtError::BadHeader)?;
    if raw.alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::Unsigned);
    }
    let alg = algorithms::parse(&raw.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
    if raw.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    Ok(Header { alg, kid: raw.kid })
}

/// What the claims must satisfy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimRules<'r> {
    pub issuer: &'r str,
    /// Empty accepts any `aud`.
    pub audiences: &'r [String],
    pub leeway: Duration,
}

#[derive(Deserialize)]
struct Claims<'c> {
    #[serde(borrow)]
    iss: Option<Cow<'c, str>>,
    sub: Option<String>,
    #[serde(borrow)]
    aud: Option<Audience<'c>>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    #[serde(borrow)]
    scope: Option<Cow<'c, str>>,
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'c> {
    One(#[serde(borrow)] Cow<'c, str>),
    Many(#[serde(borrow)] Vec<Cow<'c, str>>),
}

impl Audience<'_> {
    fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(aud) => accepted.iter().any(|a| a == aud),
            Audience::Many(auds) => auds.iter().any(|aud| accepted.iter().any(|a| a == aud)),
        }
    }
}

/// Checks the claims of a verified payload at `now` and extracts the caller's identity.
pub(crate) fn check_claims(
    payload: &[u8],
    rules: &ClaimRules<'_>,
    now: SystemTime,
) -> Result<VerifiedToken, JwtError> {
    let claims: Claims<'_> =
        serde_json::from_slice(payload).map_err(|_| JwtError::MalformedClaims)?;
    if claims.iss.as_deref() != Some(rules.issuer) {
        return Err(JwtError::WrongIssuer);
    }
    if !rules.audiences.is_empty() {
        let accepted = claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains_any(rules.audiences));
        if !accepted {
            return Err(JwtError::WrongAudience);
        }
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let leeway = rules.leeway.as_secs_f64();
    let exp = claims.exp.ok_or(JwtError::MissingExpiry)?;
    // RFC 7519 §4.1.4: the token is refused on or after `exp`.
    if now >= exp + leeway {
        return Err(JwtError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(JwtError::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    let subject = claims
        .sub
        .filter(|sub| !sub.is_empty())
        .ok_or(JwtError::MissingSubject)?;
    let mut scopes: Vec<String> = claims
        .scope
        .as_deref()
        .map(|scope| scope.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    scopes.extend(claims.scopes.unwrap_or_default());
    let expires_at = Duration::try_from_secs_f64(exp)
        .ok()
        .and_then(|since| UNIX_EPOCH.checked_add(since));
    Ok(VerifiedToken {
        subject,
        scopes,
        expires_at,
    })
}
