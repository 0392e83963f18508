//! The exposition parser: Prometheus text format 0.0.4 and OpenMetrics 1.0, streaming and
//! zero-copy.
//!
//! [`Parser::next`] hands out one [`Entry`] per line, borrowing from the input: a sample line
//! costs no allocation (its name and raw `name{labels}` bytes are slices of the body, which is
//! what the scrape loop keys its series cache on), and labels are unescaped only when asked
//! ([`SampleEntry::labels`]), i.e. once per new series.
//!
//! - **Text format** is read as Prometheus' own parser (`model/textparse/promparse.go`) reads
//!   it, lenient where it is: blank lines, comments, blanks around tokens, a trailing comma in
//!   label sets, `untyped`, no `# EOF`. Timestamps are integer milliseconds.
//! - **OpenMetrics** follows the 1.0 ABNF exactly (single spaces, no comments, `# EOF`
//!   required and last) and checks the rules of the specification that the OpenMetrics test
//!   suite exercises, with a little state per family: family names unique and not clashing
//!   with another family's sample names (`foo_created` gauge vs `foo` counter), metadata before
//!   samples and at most once, families and metrics not interleaved, timestamps
//!   increasing within a metric, counter/histogram/summary values not negative or NaN,
//!   histogram buckets sorted with a `+Inf` bucket that matches `_count`, `_sum` only without
//!   negative buckets, info value 1, stateset values 0/1, `le`/`quantile` labels where they
//!   belong, exemplars only on `_total` and `_bucket` samples with at most 128 code points of
//!   labels. Timestamps are seconds, converted to milliseconds.
//!
//!   [`Rules::SyntaxOnly`] keeps the syntax and drops these rules, as Prometheus' own
//!   OpenMetrics parser does: real exposers break some (client_golang writes `_sum` on
//!   histograms with negative buckets, which the suite's `bad_histograms_3` forbids).
//!
//! Both formats reject duplicate label names in one sample, invalid UTF-8, and values Go's
//! `ParseFloat` would not take (hex floats, underscores, out of range). Exemplars are kept
//! ([`SampleEntry::exemplar`]); the caller may drop them. UTF-8 metric and label names in
//! quotes (Prometheus 3) are not supported: names are the legacy `[a-zA-Z_:][a-zA-Z0-9_:]*`.
//!
//! Memory: apart from the input, the parser keeps a scratch list of label names (reused from
//! line to line) and, with strict OpenMetrics rules, the names claimed by earlier families and
//! the label sets already finished in the current family. Those two sets are the only
//! allocations on sample lines, amortized (they grow on a new family or label set, never per
//! sample); past [`MAX_TRACKED_FAMILY_NAMES`] / [`MAX_TRACKED_METRICS`] entries their checks
//! stop rather than the memory growing further.

mod lex;
mod openmetrics;
mod promtext;

use std::borrow::Cow;

use crate::model::{LabelsBuilder, METRIC_NAME};

pub use openmetrics::{MAX_EXEMPLAR_LABEL_CHARS, MAX_TRACKED_FAMILY_NAMES, MAX_TRACKED_METRICS};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// The format of a response by its `Content-Type`: OpenMetrics for
    /// `application/openmetrics-text` (any parameters, any case), else text, which is what
    /// Prometheus assumes for a missing or unknown type.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A metric family's type, from `# TYPE`. The text format's `untyped` is [`MetricType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The OpenMetrics name (`unknown` for an untyped family), as the metadata API reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP metric text`, the text unescaped (borrowed unless it had escapes).
    Help {
        metric: &'a str,
        text: Cow<'a, str>,
    },
    /// `# TYPE metric type`.
    Type {
        metric: &'a str,
        kind: MetricType,
    },
    /// `# UNIT metric unit` (OpenMetrics only).
    Unit {
        metric: &'a str,
        unit: &'a str,
    },
    /// Any other `#` line (text format only; OpenMetrics has no comments).
    Comment,
    Sample(SampleEntry<'a>),
}

/// A sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleEntry<'a> {
    /// The raw `name{labels}` bytes as written (no value/timestamp) — the scrape loop's cache key.
    pub series: &'a [u8],
    /// The sample's metric name as written (`foo_total`, `foo_bucket`, …).
    pub name: &'a str,
    pub value: f64,
    /// Milliseconds (OpenMetrics seconds converted; text format already ms).
    pub timestamp: Option<i64>,
    /// The exemplar after ` # ` (OpenMetrics only), kept as written.
    pub exemplar: Option<Exemplar<'a>>,
}

impl SampleEntry<'_> {
    /// Unescapes and adds every label (and `__name__`) to `b`; allocation only here.
    /// Labels with an empty value are left out, as Prometheus does.
    pub fn labels(&self, b: &mut LabelsBuilder) {
        b.set(METRIC_NAME, self.name);
        let Ok(series) = std::str::from_utf8(self.series) else {
            return;
        };
        if let Some(open) = series.find('{') {
            add_labels(series, open, b);
        }
    }
}

/// An exemplar: labels, value and optional timestamp of one traced event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar<'a> {
    /// The raw `{labels}` as written.
    pub labels: &'a str,
    pub value: f64,
    /// Milliseconds.
    pub timestamp: Option<i64>,
}

impl Exemplar<'_> {
    /// Unescapes and adds the exemplar's labels to `b`.
    pub fn labels(&self, b: &mut LabelsBuilder) {
        add_labels(self.labels, 0, b);
    }
}

/// Adds the labels of the (already validated) label set opening at `open`.
fn add_labels(s: &str, open: usize, b: &mut LabelsBuilder) {
    // Cannot fail: the parser validated this label set before handing it out.
    let _ = lex::scan_labels(s, open, lex::Syntax::Lenient, |name, value, _| {
        b.set(name, lex::unescape(value, true));
        Ok(())
    });
}

/// How much of OpenMetrics a [`Parser`] enforces (the text format has one set of rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rules {
    /// The syntax and the rules of the specification that the OpenMetrics suite tests (see
    /// the [module docs](self)): what `heimdall check metrics` uses.
    #[default]
    Strict,
    /// The syntax only (ABNF, `# EOF`, UTF-8, duplicate label names), as Prometheus' own
    /// OpenMetrics parser, keeping no state between lines. For ingestion from exposers that
    /// break value rules: client_golang writes `_sum` on histograms with negative buckets.
    SyntaxOnly,
}

/// Why an exposition is invalid: where (1-based line and column, counting characters) and
/// what. The whole exposition counts as invalid, as OpenMetrics requires and Prometheus does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// Reads an exposition entry by entry; see the [module docs](self).
#[derive(Debug)]
pub struct Parser<'a> {
    input: &'a [u8],
    format: Format,
    /// Offset of the next line.
    pos: usize,
    /// Number of the next line (1-based).
    next_line: usize,
    /// Number of the line of the last entry returned.
    entry_line: usize,
    /// Label names of the current sample, for the duplicate check; reused.
    names: Vec<&'a str>,
    om: openmetrics::Validator<'a>,
    state: State,
}

#[derive(Debug)]
enum State {
    Running,
    Done,
    /// Further calls repeat the error: a broken exposition never looks complete.
    Failed(ParseError),
}

/// A line of input.
struct Line<'a> {
    bytes: &'a [u8],
    number: usize,
}

impl<'a> Parser<'a> {
    /// A parser enforcing [`Rules::Strict`].
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Self::with_rules(input, format, Rules::Strict)
    }

    pub fn with_rules(input: &'a [u8], format: Format, rules: Rules) -> Self {
        Self {
            input,
            format,
            pos: 0,
            next_line: 1,
            entry_line: 0,
            names: Vec::new(),
            om: openmetrics::Validator::new(rules == Rules::SyntaxOnly),
            state: State::Running,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The (1-based) line number of the entry [`Self::next`] returned last; 0 before the first.
    pub fn line(&self) -> usize {
        self.entry_line
    }

    /// Next entry; Ok(None) at the end (after `# EOF` for OpenMetrics, which is required there).
    #[expect(
        clippy::should_implement_trait,
        reason = "the scrape loop's API: a Result first, so `while let Some(e) = p.next()?` stops at an error"
    )]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        match &self.state {
            State::Running => {}
            State::Done => return Ok(None),
            State::Failed(e) => return Err(e.clone()),
        }
        let (line, result) = match self.format {
            Format::Text => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match result {
            Ok(Some(entry)) => {
                self.entry_line = self.next_line - 1;
                Ok(Some(entry))
            }
            Ok(None) => {
                self.state = State::Done;
                Ok(None)
            }
            Err(fail) => {
                let e = self.error(line, fail);
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn take_line(&mut self) -> Option<Line<'a>> {
        let rest = self.input.get(self.pos..).filter(|r| !r.is_empty())?;
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = Line {
            bytes: rest.get(..len).unwrap_or_default(),
            number: self.next_line,
        };
        self.pos += len + 1;
        self.next_line += 1;
        Some(line)
    }

    fn next_text(&mut self) -> (Option<Line<'a>>, lex::LResult<Option<Entry<'a>>>) {
        while let Some(line) = self.take_line() {
            match promtext::parse_line(line.bytes, &mut self.names) {
                Ok(None) => continue,
                Ok(Some(entry)) => return (None, Ok(Some(entry))),
                Err(fail) => return (Some(line), Err(fail)),
            }
        }
        (None, Ok(None))
    }

    fn next_openmetrics(&mut self) -> (Option<Line<'a>>, lex::LResult<Option<Entry<'a>>>) {
        let Some(line) = self.take_line() else {
            return (None, Err(lex::Fail::at(0, "missing \"# EOF\" at the end")));
        };
        let result = match self.om.line(line.bytes, line.number, &mut self.names) {
            Ok(openmetrics::Step::Entry(entry)) => Ok(Some(entry)),
            Ok(openmetrics::Step::Eof) => {
                if self.pos < self.input.len() {
                    return (
                        None,
                        Err(lex::Fail::at(0, "unexpected text after \"# EOF\"")),
                    );
                }
                Ok(None)
            }
            Err(fail) => Err(fail),
        };
        (Some(line), result)
    }

    /// Places a failure: `line` is the line it happened on, `None` for the line that would
    /// come next (end of input, text after `# EOF`).
    fn error(&self, line: Option<Line<'_>>, fail: lex::Fail) -> ParseError {
        let reason = fail.reason.into_owned();
        if let Some(number) = fail.line {
            return ParseError {
                line: number,
                column: 1,
                reason,
            };
        }
        let Some(line) = line else {
            return ParseError {
                line: self.next_line,
                column: 1,
                reason,
            };
        };
        let prefix = line.bytes.get(..fail.at).unwrap_or(line.bytes);
        let column = match std::str::from_utf8(prefix) {
            Ok(s) => s.chars().count(),
            Err(e) => e.valid_up_to(),
        } + 1;
        ParseError {
            line: line.number,
            column,
            reason,
        }
    }
}

/// `bytes` as UTF-8, or an error at the first bad byte.
fn utf8(bytes: &[u8]) -> lex::LResult<&str> {
    std::str::from_utf8(bytes).map_err(|e| lex::Fail::at(e.valid_up_to(), "invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("Application/OpenMetrics-Text"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Text
        );
        assert_eq!(Format::from_content_type(""), Format::Text);
        for f in [Format::Text, Format::OpenMetrics] {
            assert_eq!(Format::from_content_type(f.content_type()), f);
        }
    }

    #[test]
    fn labels_are_unescaped_only_on_request() {
        let input = b"m{b=\"x\\\"y\\n\",a=\"\",c=\"\\\\\"} 1\n";
        let mut p = Parser::new(input, Format::Text);
        let Some(Entry::Sample(s)) = p.next().unwrap() else {
            panic!("sample expected")
        };
        assert_eq!(s.series, &input[..input.len() - 3]);
        let mut b = LabelsBuilder::default();
        s.labels(&mut b);
        let l = b.build();
        assert_eq!(l.to_string(), r#"m{b="x\"y\n", c="\\"}"#);
        assert_eq!(l.get("a"), None);
    }

    #[test]
    fn errors_repeat_and_end_is_fused() {
        let mut p = Parser::new(b"a 1\nb x\nc 1\n", Format::Text);
        assert!(p.next().unwrap().is_some());
        let e = p.next().unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert_eq!(p.next().unwrap_err(), e);
        let mut p = Parser::new(b"a 1", Format::Text);
        assert!(p.next().unwrap().is_some());
        assert_eq!(p.next(), Ok(None));
        assert_eq!(p.next(), Ok(None));
    }

    #[test]
    fn columns_count_characters() {
        let e = Parser::new("m{a=\"☃☃\"} x\n".as_bytes(), Format::Text)
            .next()
            .unwrap_err();
        assert_eq!((e.line, e.column), (1, 11));
        assert_eq!(e.to_string(), format!("line 1, column 11: {}", e.reason));
        let e = Parser::new(b"m{a=\"\xff\"} 1\n", Format::Text)
            .next()
            .unwrap_err();
        assert_eq!(
            (e.line, e.column, e.reason.as_str()),
            (1, 6, "invalid UTF-8")
        );
    }
}
