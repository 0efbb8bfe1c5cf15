//! Request and response transforms: `rewrite` (strip a path prefix segment-wise, then prepend
//! one; the query is kept) and header `set` / `remove` with names and values parsed once per
//! config. Body transforms are [`super::response_fields`]'.

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Response, Uri};

use super::{BuildContext, Outcome, Policy, RequestContext};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::model::{HeaderOpsSpec, RewriteSpec, RouteSpec};

/// Header operations, applied in order: remove, then set.
#[derive(Debug)]
pub struct HeaderOps(HeaderOpsSpec);

impl HeaderOps {
    pub fn new(spec: &HeaderOpsSpec) -> Self {
        Self(spec.clone())
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.0.remove {
            headers.remove(name);
        }
        for (name, value) in &self.0.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Rewrites of the upstream request: path and headers.
#[derive(Debug)]
pub struct RequestTransform {
    rewrite: Option<RewriteSpec>,
    headers: Option<HeaderOps>,
}

impl RequestTransform {
    /// `None` when the route transforms nothing on the request.
    pub fn new(rewrite: Option<&RewriteSpec>, headers: Option<&HeaderOpsSpec>) -> Option<Self> {
        if rewrite.is_none() && headers.is_none() {
            return None;
        }
        Some(Self {
            rewrite: rewrite.cloned(),
            headers: headers.map(HeaderOps::new),
        })
    }

    pub fn apply(&self, parts: &mut http::request::Parts) {
        if let Some(rewrite) = &self.rewrite
            && let Some(uri) = rewrite_uri(&parts.uri, rewrite)
        {
            parts.uri = uri;
        }
        if let Some(headers) = &self.headers {
            headers.apply(&mut parts.headers);
        }
    }
}

impl Policy for RequestTransform {
    type State = ();

    fn build(route: &RouteSpec, _: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        let policies = &route.policies;
        RequestTransform::new(policies.rewrite.as_ref(), policies.request_headers.as_ref())
    }

    async fn request(
        &self,
        parts: &mut Parts,
        _: &mut RequestContext<'_>,
        (): &mut (),
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        self.apply(parts);
        Ok(None)
    }
}

/// `response_headers`: header operations on the upstream's response.
#[derive(Debug)]
pub struct ResponseHeaders(HeaderOps);

impl Policy for ResponseHeaders {
    type State = ();

    fn build(route: &RouteSpec, _: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        let spec = route.policies.response_headers.as_ref()?;
        Some(Self(HeaderOps::new(spec)))
    }

    async fn response(&self, outcome: Outcome, (): &mut ()) -> Outcome {
        outcome.map(|mut response| {
            self.0.apply(response.headers_mut());
            response
        })
    }
}

fn rewrite_uri(uri: &Uri, rewrite: &RewriteSpec) -> Option<Uri> {
    let path = rewrite_path(uri.path(), rewrite);
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// `strip_prefix` is removed only on a segment boundary (`/api` strips `/api` and `/api/x`,
/// not `/apix`); `prefix` is joined with exactly one `/`.
pub fn rewrite_path(path: &str, rewrite: &RewriteSpec) -> String {
    let mut rest = path;
    if let Some(strip) = &rewrite.strip_prefix {
        let strip = strip.trim_end_matches('/');
        if let Some(after) = path.strip_prefix(strip)
            && (after.is_empty() || after.starts_with('/'))
        {
            rest = after;
        }
    }
    let rest = rest.trim_start_matches('/');
    let prefix = rewrite
        .prefix
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    if rest.is_empty() && !prefix.is_empty() {
        return prefix.to_owned();
    }
    format!("{prefix}/{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn rewrite(strip: Option<&str>, prefix: Option<&str>) -> RewriteSpec {
        RewriteSpec {
            strip_prefix: strip.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn rewrites_paths_segment_wise() {
        let strip = rewrite(Some("/api"), None);
        assert_eq!(rewrite_path("/api/users", &strip), "/users");
        assert_eq!(rewrite_path("/api", &strip), "/");
        assert_eq!(rewrite_path("/apix/users", &strip), "/apix/users");
        assert_eq!(rewrite_path("/other", &strip), "/other");
        let both = rewrite(Some("/api/"), Some("/v2/"));
        assert_eq!(rewrite_path("/api/users/1", &both), "/v2/users/1");
        assert_eq!(rewrite_path("/api", &both), "/v2");
        let prefix = rewrite(None, Some("/internal"));
        assert_eq!(rewrite_path("/x", &prefix), "/internal/x");
        assert_eq!(rewrite_path("/", &prefix), "/internal");
        let uri: Uri = "http://h/api/a?b=1".parse().unwrap();
        assert_eq!(
            rewrite_uri(&uri, &both).unwrap().to_string(),
            "http://h/v2/a?b=1"
        );
        let origin_form: Uri = "/api/a?b=1".parse().unwrap();
        assert_eq!(
            rewrite_uri(&origin_form, &strip).unwrap().to_string(),
            "/a?b=1"
        );
    }

    #[test]
    fn header_ops_remove_then_set() {
        let ops = HeaderOps::new(&HeaderOpsSpec {
            set: vec![(
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            )],
            remove: vec![
                HeaderName::from_static("x-env"),
                HeaderName::from_static("server"),
            ],
        });
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("nginx"));
        headers.append("x-env", HeaderValue::from_static("a"));
        headers.append("x-env", HeaderValue::from_static("b"));
        ops.apply(&mut headers);
        assert!(!headers.contains_key("server"));
        assert_eq!(headers.get_all("x-env").iter().count(), 1);
        assert_eq!(headers["x-env"], "prod");
    }
}
