//! The quota store's behaviour suite, run on SQLite and on PostgreSQL: grants that shrink as
//! the budget nears its end and never pass the limit (also with two replicas granting at
//! once), fresh windows, consumption counted once under resends, the per-consumer view,
//! unknown quotas and pruning.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchyard_control_plane::model::{self, Kind};
use switchyard_control_plane::store::{
    Expect, QuotaConsumption, QuotaGrant, QuotaRequest, Store, UsageBatch,
};

on_both_database_urls!(
    grants_shrink_near_the_end_and_never_pass_the_limit,
    replicas_granting_at_once_stay_within_the_limit_and_reach_it,
    a_new_window_starts_fresh,
    consumption_is_counted_once_under_resends,
    usage_lists_the_current_window_by_consumer,
    unknown_quotas_are_answered_with_limit_zero,
    ended_windows_are_pruned,
);

/// 2024-01-01T00:00:00Z.
const M0: u64 = 1_704_067_200;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

async fn connect(url: &str) -> Store {
    Store::connect(url).await.expect("store")
}

/// Creates or replaces quota `name` (validated like the API does).
async fn put_quota(store: &Store, name: &str, spec: serde_json::Value) {
    let valid = model::validate(Kind::Quota, Some(name), &spec).unwrap();
    store
        .put(
            Kind::Quota,
            name,
            valid.spec,
            valid.refs,
            Expect::Any,
            "test",
        )
        .await
        .unwrap();
}

fn ask(quota: &str, consumer: &str, want: u64) -> QuotaRequest {
    QuotaRequest {
        quota: quota.to_owned(),
        consumer: consumer.to_owned(),
        want,
    }
}

async fn grant_one(store: &Store, request: QuotaRequest, now: SystemTime) -> QuotaGrant {
    let mut grants = store.grant_quota(&[request], now).await.unwrap();
    assert_eq!(grants.len(), 1);
    grants.remove(0)
}

fn consumption(consumer: &str, used: u64, unleased: u64, window: u64) -> QuotaConsumption {
    QuotaConsumption {
        quota: "gold".to_owned(),
        consumer: consumer.to_owned(),
        used,
        window_start_unix_s: window,
        unleased,
    }
}

fn batch(sequence: u64, quota_used: Vec<QuotaConsumption>) -> UsageBatch {
    UsageBatch {
        sequence,
        quota_used,
        ..UsageBatch::default()
    }
}

/// `(consumer, used, remaining, granted)` of each item of quota `name`'s current window.
async fn usage_of(store: &Store, name: &str, now: SystemTime) -> Vec<(String, u64, u64, u64)> {
    store
        .quota_usage(name, now)
        .await
        .unwrap()
        .expect("the quota exists")
        .items
        .into_iter()
        .map(|i| (i.consumer, i.used, i.remaining, i.granted))
        .collect()
}

async fn grants_shrink_near_the_end_and_never_pass_the_limit(url: String) {
    let store = connect(&url).await;
    put_quota(&store, "gold", json!({"limit": 1000, "window": "minute"})).await;
    let now = at(M0 + 10);
    let mut sizes = Vec::new();
    let mut total = 0;
    loop {
        let grant = grant_one(&store, ask("gold", "alice", 100), now).await;
        assert_eq!(
            (grant.quota.as_str(), grant.consumer.as_str(), grant.limit),
            ("gold", "alice", 1000)
        );
        assert_eq!(grant.window_start_unix_s, M0);
        assert_eq!(grant.window_end_unix_ms, (M0 + 60) * 1000);
        if grant.exhausted {
            assert_eq!((grant.granted, grant.window_granted), (0, 1000));
            break;
        }
        total += grant.granted;
        assert_eq!(grant.window_granted, total);
        sizes.push(grant.granted);
        assert!(sizes.len() < 100, "no end: {sizes:?}");
    }
    assert_eq!(total, 1000, "the whole budget is handed out, no more");
    assert!(
        sizes.windows(2).all(|pair| pair[0] >= pair[1]),
        "grants only shrink: {sizes:?}"
    );
    assert_eq!(&sizes[..6], [100, 100, 100, 100, 100, 100], "{sizes:?}");
    assert_eq!(sizes[6], 100, "a quarter of 400 left");
    assert_eq!(sizes[7], 75, "a quarter of 300 left");
    assert_eq!(&sizes[sizes.len() - 4..], [1, 1, 1, 1], "{sizes:?}");
    // Exhausted stays exhausted for the rest of the window.
    let again = grant_one(&store, ask("gold", "alice", 1), at(M0 + 59)).await;
    assert!(again.exhausted && again.granted == 0);

    // Each consumer has a budget of its own; want 0 counts as 1, want over the limit as the
    // limit (and then the quarter applies).
    assert_eq!(
        grant_one(&store, ask("gold", "bob", 0), now).await.granted,
        1
    );
    let big = grant_one(&store, ask("gold", "carol", 1 << 40), now).await;
    assert_eq!((big.granted, big.window_granted), (250, 250));
    let anonymous = grant_one(&store, ask("gold", "", 10), now).await;
    assert_eq!((anonymous.consumer.as_str(), anonymous.granted), ("", 10));

    // A lowered limit applies to the next grant.
    put_quota(&store, "gold", json!({"limit": 200, "window": "minute"})).await;
    let lowered = grant_one(&store, ask("gold", "carol", 100), now).await;
    assert!(lowered.exhausted, "{lowered:?}");
    assert_eq!(lowered.limit, 200);
}

async fn replicas_granting_at_once_stay_within_the_limit_and_reach_it(url: String) {
    const LIMIT: u64 = 1000;
    let replicas = [connect(&url).await, connect(&url).await];
    put_quota(
        &replicas[0],
        "gold",
        json!({"limit": LIMIT, "window": "hour"}),
    )
    .await;
    let now = SystemTime::now();
    let mut askers = tokio::task::JoinSet::new();
    for asker in 0..50 {
        let replica = replicas[asker % 2].clone();
        askers.spawn(async move {
            // Half ask for both consumers in one message, in opposite orders (rows are locked
            // in key order: no deadlock); each asks until both are exhausted.
            let mut requests = vec![ask("gold", "alice", 40)];
            if asker % 4 < 2 {
                requests.push(ask("gold", "bob", 40));
            }
            if asker % 4 == 1 {
                requests.reverse();
            }
            let mut got = Vec::new();
            loop {
                let grants = replica.grant_quota(&requests, now).await.unwrap();
                assert_eq!(grants.len(), requests.len());
                for (request, grant) in requests.iter().zip(&grants) {
                    assert_eq!(grant.consumer, request.consumer, "answers in request order");
                }
                if grants.iter().all(|g| g.exhausted) {
                    return got;
                }
                got.extend(grants.into_iter().filter(|g| g.granted > 0));
            }
        });
    }
    let mut granted: BTreeMap<String, Vec<QuotaGrant>> = BTreeMap::new();
    while let Some(done) = askers.join_next().await {
        for grant in done.unwrap() {
            granted
                .entry(grant.consumer.clone())
                .or_default()
                .push(grant);
        }
    }
    assert_eq!(granted.len(), 2, "alice and bob");
    for (consumer, mut grants) in granted {
        let total: u64 = grants.iter().map(|g| g.granted).sum();
        assert_eq!(total, LIMIT, "{consumer}: within the limit, and all of it");
        // Serialised: each grant starts where the one before it (on either replica) ended.
        grants.sort_by_key(|g| g.window_granted);
        let mut before = 0;
        for grant in &grants {
            assert_eq!(grant.window_granted - grant.granted, before, "{consumer}");
            before = grant.window_granted;
        }
    }
    let usage = usage_of(&replicas[1], "gold", now).await;
    assert_eq!(
        usage
            .iter()
            .map(|(c, _, _, granted)| (c.as_str(), *granted))
            .collect::<Vec<_>>(),
        [("alice", LIMIT), ("bob", LIMIT)]
    );
}

async fn a_new_window_starts_fresh(url: String) {
    let store = connect(&url).await;
    put_quota(&store, "gold", json!({"limit": 4, "window": "minute"})).await;
    put_quota(&store, "daily", json!({"limit": 4, "window": "day"})).await;
    for quota in ["gold", "daily"] {
        let mut total = 0;
        while !grant_one(&store, ask(quota, "alice", 4), at(M0 + 30))
            .await
            .exhausted
        {
            total += 1;
            assert!(total <= 4);
        }
    }
    let next_minute = grant_one(&store, ask("gold", "alice", 4), at(M0 + 60)).await;
    assert_eq!(
        (
            next_minute.granted,
            next_minute.exhausted,
            next_minute.window_granted
        ),
        (1, false, 1)
    );
    assert_eq!(next_minute.window_start_unix_s, M0 + 60);
    assert_eq!(next_minute.window_end_unix_ms, (M0 + 120) * 1000);
    // The day window is still the same one a minute (and 23 hours) later.
    let same_day = grant_one(&store, ask("daily", "alice", 4), at(M0 + 86_399)).await;
    assert!(same_day.exhausted);
    assert_eq!(same_day.window_end_unix_ms, (M0 + 86_400) * 1000);
    let next_day = grant_one(&store, ask("daily", "alice", 4), at(M0 + 86_400)).await;
    assert_eq!(
        (next_day.granted, next_day.window_start_unix_s),
        (1, M0 + 86_400)
    );
    // A changed window counts in the windows of its new length. The one that starts at the
    // same second as an old one shares its row (here the hour and its first minute): never
    // more than the limit, at worst less.
    put_quota(&store, "gold", json!({"limit": 4, "window": "hour"})).await;
    let hourly = grant_one(&store, ask("gold", "alice", 4), at(M0 + 90)).await;
    assert_eq!(
        (hourly.window_start_unix_s, hourly.window_end_unix_ms),
        (M0, (M0 + 3600) * 1000)
    );
    assert!(hourly.exhausted, "{hourly:?}");
    let next_hour = grant_one(&store, ask("gold", "alice", 4), at(M0 + 3600)).await;
    assert_eq!((next_hour.granted, next_hour.window_granted), (1, 1));
}

async fn consumption_is_counted_once_under_resends(url: String) {
    let store = connect(&url).await;
    put_quota(&store, "gold", json!({"limit": 1000, "window": "minute"})).await;
    let now = at(M0 + 30);
    let one = || batch(1, vec![consumption("alice", 5, 0, M0)]);
    let two = || {
        batch(
            2,
            vec![consumption("alice", 7, 2, M0), consumption("", 1, 0, M0)],
        )
    };
    let first = store.record_usage("n1", "i1", vec![one()]).await.unwrap();
    assert_eq!(
        (first.acked, first.quota_entries, first.quota_used),
        (1, 1, 5)
    );
    // The ack was lost: batch 1 comes again with batch 2, then both again to another replica.
    let second = store
        .record_usage("n1", "i1", vec![one(), two()])
        .await
        .unwrap();
    assert_eq!(
        (
            second.acked,
            second.duplicates,
            second.quota_used,
            second.quota_unleased
        ),
        (2, 1, 8, 2)
    );
    let replica = connect(&url).await;
    let third = replica
        .record_usage("n1", "i1", vec![one(), two()])
        .await
        .unwrap();
    assert_eq!(
        (third.acked, third.duplicates, third.quota_entries),
        (2, 2, 0)
    );
    assert_eq!(
        usage_of(&store, "gold", now).await,
        [("".into(), 1, 999, 0), ("alice".into(), 12, 988, 0)]
    );

    // Another proxy's consumption adds up; consumption of an older window stays there.
    store
        .record_usage(
            "n2",
            "j1",
            vec![batch(
                1,
                vec![
                    consumption("alice", 3, 0, M0),
                    consumption("alice", 50, 0, M0 - 60),
                ],
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        usage_of(&replica, "gold", now).await[1],
        ("alice".into(), 15, 985, 0)
    );

    // Requests let through without a lease use the budget too: with 990 of 1000 let through
    // blind, a grant is a quarter of the 10 left.
    store
        .record_usage(
            "n2",
            "j1",
            vec![batch(2, vec![consumption("dave", 990, 990, M0)])],
        )
        .await
        .unwrap();
    let grant = grant_one(&store, ask("dave", "dave", 100), now).await;
    assert_eq!(grant.limit, 0, "no quota named dave");
    let grant = grant_one(&store, ask("gold", "dave", 100), now).await;
    assert_eq!((grant.granted, grant.window_granted), (3, 993));

    // Bad entries are skipped and counted with the bad counters; the good ones in the batch
    // still count.
    let bad = store
        .record_usage(
            "n2",
            "j1",
            vec![batch(
                3,
                vec![
                    consumption("erin", 1, 0, M0 + 1),
                    consumption("erin", 1, 2, M0),
                    consumption(&"e".repeat(300), 1, 0, M0),
                    consumption("erin", 4, 0, M0),
                ],
            )],
        )
        .await
        .unwrap();
    assert_eq!((bad.acked, bad.quota_entries, bad.invalid), (3, 1, 3));
    assert!(bad.first_invalid.is_some());
    let erin = usage_of(&store, "gold", now).await;
    assert_eq!(erin.last().unwrap(), &("erin".into(), 4, 996, 0));
}

async fn usage_lists_the_current_window_by_consumer(url: String) {
    let store = connect(&url).await;
    assert!(store.quota_usage("gold", at(M0)).await.unwrap().is_none());
    put_quota(
        &store,
        "gold",
        json!({"limit": 10, "window": "hour", "on_unavailable": "deny"}),
    )
    .await;
    let now = at(M0 + 1800);
    let empty = store.quota_usage("gold", now).await.unwrap().unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(
        (
            empty.quota.limit,
            empty.window.start_unix_s,
            empty.window.end_unix_s
        ),
        (10, M0 as i64, (M0 + 3600) as i64)
    );
    grant_one(&store, ask("gold", "zed", 4), now).await;
    store
        .record_usage(
            "n1",
            "i1",
            vec![batch(
                1,
                vec![
                    consumption("bob", 12, 0, M0),
                    consumption("", 2, 0, M0),
                    consumption("Alice", 3, 0, M0),
                    consumption("alice", 1, 0, M0),
                    // The previous window: not shown.
                    consumption("old", 1, 0, M0 - 3600),
                ],
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        usage_of(&store, "gold", now).await,
        [
            ("".into(), 2, 8, 0),
            ("Alice".into(), 3, 7, 0),
            ("alice".into(), 1, 9, 0),
            ("bob".into(), 12, 0, 0),
            ("zed".into(), 0, 10, 3),
        ],
        "by name (bytewise, on both databases); remaining never below 0"
    );
    let next_hour = store.quota_usage("gold", at(M0 + 3600)).await.unwrap();
    assert!(next_hour.unwrap().items.is_empty());
}

async fn unknown_quotas_are_answered_with_limit_zero(url: String) {
    let store = connect(&url).await;
    put_quota(&store, "gold", json!({"limit": 100, "window": "minute"})).await;
    let now = at(M0 + 5);
    let requests = [
        ask("silver", "alice", 5),
        ask("gold", "alice", 5),
        ask("Not A Name", "alice", 5),
        ask("gold", &"c".repeat(300), 5),
        ask("gold", "alice", 5),
    ];
    let grants = store.grant_quota(&requests, now).await.unwrap();
    let shown: Vec<_> = grants
        .iter()
        .map(|g| {
            (
                g.quota.as_str(),
                g.granted,
                g.exhausted,
                g.limit,
                g.window_granted,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("silver", 0, false, 0, 0),
            ("gold", 5, false, 100, 5),
            ("Not A Name", 0, false, 0, 0),
            ("gold", 0, false, 0, 0),
            ("gold", 5, false, 100, 10),
        ]
    );
    assert_eq!(grants[0].window_end_unix_ms, (M0 + 60) * 1000);
    assert!(store.grant_quota(&[], now).await.unwrap().is_empty());
    let too_many = vec![ask("gold", "alice", 1); 1025];
    assert!(store.grant_quota(&too_many, now).await.is_err());
}

async fn ended_windows_are_pruned(url: String) {
    let store = connect(&url).await;
    put_quota(&store, "daily", json!({"limit": 100, "window": "day"})).await;
    put_quota(&store, "gold", json!({"limit": 100, "window": "minute"})).await;
    let today = M0 + 2 * 86_400;
    grant_one(&store, ask("daily", "alice", 5), at(today + 10)).await;
    grant_one(&store, ask("gold", "alice", 5), at(today + 10)).await;
    grant_one(&store, ask("gold", "alice", 5), at(M0)).await;
    // Pruning "before the current minute" keeps every window that has not ended: today's day
    // window began before it.
    assert_eq!(store.prune_usage((today + 60) as i64).await.unwrap(), 1);
    assert_eq!(
        usage_of(&store, "daily", at(today + 10)).await,
        [("alice".into(), 0, 100, 5)]
    );
    assert_eq!(
        usage_of(&store, "gold", at(today + 10)).await,
        [("alice".into(), 0, 100, 5)]
    );
    assert!(usage_of(&store, "gold", at(M0)).await.is_empty());
    assert_eq!(
        store
            .prune_usage((today + 2 * 86_400) as i64)
            .await
            .unwrap(),
        2
    );
}
