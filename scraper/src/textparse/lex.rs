//! Lexing shared by both formats: names, label sets, numbers, timestamps, unescaping and the
//! label hash that identifies a metric in OpenMetrics validation.
//!
//! Everything works on one line (`&str`, already checked to be UTF-8, no `\n`) and byte offsets
//! into it, and never allocates except for error messages and for unescaping in
//! [`unescape`]. Offsets handed to `line.get(..)` always sit next to an ASCII byte, so they are
//! char boundaries; `get` is still used so that a mistake here is an error, not a panic.

use std::borrow::Cow;

/// Why a line failed, before the parser turns it into a [`super::ParseError`]: a byte offset in
/// the current line, or (for rules checked after the fact, such as a histogram's buckets) a
/// whole earlier line.
#[derive(Debug)]
pub(super) struct Fail {
    /// Byte offset in the line.
    pub at: usize,
    /// The line the failure belongs to, when it is not the current one (column 1 then).
    pub line: Option<usize>,
    pub reason: Cow<'static, str>,
}

impl Fail {
    pub fn at(at: usize, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            at,
            line: None,
            reason: reason.into(),
        }
    }

    pub fn on_line(line: usize, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            at: 0,
            line: Some(line),
            reason: reason.into(),
        }
    }
}

pub(super) type LResult<T> = Result<T, Fail>;

/// Byte classes for names, one table lookup per byte.
const LABEL_CHAR: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_FIRST: u8 = 4;
const METRIC_FIRST: u8 = 8;

const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        if alpha {
            t[c] = LABEL_CHAR | METRIC_CHAR | LABEL_FIRST | METRIC_FIRST;
        } else if b.is_ascii_digit() {
            t[c] = LABEL_CHAR | METRIC_CHAR;
        } else if b == b':' {
            t[c] = METRIC_CHAR | METRIC_FIRST;
        }
        c += 1;
    }
    t
};

fn name_len(b: &[u8], first: u8, rest: u8) -> usize {
    match b.first() {
        Some(c) if NAME_CLASS[usize::from(*c)] & first != 0 => b
            .iter()
            .position(|c| NAME_CLASS[usize::from(*c)] & rest == 0)
            .unwrap_or(b.len()),
        _ => 0,
    }
}

/// Length of the metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at the start of `b`, 0 if none.
pub(super) fn metric_name_len(b: &[u8]) -> usize {
    name_len(b, METRIC_FIRST, METRIC_CHAR)
}

/// Length of the label name (`[a-zA-Z_][a-zA-Z0-9_]*`) at the start of `b`, 0 if none.
pub(super) fn label_name_len(b: &[u8]) -> usize {
    name_len(b, LABEL_FIRST, LABEL_CHAR)
}

/// Offset of the first byte at or after `i` that is not a space or tab.
pub(super) fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// `line[a..b]`, or an error at `a` (cannot happen for offsets next to ASCII bytes).
pub(super) fn slice(line: &str, a: usize, b: usize) -> LResult<&str> {
    line.get(a..b)
        .ok_or_else(|| Fail::at(a, "internal error: offset is not a character boundary"))
}

/// The two label-set syntaxes: OpenMetrics' exact ABNF, and the Prometheus text parser's, which
/// also takes blanks around every token and a trailing comma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    Strict,
    Lenient,
}

/// Scans the label set that opens at `open` (where `line` has `{`), calling
/// `each(name, raw_value, name_offset)` for each label, the value still escaped. Returns the
/// offset just past the closing `}`.
pub(super) fn scan_labels<'a>(
    line: &'a str,
    open: usize,
    syntax: Syntax,
    mut each: impl FnMut(&'a str, &'a str, usize) -> LResult<()>,
) -> LResult<usize> {
    let b = line.as_bytes();
    let lenient = syntax == Syntax::Lenient;
    let blank = |i: usize| if lenient { skip_blank(b, i) } else { i };
    let mut i = blank(open + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        i = blank(i);
        let n = label_name_len(b.get(i..).unwrap_or_default());
        if n == 0 {
            return Err(Fail::at(
                i,
                match b.get(i) {
                    None => "label set not closed: expected a label name",
                    Some(b'}') => "expected a label name after ','",
                    Some(_) => "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                },
            ));
        }
        let name_at = i;
        let name = slice(line, i, i + n)?;
        i = blank(i + n);
        if b.get(i) != Some(&b'=') {
            return Err(Fail::at(
                i,
                format!("expected '=' after label name {name:?}"),
            ));
        }
        i = blank(i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(Fail::at(
                i,
                format!("expected '\"' to open the value of label {name:?}"),
            ));
        }
        let start = i + 1;
        let end = closing_quote(b, start)
            .ok_or_else(|| Fail::at(i, format!("value of label {name:?} is not closed by '\"'")))?;
        each(name, slice(line, start, end)?, name_at)?;
        i = blank(end + 1);
        match b.get(i) {
            Some(b',') => {
                i = blank(i + 1);
                if lenient && b.get(i) == Some(&b'}') {
                    return Ok(i + 1);
                }
            }
            Some(b'}') => return Ok(i + 1),
            None => return Err(Fail::at(i, "label set not closed: expected ',' or '}'")),
            Some(_) => {
                return Err(Fail::at(
                    i,
                    format!("expected ',' or '}}' after the value of label {name:?}"),
                ));
            }
        }
    }
}

/// Offset of the `"` that closes a quoted string whose content starts at `start`; a backslash
/// escapes the byte after it.
fn closing_quote(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b.get(i) == Some(&b'"') {
            return Some(i);
        }
        // A backslash: skip it and the byte it escapes (which must exist).
        b.get(i + 1)?;
        i += 2;
    }
}

/// Checks the label names collected from one label set (in `names`): no name twice and no
/// `__name__` (the metric name is written before the braces). `at` is where the set opens.
pub(super) fn check_unique(names: &mut [&str], at: usize) -> LResult<()> {
    let dup = if names.len() <= 8 {
        names
            .iter()
            .enumerate()
            .find(|(i, a)| names.iter().skip(i + 1).any(|b| a == &b))
            .map(|(_, a)| *a)
    } else {
        names.sort_unstable();
        names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    };
    if let Some(name) = dup {
        return Err(Fail::at(at, format!("duplicate label name {name:?}")));
    }
    if names.contains(&crate::model::METRIC_NAME) {
        return Err(Fail::at(
            at,
            "label __name__ is not allowed in braces: the metric name comes first",
        ));
    }
    Ok(())
}

/// Replaces the escapes `\\`, `\n` and (with `quote`) `\"`; any other backslash stays as
/// written, as Prometheus does. Borrows when there is nothing to replace.
pub(super) fn unescape(raw: &str, quote: bool) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut rest = chars.clone();
        match rest.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars = rest;
    }
    Cow::Owned(out)
}

/// Number of code points `raw` has once unescaped (`\\`, `\n`, `\"` count as one).
pub(super) fn unescaped_chars(raw: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            escaped = false;
            // An unknown escape stays two characters.
            n += if matches!(c, '\\' | 'n' | '"') { 1 } else { 2 };
        } else if c == '\\' {
            escaped = true;
        } else {
            n += 1;
        }
    }
    n + usize::from(escaped)
}

/// Parses a sample value as Prometheus does (Go's `strconv.ParseFloat` without hex floats or
/// underscores): decimal with optional sign and exponent, `NaN`, `[+-]Inf`, `[+-]Infinity`,
/// any case. Values beyond `f64` are an error, as in Go.
pub(super) fn parse_float(s: &str) -> Result<f64, &'static str> {
    let b = s.as_bytes();
    let signed = matches!(b.first(), Some(b'+' | b'-'));
    let body = if signed {
        b.get(1..).unwrap_or_default()
    } else {
        b
    };
    match body.first() {
        None => return Err("expected a number"),
        // Rust also takes "+nan"; Go does not.
        Some(b'n' | b'N') if signed => return Err("NaN cannot have a sign"),
        _ => {}
    }
    let v: f64 = s.parse().map_err(|_| "not a valid number")?;
    if v.is_infinite() && !matches!(body.first(), Some(b'i' | b'I')) {
        return Err("number out of the range of a 64-bit float");
    }
    Ok(v)
}

/// Whether `s` is an OpenMetrics `realnumber`: `[+-]` digits with an optional `.` and an
/// optional exponent, at least one digit in the mantissa; no `Inf` or `NaN`.
pub(super) fn is_realnumber(s: &str) -> bool {
    real_parts(s).is_some()
}

/// The parts of a `realnumber`: sign, integer digits, fraction digits, exponent (saturated).
fn real_parts(s: &str) -> Option<(bool, &[u8], &[u8], i64)> {
    let b = s.as_bytes();
    let (neg, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = |from: usize| {
        let rest = b.get(from..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest.get(..n).unwrap_or_default()
    };
    let int = digits(i);
    i += int.len();
    let mut frac: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        i += 1 + frac.len();
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let neg_exp = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let e = digits(i);
        if e.is_empty() {
            return None;
        }
        i += e.len();
        for d in e {
            exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000);
        }
        if neg_exp {
            exp = -exp;
        }
    }
    (i == b.len()).then_some((neg, int, frac, exp))
}

/// An OpenMetrics timestamp (seconds, a `realnumber`) in milliseconds, truncated toward zero
/// and computed from the decimal digits (no float rounding: `1520879607.789` is exactly
/// `1520879607789`). Saturates at the `i64` range.
pub(super) fn parse_om_timestamp(s: &str) -> Result<i64, &'static str> {
    let (neg, int, frac, exp) =
        real_parts(s).ok_or("timestamp must be a decimal number of seconds (no NaN or Inf)")?;
    // value_ms = digits(int ++ frac) * 10^(exp + 3 - frac.len())
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    let scale = exp.saturating_add(3).saturating_sub(frac_len);
    let total = int.len() + frac.len();
    let keep = if scale >= 0 {
        total
    } else {
        total.saturating_sub(usize::try_from(-scale).unwrap_or(usize::MAX))
    };
    let mut ms: i64 = 0;
    for d in int.iter().chain(frac).take(keep) {
        ms = ms.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if ms != 0 && scale > 0 {
        for _ in 0..scale.min(20) {
            ms = ms.saturating_mul(10);
        }
    }
    Ok(if neg { -ms } else { ms })
}

/// A text-format timestamp: decimal digits only (milliseconds), as Prometheus' lexer has it.
pub(super) fn parse_text_timestamp(s: &str) -> Result<i64, &'static str> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("timestamp must be an integer number of milliseconds");
    }
    s.parse().map_err(|_| "timestamp out of range")
}

/// Hash of one label (name and raw value) for [`super::openmetrics`]'s metric identity: the
/// identity of a label set is the wrapping sum of its labels' hashes, so the order the labels
/// are written in does not matter. Hashes the escaped value: two spellings of one value
/// (`\q` and `\\q`) count as different metrics, which only weakens the interleaving check.
pub(super) fn label_hash(name: &str, value: &str) -> u64 {
    let h = hash_bytes(
        0x51_7c_c1_b7_27_22_0a_95 ^ name.len() as u64,
        name.as_bytes(),
    );
    fmix64(hash_bytes(
        h ^ ((value.len() as u64) << 32),
        value.as_bytes(),
    ))
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(rest) {
        *d = *s;
    }
    (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29)
}

/// The hasher of the validator's sets: fast (the keys are short names and label-set hashes,
/// one lookup per sample) yet seeded at random per parser, so an exposition cannot be built to
/// pile its keys into one bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeededState(u64);

impl Default for SeededState {
    fn default() -> Self {
        use std::hash::BuildHasher as _;
        Self(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

#[derive(Debug)]
pub(super) struct SeededHasher(u64);

impl std::hash::Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0 ^ bytes.len() as u64, bytes);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(29);
    }

    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's finalizer: spreads every input bit over the output, so sums stay unbiased.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(line: &str, syntax: Syntax) -> Result<(Vec<(String, String)>, usize), String> {
        let mut out = Vec::new();
        scan_labels(line, 0, syntax, |n, v, _| {
            out.push((n.to_owned(), v.to_owned()));
            Ok(())
        })
        .map(|end| (out, end))
        .map_err(|f| format!("{}@{}", f.reason, f.at))
    }

    #[test]
    fn label_sets_in_both_syntaxes() {
        let (l, end) = labels(r#"{a="1",b="x\"}y"} 1"#, Syntax::Strict).unwrap();
        assert_eq!(
            l,
            [("a".into(), "1".into()), ("b".into(), r#"x\"}y"#.into())]
        );
        assert_eq!(end, 17);
        assert_eq!(labels("{}", Syntax::Strict).unwrap().1, 2);
        // Blanks and a trailing comma: text format only.
        assert!(labels(r#"{ a = "1" , }"#, Syntax::Lenient).is_ok());
        assert!(labels(r#"{ a="1"}"#, Syntax::Strict).is_err());
        assert!(labels(r#"{a="1",}"#, Syntax::Strict).is_err());
        for bad in [
            r#"{a="1",,b="2"}"#,
            r#"{a="1"b="2"}"#,
            r#"{a}"#,
            r#"{a=1}"#,
            r#"{a="1}"#,
            r#"{a="1\"}"#,
            r#"{1="1"}"#,
            r#"{a='1'}"#,
            r#"{,}"#,
            r#"{a="1""#,
            "{",
        ] {
            assert!(labels(bad, Syntax::Lenient).is_err(), "{bad}");
            assert!(labels(bad, Syntax::Strict).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_label_names() {
        assert!(check_unique(&mut ["a", "b"], 0).is_ok());
        assert!(check_unique(&mut ["a", "b", "a"], 0).is_err());
        let mut many: Vec<&str> = "abcdefghijkl".split("").filter(|s| !s.is_empty()).collect();
        assert!(check_unique(&mut many, 0).is_ok());
        many.push("c");
        assert!(check_unique(&mut many, 0).is_err());
        assert!(check_unique(&mut ["__name__"], 0).is_err());
    }

    #[test]
    fn unescaping() {
        assert!(matches!(unescape("plain", true), Cow::Borrowed("plain")));
        assert_eq!(unescape(r#"a\\b\nc\"d\q"#, true), "a\\b\nc\"d\\q");
        assert_eq!(unescape(r#"\"x\\"#, false), "\\\"x\\");
        assert_eq!(unescape(r"trailing\", true), "trailing\\");
        assert_eq!(unescaped_chars(r#"☃\n\\\"\q"#), 6);
    }

    #[test]
    fn floats_as_go_parses_them() {
        for (s, v) in [
            ("1", 1.0),
            ("-1.5e3", -1500.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("1E+2", 100.0),
            ("+Inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("Infinity", f64::INFINITY),
            ("0000000000000000000000000000000000000000001.2e-1", 0.12),
            ("9223372036854775808", 9_223_372_036_854_775_808.0),
        ] {
            assert_eq!(parse_float(s), Ok(v), "{s}");
        }
        assert!(parse_float("NaN").unwrap().is_nan());
        assert!(parse_float("nan").unwrap().is_nan());
        for bad in [
            "", "+", "-", ".", "e5", "1e", "1_2", "0x1", "0x1p-3", "0X1P-3", "0b1", "0o1", "+NaN",
            "-nan", "infin", "1e400", "1 ", "a", "1#", "１",
        ] {
            assert!(parse_float(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn openmetrics_timestamps_are_exact_milliseconds() {
        for (s, ms) in [
            ("0", 0),
            ("000", 0),
            ("0.0", 0),
            ("1.1", 1100),
            ("1520879607.789", 1_520_879_607_789),
            ("1.5e3", 1_500_000),
            ("-1.1", -1100),
            ("0.0000000001", 0),
            ("1.2345", 1234),
            ("-0.0005", 0),
            ("12345678901234567890.1234567890", i64::MAX),
            ("-1e30", -i64::MAX),
            ("1e-999999999999", 0),
            ("5e-3", 5),
        ] {
            assert_eq!(parse_om_timestamp(s), Ok(ms), "{s}");
        }
        for bad in [
            "", "NaN", "Inf", "-Inf", "1z", "1_2", "1.1.1", "0x1p-3", ".", "1e", "+",
        ] {
            assert!(parse_om_timestamp(bad).is_err(), "{bad:?}");
        }
        assert!(is_realnumber("1e-04") && is_realnumber("-1.0") && !is_realnumber("+Inf"));
    }

    #[test]
    fn text_timestamps_are_integers() {
        assert_eq!(parse_text_timestamp("1395066363000"), Ok(1_395_066_363_000));
        for bad in ["", "-1", "+1", "1.5", "99999999999999999999"] {
            assert!(parse_text_timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_hash_is_order_free_and_separates_name_from_value() {
        let set = |l: &[(&str, &str)]| {
            l.iter()
                .fold(0u64, |h, (n, v)| h.wrapping_add(label_hash(n, v)))
        };
        assert_eq!(
            set(&[("a", "1"), ("b", "2")]),
            set(&[("b", "2"), ("a", "1")])
        );
        assert_ne!(set(&[("a", "1b")]), set(&[("a1", "b")]));
        assert_ne!(set(&[("a", "12345678")]), set(&[("a", "12345679")]));
    }

    #[test]
    fn seeded_hasher_spreads_and_differs_per_parser() {
        use std::hash::BuildHasher;
        let (a, b) = (SeededState::default(), SeededState::default());
        assert_ne!(a.hash_one(1u64), b.hash_one(1u64));
        assert_ne!(a.hash_one("x"), a.hash_one("y"));
        assert_eq!(a.hash_one(("x", 1u8)), a.hash_one(("x", 1u8)));
    }

    #[test]
    fn names() {
        assert_eq!(metric_name_len(b"a:b_1{"), 5);
        assert_eq!(metric_name_len(b"0a"), 0);
        assert_eq!(label_name_len(b"a:b"), 1);
        assert_eq!(label_name_len(b""), 0);
    }
}
