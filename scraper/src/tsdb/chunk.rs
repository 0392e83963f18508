//! The XOR ("Gorilla") chunk codec, bit for bit the format of Prometheus'
//! `tsdb/chunkenc/xor.go` and `bstream.go`.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream (most significant bit first):
//! - sample 1: timestamp as a signed varint, value as 64 raw bits;
//! - sample 2: timestamp delta as an unsigned varint, value XOR-encoded against sample 1;
//! - sample n: delta-of-delta of the timestamp in one of the buckets `0` (dod = 0),
//!   `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits, `1111` + 64 bits (the buckets are
//!   Prometheus' millisecond ones, not the paper's seconds ones), then the value XORed with
//!   the previous one: `0` when equal, `10` + meaningful bits when they fit the previous
//!   leading/trailing-zero window, `11` + 5 bits leading + 6 bits length + bits otherwise.
//!
//! Timestamps must strictly increase within a chunk (the head rejects out-of-order and
//! duplicate samples before they get here). Values are stored as raw bits, so every NaN,
//! the staleness marker included, comes back bit-exact.
//!
//! Decoding never panics: a truncated or corrupt chunk ends the iteration with an error.

/// Samples after which the head starts a new chunk (Prometheus' value: a steady 15 s series
/// fills a chunk every 30 minutes, which is also the granularity of retention).
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Bytes of the sample-count header.
const HEADER_BYTES: usize = 2;

/// Initial leading-zero count meaning "no window yet" (Prometheus uses 0xff too).
const NO_WINDOW: u8 = 0xff;

/// A chunk that cannot be decoded (only chunks read back from disk can be corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk shorter than its header")]
    MissingHeader,
    #[error("chunk ends inside sample {0}")]
    Truncated(u16),
    #[error("chunk has an invalid value window at sample {0}")]
    BadWindow(u16),
    #[error("chunk timestamps do not increase at sample {0}")]
    NotIncreasing(u16),
    #[error("chunk holds no sample")]
    Empty,
}

/// Writes bits most significant first into a growable byte buffer.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits of the last byte (0: the next bit starts a new byte).
    free: u32,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `nbits` (0..=64) of `value`: the rest of the partial last byte, then
    /// whole bytes, then the leftover bits at the top of a new byte.
    fn write_bits(&mut self, value: u64, nbits: u32) {
        let mut left = nbits.min(64);
        if left == 0 {
            return;
        }
        if self.free > 0 {
            let take = left.min(self.free);
            let bits = (value >> (left - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.buf.last_mut() {
                // `bits < 2^take` and `take <= free <= 8`, so this stays within the byte.
                *last |= (bits as u8) << (self.free - take);
            }
            self.free -= take;
            left -= take;
        }
        while left >= 8 {
            left -= 8;
            self.buf.push((value >> left) as u8);
        }
        if left > 0 {
            self.buf.push((value << (8 - left)) as u8);
            self.free = 8 - left;
        }
    }

    fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }
}

/// Reads bits most significant first from a byte slice through a 64-bit accumulator.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load.
    pos: usize,
    /// Buffered bits, left-aligned.
    acc: u64,
    /// Valid bits in `acc`.
    n: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    fn refill(&mut self) {
        while self.n <= 56 {
            let Some(&b) = self.data.get(self.pos) else {
                break;
            };
            self.acc |= u64::from(b) << (56 - self.n);
            self.n += 8;
            self.pos += 1;
        }
    }

    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    /// Reads `nbits` (0..=64) bits; `None` past the end of the data.
    fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        if nbits == 0 {
            return Some(0);
        }
        if nbits > 32 {
            let hi = self.read_bits(nbits - 32)?;
            let lo = self.read_bits(32)?;
            return Some((hi << 32) | lo);
        }
        if nbits > self.n {
            self.refill();
            if nbits > self.n {
                return None;
            }
        }
        let v = self.acc >> (64 - nbits);
        self.acc <<= nbits;
        self.n -= nbits;
        Some(v)
    }

    fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|b| b as u8)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut x: u64 = 0;
        for i in 0..10 {
            let b = self.read_byte()?;
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    fn read_varint(&mut self) -> Option<i64> {
        self.read_uvarint().map(unzigzag)
    }

    /// Bits consumed so far.
    fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.n as usize
    }
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Prometheus' `bitRange`: whether `x` fits the `nbits` bucket, `-(2^(n-1)-1) ..= 2^(n-1)`.
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

/// The open chunk of a series: appends samples and can be read while it grows.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    bits: BitWriter,
    count: u16,
    t: i64,
    v: f64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl XorEncoder {
    /// An empty chunk whose buffer starts with room for `capacity` bytes (the head sizes it
    /// from the previous chunk of the series, so a steady series allocates once per chunk).
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_BYTES));
        buf.extend_from_slice(&[0, 0]);
        Self {
            bits: BitWriter { buf, free: 0 },
            count: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Resumes appending to an encoded chunk (read back from a snapshot): decodes it once
    /// to recover the encoder state.
    pub fn from_bytes(data: &[u8]) -> Result<Self, ChunkError> {
        let mut it = XorIter::new(data);
        for _ in it.by_ref() {}
        it.error()?;
        let count = it.total;
        let used_bits = it.br.consumed_bits();
        let body_bytes = used_bits.div_ceil(8);
        let mut buf = data
            .get(..HEADER_BYTES + body_bytes)
            .ok_or(ChunkError::MissingHeader)?
            .to_vec();
        let free = (body_bytes * 8 - used_bits) as u32;
        if free > 0
            && let Some(last) = buf.last_mut()
        {
            // Clear padding so later writes can OR into it.
            *last &= !((1u8 << free) - 1);
        }
        Ok(Self {
            bits: BitWriter { buf, free },
            count,
            t: it.t,
            v: it.v,
            t_delta: it.t_delta,
            leading: it.leading,
            trailing: it.trailing,
        })
    }

    /// Appends a sample; `t` must be greater than the last one's (checked by the caller).
    pub fn append(&mut self, t: i64, v: f64) {
        let mut t_delta = 0u64;
        match self.count {
            0 => {
                self.write_varint_bytes(zigzag(t));
                self.bits.write_bits(v.to_bits(), 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_varint_bytes(t_delta);
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                let w = &mut self.bits;
                if dod == 0 {
                    w.write_bit(false);
                } else if bit_range(dod, 14) {
                    w.write_byte(0b10 << 6 | ((dod >> 8) as u8 & ((1 << 6) - 1)));
                    w.write_byte(dod as u8);
                } else if bit_range(dod, 17) {
                    w.write_bits(0b110, 3);
                    w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    w.write_bits(0b1110, 4);
                    w.write_bits(dod as u64, 20);
                } else {
                    w.write_bits(0b1111, 4);
                    w.write_bits(dod as u64, 64);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.count = self.count.saturating_add(1);
        let [hi, lo] = self.count.to_be_bytes();
        if let Some(h) = self.bits.buf.get_mut(..HEADER_BYTES) {
            h.copy_from_slice(&[hi, lo]);
        }
    }

    /// Varints are written as whole bytes at the current bit position, as `bstream.writeByte`.
    fn write_varint_bytes(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.bits.write_byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.bits.write_byte(x as u8);
    }

    fn write_value(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.v.to_bits();
        let w = &mut self.bits;
        if delta == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let new_leading = (delta.leading_zeros() as u8).min(31);
        let new_trailing = delta.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && new_leading >= self.leading && new_trailing >= self.trailing
        {
            w.write_bit(false);
            w.write_bits(
                delta >> self.trailing,
                64 - u32::from(self.leading) - u32::from(self.trailing),
            );
            return;
        }
        self.leading = new_leading;
        self.trailing = new_trailing;
        w.write_bit(true);
        w.write_bits(u64::from(new_leading), 5);
        // 64 significant bits are written as 0 (they do not fit 6 bits); the reader maps
        // 0 back to 64, since 0 significant bits is the "equal" case above.
        let sigbits = 64 - u32::from(new_leading) - u32::from(new_trailing);
        w.write_bits(u64::from(sigbits), 6);
        w.write_bits(delta >> new_trailing, sigbits);
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// Timestamp of the last sample (meaningless while empty).
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// The encoded chunk so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bits.buf
    }

    /// Bytes held, counting spare capacity (what the chunk costs in memory).
    pub fn capacity(&self) -> usize {
        self.bits.buf.capacity()
    }

    /// Closes the chunk: the exact bytes, without spare capacity.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.bits.buf.into_boxed_slice()
    }

    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(self.bytes())
    }
}

/// Decodes a chunk without allocating. Yields `(t, v)`; after `None`, [`Self::error`] tells
/// whether the chunk ended cleanly.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    br: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: f64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    err: Option<ChunkError>,
}

impl<'a> XorIter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let (total, err, body) = match data {
            [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), None, body),
            _ => (0, Some(ChunkError::MissingHeader), &[][..]),
        };
        Self {
            br: BitReader::new(body),
            total,
            read: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
            err,
        }
    }

    /// Number of samples the header announces.
    pub fn len_hint(&self) -> u16 {
        self.total
    }

    /// Why the iteration stopped early, if it did.
    pub fn error(&self) -> Result<(), ChunkError> {
        match &self.err {
            Some(e) => Err(*e),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: ChunkError) -> Option<(i64, f64)> {
        self.err = Some(e);
        None
    }

    fn next_inner(&mut self) -> Result<(), ChunkError> {
        let n = self.read;
        let trunc = ChunkError::Truncated(n);
        match n {
            0 => {
                self.t = self.br.read_varint().ok_or(trunc)?;
                self.v = f64::from_bits(self.br.read_bits(64).ok_or(trunc)?);
            }
            1 => {
                self.t_delta = self.br.read_uvarint().ok_or(trunc)?;
                if self.t_delta == 0 || self.t_delta > i64::MAX as u64 {
                    return Err(ChunkError::NotIncreasing(n));
                }
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value(n)?;
            }
            _ => {
                let mut d = 0u8;
                for _ in 0..4 {
                    d <<= 1;
                    if !self.br.read_bit().ok_or(trunc)? {
                        break;
                    }
                    d |= 1;
                }
                let sz = match d {
                    0b0 => 0,
                    0b10 => 14,
                    0b110 => 17,
                    0b1110 => 20,
                    _ => 64,
                };
                let dod = if sz == 0 {
                    0
                } else if sz == 64 {
                    self.br.read_bits(64).ok_or(trunc)? as i64
                } else {
                    let mut bits = self.br.read_bits(sz).ok_or(trunc)?;
                    // Negative values come back as large unsigned ones (docs/bstream.md).
                    if bits > 1 << (sz - 1) {
                        bits = bits.wrapping_sub(1 << sz);
                    }
                    bits as i64
                };
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                if self.t_delta == 0 || self.t_delta > i64::MAX as u64 {
                    return Err(ChunkError::NotIncreasing(n));
                }
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value(n)?;
            }
        }
        Ok(())
    }

    fn read_value(&mut self, n: u16) -> Result<(), ChunkError> {
        let trunc = ChunkError::Truncated(n);
        if !self.br.read_bit().ok_or(trunc)? {
            return Ok(());
        }
        let (trailing, mbits) = if !self.br.read_bit().ok_or(trunc)? {
            if self.leading == NO_WINDOW {
                return Err(ChunkError::BadWindow(n));
            }
            let mbits = 64u32
                .checked_sub(u32::from(self.leading) + u32::from(self.trailing))
                .ok_or(ChunkError::BadWindow(n))?;
            (self.trailing, mbits)
        } else {
            let leading = self.br.read_bits(5).ok_or(trunc)? as u8;
            let mut mbits = self.br.read_bits(6).ok_or(trunc)? as u32;
            if mbits == 0 {
                mbits = 64;
            }
            let trailing = 64u32
                .checked_sub(u32::from(leading) + mbits)
                .ok_or(ChunkError::BadWindow(n))? as u8;
            self.leading = leading;
            self.trailing = trailing;
            (trailing, mbits)
        };
        let bits = self.br.read_bits(mbits).ok_or(trunc)?;
        let shifted = if trailing >= 64 { 0 } else { bits << trailing };
        self.v = f64::from_bits(self.v.to_bits() ^ shifted);
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        if let Err(e) = self.next_inner() {
            return self.fail(e);
        }
        self.read += 1;
        Some((self.t, self.v))
    }
}

/// Checks that `data` is a well-formed, non-empty chunk; returns its first and last timestamp.
pub fn validate(data: &[u8]) -> Result<(i64, i64, u16), ChunkError> {
    let mut it = XorIter::new(data);
    let mut first = None;
    let mut last = 0;
    for (t, _) in it.by_ref() {
        first.get_or_insert(t);
        last = t;
    }
    it.error()?;
    let first = first.ok_or(ChunkError::Empty)?;
    Ok((first, last, it.total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{STALE_NAN_BITS, stale_nan};

    /// xorshift64*: seeded, reproducible, no dependency.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn roundtrip(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut enc = XorEncoder::with_capacity(16);
        for &(t, v) in samples {
            enc.append(t, v);
        }
        let got: Vec<(i64, u64)> = enc.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        let bytes = enc.bytes().to_vec();
        // Resuming from bytes and appending more gives the same stream as never stopping.
        if samples.len() > 1 {
            let (head, tail) = samples.split_at(samples.len() / 2);
            let mut a = XorEncoder::with_capacity(0);
            for &(t, v) in head {
                a.append(t, v);
            }
            let mut b = XorEncoder::from_bytes(a.bytes()).unwrap();
            for &(t, v) in tail {
                b.append(t, v);
            }
            assert_eq!(b.bytes(), &bytes[..]);
        }
        bytes
    }

    #[test]
    fn known_prometheus_bytes() {
        // Three samples, the third with dod 0 and an equal value: header 3, varint(zigzag
        // 1000) = [0xd0, 0x0f], 64 raw bits of 1.0, uvarint 15000 = [0x98, 0x75], then bits
        // `0` (value equal) `0` (dod 0) `0` (value equal), padded.
        let mut enc = XorEncoder::with_capacity(0);
        enc.append(1000, 1.0);
        enc.append(16000, 1.0);
        enc.append(31000, 1.0);
        let mut want = vec![0, 3, 0xd0, 0x0f];
        want.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[0x98, 0x75, 0b0000_0000]);
        assert_eq!(enc.bytes(), &want[..]);
    }

    #[test]
    fn buckets_at_their_edges() {
        let mut t = 1_700_000_000_000i64;
        let mut samples = vec![(t, 0.0)];
        let mut delta = 15_000i64;
        for dod in [
            0,
            1,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            65_536,
            -65_535,
            65_537,
            524_288,
            -524_287,
            524_289,
            1 << 40,
            -(1 << 39),
        ] {
            delta += dod;
            t += delta;
            samples.push((t, dod as f64));
        }
        roundtrip(&samples);
    }

    #[test]
    fn special_values_round_trip_bit_exact() {
        let odd_nan = f64::from_bits(0x7ff8_0000_dead_beef);
        let vals = [
            stale_nan(),
            f64::NAN,
            odd_nan,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            stale_nan(),
            1.5,
        ];
        let samples: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000 - 30_000, v))
            .collect();
        roundtrip(&samples);
        let enc = {
            let mut e = XorEncoder::with_capacity(0);
            e.append(5, stale_nan());
            e
        };
        let (_, v) = enc.iter().next().unwrap();
        assert_eq!(v.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn random_round_trips() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let n = 1 + rng.below(200) as usize;
            let mut t = (rng.next() as i64) >> 20;
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                samples.push((t, v));
                t += match rng.below(10) {
                    0 => 1 + rng.below(3) as i64,
                    1 => 1 + rng.below(1 << 40) as i64,
                    2..=5 => 15_000 + rng.below(7) as i64,
                    _ => 15_000,
                };
                v = match (case % 5, rng.below(12)) {
                    (0, _) => v,
                    (_, 0) => f64::from_bits(rng.next()),
                    (_, 1) => stale_nan(),
                    (_, 2) => f64::NEG_INFINITY,
                    (1, _) => v + rng.below(1000) as f64,
                    (2, _) => (rng.below(1 << 20) as f64) / 7.0,
                    _ => v + 0.01 * rng.below(100) as f64,
                };
            }
            roundtrip(&samples);
        }
    }

    #[test]
    fn corrupt_input_never_panics() {
        let mut rng = Rng(42);
        let mut enc = XorEncoder::with_capacity(0);
        let mut t = 0;
        for i in 0..120 {
            t += 15_000 + (rng.below(5) as i64);
            enc.append(t, i as f64 * 1.25);
        }
        let good = enc.bytes().to_vec();
        for cut in 0..good.len() {
            let mut it = XorIter::new(&good[..cut]);
            for _ in it.by_ref() {}
            assert!(it.error().is_err(), "cut at {cut} must be reported");
        }
        for _ in 0..2000 {
            let mut bad = good.clone();
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] ^= 1 << rng.below(8);
            let mut it = XorIter::new(&bad);
            for _ in it.by_ref() {}
            let _ = it.error();
            let _ = XorEncoder::from_bytes(&bad);
        }
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = validate(&junk);
        }
        assert_eq!(validate(&[0, 0]), Err(ChunkError::Empty));
    }

    #[test]
    fn steady_series_are_small() {
        let mut enc = XorEncoder::with_capacity(0);
        for i in 0..120 {
            enc.append(1_700_000_000_000 + i * 15_000, 42.0);
        }
        // 2 header + 6 varint t + 8 value + 2 delta + 1 bit + 118 * 2 bits.
        assert!(enc.bytes().len() <= 50, "{}", enc.bytes().len());
    }
}
