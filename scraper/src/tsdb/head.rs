//! The in-memory head: every series, sharded by id, with the postings index beside it.
//!
//! Concurrency: [`SHARDS`] mutexes each guard a map of series and a labels-hash → id map; a
//! series id encodes its shard (`id % SHARDS`), chosen from the hash of its labels, so both
//! lookups land in the same shard. Commits sort their samples by shard and take each shard
//! lock once, never once per sample; queries take a shard lock per series they read. The
//! postings index sits behind one `RwLock`, written only when series are created or dropped.
//!
//! Lock order: WAL mutex → shard mutex → postings lock. Queries read postings first and drop
//! that lock before touching shards.
//!
//! Ids are never reused: each shard counts up, so a [`crate::storage::SeriesRef`] kept by a
//! scrape loop after its series was dropped can never point at another series. [`IdSet`]
//! answers "is this id alive" without a lock for the append fast path.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::postings::Postings;
use super::series::{Appended, MemSeries};
use super::wal::WalWriter;
use crate::model::Labels;
use crate::storage::AppendError;

/// Number of shards (a power of two).
pub const SHARDS: u32 = 64;

/// Ids stay below this (2^30 series created over the life of the data directory); past it,
/// new series fail with [`AppendError::Limit`].
pub const MAX_IDS: u32 = 1 << 30;

const PAGE_IDS: u32 = 1 << 16;
const PAGE_WORDS: usize = (PAGE_IDS / 64) as usize;

/// Budget buckets: chunks are dropped for the memory budget by the minute their data ends.
pub const BUDGET_BUCKET_MS: i64 = 60_000;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hasher for keys that are already well mixed or small integers (ids, label hashes): one
/// multiply, so the high bits the table uses are spread too.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A lock-free set of live ids: a bitmap in 8 KiB pages allocated on first use.
#[derive(Debug)]
pub struct IdSet {
    pages: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Default for IdSet {
    fn default() -> Self {
        Self {
            pages: (0..MAX_IDS / PAGE_IDS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl IdSet {
    fn word(&self, id: u32, create: bool) -> Option<(&AtomicU64, u64)> {
        let page = self.pages.get((id / PAGE_IDS) as usize)?;
        let words = if create {
            page.get_or_init(|| (0..PAGE_WORDS).map(|_| AtomicU64::new(0)).collect())
        } else {
            page.get()?
        };
        let w = words.get(((id % PAGE_IDS) / 64) as usize)?;
        Some((w, 1u64 << (id % 64)))
    }

    pub fn insert(&self, id: u32) {
        if let Some((w, bit)) = self.word(id, true) {
            w.fetch_or(bit, Ordering::Release);
        }
    }

    pub fn remove(&self, id: u32) {
        if let Some((w, bit)) = self.word(id, false) {
            w.fetch_and(!bit, Ordering::Release);
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.word(id, false)
            .is_some_and(|(w, bit)| w.load(Ordering::Acquire) & bit != 0)
    }
}

/// Ids sharing one labels hash (nearly always one).
#[derive(Debug, Clone)]
enum HashIds {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug, Default)]
pub struct ShardData {
    pub series: IntMap<u32, MemSeries>,
    by_hash: IntMap<u64, HashIds>,
    /// Next local index; the next id is `next_local * SHARDS + shard`.
    pub next_local: u32,
}

impl ShardData {
    fn find(&self, hash: u64, labels: &Labels) -> Option<u32> {
        let same = |id: &u32| self.series.get(id).is_some_and(|s| s.labels == *labels);
        match self.by_hash.get(&hash)? {
            HashIds::One(id) => Some(*id).filter(same),
            HashIds::Many(ids) => ids.iter().copied().find(same),
        }
    }

    fn add_hash(&mut self, hash: u64, id: u32) {
        match self.by_hash.get_mut(&hash) {
            None => {
                self.by_hash.insert(hash, HashIds::One(id));
            }
            Some(HashIds::One(other)) => {
                let other = *other;
                self.by_hash.insert(hash, HashIds::Many(vec![other, id]));
            }
            Some(HashIds::Many(ids)) => ids.push(id),
        }
    }

    fn remove_hash(&mut self, hash: u64, id: u32) {
        match self.by_hash.get_mut(&hash) {
            Some(HashIds::One(x)) if *x == id => {
                self.by_hash.remove(&hash);
            }
            Some(HashIds::Many(ids)) => {
                ids.retain(|x| *x != id);
                if let [only] = ids.as_slice() {
                    let only = *only;
                    self.by_hash.insert(hash, HashIds::One(only));
                }
            }
            _ => {}
        }
    }
}

/// Counters a batch of work adds up before touching the shared atomics once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub appended: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub bytes: i64,
    pub chunks: i64,
    pub max_t: i64,
}

/// One buffered sample of an appender; `seq` keeps a series' samples in append order
/// after sorting by shard.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub id: u32,
    pub seq: u32,
    pub t: i64,
    pub v: f64,
}

/// What a retention or budget pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub chunks: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Head {
    shards: Box<[Mutex<ShardData>]>,
    pub postings: RwLock<Postings>,
    pub alive: IdSet,
    pub num_series: AtomicU64,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            postings: RwLock::default(),
            alive: IdSet::default(),
            num_series: AtomicU64::new(0),
        }
    }
}

pub fn shard_of(id: u32) -> usize {
    (id % SHARDS) as usize
}

impl Head {
    pub fn shard(&self, idx: usize) -> Option<MutexGuard<'_, ShardData>> {
        self.shards.get(idx).map(lock)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Runs `f` on series `id` under its shard lock.
    pub fn with_series<R>(&self, id: u32, f: impl FnOnce(&MemSeries) -> R) -> Option<R> {
        let shard = self.shard(shard_of(id))?;
        shard.series.get(&id).map(f)
    }

    /// The id of the series with `labels`, creating it (with interned labels) if needed;
    /// `true` when created.
    pub fn get_or_create(
        &self,
        labels: &Labels,
        t: i64,
        max_series: Option<u64>,
    ) -> Result<(u32, bool), AppendError> {
        let hash = labels.stable_hash();
        let shard_idx = (hash % u64::from(SHARDS)) as u32;
        let Some(mut shard) = self.shard(shard_idx as usize) else {
            return Err(AppendError::Limit("no shard".into()));
        };
        if let Some(id) = shard.find(hash, labels) {
            return Ok((id, false));
        }
        if max_series.is_some_and(|max| self.num_series.load(Ordering::Relaxed) >= max) {
            return Err(AppendError::Limit(
                "maximum number of series reached".into(),
            ));
        }
        let id = shard
            .next_local
            .checked_mul(SHARDS)
            .and_then(|x| x.checked_add(shard_idx))
            .filter(|&id| id < MAX_IDS)
            .ok_or_else(|| AppendError::Limit("series ids exhausted".into()))?;
        shard.next_local += 1;
        let interned = write(&self.postings).add(id, labels);
        shard.series.insert(id, MemSeries::new(interned, t));
        shard.add_hash(hash, id);
        self.alive.insert(id);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        Ok((id, true))
    }

    /// Recreates a series with a known id (snapshot load, WAL replay). Returns false when
    /// the id does not belong to the labels' shard or clashes with another series.
    pub fn insert_with_id(&self, id: u32, labels: &Labels, logged: bool) -> bool {
        let hash = labels.stable_hash();
        if id >= MAX_IDS || u64::from(id % SHARDS) != hash % u64::from(SHARDS) {
            return false;
        }
        let Some(mut shard) = self.shard(shard_of(id)) else {
            return false;
        };
        let local = id / SHARDS;
        shard.next_local = shard.next_local.max(local + 1);
        if let Some(s) = shard.series.get(&id) {
            return s.labels == *labels;
        }
        if shard.find(hash, labels).is_some() {
            return false;
        }
        let interned = write(&self.postings).add(id, labels);
        let mut s = MemSeries::new(interned, i64::MIN);
        s.logged = logged;
        shard.series.insert(id, s);
        shard.add_hash(hash, id);
        self.alive.insert(id);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Applies a sorted batch (by shard, then sequence), one lock per shard; accepted samples
    /// (and the labels of series not yet logged) go into the WAL batch.
    pub fn apply(&self, batch: &[Pending], tally: &mut Tally, mut wal: Option<&mut WalWriter>) {
        let mut rest = batch;
        while let Some(first) = rest.first() {
            let idx = shard_of(first.id);
            let end = rest
                .iter()
                .position(|p| shard_of(p.id) != idx)
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(end);
            rest = tail;
            let Some(mut shard) = self.shard(idx) else {
                tally.unknown += group.len() as u64;
                continue;
            };
            for p in group {
                let Some(s) = shard.series.get_mut(&p.id) else {
                    tally.unknown += 1;
                    continue;
                };
                match s.append(p.t, p.v) {
                    Ok(Appended::Stored { bytes, new_chunk }) => {
                        tally.appended += 1;
                        tally.bytes += bytes as i64;
                        tally.chunks += i64::from(new_chunk);
                        tally.max_t = tally.max_t.max(p.t);
                        if let Some(w) = wal.as_deref_mut() {
                            if !s.logged {
                                w.add_series(p.id, &s.labels);
                                s.logged = true;
                            }
                            w.add_sample(p.id, p.t, p.v);
                        }
                    }
                    Ok(Appended::Ignored) => {}
                    Err(AppendError::OutOfOrder) => tally.out_of_order += 1,
                    Err(_) => tally.duplicates += 1,
                }
            }
        }
    }

    /// Labels of series `id`, if alive.
    pub fn labels_of(&self, id: u32) -> Option<Labels> {
        self.with_series(id, |s| s.labels.clone())
    }

    /// Drops chunks that end before `min_valid` and collects series left empty whose newest
    /// sample (or creation) is older than it. Returns the drop counts and the oldest sample
    /// time still held.
    pub fn truncate(&self, min_valid: i64) -> (Dropped, i64, u64) {
        let mut dropped = Dropped::default();
        let mut min_time = i64::MAX;
        let mut removed: Vec<(u32, Labels)> = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let mut gone = Vec::new();
            for (&id, s) in shard.series.iter_mut() {
                let (c, b) = s.truncate_before(min_valid);
                dropped.chunks += c as u64;
                dropped.bytes += b as u64;
                match s.min_time() {
                    Some(t) => min_time = min_time.min(t),
                    None if s.last_t.max(s.created_t) < min_valid => gone.push(id),
                    None => {}
                }
            }
            for id in gone {
                if let Some(s) = shard.series.remove(&id) {
                    shard.remove_hash(s.labels.stable_hash(), id);
                    self.alive.remove(id);
                    removed.push((id, s.labels));
                }
            }
        }
        let n = removed.len() as u64;
        if n > 0 {
            write(&self.postings).remove(&removed);
            self.num_series.fetch_sub(n, Ordering::Relaxed);
        }
        (dropped, min_time, n)
    }

    /// Drops the globally oldest closed chunks (by the minute their data ends) until at least
    /// `excess` bytes are freed or no closed chunk is left.
    pub fn drop_oldest(&self, excess: u64) -> Dropped {
        let bucket = |t: i64| t.div_euclid(BUDGET_BUCKET_MS);
        let mut hist: BTreeMap<i64, u64> = BTreeMap::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for s in shard.series.values() {
                for c in &s.closed {
                    *hist.entry(bucket(c.max_t)).or_default() += c.cost() as u64;
                }
            }
        }
        let mut acc = 0u64;
        let mut cutoff = None;
        for (&b, &bytes) in &hist {
            acc += bytes;
            cutoff = Some(b);
            if acc >= excess {
                break;
            }
        }
        let mut dropped = Dropped::default();
        let Some(cutoff) = cutoff else {
            return dropped;
        };
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            for s in shard.series.values_mut() {
                let (c, b) = s.drop_closed_until(cutoff, bucket);
                dropped.chunks += c as u64;
                dropped.bytes += b as u64;
            }
        }
        dropped
    }

    /// Ids of one shard's series (for passes that release the lock between batches).
    pub fn shard_ids(&self, idx: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .shard(idx)
            .map(|s| s.series.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Next local index of every shard (persisted so ids are never reused).
    pub fn next_locals(&self) -> Vec<u32> {
        self.shards.iter().map(|s| lock(s).next_local).collect()
    }

    pub fn set_next_local(&self, idx: usize, next: u32) {
        if let Some(mut s) = self.shard(idx) {
            s.next_local = s.next_local.max(next);
        }
    }

    /// Counts over every series, for gauge resync and the memory estimate.
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        let per_series = (size_of::<MemSeries>() + size_of::<u32>() + 8) as u64
            + (size_of::<u64>() + size_of::<HashIds>() + 8) as u64;
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for s in shard.series.values() {
                c.chunks += s.chunk_count() as u64;
                c.chunk_bytes += s.chunk_bytes() as u64;
                c.encoded_bytes += s.closed.iter().map(|x| x.data.len() as u64).sum::<u64>()
                    + s.open.as_ref().map_or(0, |o| o.enc.bytes().len() as u64);
                c.series_bytes += per_series
                    + (s.labels.len() * size_of::<crate::model::Label>()) as u64
                    + (s.closed.capacity() * size_of::<super::series::ClosedChunk>()) as u64;
            }
        }
        c
    }
}

/// Totals over every series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub chunks: u64,
    /// Memory held by chunks (data, ring slots, spare capacity of open chunks).
    pub chunk_bytes: u64,
    /// Encoded chunk bytes only.
    pub encoded_bytes: u64,
    /// Series structs, label vectors, map slots.
    pub series_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(i: usize) -> Labels {
        Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())])
    }

    #[test]
    fn creates_once_and_ids_encode_the_shard() {
        let head = Head::default();
        let (a, created) = head.get_or_create(&labels(1), 0, None).unwrap();
        assert!(created);
        assert_eq!(head.get_or_create(&labels(1), 0, None).unwrap(), (a, false));
        assert_eq!(
            u64::from(a % SHARDS),
            labels(1).stable_hash() % u64::from(SHARDS)
        );
        assert!(head.alive.contains(a));
        assert_eq!(
            head.get_or_create(&labels(2), 0, Some(1)),
            Err(AppendError::Limit(
                "maximum number of series reached".into()
            ))
        );
        // Re-inserting with a foreign shard is refused.
        assert!(!head.insert_with_id(a + 1, &labels(1), true));
        assert!(head.insert_with_id(a, &labels(1), true));
    }

    #[test]
    fn gc_never_reuses_ids() {
        let head = Head::default();
        let (a, _) = head.get_or_create(&labels(1), 0, None).unwrap();
        let mut tally = Tally::default();
        head.apply(
            &[Pending {
                id: a,
                seq: 0,
                t: 10,
                v: 1.0,
            }],
            &mut tally,
            None,
        );
        assert_eq!(tally.appended, 1);
        let (dropped, _, removed) = head.truncate(1000);
        assert_eq!((dropped.chunks, removed), (1, 1));
        assert!(!head.alive.contains(a));
        let (b, created) = head.get_or_create(&labels(1), 2000, None).unwrap();
        assert!(created);
        assert_ne!(a, b);
        let mut tally = Tally::default();
        head.apply(
            &[Pending {
                id: a,
                seq: 0,
                t: 2000,
                v: 1.0,
            }],
            &mut tally,
            None,
        );
        assert_eq!(tally.unknown, 1);
    }

    #[test]
    fn id_set() {
        let s = IdSet::default();
        assert!(!s.contains(5));
        s.insert(5);
        s.insert(MAX_IDS - 1);
        s.insert(MAX_IDS);
        assert!(s.contains(5) && s.contains(MAX_IDS - 1) && !s.contains(MAX_IDS));
        s.remove(5);
        assert!(!s.contains(5));
    }
}
