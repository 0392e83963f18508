//! The TSDB under concurrent writers and readers, at 100k series, through the public
//! `Appendable`/`Querier` seams only, and across a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use heimdall_scraper::model::{Labels, MatchOp, Matcher};
use heimdall_scraper::storage::{Appendable, Querier, SeriesRef};
use heimdall_scraper::tsdb::{Options, Tsdb};

const TARGETS: usize = 4;
const SERIES_PER_TARGET: usize = 25_000;
const SCRAPES: i64 = 8;
const INTERVAL_MS: i64 = 15_000;

fn series_labels(target: usize, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", i % 50)),
        ("instance", format!("host-{target}:9100")),
        ("job", "node".to_string()),
        ("idx", (i / 50).to_string()),
    ])
}

/// One scrape loop: the first scrape looks series up by labels, later ones use the refs.
fn scrape_loop(db: &Tsdb, target: usize) {
    let mut refs: Vec<SeriesRef> = Vec::with_capacity(SERIES_PER_TARGET);
    for s in 0..SCRAPES {
        let t = s * INTERVAL_MS + target as i64;
        let mut app = db.appender();
        for i in 0..SERIES_PER_TARGET {
            let v = (s as f64) * 1.5 + i as f64;
            if s == 0 {
                refs.push(app.append(&series_labels(target, i), t, v).unwrap());
            } else {
                app.append_ref(refs[i], t, v).unwrap();
            }
        }
        let stats = app.commit().unwrap();
        assert_eq!(stats.samples, SERIES_PER_TARGET);
    }
}

fn check_query(db: &Tsdb, target: usize) {
    let ms = [
        Matcher::equal("instance", format!("host-{target}:9100")),
        Matcher::new(MatchOp::Regex, "__name__", "node_metric_(1|2)").unwrap(),
        Matcher::new(MatchOp::NotEqual, "idx", "0").unwrap(),
    ];
    let got = db.select(&ms, 0, i64::MAX).unwrap();
    assert!(got.len() <= 2 * (SERIES_PER_TARGET / 50));
    assert!(
        got.windows(2).all(|w| w[0].labels < w[1].labels),
        "sorted by labels"
    );
    for s in &got {
        assert_ne!(s.labels.get("idx"), Some("0"));
        // A commit is visible whole or not at all, and samples come in time order.
        assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
    }
}

#[test]
fn concurrent_scrapes_and_queries_over_100k_series_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default();
    let db = Arc::new(Tsdb::open(dir.path(), opts.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) || rounds == 0 {
                check_query(&db, rounds % TARGETS);
                let names = db.label_values("__name__", &[], 0, i64::MAX).unwrap();
                assert!(names.len() <= 50);
                rounds += 1;
            }
            rounds
        })
    };
    let writers: Vec<_> = (0..TARGETS)
        .map(|target| {
            let db = db.clone();
            thread::spawn(move || scrape_loop(&db, target))
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    let total = TARGETS * SERIES_PER_TARGET;
    let stats = db.stats();
    assert_eq!(stats.series, total as u64);
    assert_eq!(stats.samples_appended_total, total as u64 * SCRAPES as u64);
    assert_eq!(stats.out_of_order_samples_total, 0);
    let all = Matcher::equal("job", "node");
    let got = db.select(std::slice::from_ref(&all), 0, i64::MAX).unwrap();
    assert_eq!(got.len(), total);
    assert!(got.iter().all(|s| s.samples.len() == SCRAPES as usize));
    let status = db.status();
    assert_eq!(status.head_stats.num_series, total as u64);
    assert_eq!(status.series_count_by_metric_name.len(), 10);
    assert_eq!(
        status.series_count_by_metric_name[0].value,
        (total / 50) as u64
    );
    let per_sample = stats.chunk_bytes as f64 / stats.samples_appended_total as f64;
    eprintln!(
        "100k series x {SCRAPES}: {per_sample:.2} chunk bytes/sample (open chunks, not steady state)"
    );

    // Crash (no close) and restart: everything committed comes back.
    drop(db);
    let db = Tsdb::open(dir.path(), opts).unwrap();
    let again = db.select(&[all], 0, i64::MAX).unwrap();
    assert_eq!(again, got);
}

#[test]
fn writers_racing_on_the_same_series_keep_it_ordered() {
    let db = Arc::new(Tsdb::in_memory(Options::default()));
    let labels = Labels::from_pairs([("__name__", "shared")]);
    let handles: Vec<_> = (0..4i64)
        .map(|w| {
            let (db, labels) = (db.clone(), labels.clone());
            thread::spawn(move || {
                for s in 0..500i64 {
                    let mut app = db.appender();
                    app.append(&labels, s * 10 + w, w as f64).unwrap();
                    let _ = app.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = db
        .select(&[Matcher::equal("__name__", "shared")], 0, i64::MAX)
        .unwrap();
    let samples = &got[0].samples;
    assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
    let stats = db.stats();
    assert_eq!(
        stats.samples_appended_total + stats.out_of_order_samples_total,
        2000
    );
    assert_eq!(samples.len() as u64, stats.samples_appended_total);
}
