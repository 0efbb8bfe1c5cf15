//! Whether one request satisfies one route's method, path, header and query conditions
//! (the host is settled by the router's index before this runs).

use std::borrow::Cow;

use http::{HeaderMap, Method, Uri};

use crate::model::{PathMatch, RouteMatchSpec};

/// The parts of a request that matching reads, borrowed for the duration of one lookup.
#[derive(Debug)]
pub struct RequestView<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers,
        }
    }

    /// The request path (without the query).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// Method, path, headers and query of `spec` all hold.
    pub fn matches(&self, spec: &RouteMatchSpec) -> bool {
        if !spec.methods.is_empty() && !spec.methods.contains(self.method) {
            return false;
        }
        let path_ok = match &spec.path {
            PathMatch::Prefix(prefix) => self.path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => self.path == exact,
            PathMatch::Regex { regex, .. } => regex.is_match(self.path),
        };
        if !path_ok {
            return false;
        }
        let headers_ok = spec.headers.iter().all(|(name, value)| {
            self.headers
                .get_all(name)
                .iter()
                .any(|actual| actual == value)
        });
        headers_ok
            && spec
                .query
                .iter()
                .all(|(name, value)| self.query_has(name, value))
    }

    fn query_has(&self, name: &str, value: &str) -> bool {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .any(|pair| {
                let (key, actual) = pair.split_once('=').unwrap_or((pair, ""));
                decode(key) == name && decode(actual) == value
            })
    }
}

/// `application/x-www-form-urlencoded` decoding; borrows when there is nothing to decode.
fn decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("bad%zz"), "bad%zz");
        assert_eq!(decode("end%2"), "end%2");
    }
}
