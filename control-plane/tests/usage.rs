//! Usage from proxy reports to `GET /api/v1/usage`: real control planes on 127.0.0.1 (SQLite
//! and PostgreSQL; two replicas on one PostgreSQL), tonic's generated client playing proxies
//! on the report stream, and hyper's client reading the admin API.

#[macro_use]
mod support;

use support::control_plane::{Options, start, start_with};
use support::report_stream::{ReportStream, WAIT};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchyard_control_plane::store::{self, Store};
use switchyard_proto::v1::{ReportRequest, UsageBatch, UsageCounter};

on_both_database_urls!(usage_is_acknowledged_counted_once_and_served);

/// The start of the current minute, Unix seconds.
fn this_minute() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % 60
}

fn rfc3339(minute: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(minute)).to_string()
}

/// `requests` requests in `minute`, split over latency buckets as `(bound_us, count)`.
fn counter(
    route: &str,
    consumer: &str,
    class: u32,
    minute: u64,
    buckets: &[(u64, u64)],
) -> UsageCounter {
    let requests = buckets.iter().map(|(_, n)| n).sum::<u64>();
    UsageCounter {
        route: route.to_owned(),
        consumer: consumer.to_owned(),
        status_class: class,
        requests,
        bytes_in: 10 * requests,
        bytes_out: 1000 * requests,
        latency_sum_us: buckets.iter().map(|(b, n)| b * n).sum(),
        latency_bounds_us: buckets.iter().map(|(b, _)| *b).collect(),
        latency_buckets: buckets.iter().map(|(_, n)| *n).collect(),
        minute_unix_s: minute,
    }
}

fn batch(sequence: u64, counters: Vec<UsageCounter>) -> UsageBatch {
    UsageBatch {
        sequence,
        counters,
        dropped_requests: 0,
        quota_used: Vec::new(),
    }
}

async fn usage_is_acknowledged_counted_once_and_served(url: String) {
    let h = start(&url).await;
    let minute = this_minute();
    let one = batch(
        1,
        vec![
            counter("web", "alice", 2, minute, &[(1_000, 6), (2_000, 3)]),
            counter("web", "", 4, minute, &[(500, 1)]),
        ],
    );
    let two = batch(2, vec![counter("web", "alice", 5, minute, &[(250_000, 1)])]);
    let three = UsageBatch {
        dropped_requests: 7,
        ..batch(3, vec![counter("api", "bob", 3, minute, &[(1_000, 2)])])
    };

    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    assert_eq!(proxy.report(vec![one.clone()]).await, 1);
    // The proxy missed the ack of batch 1 and sends it again with batch 2.
    assert_eq!(proxy.report(vec![one.clone(), two.clone()]).await, 2);
    // It reconnects before seeing the ack of batch 2 and resends it with batch 3.
    drop(proxy);
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    assert_eq!(proxy.report(vec![two, three]).await, 3);

    let since = rfc3339(minute);
    let by_route = h.usage(&format!("by=route&since={since}")).await;
    assert_eq!(
        by_route,
        json!({
            "by": "route",
            "since": since,
            "items": [
                {
                    "key": "api", "requests": 2,
                    "status": {"2xx": 0, "3xx": 2, "4xx": 0, "5xx": 0},
                    "latency_ms": {"p50": 1.0, "p99": 1.0},
                    "bytes_in": 20, "bytes_out": 2000,
                },
                {
                    "key": "web", "requests": 11,
                    "status": {"2xx": 9, "3xx": 0, "4xx": 1, "5xx": 1},
                    "latency_ms": {"p50": 1.0, "p99": 250.0},
                    "bytes_in": 110, "bytes_out": 11000,
                },
            ],
        })
    );
    let by_consumer = h.usage("by=consumer&since=1h").await;
    assert_eq!(by_consumer["by"], "consumer");
    let keys: Vec<(&str, u64)> = by_consumer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [("", 1), ("alice", 10), ("bob", 2)]);
    assert_eq!(by_consumer["items"][1]["latency_ms"]["p50"], 1.0);

    // Defaults: by route, the last hour; `since` echoes the minute boundary used.
    let defaults = h.usage("").await;
    assert_eq!(defaults["by"], "route");
    assert_eq!(defaults["items"], by_route["items"]);
    let echoed = humantime::parse_rfc3339(defaults["since"].as_str().unwrap()).unwrap();
    let echoed = echoed.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(echoed % 60, 0);
    assert!(
        (minute - 3660..=minute - 3540).contains(&echoed),
        "{defaults}"
    );
    // A later `since` leaves this minute out.
    let later = h.usage(&format!("since={}", rfc3339(minute + 60))).await;
    assert_eq!(later["items"], json!([]));

    // Bad input names every bad field.
    let bad = h.get("/api/v1/usage?by=cluster&since=soon").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.content_type, "application/problem+json");
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["by", "since"]);
    let bad = h.get("/api/v1/usage?since=2024-13-01T00:00:00Z").await;
    assert_eq!(
        (bad.status, bad.body["errors"][0]["field"].as_str()),
        (400, Some("since"))
    );

    assert_eq!(h.metric("switchyard_usage_batches_total").await, 3);
    assert_eq!(
        h.metric("switchyard_usage_batches_duplicate_total").await,
        2
    );
    assert_eq!(h.metric("switchyard_usage_counters_total").await, 4);
    assert_eq!(h.metric("switchyard_usage_dropped_requests_total").await, 7);
    assert_eq!(h.metric("switchyard_usage_counters_invalid_total").await, 0);
}

#[tokio::test]
async fn two_replicas_on_one_postgres_answer_the_same() {
    let url = support::postgres_database_url().await;
    let replicas = [start(&url).await, start(&url).await];
    let minute = this_minute();
    let mut a = ReportStream::open_as(&replicas[0].xds_url, "a", "a-1").await;
    let mut b = ReportStream::open_as(&replicas[1].xds_url, "b", "b-1").await;
    let one = batch(1, vec![counter("web", "", 2, minute, &[(1_000, 5)])]);
    assert_eq!(a.report(vec![one.clone()]).await, 1);
    assert_eq!(
        b.report(vec![batch(
            1,
            vec![counter("web", "", 2, minute, &[(3_000, 5)])]
        )])
        .await,
        1
    );
    // Proxy `a` fails over to the other replica and resends what it had not seen acknowledged.
    drop(a);
    let mut a = ReportStream::open_as(&replicas[1].xds_url, "a", "a-1").await;
    let two = batch(2, vec![counter("web", "", 5, minute, &[(9_000, 1)])]);
    assert_eq!(a.report(vec![one, two]).await, 2);

    let first = replicas[0].usage("by=route&since=10m").await;
    let second = replicas[1].usage("by=route&since=10m").await;
    assert_eq!(first["items"], second["items"]);
    assert_eq!(first["items"][0]["requests"], 11, "{first}");
    assert_eq!(first["items"][0]["status"]["5xx"], 1);
    assert_eq!(first["items"][0]["latency_ms"]["p50"], 3.0);
}

/// Runs one SQL statement on the PostgreSQL database `url` with `psql`.
fn psql(url: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .args([url, "-q", "-c", sql])
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql {sql}");
}

/// A batch the database cannot take ends the stream instead of being skipped: a later batch's
/// cumulative acknowledgement must never cover it. After reconnecting, the proxy's resend of
/// both is stored, once.
#[tokio::test]
async fn a_batch_that_cannot_be_stored_ends_the_stream_and_is_resent() {
    let url = support::postgres_database_url().await;
    let h = start(&url).await;
    let minute = this_minute();
    let one = batch(1, vec![counter("web", "", 2, minute, &[(1_000, 5)])]);
    let two = batch(2, vec![counter("web", "", 2, minute, &[(1_000, 3)])]);
    let three = batch(3, vec![counter("web", "", 2, minute, &[(1_000, 2)])]);
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    assert_eq!(proxy.report(vec![one]).await, 1);

    psql(
        &url,
        "ALTER TABLE usage_counters RENAME TO usage_counters_away",
    );
    proxy
        .send(ReportRequest {
            usage_batches: vec![two.clone()],
            ..Default::default()
        })
        .await;
    let status = proxy.refusal().await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    psql(
        &url,
        "ALTER TABLE usage_counters_away RENAME TO usage_counters",
    );

    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    assert_eq!(proxy.report(vec![two, three]).await, 3);
    let usage = h.usage("by=route&since=10m").await;
    assert_eq!(usage["items"][0]["requests"], 10, "{usage}");
}

#[tokio::test]
async fn usage_without_an_instance_id_is_refused() {
    let h = start(&support::sqlite_url()).await;
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "").await;
    proxy
        .send(ReportRequest {
            usage_batches: vec![batch(1, vec![])],
            ..Default::default()
        })
        .await;
    let status = proxy.refusal().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("instance_id"), "{status:?}");

    // Nor may it change on an open stream.
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    proxy
        .send(ReportRequest {
            instance_id: "run-2".into(),
            ..Default::default()
        })
        .await;
    let status = proxy.refusal().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn invalid_counters_are_skipped_and_the_batch_acknowledged() {
    let h = start(&support::sqlite_url()).await;
    let minute = this_minute();
    let mut proxy = ReportStream::open_as(&h.xds_url, "p1", "run-1").await;
    let mut unordered = counter("web", "", 2, minute, &[(2_000, 1), (1_000, 1)]);
    unordered.requests = 2;
    let acked = proxy
        .report(vec![batch(
            1,
            vec![
                counter("web", "", 7, minute, &[(1_000, 1)]),
                counter("web", "", 2, minute + 30, &[(1_000, 1)]),
                unordered,
                counter("web", "", 2, minute, &[(1_000, 4)]),
            ],
        )])
        .await;
    assert_eq!(acked, 1);
    let usage = h.usage("since=5m").await;
    assert_eq!(usage["items"][0]["requests"], 4, "{usage}");
    assert_eq!(h.metric("switchyard_usage_counters_invalid_total").await, 3);
    assert_eq!(h.metric("switchyard_usage_counters_total").await, 1);
}

#[tokio::test]
async fn usage_older_than_the_retention_is_pruned_at_start() {
    let url = support::sqlite_url();
    let old_minute = this_minute() - 2 * 86_400;
    let store = Store::connect(&url).await.unwrap();
    let old_and_new = [(old_minute, 3), (this_minute(), 4)]
        .into_iter()
        .map(|(minute, requests)| store::UsageCounter {
            route: "web".into(),
            status_class: 2,
            requests,
            minute_unix_s: minute,
            ..Default::default()
        })
        .collect();
    store
        .record_usage(
            "p1",
            "run-1",
            vec![store::UsageBatch {
                sequence: 1,
                counters: old_and_new,
                dropped_requests: 0,
                quota_used: Vec::new(),
            }],
        )
        .await
        .unwrap();
    drop(store);

    let h = start_with(
        &url,
        Options {
            usage_retention: Duration::from_secs(86_400),
            ..Options::default()
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let usage = h.usage("since=7d").await;
        if usage["items"][0]["requests"] == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old minute not pruned: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn usage_needs_the_admin_token_and_is_in_the_openapi_document() {
    let mut h = start_with(
        &support::sqlite_url(),
        Options {
            admin_token: Some("s3cret"),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(h.usage("by=consumer").await["items"], json!([]));
    let doc = h.get("/api/v1/openapi.json").await.body;
    h.token = None;
    let refused = h.get("/api/v1/usage").await;
    assert_eq!(refused.status, 401, "{}", refused.text);

    let get = &doc["paths"]["/api/v1/usage"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["by", "since"], "{get}");
    let schemas = &doc["components"]["schemas"];
    for (schema, fields) in [
        ("Usage", &["by", "since", "items"][..]),
        (
            "UsageItem",
            &[
                "key",
                "requests",
                "status",
                "latency_ms",
                "bytes_in",
                "bytes_out",
            ],
        ),
        ("StatusCounts", &["2xx", "3xx", "4xx", "5xx"]),
        ("LatencyPercentiles", &["p50", "p99"]),
    ] {
        for field in fields {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field} in {}",
                schemas[schema]
            );
        }
    }
}
