//! Prometheus text format 0.0.4, one line at a time, as Prometheus' `promparse.go` reads it:
//! blanks (spaces, tabs) may surround every token, blank lines are skipped, `#` lines other
//! than `# HELP` / `# TYPE` are comments, label sets may end with a comma, timestamps are
//! integer milliseconds. There is no state between lines.

use std::borrow::Cow;

use super::lex::{self, Fail, LResult, Syntax};
use super::{Entry, MetricType, SampleEntry};

/// Parses one line; `None` for a blank line. `names` is scratch space for the duplicate-label
/// check.
pub(super) fn parse_line<'a>(
    bytes: &'a [u8],
    names: &mut Vec<&'a str>,
) -> LResult<Option<Entry<'a>>> {
    let start = lex::skip_blank(bytes, 0);
    match bytes.get(start) {
        None => Ok(None),
        Some(b'#') => comment(bytes, start).map(Some),
        Some(_) => {
            let line = super::utf8(bytes)?;
            sample(line, start, names).map(|s| Some(Entry::Sample(s)))
        }
    }
}

/// A `#` line at `hash`: `# HELP`, `# TYPE` (with at least one blank after `#` and after the
/// keyword, as Prometheus' lexer wants), or a comment.
fn comment(bytes: &[u8], hash: usize) -> LResult<Entry<'_>> {
    let after_hash = lex::skip_blank(bytes, hash + 1);
    if after_hash == hash + 1 {
        return Ok(Entry::Comment);
    }
    let rest = bytes.get(after_hash..).unwrap_or_default();
    let keyword = match rest.get(..5) {
        Some(b"HELP " | b"HELP\t") => Meta::Help,
        Some(b"TYPE " | b"TYPE\t") => Meta::Type,
        _ => return Ok(Entry::Comment),
    };
    // Only now is the line more than a comment, whose bytes Prometheus does not check.
    let line = super::utf8(bytes)?;
    let name_at = lex::skip_blank(bytes, after_hash + 5);
    let n = lex::metric_name_len(bytes.get(name_at..).unwrap_or_default());
    if n == 0 {
        return Err(Fail::at(
            name_at,
            format!("expected a metric name after {}", keyword.word()),
        ));
    }
    let metric = lex::slice(line, name_at, name_at + n)?;
    // The text is everything after the one blank that follows the name.
    let text = match bytes.get(name_at + n) {
        None => "",
        Some(b' ' | b'\t') => lex::slice(line, name_at + n + 1, line.len())?,
        Some(_) => {
            return Err(Fail::at(
                name_at + n,
                "expected a blank after the metric name",
            ));
        }
    };
    Ok(match keyword {
        Meta::Help => Entry::Help {
            metric,
            text: lex::unescape(text, false),
        },
        Meta::Type => Entry::Type {
            metric,
            kind: parse_type(text).ok_or_else(|| {
                Fail::at(name_at + n + 1, format!("invalid metric type {text:?}"))
            })?,
        },
    })
}

#[derive(Clone, Copy)]
enum Meta {
    Help,
    Type,
}

impl Meta {
    fn word(self) -> &'static str {
        match self {
            Meta::Help => "HELP",
            Meta::Type => "TYPE",
        }
    }
}

/// The types of the text format (no OpenMetrics-only types, as in Prometheus).
fn parse_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" => MetricType::Unknown,
        _ => return None,
    })
}

/// `name [{labels}] value [timestamp]` starting at `start`.
fn sample<'a>(line: &'a str, start: usize, names: &mut Vec<&'a str>) -> LResult<SampleEntry<'a>> {
    let b = line.as_bytes();
    let n = lex::metric_name_len(b.get(start..).unwrap_or_default());
    if n == 0 {
        return Err(Fail::at(
            start,
            "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), '#' or an empty line",
        ));
    }
    let name = lex::slice(line, start, start + n)?;
    let mut i = lex::skip_blank(b, start + n);
    let mut series_end = start + n;
    if b.get(i) == Some(&b'{') {
        names.clear();
        let open = i;
        i = lex::scan_labels(line, open, Syntax::Lenient, |name, _, _| {
            names.push(name);
            Ok(())
        })?;
        lex::check_unique(names, open)?;
        series_end = i;
        i = lex::skip_blank(b, i);
    }
    let value_at = i;
    let value_len = b
        .get(i..)
        .unwrap_or_default()
        .iter()
        .position(|c| matches!(c, b' ' | b'\t' | b'{'))
        .unwrap_or(b.len() - i.min(b.len()));
    if value_len == 0 {
        return Err(Fail::at(i, format!("expected a value after {name}")));
    }
    let value_str = lex::slice(line, value_at, value_at + value_len)?;
    let value = lex::parse_float(value_str)
        .map_err(|e| Fail::at(value_at, Cow::from(format!("{e}: {value_str:?}"))))?;
    i = lex::skip_blank(b, value_at + value_len);
    let mut timestamp = None;
    if i < b.len() {
        let ts_len = b
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|c| matches!(c, b' ' | b'\t'))
            .unwrap_or(b.len() - i);
        let ts = lex::slice(line, i, i + ts_len)?;
        timestamp =
            Some(lex::parse_text_timestamp(ts).map_err(|e| Fail::at(i, format!("{e}: {ts:?}")))?);
        i = lex::skip_blank(b, i + ts_len);
        if i < b.len() {
            return Err(Fail::at(
                i,
                "expected the end of the line after the timestamp",
            ));
        }
    }
    Ok(SampleEntry {
        series: b.get(start..series_end).unwrap_or_default(),
        name,
        value,
        timestamp,
        exemplar: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Option<Entry<'_>>, String> {
        let mut names = Vec::new();
        parse_line(line.as_bytes(), &mut names).map_err(|f| format!("{}@{}", f.reason, f.at))
    }

    fn sample_of(line: &str) -> SampleEntry<'_> {
        match one(line) {
            Ok(Some(Entry::Sample(s))) => s,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn samples() {
        let s = sample_of(r#"http_requests_total{method="post",code="200"} 1027 1395066363000"#);
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(
            s.series,
            br#"http_requests_total{method="post",code="200"}"#
        );
        assert_eq!((s.value, s.timestamp), (1027.0, Some(1_395_066_363_000)));
        let s = sample_of("  up  1  ");
        assert_eq!(
            (s.name, s.series, s.value, s.timestamp),
            ("up", &b"up"[..], 1.0, None)
        );
        // Blanks around every token and a trailing comma, as Prometheus takes them.
        let s = sample_of("m { a = \"1\" , b=\"2\", }\t-Inf\t0");
        assert_eq!(s.series, br#"m { a = "1" , b="2", }"#);
        assert_eq!((s.value, s.timestamp), (f64::NEG_INFINITY, Some(0)));
        assert!(sample_of("m NaN").value.is_nan());
        assert_eq!(sample_of("m{} 1e3").value, 1000.0);
        assert_eq!(sample_of("a:b 1").name, "a:b");
    }

    #[test]
    fn bad_samples() {
        for bad in [
            "0m 1",
            "m",
            "m ",
            "m{} ",
            "m 1 2 3",
            "m 1 1.5",
            "m 1 -1",
            "m 0x1p3",
            "m 1_0",
            "m +nan",
            "m 1\r",
            "m{a=\"1\",a=\"2\"} 1",
            "m{__name__=\"x\"} 1",
            "m{a=\"1\"}{b=\"2\"} 1",
            "m 1{",
            "{a=\"1\"} 1",
            "m-x 1",
            "m 1 99999999999999999999",
        ] {
            assert!(one(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn metadata_and_comments() {
        assert_eq!(
            one("# HELP m  two  spaces \\\\ \\n \\\" end"),
            Ok(Some(Entry::Help {
                metric: "m",
                text: " two  spaces \\ \n \\\" end".into()
            }))
        );
        assert_eq!(
            one("# HELP m"),
            Ok(Some(Entry::Help {
                metric: "m",
                text: "".into()
            }))
        );
        assert_eq!(
            one("#\tTYPE\tm untyped"),
            Ok(Some(Entry::Type {
                metric: "m",
                kind: MetricType::Unknown
            }))
        );
        for comment in [
            "#",
            "# comment",
            "#HELP m x",
            "# HELP",
            "# TYPEm counter",
            "# EOF",
            "# \u{0}\u{ff}",
        ] {
            assert_eq!(one(comment), Ok(Some(Entry::Comment)), "{comment:?}");
        }
        // Comment bytes are not checked, as in Prometheus.
        let mut names = Vec::new();
        assert!(matches!(
            parse_line(b"# \xff\xfe", &mut names),
            Ok(Some(Entry::Comment))
        ));
        assert!(parse_line(b"# HELP m \xff", &mut names).is_err());
        assert_eq!(one(""), Ok(None));
        assert_eq!(one(" \t "), Ok(None));
        for bad in [
            "# TYPE m",
            "# TYPE m gaugehistogram",
            "# TYPE m counter ",
            "# TYPE m  counter",
            "# TYPE 0m counter",
            "# HELP  ",
            "# HELP m-x text",
        ] {
            assert!(one(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
