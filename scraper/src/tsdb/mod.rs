//! The scraper's own TSDB: recent history in memory as Gorilla-compressed chunks, made
//! durable by a write-ahead log and periodic snapshots.
//!
//! - Every series keeps a ring of closed chunks plus one open chunk ([`chunk`]: Prometheus'
//!   XOR encoding, ~120 samples each); retention drops whole chunks by time, and a memory
//!   budget drops the globally oldest ones first.
//! - Writers go through [`storage::Appender`]: samples are buffered and applied at commit,
//!   one shard lock per shard touched (never one lock per sample), so rollback is free.
//! - Readers go through [`storage::Querier`]: matchers resolve on the postings index
//!   ([`postings`]), then each matching series is decoded under its shard lock.
//! - Durability: one WAL batch per commit ([`wal`]), snapshots every
//!   [`Options::checkpoint_interval`] ([`persist`]); see [`wal`] for what a crash loses.
//!
//! The service drives housekeeping by calling [`Tsdb::maintain`] on an interval
//! ([`Options::maintenance_interval`], e.g. from `tokio::task::spawn_blocking` in a loop that
//! also watches the shutdown token) and [`Tsdb::close`] on shutdown.
//!
//! # Layout
//! - [`chunk`]: XOR chunk encoder and allocation-free decoder.
//! - [`series`]: one series' chunk ring and out-of-order/duplicate checks.
//! - [`head`]: sharded series maps, id allocation, commit apply, retention and budget passes.
//! - [`postings`]: inverted index, label interning, matcher resolution, cardinality stats.
//! - [`wal`]: segment writer, frames and records.
//! - [`persist`]: snapshots and the replay at start.

pub mod chunk;
pub mod head;
pub mod persist;
pub mod postings;
pub mod series;
pub mod wal;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::{Labels, METRIC_NAME, Matcher};
use crate::storage::{
    self, AppendError, Appender, CommitStats, Querier, Sample, Series, SeriesRef, StorageError,
};
use head::{Head, Pending, Tally, lock, read};
pub use persist::ReplayReport;
pub use postings::Stat;
use wal::WalWriter;

/// Most labels a series may have.
pub const MAX_LABELS: usize = wal::MAX_LABELS;

/// Most bytes of label names and values a series may have.
pub const MAX_LABEL_BYTES: usize = 64 * 1024;

/// Timestamps beyond ±2^61 ms (±73 million years) are refused as out of bounds, so deltas
/// between samples always fit the chunk encoding and span arithmetic cannot overflow.
pub const MAX_ABS_TIMESTAMP: i64 = 1 << 61;

/// Appender buffers kept for reuse; more are dropped (bounds the pool's memory).
const POOLED_BUFFERS: usize = 64;

/// Appender buffers grown past this many samples are not pooled.
const POOLED_BUFFER_MAX: usize = 1 << 16;

/// Rows of each table in [`TsdbStatus`] (Prometheus shows ten).
pub const STATUS_TOP: usize = 10;

/// How the TSDB keeps and stores data. Defaults suit one scraper with the WAL on.
#[derive(Debug, Clone)]
pub struct Options {
    /// Samples older than this (relative to the `now` given to [`Tsdb::maintain`]) are
    /// dropped, whole chunks at a time, and rejected on append. Default 15 days.
    pub retention: Duration,
    /// When the chunks take more than this many bytes, the oldest closed chunks are dropped
    /// at the next maintenance. `None`: no budget.
    pub memory_budget_bytes: Option<u64>,
    /// Write the WAL and snapshots under the data directory; off: memory only, nothing is
    /// read or written.
    pub wal: bool,
    /// A WAL segment is closed at this size.
    pub wal_segment_bytes: u64,
    /// Longest time between fsyncs of the WAL (`ZERO`: every commit). What a power loss
    /// may lose; a process crash loses nothing committed.
    pub wal_sync_interval: Duration,
    /// Time between snapshots; each snapshot lets older WAL segments go, bounding replay.
    pub checkpoint_interval: Duration,
    /// How often the service should call [`Tsdb::maintain`].
    pub maintenance_interval: Duration,
    /// New series beyond this count fail with [`AppendError::Limit`] (default 5M: five
    /// times the design load, a bound on memory against runaway cardinality).
    pub max_series: Option<u64>,
    /// Samples one appender may buffer before [`AppendError::Limit`].
    pub max_samples_per_commit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            memory_budget_bytes: None,
            wal: true,
            wal_segment_bytes: 64 << 20,
            wal_sync_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(15 * 60),
            maintenance_interval: Duration::from_secs(10),
            max_series: Some(5_000_000),
            max_samples_per_commit: 1_000_000,
        }
    }
}

/// Failures of the TSDB as a whole (single samples fail with [`AppendError`]).
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    #[error("invalid option: {0}")]
    Options(String),
    #[error("the TSDB is closed")]
    Closed,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TsdbError + '_ {
    move |source| TsdbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counters and gauges for the service's `/metrics` (names suggest the metric).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsdbStats {
    /// `heimdall_tsdb_head_series`
    pub series: u64,
    pub series_created_total: u64,
    pub series_removed_total: u64,
    pub samples_appended_total: u64,
    pub out_of_order_samples_total: u64,
    pub duplicate_samples_total: u64,
    pub out_of_bounds_samples_total: u64,
    pub unknown_series_samples_total: u64,
    pub commits_total: u64,
    pub rollbacks_total: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub chunks_dropped_retention_total: u64,
    pub chunks_dropped_budget_total: u64,
    pub bytes_dropped_budget_total: u64,
    pub wal_bytes_total: u64,
    pub wal_write_errors_total: u64,
    pub wal_fsyncs_total: u64,
    pub wal_segment: u64,
    pub checkpoints_total: u64,
    pub checkpoint_errors_total: u64,
    pub last_checkpoint_bytes: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// `headStats` of `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadStats {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// The `data` of Prometheus' `/api/v1/status/tsdb`, top [`STATUS_TOP`] rows each.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TsdbStatus {
    pub head_stats: HeadStats,
    pub series_count_by_metric_name: Vec<Stat>,
    pub label_value_count_by_label_name: Vec<Stat>,
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    pub series_count_by_label_value_pair: Vec<Stat>,
}

/// Where memory goes, estimated from the structures (for capacity planning and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub series: u64,
    /// Series structs, label vectors, map slots.
    pub series_bytes: u64,
    /// Postings lists, interned strings, index maps.
    pub index_bytes: u64,
    /// Chunk bytes, chunk slots and the spare capacity of open chunks.
    pub chunk_bytes: u64,
    /// Encoded chunk bytes alone (what "bytes per sample" compares with Prometheus).
    pub encoded_chunk_bytes: u64,
}

/// What one [`Tsdb::maintain`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub chunks_dropped_retention: u64,
    pub chunks_dropped_budget: u64,
    pub series_removed: u64,
    pub checkpointed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    series_created: AtomicU64,
    series_removed: AtomicU64,
    appended: AtomicU64,
    out_of_order: AtomicU64,
    duplicates: AtomicU64,
    out_of_bounds: AtomicU64,
    unknown: AtomicU64,
    commits: AtomicU64,
    rollbacks: AtomicU64,
    chunks: AtomicI64,
    chunk_bytes: AtomicI64,
    dropped_retention: AtomicU64,
    dropped_budget: AtomicU64,
    bytes_dropped_budget: AtomicU64,
    wal_bytes: AtomicU64,
    wal_errors: AtomicU64,
    wal_fsyncs: AtomicU64,
    wal_segment: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_errors: AtomicU64,
    last_checkpoint_bytes: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
}

/// Persistence state: the data directory, its lock and the WAL writer.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    /// Held open for its `flock`, released when the TSDB is dropped.
    _lock: File,
    wal: Mutex<WalWriter>,
    /// Serializes snapshots.
    checkpoint: Mutex<Instant>,
    checkpoint_wanted: AtomicBool,
}

/// The TSDB. Share it by reference or `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Tsdb {
    opts: Options,
    head: Head,
    disk: Option<Disk>,
    counters: Counters,
    /// Samples older than this are rejected (`now - retention` of the last maintenance).
    min_valid: AtomicI64,
    closed: AtomicBool,
    pool: Mutex<Vec<Vec<Pending>>>,
    replay: ReplayReport,
}

fn retention_ms(opts: &Options) -> i64 {
    i64::try_from(opts.retention.as_millis()).unwrap_or(i64::MAX)
}

fn validate_labels(labels: &Labels) -> Result<(), AppendError> {
    if labels.metric_name().is_none_or(str::is_empty) {
        return Err(AppendError::InvalidLabels("no metric name".into()));
    }
    if labels.len() > MAX_LABELS {
        return Err(AppendError::InvalidLabels(format!(
            "{} labels, more than {MAX_LABELS}",
            labels.len()
        )));
    }
    let mut bytes = 0;
    let mut prev: Option<&str> = None;
    for l in labels {
        if l.name.is_empty() || l.value.is_empty() || prev.is_some_and(|p| p >= &*l.name) {
            return Err(AppendError::InvalidLabels(
                "empty, unsorted or repeated label".into(),
            ));
        }
        prev = Some(&l.name);
        bytes += l.name.len() + l.value.len();
    }
    if bytes > MAX_LABEL_BYTES {
        return Err(AppendError::InvalidLabels(format!(
            "{bytes} bytes of labels, more than {MAX_LABEL_BYTES}"
        )));
    }
    Ok(())
}

impl Tsdb {
    /// A memory-only TSDB (no WAL, no snapshots).
    pub fn in_memory(opts: Options) -> Self {
        Self::new(
            Options { wal: false, ..opts },
            None,
            ReplayReport::default(),
        )
    }

    fn new(opts: Options, disk: Option<Disk>, replay: ReplayReport) -> Self {
        let counters = Counters::default();
        counters.min_time.store(i64::MAX, Ordering::Relaxed);
        counters.max_time.store(i64::MIN, Ordering::Relaxed);
        Self {
            opts,
            head: Head::default(),
            disk,
            counters,
            min_valid: AtomicI64::new(i64::MIN),
            closed: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
            replay,
        }
    }

    /// Opens (creating if needed) the data directory `dir`: loads the newest snapshot and
    /// replays the WAL after it. Damage is repaired and logged, never silently dropped: see
    /// [`Self::replay_report`].
    pub fn open(dir: &Path, opts: Options) -> Result<Self, TsdbError> {
        if opts.max_samples_per_commit == 0 {
            return Err(TsdbError::Options(
                "max_samples_per_commit must be > 0".into(),
            ));
        }
        if !opts.wal {
            return Ok(Self::in_memory(opts));
        }
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        let lock_path = dir.join("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        rustix::fs::flock(
            &lock_file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|_| TsdbError::Locked(dir.to_path_buf()))?;
        let _ = std::fs::remove_file(dir.join("snapshot.tmp"));

        let started = Instant::now();
        let mut db = Self::new(opts, None, ReplayReport::default());
        let mut report = ReplayReport::default();
        let snapshots = persist::list_snapshots(dir).map_err(io_err(dir))?;
        let mut from = 0;
        if let Some((n, path)) = snapshots.last() {
            from = *n;
            if let Some(t) =
                persist::load_snapshot(&db.head, path, &mut report).map_err(io_err(path))?
            {
                db.min_valid.store(t.min_valid, Ordering::Relaxed);
            }
        }
        let min_valid = db.min_valid.load(Ordering::Relaxed);
        let next = persist::replay_wal(&db.head, &wal_dir, from, min_valid, &mut report)
            .map_err(io_err(&wal_dir))?;
        // Older snapshots and segments are covered by the newest snapshot.
        for (n, path) in &snapshots {
            if *n < from {
                let _ = std::fs::remove_file(path);
            }
        }
        for (n, path) in wal::list_segments(&wal_dir).map_err(io_err(&wal_dir))? {
            if n < from {
                let _ = std::fs::remove_file(path);
            }
        }
        db.resync_gauges();
        let n = db.head.num_series.load(Ordering::Relaxed);
        db.counters.series_created.store(n, Ordering::Relaxed);
        tracing::info!(
            dir = %dir.display(),
            series = n,
            snapshot_series = report.snapshot_series,
            wal_segments = report.segments,
            wal_samples = report.samples,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "TSDB opened"
        );
        let damaged = report.corrupt.is_some() || report.snapshot_error.is_some();
        let first_seg = next.max(from).max(1);
        db.counters
            .wal_segment
            .store(u64::from(first_seg), Ordering::Relaxed);
        db.disk = Some(Disk {
            dir: dir.to_path_buf(),
            _lock: lock_file,
            wal: Mutex::new(WalWriter::new(
                wal_dir,
                first_seg,
                db.opts.wal_segment_bytes,
                db.opts.wal_sync_interval,
            )),
            checkpoint: Mutex::new(Instant::now()),
            checkpoint_wanted: AtomicBool::new(false),
        });
        db.replay = report;
        if damaged {
            // Make what was kept durable in a consistent form right away.
            db.checkpoint()?;
        }
        Ok(db)
    }

    /// What opening found (snapshot, segments, truncations, corruption).
    pub fn replay_report(&self) -> &ReplayReport {
        &self.replay
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Recounts chunk gauges and the time range from the series (after a replay).
    fn resync_gauges(&self) {
        let census = self.head.census();
        self.counters
            .chunks
            .store(census.chunks as i64, Ordering::Relaxed);
        self.counters
            .chunk_bytes
            .store(census.chunk_bytes as i64, Ordering::Relaxed);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for idx in 0..self.head.shard_count() {
            if let Some(shard) = self.head.shard(idx) {
                for s in shard.series.values() {
                    if let (Some(a), Some(b)) = (s.min_time(), s.max_time()) {
                        lo = lo.min(a);
                        hi = hi.max(b);
                    }
                }
            }
        }
        self.counters.min_time.store(lo, Ordering::Relaxed);
        self.counters.max_time.store(hi, Ordering::Relaxed);
    }

    fn take_buffer(&self) -> Vec<Pending> {
        lock(&self.pool).pop().unwrap_or_default()
    }

    fn recycle(&self, mut buf: Vec<Pending>) {
        if buf.capacity() <= POOLED_BUFFER_MAX {
            buf.clear();
            let mut pool = lock(&self.pool);
            if pool.len() < POOLED_BUFFERS {
                pool.push(buf);
            }
        }
    }

    fn commit_batch(
        &self,
        mut buf: Vec<Pending>,
        series_added: usize,
    ) -> Result<CommitStats, StorageError> {
        if self.closed.load(Ordering::Acquire) {
            self.recycle(buf);
            return Err(StorageError::Closed);
        }
        buf.sort_unstable_by_key(|p| (u64::from(p.id % head::SHARDS) << 32) | u64::from(p.seq));
        let mut tally = Tally {
            max_t: i64::MIN,
            ..Tally::default()
        };
        let mut result = Ok(());
        match &self.disk {
            Some(disk) => {
                let mut w = lock(&disk.wal);
                w.begin();
                for id in std::mem::take(&mut w.unlogged) {
                    if let Some(labels) = self.head.labels_of(id) {
                        w.add_series(id, &labels);
                    }
                }
                self.head.apply(&buf, &mut tally, Some(&mut w));
                if !w.batch_is_empty() {
                    match w.write_batch() {
                        Ok(n) => {
                            self.counters.wal_bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.counters.wal_errors.fetch_add(1, Ordering::Relaxed);
                            if !w.failing {
                                tracing::error!(
                                    dir = %w.dir().display(),
                                    "WAL write failed, ingesting in memory only until it works again \
                                     (further errors are counted, not logged): {e}"
                                );
                                w.failing = true;
                            }
                            disk.checkpoint_wanted.store(true, Ordering::Relaxed);
                            result = Err(StorageError::Wal(e.to_string()));
                        }
                    }
                }
                self.counters
                    .wal_segment
                    .store(u64::from(w.segment()), Ordering::Relaxed);
            }
            None => self.head.apply(&buf, &mut tally, None),
        }
        self.count(&tally);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.recycle(buf);
        result.map(|()| CommitStats {
            samples: tally.appended as usize,
            series_added,
        })
    }

    fn count(&self, t: &Tally) {
        let c = &self.counters;
        c.appended.fetch_add(t.appended, Ordering::Relaxed);
        if t.out_of_order > 0 {
            c.out_of_order.fetch_add(t.out_of_order, Ordering::Relaxed);
        }
        if t.duplicates > 0 {
            c.duplicates.fetch_add(t.duplicates, Ordering::Relaxed);
        }
        if t.unknown > 0 {
            c.unknown.fetch_add(t.unknown, Ordering::Relaxed);
        }
        c.chunk_bytes.fetch_add(t.bytes, Ordering::Relaxed);
        c.chunks.fetch_add(t.chunks, Ordering::Relaxed);
        if t.appended > 0 {
            c.max_time.fetch_max(t.max_t, Ordering::Relaxed);
            // The oldest time only moves back when nothing was held yet or data is
            // backfilled; retention recomputes it exactly.
            if c.min_time.load(Ordering::Relaxed) == i64::MAX {
                c.min_time.fetch_min(t.max_t, Ordering::Relaxed);
            }
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> TsdbStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TsdbStats {
            series: self.head.num_series.load(Ordering::Relaxed),
            series_created_total: g(&c.series_created),
            series_removed_total: g(&c.series_removed),
            samples_appended_total: g(&c.appended),
            out_of_order_samples_total: g(&c.out_of_order),
            duplicate_samples_total: g(&c.duplicates),
            out_of_bounds_samples_total: g(&c.out_of_bounds),
            unknown_series_samples_total: g(&c.unknown),
            commits_total: g(&c.commits),
            rollbacks_total: g(&c.rollbacks),
            chunks: c.chunks.load(Ordering::Relaxed).max(0) as u64,
            chunk_bytes: c.chunk_bytes.load(Ordering::Relaxed).max(0) as u64,
            chunks_dropped_retention_total: g(&c.dropped_retention),
            chunks_dropped_budget_total: g(&c.dropped_budget),
            bytes_dropped_budget_total: g(&c.bytes_dropped_budget),
            wal_bytes_total: g(&c.wal_bytes),
            wal_write_errors_total: g(&c.wal_errors),
            wal_fsyncs_total: g(&c.wal_fsyncs),
            wal_segment: g(&c.wal_segment),
            checkpoints_total: g(&c.checkpoints),
            checkpoint_errors_total: g(&c.checkpoint_errors),
            last_checkpoint_bytes: g(&c.last_checkpoint_bytes),
            min_time: c.min_time.load(Ordering::Relaxed),
            max_time: c.max_time.load(Ordering::Relaxed),
        }
    }

    /// What Prometheus' `/api/v1/status/tsdb` answers.
    pub fn status(&self) -> TsdbStatus {
        let p = read(&self.head.postings).stats(METRIC_NAME, STATUS_TOP);
        let s = self.stats();
        let (min_time, max_time) = if s.min_time <= s.max_time {
            (s.min_time, s.max_time)
        } else {
            (0, 0)
        };
        TsdbStatus {
            head_stats: HeadStats {
                num_series: s.series,
                num_label_pairs: p.num_label_pairs,
                chunk_count: s.chunks,
                min_time,
                max_time,
            },
            series_count_by_metric_name: p.series_count_by_metric_name,
            label_value_count_by_label_name: p.label_value_count_by_label_name,
            memory_in_bytes_by_label_name: p.memory_in_bytes_by_label_name,
            series_count_by_label_value_pair: p.series_count_by_label_value_pair,
        }
    }

    /// Walks every structure to estimate memory use (takes every shard lock in turn).
    pub fn memory_estimate(&self) -> MemoryEstimate {
        let census = self.head.census();
        MemoryEstimate {
            series: self.head.num_series.load(Ordering::Relaxed),
            series_bytes: census.series_bytes,
            index_bytes: read(&self.head.postings).memory_bytes() as u64,
            chunk_bytes: census.chunk_bytes,
            encoded_chunk_bytes: census.encoded_bytes,
        }
    }

    /// Applies retention relative to `now_ms` (drops chunks, collects empty series) and the
    /// memory budget. Part of [`Self::maintain`]; public for tests and tools.
    pub fn truncate(&self, now_ms: i64) -> MaintenanceReport {
        let min_valid = now_ms.saturating_sub(retention_ms(&self.opts));
        self.min_valid.fetch_max(min_valid, Ordering::Relaxed);
        let min_valid = self.min_valid.load(Ordering::Relaxed);
        let (dropped, min_time, removed) = self.head.truncate(min_valid);
        let c = &self.counters;
        c.dropped_retention
            .fetch_add(dropped.chunks, Ordering::Relaxed);
        c.chunks.fetch_sub(dropped.chunks as i64, Ordering::Relaxed);
        c.chunk_bytes
            .fetch_sub(dropped.bytes as i64, Ordering::Relaxed);
        c.series_removed.fetch_add(removed, Ordering::Relaxed);
        c.min_time.store(min_time, Ordering::Relaxed);
        let mut report = MaintenanceReport {
            chunks_dropped_retention: dropped.chunks,
            series_removed: removed,
            ..MaintenanceReport::default()
        };
        if let Some(budget) = self.opts.memory_budget_bytes {
            let bytes = c.chunk_bytes.load(Ordering::Relaxed).max(0) as u64;
            if bytes > budget {
                let d = self.head.drop_oldest(bytes - budget);
                c.dropped_budget.fetch_add(d.chunks, Ordering::Relaxed);
                c.bytes_dropped_budget.fetch_add(d.bytes, Ordering::Relaxed);
                c.chunks.fetch_sub(d.chunks as i64, Ordering::Relaxed);
                c.chunk_bytes.fetch_sub(d.bytes as i64, Ordering::Relaxed);
                report.chunks_dropped_budget = d.chunks;
                if d.chunks > 0 {
                    tracing::info!(
                        chunks = d.chunks,
                        bytes = d.bytes,
                        budget,
                        "memory budget exceeded: dropped the oldest chunks"
                    );
                    self.resync_gauges();
                }
            }
        }
        report
    }

    /// Housekeeping, to be called every [`Options::maintenance_interval`] with the current
    /// wall-clock time: retention and budget, a WAL fsync when due, and a snapshot when
    /// [`Options::checkpoint_interval`] has passed (or a failed WAL write asked for one).
    /// Blocking (a snapshot writes every series): run it off the async workers.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, TsdbError> {
        let mut report = self.truncate(now_ms);
        if let Some(disk) = &self.disk {
            self.sync_wal()?;
            // A snapshot asked for by a failed WAL write waits until writes work again, so
            // a full disk does not mean a failed snapshot (and an error) every run.
            let wanted = disk.checkpoint_wanted.load(Ordering::Relaxed) && !lock(&disk.wal).failing;
            let due = wanted || lock(&disk.checkpoint).elapsed() >= self.opts.checkpoint_interval;
            if due && !self.closed.load(Ordering::Acquire) {
                self.checkpoint()?;
                report.checkpointed = true;
            }
        }
        Ok(report)
    }

    /// fsyncs the WAL if it has unsynced writes.
    pub fn sync_wal(&self) -> Result<(), TsdbError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let mut w = lock(&disk.wal);
        if w.sync_due() || self.closed.load(Ordering::Acquire) {
            w.sync().map_err(io_err(&disk.dir))?;
            self.counters.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes a snapshot of the head and drops the WAL segments it covers.
    pub fn checkpoint(&self) -> Result<u64, TsdbError> {
        let Some(disk) = &self.disk else { return Ok(0) };
        let mut last = lock(&disk.checkpoint);
        disk.checkpoint_wanted.store(false, Ordering::Relaxed);
        let seg = {
            let mut w = lock(&disk.wal);
            let seg = w.rotate();
            self.counters
                .wal_segment
                .store(u64::from(w.segment()), Ordering::Relaxed);
            seg
        };
        let res = seg.and_then(|seg| {
            let min_valid = self.min_valid.load(Ordering::Relaxed);
            let size = persist::write_snapshot(&self.head, &disk.dir, seg, min_valid)?;
            Ok((seg, size))
        });
        let (seg, size) = match res {
            Ok(x) => x,
            Err(e) => {
                self.counters
                    .checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                disk.checkpoint_wanted.store(true, Ordering::Relaxed);
                tracing::error!(dir = %disk.dir.display(), "snapshot failed, keeping the WAL: {e}");
                return Err(TsdbError::Io {
                    path: disk.dir.clone(),
                    source: e,
                });
            }
        };
        // The new snapshot covers every segment below `seg` and every older snapshot.
        let wal_dir = disk.dir.join("wal");
        for (n, path) in wal::list_segments(&wal_dir).unwrap_or_default() {
            if n < seg {
                let _ = std::fs::remove_file(path);
            }
        }
        for (n, path) in persist::list_snapshots(&disk.dir).unwrap_or_default() {
            if n < seg {
                let _ = std::fs::remove_file(path);
            }
        }
        *last = Instant::now();
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_checkpoint_bytes
            .store(size, Ordering::Relaxed);
        tracing::debug!(seg, size, "snapshot written");
        Ok(size)
    }

    /// Graceful shutdown: refuses further commits, fsyncs the WAL and writes a snapshot so
    /// the next start replays nothing. Idempotent.
    pub fn close(&self) -> Result<(), TsdbError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.disk.is_some() {
            self.sync_wal()?;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The series ids matching `matchers`, from the postings index.
    fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        read(&self.head.postings).select(matchers)
    }

    /// Whether the head's time range overlaps `[mint, maxt]`.
    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        let c = &self.counters;
        c.min_time.load(Ordering::Relaxed) <= maxt && c.max_time.load(Ordering::Relaxed) >= mint
    }
}

/// Buffers a scrape's samples; see [`storage::Appender`].
#[derive(Debug)]
struct HeadAppender<'a> {
    db: &'a Tsdb,
    buf: Vec<Pending>,
    series_added: usize,
}

impl HeadAppender<'_> {
    fn check_time(&self, t: i64) -> Result<(), AppendError> {
        if t < self.db.min_valid.load(Ordering::Relaxed)
            || t.unsigned_abs() > MAX_ABS_TIMESTAMP as u64
        {
            self.db
                .counters
                .out_of_bounds
                .fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        Ok(())
    }

    fn push(&mut self, id: u32, t: i64, v: f64) -> Result<(), AppendError> {
        self.check_time(t)?;
        if self.buf.len() >= self.db.opts.max_samples_per_commit {
            return Err(AppendError::Limit(format!(
                "more than {} samples in one commit",
                self.db.opts.max_samples_per_commit
            )));
        }
        let seq = self.buf.len() as u32;
        self.buf.push(Pending { id, seq, t, v });
        Ok(())
    }
}

impl Appender for HeadAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef, AppendError> {
        if t < self.db.min_valid.load(Ordering::Relaxed) {
            self.db
                .counters
                .out_of_bounds
                .fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        validate_labels(labels)?;
        let (id, created) = self
            .db
            .head
            .get_or_create(labels, t, self.db.opts.max_series)?;
        if created {
            self.series_added += 1;
            self.db
                .counters
                .series_created
                .fetch_add(1, Ordering::Relaxed);
        }
        self.push(id, t, v)?;
        Ok(SeriesRef::from(id))
    }

    /// Checks the handle and the time bound now; out-of-order and duplicate checks happen
    /// at commit (under the shard lock), where rejected samples are counted in
    /// [`TsdbStats`] and left out of [`CommitStats::samples`].
    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError> {
        let id = u32::try_from(series).map_err(|_| AppendError::UnknownSeries)?;
        if !self.db.head.alive.contains(id) {
            return Err(AppendError::UnknownSeries);
        }
        self.push(id, t, v)
    }

    /// Applies the batch; with the WAL on, the batch is logged in the same critical section
    /// so the log holds commits in the order they were applied. A WAL write failure leaves
    /// the samples committed in memory and returns [`StorageError::Wal`].
    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError> {
        let Self {
            db,
            buf,
            series_added,
        } = *self;
        db.commit_batch(buf, series_added)
    }

    fn rollback(self: Box<Self>) {
        self.db.counters.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.db.recycle(self.buf);
    }
}

impl storage::Appendable for Tsdb {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(HeadAppender {
            db: self,
            buf: self.take_buffer(),
            series_added: 0,
        })
    }
}

impl Querier for Tsdb {
    /// Series come back sorted by labels. Every matcher matching the empty string (or none)
    /// is refused, as Prometheus refuses such selectors.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(StorageError::Query(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if mint > maxt {
            return Ok(Vec::new());
        }
        let ids = self.select_ids(matchers);
        let mut out = Vec::new();
        for id in ids {
            let found = self.head.with_series(id, |s| {
                if !s.overlaps(mint, maxt) {
                    return None;
                }
                let mut samples: Vec<Sample> = Vec::new();
                s.samples_in(mint, maxt, &mut samples);
                (!samples.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                })
            });
            if let Some(Some(series)) = found {
                out.push(series);
            }
        }
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The label sets of matching series with data in the range, by chunk time ranges:
    /// no sample is decoded (`/api/v1/series` over a long range stays cheap).
    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(StorageError::Query(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut out: Vec<Labels> = self
            .select_ids(matchers)
            .into_iter()
            .filter_map(|id| {
                self.head
                    .with_series(id, |s| s.overlaps(mint, maxt).then(|| s.labels.clone()))
                    .flatten()
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Without matchers, the names come from the index when the head overlaps the range
    /// (as Prometheus' head does); with matchers, from the matching series that hold data
    /// in the range (by chunk time ranges).
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            if !self.head_overlaps(mint, maxt) {
                return Ok(Vec::new());
            }
            return Ok(read(&self.head.postings).label_names());
        }
        let mut names = BTreeSet::new();
        for id in self.select_ids(matchers) {
            self.head.with_series(id, |s| {
                if s.overlaps(mint, maxt) {
                    for l in &s.labels {
                        if !names.contains(&*l.name) {
                            names.insert(l.name.to_string());
                        }
                    }
                }
            });
        }
        Ok(names.into_iter().collect())
    }

    /// As [`Self::label_names`], for the values of one label.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            if !self.head_overlaps(mint, maxt) {
                return Ok(Vec::new());
            }
            return Ok(read(&self.head.postings).label_values(name));
        }
        let mut values = BTreeSet::new();
        for id in self.select_ids(matchers) {
            self.head.with_series(id, |s| {
                if s.overlaps(mint, maxt)
                    && let Some(v) = s.labels.get(name)
                    && !values.contains(v)
                {
                    values.insert(v.to_string());
                }
            });
        }
        Ok(values.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
