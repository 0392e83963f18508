//! The seams between scraping, the TSDB and queries.
//!
//! - Writers (the scrape loop, remote-write receivers, tests) get an [`Appender`] from an
//!   [`Appendable`], add a whole scrape's samples, then [`Appender::commit`] (all of them become
//!   visible and durable together) or [`Appender::rollback`] (none does).
//! - Readers (PromQL, the HTTP API, federation) use a [`Querier`]: series matching label
//!   matchers with their samples in a time range, label names and values.
//!
//! Timestamps are milliseconds since the Unix epoch (`i64`), values `f64`; the staleness
//! marker is [`crate::model::STALE_NAN_BITS`] and must come back bit for bit.

use crate::model::{Labels, Matcher};

/// A storage-assigned handle for a series, valid until the series is dropped (retention,
/// or a restart); appending through a stale handle fails with [`AppendError::UnknownSeries`]
/// and the writer looks the series up by labels again.
pub type SeriesRef = u64;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// Why one sample was not appended. The appender stays usable: the writer counts the error
/// and goes on with the next sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Older than the newest sample of the series.
    #[error("out of order sample")]
    OutOfOrder,
    /// Same timestamp as the newest sample, different value (the same value is accepted and
    /// ignored, as in Prometheus).
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// Older than the retention window.
    #[error("out of bounds")]
    OutOfBounds,
    /// The [`SeriesRef`] is not (or no longer) known.
    #[error("unknown series reference")]
    UnknownSeries,
    /// The label set is not valid (no `__name__`, bad names, …).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A limit (series count, memory) stops new series.
    #[error("limit reached: {0}")]
    Limit(String),
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples made visible.
    pub samples: usize,
    /// Series created by this commit.
    pub series_added: usize,
}

/// Storage failures that are not about one sample.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The write-ahead log could not be written: the data is in memory but not durable.
    #[error("write-ahead log: {0}")]
    Wal(String),
    #[error("query: {0}")]
    Query(String),
    #[error("storage is closed")]
    Closed,
}

/// Something that hands out appenders (the TSDB).
pub trait Appendable: Send + Sync {
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// Adds samples; nothing is visible to queriers before [`Appender::commit`].
pub trait Appender: Send {
    /// Appends to the series `labels` (sorted, `__name__` set), creating it if needed;
    /// returns its handle for [`Self::append_ref`] next time.
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef, AppendError>;

    /// Appends to a series known by its handle (no label lookup: the scrape loop's fast path).
    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError>;

    /// Makes every sample appended so far visible and durable, as one unit. A WAL write
    /// failure still commits in memory and is reported.
    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError>;

    /// Drops every sample appended so far.
    fn rollback(self: Box<Self>);
}

/// One series with its samples in the queried range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Reads committed data.
pub trait Querier: Send + Sync {
    /// Every series matching all `matchers` (at least one matcher must not match the empty
    /// string, as in Prometheus) with its samples in `[mint, maxt]`, sorted by labels.
    /// Series with no sample in the range are left out.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError>;

    /// The label sets of the series matching `matchers` with samples in `[mint, maxt]`,
    /// sorted, without loading their samples when the storage can avoid it (`/api/v1/series`).
    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    /// Label names of the series matching `matchers` (all series when empty) that have samples
    /// in `[mint, maxt]`, sorted.
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` over the series matching `matchers` (all when empty) that have
    /// samples in `[mint, maxt]`, sorted.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;
}
