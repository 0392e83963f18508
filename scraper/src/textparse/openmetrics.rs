//! OpenMetrics 1.0 text: the ABNF of the specification, exactly, and the rules that make an
//! exposition valid beyond its syntax, checked as lines stream by with a little state.
//!
//! # Families
//! A family starts with metadata for a new name or with a sample whose name cannot belong to
//! the current family (a `counter` named `a` owns `a_total` and `a_created`, a `gauge` only
//! `a`, …; see [`Suffix`]). Every family *claims* the sample names its type can produce, and a
//! new family whose name or sample names were claimed before is an error: that catches a
//! family seen twice (interleaving) and names that clash, such as a gauge `a_created` and a
//! counter `a`. Claims are `(stem, suffix)` pairs borrowing from the input.
//!
//! # Metrics and points
//! Within a family, a metric is a label set without the labels that vary inside one metric
//! point (`le` of buckets, `quantile`, a stateset's state label), identified by a hash (see
//! [`lex::label_hash`]). A metric's samples must be contiguous (finished metrics are
//! remembered per family) and either all have timestamps or none. Without timestamps a metric
//! has one point, so a repeated sample is an error; with them, a new point starts when the
//! timestamp grows or a sample repeats at the same timestamp, and timestamps may not go back.
//! Histogram points are checked when they end: a `+Inf` bucket, `_count` equal to it, `_count`
//! and `_sum` together, no `_sum` with negative buckets (a gauge histogram's `_gsum` may only be
//! negative with them).
//!
//! Not checked: exemplar values against their bucket's range, duplicate quantiles or states
//! within a point, and the `info` rule on label names shared with the metric.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::lex::{self, Fail, LResult, Syntax};
use super::{Entry, Exemplar, MetricType, SampleEntry};

/// Past this many claimed family/sample names, new families are no longer checked for clashes
/// (each claim costs about 40 bytes; a real exposition has a few thousand).
pub const MAX_TRACKED_FAMILY_NAMES: usize = 1 << 18;

/// Past this many finished metrics in one family, further metrics of that family are no
/// longer checked for interleaving (each costs about 16 bytes).
pub const MAX_TRACKED_METRICS: usize = 1 << 20;

/// The most code points an exemplar's label names and values may have together (spec).
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// What a line was.
#[derive(Debug)]
pub(super) enum Step<'a> {
    Entry(Entry<'a>),
    Eof,
}

/// The suffix a sample name adds to its family name. No suffix is a suffix of another, so a
/// name splits into `(stem, suffix)` one way only ([`split_suffix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Suffix {
    None,
    Total,
    Created,
    Bucket,
    Count,
    Sum,
    Gcount,
    Gsum,
    Info,
}

const SUFFIXES: [(&str, Suffix); 8] = [
    ("_total", Suffix::Total),
    ("_created", Suffix::Created),
    ("_bucket", Suffix::Bucket),
    ("_count", Suffix::Count),
    ("_sum", Suffix::Sum),
    ("_gcount", Suffix::Gcount),
    ("_gsum", Suffix::Gsum),
    ("_info", Suffix::Info),
];

impl Suffix {
    fn as_str(self) -> &'static str {
        SUFFIXES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(text, _)| text)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The sample-name suffixes a family of type `kind` may use.
fn suffixes(kind: MetricType) -> &'static [Suffix] {
    use Suffix as S;
    match kind {
        MetricType::Counter => &[S::Total, S::Created],
        MetricType::Histogram => &[S::Bucket, S::Count, S::Sum, S::Created],
        MetricType::GaugeHistogram => &[S::Bucket, S::Gcount, S::Gsum],
        MetricType::Summary => &[S::None, S::Count, S::Sum, S::Created],
        MetricType::Info => &[S::Info],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[S::None],
    }
}

/// `name` as `(stem, suffix)`: `a_total` is `("a", Total)`, `a` is `("a", None)`.
fn split_suffix(name: &str) -> (&str, Suffix) {
    SUFFIXES
        .iter()
        .find_map(|(text, s)| name.strip_suffix(text).map(|stem| (stem, *s)))
        .unwrap_or((name, Suffix::None))
}

/// The suffix that makes `sample` out of `family`, if any.
fn suffix_from(sample: &str, family: &str) -> Option<Suffix> {
    let rest = sample.strip_prefix(family)?;
    if rest.is_empty() {
        return Some(Suffix::None);
    }
    SUFFIXES.iter().find(|(t, _)| *t == rest).map(|(_, s)| *s)
}

fn parse_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "unknown" => MetricType::Unknown,
        _ => return None,
    })
}

/// The validation state: what earlier families claimed and where the current one stands.
#[derive(Debug, Default)]
pub(super) struct Validator<'a> {
    /// [`super::Rules::SyntaxOnly`]: no family, metric or value rules (and no state).
    syntax_only: bool,
    family: Option<Family<'a>>,
    /// `(stem, suffix)` → the family that claimed it.
    claims: HashMap<(&'a str, Suffix), &'a str, lex::SeededState>,
    /// Metrics (label-set hashes) of the current family already finished.
    finished: HashSet<u64, lex::SeededState>,
}

#[derive(Debug)]
struct Family<'a> {
    name: &'a str,
    kind: MetricType,
    has_type: bool,
    has_help: bool,
    unit: Option<&'a str>,
    has_samples: bool,
    metric: Option<Metric>,
}

#[derive(Debug)]
struct Metric {
    id: u64,
    timestamped: bool,
    point: Point,
}

/// One metric point being read.
#[derive(Debug)]
struct Point {
    first_line: usize,
    ts: Option<i64>,
    /// [`Suffix::bit`]s of the single-valued samples seen.
    seen: u16,
    /// The last bucket's `le` and value.
    last_bucket: Option<(f64, f64)>,
    inf_bucket: Option<f64>,
    negative_bucket: bool,
    count: Option<f64>,
    sum: Option<f64>,
}

impl Point {
    fn new(first_line: usize, ts: Option<i64>) -> Self {
        Self {
            first_line,
            ts,
            seen: 0,
            last_bucket: None,
            inf_bucket: None,
            negative_bucket: false,
            count: None,
            sum: None,
        }
    }
}

/// What a sample line says, once lexed.
struct Lexed<'a> {
    series_end: usize,
    /// Hash of the labels that identify the metric.
    id: u64,
    /// Raw value of the point label (`le`, `quantile`, the stateset label), if present.
    point_label: Option<&'a str>,
    point_label_at: usize,
    value: f64,
    value_at: usize,
    timestamp: Option<i64>,
    ts_at: usize,
    exemplar: Option<Exemplar<'a>>,
    exemplar_at: usize,
}

impl<'a> Validator<'a> {
    pub(super) fn new(syntax_only: bool) -> Self {
        Self {
            syntax_only,
            ..Self::default()
        }
    }

    /// Parses and checks one line (without its `\n`).
    pub(super) fn line(
        &mut self,
        bytes: &'a [u8],
        number: usize,
        names: &mut Vec<&'a str>,
    ) -> LResult<Step<'a>> {
        let line = super::utf8(bytes)?;
        match bytes.first() {
            None => Err(Fail::at(0, "empty line (OpenMetrics has no blank lines)")),
            Some(b'#') => self.descriptor(line),
            Some(_) => self
                .sample(line, number, names)
                .map(|s| Step::Entry(Entry::Sample(s))),
        }
    }

    /// `# EOF`, `# HELP`, `# TYPE` or `# UNIT`; nothing else may start with `#`.
    fn descriptor(&mut self, line: &'a str) -> LResult<Step<'a>> {
        if line == "# EOF" {
            self.end_family()?;
            return Ok(Step::Eof);
        }
        let Some((word, rest)) = line
            .strip_prefix("# ")
            .and_then(|r| r.split_at_checked(4))
            .filter(|(w, _)| matches!(*w, "HELP" | "TYPE" | "UNIT"))
        else {
            return Err(Fail::at(
                0,
                "lines starting with '#' must be \"# HELP\", \"# TYPE\", \"# UNIT\" or \"# EOF\" (OpenMetrics has no comments)",
            ));
        };
        let b = line.as_bytes();
        if b.get(6) != Some(&b' ') {
            return Err(Fail::at(6, format!("expected a space after {word}")));
        }
        let n = lex::metric_name_len(rest.get(1..).unwrap_or_default().as_bytes());
        if n == 0 {
            return Err(Fail::at(7, format!("expected a metric name after {word}")));
        }
        let metric = lex::slice(line, 7, 7 + n)?;
        if b.get(7 + n) != Some(&b' ') {
            return Err(Fail::at(
                7 + n,
                format!("expected a space after the metric name in {word}"),
            ));
        }
        let value_at = 8 + n;
        let value = lex::slice(line, value_at, line.len())?;
        let entry = match word {
            "HELP" => Entry::Help {
                metric,
                text: lex::unescape(value, true),
            },
            "TYPE" => Entry::Type {
                metric,
                kind: parse_type(value)
                    .ok_or_else(|| Fail::at(value_at, format!("invalid metric type {value:?}")))?,
            },
            _ => {
                if let Some(bad) = value
                    .bytes()
                    .position(|c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b':'))
                {
                    return Err(Fail::at(
                        value_at + bad,
                        "a unit may only have the characters of a metric name",
                    ));
                }
                if !value.is_empty()
                    && metric
                        .strip_suffix(value)
                        .is_none_or(|stem| !stem.ends_with('_'))
                {
                    return Err(Fail::at(
                        value_at,
                        format!("the metric name {metric} must end with \"_{value}\", its unit"),
                    ));
                }
                Entry::Unit {
                    metric,
                    unit: value,
                }
            }
        };
        if !self.syntax_only {
            self.family_metadata(&entry, metric, value_at)?;
        }
        Ok(Step::Entry(entry))
    }

    /// The family rules of a metadata line: before the family's samples, at most once each,
    /// no unit on info and stateset, and the TYPE's sample names claimed.
    fn family_metadata(
        &mut self,
        entry: &Entry<'a>,
        metric: &'a str,
        value_at: usize,
    ) -> LResult<()> {
        self.metadata_for(metric)?;
        let fam = self.family_mut()?;
        let twice = |what: &str| Err(Fail::at(0, format!("second {what} for {metric}")));
        match entry {
            Entry::Help { .. } => {
                if fam.has_help {
                    return twice("HELP");
                }
                fam.has_help = true;
            }
            Entry::Type { kind, .. } => {
                if fam.has_type {
                    return twice("TYPE");
                }
                fam.has_type = true;
                fam.kind = *kind;
                check_unit_type(fam, value_at)?;
                for s in suffixes(*kind) {
                    if *s != Suffix::None {
                        self.claim((metric, *s), metric, 7)?;
                    }
                }
            }
            Entry::Unit { unit, .. } => {
                if fam.unit.is_some() {
                    return twice("UNIT");
                }
                fam.unit = Some(unit);
                check_unit_type(fam, value_at)?;
            }
            Entry::Comment | Entry::Sample(_) => {}
        }
        Ok(())
    }

    /// Makes `metric` the current family for a metadata line: the same family if it has no
    /// samples yet, else a new one.
    fn metadata_for(&mut self, metric: &'a str) -> LResult<()> {
        if let Some(fam) = &self.family
            && fam.name == metric
        {
            if fam.has_samples {
                return Err(Fail::at(
                    0,
                    format!("metadata for {metric} after its samples"),
                ));
            }
            return Ok(());
        }
        self.start_family(metric, 7)
    }

    fn family_mut(&mut self) -> LResult<&mut Family<'a>> {
        self.family
            .as_mut()
            .ok_or_else(|| Fail::at(0, "internal error: no current metric family"))
    }

    /// Ends the current family and starts `name` (untyped until a TYPE line). The name is
    /// claimed first, so that on a clash the current family is still there to explain it.
    fn start_family(&mut self, name: &'a str, at: usize) -> LResult<()> {
        self.claim(split_suffix(name), name, at)?;
        self.end_family()?;
        self.family = Some(Family {
            name,
            kind: MetricType::Unknown,
            has_type: false,
            has_help: false,
            unit: None,
            has_samples: false,
            metric: None,
        });
        Ok(())
    }

    /// Checks the current family's last point and forgets the family.
    fn end_family(&mut self) -> LResult<()> {
        self.finished.clear();
        match self.family.take() {
            Some(Family {
                name,
                kind,
                metric: Some(m),
                ..
            }) => end_point(name, kind, &m.point),
            _ => Ok(()),
        }
    }

    /// Records that family `owner` may produce the sample name `(stem, suffix)`.
    fn claim(&mut self, key: (&'a str, Suffix), owner: &'a str, at: usize) -> LResult<()> {
        if let Some(earlier) = self.claims.get(&key) {
            let name = format!("{}{}", key.0, key.1.as_str());
            return Err(Fail::at(
                at,
                if *earlier == owner {
                    format!(
                        "metric family {owner} appears twice (families must not be interleaved)"
                    )
                } else {
                    format!(
                        "metric family {owner} clashes with the earlier family {earlier}: both can have samples named {name}"
                    )
                },
            ));
        }
        if self.claims.len() < MAX_TRACKED_FAMILY_NAMES {
            self.claims.insert(key, owner);
        }
        Ok(())
    }

    fn sample(
        &mut self,
        line: &'a str,
        number: usize,
        names: &mut Vec<&'a str>,
    ) -> LResult<SampleEntry<'a>> {
        let b = line.as_bytes();
        let n = lex::metric_name_len(b);
        if n == 0 {
            return Err(Fail::at(
                0,
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or '#'",
            ));
        }
        let name = lex::slice(line, 0, n)?;
        if self.syntax_only {
            let lexed = lex_sample(
                line,
                n,
                name,
                MetricType::Unknown,
                Suffix::None,
                names,
                false,
            )?;
            return Ok(SampleEntry {
                series: b.get(..lexed.series_end).unwrap_or_default(),
                name,
                value: lexed.value,
                timestamp: lexed.timestamp,
                exemplar: lexed.exemplar,
            });
        }
        let suffix = match &self.family {
            Some(fam) => suffix_from(name, fam.name)
                .filter(|s| suffixes(fam.kind).contains(s))
                .map(|s| (fam.name, fam.kind, s)),
            None => None,
        };
        let (family, kind, suffix) = match suffix {
            Some(found) => found,
            None => {
                self.start_family(name, 0).map_err(|e| {
                    self.explain_foreign_sample(name)
                        .map_or(e, |r| Fail::at(0, r))
                })?;
                (name, MetricType::Unknown, Suffix::None)
            }
        };
        let lexed = lex_sample(line, n, family, kind, suffix, names, true)?;
        check_value(kind, suffix, family, &lexed)?;
        if lexed.exemplar.is_some() {
            check_exemplar(kind, suffix, lexed.exemplar_at)?;
        }
        self.observe(number, kind, suffix, family, &lexed)?;
        Ok(SampleEntry {
            series: b.get(..lexed.series_end).unwrap_or_default(),
            name,
            value: lexed.value,
            timestamp: lexed.timestamp,
            exemplar: lexed.exemplar,
        })
    }

    /// A clearer reason when a sample's name does not fit the current family but looks like
    /// it was meant to (`a` after `# TYPE a counter`).
    fn explain_foreign_sample(&self, name: &str) -> Option<String> {
        let fam = self.family.as_ref()?;
        if name != fam.name && split_suffix(name).0 != fam.name {
            return None;
        }
        let allowed: Vec<String> = suffixes(fam.kind)
            .iter()
            .map(|s| format!("{}{}", fam.name, s.as_str()))
            .collect();
        Some(format!(
            "sample {name} does not fit the {} family {}: its samples are named {}",
            fam.kind,
            fam.name,
            allowed.join(", ")
        ))
    }

    /// Tracks metrics and points of the current family for the sample just lexed.
    fn observe(
        &mut self,
        number: usize,
        kind: MetricType,
        suffix: Suffix,
        family: &'a str,
        s: &Lexed<'_>,
    ) -> LResult<()> {
        let Some(fam) = self.family.as_mut() else {
            return Err(Fail::at(0, "internal error: no current metric family"));
        };
        fam.has_samples = true;
        let le = match (kind, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, Suffix::Bucket) => {
                s.point_label.and_then(|v| parse_le(v).ok())
            }
            _ => None,
        };
        let metric = match &mut fam.metric {
            Some(m) if m.id == s.id => m,
            slot => {
                if let Some(done) = slot.take() {
                    end_point(family, kind, &done.point)?;
                    if self.finished.len() < MAX_TRACKED_METRICS {
                        self.finished.insert(done.id);
                    }
                }
                if self.finished.contains(&s.id) {
                    return Err(Fail::at(
                        0,
                        format!(
                            "this metric of {family} appeared earlier, before another one (metrics must not be interleaved)"
                        ),
                    ));
                }
                slot.insert(Metric {
                    id: s.id,
                    timestamped: s.timestamp.is_some(),
                    point: Point::new(number, s.timestamp),
                })
            }
        };
        if metric.timestamped != s.timestamp.is_some() {
            return Err(Fail::at(
                s.ts_at,
                "samples of one metric must all have a timestamp or none",
            ));
        }
        let repeats = match (le, metric.point.last_bucket) {
            (Some(le), Some((last, _))) => le <= last,
            (Some(_), None) => false,
            _ => {
                let single = !matches!(
                    (kind, suffix),
                    (MetricType::Summary | MetricType::StateSet, Suffix::None)
                );
                single && metric.point.seen & suffix.bit() != 0
            }
        };
        match (s.timestamp, metric.point.ts) {
            (Some(ts), Some(prev)) if ts < prev => {
                return Err(Fail::at(
                    s.ts_at,
                    "timestamp older than the previous sample of this metric (points must have increasing timestamps)",
                ));
            }
            (Some(ts), Some(prev)) if ts > prev || repeats => {
                end_point(family, kind, &metric.point)?;
                metric.point = Point::new(number, Some(ts));
            }
            (None, _) if repeats => {
                return Err(Fail::at(
                    if le.is_some() { s.value_at } else { 0 },
                    match le {
                        Some(le) if metric.point.last_bucket.is_some_and(|(l, _)| l == le) => {
                            "duplicate bucket (same le) in a histogram point".to_owned()
                        }
                        Some(_) => "histogram buckets must be sorted by increasing le".to_owned(),
                        None => format!(
                            "duplicate sample: this metric of {family} already has a {}{} sample without timestamp",
                            family,
                            suffix.as_str()
                        ),
                    },
                ));
            }
            _ => {}
        }
        add_to_point(&mut metric.point, suffix, le, s, family)
    }
}

/// Lexes `name[{labels}] SP value [SP timestamp] [SP # SP {labels} SP value [SP timestamp]]`
/// past the name (`n` bytes), given the family it belongs to (which decides the point label).
fn lex_sample<'a>(
    line: &'a str,
    n: usize,
    family: &str,
    kind: MetricType,
    suffix: Suffix,
    names: &mut Vec<&'a str>,
    strict: bool,
) -> LResult<Lexed<'a>> {
    let b = line.as_bytes();
    // The label that varies within a point, and one that must not be there.
    let (point_name, forbidden) = match (kind, suffix) {
        (MetricType::Histogram | MetricType::GaugeHistogram, Suffix::Bucket) => (Some("le"), None),
        (MetricType::Histogram | MetricType::GaugeHistogram, _) => (None, Some("le")),
        (MetricType::Summary, Suffix::None) => (Some("quantile"), None),
        (MetricType::Summary, _) => (None, Some("quantile")),
        (MetricType::StateSet, _) => (Some(family), None),
        _ => (None, None),
    };
    let mut id = 0u64;
    let mut point_label = None;
    let mut point_label_at = 0;
    let mut i = n;
    names.clear();
    if b.get(i) == Some(&b'{') {
        i = lex::scan_labels(line, i, Syntax::Strict, |name, value, at| {
            names.push(name);
            if Some(name) == point_name {
                point_label = Some(value);
                point_label_at = at;
            } else if Some(name) == forbidden {
                return Err(Fail::at(
                    at,
                    format!("label {name} is not allowed on {family}{}", suffix.as_str()),
                ));
            } else {
                id = id.wrapping_add(lex::label_hash(name, value));
            }
            Ok(())
        })?;
        lex::check_unique(names, n)?;
    }
    let series_end = i;
    if let (Some(label), None) = (point_name, point_label) {
        return Err(Fail::at(
            n,
            format!(
                "{family}{} needs a label {label} in a {kind}",
                suffix.as_str()
            ),
        ));
    }
    if b.get(i) != Some(&b' ') {
        return Err(Fail::at(
            i,
            if i == b.len() {
                "expected a space and a value"
            } else if i == n {
                "expected '{', or a space and a value, after the metric name"
            } else {
                "expected a space and a value after the labels"
            },
        ));
    }
    let value_at = i + 1;
    let (value_str, next) = token(line, value_at)?;
    let value = lex::parse_float(value_str)
        .map_err(|e| Fail::at(value_at, format!("{e}: {value_str:?}")))?;
    i = next;
    let mut timestamp = None;
    let mut ts_at = value_at;
    if b.get(i) == Some(&b' ') && b.get(i + 1) != Some(&b'#') {
        ts_at = i + 1;
        let (ts, next) = token(line, ts_at)?;
        timestamp =
            Some(lex::parse_om_timestamp(ts).map_err(|e| Fail::at(ts_at, format!("{e}: {ts:?}")))?);
        i = next;
    }
    let mut exemplar = None;
    let exemplar_at = i;
    if i < b.len() {
        exemplar = Some(lex_exemplar(line, i, names, strict)?);
    }
    Ok(Lexed {
        series_end,
        id,
        point_label,
        point_label_at,
        value,
        value_at,
        timestamp,
        ts_at,
        exemplar,
        exemplar_at,
    })
}

/// The token starting at `at` and running to the next space or the end; it may not be empty.
fn token(line: &str, at: usize) -> LResult<(&str, usize)> {
    let b = line.as_bytes();
    let rest = b.get(at..).unwrap_or_default();
    let len = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    if len == 0 {
        return Err(Fail::at(
            at,
            if at == b.len() {
                "trailing space at the end of the line"
            } else {
                "expected one space between fields, found two"
            },
        ));
    }
    Ok((lex::slice(line, at, at + len)?, at + len))
}

/// ` # {labels} value [timestamp]` at `at` (which holds the space). `strict` checks the length
/// of the labels too.
fn lex_exemplar<'a>(
    line: &'a str,
    at: usize,
    names: &mut Vec<&'a str>,
    strict: bool,
) -> LResult<Exemplar<'a>> {
    let b = line.as_bytes();
    if b.get(at..at + 3) != Some(b" # ") {
        return Err(Fail::at(
            at,
            "expected the end of the line, a timestamp or \" # \" and an exemplar",
        ));
    }
    let open = at + 3;
    if b.get(open) != Some(&b'{') {
        return Err(Fail::at(open, "expected '{' to open the exemplar's labels"));
    }
    names.clear();
    let mut chars = 0;
    let close = lex::scan_labels(line, open, Syntax::Strict, |name, value, _| {
        names.push(name);
        chars += name.len() + lex::unescaped_chars(value);
        Ok(())
    })?;
    lex::check_unique(names, open)?;
    if strict && chars > MAX_EXEMPLAR_LABEL_CHARS {
        return Err(Fail::at(
            open,
            format!(
                "exemplar labels have {chars} characters, more than {MAX_EXEMPLAR_LABEL_CHARS}"
            ),
        ));
    }
    let labels = lex::slice(line, open, close)?;
    if b.get(close) != Some(&b' ') {
        return Err(Fail::at(
            close,
            "expected a space and a value after the exemplar's labels",
        ));
    }
    let (value_str, mut i) = token(line, close + 1)?;
    let value = lex::parse_float(value_str)
        .map_err(|e| Fail::at(close + 1, format!("exemplar value: {e}: {value_str:?}")))?;
    let mut timestamp = None;
    if b.get(i) == Some(&b' ') {
        let (ts, next) = token(line, i + 1)?;
        timestamp = Some(
            lex::parse_om_timestamp(ts)
                .map_err(|e| Fail::at(i + 1, format!("exemplar {e}: {ts:?}")))?,
        );
        i = next;
    }
    if i < b.len() {
        return Err(Fail::at(
            i,
            "expected the end of the line after the exemplar",
        ));
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp,
    })
}

/// A bucket's `le`: `+Inf` exactly, or a decimal number.
fn parse_le(raw: &str) -> Result<f64, ()> {
    if raw == "+Inf" {
        return Ok(f64::INFINITY);
    }
    if !lex::is_realnumber(raw) {
        return Err(());
    }
    raw.parse().map_err(|_| ())
}

/// The value rules of each type, for one sample.
fn check_value(kind: MetricType, suffix: Suffix, family: &str, s: &Lexed<'_>) -> LResult<()> {
    use MetricType as T;
    use Suffix as S;
    let v = s.value;
    let at = s.value_at;
    let name = || format!("{family}{}", suffix.as_str());
    let counter_like = |integer: bool| -> LResult<()> {
        if v.is_nan() {
            return Err(Fail::at(at, format!("{} must not be NaN", name())));
        }
        if v < 0.0 {
            return Err(Fail::at(at, format!("{} must not be negative", name())));
        }
        if integer && v.fract() != 0.0 {
            return Err(Fail::at(at, format!("{} must be an integer", name())));
        }
        Ok(())
    };
    match (kind, suffix) {
        (T::Counter, S::Total) => counter_like(false),
        (T::Histogram | T::GaugeHistogram, S::Bucket) => {
            let raw = s.point_label.unwrap_or_default();
            parse_le(raw).map_err(|()| {
                Fail::at(
                    s.point_label_at,
                    format!("le={raw:?} is not a bucket bound (a number, or +Inf)"),
                )
            })?;
            counter_like(true)
        }
        (T::Histogram, S::Count) | (T::GaugeHistogram, S::Gcount) | (T::Summary, S::Count) => {
            counter_like(true)
        }
        (T::Histogram | T::Summary, S::Sum) => counter_like(false),
        (T::GaugeHistogram, S::Gsum) if v.is_nan() => {
            Err(Fail::at(at, format!("{} must not be NaN", name())))
        }
        (T::Summary, S::None) => {
            let raw = s.point_label.unwrap_or_default();
            let quantile = lex::is_realnumber(raw)
                .then(|| raw.parse::<f64>().ok())
                .flatten();
            if !quantile.is_some_and(|q| (0.0..=1.0).contains(&q)) {
                return Err(Fail::at(
                    s.point_label_at,
                    format!("quantile={raw:?} is not a number from 0 to 1"),
                ));
            }
            if v < 0.0 {
                return Err(Fail::at(at, "a quantile's value must not be negative"));
            }
            Ok(())
        }
        (T::Info, _) if v != 1.0 => Err(Fail::at(at, "an info sample's value must be 1")),
        (T::StateSet, _) if v != 0.0 && v != 1.0 => {
            Err(Fail::at(at, "a stateset sample's value must be 0 or 1"))
        }
        _ => Ok(()),
    }
}

/// Exemplars only on counter totals and (gauge) histogram buckets.
fn check_exemplar(kind: MetricType, suffix: Suffix, at: usize) -> LResult<()> {
    match (kind, suffix) {
        (MetricType::Counter, Suffix::Total)
        | (MetricType::Histogram | MetricType::GaugeHistogram, Suffix::Bucket) => Ok(()),
        _ => Err(Fail::at(
            at,
            "exemplars are only allowed on counter _total and histogram _bucket samples",
        )),
    }
}

/// UNIT and TYPE together: info and stateset families have no unit.
fn check_unit_type(fam: &Family<'_>, at: usize) -> LResult<()> {
    if matches!(fam.kind, MetricType::Info | MetricType::StateSet)
        && fam.unit.is_some_and(|u| !u.is_empty())
    {
        return Err(Fail::at(
            at,
            format!("{} family {} cannot have a unit", fam.kind, fam.name),
        ));
    }
    Ok(())
}

/// Adds a checked sample to its point (histogram state only; other types need none).
fn add_to_point(
    p: &mut Point,
    suffix: Suffix,
    le: Option<f64>,
    s: &Lexed<'_>,
    family: &str,
) -> LResult<()> {
    if let Some(le) = le {
        if let Some((_, last)) = p.last_bucket
            && s.value < last
        {
            return Err(Fail::at(
                s.value_at,
                format!("bucket counts of {family} must not decrease (buckets are cumulative)"),
            ));
        }
        p.last_bucket = Some((le, s.value));
        p.negative_bucket |= le < 0.0;
        if le == f64::INFINITY {
            p.inf_bucket = Some(s.value);
        }
        return Ok(());
    }
    p.seen |= suffix.bit();
    match suffix {
        Suffix::Count | Suffix::Gcount => p.count = Some(s.value),
        Suffix::Sum | Suffix::Gsum => p.sum = Some(s.value),
        _ => {}
    }
    Ok(())
}

/// The rules a histogram point can only be checked against once it is complete.
fn end_point(family: &str, kind: MetricType, p: &Point) -> LResult<()> {
    let gauge = match kind {
        MetricType::Histogram => false,
        MetricType::GaugeHistogram => true,
        _ => return Ok(()),
    };
    let (count, sum) = if gauge {
        ("_gcount", "_gsum")
    } else {
        ("_count", "_sum")
    };
    let fail = |reason: String| Err(Fail::on_line(p.first_line, Cow::Owned(reason)));
    let Some(inf) = p.inf_bucket else {
        return fail(format!(
            "{kind} {family}: the metric point starting here has no +Inf bucket"
        ));
    };
    match (p.count, p.sum) {
        (Some(_), None) | (None, Some(_)) => {
            return fail(format!(
                "{kind} {family}: a metric point has {family}{count} and {family}{sum} both or neither"
            ));
        }
        (Some(c), _) if c != inf => {
            return fail(format!(
                "{kind} {family}: {family}{count} is {c} but the +Inf bucket is {inf}"
            ));
        }
        _ => {}
    }
    match p.sum {
        Some(_) if !gauge && p.negative_bucket => fail(format!(
            "{kind} {family}: a point with negative buckets must not have {family}{sum}"
        )),
        Some(s) if gauge && s < 0.0 && !p.negative_bucket => fail(format!(
            "{kind} {family}: {family}{sum} is negative but no bucket is"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Parser};
    use super::*;

    /// Parses a whole exposition; the error as "line:column reason".
    fn parse(text: &str) -> Result<Vec<Entry<'_>>, String> {
        let mut p = Parser::new(text.as_bytes(), Format::OpenMetrics);
        let mut out = Vec::new();
        loop {
            match p.next() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return Ok(out),
                Err(e) => return Err(format!("{}:{} {}", e.line, e.column, e.reason)),
            }
        }
    }

    fn ok(text: &str) {
        if let Err(e) = parse(text) {
            panic!("rejected: {e}\n{text}");
        }
    }

    /// Rejected, with the error on `line` and its reason containing `why`.
    fn bad(text: &str, line: usize, why: &str) {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                assert!(
                    e.starts_with(&format!("{line}:")) && e.contains(why),
                    "wanted line {line} and {why:?}, got {e}\n{text}"
                );
            }
        }
    }

    #[test]
    fn suffixes_split_one_way() {
        assert_eq!(split_suffix("a_total"), ("a", Suffix::Total));
        assert_eq!(split_suffix("a_gcount"), ("a", Suffix::Gcount));
        assert_eq!(split_suffix("a_count"), ("a", Suffix::Count));
        assert_eq!(split_suffix("a"), ("a", Suffix::None));
        assert_eq!(suffix_from("a_total", "a"), Some(Suffix::Total));
        assert_eq!(suffix_from("ab", "a"), None);
        assert_eq!(suffix_from("a", "a"), Some(Suffix::None));
    }

    #[test]
    fn entries_and_timestamps() {
        let e = parse(
            "# TYPE a counter\n# UNIT a \n# HELP a he\\\"lp\na_total{x=\"1\"} 1 1.5 # {t=\"x\"} 2 3\n# EOF\n",
        )
        .unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[2],
            Entry::Help {
                metric: "a",
                text: "he\"lp".into()
            }
        );
        let Entry::Sample(s) = &e[3] else {
            panic!("{e:?}")
        };
        assert_eq!(s.series, br#"a_total{x="1"}"#);
        assert_eq!((s.value, s.timestamp), (1.0, Some(1500)));
        let ex = s.exemplar.unwrap();
        assert_eq!(
            (ex.labels, ex.value, ex.timestamp),
            (r#"{t="x"}"#, 2.0, Some(3000))
        );
    }

    #[test]
    fn eof_is_required_and_last() {
        ok("# EOF");
        ok("# EOF\n");
        bad("", 1, "missing");
        bad("a 1\n", 2, "missing");
        bad("# EOF\n\n", 2, "after");
        bad("# EOF\na 1\n", 2, "after");
        bad("# EOF \n", 1, "'#'");
        bad("a 1\n\n# EOF\n", 2, "empty line");
        bad("# comment\n# EOF\n", 1, "no comments");
    }

    #[test]
    fn metadata_rules() {
        ok("# HELP a \n# UNIT a \n# EOF\n");
        ok(
            "# TYPE a_seconds gauge\n# UNIT a_seconds seconds\n# HELP a_seconds h\na_seconds 1\n# EOF\n",
        );
        bad("# HELP a\n# EOF\n", 1, "space after the metric name");
        bad("# TYPE a untyped\n# EOF\n", 1, "invalid metric type");
        bad("# UNIT a seconds\n# EOF\n", 1, "must end with");
        bad("# UNIT a_seconds seconds \n# EOF\n", 1, "characters");
        bad(
            "# UNIT x_u u\n# TYPE x_u info\n# EOF\n",
            2,
            "cannot have a unit",
        );
        bad("# HELP a x\n# HELP a x\n# EOF\n", 2, "second HELP");
        bad(
            "# TYPE a gauge\na 1\n# HELP a x\n# EOF\n",
            3,
            "after its samples",
        );
        bad(
            "# TYPE a gauge\n# TYPE b gauge\n# HELP a x\n# EOF\n",
            3,
            "appears twice",
        );
    }

    #[test]
    fn family_names_must_not_clash() {
        bad(
            "# TYPE a_created gauge\n# TYPE a counter\n# EOF\n",
            2,
            "clashes",
        );
        bad(
            "# TYPE a counter\n# TYPE a_total gauge\n# EOF\n",
            2,
            "clashes",
        );
        bad(
            "# TYPE a counter\na 1\n# EOF\n",
            2,
            "does not fit the counter family a",
        );
        bad("a 1\nb 1\na 1\n# EOF\n", 3, "appears twice");
        // A gauge a and an unknown a_total cannot produce the same sample name.
        ok("# TYPE a gauge\na 1\na_total 1\n# EOF\n");
    }

    #[test]
    fn metrics_and_points() {
        ok("a{x=\"1\"} 1\na{x=\"2\"} 1\n# EOF\n");
        ok("a{x=\"1\",y=\"2\"} 1 0\na{y=\"2\",x=\"1\"} 2 0\n# EOF\n");
        bad(
            "a{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\"} 1\n# EOF\n",
            3,
            "interleaved",
        );
        bad("a 1\na 2\n# EOF\n", 2, "duplicate sample");
        bad("a 1 2\na 1 1\n# EOF\n", 2, "older");
        bad("a 1 1\na 1\n# EOF\n", 2, "all have a timestamp");
        ok(
            "# TYPE s summary\ns_count{a=\"bb\"} 0 123\ns_sum{a=\"bb\"} 0 123\ns_count{a=\"bb\"} 0 456\ns_sum{a=\"bb\"} 0 456\n# EOF\n",
        );
        bad(
            "# TYPE s summary\ns_count{a=\"bb\"} 0 123\ns_count{a=\"bb\"} 0 456\ns_sum{a=\"bb\"} 0 123\n# EOF\n",
            4,
            "older",
        );
    }

    #[test]
    fn histogram_rules() {
        let h = |body: &str| format!("# TYPE h histogram\n{body}# EOF\n");
        ok(&h(
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\nh_created 1\n",
        ));
        bad(
            &h("h_bucket{le=\"2\"} 0\nh_bucket{le=\"1\"} 0\n"),
            3,
            "sorted",
        );
        bad(
            &h("h_bucket{le=\"1\"} 0\nh_bucket{le=\"1\"} 0\n"),
            3,
            "duplicate bucket",
        );
        bad(
            &h("h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"),
            3,
            "cumulative",
        );
        bad(&h("h_bucket{le=\"1\"} 2\n"), 2, "+Inf");
        bad(
            &h("h_bucket{le=\"+Inf\"} 2\nh_count 2\n"),
            2,
            "both or neither",
        );
        bad(
            &h("h_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 1\n"),
            2,
            "is 1 but",
        );
        bad(
            &h("h_bucket{le=\"-1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_count 0\nh_sum 0\n"),
            2,
            "negative buckets",
        );
        bad(&h("h_bucket{le=\"+Inf\"} 1.5\n"), 2, "integer");
        bad(&h("h_bucket{le=\"+INF\"} 1\n"), 2, "bucket bound");
        bad(&h("h_bucket 1\n"), 2, "needs a label le");
        bad(&h("h_count{le=\"1\"} 1\n"), 2, "not allowed");
        bad(&h("h_sum NaN\n"), 2, "NaN");
        // Points with timestamps: each complete.
        ok(&h("h_bucket{le=\"+Inf\"} 1 1\nh_bucket{le=\"+Inf\"} 2 2\n"));
        bad(
            &h("h_bucket{le=\"+Inf\"} 1 1\nh_count 1 2\nh_sum 1 2\n"),
            3,
            "+Inf",
        );
        let g = |body: &str| format!("# TYPE g gaugehistogram\n{body}# EOF\n");
        ok(&g(
            "g_bucket{le=\"-1\"} 1\ng_bucket{le=\"+Inf\"} 2\ng_gcount 2\ng_gsum -3\n",
        ));
        bad(
            &g("g_bucket{le=\"+Inf\"} 2\ng_gcount 2\ng_gsum -3\n"),
            2,
            "negative but",
        );
    }

    #[test]
    fn other_type_rules() {
        ok("# TYPE s stateset\ns{s=\"a\"} 1\ns{s=\"b\"} 0\n# EOF\n");
        bad("# TYPE s stateset\ns{s=\"a\"} 0.5\n# EOF\n", 2, "0 or 1");
        bad("# TYPE s stateset\ns 1\n# EOF\n", 2, "needs a label s");
        ok("# TYPE i info\ni_info{v=\"1\"} 1\n# EOF\n");
        bad("# TYPE i info\ni_info{v=\"1\"} 2\n# EOF\n", 2, "must be 1");
        ok("# TYPE q summary\nq{quantile=\"0.5\"} NaN\nq{quantile=\"1\"} 1\n# EOF\n");
        bad(
            "# TYPE q summary\nq{quantile=\"2\"} 1\n# EOF\n",
            2,
            "from 0 to 1",
        );
        bad(
            "# TYPE q summary\nq{quantile=\"0.5\"} -1\n# EOF\n",
            2,
            "negative",
        );
        bad("# TYPE q summary\nq_count 1.5\n# EOF\n", 2, "integer");
        bad("# TYPE c counter\nc_total -1\n# EOF\n", 2, "negative");
        ok("# TYPE c counter\nc_total 1\nc_created -5\n# EOF\n");
    }

    #[test]
    fn exemplar_rules() {
        let long = "x".repeat(127);
        ok(&format!(
            "# TYPE c counter\nc_total 1 # {{a=\"{long}\"}} 1\n# EOF\n"
        ));
        bad(
            &format!("# TYPE c counter\nc_total 1 # {{ab=\"{long}\"}} 1\n# EOF\n"),
            2,
            "128",
        );
        ok("# TYPE c counter\nc_total 1 # {} 1\n# EOF\n");
        bad(
            "# TYPE c counter\nc_created 1 # {} 1\n# EOF\n",
            2,
            "only allowed",
        );
        bad("a 1 # {} 1\n# EOF\n", 1, "only allowed");
        bad(
            "# TYPE c counter\nc_total 1 # {} 1 NaN\n# EOF\n",
            2,
            "timestamp",
        );
        bad(
            "# TYPE c counter\nc_total 1 # {a=\"1\",a=\"2\"} 1\n# EOF\n",
            2,
            "duplicate",
        );
        bad("# TYPE c counter\nc_total 1 #{} 1\n# EOF\n", 2, "exemplar");
    }

    #[test]
    fn syntax_only_skips_the_family_and_value_rules() {
        let input = "# TYPE h histogram\nh_bucket{le=\"-1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum -1\n# TYPE h gauge\nh 1\nh 2\n# EOF\n";
        assert!(parse(input).is_err());
        let mut p = Parser::with_rules(
            input.as_bytes(),
            Format::OpenMetrics,
            super::super::Rules::SyntaxOnly,
        );
        let mut n = 0;
        while let Some(e) = p.next().unwrap() {
            n += usize::from(matches!(e, Entry::Sample(_)));
        }
        assert_eq!(n, 6);
        for broken in [
            "a  1\n# EOF\n",
            "a 1\n",
            "# TYPE a untyped\n# EOF\n",
            "a{a=\"1\",a=\"1\"} 1\n# EOF\n",
        ] {
            let mut p = Parser::with_rules(
                broken.as_bytes(),
                Format::OpenMetrics,
                super::super::Rules::SyntaxOnly,
            );
            assert!(
                std::iter::from_fn(|| p.next().transpose()).any(|r| r.is_err()),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn syntax_is_exact() {
        for line in [
            " a 1",
            "a  1",
            "a 1 ",
            "a\t1",
            "a 1\t",
            "a{a=\"1\"}1",
            "a{ a=\"1\"} 1",
            "a{a=\"1\",} 1",
            "a 1 1 1",
            "a 1 1 ",
            "a 0x1",
            "a 1\r",
        ] {
            bad(&format!("{line}\n# EOF\n"), 1, "");
        }
    }
}
