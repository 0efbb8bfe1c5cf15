//! Syntax of the strings that config resources share: resource names, host names, endpoint
//! addresses, HTTP header names and values, methods and paths.
//!
//! Each check returns the normalised value or the message for a [`super::FieldError`]; none of
//! them look anything up (no DNS, no references).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The longest resource name.
pub const MAX_NAME_LEN: usize = 63;

/// A resource name: 1–63 chars of `a-z 0-9 - _ .`.
pub fn name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Err(format!(
            "invalid character {c:?}: use lowercase letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(s.to_owned())
}

/// A DNS host name (labels of letters, digits, `-` and `_`), lowercased.
pub fn dns_name(s: &str) -> Result<String, String> {
    let bad = || Err(format!("{s:?} is not a valid host name"));
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return bad();
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return bad();
        }
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// A route's host match: a host name, an IP literal or `*.suffix`, lowercased; no port.
pub fn host_pattern(s: &str) -> Result<String, String> {
    if let Some(suffix) = s.strip_prefix("*.") {
        return dns_name(suffix)
            .map(|suffix| format!("*.{suffix}"))
            .map_err(|_| format!("{s:?} is not a valid host name or *.suffix pattern"));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    dns_name(s).map_err(|_| format!("{s:?} is not a valid host name or *.suffix pattern"))
}

/// An upstream address `host:port`: an IPv4 literal, `[IPv6]`, or a DNS name; port 1–65535.
pub fn address(s: &str) -> Result<String, String> {
    if s.starts_with('[') {
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is not a valid [IPv6]:port address"))?;
        if addr.port() == 0 {
            return Err("port must be between 1 and 65535".to_owned());
        }
        return Ok(addr.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} must be host:port"));
    };
    if host.contains(':') {
        return Err(format!("{s:?}: write IPv6 addresses as [addr]:port"));
    }
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err("port must be between 1 and 65535".to_owned()),
    };
    let host = if let Ok(ip) = host.parse::<Ipv4Addr>() {
        ip.to_string()
    } else {
        dns_name(host)?
    };
    Ok(format!("{host}:{port}"))
}

/// An HTTP header name, lowercased.
pub fn header_name(s: &str) -> Result<String, String> {
    http::HeaderName::from_bytes(s.as_bytes())
        .map(|h| h.as_str().to_owned())
        .map_err(|_| format!("{s:?} is not a valid header name"))
}

/// An HTTP header value (visible ASCII, spaces and tabs).
pub fn header_value(s: &str) -> Result<String, String> {
    if s.len() > 8192 {
        return Err("must be at most 8192 bytes".to_owned());
    }
    http::HeaderValue::from_str(s)
        .map(|_| s.to_owned())
        .map_err(|_| "is not a valid header value".to_owned())
}

/// The HTTP methods a route may match, uppercased.
pub fn method(s: &str) -> Result<String, String> {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    let upper = s.to_ascii_uppercase();
    if KNOWN.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "{s:?} is not an HTTP method ({})",
            KNOWN.join(", ")
        ))
    }
}

/// A URL path: starts with `/`, no whitespace, control characters, `?` or `#`.
pub fn path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("must start with '/'".to_owned());
    }
    if s.len() > 2048 {
        return Err("must be at most 2048 bytes".to_owned());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err("must not contain whitespace, control characters, '?' or '#'".to_owned());
    }
    Ok(s.to_owned())
}

/// A path a route matches on: a [`path`] already in the form the proxy normalises request
/// paths to before routing, since a route spelled otherwise could never match: no `\\`, no
/// `//`, `.` or `..` segment, and `%`-escapes only for reserved characters, in uppercase hex.
pub fn match_path(s: &str) -> Result<String, String> {
    let s = path(s)?;
    if s.contains('\\') {
        return Err(
            "must not contain '\\' (request paths are matched with '\\' as '/')".to_owned(),
        );
    }
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let value = hex
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            })
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match value {
            Some(v) if !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)) => {}
            _ => {
                return Err(format!(
                    "escape at byte {i} must be an uppercase %XX of a reserved character \
                     (request paths are matched with unreserved characters decoded)"
                ));
            }
        }
    }
    let segments: Vec<&str> = s[1..].split('/').collect();
    let last = segments.len() - 1;
    let bad = segments
        .iter()
        .enumerate()
        .any(|(i, seg)| *seg == "." || *seg == ".." || (seg.is_empty() && i != last));
    if bad {
        return Err(
            "must not contain '//', '.' or '..' segments (request paths are matched normalised)"
                .to_owned(),
        );
    }
    Ok(s)
}

/// A non-empty token without whitespace (a scope, a part name), at most `max` bytes.
pub fn token(s: &str, max: usize) -> Result<String, String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".to_owned());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("api-v1_2.x").is_ok());
        assert!(name("").is_err());
        assert!(name(&"a".repeat(64)).is_err());
        assert!(name(&"a".repeat(63)).is_ok());
        assert!(name("Api").is_err());
        assert!(name("a/b").is_err());
    }

    #[test]
    fn match_paths_are_in_normalised_form() {
        for good in ["/", "/api/", "/a%20b", "/a%2Fb", "/a.b/..c", "/~x"] {
            assert_eq!(match_path(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "/a//b", "/./a", "/a/..", "/a/../b", "/%61dmin", "/a%2fb", "/a%zz", "/a%2", "/a\\b",
            "//",
        ] {
            assert!(match_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(address("10.0.0.1:80").unwrap(), "10.0.0.1:80");
        assert_eq!(address("[::1]:8080").unwrap(), "[::1]:8080");
        assert_eq!(address("Backend.svc:443").unwrap(), "backend.svc:443");
        assert_eq!(address("my_service:80").unwrap(), "my_service:80");
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "::1:80",
            "[::1]",
            "-bad.example:80",
            "a..b:80",
            ":80",
            "host:http",
        ] {
            assert!(address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_pattern("API.example.com").unwrap(), "api.example.com");
        assert_eq!(host_pattern("*.example.com").unwrap(), "*.example.com");
        assert!(host_pattern("127.0.0.1").is_ok());
        assert!(host_pattern("example.com:80").is_err());
        assert!(host_pattern("*").is_err());
        assert!(host_pattern("a.*.com").is_err());
    }

    #[test]
    fn headers_methods_paths() {
        assert_eq!(header_name("X-User").unwrap(), "x-user");
        assert!(header_name("bad header").is_err());
        assert!(header_value("ok value").is_ok());
        assert!(header_value("bad\nvalue").is_err());
        assert_eq!(method("get").unwrap(), "GET");
        assert!(method("FETCH").is_err());
        assert!(path("/a/b").is_ok());
        assert!(path("a").is_err());
        assert!(path("/a b").is_err());
        assert!(token("read:all", 10).is_ok());
        assert!(token("a b", 10).is_err());
    }
}
