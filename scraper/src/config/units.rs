//! Prometheus' spellings of durations (`1m30s`) and byte sizes (`10MB`, `1GiB`): parsing with
//! Prometheus' exact grammar, so a file Prometheus rejects is rejected here too, and printing
//! as Prometheus prints them in `/api/v1/status/config`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units of a Prometheus duration, largest first, with their length in milliseconds. A
/// duration names each unit at most once, in this order (`1h30m`, not `30m1h`).
const DURATION_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The longest duration Go's `time.Duration` (int64 nanoseconds) holds, about 292 years.
const MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parses a Prometheus duration (`15s`, `1m30s`, `5m`, `1h`, `1d`, `1w`, `1y`, `500ms`, or `0`).
///
/// The grammar and the errors are Prometheus' (`model.ParseDuration`): integers only, units
/// from largest to smallest, each once, at most ~292 years. The value itself comes from
/// [`heimdall_common::parse_duration`], which every flag uses too, rounded to the millisecond
/// (Prometheus' resolution) so its floating-point sum cannot be a nanosecond off.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match s {
        "0" => return Ok(Duration::ZERO),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let (number, after) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        if unit_len == 0 {
            return Err(invalid());
        }
        let (unit, after) = after.split_at(unit_len);
        let Some(pos) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if pos < next_unit {
            return Err(invalid());
        }
        next_unit = pos + 1;
        let unit_ms = DURATION_UNITS.get(pos).map_or(1, |(_, ms)| *ms);
        total_nanos += u128::from(value) * u128::from(unit_ms) * 1_000_000;
        if total_nanos > MAX_DURATION_NANOS {
            return Err("duration out of range".into());
        }
        rest = after;
    }
    let parsed = heimdall_common::parse_duration(s)?;
    let millis = (parsed.as_nanos() + 500_000) / 1_000_000;
    Ok(Duration::from_millis(
        u64::try_from(millis).map_err(|_| invalid())?,
    ))
}

/// Formats a duration as Prometheus does (`model.Duration.String`): whole milliseconds,
/// largest units first, years and weeks only when they divide it exactly (`90d`, not
/// `12w6d`), `0s` for zero.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, unit_ms) in DURATION_UNITS {
        let exact_only = matches!(unit, "y" | "w");
        if exact_only && ms % unit_ms != 0 {
            continue;
        }
        let n = ms / unit_ms;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms -= n * unit_ms;
        }
    }
    out
}

/// `#[serde(with = "duration")]` for a [`Duration`] written the Prometheus way.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes written with Prometheus' base-2 units (`body_size_limit: 10MB`); 0 means
/// no limit. `KB` and `KiB` both mean 1024 bytes, as in Prometheus (alecthomas/units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Unit prefixes, each 1024 times the one before.
const SIZE_PREFIXES: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whether this is 0 (no limit).
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

/// Bytes per unit, or `None` for an unknown unit. `iec` picks the `KiB` spelling (tried
/// first, as Prometheus does) over the older `KB` one; `B` is in both.
fn size_unit(unit: &str, iec: bool) -> Option<u64> {
    if unit == "B" {
        return Some(1);
    }
    let suffix = if iec { "iB" } else { "B" };
    let prefix = unit.strip_suffix(suffix)?;
    let exp = SIZE_PREFIXES.iter().skip(1).position(|p| *p == prefix)?;
    1024u64.checked_pow(u32::try_from(exp + 1).ok()?)
}

/// alecthomas/units' `ParseUnit`: a sequence of `<digits>[.<digits>]<unit>`, or `0`.
fn parse_size_with(s: &str, iec: bool) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        total += value * size_unit(unit, iec)? as f64;
        rest = after;
    }
    // From 2^63 on Prometheus reports an overflow; the f64 → u64 cast saturates, so check first.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63, exact in f64
    (total < LIMIT).then_some(total as u64)
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size_with(s, true)
            .or_else(|| parse_size_with(s, false))
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?} (use e.g. 512KB, 10MB, 1GiB)"))
    }
}

/// `10MiB`, `1KiB512B`, `0B`: alecthomas/units' base-2 `String()`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = self.0;
        if n == 0 {
            return f.write_str("0B");
        }
        let mut parts = Vec::new();
        for prefix in SIZE_PREFIXES {
            let r = n % 1024;
            if r != 0 {
                let suffix = if prefix.is_empty() { "B" } else { "iB" };
                parts.push(format!("{r}{prefix}{suffix}"));
            }
            n /= 1024;
            if n == 0 {
                break;
            }
        }
        // An exact multiple of 1024^7 and more (n left over) cannot be named; u64 tops out
        // below 16 EiB, so the loop always ends with n == 0.
        parts.reverse();
        f.write_str(&parts.concat())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_prometheus() {
        let ok =
            |s: &str, ms: u64| assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        ok("0", 0);
        ok("0s", 0);
        ok("15s", 15_000);
        ok("1m30s", 90_000);
        ok("5m", 300_000);
        ok("1h", 3_600_000);
        ok("1d", 86_400_000);
        ok("1w", 604_800_000);
        ok("1y", 31_536_000_000);
        ok("500ms", 500);
        ok("1h2m3s4ms", 3_723_004);
        ok("99999999999ms", 99_999_999_999);
        ok("292y", 292 * 31_536_000_000);
        for bad in [
            "", "5x", "5", "s", "1.5s", "30s1m", "1m1m", "-1s", " 1s", "1s ", "1e3s", "1sms",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            r#"unknown unit "x" in duration "5x""#
        );
        // Go reads "1.5s" as 1 with the unit "." (then fails), and so do we.
        assert_eq!(
            parse_duration("1.5s").unwrap_err(),
            r#"unknown unit "." in duration "1.5s""#
        );
        assert_eq!(
            parse_duration("30s1m").unwrap_err(),
            r#"not a valid duration string: "30s1m""#
        );
        assert_eq!(parse_duration("293y").unwrap_err(), "duration out of range");
        assert_eq!(
            parse_duration("99999999999999999999999y").unwrap_err(),
            r#"not a valid duration string: "99999999999999999999999y""#
        );
    }

    #[test]
    fn durations_print_as_prometheus() {
        let f = |ms: u64| format_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(15_000), "15s");
        assert_eq!(f(90_000), "1m30s");
        assert_eq!(f(500), "500ms");
        assert_eq!(f(31_536_000_000), "1y");
        assert_eq!(f(604_800_000), "1w");
        // Not a whole number of weeks: days instead.
        assert_eq!(f(90 * 86_400_000), "90d");
        assert_eq!(f(3_723_004), "1h2m3s4ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
        for ms in [
            1,
            999,
            60_001,
            86_400_000 + 1,
            400 * 86_400_000,
            31_536_000_000 + 7,
        ] {
            assert_eq!(
                parse_duration(&f(ms)),
                Ok(Duration::from_millis(ms)),
                "{ms}"
            );
        }
    }

    #[test]
    fn sizes_as_prometheus() {
        let p = |s: &str| s.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("512B"), Ok(512));
        assert_eq!(p("10MB"), Ok(10 << 20));
        assert_eq!(p("10MiB"), Ok(10 << 20));
        assert_eq!(p("1GiB"), Ok(1 << 30));
        assert_eq!(p("1.5KB"), Ok(1536));
        assert_eq!(p("1KiB512B"), Ok(1536));
        assert_eq!(p("1EiB"), Ok(1 << 60));
        for bad in [
            "", "10", "10mb", "1ZB", "1KiB1KB", ".B", "1..5KB", "-1KB", "16EiB",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
        assert_eq!(ByteSize(1536).to_string(), "1KiB512B");
        // Prometheus sizes stop at 2^63 - 1, so the largest u64 prints but does not parse back.
        assert!(p(&ByteSize(u64::MAX).to_string()).is_err());
        for n in [1, 1023, 1024, 10 << 20, (1 << 40) + 5] {
            assert_eq!(p(&ByteSize(n).to_string()), Ok(n));
        }
    }
}
