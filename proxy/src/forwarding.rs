//! Headers the proxy adds or removes on the way through: `x-request-id`, `x-forwarded-*`,
//! `forwarded` (RFC 7239) and hop-by-hop stripping.
//!
//! Values that depend only on the client connection are built once per connection
//! ([`ClientInfo`]); route-level header policies are not handled here.

use std::net::{IpAddr, SocketAddr};

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Incoming request ids longer than this are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1); `connection`
/// first (its bit is 1).
fn hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Which hop-by-hop headers are present (bit `i` for `hop_by_hop()[i]`), and whether a
/// `Connection` value names anything beyond them (`close` and the fixed set need no lookup).
/// One pass over the entries: no hashing, no allocation.
fn hop_by_hop_present(headers: &HeaderMap) -> (u8, bool) {
    let fixed = hop_by_hop();
    let mut present = 0u8;
    let mut names_others = false;
    for (name, value) in headers {
        if let Some(index) = fixed.iter().position(|hop| *hop == name) {
            present |= 1 << index;
            if index == 0 && !names_only_fixed(value) {
                names_others = true;
            }
        }
    }
    (present, names_others)
}

/// Whether a `Connection` value lists only `close` and hop-by-hop names (the usual
/// `keep-alive` / `close` / `upgrade`).
fn names_only_fixed(value: &HeaderValue) -> bool {
    connection_tokens(value).all(|token| token.is_empty() || is_fixed_token(token))
}

fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
}

fn is_fixed_token(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"close")
        || hop_by_hop()
            .iter()
            .any(|hop| token.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// The client side of a connection, with its forwarding header values precomputed.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The IP as `x-forwarded-for` lists it.
    xff: HeaderValue,
    /// `for=<ip>;proto=http`, IPv6 quoted as `"[::1]"`.
    forwarded: HeaderValue,
}

impl ClientInfo {
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_canonical();
        let xff = HeaderValue::from_str(&ip.to_string()).expect("an IP is a valid header value");
        let forwarded = match ip {
            IpAddr::V4(v4) => format!("for={v4};proto=http"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto=http"),
        };
        let forwarded = HeaderValue::from_str(&forwarded).expect("ASCII");
        Self { ip, xff, forwarded }
    }
}

/// The incoming `x-request-id` when it is valid (visible ASCII, 1–128 chars), else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(value) if is_valid_request_id(value.as_bytes()) => value.clone(),
        _ => generate_request_id(),
    }
}

pub fn is_valid_request_id(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A random 128-bit id as 32 lowercase hex digits (formatted on the stack: the header value
/// is the only allocation).
pub fn generate_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = fastrand::u128(..);
    let mut digits = [0u8; 32];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((id >> (124 - 4 * index)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex is a valid header value")
}

/// Removes hop-by-hop headers, including any the `Connection` header names. One pass over
/// the entries finds which are present, and only those are removed; the usual
/// `Connection: keep-alive` / `close` costs no allocation and no extra lookup.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let (present, names_others) = hop_by_hop_present(headers);
    if present == 0 {
        return;
    }
    if names_others {
        for name in connection_named(headers) {
            headers.remove(name);
        }
    }
    for (index, name) in hop_by_hop().into_iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// Header names listed in `Connection` beyond the fixed hop-by-hop set.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter(|token| !token.is_empty() && !is_fixed_token(token))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect()
}

/// Rewrites a request's headers for the upstream.
pub fn prepare_upstream_request(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    append_list(headers, &X_FORWARDED_FOR, &client.xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    append_list(headers, &header::FORWARDED, &client.forwarded);
}

/// Rewrites an upstream response's headers for the client (the handler sets `x-request-id`
/// on every response, this one included).
pub fn prepare_downstream_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

/// Appends `value` to a comma-separated list header, folding repeated fields into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let mut existing = match headers.entry(name) {
        Entry::Vacant(vacant) => {
            vacant.insert(value.clone());
            return;
        }
        Entry::Occupied(occupied) => occupied,
    };
    let mut joined: Vec<u8> = Vec::new();
    for part in existing.iter() {
        joined.extend_from_slice(part.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    let joined = HeaderValue::from_bytes(&joined).unwrap_or_else(|_| value.clone());
    existing.insert(joined);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_request_id_and_replaces_bad_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        for bad in ["", "has space", &"x".repeat(129)] {
            headers.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "{bad:?} replaced");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        assert_ne!(generate_request_id(), generate_request_id());
        let id = generate_request_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.as_bytes()
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn strips_exactly_the_hop_by_hop_headers() {
        let mut plain = headers(&[("content-type", "text/plain"), ("x-a", "1")]);
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 2, "nothing to strip");

        let mut kept_alive = headers(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("content-length", "2"),
        ]);
        strip_hop_by_hop(&mut kept_alive);
        assert_eq!(kept_alive.keys().collect::<Vec<_>>(), ["content-length"]);

        let mut listed = headers(&[
            ("connection", "Close, X-Hop ,upgrade"),
            ("connection", "x-other"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "3"),
        ]);
        strip_hop_by_hop(&mut listed);
        assert_eq!(listed.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn forwarding_headers_append() {
        let client = ClientInfo::new("10.0.0.9:5555".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        let id = HeaderValue::from_static("rid");
        prepare_upstream_request(&mut headers, &client, &id);
        assert_eq!(headers[&X_FORWARDED_FOR], "1.1.1.1, 10.0.0.9");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        assert_eq!(headers[header::FORWARDED], "for=10.0.0.9;proto=http");
        assert_eq!(headers[&X_REQUEST_ID], "rid");
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("x-hop"));
        assert!(!headers.contains_key(header::TE));
    }

    #[test]
    fn ipv6_is_quoted_and_mapped_v4_unwrapped() {
        let client = ClientInfo::new("[::1]:80".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(header::FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        prepare_upstream_request(&mut headers, &client, &HeaderValue::from_static("r"));
        assert_eq!(
            headers[header::FORWARDED],
            "for=1.2.3.4, for=\"[::1]\";proto=http"
        );
        assert_eq!(headers[&X_FORWARDED_FOR], "::1");
        let mapped = ClientInfo::new("[::ffff:10.1.2.3]:80".parse().unwrap());
        assert_eq!(mapped.ip.to_string(), "10.1.2.3");
    }
}
