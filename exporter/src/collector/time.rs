//! `time`: node_time_seconds, node_time_zone_offset_seconds{time_zone} and, on Linux, the
//! clocksources from `/sys/devices/system/clocksource`, as node_exporter's `time.go`.
//!
//! The zone is the process's local zone the way Go determines it (`TZ`, else
//! `/etc/localtime`, else UTC), read once at start like Go's `time.Local`. Its abbreviation and
//! offset at the current instant come from the TZif transition table, or past its end from the
//! POSIX TZ footer string (e.g. `CET-1CEST,M3.5.0,M10.5.0/3`).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Time {
    zone: Zone,
}

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Time {
        zone: Zone::local(),
    }))
}

impl Collector for Time {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| CollectError::parse("system time", e))?;
        let secs = now.as_nanos() as f64 / 1e9;
        let (abbr, offset) = self.zone.lookup(now.as_secs() as i64);
        out.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            &[],
            secs,
        );
        out.gauge(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
            &[("time_zone", &abbr)],
            f64::from(offset),
        );
        clocksources(paths, out)
    }
}

#[cfg(target_os = "linux")]
fn clocksources(paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
    let base = paths.sys("devices/system/clocksource");
    let mut names: Vec<String> = match std::fs::read_dir(&base) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix("clocksource")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(CollectError::Io { path: base, source }),
    };
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let dir = base.join(name);
        let available = super::read_file(&dir.join("available_clocksource"))?;
        let current = super::read_file(&dir.join("current_clocksource"))?;
        let device = i.to_string();
        for cs in available.split_whitespace() {
            out.gauge(
                "node_time_clocksource_available_info",
                "Available clocksources read from '/sys/devices/system/clocksource'.",
                &[("device", &device), ("clocksource", cs)],
                1.0,
            );
        }
        out.gauge(
            "node_time_clocksource_current_info",
            "Current clocksource read from '/sys/devices/system/clocksource'.",
            &[("device", &device), ("clocksource", current.trim())],
            1.0,
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn clocksources(_: &Paths, _: &mut Sink) -> Result<(), CollectError> {
    Ok(())
}

/// A local time type of a TZif file.
#[derive(Debug, Clone, PartialEq)]
struct ZoneType {
    offset: i32,
    is_dst: bool,
    abbr: String,
}

/// A time zone: TZif transitions plus the optional POSIX TZ footer for later instants.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Zone {
    types: Vec<ZoneType>,
    /// (transition time, index into `types`), ascending.
    transitions: Vec<(i64, usize)>,
    footer: Option<String>,
}

impl Zone {
    fn utc() -> Self {
        Zone {
            types: vec![ZoneType {
                offset: 0,
                is_dst: false,
                abbr: "UTC".into(),
            }],
            transitions: Vec::new(),
            footer: None,
        }
    }

    /// The process's local zone, resolved as Go's `initLocal` does.
    fn local() -> Self {
        let load =
            |path: &std::path::Path| std::fs::read(path).ok().and_then(|d| parse_tzif(&d).ok());
        match std::env::var("TZ") {
            Err(_) => load("/etc/localtime".as_ref()),
            Ok(tz) => {
                let tz = tz.strip_prefix(':').unwrap_or(&tz);
                if tz.starts_with('/') {
                    load(tz.as_ref())
                } else if tz.is_empty() || tz == "UTC" || tz.contains("..") {
                    None
                } else {
                    let mut dirs = Vec::new();
                    if let Ok(z) = std::env::var("ZONEINFO") {
                        dirs.push(z);
                    }
                    dirs.extend(
                        [
                            "/usr/share/zoneinfo",
                            "/usr/share/lib/zoneinfo",
                            "/usr/lib/locale/TZ",
                            "/etc/zoneinfo",
                        ]
                        .map(String::from),
                    );
                    dirs.iter()
                        .find_map(|d| load(&std::path::Path::new(d).join(tz)))
                }
            }
        }
        .unwrap_or_else(Zone::utc)
    }

    /// Abbreviation and UTC offset (seconds east) in effect at Unix time `sec`.
    pub(crate) fn lookup(&self, sec: i64) -> (String, i32) {
        let first = self.transitions.first().map(|t| t.0);
        if first.is_none_or(|f| sec < f) {
            let t = &self.types[self.first_type()];
            return (t.abbr.clone(), t.offset);
        }
        let idx = self.transitions.partition_point(|t| t.0 <= sec) - 1;
        if idx == self.transitions.len() - 1
            && let Some(r) = self.footer.as_deref().and_then(|f| posix_tz_lookup(f, sec))
        {
            return r;
        }
        let t = &self.types[self.transitions[idx].1];
        (t.abbr.clone(), t.offset)
    }

    /// Go's `lookupFirstZone`: the type in effect before the first transition.
    fn first_type(&self) -> usize {
        let used = |i: usize| self.transitions.iter().any(|t| t.1 == i);
        if !used(0) {
            return 0;
        }
        if let Some(&(_, first)) = self.transitions.first()
            && self.types[first].is_dst
            && let Some(i) = (0..first).rev().find(|&i| !self.types[i].is_dst)
        {
            return i;
        }
        self.types.iter().position(|t| !t.is_dst).unwrap_or(0)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| "TZif data truncated".to_string())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Parses a TZif file (RFC 8536), using the 64-bit block of version 2+ files.
pub(crate) fn parse_tzif(data: &[u8]) -> Result<Zone, String> {
    let mut r = Reader { data, pos: 0 };
    let header = |r: &mut Reader| -> Result<(u8, [usize; 6]), String> {
        if r.take(4)? != b"TZif" {
            return Err("not a TZif file".into());
        }
        let version = r.take(1)?[0];
        r.take(15)?;
        let mut counts = [0; 6];
        for c in &mut counts {
            *c = r.u32()?;
        }
        Ok((version, counts))
    };
    let (version, counts) = header(&mut r)?;
    let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts;
    let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
    let (time_size, [isut, isstd, leap, timecnt, typecnt, charcnt]) = if version >= b'2' {
        r.take(v1_len)?;
        let (_, counts) = header(&mut r)?;
        (8, counts)
    } else {
        (4, counts)
    };
    if typecnt == 0 {
        return Err("TZif file has no local time types".into());
    }
    let times = r.take(timecnt * time_size)?;
    let indices = r.take(timecnt)?;
    let ttinfos = r.take(typecnt * 6)?;
    let chars = r.take(charcnt)?;
    r.take(leap * (time_size + 4) + isstd + isut)?;

    let mut types = Vec::with_capacity(typecnt);
    for t in ttinfos.chunks_exact(6) {
        let offset = i32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        let start = usize::from(t[5]).min(chars.len());
        let abbr = chars[start..].split(|&b| b == 0).next().unwrap_or_default();
        types.push(ZoneType {
            offset,
            is_dst: t[4] != 0,
            abbr: String::from_utf8_lossy(abbr).into_owned(),
        });
    }
    let mut transitions = Vec::with_capacity(timecnt);
    for (i, &idx) in indices.iter().enumerate() {
        let b = &times[i * time_size..(i + 1) * time_size];
        let when = if time_size == 8 {
            i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        } else {
            i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let idx = usize::from(idx);
        if idx >= types.len() {
            return Err(format!("transition type {idx} out of range"));
        }
        transitions.push((when, idx));
    }
    let footer = if version >= b'2' {
        let rest = &data[r.pos..];
        rest.strip_prefix(b"\n")
            .and_then(|f| f.split(|&b| b == b'\n').next())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .filter(|f| !f.is_empty())
    } else {
        None
    };
    Ok(Zone {
        types,
        transitions,
        footer,
    })
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `Jn`: 1..=365, February 29 never counted.
    Julian(i64),
    /// `n`: 0..=365, zero-based day of year.
    Doy(i64),
    /// `Mm.w.d`.
    MonthWeekDay { mon: i64, week: i64, day: i64 },
}

/// Evaluates a POSIX TZ string at `sec`, as Go's `tzset`. `None` if it does not parse.
pub(crate) fn posix_tz_lookup(s: &str, sec: i64) -> Option<(String, i32)> {
    let (std_name, s) = tz_name(s)?;
    let (std_off, s) = tz_offset(s)?;
    let std_off = -std_off;
    if s.is_empty() {
        return Some((std_name, std_off as i32));
    }
    let (dst_name, s) = tz_name(s)?;
    let (dst_off, s) = if s.is_empty() || s.starts_with(',') {
        (std_off + 3600, s)
    } else {
        let (o, s) = tz_offset(s)?;
        (-o, s)
    };
    let s = if s.is_empty() { ",M3.2.0,M11.1.0" } else { s };
    let s = s.strip_prefix([',', ';'])?;
    let (start, s) = tz_rule(s)?;
    let s = s.strip_prefix(',')?;
    let (end, s) = tz_rule(s)?;
    if !s.is_empty() {
        return None;
    }

    let days = sec.div_euclid(86_400);
    let (year, yday) = year_and_yday(days);
    let ysec = yday * 86_400 + sec.rem_euclid(86_400);
    let mut start_sec = rule_time(year, start, std_off);
    let mut end_sec = rule_time(year, end, dst_off);
    let (mut std, mut dst) = ((std_name, std_off), (dst_name, dst_off));
    if end_sec < start_sec {
        std::mem::swap(&mut start_sec, &mut end_sec);
        std::mem::swap(&mut std, &mut dst);
    }
    let (name, off) = if ysec < start_sec || ysec >= end_sec {
        std
    } else {
        dst
    };
    Some((name, off as i32))
}

fn tz_name(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('<') {
        let end = rest.find('>')?;
        return Some((rest[..end].to_string(), &rest[end + 1..]));
    }
    let end = s
        .find(|c: char| c.is_ascii_digit() || c == ',' || c == '-' || c == '+')
        .unwrap_or(s.len());
    if end < 3 {
        return None;
    }
    Some((s[..end].to_string(), &s[end..]))
}

/// `[+-]hh[:mm[:ss]]` in seconds (POSIX sign: positive is west of Greenwich).
fn tz_offset(s: &str) -> Option<(i64, &str)> {
    let (neg, s) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (h, mut s) = tz_num(s, 0, 24 * 7)?;
    let mut off = h * 3600;
    for mul in [60, 1] {
        let Some(rest) = s.strip_prefix(':') else {
            break;
        };
        let (v, rest) = tz_num(rest, 0, 59)?;
        off += v * mul;
        s = rest;
    }
    Some((if neg { -off } else { off }, s))
}

fn tz_num(s: &str, min: i64, max: i64) -> Option<(i64, &str)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 9 {
        return None;
    }
    let v: i64 = s[..len].parse().ok()?;
    (min..=max).contains(&v).then_some((v, &s[len..]))
}

fn tz_rule(s: &str) -> Option<((Rule, i64), &str)> {
    let (rule, s) = if let Some(rest) = s.strip_prefix('J') {
        let (d, rest) = tz_num(rest, 1, 365)?;
        (Rule::Julian(d), rest)
    } else if let Some(rest) = s.strip_prefix('M') {
        let (mon, rest) = tz_num(rest, 1, 12)?;
        let (week, rest) = tz_num(rest.strip_prefix('.')?, 1, 5)?;
        let (day, rest) = tz_num(rest.strip_prefix('.')?, 0, 6)?;
        (Rule::MonthWeekDay { mon, week, day }, rest)
    } else {
        let (d, rest) = tz_num(s, 0, 365)?;
        (Rule::Doy(d), rest)
    };
    let (time, s) = match s.strip_prefix('/') {
        Some(rest) => tz_offset(rest)?,
        None => (2 * 3600, s),
    };
    Some(((rule, time), s))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in(mon: i64, year: i64) -> i64 {
    match mon {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Calendar year and zero-based day of year of a day count since 1970-01-01.
fn year_and_yday(days: i64) -> (i64, i64) {
    // Civil-from-days (Howard Hinnant), then the day of year from the year's first day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let jan1 = super::os::days_from_civil(y, 1, 1);
    (y, days - jan1)
}

/// Go's `tzruleTime`: seconds from the start of `year` (UTC) at which the rule fires.
fn rule_time(year: i64, (rule, time): (Rule, i64), off: i64) -> i64 {
    let s = match rule {
        Rule::Julian(day) => {
            let mut s = (day - 1) * 86_400;
            if is_leap(year) && day >= 60 {
                s += 86_400;
            }
            s
        }
        Rule::Doy(day) => day * 86_400,
        Rule::MonthWeekDay { mon, week, day } => {
            // Zeller's congruence: day of week of the first of the month.
            let m1 = (mon + 9) % 12 + 1;
            let yy0 = if mon <= 2 { year - 1 } else { year };
            let (yy1, yy2) = (yy0.div_euclid(100), yy0.rem_euclid(100));
            let dow = ((26 * m1 - 2) / 10 + 1 + yy2 + yy2 / 4 + yy1 / 4 - 2 * yy1).rem_euclid(7);
            let mut d = (day - dow).rem_euclid(7);
            for _ in 1..week {
                if d + 7 >= days_in(mon, year) {
                    break;
                }
                d += 7;
            }
            const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            d += BEFORE[(mon - 1) as usize];
            if is_leap(year) && mon > 2 {
                d += 1;
            }
            d * 86_400
        }
    };
    s + time - off
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix time of a UTC date and time.
    fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        crate::collector::os::days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60
    }

    #[test]
    fn posix_rules() {
        let cet = "CET-1CEST,M3.5.0,M10.5.0/3";
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 1, 15, 12, 0)),
            Some(("CET".into(), 3600))
        );
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 7, 1, 0, 0)),
            Some(("CEST".into(), 7200))
        );
        // DST starts 2025-03-30 01:00 UTC and ends 2025-10-26 01:00 UTC.
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 3, 30, 0, 59)).unwrap().0,
            "CET"
        );
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 3, 30, 1, 0)).unwrap().0,
            "CEST"
        );
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 10, 26, 0, 59)).unwrap().0,
            "CEST"
        );
        assert_eq!(
            posix_tz_lookup(cet, at(2025, 10, 26, 1, 0)).unwrap().0,
            "CET"
        );
        assert_eq!(posix_tz_lookup("UTC0", 0), Some(("UTC".into(), 0)));
        assert_eq!(
            posix_tz_lookup("<+0530>-5:30", 0),
            Some(("+0530".into(), 19_800))
        );
        // Southern hemisphere: DST across the new year.
        let nz = "NZST-12NZDT,M9.5.0,M4.1.0/3";
        assert_eq!(
            posix_tz_lookup(nz, at(2025, 1, 1, 0, 0)),
            Some(("NZDT".into(), 46_800))
        );
        assert_eq!(
            posix_tz_lookup(nz, at(2025, 6, 1, 0, 0)),
            Some(("NZST".into(), 43_200))
        );
        // US default rules when only names are given.
        assert_eq!(
            posix_tz_lookup("EST5EDT", at(2025, 7, 4, 12, 0)),
            Some(("EDT".into(), -14_400))
        );
        assert_eq!(
            posix_tz_lookup("EST5EDT", at(2025, 12, 4, 12, 0)),
            Some(("EST".into(), -18_000))
        );
        // Julian and day-of-year rules.
        assert_eq!(
            posix_tz_lookup("AAA3BBB,J60/0,300", at(2024, 3, 2, 12, 0))
                .unwrap()
                .0,
            "BBB"
        );
        for bad in [
            "",
            "U",
            "UTC",
            "CET-1CEST,M3.5",
            "CET-1CEST,M13.1.0,M10.5.0",
            "X9999",
        ] {
            assert_eq!(posix_tz_lookup(bad, 0), None, "{bad:?}");
        }
    }

    /// Builds a version-2 TZif file with the given types and 64-bit transitions.
    fn tzif(types: &[(i32, bool, &str)], transitions: &[(i64, u8)], footer: &str) -> Vec<u8> {
        let mut chars = Vec::new();
        let mut ttinfo = Vec::new();
        for (off, dst, abbr) in types {
            ttinfo.extend_from_slice(&off.to_be_bytes());
            ttinfo.push(u8::from(*dst));
            ttinfo.push(chars.len() as u8);
            chars.extend_from_slice(abbr.as_bytes());
            chars.push(0);
        }
        let header = |timecnt: usize| {
            let mut h = b"TZif2".to_vec();
            h.extend_from_slice(&[0; 15]);
            for c in [0, 0, 0, timecnt, types.len(), chars.len()] {
                h.extend_from_slice(&(c as u32).to_be_bytes());
            }
            h
        };
        // An empty v1 block, then the v2 block.
        let mut out = header(0);
        out.extend_from_slice(&ttinfo);
        out.extend_from_slice(&chars);
        out.extend(header(transitions.len()));
        for (when, _) in transitions {
            out.extend_from_slice(&when.to_be_bytes());
        }
        out.extend(transitions.iter().map(|t| t.1));
        out.extend_from_slice(&ttinfo);
        out.extend_from_slice(&chars);
        out.extend_from_slice(format!("\n{footer}\n").as_bytes());
        out
    }

    #[test]
    fn tzif_transitions_and_footer() {
        let data = tzif(
            &[
                (3208, false, "LMT"),
                (7200, true, "CEST"),
                (3600, false, "CET"),
            ],
            &[
                (-2_422_054_408, 2),
                (at(1990, 3, 25, 1, 0), 1),
                (at(1990, 9, 30, 1, 0), 2),
            ],
            "CET-1CEST,M3.5.0,M10.5.0/3",
        );
        let zone = parse_tzif(&data).unwrap();
        assert_eq!(zone.lookup(-3_000_000_000), ("LMT".into(), 3208));
        assert_eq!(zone.lookup(at(1990, 6, 1, 0, 0)), ("CEST".into(), 7200));
        // Past the table: the footer decides.
        assert_eq!(zone.lookup(at(2025, 7, 1, 0, 0)), ("CEST".into(), 7200));
        assert_eq!(zone.lookup(at(2025, 12, 1, 0, 0)), ("CET".into(), 3600));

        let utc = parse_tzif(&tzif(&[(0, false, "UTC")], &[], "UTC0")).unwrap();
        assert_eq!(utc.lookup(1_700_000_000), ("UTC".into(), 0));
    }

    #[test]
    fn tzif_rejects_garbage() {
        assert!(parse_tzif(b"").is_err());
        assert!(parse_tzif(b"TZjf2000000000000000").is_err());
        let mut data = tzif(&[(0, false, "UTC")], &[(0, 0)], "UTC0");
        data.truncate(60);
        assert!(parse_tzif(&data).is_err());
        // A transition pointing at a type that does not exist.
        let data = tzif(&[(0, false, "UTC")], &[(0, 7)], "");
        assert!(parse_tzif(&data).is_err());
    }

    #[test]
    fn emits_time_and_zone() {
        let t = Time { zone: Zone::utc() };
        let mut sink = Sink::new();
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            sysfs: dir.path().into(),
            ..Paths::default()
        };
        t.collect(&paths, &mut sink).unwrap();
        let text = sink.render(crate::exposition::Format::Text);
        assert!(
            text.contains("node_time_zone_offset_seconds{time_zone=\"UTC\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("\nnode_time_seconds 1."), "{text}");
    }
}
