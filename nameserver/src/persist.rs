//! The registry on disk: a snapshot plus a journal of the changes since it, so a restarted
//! nameserver serves the fleet it had, under the zone serial it had.
//!
//! # Files
//! Both live in one directory, created `0700` (files `0600`). Both are text, one JSON document
//! per line, each line prefixed with the CRC-32 of its JSON bytes (IEEE, as `crc32fast`
//! computes it) in eight lowercase hex digits and a space: `format!("{crc:08x} {json}\n")`.
//!
//! - `registry.snapshot`: a header line, then one [`StoredInstance`] per line, sorted by
//!   `(service, instance)`:
//!   ```text
//!   789399ad {"format":"heimdall-registry","version":1,"serial":1700000042,"count":1}
//!   599c6d75 {"service":"exporter","instance":"web-1","address":"10.0.0.1","port":9100,"labels":{},"ttl_seconds":null,"health_path":null}
//!   ```
//!   It is only ever replaced whole: written to `registry.snapshot.tmp`, fsynced, renamed over
//!   `registry.snapshot`, directory fsynced.
//! - `registry.journal`: one line per [`Persist::append`], all changes of one atomic update and
//!   the zone serial they produced, fdatasynced before `append` returns:
//!   ```text
//!   12c5a0c4 {"serial":1700000043,"changes":[{"op":"delete","service":"exporter","instance":"web-1"}]}
//!   ```
//!   After each snapshot it is replaced by an empty file the same atomic way.
//!
//! The header's `version` covers the journal beside it; a version this build does not know
//! is refused with [`PersistError::UnsupportedVersion`] before any file is touched.
//!
//! # Loading
//! The snapshot, then every journal entry in order. Every [`Change`] is a blind write: it sets
//! or clears entries without looking at them, so applying an entry that the snapshot already
//! holds changes nothing. That is what makes a crash between renaming a new snapshot into place
//! and emptying the journal harmless, and it is why entries are replayed whatever their serial:
//! no serial comparison decides what is kept, so a serial that repeats or goes back (the
//! nameserver derives its first serial from the clock) cannot make a load drop an acknowledged
//! change. The loaded serial is the last journal entry's, else the snapshot's.
//!
//! # Damage
//! A line with a bad CRC, JSON that is not what the file holds, a line over
//! [`MAX_LINE_BYTES`], a torn last line (no newline) or a line past [`MAX_LINES`] ends the
//! reading of that file: the lines before it are kept, and [`Loaded::problems`] gets one
//! `path:line: reason` entry (also logged with `tracing::error!`). The damaged file is kept as
//! `<name>.corrupt-<unix-seconds>` (hard-linked, so a crash during repair still finds the
//! original) and a clean snapshot of what was recovered is written, so the next start is clean.
//! A snapshot whose header is unreadable contributes nothing, loudly; a snapshot missing beside
//! an existing journal is reported too (the first open writes both files). Callers decide with
//! [`Loaded::is_clean`] whether to serve a repaired registry.
//!
//! # Compaction
//! When the journal reaches [`COMPACT_AFTER_ENTRIES`] entries or [`COMPACT_AFTER_BYTES`],
//! `append` writes a snapshot of its in-memory copy of the registry and empties the journal. An
//! update whose journal line would exceed [`MAX_LINE_BYTES`] (say, a mass lease expiry) is
//! stored by compacting first and then writing the updated state as the next snapshot.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The snapshot's file name inside the persistence directory.
pub const SNAPSHOT_FILE: &str = "registry.snapshot";
/// The journal's file name inside the persistence directory.
pub const JOURNAL_FILE: &str = "registry.journal";
/// The `format` of a snapshot header; anything else is refused, not overwritten.
const FORMAT: &str = "heimdall-registry";
/// The only snapshot `version` this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// Longest line, newline included. A longer line on disk is damage; an instance that would
/// need one is refused by `append`; a journal entry that would need one is stored by snapshot.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most lines read from one file; the rest is reported as damage. A snapshot of more
/// instances is refused, so a load never drops what a write accepted.
pub const MAX_LINES: usize = 1_000_000;
/// Journal entries that trigger a compaction: bounds the replay work of a start.
pub const COMPACT_AFTER_ENTRIES: usize = 1024;
/// Journal bytes that trigger a compaction: bounds the journal's size on disk.
pub const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

/// One registered instance as stored: what a restart needs to serve it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    /// Service name (a DNS label).
    pub service: String,
    /// Instance name (a DNS label), unique within its service.
    pub instance: String,
    /// Address of the instance's A or AAAA record.
    pub address: IpAddr,
    /// Port of the SRV record.
    pub port: u16,
    /// Labels: TXT `key=value` strings and http_sd meta labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lease length; `None`: no expiry. Only the length is stored, not when the lease began.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// HTTP path probed by health checks, if any.
    #[serde(default)]
    pub health_path: Option<String>,
}

/// One change to the registry. Each is a blind write, which is what lets a load replay a
/// journal entry the snapshot already holds (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Creates or replaces `service/instance`.
    Put(StoredInstance),
    /// Removes one instance; an absent one is no error.
    Delete { service: String, instance: String },
    /// Removes every instance of a service.
    DeleteService { service: String },
}

/// What [`Persist::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The registry as last stored, sorted by `(service, instance)`.
    pub instances: Vec<StoredInstance>,
    /// The zone serial of the last stored update; 0 for a new directory.
    pub serial: u32,
    /// Damage found and repaired, one `path:line: reason` sentence each. Not empty means
    /// `instances` may lack changes that were once acknowledged.
    pub problems: Vec<String>,
}

impl Loaded {
    /// Whether both files read back whole; otherwise see [`Loaded::problems`].
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why persistence failed. Each names the file and what was being done to it.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} is not a Heimdall registry snapshot (format {format:?}); refusing to touch it", path.display())]
    NotASnapshot { path: PathBuf, format: String },
    #[error(
        "{} has format version {version}, but this build reads only version {}; \
         refusing to guess (was it written by a newer Heimdall?)",
        path.display(),
        FORMAT_VERSION
    )]
    UnsupportedVersion { path: PathBuf, version: u64 },
    #[error(
        "cannot store instance {service}/{instance}: it encodes to {len} bytes, over the {} byte line limit",
        MAX_LINE_BYTES
    )]
    InstanceTooLarge {
        service: String,
        instance: String,
        len: usize,
    },
    #[error("cannot store more than {} instances in {}", MAX_LINES - 1, path.display())]
    TooManyInstances { path: PathBuf },
    #[error("{} holds {entries} entries and cannot be compacted; refusing to grow it past what a load reads", path.display())]
    JournalFull { path: PathBuf, entries: usize },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "persistence in {} stopped after an earlier failure ({reason}); \
         what is on disk is no longer known, reopen to reload it",
        dir.display()
    )]
    Stopped { dir: PathBuf, reason: String },
}

/// The registry keyed as the snapshot sorts it.
type State = BTreeMap<(String, String), StoredInstance>;

/// The open persistence directory: appends to the journal, compacts it into the snapshot.
/// Every call is blocking file I/O under `&mut self`: call it from `spawn_blocking` or under
/// the mutex that orders the updates. One process per directory; nothing locks it.
pub struct Persist {
    dir: PathBuf,
    journal_path: PathBuf,
    /// Opened for appending; replaced whenever the journal file is.
    journal: File,
    journal_entries: usize,
    /// Length of the journal, which ends after its last whole entry.
    journal_bytes: u64,
    /// The registry as stored, kept to write snapshots without asking the caller.
    state: State,
    serial: u32,
    /// Set when a failure left the files in a state this process no longer knows (a failed
    /// fsync after a write or rename); every later call then refuses.
    stopped: Option<String>,
    compact_entries: usize,
    compact_bytes: u64,
}

impl fmt::Debug for Persist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persist")
            .field("dir", &self.dir)
            .field("instances", &self.state.len())
            .field("serial", &self.serial)
            .field("journal_entries", &self.journal_entries)
            .field("journal_bytes", &self.journal_bytes)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Persist {
    /// Opens `dir` (created `0700` if missing), loads the snapshot and replays the journal.
    /// Damage is repaired and reported in [`Loaded::problems`], not returned as an error. A
    /// snapshot of another format or version is an error and leaves both files untouched;
    /// so does an I/O failure while reading.
    pub fn open(dir: &Path) -> Result<(Self, Loaded), PersistError> {
        ensure_dir(dir)?;
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        // Leftovers of a crash mid-write; never read, the rename had not happened.
        for tmp in [&snapshot_path, &journal_path].map(|p| tmp_path(p)) {
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("remove", &tmp)(e));
                }
                _ => {}
            }
        }

        let snapshot_file = open_existing(&snapshot_path)?;
        let journal_file = open_existing(&journal_path)?;
        let mut state = State::new();
        let mut problems = Vec::new();
        let mut snapshot_serial = None;
        let mut snapshot_damage = None;
        let mut write_snapshot = false;
        match snapshot_file {
            // First, so a version this build cannot read stops us before anything changes.
            Some(file) => {
                let read = read_snapshot(&snapshot_path, file)?;
                state = read.state;
                snapshot_serial = read.serial;
                snapshot_damage = read.damage;
            }
            None if journal_file.is_some() => {
                let problem = format!(
                    "{}: missing although {} exists (every open writes both); \
                     the instances it held are lost, only the journal's changes are loaded",
                    snapshot_path.display(),
                    journal_path.display()
                );
                tracing::error!("{problem}");
                problems.push(problem);
                write_snapshot = true;
            }
            None => write_snapshot = true,
        }

        let mut journal_serial = None;
        let mut journal_entries = 0;
        let mut journal_bytes = 0;
        let mut journal_damage = None;
        let journal_missing = journal_file.is_none();
        if let Some(file) = journal_file {
            let read = read_journal(&journal_path, file, &mut state)?;
            journal_serial = read.serial;
            journal_entries = read.scanned.lines;
            journal_bytes = read.scanned.bytes;
            journal_damage = read.scanned.damage;
        }

        for (path, damage) in [
            (&snapshot_path, snapshot_damage),
            (&journal_path, journal_damage),
        ] {
            let Some(damage) = damage else { continue };
            let kept = preserve(path)?;
            let problem = format!(
                "{}:{}: {}; loaded the lines before it, kept the damaged file as {}",
                path.display(),
                damage.line,
                damage.reason,
                kept.display()
            );
            tracing::error!("{problem}");
            problems.push(problem);
            write_snapshot = true;
        }

        let serial = journal_serial.or(snapshot_serial).unwrap_or(0);
        if write_snapshot {
            write_snapshot_file(dir, &state, serial)?;
            sync_dir(dir)?;
        }
        // A rewritten snapshot holds the journal's changes, so the journal starts over.
        if write_snapshot || journal_missing {
            write_empty_journal(dir)?;
            sync_dir(dir)?;
            journal_entries = 0;
            journal_bytes = 0;
        }
        let journal = open_journal(&journal_path)?;
        tracing::info!(
            dir = %dir.display(),
            instances = state.len(),
            serial,
            journal_entries,
            problems = problems.len(),
            "registry loaded"
        );
        let loaded = Loaded {
            instances: state.values().cloned().collect(),
            serial,
            problems,
        };
        let persist = Self {
            dir: dir.to_path_buf(),
            journal_path,
            journal,
            journal_entries,
            journal_bytes,
            state,
            serial,
            stopped: None,
            compact_entries: COMPACT_AFTER_ENTRIES,
            compact_bytes: COMPACT_AFTER_BYTES,
        };
        Ok((persist, loaded))
    }

    /// Stores one atomic update, `changes` plus the zone `serial` it produced, durably
    /// (write + fdatasync) before returning; then compacts if the journal is due.
    ///
    /// On error nothing of the update is acknowledged, and callers should not apply it; it
    /// may still be found on disk at the next start if the failure came after the write
    /// (a failed fdatasync). A failed compaction after a stored update is logged, not
    /// returned, and retried on the next call.
    pub fn append(&mut self, changes: &[Change], serial: u32) -> Result<(), PersistError> {
        self.check_running()?;
        self.check_fits(changes)?;
        if self.serial != 0 && serial_newer(self.serial, serial) {
            tracing::warn!(
                previous = self.serial,
                serial,
                "zone serial went backwards; stored anyway, but secondaries will ignore the zone"
            );
        }
        let line = encode_line(&EntryRef { serial, changes }, "a journal entry")?;
        if line.len() > MAX_LINE_BYTES {
            return self.append_by_snapshot(changes, serial);
        }
        if self.journal_entries >= MAX_LINES {
            return Err(PersistError::JournalFull {
                path: self.journal_path.clone(),
                entries: self.journal_entries,
            });
        }
        if let Err(e) = self.journal.write_all(line.as_bytes()) {
            // A partial line would glue onto the next entry and hide it at the next load.
            if let Err(t) = self.journal.set_len(self.journal_bytes) {
                self.stop(format!(
                    "cannot cut a partial entry off {}: {t}",
                    self.journal_path.display()
                ));
            }
            return Err(io_error("write", &self.journal_path)(e));
        }
        if let Err(e) = self.journal.sync_data() {
            // After a failed fdatasync the kernel may have dropped the pages: nothing about the
            // file can be trusted any more (PostgreSQL's "fsyncgate").
            let e = io_error("fdatasync", &self.journal_path)(e);
            self.stop(e.to_string());
            return Err(e);
        }
        for change in changes {
            apply(&mut self.state, change);
        }
        self.serial = serial;
        self.journal_entries += 1;
        self.journal_bytes += line.len() as u64;
        let due = self.journal_entries >= self.compact_entries
            || self.journal_bytes >= self.compact_bytes;
        if due && let Err(e) = self.snapshot_now() {
            tracing::error!(error = %e, "cannot compact the registry journal; will retry");
        }
        Ok(())
    }

    /// Writes a snapshot of the stored registry and empties the journal, both atomically.
    /// Called by `append` when the journal is due, and by the caller at shutdown so the next
    /// start has nothing to replay.
    pub fn snapshot_now(&mut self) -> Result<(), PersistError> {
        self.check_running()?;
        write_snapshot_file(&self.dir, &self.state, self.serial)?;
        self.sync_dir_or_stop()?;
        write_empty_journal(&self.dir)?;
        // The old handle now points at the replaced file: appends there would be lost.
        match open_journal(&self.journal_path) {
            Ok(file) => self.journal = file,
            Err(e) => {
                self.stop(e.to_string());
                return Err(e);
            }
        }
        self.journal_entries = 0;
        self.journal_bytes = 0;
        self.sync_dir_or_stop()?;
        tracing::debug!(
            dir = %self.dir.display(),
            instances = self.state.len(),
            serial = self.serial,
            "registry snapshot written"
        );
        Ok(())
    }

    /// Stores an update too large for one journal line as the next snapshot. Compacting first
    /// leaves the journal empty, so no journal entry can be replayed over the new snapshot.
    fn append_by_snapshot(&mut self, changes: &[Change], serial: u32) -> Result<(), PersistError> {
        self.snapshot_now()?;
        let mut next = self.state.clone();
        for change in changes {
            apply(&mut next, change);
        }
        write_snapshot_file(&self.dir, &next, serial)?;
        self.sync_dir_or_stop()?;
        self.state = next;
        self.serial = serial;
        Ok(())
    }

    /// Refuses an update that could not be written to or read back from a snapshot.
    fn check_fits(&self, changes: &[Change]) -> Result<(), PersistError> {
        let mut puts = 0;
        for change in changes {
            if let Change::Put(i) = change {
                encode_instance(i)?;
                puts += 1;
            }
        }
        if self.state.len() + puts >= MAX_LINES {
            return Err(PersistError::TooManyInstances {
                path: self.dir.join(SNAPSHOT_FILE),
            });
        }
        Ok(())
    }

    fn check_running(&self) -> Result<(), PersistError> {
        match &self.stopped {
            Some(reason) => Err(PersistError::Stopped {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn stop(&mut self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "registry persistence stopped");
        self.stopped = Some(reason);
    }

    /// A rename happened; if it cannot be made durable, the files are in an unknown state.
    fn sync_dir_or_stop(&mut self) -> Result<(), PersistError> {
        sync_dir(&self.dir).inspect_err(|e| self.stop(e.to_string()))
    }
}

/// RFC 1982 serial number arithmetic: whether `a` is newer than `b`. Two serials exactly
/// 2^31 apart are undefined by the RFC and neither is newer.
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u64,
    serial: u32,
    count: u64,
}

/// Just enough of a header to refuse another format or version before parsing the rest.
#[derive(Deserialize)]
struct HeaderProbe {
    format: String,
    version: u64,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    serial: u32,
    changes: &'a [Change],
}

#[derive(Deserialize)]
struct Entry {
    serial: u32,
    changes: Vec<Change>,
}

fn apply(state: &mut State, change: &Change) {
    match change {
        Change::Put(i) => {
            state.insert((i.service.clone(), i.instance.clone()), i.clone());
        }
        Change::Delete { service, instance } => {
            state.remove(&(service.clone(), instance.clone()));
        }
        Change::DeleteService { service } => state.retain(|(s, _), _| s != service),
    }
}

/// `{crc:08x} {json}\n` for `value`.
fn encode_line<T: Serialize>(value: &T, what: &'static str) -> Result<String, PersistError> {
    // serde_json escapes control characters inside strings, so the JSON is one line.
    let json =
        serde_json::to_string(value).map_err(|source| PersistError::Encode { what, source })?;
    Ok(format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())))
}

fn encode_instance(i: &StoredInstance) -> Result<String, PersistError> {
    let line = encode_line(i, "an instance")?;
    if line.len() > MAX_LINE_BYTES {
        return Err(PersistError::InstanceTooLarge {
            service: i.service.clone(),
            instance: i.instance.clone(),
            len: line.len(),
        });
    }
    Ok(line)
}

/// Checks one line as read (newline included) and returns its JSON bytes, or why it is damaged.
fn parse_line(line: &[u8]) -> Result<&[u8], String> {
    let Some(body) = line.strip_suffix(b"\n") else {
        return Err(if line.len() >= MAX_LINE_BYTES {
            format!("line longer than {MAX_LINE_BYTES} bytes")
        } else {
            "torn line: the file ends without a newline".into()
        });
    };
    let crc = body
        .get(..8)
        .filter(|_| body.get(8) == Some(&b' '))
        .and_then(|hex| {
            hex.iter().try_fold(0u32, |crc, &b| {
                char::from(b).to_digit(16).map(|d| crc << 4 | d)
            })
        })
        .ok_or("no CRC prefix (8 hex digits and a space)")?;
    let json = &body[9..];
    let actual = crc32fast::hash(json);
    if actual != crc {
        return Err(format!(
            "CRC mismatch: the line says {crc:08x}, its content hashes to {actual:08x}"
        ));
    }
    Ok(json)
}

/// Where reading a file stopped early.
#[derive(Debug)]
struct Damage {
    line: usize,
    reason: String,
}

/// What [`scan`] read.
#[derive(Debug)]
struct Scanned {
    /// Whole, accepted lines.
    lines: usize,
    /// Their bytes, newlines included.
    bytes: u64,
    damage: Option<Damage>,
}

/// Why a line's handler stopped the scan.
enum Stop {
    /// The line is damaged: keep what came before it.
    Damaged(String),
    /// The file must not be used at all.
    Refuse(PersistError),
}

/// Reads `file` line by line, at most `max_lines` of at most [`MAX_LINE_BYTES`], passing each
/// line's number (from 1) and checked JSON to `each`. Stops at the first damaged line.
fn scan(
    path: &Path,
    file: File,
    max_lines: usize,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), Stop>,
) -> Result<Scanned, PersistError> {
    let mut reader = BufReader::new(file);
    let mut buf = Vec::with_capacity(512);
    let mut scanned = Scanned {
        lines: 0,
        bytes: 0,
        damage: None,
    };
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .map_err(io_error("read", path))?;
        if n == 0 {
            return Ok(scanned);
        }
        let line = scanned.lines + 1;
        let damaged = |reason| Damage { line, reason };
        if line > max_lines {
            scanned.damage = Some(damaged(format!("more than {max_lines} lines")));
            return Ok(scanned);
        }
        let result = parse_line(&buf)
            .map_err(Stop::Damaged)
            .and_then(|json| each(line, json));
        match result {
            Ok(()) => {}
            Err(Stop::Damaged(reason)) => {
                scanned.damage = Some(damaged(reason));
                return Ok(scanned);
            }
            Err(Stop::Refuse(e)) => return Err(e),
        }
        scanned.lines = line;
        scanned.bytes += n as u64;
    }
}

struct SnapshotRead {
    state: State,
    /// `None` when the header is unreadable.
    serial: Option<u32>,
    damage: Option<Damage>,
}

fn read_snapshot(path: &Path, file: File) -> Result<SnapshotRead, PersistError> {
    let mut state = State::new();
    let mut header = None;
    let scanned = scan(path, file, MAX_LINES, |line, json| {
        if line == 1 {
            header = Some(parse_header(path, json)?);
            return Ok(());
        }
        let i: StoredInstance = serde_json::from_slice(json)
            .map_err(|e| Stop::Damaged(format!("not an instance: {e}")))?;
        state.insert((i.service.clone(), i.instance.clone()), i);
        Ok(())
    })?;
    let Some(header) = header else {
        let why = match scanned.damage {
            Some(d) => d.reason,
            None => "the file is empty".into(),
        };
        return Ok(SnapshotRead {
            state: State::new(),
            serial: None,
            damage: Some(Damage {
                line: 1,
                reason: format!(
                    "header unreadable ({why}); NONE of the snapshot's instances were loaded, \
                     only the journal's changes"
                ),
            }),
        });
    };
    let found = scanned.lines.saturating_sub(1) as u64;
    let damage = match scanned.damage {
        Some(mut d) => {
            d.reason = format!(
                "{}; kept {found} of the {} instances the header promises",
                d.reason, header.count
            );
            Some(d)
        }
        None if found < header.count => Some(Damage {
            line: scanned.lines + 1,
            reason: format!(
                "the file ends here, but the header promises {} instances (found {found})",
                header.count
            ),
        }),
        None if found > header.count => Some(Damage {
            line: (header.count + 2) as usize,
            reason: format!(
                "more instances than the {} the header promises (found {found}, all kept)",
                header.count
            ),
        }),
        None => None,
    };
    Ok(SnapshotRead {
        state,
        serial: Some(header.serial),
        damage,
    })
}

fn parse_header(path: &Path, json: &[u8]) -> Result<Header, Stop> {
    let unreadable = |e: serde_json::Error| Stop::Damaged(format!("not a snapshot header: {e}"));
    let probe: HeaderProbe = serde_json::from_slice(json).map_err(unreadable)?;
    if probe.format != FORMAT {
        return Err(Stop::Refuse(PersistError::NotASnapshot {
            path: path.to_path_buf(),
            format: probe.format,
        }));
    }
    if probe.version != FORMAT_VERSION {
        return Err(Stop::Refuse(PersistError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: probe.version,
        }));
    }
    serde_json::from_slice(json).map_err(unreadable)
}

struct JournalRead {
    scanned: Scanned,
    /// The last applied entry's serial.
    serial: Option<u32>,
}

/// Replays the journal onto `state`, one whole entry at a time.
fn read_journal(path: &Path, file: File, state: &mut State) -> Result<JournalRead, PersistError> {
    let mut serial = None;
    let scanned = scan(path, file, MAX_LINES, |_, json| {
        let entry: Entry = serde_json::from_slice(json)
            .map_err(|e| Stop::Damaged(format!("not a journal entry: {e}")))?;
        for change in &entry.changes {
            apply(state, change);
        }
        serial = Some(entry.serial);
        Ok(())
    })?;
    Ok(JournalRead { scanned, serial })
}

fn write_snapshot_file(dir: &Path, state: &State, serial: u32) -> Result<(), PersistError> {
    if state.len() >= MAX_LINES {
        return Err(PersistError::TooManyInstances {
            path: dir.join(SNAPSHOT_FILE),
        });
    }
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        serial,
        count: state.len() as u64,
    };
    let header = encode_line(&header, "the snapshot header");
    let lines = std::iter::once(header).chain(state.values().map(encode_instance));
    replace_file(&dir.join(SNAPSHOT_FILE), lines)
}

fn write_empty_journal(dir: &Path) -> Result<(), PersistError> {
    replace_file(&dir.join(JOURNAL_FILE), std::iter::empty())
}

/// Writes `lines` to `<path>.tmp`, fsyncs it and renames it over `path`. The caller fsyncs the
/// directory. On error `path` is as it was.
fn replace_file(
    path: &Path,
    lines: impl Iterator<Item = Result<String, PersistError>>,
) -> Result<(), PersistError> {
    let tmp = tmp_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    let mut w = BufWriter::new(file);
    for line in lines {
        w.write_all(line?.as_bytes())
            .map_err(io_error("write", &tmp))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| io_error("write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(io_error("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", &tmp))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn open_journal(path: &Path) -> Result<File, PersistError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error("open", path))
}

fn open_existing(path: &Path) -> Result<Option<File>, PersistError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("open", path)(e)),
    }
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync", dir))
}

fn ensure_dir(dir: &Path) -> Result<(), PersistError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                    "registry directory is readable by others; 0700 is expected"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create directory", dir))?;
            // The new directory's own entry must be durable before files in it are.
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent)
        }
        Err(e) => Err(io_error("stat", dir)(e)),
    }
}

/// Keeps the damaged file at `path` as `<name>.corrupt-<unix-seconds>` and returns that path.
/// A hard link rather than a rename, so that until the repaired file is renamed over `path`,
/// a crash leaves the original in place to be found (and repaired) again.
fn preserve(path: &Path) -> Result<PathBuf, PersistError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{secs}"));
    for n in 0..1000 {
        let mut kept = base.clone();
        if n > 0 {
            kept.push(format!("-{n}"));
        }
        let kept = PathBuf::from(kept);
        match fs::hard_link(path, &kept) {
            Ok(()) => return Ok(kept),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // Filesystems without hard links: copy instead.
            Err(_) => match copy_new(path, &kept) {
                Ok(()) => return Ok(kept),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("keep a copy of", path)(e)),
            },
        }
    }
    Err(io_error("keep a copy of", path)(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "1000 .corrupt files of this second already exist",
    )))
}

fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(service: &str, instance: &str, port: u16) -> StoredInstance {
        StoredInstance {
            service: service.into(),
            instance: instance.into(),
            address: "10.0.0.1".parse().unwrap(),
            port,
            labels: BTreeMap::new(),
            ttl_seconds: None,
            health_path: None,
        }
    }

    fn put(service: &str, instance: &str, port: u16) -> Change {
        Change::Put(inst(service, instance, port))
    }

    fn delete(service: &str, instance: &str) -> Change {
        Change::Delete {
            service: service.into(),
            instance: instance.into(),
        }
    }

    fn open(dir: &Path) -> (Persist, Loaded) {
        Persist::open(dir).unwrap()
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        loaded
            .instances
            .iter()
            .map(|i| format!("{}/{}:{}", i.service, i.instance, i.port))
            .collect()
    }

    fn corrupt_files(dir: &Path, name: &str) -> Vec<PathBuf> {
        let prefix = format!("{name}.corrupt-");
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&prefix)
            })
            .collect()
    }

    fn line_count(path: &Path) -> usize {
        fs::read_to_string(path).unwrap().lines().count()
    }

    #[test]
    fn lines_are_checked() {
        let good = encode_line(&inst("a", "b", 1), "x").unwrap();
        let json = parse_line(good.as_bytes()).unwrap();
        assert_eq!(
            serde_json::from_slice::<StoredInstance>(json).unwrap(),
            inst("a", "b", 1)
        );
        let flipped = good.replacen("\"a\"", "\"c\"", 1);
        assert!(
            parse_line(flipped.as_bytes())
                .unwrap_err()
                .starts_with("CRC mismatch")
        );
        let torn = &good.as_bytes()[..good.len() - 1];
        assert!(parse_line(torn).unwrap_err().starts_with("torn line"));
        assert!(
            parse_line(b"{}\n")
                .unwrap_err()
                .starts_with("no CRC prefix")
        );
        assert!(
            parse_line(b"zzzzzzzz {}\n")
                .unwrap_err()
                .starts_with("no CRC prefix")
        );
        assert!(parse_line(b"\n").unwrap_err().starts_with("no CRC prefix"));
        let long = vec![b'x'; MAX_LINE_BYTES];
        assert!(parse_line(&long).unwrap_err().starts_with("line longer"));
        // The format is exactly what the module doc shows.
        let header = Header {
            format: FORMAT.into(),
            version: 1,
            serial: 1_700_000_042,
            count: 1,
        };
        let mut web1 = inst("exporter", "web-1", 9100);
        web1.address = "10.0.0.1".parse().unwrap();
        let entry = EntryRef {
            serial: 1_700_000_043,
            changes: &[delete("exporter", "web-1")],
        };
        let doc = include_str!("persist.rs");
        for line in [
            encode_line(&header, "x").unwrap(),
            encode_instance(&web1).unwrap(),
            encode_line(&entry, "x").unwrap(),
        ] {
            assert!(doc.contains(&format!("//!   {line}")), "{line}");
        }
    }

    #[test]
    fn serials_compare_across_the_wrap() {
        assert!(serial_newer(1, 0));
        assert!(!serial_newer(0, 1));
        assert!(!serial_newer(7, 7));
        assert!(serial_newer(0, u32::MAX));
        assert!(serial_newer(5, u32::MAX - 5));
        assert!(!serial_newer(u32::MAX, 0));
        assert!(serial_newer((1 << 31) - 1, 0));
        // Exactly 2^31 apart: undefined, neither is newer.
        assert!(!serial_newer(1 << 31, 0));
        assert!(!serial_newer(0, 1 << 31));
    }

    #[test]
    fn empty_dir_is_an_empty_clean_registry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/registry");
        let (_, loaded) = open(&dir);
        assert_eq!(loaded, Loaded::default());
        assert!(loaded.is_clean());
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(line_count(&dir.join(SNAPSHOT_FILE)), 1);
        assert_eq!(fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len(), 0);
        let (_, again) = open(&dir);
        assert_eq!(again, Loaded::default());
    }

    #[test]
    fn appends_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut full = inst("exporter", "db-1", 9100);
        full.address = "2001:db8::1".parse().unwrap();
        full.labels
            .insert("rack".into(), "r1 \"quoted\"\nnewline".into());
        full.ttl_seconds = Some(60);
        full.health_path = Some("/healthz".into());
        {
            let (mut p, _) = open(tmp.path());
            p.append(
                &[put("exporter", "web-1", 1), put("exporter", "web-2", 2)],
                10,
            )
            .unwrap();
            p.append(&[Change::Put(full.clone())], 11).unwrap();
            p.append(&[delete("exporter", "web-1"), put("scraper", "s-1", 3)], 12)
                .unwrap();
            p.append(&[put("gone", "g-1", 4), put("gone", "g-2", 5)], 13)
                .unwrap();
            p.append(
                &[Change::DeleteService {
                    service: "gone".into(),
                }],
                14,
            )
            .unwrap();
            p.append(&[put("exporter", "web-2", 22)], 15).unwrap();
        }
        let (_, loaded) = open(tmp.path());
        assert!(loaded.is_clean(), "{:?}", loaded.problems);
        assert_eq!(loaded.serial, 15);
        assert_eq!(
            names(&loaded),
            ["exporter/db-1:9100", "exporter/web-2:22", "scraper/s-1:3"]
        );
        assert_eq!(loaded.instances[0], full);
        assert_eq!(line_count(&tmp.path().join(JOURNAL_FILE)), 6);
    }

    #[test]
    fn compaction_triggers_and_keeps_state() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = tmp.path().join(JOURNAL_FILE);
        let (mut p, _) = open(tmp.path());
        p.compact_entries = 4;
        for n in 0..10u16 {
            p.append(
                &[put("exporter", &format!("web-{n}"), n + 1)],
                100 + u32::from(n),
            )
            .unwrap();
        }
        // Compacted after the 4th and the 8th entry.
        assert_eq!(line_count(&journal), 2);
        assert_eq!(line_count(&tmp.path().join(SNAPSHOT_FILE)), 1 + 8);
        // By bytes, too.
        p.compact_entries = usize::MAX;
        p.compact_bytes = 1;
        p.append(&[delete("exporter", "web-0")], 110).unwrap();
        assert_eq!(fs::metadata(&journal).unwrap().len(), 0);
        drop(p);
        let (_, loaded) = open(tmp.path());
        assert!(loaded.is_clean(), "{:?}", loaded.problems);
        assert_eq!(loaded.serial, 110);
        assert_eq!(loaded.instances.len(), 9);
        assert_eq!(loaded.instances[0].instance, "web-1");
    }

    #[test]
    fn an_update_too_large_for_a_line_is_stored_by_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut p, _) = open(tmp.path());
        p.append(&[put("keep", "k-1", 1)], 1).unwrap();
        let many: Vec<Change> = (0..1500)
            .map(|n| put("fleet", &format!("node-{n:04}"), 9100))
            .collect();
        assert!(encode_line(&many, "x").unwrap().len() > MAX_LINE_BYTES);
        p.append(&many, 2).unwrap();
        let expire: Vec<Change> = (0..1499)
            .map(|n| delete("fleet", &format!("node-{n:04}")))
            .collect();
        p.append(&expire, 3).unwrap();
        assert_eq!(
            fs::metadata(tmp.path().join(JOURNAL_FILE)).unwrap().len(),
            0
        );
        drop(p);
        let (_, loaded) = open(tmp.path());
        assert!(loaded.is_clean(), "{:?}", loaded.problems);
        assert_eq!(loaded.serial, 3);
        assert_eq!(names(&loaded), ["fleet/node-1499:9100", "keep/k-1:1"]);
    }

    #[test]
    fn torn_journal_tail_keeps_the_prefix_and_is_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = tmp.path().join(JOURNAL_FILE);
        {
            let (mut p, _) = open(tmp.path());
            for n in 1..=3u16 {
                p.append(&[put("exporter", &format!("web-{n}"), n)], u32::from(n))
                    .unwrap();
            }
        }
        let torn = encode_line(
            &EntryRef {
                serial: 4,
                changes: &[put("exporter", "web-4", 4)],
            },
            "x",
        )
        .unwrap();
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        drop(f);

        let (_, loaded) = open(tmp.path());
        assert_eq!(
            names(&loaded),
            ["exporter/web-1:1", "exporter/web-2:2", "exporter/web-3:3"]
        );
        assert_eq!(loaded.serial, 3);
        assert!(!loaded.is_clean());
        assert_eq!(loaded.problems.len(), 1);
        let problem = &loaded.problems[0];
        assert!(
            problem.starts_with(&format!("{}:4: torn line", journal.display())),
            "{problem}"
        );
        let kept = corrupt_files(tmp.path(), JOURNAL_FILE);
        assert_eq!(kept.len(), 1);
        assert!(problem.contains(&kept[0].display().to_string()));
        assert_eq!(line_count(&kept[0]), 4);

        let (mut p, again) = open(tmp.path());
        assert!(again.is_clean(), "{:?}", again.problems);
        assert_eq!(again.instances, loaded.instances);
        assert_eq!(again.serial, 3);
        // And it goes on working.
        p.append(&[put("exporter", "web-4", 4)], 4).unwrap();
        drop(p);
        let (_, last) = open(tmp.path());
        assert!(last.is_clean());
        assert_eq!(last.instances.len(), 4);
    }

    #[test]
    fn bit_flip_in_the_snapshot_keeps_the_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshot = tmp.path().join(SNAPSHOT_FILE);
        {
            let (mut p, _) = open(tmp.path());
            let puts: Vec<Change> = (0..10)
                .map(|n| put("exporter", &format!("web-{n}"), 1000 + n))
                .collect();
            p.append(&puts, 77).unwrap();
            p.snapshot_now().unwrap();
        }
        // Flip one bit inside the JSON of line 6 (the 5th instance, web-4).
        let mut bytes = fs::read(&snapshot).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let at = text.find("\"web-4\"").unwrap() + 2;
        bytes[at] ^= 0x01;
        fs::write(&snapshot, &bytes).unwrap();

        let (_, loaded) = open(tmp.path());
        assert_eq!(loaded.instances.len(), 4);
        assert_eq!(loaded.instances[3].instance, "web-3");
        assert_eq!(loaded.serial, 77);
        assert_eq!(loaded.problems.len(), 1);
        let problem = &loaded.problems[0];
        assert!(
            problem.starts_with(&format!("{}:6: CRC mismatch", snapshot.display())),
            "{problem}"
        );
        assert!(problem.contains("kept 4 of the 10 instances"), "{problem}");
        let kept = corrupt_files(tmp.path(), SNAPSHOT_FILE);
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::read(&kept[0]).unwrap(), bytes);

        let (_, again) = open(tmp.path());
        assert!(again.is_clean(), "{:?}", again.problems);
        assert_eq!(again.instances, loaded.instances);
    }

    #[test]
    fn unreadable_header_is_loud_and_the_journal_still_applies() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshot = tmp.path().join(SNAPSHOT_FILE);
        {
            let (mut p, _) = open(tmp.path());
            p.append(&[put("old", "o-1", 1)], 5).unwrap();
            p.snapshot_now().unwrap();
            p.append(&[put("new", "n-1", 2)], 6).unwrap();
        }
        let text = fs::read_to_string(&snapshot).unwrap();
        fs::write(&snapshot, text.replacen("\"serial\"", "\"serisl\"", 1)).unwrap();

        let (_, loaded) = open(tmp.path());
        assert_eq!(names(&loaded), ["new/n-1:2"]);
        assert_eq!(loaded.serial, 6);
        assert!(!loaded.is_clean());
        let problem = &loaded.problems[0];
        assert!(
            problem.starts_with(&format!("{}:1: header unreadable", snapshot.display())),
            "{problem}"
        );
        assert!(
            problem.contains("NONE of the snapshot's instances"),
            "{problem}"
        );
        assert_eq!(corrupt_files(tmp.path(), SNAPSHOT_FILE).len(), 1);

        // An empty snapshot file has no header either.
        fs::write(&snapshot, "").unwrap();
        let (_, empty) = open(tmp.path());
        assert!(empty.problems[0].contains("header unreadable (the file is empty)"));
        // The journal was folded into the snapshot by the repair before, so nothing is left.
        assert!(empty.instances.is_empty());
    }

    #[test]
    fn missing_snapshot_beside_a_journal_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut p, _) = open(tmp.path());
            p.append(&[put("a", "a-1", 1)], 1).unwrap();
        }
        fs::remove_file(tmp.path().join(SNAPSHOT_FILE)).unwrap();
        let (_, loaded) = open(tmp.path());
        assert_eq!(names(&loaded), ["a/a-1:1"]);
        assert!(
            loaded.problems[0].contains("missing although"),
            "{:?}",
            loaded.problems
        );
        assert!(open(tmp.path()).1.is_clean());
    }

    #[test]
    fn snapshot_cut_at_a_line_boundary_is_caught_by_the_count() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshot = tmp.path().join(SNAPSHOT_FILE);
        {
            let (mut p, _) = open(tmp.path());
            p.append(
                &[put("a", "a-1", 1), put("a", "a-2", 2), put("a", "a-3", 3)],
                9,
            )
            .unwrap();
            p.snapshot_now().unwrap();
        }
        let text = fs::read_to_string(&snapshot).unwrap();
        let cut: Vec<&str> = text.split_inclusive('\n').take(3).collect();
        fs::write(&snapshot, cut.concat()).unwrap();
        let (_, loaded) = open(tmp.path());
        assert_eq!(loaded.instances.len(), 2);
        assert!(
            loaded.problems[0].starts_with(&format!(
                "{}:4: the file ends here, but the header promises 3 instances (found 2)",
                snapshot.display()
            )),
            "{:?}",
            loaded.problems
        );
    }

    #[test]
    fn crash_between_snapshot_and_journal_reset_loses_and_duplicates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = tmp.path().join(JOURNAL_FILE);
        let (mut p, _) = open(tmp.path());
        // Changes that would go wrong if replayed out of order or only in part.
        p.append(&[put("s", "a", 1), put("s", "b", 1)], 1).unwrap();
        p.append(&[delete("s", "a")], 2).unwrap();
        p.append(
            &[Change::DeleteService {
                service: "s".into(),
            }],
            3,
        )
        .unwrap();
        p.append(&[put("s", "b", 2), put("t", "c", 1)], 4).unwrap();
        let old_journal = fs::read(&journal).unwrap();
        p.snapshot_now().unwrap();
        drop(p);
        // The crash: the snapshot was renamed into place, the journal not yet replaced.
        fs::write(&journal, &old_journal).unwrap();

        let (mut p, loaded) = open(tmp.path());
        assert!(loaded.is_clean(), "{:?}", loaded.problems);
        assert_eq!(names(&loaded), ["s/b:2", "t/c:1"]);
        assert_eq!(loaded.serial, 4);
        // Appending after the stale entries still ends in the right state.
        p.append(&[delete("s", "b"), put("s", "a", 5)], 5).unwrap();
        drop(p);
        let (_, loaded) = open(tmp.path());
        assert!(loaded.is_clean(), "{:?}", loaded.problems);
        assert_eq!(names(&loaded), ["s/a:5", "t/c:1"]);
        assert_eq!(loaded.serial, 5);
    }

    #[test]
    fn a_serial_that_goes_back_loses_nothing() {
        // The nameserver takes its first serial from the clock; after a restart it can be older
        // than the snapshot's. Entries are replayed regardless.
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut p, _) = open(tmp.path());
            p.append(&[put("s", "a", 1)], 2_000).unwrap();
            p.snapshot_now().unwrap();
            p.append(&[put("s", "b", 1)], 1_000).unwrap();
            p.append(&[put("s", "c", 1)], 1_000).unwrap();
        }
        let (_, loaded) = open(tmp.path());
        assert!(loaded.is_clean());
        assert_eq!(names(&loaded), ["s/a:1", "s/b:1", "s/c:1"]);
        assert_eq!(loaded.serial, 1_000);
    }

    #[test]
    fn serials_wrap() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (mut p, _) = open(tmp.path());
            p.append(&[put("s", "a", 1)], u32::MAX).unwrap();
            p.snapshot_now().unwrap();
            p.append(&[put("s", "b", 1)], 0).unwrap();
            p.append(&[put("s", "c", 1)], 1).unwrap();
        }
        let (_, loaded) = open(tmp.path());
        assert_eq!(loaded.instances.len(), 3);
        assert_eq!(loaded.serial, 1);
    }

    #[test]
    fn unknown_version_or_format_is_refused_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let snapshot = tmp.path().join(SNAPSHOT_FILE);
        let journal = tmp.path().join(JOURNAL_FILE);
        for (header, want) in [
            (
                r#"{"format":"heimdall-registry","version":2,"serial":1,"count":0,"new":true}"#,
                "has format version 2, but this build reads only version 1",
            ),
            (
                r#"{"format":"something-else","version":1}"#,
                "is not a Heimdall registry snapshot",
            ),
        ] {
            let content = format!("{:08x} {header}\n", crc32fast::hash(header.as_bytes()));
            fs::write(&snapshot, &content).unwrap();
            fs::write(&journal, "garbage\n").unwrap();
            let err = Persist::open(tmp.path()).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert!(err.to_string().contains(SNAPSHOT_FILE), "{err}");
            assert_eq!(fs::read_to_string(&snapshot).unwrap(), content);
            assert_eq!(fs::read_to_string(&journal).unwrap(), "garbage\n");
            assert!(corrupt_files(tmp.path(), JOURNAL_FILE).is_empty());
        }
    }

    #[test]
    fn long_lines_and_too_many_lines_are_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = tmp.path().join(JOURNAL_FILE);
        {
            let (mut p, _) = open(tmp.path());
            p.append(&[put("s", "a", 1)], 1).unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(&vec![b'x'; 70 * 1024]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let (mut p, loaded) = open(tmp.path());
        assert_eq!(names(&loaded), ["s/a:1"]);
        assert!(
            loaded.problems[0].starts_with(&format!(
                "{}:2: line longer than 65536 bytes",
                journal.display()
            )),
            "{:?}",
            loaded.problems
        );

        for n in 0..5u16 {
            p.append(&[put("s", &format!("n{n}"), 1)], 2).unwrap();
        }
        let file = File::open(&journal).unwrap();
        let mut seen = 0;
        let scanned = scan(&journal, file, 3, |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((seen, scanned.lines), (3, 3));
        let damage = scanned.damage.unwrap();
        assert_eq!(
            (damage.line, damage.reason.as_str()),
            (4, "more than 3 lines")
        );
    }

    #[test]
    fn an_instance_too_large_for_a_line_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut p, _) = open(tmp.path());
        let mut big = inst("s", "big", 1);
        big.labels.insert("k".into(), "v".repeat(MAX_LINE_BYTES));
        let err = p
            .append(&[put("s", "ok", 1), Change::Put(big)], 1)
            .unwrap_err();
        assert!(
            matches!(err, PersistError::InstanceTooLarge { .. }),
            "{err}"
        );
        drop(p);
        let (_, loaded) = open(tmp.path());
        assert!(loaded.instances.is_empty() && loaded.is_clean());
    }

    #[test]
    fn errors_name_the_path_and_the_operation() {
        let err = io_error("fsync", Path::new("/x/registry.journal"))(io::Error::other("EIO"));
        assert_eq!(err.to_string(), "cannot fsync /x/registry.journal: EIO");
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let err = Persist::open(&file.join("registry")).unwrap_err();
        assert!(err.to_string().starts_with("cannot stat"), "{err}");
    }
}
