//! Exposition parser throughput on a realistic node_exporter /metrics (its golden e2e output
//! from ../shared/peer, else Prometheus' alltypes fixture, else a generated one), in text
//! format and as OpenMetrics, with and without building each sample's labels (what the
//! scrape loop does for a series it has not cached yet).
//!
//! `cargo bench -p heimdall-scraper --bench textparse -- --warm-up-time 1 --measurement-time 3`
//! ns/sample = the reported time divided by the sample count printed first.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heimdall_scraper::model::LabelsBuilder;
use heimdall_scraper::textparse::{Entry, Format, Parser, Rules};

/// The same exposition as OpenMetrics (tests/it/textparse.rs checks it is valid).
#[path = "support/openmetrics.rs"]
mod openmetrics;
use openmetrics::to_openmetrics;

/// The input and where it came from.
fn exposition() -> (String, &'static str) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (rel, what) in [
        (
            "peer/node-exporter/fixtures/e2e-output.txt",
            "node_exporter e2e-output.txt",
        ),
        (
            "peer/openmetrics-parsers/prometheus-textparse-testdata/alltypes.237mfs.prom.txt",
            "Prometheus alltypes.237mfs.prom.txt",
        ),
    ] {
        for base in ["../../shared", "../../../shared"] {
            if let Ok(text) = std::fs::read_to_string(manifest.join(base).join(rel)) {
                return (text, what);
            }
        }
    }
    let mut text = String::new();
    for cpu in 0..64 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            text.push_str(&format!(
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}.{}\n",
                cpu * 1000 + 17,
                cpu % 100
            ));
        }
    }
    (text, "generated node_cpu_seconds_total (../shared absent)")
}

/// Parses everything; with `labels`, builds every sample's label set.
fn parse(input: &[u8], format: Format, rules: Rules, labels: bool) -> usize {
    let mut p = Parser::with_rules(input, format, rules);
    let mut n = 0;
    while let Ok(Some(entry)) = p.next() {
        if let Entry::Sample(s) = entry {
            n += 1;
            if labels {
                let mut b = LabelsBuilder::default();
                s.labels(&mut b);
                black_box(b.build());
            } else {
                black_box((s.series, s.value, s.timestamp));
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let (text, what) = exposition();
    let om = to_openmetrics(&text);
    let samples = parse(text.as_bytes(), Format::Text, Rules::Strict, false);
    assert_eq!(
        parse(om.as_bytes(), Format::OpenMetrics, Rules::Strict, false),
        samples,
        "the OpenMetrics rendering must parse completely"
    );
    println!(
        "input: {what}: {} bytes text, {} bytes OpenMetrics, {samples} samples",
        text.len(),
        om.len()
    );
    let mut g = c.benchmark_group("textparse");
    for (name, input, format, rules) in [
        ("text", &text, Format::Text, Rules::Strict),
        ("openmetrics", &om, Format::OpenMetrics, Rules::Strict),
        (
            "openmetrics_syntax_only",
            &om,
            Format::OpenMetrics,
            Rules::SyntaxOnly,
        ),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        for labels in [false, true] {
            let id = format!("{name}/{}", if labels { "next+labels" } else { "next" });
            g.bench_function(id, |b| {
                b.iter(|| parse(black_box(input.as_bytes()), format, rules, labels));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
