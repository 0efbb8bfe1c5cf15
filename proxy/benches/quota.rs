//! The quota decision on the hot path: one token taken from a consumer's lease (a shard lock,
//! a map lookup, a few compares), among 10 or 10,000 consumers holding leases. The target is
//! ≤ 100 ns.
//!
//! `cargo bench -p proxy --bench quota` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_proto::v1;
use switchyard_proxy::model::QuotaSpec;
use switchyard_proxy::quota::{QuotaBook, QuotaLink, Take};

const NOW_MS: u64 = 1_700_000_000_000;

fn book(consumers: &[String]) -> QuotaBook {
    let spec = QuotaSpec {
        name: "q".into(),
        limit: u64::MAX / 2,
        window: v1::QuotaWindow::Day,
        allow_when_unavailable: true,
    };
    let book = QuotaBook::new(spec, Arc::new(QuotaLink::default()));
    let window = book.window_start(NOW_MS);
    for consumer in consumers {
        assert_eq!(book.try_take(consumer, NOW_MS), Take::Empty);
        book.grant(&v1::QuotaGrant {
            quota: "q".into(),
            consumer: consumer.clone(),
            granted: u64::MAX / 4,
            window_start_unix_s: window,
            window_end_unix_ms: (window + 86_400) * 1000,
            ..Default::default()
        });
    }
    book
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("quota_take");
    for n in [10, 10_000] {
        let consumers: Vec<String> = (0..n).map(|i| format!("consumer-{i}")).collect();
        let book = book(&consumers);
        let mut i = 0usize;
        group.bench_function(format!("{n}_consumers"), |b| {
            b.iter(|| {
                i = i.wrapping_add(7);
                let consumer = &consumers[i % consumers.len()];
                black_box(book.try_take(consumer, NOW_MS))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
