//! Selection table for the router: priority, path length, exact vs prefix, regex, methods,
//! headers, query and host patterns.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri};
use switchyard_proto::v1::{self, route::Action, route_match::Path};

use super::*;

struct R {
    name: &'static str,
    host: &'static str,
    path: Option<Path>,
    priority: i32,
    methods: &'static [&'static str],
    headers: &'static [(&'static str, &'static str)],
    query: &'static [(&'static str, &'static str)],
}

impl R {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            host: "",
            path: None,
            priority: 0,
            methods: &[],
            headers: &[],
            query: &[],
        }
    }
    fn prefix(mut self, p: &str) -> Self {
        self.path = Some(Path::PathPrefix(p.into()));
        self
    }
    fn exact(mut self, p: &str) -> Self {
        self.path = Some(Path::PathExact(p.into()));
        self
    }
    fn regex(mut self, p: &str) -> Self {
        self.path = Some(Path::PathRegex(p.into()));
        self
    }
    fn spec(self) -> Arc<RouteSpec> {
        let proto = v1::Route {
            name: self.name.into(),
            priority: self.priority,
            r#match: Some(v1::RouteMatch {
                host: self.host.into(),
                path: self.path,
                methods: self.methods.iter().map(|m| (*m).into()).collect(),
                headers: self
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                query: self
                    .query
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            }),
            action: Some(Action::Cluster("c".into())),
            ..Default::default()
        };
        Arc::new(RouteSpec::try_from(&proto).unwrap())
    }
}

fn pick(
    router: &Router,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let uri: Uri = target.parse().unwrap();
    let mut map = HeaderMap::new();
    map.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    router
        .route(&method, &uri, &map)
        .map(|r| r.spec.name.clone())
}

#[test]
fn priority_then_longest_path_then_name() {
    let router = Router::new([
        R::new("root").prefix("/").spec(),
        R::new("api").prefix("/api").spec(),
        R::new("api-v1").prefix("/api/v1").spec(),
        R::new("exact").exact("/api").spec(),
        R {
            priority: 10,
            ..R::new("boosted").prefix("/b")
        }
        .spec(),
        R::new("b-long").prefix("/b/long").spec(),
        R::new("z-tie").prefix("/t").spec(),
        R::new("a-tie").prefix("/t").spec(),
    ]);
    let cases = [
        ("/", "root"),
        ("/other", "root"),
        ("/api", "exact"),
        ("/api/", "api"),
        ("/api/v1/users", "api-v1"),
        ("/b/long/x", "boosted"),
        ("/t", "a-tie"),
    ];
    for (path, want) in cases {
        assert_eq!(
            pick(&router, "GET", "h", path, &[]).as_deref(),
            Some(want),
            "{path}"
        );
    }
    assert_eq!(router.len(), 8);
}

#[test]
fn no_match_is_none() {
    let router = Router::new([R::new("api").prefix("/api").spec()]);
    assert_eq!(pick(&router, "GET", "h", "/x", &[]), None);
}

#[test]
fn regex_methods_headers_query() {
    let router = Router::new([
        R::new("users").regex("/users/[0-9]+").spec(),
        R {
            methods: &["post"],
            ..R::new("post-only").prefix("/form")
        }
        .spec(),
        R {
            headers: &[("X-Canary", "yes")],
            ..R::new("canary").prefix("/app")
        }
        .spec(),
        R::new("app").prefix("/").spec(),
        R {
            query: &[("v", "2 x")],
            ..R::new("v2").prefix("/q")
        }
        .spec(),
    ]);
    assert_eq!(
        pick(&router, "GET", "h", "/users/42", &[]).as_deref(),
        Some("users")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/users/42/x", &[]).as_deref(),
        Some("app")
    );
    assert_eq!(
        pick(&router, "POST", "h", "/form", &[]).as_deref(),
        Some("post-only")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/form", &[]).as_deref(),
        Some("app")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/app", &[("x-canary", "yes")]).as_deref(),
        Some("canary")
    );
    assert_eq!(
        pick(
            &router,
            "GET",
            "h",
            "/app",
            &[("x-canary", "no"), ("x-canary", "yes")]
        )
        .as_deref(),
        Some("canary"),
        "any value of a repeated header"
    );
    assert_eq!(
        pick(&router, "GET", "h", "/app", &[("x-canary", "YES")]).as_deref(),
        Some("app")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/q?a=1&v=2+x", &[]).as_deref(),
        Some("v2")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/q?v=2%20x", &[]).as_deref(),
        Some("v2")
    );
    assert_eq!(
        pick(&router, "GET", "h", "/q?v=3", &[]).as_deref(),
        Some("app")
    );
}

#[test]
fn hosts_exact_wildcard_any() {
    let router = Router::new([
        R {
            host: "api.example.com",
            ..R::new("exact-host").prefix("/")
        }
        .spec(),
        R {
            host: "*.example.com",
            ..R::new("wild").prefix("/")
        }
        .spec(),
        R {
            host: "*.example.com",
            ..R::new("wild-long").prefix("/long")
        }
        .spec(),
        R {
            priority: 5,
            ..R::new("any-boosted").prefix("/boost")
        }
        .spec(),
        R::new("any").prefix("/").spec(),
    ]);
    assert_eq!(
        pick(&router, "GET", "API.Example.com:8080", "/", &[]).as_deref(),
        Some("exact-host")
    );
    assert_eq!(
        pick(&router, "GET", "www.example.com", "/", &[]).as_deref(),
        Some("wild")
    );
    assert_eq!(
        pick(&router, "GET", "a.b.example.com", "/long/x", &[]).as_deref(),
        Some("wild-long")
    );
    assert_eq!(
        pick(&router, "GET", "example.com", "/", &[]).as_deref(),
        Some("any")
    );
    assert_eq!(
        pick(&router, "GET", "other.org", "/", &[]).as_deref(),
        Some("any")
    );
    assert_eq!(
        pick(&router, "GET", "api.example.com", "/boost", &[]).as_deref(),
        Some("any-boosted"),
        "priority beats host specificity"
    );
    assert_eq!(
        pick(&router, "GET", "[::1]:80", "/", &[]).as_deref(),
        Some("any")
    );
    assert_eq!(
        pick(&router, "GET", "ignored", "http://api.example.com/", &[]).as_deref(),
        Some("exact-host"),
        ":authority wins over Host"
    );
}

#[test]
fn ten_thousand_prefix_routes_select_like_a_scan() {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut routes: Vec<Arc<RouteSpec>> = (0..10_000)
        .map(|i| {
            R::new(leak(format!("svc-{i}")))
                .prefix(&format!("/svc/{i}/"))
                .spec()
        })
        .collect();
    routes.push(R::new("deep").prefix("/svc/42/v2/").spec());
    routes.push(
        R {
            methods: &["POST"],
            ..R::new("post-only").prefix("/svc/7/")
        }
        .spec(),
    );
    routes.push(
        R {
            priority: 5,
            ..R::new("boosted-short").prefix("/svc/9")
        }
        .spec(),
    );
    routes.push(R::new("multibyte").prefix("/é/").spec());
    let router = Router::new(routes);
    let cases = [
        ("GET", "/svc/8888/x", Some("svc-8888")),
        ("GET", "/svc/9999/x", Some("boosted-short")),
        ("GET", "/svc/42/v2/users", Some("deep")),
        ("GET", "/svc/42/v1/users", Some("svc-42")),
        ("POST", "/svc/7/x", Some("post-only")),
        ("GET", "/svc/7/x", Some("svc-7")),
        ("GET", "/svc/99/x", Some("boosted-short")),
        ("GET", "/%C3%A9/x", None),
        ("GET", "/svc/10000/x", None),
        ("GET", "/other", None),
    ];
    for (method, path, want) in cases {
        assert_eq!(
            pick(&router, method, "h", path, &[]).as_deref(),
            want,
            "{method} {path}"
        );
    }
    assert_eq!(router.len(), 10_004);
}
