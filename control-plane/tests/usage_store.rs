//! The usage store's behaviour suite, run on SQLite and on PostgreSQL: exactly-once batches
//! under resends, histograms merged across proxies, invalid counters, pruning, replicas
//! writing the same minute at once, writes grouping many proxies' messages, and the
//! group-commit writer the report streams use.

#[macro_use]
mod support;

use std::sync::Arc;

use switchyard_control_plane::metrics::Metrics;
use switchyard_control_plane::reports::UsageIngest;
use switchyard_control_plane::store::usage::InvalidCounter;
use switchyard_control_plane::store::{
    InstanceUsage, Store, StoreError, UsageBatch, UsageBy, UsageCounter, UsageItem,
};

on_both_database_urls!(
    resent_batches_are_counted_once,
    histograms_of_two_proxies_merge,
    invalid_counters_are_skipped_and_counted,
    old_minutes_are_pruned,
    replicas_writing_at_once_add_up_and_count_each_batch_once,
    one_write_of_many_messages_answers_each_as_if_alone,
    replicas_writing_groups_in_opposite_orders_do_not_deadlock,
    a_message_the_store_refuses_fails_alone_in_its_group,
);

/// 2024-01-01T00:00:00Z.
const M0: u64 = 1_704_067_200;

async fn connect(url: &str) -> Store {
    Store::connect(url).await.expect("store")
}

/// `requests` requests of one key, all in the latency bucket `≤ bound_us`.
fn counter(route: &str, consumer: &str, class: u32, requests: u64, bound_us: u64) -> UsageCounter {
    UsageCounter {
        route: route.to_owned(),
        consumer: consumer.to_owned(),
        status_class: class,
        requests,
        bytes_in: requests * 10,
        bytes_out: requests * 100,
        latency_sum_us: requests * bound_us,
        latency_buckets: vec![requests],
        latency_bounds_us: vec![bound_us],
        minute_unix_s: M0,
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

async fn by_route(store: &Store) -> Vec<UsageItem> {
    store.usage(UsageBy::Route, 0).await.unwrap()
}

fn requests(items: &[UsageItem]) -> Vec<(&str, u64)> {
    items.iter().map(|i| (i.key.as_str(), i.requests)).collect()
}

async fn resent_batches_are_counted_once(url: String) {
    let store = connect(&url).await;
    let one = || batch(1, vec![counter("web", "alice", 2, 3, 1_000)]);
    let two = || batch(2, vec![counter("web", "alice", 2, 4, 1_000)]);

    let first = store.record_usage("n1", "i1", vec![one()]).await.unwrap();
    assert_eq!((first.acked, first.batches, first.counters), (1, 1, 1));
    // The ack of batch 1 was lost: the proxy resends it with the next one.
    let second = store
        .record_usage("n1", "i1", vec![one(), two()])
        .await
        .unwrap();
    assert_eq!((second.acked, second.batches, second.duplicates), (2, 1, 1));
    // Again, after a reconnect to another handle on the same database.
    let replica = connect(&url).await;
    let third = replica
        .record_usage("n1", "i1", vec![one(), two()])
        .await
        .unwrap();
    assert_eq!(
        (third.acked, third.batches, third.duplicates, third.counters),
        (2, 0, 2, 0)
    );
    assert_eq!(requests(&by_route(&store).await), [("web", 7)]);
    // A message without batches changes nothing and repeats the ack.
    let none = store.record_usage("n1", "i1", vec![]).await.unwrap();
    assert_eq!((none.acked, none.batches), (2, 0));

    // A restarted proxy is a new instance: its sequence starts again, from 0 if it likes.
    let restarted = store
        .record_usage(
            "n1",
            "i2",
            vec![batch(0, vec![counter("web", "", 2, 5, 1_000)])],
        )
        .await
        .unwrap();
    assert_eq!((restarted.acked, restarted.batches), (0, 1));
    let resent = store
        .record_usage(
            "n1",
            "i2",
            vec![batch(0, vec![counter("web", "", 2, 5, 1_000)])],
        )
        .await
        .unwrap();
    assert_eq!((resent.acked, resent.duplicates), (0, 1));
    let web = &by_route(&store).await[0];
    assert_eq!((web.requests, web.status[1]), (12, 12));
    assert_eq!((web.bytes_in, web.bytes_out), (120, 1_200));
    assert_eq!(web.latency_sum_us, 12 * 1_000);
    assert_eq!(web.latency.count(), 12);

    // Gaps are allowed (merged batches keep the higher number); older numbers are skipped.
    let gap = store
        .record_usage(
            "n1",
            "i1",
            vec![batch(7, vec![counter("web", "alice", 2, 1, 1_000)])],
        )
        .await
        .unwrap();
    assert_eq!(gap.acked, 7);
    let late = store
        .record_usage(
            "n1",
            "i1",
            vec![batch(5, vec![counter("web", "alice", 2, 1, 1_000)])],
        )
        .await
        .unwrap();
    assert_eq!((late.acked, late.duplicates), (7, 1));
    assert_eq!(requests(&by_route(&store).await), [("web", 13)]);
    // A batch repeated within one message counts once too.
    let twice = || batch(8, vec![counter("web", "alice", 2, 1, 1_000)]);
    let repeated = store
        .record_usage("n1", "i1", vec![twice(), twice()])
        .await
        .unwrap();
    assert_eq!(
        (repeated.acked, repeated.batches, repeated.duplicates),
        (8, 1, 1)
    );
    assert_eq!(requests(&by_route(&store).await), [("web", 14)]);

    // Dropped requests are reported once per batch stored.
    let dropped = store
        .record_usage(
            "n1",
            "i1",
            vec![UsageBatch {
                dropped_requests: 9,
                ..batch(9, vec![])
            }],
        )
        .await
        .unwrap();
    assert_eq!((dropped.acked, dropped.dropped_requests), (9, 9));
}

async fn histograms_of_two_proxies_merge(url: String) {
    let store = connect(&url).await;
    // Proxy A: 90 fast requests of alice on `web` (50 ≤ 1 ms, 40 ≤ 2 ms) in the first minute.
    let mut fast = counter("web", "alice", 2, 90, 1_000);
    fast.latency_bounds_us = vec![1_000, 2_000];
    fast.latency_buckets = vec![50, 40];
    // Proxy B: 10 unauthenticated 5xx on `web` (9 ≤ 2 ms, 1 ≤ 100 ms) in the next minute, and
    // one of alice's requests on `api`.
    let mut slow = counter("web", "", 5, 10, 2_000);
    slow.latency_bounds_us = vec![2_000, 100_000];
    slow.latency_buckets = vec![9, 1];
    slow.minute_unix_s = M0 + 60;
    let mut api = counter("api", "alice", 2, 1, 500);
    api.minute_unix_s = M0 + 60;
    store
        .record_usage("a", "proxy-a", vec![batch(1, vec![fast])])
        .await
        .unwrap();
    store
        .record_usage("b", "proxy-b", vec![batch(1, vec![slow, api])])
        .await
        .unwrap();

    let items = store.usage(UsageBy::Route, M0 as i64).await.unwrap();
    assert_eq!(
        requests(&items),
        [("api", 1), ("web", 100)],
        "sorted by key"
    );
    let web = &items[1];
    assert_eq!(web.status, [0, 90, 0, 0, 10]);
    assert_eq!(
        web.latency.buckets().collect::<Vec<_>>(),
        [(1_000, 50), (2_000, 49), (100_000, 1)],
        "equal bounds of both proxies add up"
    );
    assert_eq!(web.latency.quantile_us(500), Some(1_000));
    assert_eq!(web.latency.quantile_us(990), Some(2_000));
    assert_eq!(web.latency.quantile_us(1000), Some(100_000));

    let consumers = store.usage(UsageBy::Consumer, M0 as i64).await.unwrap();
    assert_eq!(requests(&consumers), [("", 10), ("alice", 91)]);
    assert_eq!(consumers[1].status, [0, 91, 0, 0, 0]);
    assert_eq!(consumers[1].latency.quantile_us(990), Some(2_000));

    // Only the minutes that start at or after `since` count.
    let later = store.usage(UsageBy::Route, (M0 + 60) as i64).await.unwrap();
    assert_eq!(requests(&later), [("api", 1), ("web", 10)]);
    assert_eq!(later[1].latency.quantile_us(500), Some(2_000));
    assert!(
        store
            .usage(UsageBy::Route, (M0 + 120) as i64)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn invalid_counters_are_skipped_and_counted(url: String) {
    let store = connect(&url).await;
    let mut odd_minute = counter("web", "", 2, 1, 1_000);
    odd_minute.minute_unix_s = M0 + 1;
    let mut mismatched = counter("web", "", 2, 1, 1_000);
    mismatched.latency_buckets = vec![1, 2];
    let recorded = store
        .record_usage(
            "n1",
            "i1",
            vec![batch(
                1,
                vec![
                    counter("web", "", 0, 1, 1_000),
                    odd_minute,
                    mismatched,
                    counter(&"x".repeat(300), "", 2, 1, 1_000),
                    counter("web", "", 2, 2, 1_000),
                ],
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        (recorded.acked, recorded.counters, recorded.invalid),
        (1, 1, 4)
    );
    assert_eq!(recorded.first_invalid, Some(InvalidCounter::StatusClass));
    assert_eq!(requests(&by_route(&store).await), [("web", 2)]);

    // A sequence past the columns' range cannot be stored: its counters are skipped and the
    // acknowledgement stays where it was.
    let huge = store
        .record_usage(
            "n1",
            "i1",
            vec![batch(u64::MAX, vec![counter("web", "", 2, 1, 1_000)])],
        )
        .await
        .unwrap();
    assert_eq!((huge.acked, huge.invalid), (1, 1));
    assert_eq!(huge.first_invalid, Some(InvalidCounter::Sequence));
    assert!(store.record_usage("n1", "", vec![]).await.is_err());
    assert!(
        store
            .record_usage("n1", &"i".repeat(129), vec![])
            .await
            .is_err()
    );
    assert_eq!(requests(&by_route(&store).await), [("web", 2)]);
}

async fn old_minutes_are_pruned(url: String) {
    let store = connect(&url).await;
    let counters = (0..3)
        .map(|minute| {
            let mut c = counter("web", "", 2, 1 + minute, 1_000 * (1 + minute));
            c.minute_unix_s = M0 + 60 * minute;
            c
        })
        .collect();
    store
        .record_usage("n1", "i1", vec![batch(1, counters)])
        .await
        .unwrap();
    assert_eq!(requests(&by_route(&store).await), [("web", 6)]);

    let deleted = store.prune_usage((M0 + 60) as i64).await.unwrap();
    assert_eq!(
        deleted, 2,
        "the first minute's counter row and its latency row"
    );
    let web = &by_route(&store).await[0];
    assert_eq!(web.requests, 5);
    assert_eq!(
        web.latency.buckets().collect::<Vec<_>>(),
        [(2_000, 2), (3_000, 3)]
    );
    assert_eq!(store.prune_usage((M0 + 60) as i64).await.unwrap(), 0);

    // Pruning past now also forgets the instances that reported since.
    let far_future = i64::MAX / 2000;
    assert_eq!(store.prune_usage(far_future).await.unwrap(), 5);
    assert!(by_route(&store).await.is_empty());
}

async fn replicas_writing_at_once_add_up_and_count_each_batch_once(url: String) {
    let replicas = [connect(&url).await, connect(&url).await];
    const INSTANCES: u64 = 6;
    const BATCHES: u64 = 5;
    let mut writers = tokio::task::JoinSet::new();
    for instance in 0..INSTANCES {
        for replica in &replicas {
            // Every batch of every instance goes to both replicas at once, on the same keys
            // (in different orders), as a proxy failing over while its ack is in flight.
            let replica = replica.clone();
            writers.spawn(async move {
                for sequence in 1..=BATCHES {
                    let mut counters = vec![
                        counter("web", "alice", 2, 1, 1_000),
                        counter("api", "", 5, 2, 2_000),
                    ];
                    if sequence % 2 == 0 {
                        counters.reverse();
                    }
                    let id = format!("i{instance}");
                    let recorded = replica
                        .record_usage("n", &id, vec![batch(sequence, counters)])
                        .await
                        .unwrap();
                    assert!(recorded.acked >= sequence, "{recorded:?}");
                }
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let each = INSTANCES * BATCHES;
    for replica in &replicas {
        let items = by_route(replica).await;
        assert_eq!(requests(&items), [("api", 2 * each), ("web", each)]);
        assert_eq!(items[0].latency.count(), 2 * each);
        assert_eq!(items[1].bytes_out, 100 * each);
    }
}

fn report(instance: &str, batches: Vec<UsageBatch>) -> InstanceUsage {
    InstanceUsage {
        node_id: format!("node-of-{instance}"),
        instance_id: instance.to_owned(),
        batches,
    }
}

async fn one_write_of_many_messages_answers_each_as_if_alone(url: String) {
    let store = connect(&url).await;
    let web = |n| counter("web", "alice", 2, n, 1_000);
    // i3 stored batch 1 before; its proxy resends it with batch 2.
    store
        .record_usage("n3", "i3", vec![batch(1, vec![web(100)])])
        .await
        .unwrap();
    let bad = UsageCounter {
        status_class: 9,
        ..web(1000)
    };
    let outcomes = store
        .record_usage_group(&[
            report(
                "i1",
                vec![batch(1, vec![web(1), counter("api", "", 5, 2, 4_000)])],
            ),
            report("i2", vec![batch(4, vec![web(3), bad])]),
            // A second message of i1 in the same write: after the first, in order.
            report("i1", vec![batch(1, vec![web(50)]), batch(2, vec![web(4)])]),
            report("i3", vec![batch(1, vec![web(100)]), batch(2, vec![web(5)])]),
            report("i4", vec![]),
        ])
        .await
        .unwrap();
    let answers: Vec<_> = outcomes
        .iter()
        .map(|o| (o.acked, o.batches, o.duplicates, o.counters, o.invalid))
        .collect();
    assert_eq!(
        answers,
        [
            (1, 1, 0, 2, 0),
            (4, 1, 0, 1, 1),
            (2, 1, 1, 1, 0),
            (2, 1, 1, 1, 0),
            (0, 0, 0, 0, 0),
        ]
    );
    assert_eq!(outcomes[1].first_invalid, Some(InvalidCounter::StatusClass));
    assert_eq!(
        outcomes[0].first_invalid, None,
        "reasons stay with their message"
    );
    let items = by_route(&store).await;
    assert_eq!(requests(&items), [("api", 2), ("web", 100 + 1 + 3 + 4 + 5)]);
    assert_eq!(items[0].status[4], 2);
    assert_eq!(items[1].latency.count(), 113);
    // Every acknowledgement holds: resending any of it stores nothing.
    let again = store
        .record_usage_group(&[
            report("i2", vec![batch(4, vec![web(3)])]),
            report("i1", vec![batch(2, vec![web(4)])]),
        ])
        .await
        .unwrap();
    assert!(again.iter().all(|o| o.batches == 0 && o.duplicates == 1));
    assert_eq!(again[1].acked, 2);
    // A name PostgreSQL text cannot hold is skipped as invalid, not a failed write.
    let nul = store
        .record_usage(
            "n5",
            "i5",
            vec![batch(1, vec![counter("w\0b", "", 2, 1, 1)])],
        )
        .await
        .unwrap();
    assert_eq!(
        (nul.acked, nul.invalid, nul.first_invalid),
        (1, 1, Some(InvalidCounter::NameNul))
    );
}

async fn replicas_writing_groups_in_opposite_orders_do_not_deadlock(url: String) {
    let replicas = [connect(&url).await, connect(&url).await];
    const INSTANCES: u64 = 8;
    const BATCHES: u64 = 6;
    let mut writers = tokio::task::JoinSet::new();
    for (side, replica) in replicas.iter().enumerate() {
        let replica = replica.clone();
        writers.spawn(async move {
            for sequence in 1..=BATCHES {
                // Both replicas get every instance's batch, in opposite orders, with the
                // counters in opposite orders too.
                let mut group: Vec<InstanceUsage> = (0..INSTANCES)
                    .map(|i| {
                        let mut counters = vec![
                            counter("web", "alice", 2, 1, 1_000),
                            counter("api", "", 5, 2, 2_000),
                        ];
                        if side == 1 {
                            counters.reverse();
                        }
                        report(&format!("i{i}"), vec![batch(sequence, counters)])
                    })
                    .collect();
                if side == 1 {
                    group.reverse();
                }
                let outcomes = replica.record_usage_group(&group).await.unwrap();
                assert!(outcomes.iter().all(|o| o.acked >= sequence), "{outcomes:?}");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let each = INSTANCES * BATCHES;
    let items = by_route(&replicas[0]).await;
    assert_eq!(requests(&items), [("api", 2 * each), ("web", each)]);
}

async fn a_message_the_store_refuses_fails_alone_in_its_group(url: String) {
    let store = connect(&url).await;
    let metrics = Arc::new(Metrics::default());
    let ingest = UsageIngest::spawn(store.clone(), metrics.clone());
    let web = |n| vec![batch(1, vec![counter("web", "", 2, n, 1_000)])];
    // Three streams' messages wait together (the writer runs once the test yields), so they
    // form one group; the middle one's instance id is one the store refuses.
    let (a, refused, c) = tokio::join!(
        ingest.record(report("i1", web(1))),
        ingest.record(report(&"x".repeat(200), web(10))),
        ingest.record(report("i3", web(100))),
    );
    assert_eq!(a.unwrap().acked, 1);
    assert_eq!(c.unwrap().acked, 1);
    let refused = refused.unwrap_err();
    assert!(
        matches!(&*refused, StoreError::InvalidInput(m) if m.contains("instance_id")),
        "{refused}"
    );
    assert_eq!(requests(&by_route(&store).await), [("web", 101)]);
    // One group, then each of its three messages alone.
    let metrics = metrics.render(&Default::default());
    assert!(
        metrics.contains("switchyard_usage_writes_total 4"),
        "{metrics}"
    );
}
