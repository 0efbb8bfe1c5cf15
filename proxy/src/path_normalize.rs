//! Request-path normalisation at the edge, before routing: what the router matches, the
//! filters see and the upstream receives is one canonical path, so `/pub/../admin`,
//! `/%61dmin`, `/./admin` and `//admin` all are `/admin` (Envoy's `normalize_path` plus
//! `merge_slashes`).
//!
//! In order, on the path only (the query is left as sent):
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are
//!    decoded; every other escape stays encoded with uppercase hex (`%2f` → `%2F`); a `%` not
//!    followed by two hex digits is an error;
//! 2. a literal `\` becomes `/` (as browsers and Envoy treat it);
//! 3. runs of `/` are merged into one;
//! 4. `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` never climbs above the root.
//!
//! An escaped `/` or `\` (`%2F`, `%5C`) is kept encoded and reported in
//! [`Normalized::escaped_slash`]: the handler refuses such a request unless its route sets
//! `allow_encoded_slashes`, because an upstream that decodes it would see other segments than
//! the proxy routed on. A path that is already canonical is checked in one pass and not
//! copied. Paths that do not start with `/` (`*` of `OPTIONS *`) are left alone.

use std::borrow::Cow;

/// A normalised path.
#[derive(Debug, PartialEq, Eq)]
pub struct Normalized<'a> {
    pub path: Cow<'a, str>,
    /// The path holds `%2F` or `%5C`.
    pub escaped_slash: bool,
}

/// Why a path cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid percent-escape in the request path")]
    InvalidEscape,
}

/// Normalises `path` (without its query).
pub fn normalize(path: &str) -> Result<Normalized<'_>, PathError> {
    if !path.starts_with('/') {
        return Ok(Normalized {
            path: Cow::Borrowed(path),
            escaped_slash: false,
        });
    }
    if is_canonical(path) {
        return Ok(Normalized {
            path: Cow::Borrowed(path),
            escaped_slash: false,
        });
    }
    let (decoded, escaped_slash) = decode(path)?;
    Ok(Normalized {
        path: Cow::Owned(remove_dot_segments(&decoded)),
        escaped_slash,
    })
}

/// Whether `path` needs no work: no `%`, no `\`, no empty segment but the last, no dot segment.
fn is_canonical(path: &str) -> bool {
    if path.bytes().any(|b| b == b'%' || b == b'\\') {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => return false,
            "" if !last => return false,
            _ => {}
        }
    }
    true
}

/// Steps 1 and 2: decodes unreserved escapes, uppercases the others, turns `\` into `/`.
fn decode(path: &str) -> Result<(String, bool), PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut escaped_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(high), Some(low)) = (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) else {
                    return Err(PathError::InvalidEscape);
                };
                let value = high << 4 | low;
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    escaped_slash |= value == b'/' || value == b'\\';
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(high)]));
                    out.push(char::from(HEX_UPPER[usize::from(low)]));
                }
                i += 3;
            }
            b'\\' => {
                out.push('/');
                i += 1;
            }
            _ => {
                // Copy the run up to the next byte of interest (keeps UTF-8 sequences whole).
                let end = bytes[i..]
                    .iter()
                    .position(|b| *b == b'%' || *b == b'\\')
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    Ok((out, escaped_slash))
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Steps 3 and 4 on a path starting with `/`: merges slashes, resolves `.` and `..`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path[1..].split('/') {
        trailing_slash = true;
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            segment => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> (String, bool) {
        let normalized = normalize(path).unwrap();
        (normalized.path.into_owned(), normalized.escaped_slash)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/~user/x-y_z"] {
            assert!(
                matches!(normalize(path).unwrap().path, Cow::Borrowed(_)),
                "{path}"
            );
            assert_eq!(norm(path), (path.to_owned(), false));
        }
    }

    #[test]
    fn dot_segments_escapes_and_slashes() {
        let table = [
            ("/pub/../admin", "/admin"),
            ("/./admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/pub/%2e%2e/admin", "/admin"),
            ("/pub/%2E%2E/admin", "/admin"),
            ("/pub/.%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("/pub//..//admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/pub\\..\\admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b//", "/a/b/"),
            ("/..", "/"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf\u{e9}/../x", "/x"),
        ];
        for (raw, want) in table {
            assert_eq!(norm(raw), (want.to_owned(), false), "{raw}");
        }
    }

    #[test]
    fn escaped_slashes_are_kept_and_reported() {
        assert_eq!(norm("/a%2fb"), ("/a%2Fb".to_owned(), true));
        assert_eq!(norm("/a%5Cb"), ("/a%5Cb".to_owned(), true));
        assert_eq!(
            norm("/a%2F..%2Fadmin"),
            ("/a%2F..%2Fadmin".to_owned(), true)
        );
    }

    #[test]
    fn broken_escapes_are_errors_and_other_forms_untouched() {
        for raw in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert_eq!(normalize(raw), Err(PathError::InvalidEscape), "{raw}");
        }
        assert_eq!(norm("*"), ("*".to_owned(), false));
    }
}
