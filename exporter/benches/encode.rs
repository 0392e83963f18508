//! Exposition writer and full-scrape benchmarks.
//!
//! `cargo bench -p heimdall-exporter`: `encode/*` writes a node_exporter-sized payload (64 CPUs
//! × 8 modes, 600 labelled gauges, 50 disks × 17 counters: ≈2,000 samples) into a reused buffer;
//! `scrape/host` runs every collector on this machine's real /proc and /sys.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heimdall_exporter::collector::{COLLECTORS, CollectorOptions, Paths};
use heimdall_exporter::exposition::{Format, Sink, encode};
use heimdall_exporter::scrape::Scraper;

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];

fn fill(sink: &mut Sink) {
    let mut cpu = itoa::Buffer::new();
    for c in 0..64u32 {
        let c = cpu.format(c).to_owned();
        for (i, m) in MODES.iter().enumerate() {
            sink.counter(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", &c), ("mode", m)],
                1234.56 + i as f64,
            );
        }
    }
    for i in 0..600u32 {
        let dev = format!("dev{i}");
        sink.gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &[
                ("device", &dev),
                ("fstype", "ext4"),
                ("mountpoint", "/srv/data"),
            ],
            1.6042172416e10 + i as f64,
        );
    }
    for d in 0..50u32 {
        let dev = format!("sd{d}");
        for f in 0..17u32 {
            let name = [
                "node_disk_reads_completed_total",
                "node_disk_read_bytes_total",
                "node_disk_io_time_seconds_total",
            ][f as usize % 3];
            sink.counter(
                name,
                "Disk counter.",
                &[("device", &dev)],
                98765.0 + f as f64,
            );
        }
    }
}

fn bench_encode(c: &mut Criterion) {
    let mut sink = Sink::new();
    fill(&mut sink);
    let mut out = Vec::with_capacity(256 * 1024);
    encode(&[&sink], Format::Text, &mut out);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(sink.len() as u64));
    g.bench_function("fill_sink", |b| {
        b.iter(|| {
            let mut s = Sink::new();
            fill(&mut s);
            black_box(s.len())
        })
    });
    g.bench_function("text", |b| {
        b.iter(|| {
            out.clear();
            encode(&[black_box(&sink)], Format::Text, &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("openmetrics", |b| {
        b.iter(|| {
            out.clear();
            encode(&[black_box(&sink)], Format::OpenMetrics, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_scrape(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let regs: Vec<_> = COLLECTORS.iter().filter(|r| r.enabled_by_default).collect();
    let scraper = Scraper::new(
        &regs,
        &CollectorOptions::default(),
        Paths::default(),
        Duration::from_secs(5),
    )
    .expect("scraper");
    let all: Vec<usize> = (0..regs.len()).collect();
    let mut out = Vec::new();
    c.bench_function("scrape/host", |b| {
        b.iter(|| {
            out.clear();
            rt.block_on(scraper.scrape(&all, Format::Text, &mut out));
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench_encode, bench_scrape);
criterion_main!(benches);
