//! Quotas end to end in the control plane: real control planes on 127.0.0.1 (SQLite and
//! PostgreSQL; two replicas on one PostgreSQL), tonic's generated client playing proxies that
//! ask for grants and report consumption on the report stream, and hyper's client reading
//! `GET /api/v1/quotas/{name}/usage`.

#[macro_use]
mod support;

use support::control_plane::{Harness, start};
use support::report_stream::ReportStream;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchyard_proto::v1::{QuotaConsumption, QuotaRequest, ReportRequest, UsageBatch};

on_both_database_urls!(
    grants_consumption_and_usage_over_the_wire,
    routes_charge_existing_quotas_only,
);

fn ask(quota: &str, consumer: &str, want: u64) -> QuotaRequest {
    QuotaRequest {
        quota: quota.to_owned(),
        consumer: consumer.to_owned(),
        want,
    }
}

/// The start of the current hour, Unix seconds.
fn this_hour() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % 3600
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Creates quota `name` through the API.
async fn put_quota(h: &Harness, name: &str, spec: Value) -> Value {
    let reply = h.put(&format!("/api/v1/quotas/{name}"), spec).await;
    assert!(matches!(reply.status, 200 | 201), "{}", reply.text);
    reply.body
}

/// `GET /api/v1/quotas/{name}/usage`, which must succeed.
async fn quota_usage(h: &Harness, name: &str) -> Value {
    let reply = h.get(&format!("/api/v1/quotas/{name}/usage")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.content_type, "application/json");
    reply.body
}

async fn grants_consumption_and_usage_over_the_wire(url: String) {
    let h = start(&url).await;
    let created = put_quota(&h, "gold", json!({"limit": 100, "window": "hour"})).await;
    assert_eq!(created["on_unavailable"], "allow");
    let hour = this_hour();

    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    proxy
        .send(ReportRequest {
            quota_requests: vec![ask("gold", "alice", 10), ask("nope", "alice", 10)],
            ..Default::default()
        })
        .await;
    let answer = proxy.answer().await;
    assert_eq!(answer.usage_acked, 0, "no usage in the message");
    assert_eq!(answer.grants.len(), 2, "{answer:?}");
    let gold = &answer.grants[0];
    assert_eq!(
        (gold.quota.as_str(), gold.consumer.as_str(), gold.granted),
        ("gold", "alice", 10)
    );
    assert_eq!(
        (gold.limit, gold.window_granted, gold.exhausted),
        (100, 10, false)
    );
    assert_eq!(gold.window_start_unix_s, hour);
    assert_eq!(gold.window_end_unix_ms, (hour + 3600) * 1000);
    let unknown = &answer.grants[1];
    assert_eq!(
        (
            unknown.quota.as_str(),
            unknown.granted,
            unknown.limit,
            unknown.exhausted
        ),
        ("nope", 0, 0, false)
    );

    // Usage with the consumption it carries and a new request, in one message: one answer
    // acknowledging the batch and granting.
    let consumed = |consumer: &str, used: u64, unleased: u64| QuotaConsumption {
        quota: "gold".into(),
        consumer: consumer.into(),
        used,
        window_start_unix_s: hour,
        unleased,
    };
    let one = UsageBatch {
        sequence: 1,
        quota_used: vec![consumed("alice", 9, 0), consumed("", 3, 3)],
        ..Default::default()
    };
    proxy
        .send(ReportRequest {
            usage_batches: vec![one.clone()],
            quota_requests: vec![ask("gold", "alice", 10)],
            ..Default::default()
        })
        .await;
    let answer = proxy.answer().await;
    assert_eq!(answer.usage_acked, 1);
    assert_eq!(answer.grants.len(), 1);
    // 10 granted before and 3 let through blind (by the unauthenticated caller's own budget,
    // not alice's): a quarter of alice's 90 left is 23, at most the 10 wanted.
    assert_eq!(
        (answer.grants[0].granted, answer.grants[0].window_granted),
        (10, 20)
    );

    // The batch again after a reconnect: acknowledged, not counted twice.
    drop(proxy);
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    assert_eq!(proxy.report(vec![one]).await, 1);

    let usage = quota_usage(&h, "gold").await;
    let resets_at = rfc3339(hour + 3600);
    assert_eq!(
        usage,
        json!({
            "quota": "gold",
            "limit": 100,
            "window": "hour",
            "items": [
                {"consumer": "", "used": 3, "remaining": 97, "resets_at": resets_at},
                {"consumer": "alice", "used": 9, "remaining": 91, "resets_at": resets_at},
            ],
        })
    );

    // Spend alice's budget: the answers shrink, then say exhausted.
    let mut granted = 20;
    let mut last = 10;
    loop {
        proxy
            .send(ReportRequest {
                quota_requests: vec![ask("gold", "alice", 10)],
                ..Default::default()
            })
            .await;
        let grant = proxy.answer().await.grants.remove(0);
        if grant.exhausted {
            assert_eq!((grant.granted, grant.window_granted), (0, 100));
            break;
        }
        assert!(grant.granted <= last, "{grant:?}");
        last = grant.granted;
        granted += grant.granted;
        assert_eq!(grant.window_granted, granted);
    }
    assert_eq!((granted, last), (100, 1));

    let missing = h.get("/api/v1/quotas/nope/usage").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(missing.content_type, "application/problem+json");
    assert_eq!(missing.body["type"], "urn:switchyard:problem:not-found");

    assert_eq!(h.metric("switchyard_quota_tokens_granted_total").await, 100);
    assert!(h.metric("switchyard_quota_grants_total").await >= 10);
    assert_eq!(h.metric("switchyard_quota_exhausted_total").await, 1);
    assert_eq!(h.metric("switchyard_quota_unknown_total").await, 1);
    assert_eq!(h.metric("switchyard_quota_used_total").await, 12);
    assert_eq!(h.metric("switchyard_quota_unleased_total").await, 3);
    assert_eq!(h.metric("switchyard_quota_grant_failures_total").await, 0);
}

async fn routes_charge_existing_quotas_only(url: String) {
    let h = start(&url).await;
    let cluster = h
        .put(
            "/api/v1/clusters/web",
            json!({"endpoints": [{"address": "127.0.0.1:9001"}]}),
        )
        .await;
    assert_eq!(cluster.status, 201, "{}", cluster.text);
    let unknown = h
        .put(
            "/api/v1/routes/r",
            json!({"cluster": "web", "quota": "gold"}),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert_eq!(unknown.body["errors"][0]["field"], "quota");
    put_quota(
        &h,
        "gold",
        json!({"limit": 5, "window": "minute", "on_unavailable": "deny"}),
    )
    .await;
    let route = h
        .put(
            "/api/v1/routes/r",
            json!({"cluster": "web", "auth": {"api_key": true}, "quota": "gold"}),
        )
        .await;
    assert_eq!(route.status, 201, "{}", route.text);
    assert_eq!(route.body["quota"], "gold");
    let gold = h.get("/api/v1/quotas/gold").await;
    assert_eq!(gold.body["on_unavailable"], "deny");
    let in_use = h.delete("/api/v1/quotas/gold").await;
    assert_eq!(in_use.status, 409, "{}", in_use.text);
    assert_eq!(in_use.body["used_by"], json!(["routes/r"]));
    assert_eq!(quota_usage(&h, "gold").await["items"], json!([]));
}

#[tokio::test]
async fn two_replicas_on_one_postgres_grant_from_one_budget() {
    let url = support::postgres_database_url().await;
    let replicas = [start(&url).await, start(&url).await];
    put_quota(
        &replicas[0],
        "gold",
        json!({"limit": 1000, "window": "hour"}),
    )
    .await;
    let mut proxies = [
        ReportStream::open_as(&replicas[0].xds_url, "a", "a-1").await,
        ReportStream::open_as(&replicas[1].xds_url, "b", "b-1").await,
    ];
    let mut granted = [0, 0];
    let mut exhausted = [false, false];
    while !(exhausted[0] && exhausted[1]) {
        for (i, proxy) in proxies.iter_mut().enumerate() {
            if exhausted[i] {
                continue;
            }
            proxy
                .send(ReportRequest {
                    quota_requests: vec![ask("gold", "alice", 100)],
                    ..Default::default()
                })
                .await;
            let grant = proxy.answer().await.grants.remove(0);
            granted[i] += grant.granted;
            exhausted[i] = grant.exhausted;
        }
    }
    assert_eq!(granted[0] + granted[1], 1000, "{granted:?}");
    assert!(granted[0] > 0 && granted[1] > 0, "{granted:?}");
    let first = quota_usage(&replicas[0], "gold").await;
    let second = quota_usage(&replicas[1], "gold").await;
    assert_eq!(first, second);
}
