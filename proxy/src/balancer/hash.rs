//! The hashing shared by `ip_hash`, `ring_hash` and `maglev`: a fixed, fast, non-cryptographic
//! 64-bit hash (FNV-1a folded through MurmurHash3's `fmix64` finaliser for avalanche), and the
//! request key each `hash_on` setting selects.
//!
//! The hash is deterministic across processes and versions (no `RandomState`), so every proxy
//! of the fleet sends the same key to the same endpoint. It is not DoS-resistant and is not
//! used for anything an attacker could exploit beyond choosing their own endpoint.

use std::net::IpAddr;

use http::header;

use super::PickContext;
use crate::model::HashOn;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit hash of `bytes`, seeded (different seeds give independent hashes).
#[inline]
pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET ^ seed.wrapping_mul(FNV_PRIME);
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    fmix64(hash)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Hash of a client IP (IPv4-mapped IPv6 addresses hash like their IPv4 form).
#[inline]
pub fn ip_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash64(0, &v4.octets()),
        IpAddr::V6(v6) => hash64(0, &v6.octets()),
    }
}

/// The request's hash key under `hash_on`; `None` when the header or cookie is absent (the
/// caller then picks at random, as Envoy does).
pub fn request_key(hash_on: &HashOn, ctx: &PickContext<'_>) -> Option<u64> {
    match hash_on {
        HashOn::SourceIp => Some(ip_key(ctx.client_ip)),
        HashOn::Header(name) => ctx
            .headers
            .get(name)
            .map(|value| hash64(0, value.as_bytes())),
        HashOn::Cookie(name) => ctx
            .headers
            .get_all(header::COOKIE)
            .iter()
            .find_map(|value| cookie_value(value.as_bytes(), name.as_bytes()))
            .map(|value| hash64(0, value)),
    }
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`), without allocating.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let rest = pair.strip_prefix(name)?;
        rest.strip_prefix(b"=")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    /// `hash64(0, b"")`: pinned so a change of the function (which would reshuffle every
    /// hashing cluster across a mixed-version fleet) fails a test.
    const GOLDEN_EMPTY: u64 = 17_280_346_270_528_514_342;

    #[test]
    fn stable_values_and_seeds() {
        // Fixed across runs and processes: the fleet must agree.
        assert_eq!(hash64(0, b"abc"), hash64(0, b"abc"));
        assert_ne!(hash64(0, b"abc"), hash64(1, b"abc"));
        assert_ne!(hash64(0, b"abc"), hash64(0, b"abd"));
        assert_eq!(hash64(0, b""), GOLDEN_EMPTY);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), ip_key("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn keys_from_headers_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; sid=s-9"),
        );
        let ctx = PickContext {
            client_ip: [10, 0, 0, 1].into(),
            headers: &headers,
        };
        let header_key = request_key(&HashOn::Header("x-user".parse().unwrap()), &ctx);
        assert_eq!(header_key, Some(hash64(0, b"alice")));
        let cookie_key = request_key(&HashOn::Cookie("sid".into()), &ctx);
        assert_eq!(cookie_key, Some(hash64(0, b"s-9")));
        assert_eq!(request_key(&HashOn::Cookie("si".into()), &ctx), None);
        assert_eq!(
            request_key(&HashOn::Header("x-none".parse().unwrap()), &ctx),
            None
        );
        assert_eq!(
            request_key(&HashOn::SourceIp, &ctx),
            Some(ip_key([10, 0, 0, 1].into()))
        );
    }
}
