//! Per-request cost of usage accounting: recording one finished request into a worker's table
//! (two map lookups, a histogram bucket, a few adds) with 10 or 1,000 routes × 10 consumers
//! already in the table, and one flush of 1,000 keys (once a second per worker, off the
//! request path).
//!
//! `cargo bench -p proxy --bench usage` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchyard_proxy::usage::{Finished, Recorder};

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn filled(routes: &[String], consumers: &[String]) -> Recorder {
    let mut recorder = Recorder::default();
    for route in routes {
        for consumer in consumers {
            recorder.record(&finished(route, consumer, 0));
        }
    }
    recorder
}

fn finished<'a>(route: &'a str, consumer: &'a str, i: u64) -> Finished<'a> {
    Finished {
        route,
        consumer,
        status: 200,
        bytes_in: 0,
        bytes_out: 512,
        latency_us: 300 + (i % 700),
    }
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage_record");
    let consumers = names("consumer", 10);
    for n in [10, 1_000] {
        let routes = names("route", n);
        let mut recorder = filled(&routes, &consumers);
        let mut i = 0u64;
        group.bench_function(format!("{n}_routes"), |b| {
            b.iter(|| {
                i += 1;
                let route = &routes[(i as usize * 7) % routes.len()];
                let consumer = &consumers[(i as usize) % consumers.len()];
                recorder.record(black_box(&finished(route, consumer, i)));
            })
        });
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    let routes = names("route", 100);
    let consumers = names("consumer", 10);
    c.bench_function("usage_drain_1000_keys", |b| {
        b.iter_batched(
            || filled(&routes, &consumers),
            |mut recorder| black_box(recorder.drain(60)),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, record, drain);
criterion_main!(benches);
