//! One series in memory: its labels, a ring of closed chunks (oldest first) and the open
//! chunk, plus the last sample for out-of-order and duplicate checks.
//!
//! A series is always reached under its shard's lock (see [`super::head`]), so it holds no
//! lock of its own and costs only what it stores.

use std::collections::VecDeque;

use super::chunk::{SAMPLES_PER_CHUNK, XorEncoder, XorIter};
use crate::model::Labels;
use crate::storage::{AppendError, Sample};

/// Longest time span of one chunk: a slow series (one sample a minute) still closes a chunk
/// every two hours, so retention can drop it (Prometheus' head chunk range).
pub const MAX_CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Spare bytes given to a new open chunk beyond the size of the previous one, so a steady
/// series allocates its chunk buffer once.
const CHUNK_SLACK_BYTES: usize = 16;

/// First capacity of the open chunk of a new series.
const FIRST_CHUNK_BYTES: usize = 64;

/// A closed, immutable chunk.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub data: Box<[u8]>,
}

impl ClosedChunk {
    /// Memory held: the bytes plus the ring slot.
    pub fn cost(&self) -> usize {
        self.data.len() + size_of::<Self>()
    }
}

/// The open chunk with its time range.
#[derive(Debug, Clone)]
pub struct OpenChunk {
    pub min_t: i64,
    pub enc: XorEncoder,
}

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the chunk bytes grew by `bytes` (may be negative when a chunk was closed),
    /// and `new_chunk` tells whether a chunk was started.
    Stored { bytes: isize, new_chunk: bool },
    /// Same timestamp and value as the last sample: accepted and ignored, as Prometheus does.
    Ignored,
}

#[derive(Debug)]
pub struct MemSeries {
    pub labels: Labels,
    pub closed: VecDeque<ClosedChunk>,
    pub open: Option<OpenChunk>,
    /// Last appended sample (`i64::MIN` before the first).
    pub last_t: i64,
    pub last_v: f64,
    /// Timestamp of the first append attempt, so a series created by a scrape that was then
    /// rolled back is not collected before that scrape loop had a chance to use it.
    pub created_t: i64,
    /// Whether the series' labels are in the WAL (or the last snapshot).
    pub logged: bool,
}

impl MemSeries {
    pub fn new(labels: Labels, created_t: i64) -> Self {
        Self {
            labels,
            closed: VecDeque::new(),
            open: None,
            last_t: i64::MIN,
            last_v: 0.0,
            created_t,
            logged: false,
        }
    }

    /// Checks the sample against the last one without storing it.
    pub fn check(&self, t: i64, v: f64) -> Result<bool, AppendError> {
        if self.last_t == i64::MIN || t > self.last_t {
            return Ok(true);
        }
        if t < self.last_t {
            return Err(AppendError::OutOfOrder);
        }
        if v.to_bits() == self.last_v.to_bits() {
            Ok(false)
        } else {
            Err(AppendError::Duplicate)
        }
    }

    /// Appends a sample, closing the open chunk when it is full or spans too long.
    pub fn append(&mut self, t: i64, v: f64) -> Result<Appended, AppendError> {
        if !self.check(t, v)? {
            return Ok(Appended::Ignored);
        }
        let mut bytes: isize = 0;
        let mut new_chunk = false;
        let cut = match &self.open {
            None => true,
            Some(o) => {
                o.enc.count() >= SAMPLES_PER_CHUNK || t.saturating_sub(o.min_t) > MAX_CHUNK_SPAN_MS
            }
        };
        if cut {
            let capacity = match self.open.take() {
                Some(o) => {
                    let (min_t, max_t) = (o.min_t, o.enc.last_t());
                    let before = o.enc.capacity() as isize;
                    let data = o.enc.into_bytes();
                    let next = data.len() + CHUNK_SLACK_BYTES;
                    let chunk = ClosedChunk { min_t, max_t, data };
                    bytes += chunk.cost() as isize - before;
                    self.closed.push_back(chunk);
                    next
                }
                None => FIRST_CHUNK_BYTES,
            };
            let enc = XorEncoder::with_capacity(capacity);
            bytes += enc.capacity() as isize;
            new_chunk = true;
            self.open = Some(OpenChunk { min_t: t, enc });
        }
        if let Some(o) = &mut self.open {
            let before = o.enc.capacity();
            o.enc.append(t, v);
            bytes += o.enc.capacity() as isize - before as isize;
        }
        self.last_t = t;
        self.last_v = v;
        Ok(Appended::Stored { bytes, new_chunk })
    }

    /// Bytes held by chunks (closed chunks plus the open chunk's buffer).
    pub fn chunk_bytes(&self) -> usize {
        self.closed.iter().map(ClosedChunk::cost).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.enc.capacity())
    }

    pub fn chunk_count(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    /// Oldest sample time held, if any.
    pub fn min_time(&self) -> Option<i64> {
        self.closed
            .front()
            .map(|c| c.min_t)
            .or(self.open.as_ref().map(|o| o.min_t))
    }

    /// Newest sample time held, if any.
    pub fn max_time(&self) -> Option<i64> {
        self.open
            .as_ref()
            .map(|o| o.enc.last_t())
            .or(self.closed.back().map(|c| c.max_t))
    }

    /// Whether any held sample may lie in `[mint, maxt]` (by chunk ranges).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        match (self.min_time(), self.max_time()) {
            (Some(lo), Some(hi)) => lo <= maxt && hi >= mint,
            _ => false,
        }
    }

    /// Appends the samples in `[mint, maxt]` to `out`, oldest first.
    pub fn samples_in(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let open = self
            .open
            .as_ref()
            .map(|o| (o.min_t, o.enc.last_t(), o.enc.bytes()));
        let chunks = self
            .closed
            .iter()
            .map(|c| (c.min_t, c.max_t, &c.data[..]))
            .chain(open);
        for (lo, hi, data) in chunks {
            if hi < mint || lo > maxt {
                continue;
            }
            for (t, v) in XorIter::new(data) {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    out.push(Sample { t, v });
                }
            }
        }
    }

    /// Drops closed chunks that end before `mint`, and the open chunk too when it does; returns
    /// (chunks, bytes) dropped.
    pub fn truncate_before(&mut self, mint: i64) -> (usize, usize) {
        let (mut chunks, mut bytes) = (0, 0);
        while let Some(c) = self.closed.front() {
            if c.max_t >= mint {
                break;
            }
            bytes += c.cost();
            chunks += 1;
            self.closed.pop_front();
        }
        if self.closed.is_empty()
            && let Some(o) = &self.open
            && o.enc.last_t() < mint
        {
            bytes += o.enc.capacity();
            chunks += 1;
            self.open = None;
        }
        (chunks, bytes)
    }

    /// Drops the oldest closed chunks whose end falls in a budget bucket `<= cutoff`
    /// (`bucket(max_t)`); returns (chunks, bytes) dropped.
    pub fn drop_closed_until(
        &mut self,
        cutoff: i64,
        bucket: impl Fn(i64) -> i64,
    ) -> (usize, usize) {
        let (mut chunks, mut bytes) = (0, 0);
        while let Some(c) = self.closed.front() {
            if bucket(c.max_t) > cutoff {
                break;
            }
            bytes += c.cost();
            chunks += 1;
            self.closed.pop_front();
        }
        (chunks, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn series() -> MemSeries {
        MemSeries::new(Labels::from_pairs([("__name__", "x")]), 0)
    }

    #[test]
    fn rejects_out_of_order_and_duplicates() {
        let mut s = series();
        assert!(matches!(s.append(10, 1.0), Ok(Appended::Stored { .. })));
        assert_eq!(s.append(10, 1.0), Ok(Appended::Ignored));
        assert_eq!(s.append(10, 2.0), Err(AppendError::Duplicate));
        assert_eq!(s.append(9, 1.0), Err(AppendError::OutOfOrder));
        // NaN compares by bits: the same NaN again is a duplicate to ignore.
        assert!(s.append(11, stale_nan()).is_ok());
        assert_eq!(s.append(11, stale_nan()), Ok(Appended::Ignored));
        assert_eq!(s.append(11, f64::NAN), Err(AppendError::Duplicate));
    }

    #[test]
    fn cuts_chunks_and_reads_ranges() {
        let mut s = series();
        let mut accounted: isize = 0;
        for i in 0..1000i64 {
            if let Ok(Appended::Stored { bytes, .. }) = s.append(i * 15_000, i as f64) {
                accounted += bytes;
            }
        }
        assert_eq!(s.closed.len(), 8);
        assert_eq!(accounted as usize, s.chunk_bytes());
        let mut out = Vec::new();
        s.samples_in(15_000 * 100, 15_000 * 300, &mut out);
        assert_eq!(out.len(), 201);
        assert_eq!(out[0].t, 15_000 * 100);
        assert_eq!(out[200].v, 300.0);
        let (dropped, bytes) = s.truncate_before(15_000 * 240);
        assert_eq!(dropped, 2);
        assert_eq!(s.min_time(), Some(15_000 * 240));
        assert_eq!(bytes + s.chunk_bytes(), accounted as usize);
        let (dropped, _) = s.truncate_before(i64::MAX);
        assert_eq!(dropped, 7);
        assert_eq!(s.chunk_count(), 0);
        assert!(!s.overlaps(i64::MIN, i64::MAX));
    }

    #[test]
    fn slow_series_cut_by_time_span() {
        let mut s = series();
        for i in 0..100i64 {
            s.append(i * 600_000, 1.0).unwrap();
        }
        // A chunk spans at most two hours: 10-minute samples give 13 per chunk.
        assert!(s.closed.len() >= 7);
        assert!(
            s.closed
                .iter()
                .all(|c| c.max_t - c.min_t <= MAX_CHUNK_SPAN_MS)
        );
    }
}
