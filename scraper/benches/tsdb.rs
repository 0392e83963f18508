//! TSDB benchmarks: append throughput (1000-sample commits through `append_ref`, memory only
//! and with the WAL), chunk codec speed, select latency (1,000 series × 1 h), replay of
//! 1M samples. Size figures (chunk bytes per sample for node_exporter-like series, memory
//! per series, WAL bytes per sample) are computed once and printed before the timings.
//!
//! `cargo bench -p heimdall-scraper --bench tsdb -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use heimdall_scraper::model::{Labels, MatchOp, Matcher};
use heimdall_scraper::storage::{Appendable, Querier, SeriesRef};
use heimdall_scraper::tsdb::chunk::{XorEncoder, XorIter};
use heimdall_scraper::tsdb::{Options, Tsdb};

const INTERVAL_MS: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How one node_exporter-like series moves from scrape to scrape.
#[derive(Clone, Copy)]
enum Kind {
    /// `node_filesystem_size_bytes`, `*_info`: never changes.
    Constant,
    /// `node_time_seconds`-like: grows by the same amount every scrape.
    SteadyCounter,
    /// `node_cpu_seconds_total`: grows by about the interval with 0.01 s resolution.
    CpuCounter,
    /// `node_network_receive_bytes_total`: grows by irregular integer amounts, sometimes 0.
    ByteCounter,
    /// `node_memory_*_bytes`: integer gauge moving in pages.
    MemGauge,
    /// `node_load1`: two-decimal gauge.
    LoadGauge,
    /// `node_hwmon_temp_celsius`: one-decimal gauge that often repeats.
    TempGauge,
}

fn kind(i: usize) -> Kind {
    // Roughly node_exporter's mix: many constants and counters, fewer busy gauges.
    match i % 10 {
        0..=3 => Kind::Constant,
        4 | 5 => Kind::CpuCounter,
        6 => Kind::ByteCounter,
        7 => Kind::MemGauge,
        8 => Kind::LoadGauge,
        _ => Kind::TempGauge,
    }
}

fn next_value(k: Kind, v: f64, rng: &mut Rng) -> f64 {
    match k {
        Kind::Constant => v,
        Kind::SteadyCounter => v + 15.0,
        Kind::CpuCounter => ((v * 100.0).round() + 1400.0 + rng.below(200) as f64) / 100.0,
        Kind::ByteCounter => {
            if rng.below(4) == 0 {
                v
            } else {
                v + rng.below(200_000) as f64
            }
        }
        Kind::MemGauge => v + 4096.0 * (rng.below(64) as f64 - 32.0),
        Kind::LoadGauge => ((v * 100.0).round() + rng.below(21) as f64 - 10.0).abs() / 100.0,
        Kind::TempGauge => {
            if rng.below(3) == 0 {
                ((v * 10.0).round() + rng.below(3) as f64 - 1.0) / 10.0
            } else {
                v
            }
        }
    }
}

fn first_value(k: Kind, rng: &mut Rng) -> f64 {
    match k {
        Kind::Constant => (rng.below(1 << 40) as f64) * 4096.0,
        Kind::SteadyCounter => 1.7e9,
        Kind::CpuCounter => rng.below(10_000_000) as f64 / 100.0,
        Kind::ByteCounter => rng.below(1 << 40) as f64,
        Kind::MemGauge => (rng.below(1 << 22) as f64) * 4096.0,
        Kind::LoadGauge => 1.25,
        Kind::TempGauge => 45.0,
    }
}

/// Labels like node_exporter's: name, instance, job and one or two per-metric labels.
fn node_labels(target: usize, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", i % 97)),
        (
            "instance",
            format!("host-{target:04}.example.internal:9100"),
        ),
        ("job", "node".to_string()),
        ("cpu", (i % 16).to_string()),
        (
            "mode",
            ["user", "system", "idle", "iowait"][i % 4].to_string(),
        ),
        ("device", format!("eth{}", i / 64)),
    ])
}

/// Timestamp of scrape `s` of series of target `target`: either exactly on the interval
/// (what Prometheus' scrape loop stores after aligning within its 2 ms tolerance) or with
/// ±`jitter_ms` on every sample.
fn ts(s: i64, target: usize, jitter_ms: i64, rng: &mut Rng) -> i64 {
    let base = T0 + s * INTERVAL_MS + target as i64 * 7;
    if jitter_ms == 0 {
        base
    } else {
        base + rng.below(2 * jitter_ms as u64 + 1) as i64 - jitter_ms
    }
}

/// Fills a memory TSDB with `series` node-like series over `scrapes` scrapes and returns
/// (chunk bytes per sample as held, encoded bytes per sample).
fn bytes_per_sample(
    series: usize,
    scrapes: i64,
    jitter_ms: i64,
    kind_of: impl Fn(usize) -> Kind,
) -> (f64, f64) {
    let db = Tsdb::in_memory(Options::default());
    let mut rng = Rng(7);
    let kinds: Vec<Kind> = (0..series).map(kind_of).collect();
    let mut values: Vec<f64> = kinds.iter().map(|&k| first_value(k, &mut rng)).collect();
    let mut refs: Vec<SeriesRef> = Vec::new();
    for s in 0..scrapes {
        // One target per 100 series, jitter per target scrape.
        let mut app = db.appender();
        let mut t = 0;
        for i in 0..series {
            if i % 100 == 0 {
                t = ts(s, i / 100, jitter_ms, &mut rng);
            }
            if s == 0 {
                refs.push(app.append(&node_labels(i / 100, i), t, values[i]).unwrap());
            } else {
                app.append_ref(refs[i], t, values[i]).unwrap();
            }
            values[i] = next_value(kinds[i], values[i], &mut rng);
        }
        app.commit().unwrap();
    }
    let samples = db.stats().samples_appended_total as f64;
    let est = db.memory_estimate();
    (
        est.chunk_bytes as f64 / samples,
        est.encoded_chunk_bytes as f64 / samples,
    )
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn print_sizes() {
    for jitter in [0, 5] {
        let (held, encoded) = bytes_per_sample(1000, 5760, jitter, kind);
        eprintln!(
            "chunks, 1,000 node-like series (mix) x 1 day @15s, jitter ±{jitter} ms: \
             {encoded:.3} B/sample encoded, {held:.3} B/sample held (with chunk slots, open chunk spare)"
        );
    }
    let kinds = [
        ("constant", Kind::Constant),
        ("steady counter", Kind::SteadyCounter),
        ("cpu counter (0.01 s, irregular)", Kind::CpuCounter),
        ("byte counter (irregular)", Kind::ByteCounter),
        ("memory gauge", Kind::MemGauge),
        ("load gauge", Kind::LoadGauge),
        ("temperature gauge", Kind::TempGauge),
    ];
    for (name, k) in kinds {
        let (_, aligned) = bytes_per_sample(100, 5760, 0, |_| k);
        let (_, jittered) = bytes_per_sample(100, 5760, 5, |_| k);
        eprintln!(
            "  {name}: {aligned:.3} B/sample aligned, {jittered:.3} B/sample with ±5 ms jitter"
        );
    }

    // Memory per series: 100k series with node_exporter-like labels, one scrape each.
    let before = rss_bytes();
    let db = Tsdb::in_memory(Options::default());
    let n = 100_000;
    let mut app = db.appender();
    for i in 0..n {
        app.append(&node_labels(i / 1000, i), T0, i as f64).unwrap();
    }
    app.commit().unwrap();
    let after = rss_bytes();
    let est = db.memory_estimate();
    eprintln!(
        "memory per series (100k series, 6 labels, 1 sample): estimate {:.0} B series + {:.0} B index + {:.0} B chunk; RSS delta {}",
        est.series_bytes as f64 / n as f64,
        est.index_bytes as f64 / n as f64,
        est.chunk_bytes as f64 / n as f64,
        match (before, after) {
            (Some(b), Some(a)) => format!("{:.0} B/series", a.saturating_sub(b) as f64 / n as f64),
            _ => "n/a".into(),
        }
    );
    drop(db);

    // WAL bytes per sample and replay time of 1M samples.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        fill(&db, 1000, 1000);
        let s = db.stats();
        eprintln!(
            "WAL: {:.2} B/sample over {} samples ({} bytes incl. series records)",
            s.wal_bytes_total as f64 / s.samples_appended_total as f64,
            s.samples_appended_total,
            s.wal_bytes_total
        );
    }
    let start = Instant::now();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    eprintln!(
        "replay of {} WAL samples: {:?}",
        db.replay_report().samples,
        start.elapsed()
    );
}

/// `scrapes` commits of `series` samples each through refs.
fn fill(db: &Tsdb, series: usize, scrapes: i64) -> Vec<SeriesRef> {
    let mut rng = Rng(11);
    let mut refs = Vec::with_capacity(series);
    let mut values: Vec<f64> = (0..series)
        .map(|i| first_value(kind(i), &mut rng))
        .collect();
    for s in 0..scrapes {
        let t = T0 + s * INTERVAL_MS;
        let mut app = db.appender();
        for i in 0..series {
            if s == 0 {
                refs.push(app.append(&node_labels(i / 100, i), t, values[i]).unwrap());
            } else {
                app.append_ref(refs[i], t, values[i]).unwrap();
            }
            values[i] = next_value(kind(i), values[i], &mut rng);
        }
        app.commit().unwrap();
    }
    refs
}

fn bench(c: &mut Criterion) {
    print_sizes();

    let mut g = c.benchmark_group("tsdb");
    g.throughput(Throughput::Elements(1000));
    let mem = Tsdb::in_memory(Options::default());
    let refs = fill(&mem, 1000, 1);
    let mut s = 1i64;
    g.bench_function("append_ref_commit_1000_memory", |b| {
        b.iter(|| {
            s += 1;
            let t = T0 + s * INTERVAL_MS;
            let mut app = mem.appender();
            for (i, r) in refs.iter().enumerate() {
                app.append_ref(*r, t, (s as f64) * 1.5 + i as f64).unwrap();
            }
            black_box(app.commit().unwrap());
        })
    });
    drop(mem);

    g.bench_function("append_ref_commit_1000_wal", |b| {
        b.iter_custom(|iters| {
            // A fresh directory per batch bounds the disk the benchmark uses.
            let dir = tempfile::tempdir().unwrap();
            let db = Tsdb::open(dir.path(), Options::default()).unwrap();
            let refs = fill(&db, 1000, 1);
            let start = Instant::now();
            for s in 1..=iters as i64 {
                let t = T0 + s * INTERVAL_MS;
                let mut app = db.appender();
                for (i, r) in refs.iter().enumerate() {
                    app.append_ref(*r, t, (s as f64) * 1.5 + i as f64).unwrap();
                }
                black_box(app.commit().unwrap());
            }
            start.elapsed()
        })
    });

    let mut rng = Rng(3);
    let mut v = 1e6;
    let samples: Vec<(i64, f64)> = (0..120)
        .map(|i| {
            v = next_value(Kind::CpuCounter, v, &mut rng);
            (T0 + i * INTERVAL_MS, v)
        })
        .collect();
    g.throughput(Throughput::Elements(120));
    g.bench_function("chunk_encode_120", |b| {
        b.iter(|| {
            let mut e = XorEncoder::with_capacity(256);
            for &(t, v) in &samples {
                e.append(t, v);
            }
            black_box(e.bytes().len())
        })
    });
    let mut e = XorEncoder::with_capacity(256);
    for &(t, v) in &samples {
        e.append(t, v);
    }
    let bytes = e.bytes().to_vec();
    g.bench_function("chunk_decode_120", |b| {
        b.iter(|| black_box(XorIter::new(&bytes).fold(0.0, |acc, (_, v)| acc + v)))
    });

    // 1,000 series × 1 h (240 samples each) out of 1,000 × 4 h.
    let db = Tsdb::in_memory(Options::default());
    fill(&db, 4000, 960);
    let m = [
        Matcher::equal("job", "node"),
        Matcher::new(MatchOp::Regex, "instance", "host-000[0-9].*").unwrap(),
    ];
    let mint = T0 + 720 * INTERVAL_MS;
    let maxt = mint + 3_600_000 - 1;
    let n = db.select(&m, mint, maxt).unwrap();
    eprintln!(
        "select: {} series x {} samples",
        n.len(),
        n.first().map_or(0, |s| s.samples.len())
    );
    g.throughput(Throughput::Elements(
        n.iter().map(|s| s.samples.len() as u64).sum(),
    ));
    g.bench_function("select_1000_series_1h", |b| {
        b.iter(|| black_box(db.select(&m, mint, maxt).unwrap().len()))
    });
    drop(db);

    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        fill(&db, 1000, 1000);
    }
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("replay_1m_samples", |b| {
        b.iter_batched(
            || (),
            |()| {
                let db = Tsdb::open(dir.path(), Options::default()).unwrap();
                black_box(db.stats().samples_appended_total);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
