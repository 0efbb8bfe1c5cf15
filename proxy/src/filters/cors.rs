//! `cors`: the proxy answers preflights itself (`OPTIONS` with `origin` and
//! `access-control-request-method`): 204 with the `access-control-allow-*` headers when the
//! origin and method are allowed, else 403. Other requests from an allowed origin get
//! `access-control-allow-origin` (and `vary: origin`) on their response, whatever produced it
//! (its decorate phase);
//! a disallowed origin gets no CORS header, so the browser keeps the response from the page.
//!
//! Defaults, as Kong's: no `allow_methods` allows the common methods; no `allow_headers`
//! reflects what the preflight asks for. Credentials (`allow-credentials`) are not offered.

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::{BuildContext, Policy, RequestContext};
use crate::body::{ProxyBody, empty};
use crate::error::ProxyError;
use crate::model::{CorsSpec, RouteSpec};

/// Methods allowed when the policy lists none.
const DEFAULT_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The compiled CORS policy of one route.
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    /// Lowercase, no trailing `/`.
    origins: Box<[String]>,
    methods: Box<[Method]>,
    allow_methods: HeaderValue,
    /// `None`: reflect the preflight's `access-control-request-headers`.
    allow_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

/// What a preflight gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    Allowed { origin: HeaderValue },
    OriginDenied,
    MethodDenied,
}

impl Cors {
    pub fn new(spec: &CorsSpec) -> Self {
        let methods: Box<[Method]> = if spec.allow_methods.is_empty() {
            DEFAULT_METHODS.into()
        } else {
            spec.allow_methods.clone().into()
        };
        let join = |items: &mut dyn Iterator<Item = &str>| {
            HeaderValue::from_str(&items.collect::<Vec<_>>().join(", "))
                .expect("methods and header names are valid header text")
        };
        Self {
            any_origin: spec.allow_origins.iter().any(|o| o == "*"),
            origins: spec.allow_origins.clone().into(),
            allow_methods: join(&mut methods.iter().map(Method::as_str)),
            allow_headers: (!spec.allow_headers.is_empty())
                .then(|| join(&mut spec.allow_headers.iter().map(|h| h.as_str()))),
            max_age: spec.max_age_s.map(HeaderValue::from),
            methods,
        }
    }

    /// Whether `method` + `headers` make a CORS preflight.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The `access-control-allow-origin` value for a request from `origin`, if allowed.
    pub fn allowed_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        let text = text.trim_end_matches('/');
        self.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(text))
            .then(|| origin.clone())
    }

    /// Decides a preflight.
    pub fn decide(&self, headers: &HeaderMap) -> Preflight {
        let Some(origin) = headers
            .get(header::ORIGIN)
            .and_then(|origin| self.allowed_origin(origin))
        else {
            return Preflight::OriginDenied;
        };
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        match method {
            Some(method) if self.methods.contains(&method) => Preflight::Allowed { origin },
            _ => Preflight::MethodDenied,
        }
    }

    /// The proxy's answer to a preflight.
    pub fn preflight(&self, headers: &HeaderMap) -> Result<Response<ProxyBody>, ProxyError> {
        let origin = match self.decide(headers) {
            Preflight::Allowed { origin } => origin,
            Preflight::OriginDenied => return Err(ProxyError::CorsRejected("origin not allowed")),
            Preflight::MethodDenied => return Err(ProxyError::CorsRejected("method not allowed")),
        };
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        let allow_headers = self
            .allow_headers
            .clone()
            .or_else(|| headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned());
        if let Some(allow_headers) = allow_headers {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        }
        if let Some(max_age) = &self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        out.insert(
            header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        Ok(response)
    }
}

impl Policy for Cors {
    /// The allowed origin to echo on the response.
    type State = Option<HeaderValue>;

    fn build(route: &RouteSpec, _: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        route.policies.cors.as_ref().map(Cors::new)
    }

    async fn request(
        &self,
        parts: &mut Parts,
        _: &mut RequestContext<'_>,
        allowed: &mut Self::State,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        if Cors::is_preflight(&parts.method, &parts.headers) {
            return self.preflight(&parts.headers).map(Some);
        }
        *allowed = parts
            .headers
            .get(header::ORIGIN)
            .and_then(|origin| self.allowed_origin(origin));
        Ok(None)
    }

    fn decorate(&self, headers: &mut HeaderMap, allowed: &Self::State) {
        if let Some(origin) = allowed {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if origin != "*" {
                headers.append(header::VARY, HeaderValue::from_static("origin"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn cors(origins: &[&str], methods: Vec<Method>, headers: &[&'static str]) -> Cors {
        Cors::new(&CorsSpec {
            allow_origins: origins.iter().map(|o| (*o).into()).collect(),
            allow_methods: methods,
            allow_headers: headers.iter().map(|h| HeaderName::from_static(h)).collect(),
            max_age_s: Some(600),
        })
    }

    fn preflight(origin: &'static str, method: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static(method),
        );
        headers
    }

    #[test]
    fn preflight_decisions() {
        let policy = cors(
            &["https://app.example.com"],
            vec![Method::GET, Method::PUT],
            &[],
        );
        assert!(Cors::is_preflight(
            &Method::OPTIONS,
            &preflight("https://app.example.com", "PUT")
        ));
        assert!(!Cors::is_preflight(&Method::OPTIONS, &HeaderMap::new()));
        assert_eq!(
            policy.decide(&preflight("https://App.Example.com", "PUT")),
            Preflight::Allowed {
                origin: HeaderValue::from_static("https://App.Example.com")
            }
        );
        assert_eq!(
            policy.decide(&preflight("https://evil.example", "PUT")),
            Preflight::OriginDenied
        );
        assert_eq!(
            policy.decide(&preflight("https://app.example.com", "DELETE")),
            Preflight::MethodDenied
        );
        let any = cors(&["*"], vec![], &["x-token"]);
        assert_eq!(
            any.decide(&preflight("https://x.example", "DELETE")),
            Preflight::Allowed {
                origin: HeaderValue::from_static("*")
            }
        );
    }

    #[test]
    fn preflight_response_headers() {
        let policy = cors(&["https://a.example"], vec![], &[]);
        let mut request = preflight("https://a.example", "POST");
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type, x-api-key"),
        );
        let response = policy.preflight(&request).unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD, POST, PUT, PATCH, DELETE"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-api-key",
            "reflected"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
        let denied = policy.preflight(&preflight("https://b.example", "GET"));
        assert_eq!(denied.unwrap_err().status(), StatusCode::FORBIDDEN);

        assert_eq!(
            policy
                .allowed_origin(&HeaderValue::from_static("https://a.example/"))
                .unwrap(),
            "https://a.example/"
        );
        assert!(
            policy
                .allowed_origin(&HeaderValue::from_static("https://b.example"))
                .is_none()
        );
    }
}
