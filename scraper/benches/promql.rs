//! PromQL engine over the in-memory querier: the dashboard query of a fleet (`sum by (mode)
//! (rate(node_cpu_seconds_total[5m]))`, 1,000 series, 1h at 15s) and an instant `rate` over
//! 10,000 series.

use criterion::{Criterion, criterion_group, criterion_main};
use heimdall_scraper::model::Labels;
use heimdall_scraper::promql::memstore::MemStore;
use heimdall_scraper::promql::{Engine, EngineOptions, Value};

const MODES: [&str; 8] = [
    "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
];
const SCRAPE_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;

/// `series` counters scraped every 15s over `span_ms` (plus 5m before it for the windows).
fn store(series: usize, span_ms: i64) -> MemStore {
    let mut m = MemStore::new();
    let samples = (span_ms + 300_000) / SCRAPE_MS + 1;
    for i in 0..series {
        let labels = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total".to_owned()),
            (
                "instance",
                format!("host-{:04}:9100", i / (MODES.len() * 4)),
            ),
            ("cpu", ((i / MODES.len()) % 4).to_string()),
            ("mode", MODES[i % MODES.len()].to_owned()),
        ]);
        for k in 0..samples {
            m.add(&labels, k * SCRAPE_MS, (k as f64) * 1.5 + i as f64);
        }
    }
    m
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineOptions::default());

    let fleet = store(1_000, HOUR_MS);
    let (start, end) = (300_000, 300_000 + HOUR_MS);
    let q = "sum by (mode) (rate(node_cpu_seconds_total[5m]))";
    match engine.range(&fleet, q, start, end, SCRAPE_MS) {
        Ok(Value::Matrix(m)) => assert_eq!(m.len(), MODES.len()),
        other => panic!("unexpected {other:?}"),
    }
    c.bench_function("range sum by (mode) (rate[5m]) 1k series 1h@15s", |b| {
        b.iter(|| engine.range(&fleet, q, start, end, SCRAPE_MS))
    });

    let big = store(10_000, 0);
    let q = "rate(node_cpu_seconds_total[5m])";
    match engine.instant(&big, q, 300_000) {
        Ok(Value::Vector(v)) => assert_eq!(v.len(), 10_000),
        other => panic!("unexpected {other:?}"),
    }
    c.bench_function("instant rate[5m] 10k series", |b| {
        b.iter(|| engine.instant(&big, q, 300_000))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
