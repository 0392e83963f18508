//! Whole-TSDB tests: commit/rollback, rejections, retention, budget, restart and repair.

use super::*;
use crate::model::{MatchOp, STALE_NAN_BITS, stale_nan};
use crate::storage::Appendable;

const MIN: i64 = 60_000;

fn lbl(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut all = vec![("__name__", name)];
    all.extend_from_slice(pairs);
    Labels::from_pairs(all)
}

fn all_series(db: &Tsdb) -> Vec<Series> {
    let m = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    db.select(&[m], i64::MIN, i64::MAX).unwrap()
}

/// Bit-exact view of a query result (NaN != NaN for `PartialEq`).
fn bits(series: &[Series]) -> Vec<(String, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

fn opts() -> Options {
    Options {
        wal_sync_interval: Duration::ZERO,
        ..Options::default()
    }
}

/// One scrape of `n` series at time `t`.
fn scrape(db: &Tsdb, n: usize, t: i64, v: f64) -> CommitStats {
    let mut app = db.appender();
    for i in 0..n {
        app.append(&lbl("m", &[("i", &i.to_string())]), t, v + i as f64)
            .unwrap();
    }
    app.commit().unwrap()
}

#[test]
fn commit_makes_visible_and_rollback_drops() {
    let db = Tsdb::in_memory(opts());
    let mut app = db.appender();
    let r = app.append(&lbl("up", &[("job", "a")]), 1000, 1.0).unwrap();
    app.append_ref(r, 2000, 2.0).unwrap();
    assert!(all_series(&db).is_empty(), "nothing visible before commit");
    let stats = app.commit().unwrap();
    assert_eq!(
        stats,
        CommitStats {
            samples: 2,
            series_added: 1
        }
    );

    let mut app = db.appender();
    app.append_ref(r, 3000, 3.0).unwrap();
    app.append(&lbl("up", &[("job", "b")]), 3000, 1.0).unwrap();
    app.rollback();
    let got = all_series(&db);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        [Sample { t: 1000, v: 1.0 }, Sample { t: 2000, v: 2.0 }]
    );
    assert_eq!(db.stats().rollbacks_total, 1);
}

#[test]
fn out_of_order_and_duplicates_are_rejected_and_counted() {
    let db = Tsdb::in_memory(opts());
    let mut app = db.appender();
    let r = app.append(&lbl("x", &[]), 1000, 1.0).unwrap();
    app.append_ref(r, 2000, 2.0).unwrap();
    app.append_ref(r, 1500, 9.0).unwrap(); // out of order
    app.append_ref(r, 2000, 3.0).unwrap(); // duplicate timestamp, other value
    app.append_ref(r, 2000, 2.0).unwrap(); // same sample again: ignored
    assert_eq!(app.commit().unwrap().samples, 2);
    let s = db.stats();
    assert_eq!(
        (s.out_of_order_samples_total, s.duplicate_samples_total),
        (1, 1)
    );
    assert_eq!(s.samples_appended_total, 2);
    assert_eq!(all_series(&db)[0].samples.len(), 2);
}

#[test]
fn bad_refs_and_labels_fail_at_append() {
    let db = Tsdb::in_memory(opts());
    let mut app = db.appender();
    assert_eq!(
        app.append_ref(12345, 1, 1.0),
        Err(AppendError::UnknownSeries)
    );
    assert_eq!(
        app.append_ref(u64::MAX, 1, 1.0),
        Err(AppendError::UnknownSeries)
    );
    assert!(matches!(
        app.append(&Labels::from_pairs([("job", "x")]), 1, 1.0),
        Err(AppendError::InvalidLabels(_))
    ));
    let long = "v".repeat(MAX_LABEL_BYTES + 1);
    assert!(matches!(
        app.append(&lbl("x", &[("a", &long)]), 1, 1.0),
        Err(AppendError::InvalidLabels(_))
    ));
    for t in [i64::MIN, i64::MAX, MAX_ABS_TIMESTAMP + 1] {
        assert_eq!(
            app.append(&lbl("x", &[]), t, 1.0),
            Err(AppendError::OutOfBounds)
        );
    }
    // The extremes that are allowed round-trip.
    app.append(&lbl("x", &[]), -MAX_ABS_TIMESTAMP, 1.0).unwrap();
    app.append(&lbl("x", &[]), MAX_ABS_TIMESTAMP, 2.0).unwrap();
    app.commit().unwrap();
    let got = all_series(&db);
    assert_eq!(
        got[0].samples[1],
        Sample {
            t: MAX_ABS_TIMESTAMP,
            v: 2.0
        }
    );
    let limited = Tsdb::in_memory(Options {
        max_samples_per_commit: 2,
        max_series: Some(1),
        ..opts()
    });
    let mut app = limited.appender();
    let r = app.append(&lbl("x", &[]), 1, 1.0).unwrap();
    assert!(matches!(
        app.append(&lbl("y", &[]), 1, 1.0),
        Err(AppendError::Limit(_))
    ));
    app.append_ref(r, 2, 1.0).unwrap();
    assert!(matches!(
        app.append_ref(r, 3, 1.0),
        Err(AppendError::Limit(_))
    ));
    app.commit().unwrap();
}

#[test]
fn select_sorts_filters_and_lists_labels() {
    let db = Tsdb::in_memory(opts());
    let mut app = db.appender();
    app.append(&lbl("up", &[("job", "b")]), 1000, 1.0).unwrap();
    app.append(&lbl("up", &[("job", "a")]), 1000, 1.0).unwrap();
    app.append(&lbl("up", &[("job", "a"), ("x", "1")]), 5000, 1.0)
        .unwrap();
    app.append(&lbl("load", &[("job", "a")]), 1000, 0.5)
        .unwrap();
    app.commit().unwrap();
    let up = Matcher::equal("__name__", "up");
    let got = db.select(std::slice::from_ref(&up), 0, 10_000).unwrap();
    let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        [r#"up{job="a"}"#, r#"up{job="a", x="1"}"#, r#"up{job="b"}"#]
    );
    // Time range filters samples and drops series without any.
    assert_eq!(
        db.select(std::slice::from_ref(&up), 2000, 10_000)
            .unwrap()
            .len(),
        1
    );
    // `series` gives the same label sets as `select` without decoding samples.
    for (mint, maxt) in [(0, 10_000), (2000, 10_000), (6000, 10_000)] {
        let via_select: Vec<Labels> = db
            .select(std::slice::from_ref(&up), mint, maxt)
            .unwrap()
            .into_iter()
            .map(|s| s.labels)
            .collect();
        assert_eq!(
            db.series(std::slice::from_ref(&up), mint, maxt).unwrap(),
            via_select,
            "{mint}..{maxt}"
        );
    }
    let no_x = Matcher::new(MatchOp::Equal, "x", "").unwrap();
    assert_eq!(
        db.select(&[up.clone(), no_x.clone()], 0, 10_000)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        db.select(&[no_x], 0, 10_000),
        Err(StorageError::Query(_))
    ));
    assert_eq!(
        db.label_names(&[], 0, 10_000).unwrap(),
        ["__name__", "job", "x"]
    );
    assert_eq!(
        db.label_names(std::slice::from_ref(&up), 0, 2000).unwrap(),
        ["__name__", "job"]
    );
    assert_eq!(db.label_values("job", &[], 0, 10_000).unwrap(), ["a", "b"]);
    let load = Matcher::equal("__name__", "load");
    assert_eq!(db.label_values("job", &[load], 0, 10_000).unwrap(), ["a"]);
    assert!(
        db.label_values("job", &[], 20_000, 30_000)
            .unwrap()
            .is_empty()
    );
    let status = db.status();
    assert_eq!(status.head_stats.num_series, 4);
    assert_eq!(
        status.series_count_by_metric_name[0],
        Stat {
            name: "up".into(),
            value: 3
        }
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["headStats"]["numSeries"], 4);
    assert_eq!(json["seriesCountByMetricName"][0]["name"], "up");
    assert_eq!(json["seriesCountByLabelValuePair"][0]["value"], 3);
}

#[test]
fn retention_drops_old_chunks_and_collects_series_without_reusing_ids() {
    let db = Tsdb::in_memory(Options {
        retention: Duration::from_secs(3600),
        ..opts()
    });
    let mut app = db.appender();
    let old = app.append(&lbl("old", &[]), 0, 1.0).unwrap();
    app.commit().unwrap();
    for i in 0..600i64 {
        let mut app = db.appender();
        app.append(&lbl("live", &[]), i * 15_000, i as f64).unwrap();
        app.commit().unwrap();
    }
    // now = 150 min: keep the last hour (samples from 90 min on).
    let report = db.truncate(150 * MIN);
    assert_eq!(report.series_removed, 1);
    assert!(report.chunks_dropped_retention >= 3);
    let live = all_series(&db);
    assert_eq!(live.len(), 1);
    let first = live[0].samples[0].t;
    assert!(first <= 90 * MIN && first > 60 * MIN, "{first}");
    // A ref to the collected series fails; a new series gets a new id.
    let mut app = db.appender();
    assert_eq!(
        app.append_ref(old, 150 * MIN, 1.0),
        Err(AppendError::UnknownSeries)
    );
    assert_eq!(
        app.append(&lbl("x", &[]), 10 * MIN, 1.0),
        Err(AppendError::OutOfBounds)
    );
    let again = app.append(&lbl("old", &[]), 150 * MIN, 1.0).unwrap();
    assert_ne!(again, old);
    app.commit().unwrap();
    let s = db.stats();
    assert_eq!(s.out_of_bounds_samples_total, 1);
    assert_eq!(s.series_removed_total, 1);
    assert_eq!(
        s.chunks_dropped_retention_total,
        report.chunks_dropped_retention
    );
    assert_eq!(s.min_time, first.min(s.min_time));
}

#[test]
fn memory_budget_drops_oldest_chunks_first() {
    let db = Tsdb::in_memory(Options {
        memory_budget_bytes: Some(u64::MAX),
        ..opts()
    });
    // Series a: old data; series b: recent data; both get closed chunks.
    for i in 0..480i64 {
        let mut app = db.appender();
        app.append(&lbl("a", &[]), i * 15_000, (i * i) as f64)
            .unwrap();
        app.append(&lbl("b", &[]), 10_000 * MIN + i * 15_000, (i * 7) as f64)
            .unwrap();
        app.commit().unwrap();
    }
    let before = db.stats();
    let budget = before.chunk_bytes - 1;
    let db = Tsdb {
        opts: Options {
            memory_budget_bytes: Some(budget),
            ..db.opts.clone()
        },
        ..db
    };
    let report = db.truncate(10_200 * MIN);
    assert_eq!(report.chunks_dropped_budget, 1);
    let s = db.stats();
    assert_eq!(s.chunks_dropped_budget_total, 1);
    assert!(s.chunk_bytes <= budget);
    assert!(s.bytes_dropped_budget_total > 0);
    let got = all_series(&db);
    // The globally oldest chunk was a's first one.
    assert_eq!(got[0].labels.metric_name(), Some("a"));
    assert_eq!(got[0].samples[0].t, 120 * 15_000);
    assert_eq!(got[1].samples[0].t, 10_000 * MIN);
}

/// Appends a mix of commits (a rollback, stale markers, NaNs) and returns nothing; the
/// caller compares query results before and after a restart.
fn workload(db: &Tsdb, from: i64, scrapes: i64) {
    for s in from..from + scrapes {
        let t = s * 15_000 + (s % 3);
        let mut app = db.appender();
        for i in 0..20 {
            let v = match (s + i) % 7 {
                0 => stale_nan(),
                1 => f64::NAN,
                _ => (s * i) as f64 * 0.25,
            };
            app.append(&lbl("w", &[("i", &i.to_string())]), t, v)
                .unwrap();
        }
        if s % 5 == 4 {
            app.rollback();
        } else {
            app.commit().unwrap();
        }
    }
}

#[test]
fn restart_restores_exactly_the_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        workload(&db, 0, 300);
        bits(&all_series(&db))
        // Dropped without close: what `kill -9` leaves.
    };
    assert_eq!(before.len(), 20);
    assert!(before[0].1.iter().any(|&(_, v)| v == STALE_NAN_BITS));
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
    let r = db.replay_report();
    assert!(r.snapshot.is_none() && r.truncated.is_empty() && r.corrupt.is_none());
    assert_eq!(r.samples, 240 * 20);

    // A snapshot, more commits, another crash: snapshot + later segments.
    db.checkpoint().unwrap();
    workload(&db, 300, 50);
    let before = bits(&all_series(&db));
    let stats = db.stats();
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
    assert_eq!(db.replay_report().snapshot_series, 20);
    assert_eq!(db.stats().chunks, stats.chunks);

    // Appends go on after a restart (open chunks resume) and a clean close replays nothing.
    workload(&db, 350, 10);
    let before = bits(&all_series(&db));
    db.close().unwrap();
    assert!(matches!(scrape_err(&db), Err(StorageError::Closed)));
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
    assert_eq!(db.replay_report().records, 0);
}

fn scrape_err(db: &Tsdb) -> Result<CommitStats, StorageError> {
    let mut app = db.appender();
    app.append(&lbl("w", &[]), 1 << 50, 1.0).unwrap();
    app.commit()
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Tsdb::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        Tsdb::open(dir.path(), opts()),
        Err(TsdbError::Locked(_))
    ));
}

fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    wal::list_segments(&dir.join("wal")).unwrap()
}

#[test]
fn torn_tail_is_truncated_with_the_prefix_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        for s in 0..10 {
            scrape(&db, 5, s * 15_000, 1.0);
        }
    }
    let (_, seg) = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last frame in half, as a crash in the middle of a write would.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let r = db.replay_report();
    assert_eq!(r.truncated.len(), 1);
    assert_eq!(r.truncated[0].0, seg);
    let got = all_series(&db);
    assert_eq!(got.len(), 5);
    assert!(
        got.iter().all(|s| s.samples.len() == 9),
        "the torn scrape is lost whole"
    );
    // Appending garbage (zeros, as after a power loss) is a torn tail too.
    scrape(&db, 5, 10 * 15_000, 1.0);
    drop(db);
    let (_, seg) = segments(dir.path()).pop().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 100]).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(db.replay_report().truncated.len(), 1);
    assert!(all_series(&db).iter().all(|s| s.samples.len() == 10));
}

#[test]
fn corrupt_middle_keeps_the_good_prefix_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let small = Options {
        wal_segment_bytes: 1 << 16,
        ..opts()
    };
    {
        let db = Tsdb::open(dir.path(), small.clone()).unwrap();
        for s in 0..1000 {
            scrape(&db, 20, s * 15_000, 1.0);
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let (_, second) = &segs[1];
    let mut data = std::fs::read(second).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(second, &data).unwrap();

    let db = Tsdb::open(dir.path(), small.clone()).unwrap();
    let r = db.replay_report().clone();
    let (file, offset, _) = r.corrupt.clone().expect("corruption reported");
    assert_eq!(&file, second);
    assert!(offset > 0 && offset <= mid as u64);
    let got = all_series(&db);
    assert_eq!(got.len(), 20, "never a silent empty db");
    let kept = got[0].samples.len();
    assert!(kept > 10 && kept < 1000, "{kept}");
    assert!(dir.path().join("wal").read_dir().unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".corrupt")
    }));
    // The kept data was snapshotted right away: a crash now loses nothing of it.
    assert!(db.stats().checkpoints_total >= 1);
    let before = bits(&got);
    drop(db);
    let db = Tsdb::open(dir.path(), small).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
    assert!(db.replay_report().corrupt.is_none());
}

#[test]
fn damaged_snapshot_keeps_what_it_can() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        scrape(&db, 50, 15_000, 1.0);
        db.close().unwrap();
    }
    let (_, snap) = persist::list_snapshots(dir.path()).unwrap().pop().unwrap();
    let data = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &data[..data.len() * 2 / 3]).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let r = db.replay_report();
    assert!(r.snapshot_error.is_some());
    assert!(
        r.snapshot_series > 10 && r.snapshot_series < 50,
        "{}",
        r.snapshot_series
    );
    assert_eq!(all_series(&db).len() as u64, r.snapshot_series);
}

#[test]
fn wal_write_failure_keeps_ingesting_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let wal_dir = dir.path().join("wal");
    // The segment cannot be created: every WAL write fails, as on a full disk.
    std::fs::remove_dir(&wal_dir).unwrap();
    let mut app = db.appender();
    app.append(&lbl("during", &[]), 1000, 1.0).unwrap();
    assert!(matches!(app.commit(), Err(StorageError::Wal(_))));
    let mut app = db.appender();
    app.append(&lbl("during", &[]), 2000, 2.0).unwrap();
    assert!(matches!(app.commit(), Err(StorageError::Wal(_))));
    assert_eq!(db.stats().wal_write_errors_total, 2);
    assert_eq!(
        all_series(&db)[0].samples.len(),
        2,
        "still ingested in memory"
    );

    // Space is back: the next commit gets through and carries the lost series record.
    std::fs::create_dir(&wal_dir).unwrap();
    let mut app = db.appender();
    let r = app.append(&lbl("during", &[]), 3000, 3.0).unwrap();
    app.commit().unwrap();
    let mut app = db.appender();
    app.append_ref(r, 4000, 4.0).unwrap();
    app.commit().unwrap();
    // The next maintenance snapshots what only memory held.
    let report = db.maintain(4000).unwrap();
    assert!(report.checkpointed);
    let before = bits(&all_series(&db));
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
    assert_eq!(before[0].1.len(), 4);
}

#[test]
fn maintenance_checkpoints_on_interval_and_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        checkpoint_interval: Duration::ZERO,
        ..opts()
    };
    let db = Tsdb::open(dir.path(), o.clone()).unwrap();
    scrape(&db, 10, 1000, 1.0);
    let r = db.maintain(1000).unwrap();
    assert!(r.checkpointed);
    scrape(&db, 10, 2000, 1.0);
    db.maintain(2000).unwrap();
    assert_eq!(persist::list_snapshots(dir.path()).unwrap().len(), 1);
    assert!(segments(dir.path()).len() <= 1);
    let before = bits(&all_series(&db));
    drop(db);
    let db = Tsdb::open(dir.path(), o).unwrap();
    assert_eq!(bits(&all_series(&db)), before);
}
