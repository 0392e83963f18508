//! The write-ahead log: numbered segment files under `<dir>/wal/` holding CRC-framed records,
//! one batch per committed scrape.
//!
//! Frame: `u32 LE payload length | u32 LE CRC32 (IEEE) of the payload | payload`. Payloads:
//! - `1` series: repeated `uvarint id, uvarint n, n × (uvarint len, name, uvarint len, value)`;
//! - `2` samples: `i64 LE base time`, then repeated `uvarint id, varint (t - base), u64 LE v`.
//!
//! A commit writes its new series (in frames of at most [`SERIES_FRAME_BYTES`]) and then all
//! its samples in one frame with a single `write` call, so the samples of a scrape are in the
//! log entirely or (torn by a crash) not at all.
//!
//! Durability (the policy, stated once): every commit is written to the kernel before
//! `commit` returns, so a process crash (`kill -9`) loses nothing that was committed; the
//! segment is fsynced at most every [`super::Options::wal_sync_interval`] (and on rotation
//! and close), so a power loss loses at most that interval. Prometheus does not fsync per
//! commit either.
//!
//! A write error (disk full) rolls the segment back to its last whole frame when it can,
//! and the next commit starts a new segment; the series whose records were lost are written
//! again with the next batch that gets through, and the head asks for a snapshot so samples
//! committed meanwhile become durable.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::Labels;

/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 8;

/// Largest payload a reader accepts; a larger length field is corruption (a commit's sample
/// frame is bounded by [`super::Options::max_samples_per_commit`] × 19 bytes).
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// A series frame is closed at this size and a new one started, so one commit creating very
/// many series does not build one giant frame.
pub const SERIES_FRAME_BYTES: usize = 4 << 20;

pub const REC_SERIES: u8 = 1;
pub const REC_SAMPLES: u8 = 2;

/// Largest label count accepted when decoding (the head enforces the same on append).
pub const MAX_LABELS: usize = 256;

pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, super::chunk::zigzag(x));
}

pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

pub fn put_labels(buf: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_bytes(buf, l.name.as_bytes());
        put_bytes(buf, l.value.as_bytes());
    }
}

/// Reads fields from a payload; every read is bounds-checked and `None` past the end.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    pub data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    pub fn uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    pub fn varint(&mut self) -> Option<i64> {
        self.uvarint().map(super::chunk::unzigzag)
    }

    pub fn u64_le(&mut self) -> Option<u64> {
        let (head, rest) = self.data.split_first_chunk::<8>()?;
        self.data = rest;
        Some(u64::from_le_bytes(*head))
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.uvarint()?).ok()?;
        if n > self.data.len() {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    pub fn labels(&mut self) -> Option<Labels> {
        let n = usize::try_from(self.uvarint()?).ok()?;
        if n > MAX_LABELS {
            return None;
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str()?;
            let value = self.str()?;
            pairs.push((name, value));
        }
        Some(Labels::from_pairs(pairs))
    }
}

/// How reading a log or snapshot file stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The file ends inside a frame: what a crash during a write leaves.
    Torn { offset: u64 },
    /// A whole frame is wrong (bad length or checksum, or an undecodable payload).
    Corrupt { offset: u64, reason: String },
}

impl FrameError {
    pub fn offset(&self) -> u64 {
        match self {
            Self::Torn { offset } | Self::Corrupt { offset, .. } => *offset,
        }
    }
}

/// Streams frames from a file without holding it in memory.
#[derive(Debug)]
pub struct FrameReader<R> {
    r: R,
    /// Offset of the next frame.
    pub offset: u64,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(r: R, offset: u64) -> Self {
        Self {
            r,
            offset,
            buf: Vec::new(),
        }
    }

    fn read_full(&mut self, n: usize) -> io::Result<usize> {
        self.buf.clear();
        let got = (&mut self.r).take(n as u64).read_to_end(&mut self.buf)?;
        Ok(got)
    }

    /// The next payload; `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> io::Result<Result<Option<&[u8]>, FrameError>> {
        let start = self.offset;
        let got = self.read_full(FRAME_HEADER)?;
        if got == 0 {
            return Ok(Ok(None));
        }
        let Some((len, crc)) = self
            .buf
            .split_first_chunk::<4>()
            .and_then(|(l, rest)| Some((u32::from_le_bytes(*l), rest.first_chunk::<4>()?)))
            .map(|(l, c)| (l as usize, u32::from_le_bytes(*c)))
        else {
            return Ok(Err(FrameError::Torn { offset: start }));
        };
        if len > MAX_RECORD_BYTES {
            return Ok(Err(FrameError::Corrupt {
                offset: start,
                reason: format!("frame length {len} over the limit"),
            }));
        }
        if self.read_full(len)? < len {
            return Ok(Err(FrameError::Torn { offset: start }));
        }
        if crc32fast::hash(&self.buf) != crc {
            return Ok(Err(FrameError::Corrupt {
                offset: start,
                reason: "checksum mismatch".into(),
            }));
        }
        self.offset = start + (FRAME_HEADER + len) as u64;
        Ok(Ok(Some(&self.buf)))
    }
}

/// Appends a frame around `payload` to `out`.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Fills in the header of the frame whose header starts at `start` in `out`.
fn seal_frame(out: &mut [u8], start: usize) {
    let Some((header, payload)) = out
        .get_mut(start..)
        .and_then(|f| f.split_at_mut_checked(FRAME_HEADER))
    else {
        return;
    };
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&crc);
}

pub fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

/// Segments in `dir`, by number.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 8
            && name.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = name.parse::<u32>()
        {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// fsyncs a directory so a created or renamed file survives power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment writer and the batch being built; lives under the TSDB's WAL mutex.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    file: Option<File>,
    /// Number of the open segment (or of the next one to open).
    seg: u32,
    /// Bytes of whole frames in the open segment.
    size: u64,
    segment_bytes: u64,
    sync_interval: Duration,
    last_sync: Instant,
    unsynced: bool,
    /// Start a new segment before the next write (after a failed write).
    rotate_next: bool,
    /// Frames of the batch being built.
    frames: Vec<u8>,
    samples: Vec<u8>,
    series_frame: Option<usize>,
    /// Series written in the batch being built.
    batch_series: Vec<u32>,
    /// Series whose records were lost to a failed write: written again with the next batch.
    pub unlogged: Vec<u32>,
    /// Whether the last write failed (to log a burst of errors once).
    pub failing: bool,
}

impl WalWriter {
    /// A writer whose first segment will be `first_seg` (created on the first write).
    pub fn new(dir: PathBuf, first_seg: u32, segment_bytes: u64, sync_interval: Duration) -> Self {
        Self {
            dir,
            file: None,
            seg: first_seg,
            size: 0,
            segment_bytes: segment_bytes.max(1 << 16),
            sync_interval,
            last_sync: Instant::now(),
            unsynced: false,
            rotate_next: false,
            frames: Vec::new(),
            samples: Vec::new(),
            series_frame: None,
            batch_series: Vec::new(),
            unlogged: Vec::new(),
            failing: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment(&self) -> u32 {
        self.seg
    }

    pub fn begin(&mut self) {
        self.frames.clear();
        self.samples.clear();
        self.series_frame = None;
        self.batch_series.clear();
    }

    fn close_series_frame(&mut self) {
        if let Some(start) = self.series_frame.take() {
            seal_frame(&mut self.frames, start);
        }
    }

    pub fn add_series(&mut self, id: u32, labels: &Labels) {
        let start = match self.series_frame {
            Some(s) => s,
            None => {
                let s = self.frames.len();
                self.frames.extend_from_slice(&[0; FRAME_HEADER]);
                self.frames.push(REC_SERIES);
                self.series_frame = Some(s);
                s
            }
        };
        put_uvarint(&mut self.frames, u64::from(id));
        put_labels(&mut self.frames, labels);
        self.batch_series.push(id);
        if self.frames.len() - start > SERIES_FRAME_BYTES {
            self.close_series_frame();
        }
    }

    pub fn add_sample(&mut self, id: u32, t: i64, v: f64) {
        if self.samples.is_empty() {
            self.samples.push(REC_SAMPLES);
            self.samples.extend_from_slice(&t.to_le_bytes());
        }
        let base = self
            .samples
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map_or(t, i64::from_le_bytes);
        put_uvarint(&mut self.samples, u64::from(id));
        put_varint(&mut self.samples, t.wrapping_sub(base));
        self.samples.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn batch_is_empty(&self) -> bool {
        self.frames.is_empty() && self.samples.is_empty()
    }

    fn open_segment(&mut self) -> io::Result<()> {
        loop {
            let path = self.dir.join(segment_name(self.seg));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => {
                    self.file = Some(f);
                    self.size = 0;
                    sync_dir(&self.dir)?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.seg = self.seg.checked_add(1).ok_or(e)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the open segment (fsynced) so the next write starts segment `seg + 1`; returns
    /// the number of that next segment: everything written so far is in lower segments.
    pub fn rotate(&mut self) -> io::Result<u32> {
        let res = self.sync();
        if self.file.take().is_some() {
            self.seg = self.seg.saturating_add(1);
        }
        self.rotate_next = false;
        res.map(|()| self.seg)
    }

    /// Writes the batch; returns the bytes written. On error the series of the batch are
    /// remembered to be written again.
    pub fn write_batch(&mut self) -> io::Result<u64> {
        self.close_series_frame();
        if !self.samples.is_empty() {
            let samples = std::mem::take(&mut self.samples);
            push_frame(&mut self.frames, &samples);
            self.samples = samples;
        }
        if self.frames.is_empty() {
            return Ok(0);
        }
        let res = self.write_frames();
        match &res {
            Ok(_) => {
                if self.failing {
                    tracing::info!(dir = %self.dir.display(), "WAL writes work again");
                }
                self.failing = false;
            }
            Err(_) => {
                self.unlogged.extend_from_slice(&self.batch_series);
            }
        }
        res
    }

    fn write_frames(&mut self) -> io::Result<u64> {
        if self.rotate_next || self.size >= self.segment_bytes {
            let _ = self.rotate();
        }
        if self.file.is_none() {
            self.open_segment()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no WAL segment open"));
        };
        let len = self.frames.len() as u64;
        if let Err(e) = file.write_all(&self.frames) {
            // Cut a partly written frame off so the segment ends on a whole frame; if even
            // that fails the next write starts a new segment and replay treats this one's
            // tail as torn.
            let _ = file.set_len(self.size);
            self.rotate_next = true;
            return Err(e);
        }
        self.size += len;
        self.unsynced = true;
        if self.last_sync.elapsed() >= self.sync_interval {
            self.sync()?;
        }
        Ok(len)
    }

    /// fsyncs the open segment if it has unsynced writes.
    pub fn sync(&mut self) -> io::Result<()> {
        if let (true, Some(f)) = (self.unsynced, &self.file) {
            f.sync_data()?;
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Whether the sync interval has passed with writes pending.
    pub fn sync_due(&self) -> bool {
        self.unsynced && self.last_sync.elapsed() >= self.sync_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_tails_are_classified() {
        let mut out = Vec::new();
        push_frame(&mut out, b"hello");
        push_frame(&mut out, b"");
        push_frame(&mut out, b"world");
        let mut r = FrameReader::new(&out[..], 0);
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b"hello"[..]));
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b""[..]));
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b"world"[..]));
        assert_eq!(r.next_frame().unwrap().unwrap(), None);

        let torn = &out[..out.len() - 2];
        let mut r = FrameReader::new(torn, 0);
        r.next_frame().unwrap().unwrap();
        r.next_frame().unwrap().unwrap();
        assert_eq!(
            r.next_frame().unwrap(),
            Err(FrameError::Torn { offset: 21 })
        );

        let mut bad = out.clone();
        bad[10] ^= 1;
        let mut r = FrameReader::new(&bad[..], 0);
        assert!(matches!(
            r.next_frame().unwrap(),
            Err(FrameError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn batch_encodes_series_then_samples() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::new(dir.path().to_path_buf(), 1, 1 << 20, Duration::ZERO);
        w.begin();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        w.add_series(7, &labels);
        w.add_sample(7, 1000, 1.0);
        w.add_sample(7, 990, f64::NAN);
        let n = w.write_batch().unwrap();
        let data = std::fs::read(dir.path().join("00000001")).unwrap();
        assert_eq!(data.len() as u64, n);
        let mut r = FrameReader::new(&data[..], 0);
        let p = r.next_frame().unwrap().unwrap().unwrap().to_vec();
        let mut c = Cursor::new(&p);
        assert_eq!(c.u8(), Some(REC_SERIES));
        assert_eq!(c.uvarint(), Some(7));
        assert_eq!(c.labels(), Some(labels));
        assert!(c.is_empty());
        let p = r.next_frame().unwrap().unwrap().unwrap().to_vec();
        let mut c = Cursor::new(&p);
        assert_eq!(c.u8(), Some(REC_SAMPLES));
        assert_eq!(c.u64_le(), Some(1000));
        assert_eq!(
            (c.uvarint(), c.varint(), c.u64_le()),
            (Some(7), Some(0), Some(1f64.to_bits()))
        );
        assert_eq!(c.uvarint(), Some(7));
        assert_eq!(c.varint(), Some(-10));
        assert_eq!(c.u64_le(), Some(f64::NAN.to_bits()));
        assert!(c.is_empty());
        assert_eq!(w.rotate().unwrap(), 2);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    }
}
