//! One target's scrape loop: fetch on time, parse, label, append a whole scrape atomically,
//! write the report series and staleness markers, as Prometheus' `scrapeLoop` does.
//!
//! The hot path is [`Ingest::ingest`]: per sample line, the parser hands the raw
//! `name{labels}` bytes; a per-target cache maps them to the storage's series handle, so a
//! known series costs one hash lookup and one `append_ref` — labels are only parsed,
//! merged with the target's, relabeled and validated the first time a series is seen.
//!
//! Staleness (Prometheus' rules): a series scraped last time and missing now gets the stale
//! marker at this scrape's timestamp; when a scrape fails, every series of the last
//! successful scrape does; when the target goes away, everything it last exposed does.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::client::{Auth, FetchError, error_chain, read_body};
use super::target::{Health, ScrapeState, Target};
use super::{Meta, MetadataStore};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, stale_nan};
use crate::relabel::{RelabelConfig, relabel};
use crate::storage::{AppendError, Appendable, Appender, SeriesRef};
use crate::textparse::{Entry, Format, MetricType, Parser, Rules};

/// Per-job settings a loop needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopOptions {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// 0 = no limit.
    pub sample_limit: usize,
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    pub body_size_limit: u64,
    pub metric_relabel: Vec<RelabelConfig>,
    /// The `Accept` header (from `scrape_protocols`).
    pub accept: String,
    pub auth: Auth,
}

/// Series handles the cache holds at most per target; a target exposing more fails its
/// scrapes (set `sample_limit` to say what is expected).
pub const MAX_CACHED_SERIES: usize = 2_000_000;
/// Metric families whose metadata one target's loop remembers.
const MAX_CACHED_METADATA: usize = 100_000;

/// Prometheus' name of a metric type in the metadata API.
fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Unknown => "unknown",
    }
}

/// What one scrape's ingest counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub scraped: usize,
    pub post_relabel: usize,
    pub added: usize,
    pub out_of_order: usize,
    pub duplicates: usize,
    pub out_of_bounds: usize,
}

/// Why a scrape's samples were all rolled back.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Parse(String),
    #[error("sample limit exceeded")]
    SampleLimit,
    #[error("label_limit exceeded (metric: {metric}, number of labels: {count}, limit: {limit})")]
    LabelLimit {
        metric: String,
        count: usize,
        limit: usize,
    },
    #[error("label name or value too long (metric: {0})")]
    LabelLength(String),
    #[error("too many series for one target ({0})")]
    TooManySeries(usize),
    #[error("storage: {0}")]
    Storage(String),
}

/// The series cache's hasher: FNV-1a over 8-byte words, several times cheaper than SipHash on
/// ~100-byte series keys, and this lookup runs once per scraped sample. It is not
/// collision-resistant: a target could make its own lookups slow, and only its own (each
/// target has its own cache, bounded by [`MAX_CACHED_SERIES`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn finish(&self) -> u64 {
        // Final avalanche (from splitmix64) so the low bits hashbrown uses are well mixed.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in chunks.remainder() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    /// `None`: dropped by metric relabeling (remembered so it is not relabeled again).
    series: Option<SeriesRef>,
    /// The scrape iteration that last saw it.
    seen: u64,
    /// What `seen` was before the current iteration updated it (a failed scrape must know
    /// which series the last good scrape had).
    prev: u64,
}

/// A target's series cache and staleness bookkeeping, independent of HTTP (tests feed it
/// bodies directly).
#[derive(Debug)]
pub struct Ingest {
    target_labels: Labels,
    opts: Arc<LoopOptions>,
    cache: HashMap<Box<[u8]>, CacheEntry, BuildHasherDefault<SeriesHasher>>,
    iteration: u64,
    /// The iteration of the last successful scrape (its series are the ones that go stale).
    last_ok: u64,
    report_refs: [Option<SeriesRef>; 5],
    /// Metadata as this target last exposed it; changes go to `metadata_store`.
    metadata: HashMap<String, Meta>,
    metadata_store: Option<Arc<MetadataStore>>,
    metadata_changed: Vec<String>,
}

/// Names of the report series, in `report_refs` order.
const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

impl Ingest {
    pub fn new(
        target_labels: Labels,
        opts: Arc<LoopOptions>,
        metadata_store: Option<Arc<MetadataStore>>,
    ) -> Self {
        Self {
            target_labels,
            opts,
            cache: HashMap::default(),
            iteration: 0,
            last_ok: 0,
            report_refs: [None; 5],
            metadata: HashMap::new(),
            metadata_store,
            metadata_changed: Vec::new(),
        }
    }

    /// Notes one metadata line; allocates only when something changed.
    fn note_metadata(&mut self, metric: &str, update: impl FnOnce(&mut Meta) -> bool) {
        if self.metadata_store.is_none() || self.metadata.len() >= MAX_CACHED_METADATA {
            return;
        }
        let changed = match self.metadata.get_mut(metric) {
            Some(m) => update(m),
            None => {
                let mut m = Meta {
                    kind: "unknown",
                    ..Meta::default()
                };
                update(&mut m);
                self.metadata.insert(metric.to_owned(), m);
                true
            }
        };
        if changed {
            self.metadata_changed.push(metric.to_owned());
        }
    }

    fn flush_metadata(&mut self) {
        if self.metadata_changed.is_empty() {
            return;
        }
        let Some(store) = &self.metadata_store else {
            return;
        };
        let mut names = std::mem::take(&mut self.metadata_changed);
        names.sort();
        names.dedup();
        let batch = names
            .into_iter()
            .filter_map(|n| self.metadata.get(&n).cloned().map(|m| (n, m)))
            .collect();
        store.record(batch);
    }

    /// Series the cache knows (including dropped ones).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Appends one scrape's `body` at `t` (ms) and commits, or rolls everything back on
    /// error. Series seen last time and missing now get a staleness marker either way.
    pub fn ingest(
        &mut self,
        storage: &dyn Appendable,
        body: &[u8],
        format: Format,
        t: i64,
    ) -> Result<IngestStats, IngestError> {
        self.iteration += 1;
        let mut app = storage.appender();
        match self.append_body(&mut *app, body, format, t) {
            Ok(stats) => {
                self.stale_missing(&mut *app, self.last_ok, t);
                app.commit()
                    .map_err(|e| IngestError::Storage(e.to_string()))?;
                self.last_ok = self.iteration;
                self.forget_old();
                self.flush_metadata();
                Ok(stats)
            }
            Err(e) => {
                app.rollback();
                self.mark_failed(storage, t);
                Err(e)
            }
        }
    }

    /// A failed scrape (fetch or ingest): the last good scrape's series go stale.
    pub fn mark_failed(&mut self, storage: &dyn Appendable, t: i64) {
        let (now, last_ok) = (self.iteration, self.last_ok);
        // Undo what the failed iteration recorded: series it saw go back to their previous
        // sighting, series it created are forgotten (their append was rolled back).
        self.cache
            .retain(|_, e| !(e.seen == now && e.prev == 0 && last_ok != now));
        for e in self.cache.values_mut() {
            if e.seen == now && last_ok != now {
                e.seen = e.prev;
            }
        }
        let mut app = storage.appender();
        self.stale_missing(&mut *app, last_ok, t);
        if let Err(e) = app.commit() {
            tracing::warn!(error = %e, "cannot write staleness markers");
        }
        // Nothing is current any more: the next success starts afresh.
        self.last_ok = 0;
        self.forget_old();
    }

    /// The target went away: everything it last exposed (and its report series) goes stale.
    pub fn mark_gone(&mut self, storage: &dyn Appendable, t: i64) {
        self.iteration += 1;
        let mut app = storage.appender();
        self.stale_missing(&mut *app, self.last_ok, t);
        for r in self.report_refs.iter().flatten() {
            let _ = app.append_ref(*r, t, stale_nan());
        }
        if let Err(e) = app.commit() {
            tracing::warn!(error = %e, "cannot write staleness markers");
        }
        self.cache.clear();
    }

    fn append_body(
        &mut self,
        app: &mut dyn Appender,
        body: &[u8],
        format: Format,
        t: i64,
    ) -> Result<IngestStats, IngestError> {
        let mut stats = IngestStats::default();
        // OpenMetrics' family rules (e.g. no `_sum` with negative buckets) reject output real
        // client libraries produce; Prometheus' own parser does not apply them either.
        let mut parser = Parser::with_rules(body, format, Rules::SyntaxOnly);
        let limit = self.opts.sample_limit;
        loop {
            let entry = match parser.next() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(IngestError::Parse(e.to_string())),
            };
            let s = match entry {
                Entry::Sample(s) => s,
                Entry::Type { metric, kind } => {
                    let kind = type_name(kind);
                    self.note_metadata(metric, |m| std::mem::replace(&mut m.kind, kind) != kind);
                    continue;
                }
                Entry::Help { metric, text } => {
                    self.note_metadata(metric, |m| {
                        if m.help == *text {
                            return false;
                        }
                        m.help = text.into_owned();
                        true
                    });
                    continue;
                }
                Entry::Unit { metric, unit } => {
                    self.note_metadata(metric, |m| {
                        if m.unit == unit {
                            return false;
                        }
                        m.unit = unit.to_owned();
                        true
                    });
                    continue;
                }
                _ => continue,
            };
            stats.scraped += 1;
            let ts = match (self.opts.honor_timestamps, s.timestamp) {
                (true, Some(ts)) => ts,
                _ => t,
            };
            let iteration = self.iteration;
            let known = self.cache.get_mut(s.series).map(|e| {
                if e.seen != iteration {
                    e.prev = e.seen;
                    e.seen = iteration;
                }
                e.series
            });
            let series = match known {
                Some(None) => continue,
                Some(Some(r)) => match app.append_ref(r, ts, s.value) {
                    Err(AppendError::UnknownSeries) => {
                        // The storage dropped it (retention); look it up by labels again.
                        self.cache.remove(s.series);
                        None
                    }
                    other => {
                        count(&mut stats, other)?;
                        Some(r)
                    }
                },
                None => None,
            };
            if series.is_none() {
                let mut b = LabelsBuilder::default();
                s.labels(&mut b);
                let labels = match self.sample_labels(b)? {
                    Some(l) => l,
                    None => {
                        self.insert(s.series, None)?;
                        continue;
                    }
                };
                match app.append(&labels, ts, s.value) {
                    Ok(r) => {
                        self.insert(s.series, Some(r))?;
                        stats.added += 1;
                    }
                    Err(e) => count(&mut stats, Err(e))?,
                }
            }
            stats.post_relabel += 1;
            if limit > 0 && stats.post_relabel > limit {
                return Err(IngestError::SampleLimit);
            }
        }
        Ok(stats)
    }

    fn insert(&mut self, series: &[u8], r: Option<SeriesRef>) -> Result<(), IngestError> {
        if self.cache.len() >= MAX_CACHED_SERIES {
            return Err(IngestError::TooManySeries(MAX_CACHED_SERIES));
        }
        self.cache.insert(
            series.into(),
            CacheEntry {
                series: r,
                seen: self.iteration,
                prev: 0,
            },
        );
        Ok(())
    }

    /// A new series' labels: the target's merged in (honor_labels), metric relabeling,
    /// limits. `None` = dropped.
    fn sample_labels(&self, mut b: LabelsBuilder) -> Result<Option<Labels>, IngestError> {
        for l in &self.target_labels {
            match b.get(&l.name) {
                None => {
                    b.set(l.name.clone(), l.value.clone());
                }
                Some(_) if self.opts.honor_labels => {}
                Some(exposed) => {
                    // Prometheus keeps the exposed value as `exported_<name>` (repeatedly
                    // prefixed until free) and sets the target's.
                    let exposed = exposed.to_owned();
                    let mut name = format!("exported_{}", l.name);
                    while b.get(&name).is_some() {
                        name = format!("exported_{name}");
                    }
                    b.set(name, exposed);
                    b.set(l.name.clone(), l.value.clone());
                }
            }
        }
        let labels = b.build();
        let labels = if self.opts.metric_relabel.is_empty() {
            labels
        } else {
            match relabel(&labels, &self.opts.metric_relabel) {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        if labels.get(METRIC_NAME).is_none() {
            return Ok(None);
        }
        let metric = || labels.metric_name().unwrap_or_default().to_owned();
        let o = &self.opts;
        if o.label_limit > 0 && labels.len() > o.label_limit {
            return Err(IngestError::LabelLimit {
                metric: metric(),
                count: labels.len(),
                limit: o.label_limit,
            });
        }
        if (o.label_name_length_limit > 0
            && labels
                .iter()
                .any(|l| l.name.len() > o.label_name_length_limit))
            || (o.label_value_length_limit > 0
                && labels
                    .iter()
                    .any(|l| l.value.len() > o.label_value_length_limit))
        {
            return Err(IngestError::LabelLength(metric()));
        }
        Ok(Some(labels))
    }

    /// Stale markers for series seen in iteration `was` and not in the current one.
    fn stale_missing(&self, app: &mut dyn Appender, was: u64, t: i64) {
        if was == 0 {
            return;
        }
        for e in self.cache.values() {
            if e.seen == was
                && let Some(r) = e.series
            {
                // Out of order (the target's own timestamps ran ahead) is fine to skip.
                let _ = app.append_ref(r, t, stale_nan());
            }
        }
    }

    /// Drops cache entries not seen in the last two iterations (they already got their
    /// staleness marker).
    fn forget_old(&mut self) {
        let keep_from = self.iteration.saturating_sub(1);
        self.cache.retain(|_, e| e.seen >= keep_from);
    }

    /// Appends `up` and the other report series (their own commit, so a failed scrape still
    /// reports).
    pub fn report(
        &mut self,
        storage: &dyn Appendable,
        t: i64,
        up: bool,
        duration: Duration,
        stats: &IngestStats,
    ) {
        let values = [
            if up { 1.0 } else { 0.0 },
            duration.as_secs_f64(),
            stats.scraped as f64,
            stats.post_relabel as f64,
            stats.added as f64,
        ];
        let mut app = storage.appender();
        for (i, (name, v)) in REPORT.iter().zip(values).enumerate() {
            let done = match self.report_refs[i] {
                Some(r) => app.append_ref(r, t, v),
                None => Err(AppendError::UnknownSeries),
            };
            if done == Err(AppendError::UnknownSeries) {
                let mut b = self.target_labels.builder();
                b.set(METRIC_NAME, *name);
                if let Ok(r) = app.append(&b.build(), t, v) {
                    self.report_refs[i] = Some(r);
                }
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(error = %e, "cannot write the scrape report");
        }
    }
}

/// Counts a per-sample storage error; `Err` only for errors that fail the scrape.
fn count(stats: &mut IngestStats, r: Result<(), AppendError>) -> Result<(), IngestError> {
    match r {
        Ok(()) => Ok(()),
        Err(AppendError::OutOfOrder) => {
            stats.out_of_order += 1;
            Ok(())
        }
        Err(AppendError::Duplicate) => {
            stats.duplicates += 1;
            Ok(())
        }
        Err(AppendError::OutOfBounds) => {
            stats.out_of_bounds += 1;
            Ok(())
        }
        Err(e @ (AppendError::InvalidLabels(_) | AppendError::Limit(_))) => {
            Err(IngestError::Storage(e.to_string()))
        }
        Err(AppendError::UnknownSeries) => Err(IngestError::Storage("unknown series".into())),
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The scrape's start offset within the interval: spread by a hash of the target, so a
/// thousand targets are not all scraped in the same millisecond (Prometheus' `offset`).
pub fn offset(target: &Target, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    let hash = target.labels.stable_hash()
        ^ Labels::from_pairs([("u", target.url.as_str())]).stable_hash();
    let now = now_ms() as u64;
    // Time until the next point ≡ hash (mod interval).
    Duration::from_millis(((hash % ms) + ms - now % ms) % ms)
}

/// Prometheus' timestamp alignment: timer jitter of a few milliseconds would make every
/// delta-of-delta non-zero and cost ~1.75 bytes per sample in the chunks, so a scrape within
/// [`TIMESTAMP_TOLERANCE_MS`] (at most 1 % of the interval) of the expected time is stamped
/// with the expected time.
fn align(aligned: &mut Option<i64>, t: i64, interval_ms: i64) -> i64 {
    let Some(a) = aligned.as_mut() else {
        *aligned = Some(t);
        return t;
    };
    if interval_ms <= 0 {
        return t;
    }
    // The nearest expected time, not the last one passed: tokio's millisecond timer fires a
    // tick a millisecond early about as often as late, and rounding down left such a target
    // unaligned for good (every later tick then looked 1 ms early).
    let ticks = (t - *a + interval_ms / 2).div_euclid(interval_ms);
    if ticks > 0 {
        *a += ticks * interval_ms;
    }
    let tolerance = (interval_ms / 100).min(TIMESTAMP_TOLERANCE_MS);
    if (t - *a).abs() <= tolerance { *a } else { t }
}

/// See [`align`].
pub const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// Runs the loop until `stop`; then writes the staleness markers of a target that is gone
/// (unless `shutdown` — the whole process stopping — was the reason).
pub async fn run(
    target: Arc<Target>,
    client: reqwest::Client,
    storage: Arc<dyn Appendable>,
    metadata: Arc<MetadataStore>,
    opts: Arc<LoopOptions>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut ingest = Ingest::new(target.labels.clone(), opts.clone(), Some(metadata));
    let interval = target.interval;
    let start = tokio::time::Instant::now() + offset(&target, interval);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut body = Vec::new();
    let mut aligned: Option<i64> = None;
    let interval_ms = interval.as_millis() as i64;
    loop {
        let due = tokio::select! {
            due = ticker.tick() => due,
            () = stop.cancelled() => break,
        };
        let now = now_ms();
        // Align on when the first tick was due, not on when it ran: at start a thousand
        // loops and their first, series-creating scrapes run at once, and a first scrape
        // 10 ms late left the target unaligned for good.
        aligned.get_or_insert(now - due.elapsed().as_millis() as i64);
        let t = align(&mut aligned, now, interval_ms);
        let began = Instant::now();
        let fetched = tokio::select! {
            r = fetch(&client, &target, &opts, &mut body) => r,
            () = stop.cancelled() => break,
        };
        let result = match fetched {
            Ok(format) => ingest
                .ingest(&*storage, &body, format, t)
                .map_err(|e| e.to_string()),
            Err(e) => {
                ingest.mark_failed(&*storage, t);
                Err(e.to_string())
            }
        };
        let duration = began.elapsed();
        let (stats, error) = match result {
            Ok(s) => (s, String::new()),
            Err(e) => (IngestStats::default(), e),
        };
        ingest.report(&*storage, t, error.is_empty(), duration, &stats);
        if !error.is_empty() {
            tracing::debug!(target = %target.url, error = %error, "scrape failed");
        }
        target.set_state(ScrapeState {
            health: if error.is_empty() {
                Health::Up
            } else {
                Health::Down
            },
            last_error: error,
            last_scrape: Some(SystemTime::now()),
            last_duration: duration,
            last_samples: stats.scraped,
        });
        // Large bodies should not pin memory for ever: keep at most twice the last size.
        if body.capacity() > 2 * body.len().max(64 * 1024) {
            body.shrink_to(body.len());
        }
    }
    if !shutdown.is_cancelled() {
        ingest.mark_gone(&*storage, now_ms());
    }
}

/// GETs the target into `body`; the format comes from the `Content-Type`.
async fn fetch(
    client: &reqwest::Client,
    target: &Target,
    opts: &LoopOptions,
    body: &mut Vec<u8>,
) -> Result<Format, FetchError> {
    let timeout = target.timeout;
    let mut req = client
        .get(&target.url)
        .timeout(timeout)
        .header(reqwest::header::ACCEPT, &opts.accept)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        );
    req = match &opts.auth {
        Auth::None => req,
        Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        Auth::Header { kind, credentials } => req.header(
            reqwest::header::AUTHORIZATION,
            format!("{kind} {credentials}"),
        ),
    };
    let work = async {
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Http(error_chain(&e))
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.to_string()));
        }
        let format = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Text, Format::from_content_type);
        read_body(resp, body, opts.body_size_limit).await?;
        Ok(format)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, is_stale};
    use crate::storage::Querier;
    use crate::tsdb::{Options, Tsdb};

    fn opts() -> LoopOptions {
        LoopOptions {
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            metric_relabel: Vec::new(),
            accept: String::new(),
            auth: Auth::None,
        }
    }

    fn ingest(o: LoopOptions) -> (Ingest, Tsdb) {
        let target = Labels::from_pairs([("job", "j"), ("instance", "h:1")]);
        (
            Ingest::new(target, Arc::new(o), Some(MetadataStore::new())),
            Tsdb::in_memory(Options::default()),
        )
    }

    fn values(db: &Tsdb, name: &str) -> Vec<(Labels, Vec<f64>)> {
        db.select(&[Matcher::equal("__name__", name)], 0, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|s| (s.labels, s.samples.iter().map(|p| p.v).collect()))
            .collect()
    }

    #[test]
    fn samples_get_target_labels_and_known_series_use_the_cache() {
        let (mut ing, db) = ingest(opts());
        let body = b"a{x=\"1\"} 1\na{x=\"2\"} 2\nb 3\n";
        let s = ing.ingest(&db, body, Format::Text, 1000).unwrap();
        assert_eq!((s.scraped, s.post_relabel, s.added), (3, 3, 3));
        let s = ing.ingest(&db, body, Format::Text, 2000).unwrap();
        assert_eq!(
            (s.scraped, s.added),
            (3, 0),
            "second scrape: all from the cache"
        );
        let a = values(&db, "a");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0.get("job"), Some("j"));
        assert_eq!(a[0].0.get("instance"), Some("h:1"));
        assert_eq!(a[0].1, vec![1.0, 1.0]);
    }

    #[test]
    fn disappearing_series_and_failed_scrapes_write_staleness_markers() {
        let (mut ing, db) = ingest(opts());
        ing.ingest(&db, b"a 1\nb 2\n", Format::Text, 1000).unwrap();
        ing.ingest(&db, b"a 1\n", Format::Text, 2000).unwrap();
        let b = values(&db, "b");
        assert_eq!(b[0].1.len(), 2);
        assert!(is_stale(b[0].1[1]), "b went stale at the second scrape");
        // A parse error rolls the scrape back and makes the last good series stale.
        let err = ing.ingest(&db, b"a 2\nbroken line here\n", Format::Text, 3000);
        assert!(err.is_err());
        let a = values(&db, "a");
        assert_eq!(a[0].1.len(), 3);
        assert!(is_stale(a[0].1[2]), "{:?}", a[0].1);
        // Back: a new value, and no second stale marker later.
        ing.ingest(&db, b"a 5\n", Format::Text, 4000).unwrap();
        ing.mark_gone(&db, 5000);
        let a = values(&db, "a");
        assert_eq!(a[0].1[3], 5.0);
        assert!(is_stale(a[0].1[4]), "the target went away");
    }

    #[test]
    fn honor_labels_and_exported_prefix() {
        let body = b"m{job=\"other\",instance=\"x\"} 1\n";
        let (mut ing, db) = ingest(opts());
        ing.ingest(&db, body, Format::Text, 1000).unwrap();
        let l = &values(&db, "m")[0].0;
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("exported_job"), Some("other"));
        assert_eq!(l.get("exported_instance"), Some("x"));
        let mut o = opts();
        o.honor_labels = true;
        let (mut ing, db) = ingest(o);
        ing.ingest(&db, body, Format::Text, 1000).unwrap();
        let l = &values(&db, "m")[0].0;
        assert_eq!(l.get("job"), Some("other"));
        assert_eq!(l.get("exported_job"), None);
    }

    #[test]
    fn limits_fail_the_whole_scrape() {
        let mut o = opts();
        o.sample_limit = 2;
        let (mut ing, db) = ingest(o);
        let e = ing
            .ingest(&db, b"a 1\nb 2\nc 3\n", Format::Text, 1000)
            .unwrap_err();
        assert!(matches!(e, IngestError::SampleLimit));
        assert!(values(&db, "a").is_empty(), "rolled back");
        let mut o = opts();
        o.label_limit = 3;
        let (mut ing, db) = ingest(o);
        let e = ing
            .ingest(&db, b"a{x=\"1\",y=\"2\"} 1\n", Format::Text, 1000)
            .unwrap_err();
        assert!(e.to_string().contains("label_limit exceeded"), "{e}");
    }

    #[test]
    fn out_of_order_samples_are_counted_not_fatal() {
        let (mut ing, db) = ingest(opts());
        ing.ingest(&db, b"a 1 5000\n", Format::Text, 5000).unwrap();
        let s = ing
            .ingest(&db, b"a 2 4000\nb 1 4000\n", Format::Text, 6000)
            .unwrap();
        assert_eq!(s.scraped, 2);
        assert_eq!(values(&db, "b").len(), 1);
    }

    #[test]
    fn report_series_carry_the_target_labels() {
        let (mut ing, db) = ingest(opts());
        let s = ing.ingest(&db, b"a 1\n", Format::Text, 1000).unwrap();
        ing.report(&db, 1000, true, Duration::from_millis(5), &s);
        let up = values(&db, "up");
        assert_eq!(up[0].1, vec![1.0]);
        assert_eq!(up[0].0.get("instance"), Some("h:1"));
        assert_eq!(values(&db, "scrape_samples_scraped")[0].1, vec![1.0]);
        assert_eq!(values(&db, "scrape_series_added")[0].1, vec![1.0]);
    }

    #[test]
    fn the_series_hasher_spreads_similar_keys() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<SeriesHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let key = format!("node_cpu_seconds_total{{cpu=\"{i}\",mode=\"idle\"}}");
            seen.insert(b.hash_one(key.as_bytes()) & 0xffff);
        }
        // 10,000 keys over 65,536 low-bit buckets: about 9,300 distinct if well mixed.
        assert!(seen.len() > 8_500, "{}", seen.len());
        assert_ne!(b.hash_one(b"a".as_slice()), b.hash_one(b"b".as_slice()));
    }

    #[test]
    fn timestamps_align_within_the_tolerance() {
        let mut a = None;
        assert_eq!(align(&mut a, 1_000, 15_000), 1_000);
        assert_eq!(align(&mut a, 16_001, 15_000), 16_000);
        assert_eq!(
            align(&mut a, 31_003, 15_000),
            31_003,
            "3 ms is beyond the 2 ms tolerance"
        );
        assert_eq!(align(&mut a, 61_002, 15_000), 61_000, "a skipped tick");
        assert_eq!(align(&mut a, 75_999, 15_000), 76_000, "a tick 1 ms early");
        assert_eq!(align(&mut a, 90_999, 15_000), 91_000, "and the next one");
        assert_eq!(align(&mut a, 106_001, 15_000), 106_000, "and one late");
    }
}
