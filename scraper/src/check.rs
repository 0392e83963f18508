//! `heimdall check metrics`: validates an exposition with [`crate::textparse`] and lints it the
//! way `promtool check metrics` (client_golang's `promlint`) does.
//!
//! Validity is the parser's verdict: the first error fails the check with its line and
//! column. Lint problems (no HELP, a counter without `_total`, camelCase, non-base units, …)
//! are warnings: they are reported, once per family, and do not fail the check.

use std::collections::HashSet;
use std::fmt;

use crate::model::{LabelsBuilder, METRIC_NAME};
use crate::textparse::{Entry, Format, MetricType, ParseError, Parser, SampleEntry};

/// At most this many warnings are kept (a generated exposition can have one per family);
/// the rest are only counted in [`CheckSummary::warnings_omitted`].
pub const MAX_WARNINGS: usize = 1000;

/// Label names linted per family; a family with more is linted on its first ones only.
const MAX_LABEL_NAMES_LINTED: usize = 256;

/// What a valid exposition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    pub format: Format,
    /// Metric families (a run of metadata and samples of one name and its suffixes).
    pub families: usize,
    pub samples: usize,
    pub warnings: Vec<Lint>,
    /// Warnings beyond [`MAX_WARNINGS`].
    pub warnings_omitted: usize,
    /// With [`check_metrics_detected`]: the input looked like OpenMetrics (it ends with
    /// `# EOF`) but is not, and passed as text format; this is why it is not OpenMetrics.
    pub not_openmetrics: Option<ParseError>,
}

/// A lint problem of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// The first line of the family.
    pub line: usize,
    pub metric: String,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.metric, self.message)
    }
}

/// The format of an exposition by its content: OpenMetrics if its last line is `# EOF`,
/// else text.
pub fn detect_format(input: &[u8]) -> Format {
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    if body == b"# EOF" || body.ends_with(b"\n# EOF") {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Checks `input` in the format [`detect_format`] finds. Text fixtures often end with `# EOF`
/// too (Prometheus' own do; it is a comment there), so an input that fails as OpenMetrics but
/// passes as text passes, with the OpenMetrics error in [`CheckSummary::not_openmetrics`].
pub fn check_metrics_detected(input: &[u8]) -> Result<CheckSummary, ParseError> {
    match detect_format(input) {
        Format::Text => check_metrics(input, Format::Text),
        Format::OpenMetrics => check_metrics(input, Format::OpenMetrics).or_else(|om| {
            check_metrics(input, Format::Text)
                .map(|summary| CheckSummary {
                    not_openmetrics: Some(om.clone()),
                    ..summary
                })
                .map_err(|_| om)
        }),
    }
}

/// Parses all of `input`; the summary and lint warnings if it is valid, else the first error.
pub fn check_metrics(input: &[u8], format: Format) -> Result<CheckSummary, ParseError> {
    let mut parser = Parser::new(input, format);
    let mut linter = Linter {
        format,
        family: None,
        summary: CheckSummary {
            format,
            families: 0,
            samples: 0,
            warnings: Vec::new(),
            warnings_omitted: 0,
            not_openmetrics: None,
        },
    };
    while let Some(entry) = parser.next()? {
        linter.entry(&entry, parser.line());
    }
    linter.finish_family();
    Ok(linter.summary)
}

struct Linter<'a> {
    format: Format,
    family: Option<FamilyLint<'a>>,
    summary: CheckSummary,
}

struct FamilyLint<'a> {
    name: &'a str,
    kind: MetricType,
    has_help: bool,
    line: usize,
    /// Label names already linted in this family.
    labels_seen: HashSet<String>,
}

/// Sample-name suffixes that can follow a family name.
const SUFFIXES: [&str; 8] = [
    "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

impl<'a> Linter<'a> {
    fn entry(&mut self, entry: &Entry<'a>, line: usize) {
        match entry {
            Entry::Help { metric, text } => {
                self.family_for_metadata(metric, line).has_help |= !text.is_empty()
            }
            Entry::Type { metric, kind } => self.family_for_metadata(metric, line).kind = *kind,
            Entry::Unit { metric, .. } => {
                self.family_for_metadata(metric, line);
            }
            Entry::Comment => {}
            Entry::Sample(s) => self.sample(s, line),
        }
    }

    fn family_for_metadata(&mut self, metric: &'a str, line: usize) -> &mut FamilyLint<'a> {
        if self.family.as_ref().is_none_or(|f| f.name != metric) {
            self.start_family(metric, line);
        }
        self.family
            .get_or_insert_with(|| FamilyLint::new(metric, line))
    }

    fn start_family(&mut self, name: &'a str, line: usize) {
        self.finish_family();
        self.summary.families += 1;
        self.family = Some(FamilyLint::new(name, line));
    }

    fn sample(&mut self, s: &SampleEntry<'a>, line: usize) {
        self.summary.samples += 1;
        let belongs = self.family.as_ref().is_some_and(|f| {
            s.name
                .strip_prefix(f.name)
                .is_some_and(|rest| rest.is_empty() || SUFFIXES.contains(&rest))
        });
        if !belongs {
            self.start_family(s.name, line);
        }
        let mut b = LabelsBuilder::default();
        s.labels(&mut b);
        let Some(f) = self.family.as_mut() else {
            return;
        };
        let mut camel = false;
        for l in b.iter().filter(|l| &*l.name != METRIC_NAME) {
            // Each label name is looked at once per family; the set is bounded by the cap.
            if f.labels_seen.len() < MAX_LABEL_NAMES_LINTED
                && f.labels_seen.insert(l.name.to_string())
            {
                camel |= is_camel_case(&l.name);
            }
        }
        if camel {
            let (name, line) = (f.name, f.line);
            self.warn(
                line,
                name,
                "label names should be written in 'snake_case' not 'camelCase'".into(),
            );
        }
    }

    /// Lints the family that just ended.
    fn finish_family(&mut self) {
        let Some(f) = self.family.take() else {
            return;
        };
        let mut problems: Vec<String> = Vec::new();
        if !f.has_help {
            problems.push("no help text".into());
        }
        // As in promlint, untyped families get no type-based lints.
        let total = f.name.ends_with("_total");
        match f.kind {
            // OpenMetrics names a counter family without `_total`; its samples add it.
            MetricType::Counter if self.format == Format::Text && !total => {
                problems.push("counter metrics should have \"_total\" suffix".into());
            }
            MetricType::Counter | MetricType::Unknown => {}
            _ if total => {
                problems.push("non-counter metrics should not have \"_total\" suffix".into());
            }
            _ => {}
        }
        let distribution = matches!(
            f.kind,
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary
        );
        if !distribution && f.kind != MetricType::Unknown {
            for suffix in ["_bucket", "_count", "_sum"] {
                if f.name.ends_with(suffix) {
                    problems.push(format!(
                        "non-histogram and non-summary metrics should not have \"{suffix}\" suffix"
                    ));
                }
            }
        }
        if is_camel_case(f.name) {
            problems.push("metric names should be written in 'snake_case' not 'camelCase'".into());
        }
        let lower = f.name.to_ascii_lowercase();
        for t in [
            "counter",
            "gauge",
            "summary",
            "histogram",
            "gauge_histogram",
        ] {
            if lower.contains(&format!("_{t}_")) || lower.ends_with(&format!("_{t}")) {
                problems.push(format!("metric name should not include type '{t}'"));
            }
        }
        if f.name.contains(':') {
            problems.push("metric names should not contain ':'".into());
        }
        problems.extend(unit_problems(f.name));
        for p in problems {
            self.warn(f.line, f.name, p);
        }
    }

    fn warn(&mut self, line: usize, metric: &str, message: String) {
        if self.summary.warnings.len() < MAX_WARNINGS {
            self.summary.warnings.push(Lint {
                line,
                metric: metric.to_owned(),
                message,
            });
        } else {
            self.summary.warnings_omitted += 1;
        }
    }
}

impl<'a> FamilyLint<'a> {
    fn new(name: &'a str, line: usize) -> Self {
        Self {
            name,
            kind: MetricType::Unknown,
            has_help: false,
            line,
            labels_seen: HashSet::new(),
        }
    }
}

/// A lowercase letter followed by an uppercase one, as promlint looks for.
fn is_camel_case(name: &str) -> bool {
    name.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
}

/// Units promlint knows, with the base unit to use instead.
const UNITS: [(&str, &str); 24] = [
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];

const UNIT_PREFIXES: [&str; 17] = [
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kila", "mega",
    "giga", "tera", "peta", "exa", "zetta", "yotta",
];

const UNIT_ABBREVIATIONS: [&str; 14] = [
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

/// Non-base units (`milliseconds`, `minutes`) and abbreviated units (`_ms`) in a name.
fn unit_problems(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let mut out = Vec::new();
    for token in lower.split('_') {
        let (prefix, unit) = UNIT_PREFIXES
            .iter()
            .find_map(|p| token.strip_prefix(p).map(|u| (*p, u)))
            .filter(|(_, u)| UNITS.iter().any(|(n, _)| n == u))
            .unwrap_or(("", token));
        if let Some((_, base)) = UNITS.iter().find(|(n, _)| *n == unit)
            && (!prefix.is_empty() || unit != *base)
        {
            out.push(format!("use base unit \"{base}\" instead of \"{token}\""));
        }
    }
    if lower
        .split('_')
        .skip(1)
        .any(|t| UNIT_ABBREVIATIONS.contains(&t))
    {
        out.push("metric names should not contain abbreviated units".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lints(input: &str, format: Format) -> Vec<String> {
        check_metrics(input.as_bytes(), format)
            .unwrap()
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn counts_families_and_samples() {
        let s = check_metrics(
            b"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"2\"} 1\n\n# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nb 1\n",
            Format::Text,
        )
        .unwrap();
        assert_eq!((s.families, s.samples), (3, 6));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert_eq!(s.warnings[0].to_string(), "line 11: b: no help text");
        let s = check_metrics(
            b"# TYPE a counter\n# HELP a A.\na_total 1\na_created 1\n# EOF\n",
            Format::OpenMetrics,
        )
        .unwrap();
        assert_eq!((s.families, s.samples, s.warnings.len()), (1, 2, 0));
    }

    #[test]
    fn lints_like_promlint() {
        let w = lints(
            "# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n\
             # HELP temp_total T.\n# TYPE temp_total gauge\ntemp_total 1\n\
             # HELP fooBar F.\n# TYPE fooBar gauge\nfooBar{someLabel=\"x\"} 1\n\
             # HELP rt_milliseconds R.\n# TYPE rt_milliseconds gauge\nrt_milliseconds 1\n\
             # HELP up_ms U.\n# TYPE up_ms gauge\nup_ms 1\n\
             # HELP a:b A.\n# TYPE a:b gauge\na:b 1\n\
             # HELP x_histogram_total X.\n# TYPE x_histogram_total counter\nx_histogram_total 1\n",
            Format::Text,
        );
        let want = [
            "line 1: requests: counter metrics should have \"_total\" suffix",
            "line 4: temp_total: non-counter metrics should not have \"_total\" suffix",
            "line 7: fooBar: label names should be written in 'snake_case' not 'camelCase'",
            "line 7: fooBar: metric names should be written in 'snake_case' not 'camelCase'",
            "line 10: rt_milliseconds: use base unit \"seconds\" instead of \"milliseconds\"",
            "line 13: up_ms: metric names should not contain abbreviated units",
            "line 16: a:b: metric names should not contain ':'",
            "line 19: x_histogram_total: metric name should not include type 'histogram'",
        ];
        assert_eq!(w, want);
    }

    #[test]
    fn invalid_input_fails_with_position() {
        let e = check_metrics(b"a 1\nb{x=\"1\" 2\n", Format::Text).unwrap_err();
        assert_eq!((e.line, e.column), (2, 9));
        assert!(check_metrics(b"a 1\n", Format::OpenMetrics).is_err());
    }

    #[test]
    fn format_detection() {
        assert_eq!(detect_format(b"a 1\n# EOF\n"), Format::OpenMetrics);
        assert_eq!(detect_format(b"# EOF"), Format::OpenMetrics);
        assert_eq!(detect_format(b"a 1\n# EOF\n\n"), Format::Text);
        assert_eq!(detect_format(b"a 1\n"), Format::Text);
        assert_eq!(detect_format(b"a 1\n#  EOF\n"), Format::Text);
    }

    #[test]
    fn detected_openmetrics_falls_back_to_text() {
        let om = b"# TYPE a counter\na_total 1\n# EOF\n";
        let s = check_metrics_detected(om).unwrap();
        assert_eq!((s.format, s.not_openmetrics), (Format::OpenMetrics, None));
        // Text with a trailing `# EOF` comment, as Prometheus' fixtures have.
        let text = b"# TYPE a_total counter\na_total 1\n# EOF\n";
        let s = check_metrics_detected(text).unwrap();
        assert_eq!(s.format, Format::Text);
        assert_eq!(s.not_openmetrics.unwrap().line, 2);
        // Invalid in both: the OpenMetrics error.
        let e = check_metrics_detected(b"a{ 1\n# EOF\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
        assert!(check_metrics_detected(b"a 1\n").is_ok());
    }

    #[test]
    fn warnings_are_bounded() {
        let input: String = (0..MAX_WARNINGS + 10)
            .map(|i| format!("m{i} 1\n"))
            .collect();
        let s = check_metrics(input.as_bytes(), Format::Text).unwrap();
        assert_eq!(s.warnings.len(), MAX_WARNINGS);
        assert_eq!(s.warnings_omitted, 10);
    }
}
