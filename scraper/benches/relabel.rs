//! Relabeling cost: a typical target relabel chain (hashmod shard, keep, replace with
//! groups, labelmap, labeldrop) and a metric_relabel drop check, per label set.

use criterion::{Criterion, criterion_group, criterion_main};
use heimdall_scraper::model::Labels;
use heimdall_scraper::relabel::{RelabelConfig, relabel};

fn steps(yaml: &str) -> Vec<RelabelConfig> {
    let steps: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).expect("bench YAML parses");
    for s in &steps {
        s.validate().expect("bench steps are valid");
    }
    steps
}

fn bench(c: &mut Criterion) {
    let target = Labels::from_pairs([
        ("__address__", "10.1.2.3:9100"),
        ("__meta_dns_name", "_exporter._tcp.heimdall.internal."),
        (
            "__meta_dns_srv_record_target",
            "host-17.eu.heimdall.internal.",
        ),
        ("__meta_dns_srv_record_port", "9100"),
        ("__metrics_path__", "/metrics"),
        ("__scheme__", "http"),
        ("__scrape_interval__", "5s"),
        ("__scrape_timeout__", "5s"),
        ("job", "exporter"),
    ]);
    let target_steps = steps(
        r#"
- {source_labels: [__address__], modulus: 4, target_label: __tmp_shard, action: hashmod}
- {source_labels: [__tmp_shard], regex: "0|1|2|3", action: keep}
- {source_labels: [__meta_dns_srv_record_target], regex: '([^.]+)\.([^.]+)\..*', target_label: instance, replacement: '${1}'}
- {source_labels: [__meta_dns_srv_record_target], regex: '([^.]+)\.([^.]+)\..*', target_label: region, replacement: '$2'}
- {regex: '__meta_dns_(.+)', replacement: 'dns_$1', action: labelmap}
- {regex: '__tmp_.*', action: labeldrop}
"#,
    );
    let series = Labels::from_pairs([
        ("__name__", "node_cpu_seconds_total"),
        ("cpu", "3"),
        ("mode", "idle"),
        ("instance", "host-17"),
        ("job", "exporter"),
    ]);
    let metric_steps = steps(
        r#"
- {source_labels: [__name__], regex: 'go_.*|process_.*', action: drop}
- {source_labels: [__name__, mode], regex: 'node_cpu_seconds_total;(steal|guest)', action: drop}
"#,
    );
    assert!(relabel(&target, &target_steps).is_some());
    assert!(relabel(&series, &metric_steps).is_some());

    c.bench_function("relabel/target_chain_6_steps", |b| {
        b.iter(|| relabel(std::hint::black_box(&target), &target_steps))
    });
    c.bench_function("relabel/metric_drop_2_steps", |b| {
        b.iter(|| relabel(std::hint::black_box(&series), &metric_steps))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
