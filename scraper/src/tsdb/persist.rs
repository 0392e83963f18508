//! Snapshots (checkpoints) of the head and the replay of the WAL at start.
//!
//! A snapshot `<dir>/snapshot.NNNNNNNN` holds every series with its chunks as they were
//! after all WAL segments below `NNNNNNNN` (it may hold later commits too: replaying a
//! commit twice is harmless, since samples not newer than a series' last one are skipped).
//! It is written to `snapshot.tmp`, fsynced, renamed and the directory fsynced, so a crash
//! leaves either the old or the new snapshot whole. Format: the magic `HMDLSNP1`, then WAL
//! frames: `3` one series (`uvarint id, labels, varint created_t, varint last_t, u64 last_v,
//! uvarint n, n × (varint min_t, varint max_t, bytes chunk), u8 has_open, [varint min_t,
//! bytes chunk]`), and last `4` the trailer (`uvarint series, varint min_valid_t, uvarint
//! shards, shards × uvarint next_local`), whose absence marks an incomplete file.
//!
//! Restart = load the newest snapshot, then replay segments from its number on. A torn or
//! corrupt tail of the last segment is cut off with a warning naming file and offset (that is
//! what a crash leaves). A torn tail of an earlier segment (a write that failed on a full
//! disk) is cut too and replay goes on. A corrupt frame in an earlier segment keeps what came
//! before it: the segment and all later ones are renamed `*.corrupt`, an error names them,
//! and a snapshot is taken right away so the kept data is durable again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::chunk::{self, XorEncoder};
use super::head::{Head, Pending, SHARDS, Tally, shard_of};
use super::series::{ClosedChunk, MemSeries, OpenChunk};
use super::wal::{
    self, Cursor, FrameError, FrameReader, REC_SAMPLES, REC_SERIES, push_frame, put_bytes,
    put_labels, put_uvarint, put_varint, sync_dir,
};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"HMDLSNP1";
const REC_SNAP_SERIES: u8 = 3;
const REC_SNAP_TRAILER: u8 = 4;
const SNAPSHOT_PREFIX: &str = "snapshot.";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// Series encoded per shard-lock hold while writing a snapshot, so appends to that shard
/// wait for at most this many series to be copied.
const SNAPSHOT_BATCH: usize = 256;

/// What opening the data directory found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<PathBuf>,
    pub snapshot_series: u64,
    /// Why the snapshot could only be read in part.
    pub snapshot_error: Option<String>,
    pub segments: u64,
    pub records: u64,
    pub samples: u64,
    /// Samples in the log that were not applied (already in the snapshot, out of retention,
    /// unknown series).
    pub samples_skipped: u64,
    /// Tails cut off: (file, offset, bytes removed).
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// A corrupt frame before the last segment: (file, offset, reason); that file and later
    /// ones were renamed `*.corrupt`.
    pub corrupt: Option<(PathBuf, u64, String)>,
}

pub fn snapshot_name(seg: u32) -> String {
    format!("{SNAPSHOT_PREFIX}{seg:08}")
}

/// Complete snapshots in `dir`, by number.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(num) = name.to_str().and_then(|n| n.strip_prefix(SNAPSHOT_PREFIX)) else {
            continue;
        };
        if num.len() == 8
            && let Ok(n) = num.parse::<u32>()
        {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn encode_series(buf: &mut Vec<u8>, id: u32, s: &MemSeries) {
    buf.push(REC_SNAP_SERIES);
    put_uvarint(buf, u64::from(id));
    put_labels(buf, &s.labels);
    put_varint(buf, s.created_t);
    put_varint(buf, s.last_t);
    buf.extend_from_slice(&s.last_v.to_bits().to_le_bytes());
    put_uvarint(buf, s.closed.len() as u64);
    for c in &s.closed {
        put_varint(buf, c.min_t);
        put_varint(buf, c.max_t);
        put_bytes(buf, &c.data);
    }
    match &s.open {
        Some(o) => {
            buf.push(1);
            put_varint(buf, o.min_t);
            put_bytes(buf, o.enc.bytes());
        }
        None => buf.push(0),
    }
}

/// Writes a snapshot of `head` as `snapshot.<seg>` atomically; returns its size.
pub fn write_snapshot(head: &Head, dir: &Path, seg: u32, min_valid: i64) -> io::Result<u64> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let res = write_snapshot_file(head, &tmp, seg, min_valid).and_then(|size| {
        std::fs::rename(&tmp, dir.join(snapshot_name(seg)))?;
        sync_dir(dir)?;
        Ok(size)
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn write_snapshot_file(head: &Head, tmp: &Path, _seg: u32, min_valid: i64) -> io::Result<u64> {
    let file = File::create(tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(SNAPSHOT_MAGIC)?;
    let mut size = SNAPSHOT_MAGIC.len() as u64;
    let mut payload = Vec::new();
    let mut frames = Vec::new();
    let mut count = 0u64;
    for idx in 0..head.shard_count() {
        let ids = head.shard_ids(idx);
        for batch in ids.chunks(SNAPSHOT_BATCH) {
            frames.clear();
            if let Some(shard) = head.shard(idx) {
                for id in batch {
                    if let Some(s) = shard.series.get(id) {
                        payload.clear();
                        encode_series(&mut payload, *id, s);
                        push_frame(&mut frames, &payload);
                        count += 1;
                    }
                }
            }
            w.write_all(&frames)?;
            size += frames.len() as u64;
        }
    }
    payload.clear();
    payload.push(REC_SNAP_TRAILER);
    put_uvarint(&mut payload, count);
    put_varint(&mut payload, min_valid);
    let locals = head.next_locals();
    put_uvarint(&mut payload, locals.len() as u64);
    for n in locals {
        put_uvarint(&mut payload, u64::from(n));
    }
    frames.clear();
    push_frame(&mut frames, &payload);
    w.write_all(&frames)?;
    size += frames.len() as u64;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(size)
}

/// Trailer of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub series: u64,
    pub min_valid: i64,
    pub next_locals: Vec<u32>,
}

fn decode_series(head: &Head, c: &mut Cursor<'_>) -> Result<(), String> {
    let bad = |what: &str| format!("bad series record ({what})");
    let id = c
        .uvarint()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| bad("id"))?;
    let labels = c.labels().ok_or_else(|| bad("labels"))?;
    let created_t = c.varint().ok_or_else(|| bad("created"))?;
    let last_t = c.varint().ok_or_else(|| bad("last t"))?;
    let last_v = f64::from_bits(c.u64_le().ok_or_else(|| bad("last v"))?);
    let n = c.uvarint().ok_or_else(|| bad("chunk count"))?;
    let mut closed = std::collections::VecDeque::new();
    let mut prev_max = i64::MIN;
    for _ in 0..n {
        let _min = c.varint().ok_or_else(|| bad("chunk min"))?;
        let _max = c.varint().ok_or_else(|| bad("chunk max"))?;
        let data = c.bytes().ok_or_else(|| bad("chunk bytes"))?;
        let (min_t, max_t, _) =
            chunk::validate(data).map_err(|e| format!("chunk of series {id}: {e}"))?;
        if min_t <= prev_max && prev_max != i64::MIN {
            return Err(format!("chunks of series {id} overlap"));
        }
        prev_max = max_t;
        closed.push_back(ClosedChunk {
            min_t,
            max_t,
            data: data.into(),
        });
    }
    let open = match c.u8().ok_or_else(|| bad("open flag"))? {
        0 => None,
        _ => {
            let _min = c.varint().ok_or_else(|| bad("open min"))?;
            let data = c.bytes().ok_or_else(|| bad("open bytes"))?;
            let (min_t, max_t, _) =
                chunk::validate(data).map_err(|e| format!("open chunk of series {id}: {e}"))?;
            if min_t <= prev_max && prev_max != i64::MIN {
                return Err(format!("chunks of series {id} overlap"));
            }
            prev_max = max_t;
            let enc = XorEncoder::from_bytes(data).map_err(|e| e.to_string())?;
            Some(OpenChunk { min_t, enc })
        }
    };
    if !c.is_empty() {
        return Err(bad("trailing bytes"));
    }
    if !head.insert_with_id(id, &labels, true) {
        return Err(format!("series {id} ({labels}) clashes with another"));
    }
    if let Some(mut shard) = head.shard(shard_of(id))
        && let Some(s) = shard.series.get_mut(&id)
    {
        s.closed = closed;
        s.open = open;
        s.created_t = created_t;
        s.last_t = last_t.max(prev_max);
        s.last_v = last_v;
    }
    Ok(())
}

fn decode_trailer(c: &mut Cursor<'_>) -> Option<Trailer> {
    let series = c.uvarint()?;
    let min_valid = c.varint()?;
    let n = c.uvarint()?;
    if n != u64::from(SHARDS) {
        return None;
    }
    let mut next_locals = Vec::with_capacity(SHARDS as usize);
    for _ in 0..n {
        next_locals.push(u32::try_from(c.uvarint()?).ok()?);
    }
    Some(Trailer {
        series,
        min_valid,
        next_locals,
    })
}

/// Loads a snapshot into an empty head; what could not be read is described in the
/// report (the series before it are kept).
pub fn load_snapshot(
    head: &Head,
    path: &Path,
    report: &mut ReplayReport,
) -> io::Result<Option<Trailer>> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        let n = r.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    report.snapshot = Some(path.to_path_buf());
    if &magic != SNAPSHOT_MAGIC {
        report.snapshot_error = Some("not a snapshot (bad magic)".into());
        return Ok(None);
    }
    let mut frames = FrameReader::new(r, SNAPSHOT_MAGIC.len() as u64);
    let mut trailer = None;
    loop {
        let start = frames.offset;
        let payload = match frames.next_frame()? {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                report.snapshot_error = Some(match e {
                    FrameError::Torn { offset } => {
                        format!("ends inside a frame at offset {offset}")
                    }
                    FrameError::Corrupt { offset, reason } => {
                        format!("{reason} at offset {offset}")
                    }
                });
                break;
            }
        };
        let mut c = Cursor::new(payload);
        let res = match c.u8() {
            Some(REC_SNAP_SERIES) => decode_series(head, &mut c),
            Some(REC_SNAP_TRAILER) => {
                trailer = decode_trailer(&mut c);
                if trailer.is_none() {
                    Err("bad trailer".to_string())
                } else {
                    break;
                }
            }
            other => Err(format!("unknown record type {other:?}")),
        };
        match res {
            Ok(()) => report.snapshot_series += 1,
            Err(reason) => {
                report.snapshot_error = Some(format!("{reason} at offset {start}"));
                break;
            }
        }
    }
    if let Some(t) = &trailer {
        for (idx, &n) in t.next_locals.iter().enumerate() {
            head.set_next_local(idx, n);
        }
    } else if report.snapshot_error.is_none() {
        report.snapshot_error = Some("no trailer: the snapshot is incomplete".into());
    }
    if let Some(e) = &report.snapshot_error {
        tracing::error!(
            file = %path.display(),
            series_loaded = report.snapshot_series,
            "snapshot is damaged, keeping what could be read: {e}"
        );
    }
    Ok(trailer)
}

/// Decodes and applies one WAL record. `scratch` is reused across records.
fn apply_record(
    head: &Head,
    payload: &[u8],
    scratch: &mut Vec<Pending>,
    min_valid: i64,
    report: &mut ReplayReport,
) -> Result<(), String> {
    let mut c = Cursor::new(payload);
    match c.u8() {
        Some(REC_SERIES) => {
            let mut series = Vec::new();
            while !c.is_empty() {
                let id = c
                    .uvarint()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or("bad series id")?;
                let labels = c.labels().ok_or("bad series labels")?;
                series.push((id, labels));
            }
            for (id, labels) in series {
                if !head.insert_with_id(id, &labels, true) {
                    tracing::warn!(id, %labels, "WAL series record clashes with a known series; skipped");
                }
            }
            Ok(())
        }
        Some(REC_SAMPLES) => {
            let base = c.u64_le().ok_or("bad sample base")? as i64;
            scratch.clear();
            let mut seq = 0u32;
            while !c.is_empty() {
                let id = c
                    .uvarint()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or("bad sample id")?;
                let t = base.wrapping_add(c.varint().ok_or("bad sample time")?);
                let v = f64::from_bits(c.u64_le().ok_or("bad sample value")?);
                scratch.push(Pending { id, seq, t, v });
                seq = seq.wrapping_add(1);
            }
            let before = scratch.len() as u64;
            scratch.retain(|p| p.t >= min_valid);
            let mut tally = Tally::default();
            head.apply(scratch, &mut tally, None);
            report.samples += tally.appended;
            report.samples_skipped += before - tally.appended;
            Ok(())
        }
        other => Err(format!("unknown record type {other:?}")),
    }
}

fn truncate_file(path: &Path, offset: u64, report: &mut ReplayReport) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    f.set_len(offset)?;
    f.sync_all()?;
    report
        .truncated
        .push((path.to_path_buf(), offset, len.saturating_sub(offset)));
    Ok(())
}

/// Replays segments numbered `from` and up; returns the number the next segment should get.
pub fn replay_wal(
    head: &Head,
    wal_dir: &Path,
    from: u32,
    min_valid: i64,
    report: &mut ReplayReport,
) -> io::Result<u32> {
    let segments: Vec<(u32, PathBuf)> = wal::list_segments(wal_dir)?
        .into_iter()
        .filter(|(n, _)| *n >= from)
        .collect();
    let mut next = from;
    let mut scratch = Vec::new();
    for (i, (n, path)) in segments.iter().enumerate() {
        next = next.max(n.saturating_add(1));
        let last = i + 1 == segments.len();
        report.segments += 1;
        let mut frames = FrameReader::new(BufReader::with_capacity(1 << 20, File::open(path)?), 0);
        let stop = loop {
            let start = frames.offset;
            match frames.next_frame()? {
                Ok(None) => break None,
                Ok(Some(p)) => match apply_record(head, p, &mut scratch, min_valid, report) {
                    Ok(()) => report.records += 1,
                    Err(reason) => {
                        break Some(FrameError::Corrupt {
                            offset: start,
                            reason,
                        });
                    }
                },
                Err(e) => break Some(e),
            }
        };
        let Some(stop) = stop else { continue };
        let offset = stop.offset();
        match (&stop, last) {
            (FrameError::Torn { .. }, _) | (FrameError::Corrupt { .. }, true) => {
                let why = match &stop {
                    FrameError::Corrupt { reason, .. } => reason.as_str(),
                    FrameError::Torn { .. } => "record cut short",
                };
                truncate_file(path, offset, report)?;
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    "WAL segment has a torn tail ({why}); truncated there, earlier records replayed"
                );
            }
            (FrameError::Corrupt { reason, .. }, false) => {
                let mut moved = Vec::new();
                for (_, p) in segments.get(i..).unwrap_or_default() {
                    let mut to = p.clone().into_os_string();
                    to.push(".corrupt");
                    std::fs::rename(p, &to)?;
                    moved.push(PathBuf::from(to));
                }
                tracing::error!(
                    file = %path.display(),
                    offset,
                    reason = %reason,
                    moved = ?moved,
                    "WAL is corrupt before its last segment: kept the data before this offset, \
                     set the rest aside as *.corrupt"
                );
                report.corrupt = Some((path.clone(), offset, reason.clone()));
                break;
            }
        }
    }
    Ok(next)
}
