//! The REST admin API, driven in-process with `router(state).oneshot(request)`: CRUD,
//! preconditions and references on SQLite and PostgreSQL; validation, auth, errors, history
//! and the OpenAPI document on SQLite.

#[macro_use]
mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_control_plane::api::{ApiState, router};
use switchyard_control_plane::snapshot::Snapshot;
use switchyard_control_plane::store::Store;
use tower::ServiceExt;

on_both_stores!(
    create_replace_list_get_delete,
    post_conflicts_with_existing,
    if_match_guards_writes,
    references_are_checked,
    syntax_and_reference_errors_in_one_answer,
    revisions_and_rollback,
    other_kinds_and_their_references,
    apply_and_export_a_whole_document,
);

/// A test client of one router.
struct Api {
    app: Router,
    token: Option<String>,
}

/// A response: status, headers and the body as JSON (`Null` when empty, a string when not JSON).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// The `field`s of a problem's `errors`.
    fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {}", self.body))
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    #[track_caller]
    fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.body);
        if !status.is_success() {
            assert_eq!(self.content_type(), "application/problem+json");
            assert_eq!(self.body["status"], status.as_u16());
        }
        self
    }
}

fn state(store: Store, token: Option<&str>) -> ApiState {
    // No snapshot builder runs here: a snapshot "ahead of every write" answers at once.
    let mut published = Snapshot::default();
    published.revision = i64::MAX;
    ApiState {
        store,
        fleet: Arc::default(),
        health: Arc::default(),
        metrics: Arc::default(),
        admin_token_sha256: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        published: tokio::sync::watch::channel(Arc::new(published)).1,
    }
}

impl Api {
    fn open(store: Store) -> Api {
        Api {
            app: router(state(store, None)),
            token: None,
        }
    }

    fn with_token(store: Store, token: &str) -> Api {
        Api {
            app: router(state(store, Some(token))),
            token: Some(token.to_owned()),
        }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    fn request(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_with(method, uri, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = self.request(method, uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn put(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::PUT, uri, Some(body)).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }
}

fn cluster(port: u16) -> Value {
    json!({"endpoints": [{"address": format!("127.0.0.1:{port}")}]})
}

// ---- on both databases -------------------------------------------------------------------

async fn create_replace_list_get_delete(store: Store) {
    let api = Api::open(store);
    let created = api
        .put("/api/v1/clusters/web", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    let v1 = created.body["version"].as_i64().unwrap();
    assert_eq!(created.body["name"], "web");
    assert_eq!(created.body["lb_policy"], "round_robin");
    assert_eq!(created.body["endpoints"][0]["weight"], 1);
    assert!(created.body["updated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created.headers[header::ETAG], format!("\"{v1}\"").as_str());
    assert_eq!(created.headers[header::LOCATION], "/api/v1/clusters/web");

    let got = api.get("/api/v1/clusters/web").await.expect(StatusCode::OK);
    assert_eq!(got.body, created.body);
    assert_eq!(got.headers[header::ETAG], format!("\"{v1}\"").as_str());

    // A GET result can be edited and PUT back (name, version, updated_at are accepted).
    let mut edited = got.body.clone();
    edited["lb_policy"] = json!("least_request");
    let replaced = api
        .put("/api/v1/clusters/web", edited)
        .await
        .expect(StatusCode::OK);
    let v2 = replaced.body["version"].as_i64().unwrap();
    assert!(v2 > v1);
    assert_eq!(replaced.body["lb_policy"], "least_request");

    api.put("/api/v1/clusters/api", cluster(8002))
        .await
        .expect(StatusCode::CREATED);
    let list = api.get("/api/v1/clusters").await.expect(StatusCode::OK);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "web"]);
    assert_eq!(list.body[1]["lb_policy"], "least_request");

    let deleted = api
        .delete("/api/v1/clusters/web")
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    api.get("/api/v1/clusters/web")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.delete("/api/v1/clusters/web")
        .await
        .expect(StatusCode::NOT_FOUND);
    let list = api.get("/api/v1/clusters").await.expect(StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

async fn post_conflicts_with_existing(store: Store) {
    let api = Api::open(store);
    let mut body = cluster(8001);
    body["name"] = json!("web");
    let created = api
        .post("/api/v1/clusters", body.clone())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created.body["name"], "web");
    assert_eq!(created.headers[header::LOCATION], "/api/v1/clusters/web");
    let conflict = api
        .post("/api/v1/clusters", body)
        .await
        .expect(StatusCode::CONFLICT);
    assert!(
        conflict.body["detail"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    // A rejected write changes nothing.
    let got = api.get("/api/v1/clusters/web").await.expect(StatusCode::OK);
    assert_eq!(got.body["version"], created.body["version"]);
    // POST needs the name in the body.
    let missing = api
        .post("/api/v1/clusters", cluster(1))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(missing.fields(), ["name"]);
}

async fn if_match_guards_writes(store: Store) {
    let api = Api::open(store);
    let v1 = api
        .put("/api/v1/clusters/web", cluster(8001))
        .await
        .expect(StatusCode::CREATED)
        .body["version"]
        .as_i64()
        .unwrap();
    let stale = format!("{}", v1 + 100);
    let mismatch = api
        .call_with(
            Method::PUT,
            "/api/v1/clusters/web",
            Some(cluster(8002)),
            &[("if-match", &stale)],
        )
        .await
        .expect(StatusCode::PRECONDITION_FAILED);
    assert!(
        mismatch.body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("version {v1}"))
    );
    let quoted = format!("\"{v1}\"");
    let ok = api
        .call_with(
            Method::PUT,
            "/api/v1/clusters/web",
            Some(cluster(8002)),
            &[("if-match", &quoted)],
        )
        .await
        .expect(StatusCode::OK);
    let v2 = ok.body["version"].as_i64().unwrap();
    // The old version no longer matches, for PUT nor DELETE.
    api.call_with(
        Method::PUT,
        "/api/v1/clusters/web",
        Some(cluster(8003)),
        &[("if-match", &quoted)],
    )
    .await
    .expect(StatusCode::PRECONDITION_FAILED);
    api.call_with(
        Method::DELETE,
        "/api/v1/clusters/web",
        None,
        &[("if-match", &v1.to_string())],
    )
    .await
    .expect(StatusCode::PRECONDITION_FAILED);
    // If-Match on a missing resource fails too; a malformed one is a 400.
    api.call_with(
        Method::PUT,
        "/api/v1/clusters/other",
        Some(cluster(1)),
        &[("if-match", "1")],
    )
    .await
    .expect(StatusCode::PRECONDITION_FAILED);
    let bad = api
        .call_with(
            Method::PUT,
            "/api/v1/clusters/web",
            Some(cluster(1)),
            &[("if-match", "yesterday")],
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(bad.fields(), ["If-Match"]);
    api.call_with(
        Method::DELETE,
        "/api/v1/clusters/web",
        None,
        &[("if-match", &v2.to_string())],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

async fn references_are_checked(store: Store) {
    let api = Api::open(store);
    let unknown = api
        .put(
            "/api/v1/routes/r",
            json!({"match": {"path_prefix": "/"}, "cluster": "nope"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["errors"][0]["field"], "cluster");
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "unknown cluster \"nope\""
    );
    api.get("/api/v1/routes/r")
        .await
        .expect(StatusCode::NOT_FOUND);

    api.put("/api/v1/clusters/blue", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    let split = api
        .put(
            "/api/v1/routes/r",
            json!({"weighted_clusters": [{"cluster": "blue", "weight": 9},
                                         {"cluster": "green", "weight": 1}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(split.fields(), ["weighted_clusters[1].cluster"]);
    assert_eq!(
        split.body["errors"][0]["message"],
        "unknown cluster \"green\""
    );

    api.put("/api/v1/clusters/green", cluster(8002))
        .await
        .expect(StatusCode::CREATED);
    api.put(
        "/api/v1/routes/r",
        json!({"weighted_clusters": [{"cluster": "blue", "weight": 9},
                                     {"cluster": "green", "weight": 1}]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let in_use = api
        .delete("/api/v1/clusters/green")
        .await
        .expect(StatusCode::CONFLICT);
    assert!(
        in_use.body["detail"].as_str().unwrap().contains("routes/r"),
        "{}",
        in_use.body
    );
    assert_eq!(in_use.body["used_by"], json!(["routes/r"]));
    api.get("/api/v1/clusters/green")
        .await
        .expect(StatusCode::OK);

    api.put(
        "/api/v1/routes/r",
        json!({"aggregate": {"parts": [{"name": "a", "cluster": "blue", "path": "/a"},
                                        {"name": "b", "cluster": "red", "path": "/b"}]}}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    api.put("/api/v1/routes/r", json!({"cluster": "blue"}))
        .await
        .expect(StatusCode::OK);
    api.delete("/api/v1/clusters/green")
        .await
        .expect(StatusCode::NO_CONTENT);
    api.delete("/api/v1/routes/r")
        .await
        .expect(StatusCode::NO_CONTENT);
    api.delete("/api/v1/clusters/blue")
        .await
        .expect(StatusCode::NO_CONTENT);
}

async fn revisions_and_rollback(store: Store) {
    let api = Api::open(store);
    let v1 = api
        .put("/api/v1/clusters/web", cluster(8001))
        .await
        .expect(StatusCode::CREATED)
        .body["version"]
        .as_i64()
        .unwrap();
    api.put("/api/v1/clusters/web", cluster(8002))
        .await
        .expect(StatusCode::OK);
    api.put("/api/v1/routes/r", json!({"cluster": "web"}))
        .await
        .expect(StatusCode::CREATED);

    let list = api.get("/api/v1/revisions").await.expect(StatusCode::OK);
    let revisions = list.body.as_array().unwrap();
    assert_eq!(revisions.len(), 3);
    let numbers: Vec<i64> = revisions
        .iter()
        .map(|r| r["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [v1 + 2, v1 + 1, v1]);
    assert_eq!(revisions[0]["actor"], "anonymous");
    assert_eq!(
        revisions[0]["changes"],
        json!([{"op": "create", "kind": "routes", "name": "r"}])
    );
    let page = api
        .get(&format!("/api/v1/revisions?limit=1&before={}", v1 + 2))
        .await
        .expect(StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["number"], v1 + 1);
    let bad = api
        .get("/api/v1/revisions?limit=0")
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(bad.fields(), ["limit"]);
    api.get("/api/v1/revisions?limit=many")
        .await
        .expect(StatusCode::BAD_REQUEST);

    let at = api
        .get(&format!("/api/v1/revisions/{v1}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(at.body["revision"]["number"], v1);
    assert_eq!(
        at.body["config"]["clusters"][0]["endpoints"][0]["address"],
        "127.0.0.1:8001"
    );
    assert_eq!(at.body["config"]["clusters"][0]["name"], "web");
    assert_eq!(at.body["config"]["routes"], json!([]));
    api.get("/api/v1/revisions/9999")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.get("/api/v1/revisions/abc")
        .await
        .expect(StatusCode::NOT_FOUND);

    let rolled = api
        .call(
            Method::POST,
            &format!("/api/v1/revisions/{v1}/rollback"),
            None,
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rolled.body["number"], v1 + 3);
    assert_eq!(rolled.body["rollback_of"], v1);
    let web = api.get("/api/v1/clusters/web").await.expect(StatusCode::OK);
    assert_eq!(web.body["endpoints"][0]["address"], "127.0.0.1:8001");
    api.get("/api/v1/routes/r")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.call(Method::POST, "/api/v1/revisions/9999/rollback", None)
        .await
        .expect(StatusCode::NOT_FOUND);

    // Diffs: against the revision before by default, any other, or the empty config (0).
    let d = api
        .get(&format!("/api/v1/revisions/{}/diff", v1 + 1))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (d.body["revision"].as_i64(), d.body["against"].as_i64()),
        (Some(v1 + 1), Some(v1))
    );
    assert_eq!(
        d.body["resources"],
        json!([{"kind": "clusters", "name": "web", "change": "changed", "fields": [
            {"field": "endpoints[0].address", "before": "127.0.0.1:8001", "after": "127.0.0.1:8002"}
        ]}])
    );
    let from_empty = api
        .get(&format!("/api/v1/revisions/{}/diff?against=0", v1 + 2))
        .await
        .expect(StatusCode::OK);
    let added: Vec<_> = from_empty.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        added,
        [("clusters", "web", "added"), ("routes", "r", "added")]
    );
    let removed = api
        .get(&format!(
            "/api/v1/revisions/{}/diff?against={}",
            v1 + 3,
            v1 + 2
        ))
        .await
        .expect(StatusCode::OK);
    let changes: Vec<_> = removed.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(changes, [("web", "changed"), ("r", "removed")]);
    let restored = api
        .get(&format!("/api/v1/revisions/{}/diff?against={v1}", v1 + 3))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        restored.body["resources"],
        json!([]),
        "the rollback restored it exactly"
    );
    for bad in ["-1", "abc"] {
        let reply = api
            .get(&format!("/api/v1/revisions/{v1}/diff?against={bad}"))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.fields(), ["against"]);
    }
    api.get(&format!("/api/v1/revisions/{v1}/diff?against=9999"))
        .await
        .expect(StatusCode::NOT_FOUND);
    api.get("/api/v1/revisions/9999/diff")
        .await
        .expect(StatusCode::NOT_FOUND);
}

async fn other_kinds_and_their_references(store: Store) {
    let api = Api::open(store);
    let unknown = api
        .put(
            "/api/v1/consumers/alice",
            json!({"scopes": ["read"], "quota": "gold"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(unknown.fields(), ["quota"]);
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "unknown quota \"gold\""
    );
    api.put(
        "/api/v1/quotas/gold",
        json!({"limit": 1000, "window": "day"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let alice = api
        .put(
            "/api/v1/consumers/alice",
            json!({"scopes": ["read"], "quota": "gold"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(alice.body["scopes"], json!(["read"]));
    api.post(
        "/api/v1/jwt-providers",
        json!({"name": "idp", "issuer": "https://idp.example.com",
               "jwks_uri": "https://idp.example.com/jwks.json"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let idp = api
        .get("/api/v1/jwt-providers/idp")
        .await
        .expect(StatusCode::OK);
    assert_eq!(idp.body["algorithms"], json!(["RS256"]));
    api.put("/api/v1/clusters/web", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    let missing_jwt = api
        .put(
            "/api/v1/routes/r",
            json!({"cluster": "web", "auth": {"jwt": "other"}}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(missing_jwt.fields(), ["auth.jwt"]);
    // A route may name an existing quota; an unknown one is a 400 naming `quota`.
    let unknown_quota = api
        .put(
            "/api/v1/routes/r",
            json!({"cluster": "web", "auth": {"jwt": "idp", "scopes": ["read"]}, "quota": "silver"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(unknown_quota.fields(), ["quota"]);
    assert_eq!(
        unknown_quota.body["errors"][0]["message"],
        "unknown quota \"silver\""
    );
    let route = api
        .put(
            "/api/v1/routes/r",
            json!({"cluster": "web", "auth": {"jwt": "idp", "scopes": ["read"]}, "quota": "gold"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(route.body["quota"], "gold");
    // Unauthenticated routes may charge a quota too (one budget for every anonymous caller).
    api.put(
        "/api/v1/routes/open",
        json!({"cluster": "web", "quota": "gold"}),
    )
    .await
    .expect(StatusCode::CREATED);
    api.delete("/api/v1/jwt-providers/idp")
        .await
        .expect(StatusCode::CONFLICT);
    let quota_in_use = api
        .delete("/api/v1/quotas/gold")
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(
        quota_in_use.body["used_by"],
        json!(["consumers/alice", "routes/open", "routes/r"])
    );

    // `on_unavailable`: `allow` by default, `deny` kept, anything else a 400 naming it.
    let gold = api.get("/api/v1/quotas/gold").await.expect(StatusCode::OK);
    assert_eq!(gold.body["on_unavailable"], "allow");
    let strict = api
        .put(
            "/api/v1/quotas/strict",
            json!({"limit": 10, "window": "minute", "on_unavailable": "deny"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(strict.body["on_unavailable"], "deny");
    let strict = api
        .get("/api/v1/quotas/strict")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (
            strict.body["limit"].as_u64(),
            strict.body["window"].as_str(),
            strict.body["on_unavailable"].as_str()
        ),
        (Some(10), Some("minute"), Some("deny"))
    );
    let bad = api
        .put(
            "/api/v1/quotas/strict",
            json!({"limit": 10, "window": "minute", "on_unavailable": "block"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(bad.fields(), ["on_unavailable"]);
    assert_eq!(
        api.get("/api/v1/quotas/strict").await.body["on_unavailable"],
        "deny",
        "a rejected write changes nothing"
    );
}

/// The README's own example, and every kind of reference: one 400 names the invalid fields
/// and, after them, every reference to a resource that does not exist; nothing is written.
async fn syntax_and_reference_errors_in_one_answer(store: Store) {
    let api = Api::open(store);
    let reply = api
        .put(
            "/api/v1/routes/bad",
            json!({"match": {"path_prefix": 5}, "cluster": "nope"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["errors"],
        json!([
            {"field": "match.path_prefix", "message": "must be a string"},
            {"field": "cluster", "message": "unknown cluster \"nope\""},
        ])
    );

    api.put("/api/v1/clusters/blue", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    let reply = api
        .put(
            "/api/v1/routes/split",
            json!({"weighted_clusters": [{"cluster": "blue", "weight": 0},
                                         {"cluster": "green", "weight": 1},
                                         "x",
                                         {"cluster": "red", "weight": 1}],
                   "auth": {"jwt": "idp", "scopes": ["a b"]}}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.fields(),
        [
            "weighted_clusters[0].weight",
            "weighted_clusters[2]",
            "auth.scopes[0]",
            "weighted_clusters[1].cluster",
            "weighted_clusters[3].cluster",
            "auth.jwt",
        ]
    );
    assert_eq!(
        reply.body["errors"][5]["message"],
        "unknown jwt-provider \"idp\""
    );

    let reply = api
        .post(
            "/api/v1/routes",
            json!({"name": "fan", "timeout_ms": 0, "aggregate": {"parts": [
                {"name": "a", "cluster": "blue", "path": "/a"},
                {"name": "b", "cluster": "gone", "path": "b"}]}}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.fields(),
        [
            "aggregate.parts[1].path",
            "timeout_ms",
            "aggregate.parts[1].cluster"
        ]
    );

    let reply = api
        .put(
            "/api/v1/consumers/alice",
            json!({"scopes": "read", "quota": "gold"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), ["scopes", "quota"]);
    assert_eq!(reply.body["errors"][1]["message"], "unknown quota \"gold\"");

    for path in [
        "/api/v1/routes/bad",
        "/api/v1/routes/split",
        "/api/v1/routes/fan",
    ] {
        api.get(path).await.expect(StatusCode::NOT_FOUND);
    }
    api.get("/api/v1/consumers/alice")
        .await
        .expect(StatusCode::NOT_FOUND);
}

// ---- validation ----------------------------------------------------------------------------

/// Every rule: a body and the fields its 400 must name (in order).
#[tokio::test]
async fn every_invalid_field_is_named() {
    let api = Api::open(support::sqlite_store().await);
    // The routes below name cluster "c": it exists, so only their own fields are named.
    api.put("/api/v1/clusters/c", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        // clusters
        (
            "clusters",
            json!({"endpoints": [{"address": "10.0.0.1"}, {"address": "h:0"},
                {"address": "[::1]:80", "weight": 0, "priority": 11},
                {"address": "a:1", "weight": 10001}, {"address": "a:1"}, {}]}),
            vec![
                "endpoints[0].address",
                "endpoints[1].address",
                "endpoints[2].weight",
                "endpoints[2].priority",
                "endpoints[3].weight",
                "endpoints[5].address",
                "endpoints[4].address",
            ],
        ),
        (
            "clusters",
            json!({"lb_policy": "fastest"}),
            vec!["lb_policy"],
        ),
        (
            "clusters",
            json!({"lb_policy": "ring_hash"}),
            vec!["hash_on"],
        ),
        (
            "clusters",
            json!({"lb_policy": "round_robin", "hash_on": {"header": "x"}}),
            vec!["hash_on"],
        ),
        (
            "clusters",
            json!({"lb_policy": "maglev", "hash_on": {"header": "x", "source_ip": true}}),
            vec!["hash_on"],
        ),
        (
            "clusters",
            json!({"health_check": {"interval_ms": 99, "timeout_ms": 0,
                "healthy_threshold": 0, "unhealthy_threshold": 101}}),
            vec![
                "health_check.path",
                "health_check.interval_ms",
                "health_check.timeout_ms",
                "health_check.healthy_threshold",
                "health_check.unhealthy_threshold",
            ],
        ),
        (
            "clusters",
            json!({"health_check": {"path": "x", "interval_ms": 1000, "timeout_ms": 3600001}}),
            vec!["health_check.path", "health_check.timeout_ms"],
        ),
        (
            "clusters",
            json!({"outlier_detection": {"consecutive_5xx": 1001, "base_ejection_ms": 0,
                "max_ejection_percent": 101}}),
            vec![
                "outlier_detection.consecutive_5xx",
                "outlier_detection.base_ejection_ms",
                "outlier_detection.max_ejection_percent",
            ],
        ),
        (
            "clusters",
            json!({"circuit_breaker": {"max_connections": 0, "max_pending_requests": 1000001,
                "max_requests": -1}, "connect_timeout_ms": 0}),
            vec![
                "circuit_breaker.max_connections",
                "circuit_breaker.max_pending_requests",
                "circuit_breaker.max_requests",
                "connect_timeout_ms",
            ],
        ),
        (
            "clusters",
            json!({"endpoints": "10.0.0.1:80", "connect_timeout_ms": 60001}),
            vec!["endpoints", "connect_timeout_ms"],
        ),
        // routes
        (
            "routes",
            json!({"match": {"path_prefix": 5}, "cluster": "c"}),
            vec!["match.path_prefix"],
        ),
        ("routes", json!({}), vec![""]),
        (
            "routes",
            json!({"cluster": "c", "direct_response": {"status": 200}}),
            vec!["direct_response"],
        ),
        (
            "routes",
            json!({"match": {"host": "a b", "path_exact": "x", "methods": ["GOT"],
                "headers": {"a b": "c"}, "query": {"q": 1}}, "priority": 1001, "cluster": "c"}),
            vec![
                "match.host",
                "match.path_exact",
                "match.methods[0]",
                "match.headers.a b",
                "match.query.q",
                "priority",
            ],
        ),
        (
            "routes",
            json!({"match": {"path_prefix": "/", "path_regex": "/("}, "cluster": "c"}),
            vec!["match.path_regex", "match.path_regex"],
        ),
        (
            "routes",
            json!({"weighted_clusters": [{"cluster": "c", "weight": 0}, {"weight": 1}]}),
            vec![
                "weighted_clusters[0].weight",
                "weighted_clusters[1].cluster",
            ],
        ),
        (
            "routes",
            json!({"aggregate": {"parts": [{"name": "a", "cluster": "c", "path": "x"},
                {"name": "a", "cluster": "c", "path": "/y"}]}}),
            vec!["aggregate.parts[0].path", "aggregate.parts[1].name"],
        ),
        (
            "routes",
            json!({"direct_response": {"status": 600, "body": 5}}),
            vec!["direct_response.status", "direct_response.body"],
        ),
        (
            "routes",
            json!({"cluster": "c", "rewrite": {"prefix": "v2"},
                "request_headers": {"set": {"x": "a\u{0}b"}, "remove": ["a b"]},
                "response_headers": {"set": []},
                "remove_response_fields": ["a..b"]}),
            vec![
                "rewrite.prefix",
                "request_headers.set.x",
                "request_headers.remove[0]",
                "response_headers.set",
                "remove_response_fields[0]",
            ],
        ),
        (
            "routes",
            json!({"cluster": "c", "auth": {"api_key": "yes"},
                "rate_limit": {"requests": 0, "per_seconds": 0, "by": "user"},
                "quota": "Gold"}),
            vec![
                "auth.api_key",
                "auth",
                "rate_limit.requests",
                "rate_limit.per_seconds",
                "rate_limit.by",
                "quota",
            ],
        ),
        (
            "routes",
            json!({"cluster": "c", "timeout_ms": 0,
                "retries": {"attempts": 0, "on": ["always"], "per_try_timeout_ms": 0}}),
            vec![
                "timeout_ms",
                "retries.attempts",
                "retries.on[0]",
                "retries.per_try_timeout_ms",
            ],
        ),
        (
            "routes",
            json!({"cluster": "c", "cors": {"allow_origins": ["nope"], "max_age_s": -1},
                "cache": {"ttl_s": 0}, "max_body_bytes": 0, "required_headers": ["a b"],
                "compress": 1}),
            vec![
                "cors.allow_origins[0]",
                "cors.max_age_s",
                "cache.ttl_s",
                "max_body_bytes",
                "required_headers[0]",
                "compress",
            ],
        ),
        // a quota that does not exist
        (
            "routes",
            json!({"cluster": "c", "auth": {"api_key": true}, "quota": "gold"}),
            vec!["quota"],
        ),
        // accepted by the model but not enforced by the proxy yet: refused
        (
            "routes",
            json!({"cluster": "c", "compress": true}),
            vec!["compress"],
        ),
        // the other kinds
        (
            "consumers",
            json!({"scopes": "read", "quota": 5}),
            vec!["scopes", "quota"],
        ),
        (
            "jwt-providers",
            json!({"issuer": "", "jwks": {"keys": []}, "jwks_uri": "x", "algorithms": ["none"]}),
            vec!["issuer", "jwks", "jwks_uri", "jwks", "algorithms[0]"],
        ),
        (
            "quotas",
            json!({"limit": 0, "window": "week"}),
            vec!["limit", "window"],
        ),
    ];
    for (kind, body, want) in cases {
        let reply = api
            .put(&format!("/api/v1/{kind}/x"), body.clone())
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.fields(), want, "{kind} {body} -> {}", reply.body);
        for error in reply.body["errors"].as_array().unwrap() {
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
    }
    // Nothing was written but cluster "c".
    let revisions = api.get("/api/v1/revisions").await.expect(StatusCode::OK);
    assert_eq!(revisions.body.as_array().map(Vec::len), Some(1));
}

/// Envoy and Kong accept a health-check timeout above the interval (the next check starts
/// after the previous one ends); so does the API, and stores the timeout as given.
#[tokio::test]
async fn health_check_timeout_may_exceed_the_interval() {
    let api = Api::open(support::sqlite_store().await);
    for (name, timeout_ms) in [("equal", 1000), ("longer", 5000)] {
        let body = json!({"endpoints": [{"address": "127.0.0.1:8001"}],
            "health_check": {"path": "/healthz", "interval_ms": 1000, "timeout_ms": timeout_ms}});
        let created = api
            .put(&format!("/api/v1/clusters/{name}"), body)
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(created.body["health_check"]["timeout_ms"], timeout_ms);
        let read = api
            .get(&format!("/api/v1/clusters/{name}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(read.body["health_check"]["interval_ms"], 1000);
        assert_eq!(read.body["health_check"]["timeout_ms"], timeout_ms);
    }
}

#[tokio::test]
async fn type_errors_and_unknown_fields() {
    let api = Api::open(support::sqlite_store().await);
    let reply = api
        .put(
            "/api/v1/routes/r",
            json!({"match": {"path_prefix": 5, "colour": "red"}, "cluster": "c", "bogus": 1}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["errors"],
        json!([
            {"field": "match.path_prefix", "message": "must be a string"},
            {"field": "match.colour", "message": "unknown field"},
            {"field": "bogus", "message": "unknown field"},
            {"field": "cluster", "message": "unknown cluster \"c\""},
        ])
    );
    assert_eq!(reply.body["type"], "urn:switchyard:problem:invalid-input");
    assert_eq!(reply.body["title"], "Bad Request");

    let reply = api
        .put("/api/v1/clusters/web", json!({"name": "api"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), ["name"]);
    let reply = api
        .put("/api/v1/clusters/Web", json!({}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), ["name"]);
    let long = "a".repeat(64);
    api.put(&format!("/api/v1/clusters/{long}"), json!({}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    let reply = api
        .put("/api/v1/clusters/web", json!([1, 2]))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), [""]);
}

#[tokio::test]
async fn malformed_bodies() {
    let api = Api::open(support::sqlite_store().await);
    let request = |content_type: &str, body: Body| {
        api.request(Method::PUT, "/api/v1/clusters/web")
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .unwrap()
    };
    let reply = api
        .send(request("application/json", Body::from("{\"endpoints\": [")))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), [""]);
    assert!(
        reply.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{}",
        reply.body
    );
    api.send(request("application/json", Body::empty()))
        .await
        .expect(StatusCode::BAD_REQUEST);
    api.send(request("text/plain", Body::from("{}")))
        .await
        .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let no_type = api
        .request(Method::PUT, "/api/v1/clusters/web")
        .body(Body::from("{}"))
        .unwrap();
    api.send(no_type)
        .await
        .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    api.send(request("application/json; charset=utf-8", Body::from("{}")))
        .await
        .expect(StatusCode::CREATED);
    let huge = format!(
        "{{\"endpoints\": [], \"pad\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    api.send(request("application/json", Body::from(huge)))
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    api.send(request("application/json", Body::from(deep)))
        .await
        .expect(StatusCode::BAD_REQUEST);
}

// ---- auth, errors, system endpoints ------------------------------------------------------

#[tokio::test]
async fn token_is_required_when_configured() {
    let store = support::sqlite_store().await;
    let api = Api::with_token(store.clone(), "s3cret");
    api.put("/api/v1/clusters/web", cluster(8001))
        .await
        .expect(StatusCode::CREATED);
    api.get("/api/v1/proxies").await.expect(StatusCode::OK);
    let revisions = api.get("/api/v1/revisions").await.expect(StatusCode::OK);
    assert_eq!(revisions.body[0]["actor"], "admin");

    let anonymous = Api::open(store.clone());
    let no_token = Api {
        app: router(state(store.clone(), Some("s3cret"))),
        token: None,
    };
    let wrong = Api {
        app: router(state(store, Some("s3cret"))),
        token: Some("guess".into()),
    };
    for client in [&no_token, &wrong] {
        for (method, uri) in [
            (Method::GET, "/api/v1/clusters"),
            (Method::GET, "/api/v1/clusters/web"),
            (Method::DELETE, "/api/v1/clusters/web"),
            (Method::GET, "/api/v1/proxies"),
            (Method::GET, "/api/v1/revisions"),
            (Method::POST, "/api/v1/revisions/1/rollback"),
        ] {
            let reply = client
                .call(method.clone(), uri, None)
                .await
                .expect(StatusCode::UNAUTHORIZED);
            assert!(
                reply.headers.contains_key(header::WWW_AUTHENTICATE),
                "{uri}"
            );
        }
        client
            .put("/api/v1/clusters/web", cluster(1))
            .await
            .expect(StatusCode::UNAUTHORIZED);
        client.get("/healthz").await.expect(StatusCode::OK);
        let metrics = client.get("/metrics").await.expect(StatusCode::OK);
        assert!(
            metrics
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
        client
            .get("/api/v1/openapi.json")
            .await
            .expect(StatusCode::OK);
    }
    // Nothing changed through the rejected requests; the open API needs no token.
    let web = anonymous
        .get("/api/v1/clusters/web")
        .await
        .expect(StatusCode::OK);
    assert_eq!(web.body["endpoints"][0]["address"], "127.0.0.1:8001");
}

#[tokio::test]
async fn unknown_things_are_problem_404s() {
    let api = Api::open(support::sqlite_store().await);
    for uri in [
        "/api/v1/widgets",
        "/api/v1/widgets/x",
        "/api/v1/clusters/x/y",
        "/nothing",
    ] {
        api.get(uri).await.expect(StatusCode::NOT_FOUND);
    }
    api.get("/api/v1/clusters/missing")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.get("/api/v1/routes/missing")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.put("/api/v1/widgets/x", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
    api.call(Method::PATCH, "/api/v1/clusters/x", None)
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn fleet_health_and_metrics() {
    let api = Api::open(support::sqlite_store().await);
    let proxies = api.get("/api/v1/proxies").await.expect(StatusCode::OK);
    assert_eq!(proxies.body, json!([]));
    let health = api.get("/healthz").await.expect(StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let metrics = api.get("/metrics").await.expect(StatusCode::OK);
    assert_eq!(
        metrics.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[tokio::test]
async fn healthz_is_503_when_the_database_is_gone() {
    use sqlx::Connection;
    let url = support::postgres_database_url().await;
    let store = Store::connect(&url).await.unwrap();
    let api = Api::open(store);
    api.get("/healthz").await.expect(StatusCode::OK);
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&support::postgres_admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let reply = api
        .get("/healthz")
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["type"], "urn:switchyard:problem:unavailable");
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let api = Api::open(support::sqlite_store().await);
    let doc = api
        .get("/api/v1/openapi.json")
        .await
        .expect(StatusCode::OK)
        .body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/clusters",
        "/api/v1/clusters/{name}",
        "/api/v1/routes",
        "/api/v1/routes/{name}",
        "/api/v1/consumers/{name}",
        "/api/v1/jwt-providers/{name}",
        "/api/v1/quotas/{name}",
        "/api/v1/quotas/{name}/usage",
        "/api/v1/proxies",
        "/api/v1/revisions",
        "/api/v1/revisions/{n}",
        "/api/v1/revisions/{n}/rollback",
        "/healthz",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    for method in ["get", "put", "delete"] {
        assert!(
            paths["/api/v1/routes/{name}"][method].is_object(),
            "{method}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "Cluster",
        "Route",
        "RouteMatch",
        "Endpoint",
        "Problem",
        "FieldError",
        "QuotaUsageView",
        "QuotaUsageEntry",
    ] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_and_stored_hashed() {
    let store = support::sqlite_store().await;
    let api = Api::open(store.clone());
    api.post("/api/v1/consumers/nobody/keys", json!({}))
        .await
        .expect(StatusCode::NOT_FOUND);
    api.put("/api/v1/consumers/alice", json!({"scopes": ["read"]}))
        .await
        .expect(StatusCode::CREATED);
    let created = api
        .post("/api/v1/consumers/alice/keys", json!({}))
        .await
        .expect(StatusCode::CREATED);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sy_") && key.len() == 3 + 64, "{key}");
    assert_eq!(created.body["consumer"], "alice");

    // Only the SHA-256 is stored; nothing the API returns later contains the key.
    let stored = store.keys(Some("alice")).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].sha256,
        switchyard_control_plane::api::keys::hex(&Sha256::digest(key.as_bytes()))
    );
    let listed = api
        .get("/api/v1/consumers/alice/keys")
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body[0]["id"], id.as_str());
    assert!(!listed.body.to_string().contains(&key[3..]));
    let consumer = api
        .get("/api/v1/consumers/alice")
        .await
        .expect(StatusCode::OK);
    assert!(!consumer.body.to_string().contains(&key[3..]));

    api.delete(&format!("/api/v1/consumers/alice/keys/{id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    api.delete(&format!("/api/v1/consumers/alice/keys/{id}"))
        .await
        .expect(StatusCode::NOT_FOUND);
    let listed = api
        .get("/api/v1/consumers/alice/keys")
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body, json!([]));
    let revisions = api.get("/api/v1/revisions").await.expect(StatusCode::OK);
    assert_eq!(revisions.body[0]["changes"][0]["op"], "revoke_key");
}

#[tokio::test]
async fn writes_are_answered_once_the_snapshot_includes_them() {
    let store = support::sqlite_store().await;
    let (publish, published) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
    let api = Api {
        app: router(ApiState {
            published,
            ..state(store, None)
        }),
        token: None,
    };
    // The "builder" publishes revision 1 a little later.
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut snapshot = Snapshot::default();
        snapshot.revision = 1;
        publish.send_replace(Arc::new(snapshot));
        publish
    });
    let started = std::time::Instant::now();
    api.put("/api/v1/clusters/web", cluster(1))
        .await
        .expect(StatusCode::CREATED);
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "answered after {waited:?}, before the snapshot had the write"
    );
    let _publish = publisher.await.unwrap();
    // Reads never wait.
    let started = std::time::Instant::now();
    api.get("/api/v1/clusters/web").await.expect(StatusCode::OK);
    assert!(started.elapsed() < std::time::Duration::from_millis(250));
}

async fn revision_count(api: &Api) -> usize {
    let reply = api.get("/api/v1/revisions?limit=1000").await;
    reply.expect(StatusCode::OK).body.as_array().unwrap().len()
}

async fn apply_and_export_a_whole_document(store: Store) {
    let api = Api::open(store);
    let document = |port: u16| {
        json!({
            "clusters": [{"name": "web", "endpoints": [{"address": format!("127.0.0.1:{port}")}]}],
            "routes": [{"name": "r", "match": {"path_prefix": "/v1"}, "cluster": "web"}],
            "quotas": [{"name": "gold", "limit": 100, "window": "minute"}],
        })
    };
    let kinds = |reply: &Reply| -> Vec<(String, String, String)> {
        reply.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_owned();
                (s("kind"), s("name"), s("change"))
            })
            .collect()
    };

    let first = api
        .post("/api/v1/apply", document(8001))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        kinds(&first),
        [
            ("clusters".into(), "web".into(), "added".into()),
            ("quotas".into(), "gold".into(), "added".into()),
            ("routes".into(), "r".into(), "added".into()),
        ]
    );
    assert_eq!(
        first.body["revision"]["changes"].as_array().unwrap().len(),
        3,
        "one revision"
    );
    assert_eq!(revision_count(&api).await, 1);
    // The same document again: nothing differs, no revision.
    let again = api
        .post("/api/v1/apply", document(8001))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (again.body["revision"].clone(), kinds(&again).len()),
        (Value::Null, 0)
    );
    // A dry run answers the diff and writes nothing.
    let dry = api
        .post("/api/v1/apply?dry_run=true", document(8002))
        .await
        .expect(StatusCode::OK);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(dry.body["revision"], Value::Null);
    assert_eq!(
        dry.body["resources"][0]["fields"],
        json!([{"field": "endpoints[0].address", "before": "127.0.0.1:8001", "after": "127.0.0.1:8002"}])
    );
    let web = api.get("/api/v1/clusters/web").await.expect(StatusCode::OK);
    assert_eq!(web.body["endpoints"][0]["address"], "127.0.0.1:8001");

    // Bad items: every field named by its place in the document; nothing written.
    let bad = api
        .post(
            "/api/v1/apply",
            json!({
                "clusters": [{"name": "a", "endpoints": [{"address": 5}]}, {"name": "a", "endpoints": [{"address": "x:1"}]},
                             {"name": "a", "endpoints": [{"address": "x:1"}]}],
                "routes": [{"name": "y", "match": {"path_prefix": 5}, "cluster": "web"}],
                "widgets": [],
            }),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    let fields = bad.fields();
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("clusters[0].endpoints")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"clusters[2].name".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"routes[0].match.path_prefix".to_owned()),
        "{fields:?}"
    );
    assert!(fields.contains(&"widgets".to_owned()), "{fields:?}");
    let unknown = api
        .post(
            "/api/v1/apply",
            json!({"routes": [{"name": "z", "cluster": "nope"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(unknown.fields(), ["routes[0].cluster"]);
    // Pruning the cluster a kept route uses is refused the same way.
    let orphan = api
        .post(
            "/api/v1/apply?prune=true",
            json!({"routes": [{"name": "r", "cluster": "web"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(orphan.fields(), ["routes[0].cluster"]);
    api.post("/api/v1/apply", json!(["not", "a", "document"]))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(revision_count(&api).await, 1);

    // Export, prune everything away, apply the export: the same config again.
    let exported = api.get("/api/v1/export").await.expect(StatusCode::OK).body;
    assert_eq!(exported["clusters"][0]["name"], "web");
    assert_eq!(exported["routes"][0]["cluster"], "web");
    assert_eq!(exported["consumers"], json!([]));
    assert!(
        exported["routes"][0].get("version").is_none(),
        "no server-set fields"
    );
    let emptied = api
        .post("/api/v1/apply?prune=true", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        kinds(&emptied).iter().filter(|k| k.2 == "removed").count(),
        3
    );
    api.get("/api/v1/routes/r")
        .await
        .expect(StatusCode::NOT_FOUND);
    api.post("/api/v1/apply", exported.clone())
        .await
        .expect(StatusCode::OK);
    let round_trip = api.get("/api/v1/export").await.expect(StatusCode::OK).body;
    assert_eq!(round_trip, exported);
    assert_eq!(revision_count(&api).await, 3);

    // YAML both ways: the export as YAML is the same document; a YAML apply of a change.
    let yaml = |method: Method, uri: &str, body: &str| {
        api.request(method, uri)
            .header(header::CONTENT_TYPE, "application/yaml")
            .header(header::ACCEPT, "application/yaml")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let exported_yaml = api
        .send(yaml(Method::GET, "/api/v1/export", ""))
        .await
        .expect(StatusCode::OK);
    assert_eq!(exported_yaml.content_type(), "application/yaml");
    let text = exported_yaml.body.as_str().expect("YAML text").to_owned();
    assert!(text.contains("clusters:"), "{text}");
    let reread: Value = yaml_serde::from_str(&text).unwrap();
    assert_eq!(reread, exported);
    let change = "quotas:\n  - name: gold\n    limit: 200\n    window: minute\n";
    let applied = api
        .send(yaml(Method::POST, "/api/v1/apply", change))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        applied.body["resources"][0]["fields"],
        json!([{"field": "limit", "before": 100, "after": 200}])
    );
    let bad_yaml = api
        .send(yaml(Method::POST, "/api/v1/apply", "quotas: [unclosed"))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(
        bad_yaml.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("malformed YAML")
    );
    let text_plain = api
        .request(Method::POST, "/api/v1/apply")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    api.send(text_plain)
        .await
        .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A document may be larger than a single resource's body limit (1 MiB), up to 16 MiB.
    for (padding, status) in [
        (2 << 20, StatusCode::OK),
        (17 << 20, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let body = format!("{{{}\"quotas\": []}}", " ".repeat(padding));
        let request = api
            .request(Method::POST, "/api/v1/apply?dry_run=true")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        api.send(request).await.expect(status);
    }
}
