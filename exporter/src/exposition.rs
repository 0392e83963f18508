//! The exposition writer: text format 0.0.4 and OpenMetrics 1.0, byte-compatible with what
//! node_exporter (client_golang's `expfmt`) writes.
//!
//! Collectors append samples to a [`Sink`]: one arena of pre-rendered, escaped label sets and
//! one flat vector of records, so emitting a sample never allocates once the sink has grown to
//! its working size (only the first sample of a new family allocates its name and help).
//! [`encode`] then merges any number of sinks, families sorted by name and samples sorted by
//! label values (the order `promhttp` serves), straight into one output buffer.

use std::collections::HashMap;

/// The metric type as written in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Untyped,
}

impl MetricType {
    fn text_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Untyped => "untyped",
        }
    }
}

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub const TEXT_CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
    pub const OPENMETRICS_CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => Self::TEXT_CONTENT_TYPE,
            Format::OpenMetrics => Self::OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Content negotiation as promhttp does it: OpenMetrics only when the `Accept` header
    /// names `application/openmetrics-text` with a q-value above every text/plain offer.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best_om = -1.0f32;
        let mut best_text = -1.0f32;
        for part in accept.split(',') {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            for p in params {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            if q <= 0.0 {
                continue;
            }
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                best_om = best_om.max(q);
            } else if media.eq_ignore_ascii_case("text/plain") || media == "*/*" {
                best_text = best_text.max(q);
            }
        }
        if best_om > 0.0 && best_om >= best_text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[derive(Debug)]
struct Family {
    name: Box<str>,
    help: Box<str>,
    kind: MetricType,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    family: u32,
    labels_start: u32,
    labels_end: u32,
    value: f64,
}

/// Most label sets are short; a sample with more labels than this is still written, its
/// labels sorted on the heap (no collector of ours comes close).
const MAX_STACK_LABELS: usize = 16;

/// Where collectors put their samples. One per collector per scrape.
#[derive(Debug, Default)]
pub struct Sink {
    families: Vec<Family>,
    by_name: HashMap<Box<str>, u32>,
    records: Vec<Record>,
    arena: String,
    last_family: Option<u32>,
}

impl Sink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of samples emitted so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.emit(name, help, MetricType::Gauge, labels, value);
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.emit(name, help, MetricType::Counter, labels, value);
    }

    pub fn untyped(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.emit(name, help, MetricType::Untyped, labels, value);
    }

    /// Appends one sample. Labels may come in any order; they are written sorted by name, as
    /// client_golang does. The first family of a name fixes its help and type.
    pub fn emit(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = self.family_index(name, help, kind);
        let start = self.arena.len();
        if labels.len() <= MAX_STACK_LABELS {
            let mut sorted = [("", ""); MAX_STACK_LABELS];
            sorted[..labels.len()].copy_from_slice(labels);
            let sorted = &mut sorted[..labels.len()];
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            render_labels(&mut self.arena, sorted);
        } else {
            let mut sorted = labels.to_vec();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            render_labels(&mut self.arena, &sorted);
        }
        self.records.push(Record {
            family,
            labels_start: start as u32,
            labels_end: self.arena.len() as u32,
            value,
        });
    }

    fn family_index(&mut self, name: &str, help: &str, kind: MetricType) -> u32 {
        if let Some(last) = self.last_family
            && &*self.families[last as usize].name == name
        {
            return last;
        }
        let idx = match self.by_name.get(name) {
            Some(&idx) => idx,
            None => {
                let idx = self.families.len() as u32;
                self.families.push(Family {
                    name: name.into(),
                    help: help.into(),
                    kind,
                });
                self.by_name.insert(name.into(), idx);
                idx
            }
        };
        self.last_family = Some(idx);
        idx
    }

    fn labels(&self, r: &Record) -> &str {
        &self.arena[r.labels_start as usize..r.labels_end as usize]
    }

    /// Record indices sorted by (family, rendered labels); ranges per family are contiguous.
    fn sorted_order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.records.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (ra, rb) = (&self.records[a as usize], &self.records[b as usize]);
            ra.family
                .cmp(&rb.family)
                .then_with(|| self.labels(ra).cmp(self.labels(rb)))
        });
        order
    }

    /// This sink alone, encoded: for tests and tools (the server encodes many sinks at once).
    pub fn render(&self, format: Format) -> String {
        let mut out = Vec::new();
        encode(&[self], format, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Iterates `(family name, labels rendered as `a="b",c="d"`, value)`, unsorted. For tests
    /// and the health page; the hot path is [`encode`].
    pub fn samples(&self) -> impl Iterator<Item = (&str, &str, f64)> + '_ {
        self.records.iter().map(|r| {
            (
                &*self.families[r.family as usize].name,
                self.labels(r),
                r.value,
            )
        })
    }
}

fn render_labels(arena: &mut String, labels: &[(&str, &str)]) {
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            arena.push(',');
        }
        arena.push_str(name);
        arena.push_str("=\"");
        escape_into(arena, value, true);
        arena.push('"');
    }
}

fn escape_into(out: &mut String, s: &str, quote: bool) {
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes every family of every sink, sorted by family name, into `out`. A family name that
/// appears in more than one sink is written once, from the first sink (client_golang would
/// fail the whole scrape instead); a duplicate label set within a family is written once.
pub fn encode(sinks: &[&Sink], format: Format, out: &mut Vec<u8>) {
    let orders: Vec<Vec<u32>> = sinks.iter().map(|s| s.sorted_order()).collect();
    // (name, sink, family, start, end) where start..end indexes into orders[sink].
    let mut fams: Vec<(&str, usize, usize, usize)> = Vec::new();
    for (si, sink) in sinks.iter().enumerate() {
        let order = &orders[si];
        let mut i = 0;
        while i < order.len() {
            let fam = sink.records[order[i] as usize].family;
            let start = i;
            while i < order.len() && sink.records[order[i] as usize].family == fam {
                i += 1;
            }
            fams.push((&sink.families[fam as usize].name, si, start, i));
        }
    }
    fams.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));

    let mut help_buf = String::new();
    let mut prev_name: Option<&str> = None;
    for &(name, si, start, end) in &fams {
        if prev_name == Some(name) {
            continue;
        }
        prev_name = Some(name);
        let sink = sinks[si];
        let order = &orders[si];
        let first = &sink.records[order[start] as usize];
        let family = &sink.families[first.family as usize];
        write_family_header(out, family, format, &mut help_buf);
        let mut prev_labels: Option<&str> = None;
        for &ri in &order[start..end] {
            let r = &sink.records[ri as usize];
            let labels = sink.labels(r);
            if prev_labels == Some(labels) {
                continue;
            }
            prev_labels = Some(labels);
            out.extend_from_slice(name.as_bytes());
            if !labels.is_empty() {
                out.push(b'{');
                out.extend_from_slice(labels.as_bytes());
                out.push(b'}');
            }
            out.push(b' ');
            match format {
                Format::Text => write_go_float(out, r.value),
                Format::OpenMetrics => write_openmetrics_float(out, r.value),
            }
            out.push(b'\n');
        }
    }
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

fn write_family_header(out: &mut Vec<u8>, family: &Family, format: Format, buf: &mut String) {
    let name: &str = &family.name;
    let (meta_name, type_name) = match format {
        Format::Text => (name, family.kind.text_name()),
        // expfmt: a counter's family name drops `_total`; a counter without it, and any
        // untyped family, is written as `unknown`.
        Format::OpenMetrics => match family.kind {
            MetricType::Counter => match name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (name, "unknown"),
            },
            MetricType::Gauge => (name, "gauge"),
            MetricType::Untyped => (name, "unknown"),
        },
    };
    if !family.help.is_empty() {
        buf.clear();
        escape_into(buf, &family.help, format == Format::OpenMetrics);
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(meta_name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(buf.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(meta_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(type_name.as_bytes());
    out.push(b'\n');
}

pub use heimdall_common::float::write_go_float;

/// OpenMetrics floats as expfmt writes them: like Go's `%g`, plus `.0` when neither a point
/// nor an exponent is present.
pub fn write_openmetrics_float(out: &mut Vec<u8>, v: f64) {
    let start = out.len();
    write_go_float(out, v);
    if v.is_finite() && !out[start..].iter().any(|&b| b == b'.' || b == b'e') {
        out.extend_from_slice(b".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(v: f64) -> String {
        let mut out = Vec::new();
        write_go_float(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_match_go_strconv_g() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.418183276e9, "1.418183276e+09"),
            (1.6042172416e10, "1.6042172416e+10"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (-2.5e-5, "-2.5e-05"),
            (1.2345, "1.2345"),
            (100.5, "100.5"),
            (999999.5, "999999.5"),
            (1e21, "1e+21"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123456.7, "123456.7"),
            (0.000123, "0.000123"),
            (-1234.5678, "-1234.5678"),
            (1e15, "1e+15"),
            (1.5e16, "1.5e+16"),
            (4201.9310000000005, "4201.9310000000005"),
            (184.20377100000002, "184.20377100000002"),
            (1.25e8, "1.25e+08"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(go(v), want, "formatting {v:?}");
        }
    }

    /// Go's %g layout rebuilt from Rust's own shortest `{:e}` digits: an independent reference.
    fn reference(v: f64) -> String {
        let e = format!("{:e}", v.abs());
        let (m, x) = e.split_once('e').unwrap();
        let exp: i32 = x.parse().unwrap();
        let digits: String = m.chars().filter(|c| *c != '.').collect();
        let sign = if v.is_sign_negative() { "-" } else { "" };
        if !(-4..6).contains(&exp) {
            let (first, rest) = digits.split_at(1);
            let point = if rest.is_empty() {
                String::new()
            } else {
                format!(".{rest}")
            };
            return format!(
                "{sign}{first}{point}e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            );
        }
        let dp = exp + 1;
        let mut out = String::from(sign);
        let nd = digits.len() as i32;
        if dp <= 0 {
            out.push('0');
        } else {
            for i in 0..dp {
                out.push(
                    digits
                        .as_bytes()
                        .get(i as usize)
                        .map_or('0', |&b| b as char),
                );
            }
        }
        if nd > dp {
            out.push('.');
            for i in dp..nd {
                out.push(if i < 0 {
                    '0'
                } else {
                    digits.as_bytes()[i as usize] as char
                });
            }
        }
        out
    }

    #[test]
    fn floats_round_trip_and_match_reference_on_random_bits() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mix raw bit patterns with "metric-like" values (counters, ratios, byte counts).
            let v = match i % 3 {
                0 => f64::from_bits(x),
                1 => (x % 10_000_000_000) as f64 / 100.0,
                _ => (x >> 11) as f64 * 2f64.powi(-53) * 10f64.powi((x % 40) as i32 - 20),
            };
            if !v.is_finite() {
                continue;
            }
            let got = go(v);
            assert_eq!(
                got.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{v:e} -> {got}"
            );
            let want = reference(v);
            if !(v.fract() == 0.0 && v.abs() < 1e6) && got != want {
                // Exact ties between two shortest candidates: ryu (like Go and Python) rounds
                // half to even, core::fmt rounds up. Same layout, both round-trip.
                assert_eq!(got.len(), want.len(), "{v:e}: {got} vs {want}");
                assert_eq!(want.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{v:e}");
            }
        }
    }

    #[test]
    fn openmetrics_floats_always_have_point_or_exponent() {
        let om = |v| {
            let mut out = Vec::new();
            write_openmetrics_float(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(om(1.0), "1.0");
        assert_eq!(om(0.0), "0.0");
        assert_eq!(om(42.0), "42.0");
        assert_eq!(om(0.25), "0.25");
        assert_eq!(om(1e6), "1e+06");
        assert_eq!(om(f64::NAN), "NaN");
    }

    #[test]
    fn families_sorted_labels_sorted_and_escaped() {
        let mut a = Sink::new();
        a.counter(
            "z_total",
            "Last family.",
            &[("mode", "idle"), ("cpu", "1")],
            2.0,
        );
        a.counter("z_total", "ignored", &[("cpu", "0"), ("mode", "idle")], 1.0);
        let mut b = Sink::new();
        b.gauge(
            "a_info",
            "Has \\ and\nnewline.",
            &[("v", "q\"x\\y\nz")],
            1.0,
        );
        b.untyped("m", "", &[], 0.5);
        let mut out = Vec::new();
        encode(&[&a, &b], Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# HELP a_info Has \\\\ and\\nnewline.\n# TYPE a_info gauge\n\
             a_info{v=\"q\\\"x\\\\y\\nz\"} 1\n\
             # TYPE m untyped\nm 0.5\n\
             # HELP z_total Last family.\n# TYPE z_total counter\n\
             z_total{cpu=\"0\",mode=\"idle\"} 1\nz_total{cpu=\"1\",mode=\"idle\"} 2\n"
        );
    }

    #[test]
    fn openmetrics_counter_and_unknown_rendering() {
        let mut s = Sink::new();
        s.counter("reqs_total", "Requests \"all\".", &[], 3.0);
        s.counter("odd_counter", "No suffix.", &[], 1.0);
        s.untyped("u", "Untyped.", &[], 1.0);
        let mut out = Vec::new();
        encode(&[&s], Format::OpenMetrics, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# HELP odd_counter No suffix.\n# TYPE odd_counter unknown\nodd_counter 1.0\n\
             # HELP reqs Requests \\\"all\\\".\n# TYPE reqs counter\nreqs_total 3.0\n\
             # HELP u Untyped.\n# TYPE u unknown\nu 1.0\n# EOF\n"
        );
    }

    #[test]
    fn duplicates_are_written_once() {
        let mut a = Sink::new();
        a.gauge("g", "h", &[("x", "1")], 1.0);
        a.gauge("g", "h", &[("x", "1")], 2.0);
        let mut b = Sink::new();
        b.gauge("g", "other", &[("x", "2")], 3.0);
        let mut out = Vec::new();
        encode(&[&a, &b], Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("g{x=\"1\"}").count(), 1);
        assert!(
            !text.contains("x=\"2\""),
            "second sink's family is dropped: {text}"
        );
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }
}
