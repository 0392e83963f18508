//! PromQL behaviour as `.test` scripts (Prometheus' `promqltest` language, the subset a
//! float-only engine needs): `load`, `clear`, `eval instant at`, `eval range from … to … step`,
//! expected series, scalars, strings, `expect fail|ordered|string|range vector`.
//!
//! Our own scripts live in `scraper/testdata/promql/*.test` and must pass completely. When
//! `/work/shared/peer/promql-tests/main` is present, the upstream Prometheus scripts are run
//! too and a per-file passed/failed/skipped table is printed (no rate is asserted yet).
//!
//! Like the upstream runner, every instant eval that expects success is also run as a range
//! query from t-1m to t+1m step 1m, and the middle step must give the same result: this
//! catches differences between the instant and range code paths.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heimdall_scraper::model::{Labels, stale_nan};
use heimdall_scraper::promql::memstore::MemStore;
use heimdall_scraper::promql::{Engine, EngineOptions, QueryError, Value, parse};
use heimdall_scraper::storage::Series;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr};
use std::time::UNIX_EPOCH;

/// Settings the upstream suite assumes (`NewTestEngine`): 5m lookback, 10,000 samples.
fn test_engine() -> Engine {
    Engine::new(EngineOptions {
        lookback_delta: Duration::from_secs(300),
        max_samples: 10_000,
        timeout: Duration::from_secs(60),
    })
}

/// Prometheus duration syntax: `1h30m`, `10s53ms`, `0`.
fn parse_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let mut total: i64 = 0;
    let mut rest = body;
    if rest.is_empty() {
        return Err(format!("bad duration {s:?}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|e| format!("{s:?}: {e}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            u => return Err(format!("bad unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Ok(if neg { -total } else { total })
}

/// A number as Go's ParseInt (base 0) / ParseFloat read it in test scripts.
fn parse_number(s: &str) -> Result<f64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).map_err(|e| format!("{s:?}: {e}"))? as f64
    } else {
        body.parse::<f64>().map_err(|e| format!("{s:?}: {e}"))?
    };
    Ok(if neg { -v } else { v })
}

/// A value slot of a series line: a number, a staleness marker, or nothing.
#[derive(Debug, Clone, Copy)]
enum Item {
    Value(f64),
    Stale,
    Empty,
}

/// Expands one series-line item (`1`, `_`, `_x3`, `stale`, `1x3`, `1+2x3`, `5-1x4`).
fn expand_item(tok: &str, out: &mut Vec<Item>) -> Result<(), String> {
    if tok == "_" {
        out.push(Item::Empty);
        return Ok(());
    }
    if tok == "stale" {
        out.push(Item::Stale);
        return Ok(());
    }
    if tok.starts_with("{{") {
        return Err("native histogram".to_owned());
    }
    let Some(xpos) = tok.rfind('x').filter(|&i| {
        i > 0 && tok[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < tok.len()
    }) else {
        out.push(Item::Value(parse_number(tok)?));
        return Ok(());
    };
    let times: usize = tok[xpos + 1..]
        .parse()
        .map_err(|e| format!("{tok:?}: {e}"))?;
    let head = &tok[..xpos];
    if head == "_" {
        out.extend(std::iter::repeat_n(Item::Empty, times));
        return Ok(());
    }
    if head == "stale" {
        out.extend(std::iter::repeat_n(Item::Stale, times + 1));
        return Ok(());
    }
    // Find the operator between start and increment (not a sign, not an exponent's sign).
    let bytes = head.as_bytes();
    let op = (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    match op {
        None => {
            let v = parse_number(head)?;
            out.extend(std::iter::repeat_n(Item::Value(v), times + 1));
        }
        Some(i) => {
            let start = parse_number(&head[..i])?;
            let mut inc = parse_number(&head[i + 1..])?;
            if bytes[i] == b'-' {
                inc = -inc;
            }
            let mut v = start;
            for _ in 0..=times {
                out.push(Item::Value(v));
                v += inc;
            }
        }
    }
    Ok(())
}

/// Splits `name{a="b", c="d"} 1 2 3` into labels and the value part.
fn parse_series_line(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".to_owned(), name.to_owned()));
    }
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
            {
                chars.next();
            }
            let Some(&(i, c)) = chars.peek() else { break };
            if c == '}' {
                end = Some(i + 1);
                break;
            }
            // Label name, possibly quoted.
            let mut lname = String::new();
            if c == '"' {
                chars.next();
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    lname.push(c);
                }
            } else {
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == ':' || c == '.' {
                        lname.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            match chars.next() {
                Some((_, '=')) => {}
                // `{"metric_name"}`: a quoted name alone is the metric name.
                Some((_, ',' | '}')) | None if !lname.is_empty() => {
                    pairs.push(("__name__".to_owned(), lname));
                    continue;
                }
                other => return Err(format!("expected '=' in {line:?}, got {other:?}")),
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("expected a quoted value in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated value in {line:?}")),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err(format!("bad escape in {line:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            pairs.push((lname, value));
        }
        let Some(end) = end else {
            return Err(format!("unterminated label set in {line:?}"));
        };
        rest = &body[end..];
    }
    Ok((Labels::from_pairs(pairs), rest.trim()))
}

/// The rest of `s` after its first `n` whitespace-separated tokens.
fn after_tokens(s: &str, n: usize) -> &str {
    let mut rest = s.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest.trim()
}

/// Expands the values of a series line. Native histograms (`{{…}}`, possibly with spaces
/// inside and `x3` / `+{{…}}x3` expansions) become empty slots: this engine stores floats.
fn parse_values(s: &str) -> Result<Vec<Item>, String> {
    let mut flat = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        flat.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            return Err("unterminated histogram".to_owned());
        };
        flat.push('H');
        rest = &rest[open + close + 2..];
    }
    flat.push_str(rest);
    let mut out = Vec::new();
    for tok in flat.split_whitespace() {
        if tok.contains('H') {
            let n = tok
                .rsplit_once('x')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map_or(1, |n| n + 1);
            out.extend(std::iter::repeat_n(Item::Empty, n));
            continue;
        }
        expand_item(tok, &mut out)?;
    }
    Ok(out)
}

/// Float comparison of the upstream runner: relative epsilon 1e-6, NaN equals NaN, the
/// staleness marker only itself.
fn almost_equal(a: f64, b: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    const EPSILON: f64 = 1e-6;
    if heimdall_scraper::model::is_stale(a) || heimdall_scraper::model::is_stale(b) {
        return a.to_bits() == b.to_bits();
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

#[derive(Debug, Default)]
struct Expect {
    fail: Option<Option<(bool, String)>>, // Some(None): any error; Some(Some((is_regex, text)))
    ordered: bool,
    string: Option<String>,
    scalar: Option<f64>,
    range_vector: Option<(i64, i64, i64)>,
    series: Vec<(Labels, Vec<Item>)>,
    /// Annotations (`expect warn`/`info`) are not produced by this engine and not checked.
    annotations: bool,
}

#[derive(Debug)]
enum EvalKind {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
    unsupported: usize,
}

struct Runner {
    store: MemStore,
    engine: Engine,
    counts: Counts,
    failures: Vec<String>,
    file: String,
}

impl Runner {
    fn new(file: &str) -> Self {
        Self {
            store: MemStore::new(),
            engine: test_engine(),
            counts: Counts::default(),
            failures: Vec::new(),
            file: file.to_owned(),
        }
    }

    fn fail(&mut self, line: usize, cmd: &str, why: String) {
        self.counts.failed += 1;
        self.failures
            .push(format!("{}:{line}: {cmd}\n    {why}", self.file));
    }

    fn run(&mut self, text: &str) {
        let lines: Vec<String> = text
            .split('\n')
            .map(|l| {
                let t = l.trim();
                if t.starts_with('#') {
                    String::new()
                } else {
                    t.to_owned()
                }
            })
            .collect();
        let mut i = 0;
        while i < lines.len() {
            let line = &lines[i];
            if line.is_empty() {
                i += 1;
                continue;
            }
            let lineno = i + 1;
            let mut body = Vec::new();
            let mut j = i + 1;
            while j < lines.len() && !lines[j].is_empty() {
                body.push((j + 1, lines[j].clone()));
                j += 1;
            }
            let cmd = line.clone();
            let word = cmd.split_whitespace().next().unwrap_or("").to_lowercase();
            if word == "clear" {
                self.store.clear();
                j = i + 1;
            } else if word.starts_with("load") {
                self.load(lineno, &cmd, &body);
            } else if word.starts_with("eval") {
                self.eval(lineno, &cmd, &body);
            } else {
                self.fail(lineno, &cmd, "unknown command".to_owned());
                j = i + 1;
            }
            i = j;
        }
    }

    fn load(&mut self, lineno: usize, cmd: &str, body: &[(usize, String)]) {
        let Some(interval) = cmd
            .split_whitespace()
            .nth(1)
            .and_then(|d| parse_duration(d).ok())
        else {
            self.fail(lineno, cmd, "bad load interval".to_owned());
            return;
        };
        for (ln, line) in body {
            if line.contains("@st") {
                continue;
            }
            let parsed = parse_series_line(line).and_then(|(l, v)| Ok((l, parse_values(v)?)));
            match parsed {
                Ok((labels, items)) => {
                    for (k, item) in items.iter().enumerate() {
                        let t = k as i64 * interval;
                        match item {
                            Item::Value(v) => self.store.add(&labels, t, *v),
                            Item::Stale => self.store.add(&labels, t, stale_nan()),
                            Item::Empty => {}
                        }
                    }
                }
                // Native histograms: this engine stores floats only; evals on them fail.
                Err(e) if e == "native histogram" => {}
                Err(e) => self.fail(*ln, line, format!("bad load line: {e}")),
            }
        }
    }

    fn eval(&mut self, lineno: usize, cmd: &str, body: &[(usize, String)]) {
        let (head, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
        let rest = rest.trim();
        let mut expect = Expect::default();
        match head.to_lowercase().as_str() {
            "eval" => {}
            "eval_fail" => expect.fail = Some(None),
            "eval_ordered" => expect.ordered = true,
            "eval_warn" | "eval_info" => expect.annotations = true,
            other => {
                self.fail(lineno, cmd, format!("unknown eval form {other}"));
                return;
            }
        }
        let (kind, expr) = if let Some(r) = rest.strip_prefix("instant") {
            let r = r.trim_start();
            let r = r.strip_prefix("at").map(str::trim_start).unwrap_or(r);
            let (at, expr) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
            match parse_duration(at) {
                Ok(t) => (EvalKind::Instant(t), expr.trim()),
                Err(e) => {
                    self.fail(lineno, cmd, e);
                    return;
                }
            }
        } else if let Some(r) = rest.strip_prefix("range") {
            let toks: Vec<&str> = r.split_whitespace().collect();
            if toks.len() < 7 || toks[0] != "from" || toks[2] != "to" || toks[4] != "step" {
                self.fail(lineno, cmd, "bad eval range".to_owned());
                return;
            }
            let (Ok(start), Ok(end), Ok(step)) = (
                parse_duration(toks[1]),
                parse_duration(toks[3]),
                parse_duration(toks[5]),
            ) else {
                self.fail(lineno, cmd, "bad eval range times".to_owned());
                return;
            };
            (EvalKind::Range { start, end, step }, after_tokens(r, 6))
        } else {
            self.fail(lineno, cmd, "expected instant or range".to_owned());
            return;
        };
        for (ln, line) in body {
            if let Some(e) = line.strip_prefix("expect ") {
                let e = e.trim();
                if let Some(r) = e.strip_prefix("fail") {
                    let r = r.trim();
                    let msg = r.strip_prefix("msg:").map(|m| (false, m.trim().to_owned()));
                    let re = r
                        .strip_prefix("regex:")
                        .map(|m| (true, m.trim().to_owned()));
                    expect.fail = Some(msg.or(re));
                } else if e.starts_with("ordered") {
                    expect.ordered = true;
                } else if let Some(s) = e.strip_prefix("string") {
                    let s = s.trim();
                    expect.string = Some(s.trim_matches(|c| c == '"' || c == '`').to_owned());
                } else if let Some(r) = e.strip_prefix("range vector") {
                    let toks: Vec<&str> = r.split_whitespace().collect();
                    if let [_, a, _, b, _, c] = toks[..]
                        && let (Ok(a), Ok(b), Ok(c)) =
                            (parse_duration(a), parse_duration(b), parse_duration(c))
                    {
                        expect.range_vector = Some((a, b, c));
                    }
                } else if e.starts_with("warn") || e.starts_with("info") {
                    expect.annotations = true;
                }
                // no_warn / no_info: nothing to check, this engine emits no annotations.
                continue;
            }
            if let Some(m) = line.strip_prefix("expected_fail_message") {
                expect.fail = Some(Some((false, m.trim().to_owned())));
                continue;
            }
            if let Some(m) = line.strip_prefix("expected_fail_regexp") {
                expect.fail = Some(Some((true, m.trim().to_owned())));
                continue;
            }
            if line.contains("{{") {
                self.counts.skipped += 1;
                return;
            }
            if let Ok(v) = parse_number(line) {
                expect.scalar = Some(v);
                continue;
            }
            match parse_series_line(line).and_then(|(l, v)| Ok((l, parse_values(v)?))) {
                Ok(s) => expect.series.push(s),
                Err(e) => {
                    self.fail(*ln, line, format!("bad expected line: {e}"));
                    return;
                }
            }
        }
        let result = match kind {
            EvalKind::Instant(t) => self.engine.instant(&self.store, expr, t),
            EvalKind::Range { start, end, step } => {
                self.engine.range(&self.store, expr, start, end, step)
            }
        };
        let outcome = self.check(&kind, &expect, result);
        match outcome {
            Ok(()) => {}
            Err(why) => {
                if why.contains("unsupported in this PromQL engine") {
                    self.counts.unsupported += 1;
                }
                self.fail(lineno, cmd, why);
                return;
            }
        }
        // Cross-check: the instant result at t equals the middle step of a range query.
        if let EvalKind::Instant(t) = kind
            && expect.fail.is_none()
            && !expect.ordered
            && expect.range_vector.is_none()
            && expect.string.is_none()
            && !["start()", "end()", "range()", "step()"]
                .iter()
                .any(|f| expr.contains(f))
            && parse(expr)
                .is_ok_and(|e| matches!(e.value_type(), ValueType::Vector | ValueType::Scalar))
        {
            let instant = self.engine.instant(&self.store, expr, t);
            let range = self
                .engine
                .range(&self.store, expr, t - 60_000, t + 60_000, 60_000);
            if let Err(why) = same_at_middle(instant, range, t) {
                self.fail(lineno, cmd, format!("range-mode cross-check: {why}"));
                return;
            }
        }
        // Second upstream check: pinning every selector to `@ t` gives the same result at
        // any evaluation time.
        if let EvalKind::Instant(t) = kind
            && expect.fail.is_none()
            && expect.string.is_none()
            && !TIME_DEPENDENT
                .iter()
                .any(|f| expr.contains(&format!("{f}(")))
            && let Ok(mut pinned) = parse(expr)
        {
            pin_at(&mut pinned, t);
            let times = if t == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * t, 0, t / 5, t, 10 * t]
            };
            for ts in times {
                let result = self.engine.instant_expr(&self.store, &pinned, ts);
                if let Err(why) = self.check(&EvalKind::Instant(ts), &expect, result) {
                    self.fail(lineno, cmd, format!("@ {t}ms rerun at {ts}ms: {why}"));
                    return;
                }
            }
        }
        self.counts.passed += 1;
    }

    fn check(
        &self,
        kind: &EvalKind,
        expect: &Expect,
        result: Result<Value, QueryError>,
    ) -> Result<(), String> {
        if let Some(fail) = &expect.fail {
            return match result {
                Ok(v) => Err(format!("expected an error, got {v:?}")),
                Err(e) => match fail {
                    None => Ok(()),
                    Some((false, msg)) if e.to_string() == *msg => Ok(()),
                    Some((true, re))
                        if regex::Regex::new(re).is_ok_and(|r| r.is_match(&e.to_string())) =>
                    {
                        Ok(())
                    }
                    Some((_, want)) => Err(format!("error {e:?} does not match {want:?}")),
                },
            };
        }
        let value = result.map_err(|e| format!("unexpected error: {e}"))?;
        if let Some(want) = &expect.string {
            return match value {
                Value::String { v, .. } if v == *want => Ok(()),
                other => Err(format!("expected string {want:?}, got {other:?}")),
            };
        }
        if let Some(want) = expect.scalar {
            return match value {
                Value::Scalar { v, .. } if almost_equal(v, want) => Ok(()),
                other => Err(format!("expected scalar {want}, got {other:?}")),
            };
        }
        match (kind, value) {
            (EvalKind::Instant(_), Value::Vector(got)) => {
                let mut want: Vec<(&Labels, f64)> = Vec::new();
                for (l, items) in &expect.series {
                    match items.as_slice() {
                        [Item::Value(v)] => want.push((l, *v)),
                        [Item::Stale] => want.push((l, stale_nan())),
                        _ => return Err(format!("expected one value for {l}")),
                    }
                }
                if got.len() != want.len() {
                    return Err(format!(
                        "expected {} samples, got {}: {}",
                        want.len(),
                        got.len(),
                        show_vector(&got)
                    ));
                }
                for (k, (l, v)) in want.iter().enumerate() {
                    let found = if expect.ordered {
                        got.get(k).filter(|s| s.labels == **l)
                    } else {
                        got.iter().find(|s| s.labels == **l)
                    };
                    match found {
                        Some(s) if almost_equal(s.v, *v) => {}
                        Some(s) => return Err(format!("{l}: expected {v}, got {}", s.v)),
                        None => {
                            return Err(format!(
                                "expected {l} {v}{}, got {}",
                                if expect.ordered {
                                    " at this position"
                                } else {
                                    ""
                                },
                                show_vector(&got)
                            ));
                        }
                    }
                }
                Ok(())
            }
            (EvalKind::Instant(_), Value::Matrix(got)) => {
                let Some((from, to, step)) = expect.range_vector else {
                    // A range vector without grid: each expected line lists its raw values.
                    return compare_matrix_raw(&got, &expect.series);
                };
                compare_matrix(&got, &expect.series, from, to, step)
            }
            (EvalKind::Range { start, end, step }, Value::Matrix(got)) => {
                compare_matrix(&got, &expect.series, *start, *end, *step)
            }
            (_, other) => Err(format!("unexpected result type: {other:?}")),
        }
    }
}

/// Functions whose result depends on the evaluation time itself, not only on the data read.
const TIME_DEPENDENT: &[&str] = &[
    "time",
    "timestamp",
    "predict_linear",
    "start",
    "end",
    "range",
    "step",
    "hour",
    "minute",
    "month",
    "year",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
];

/// Adds `@ t` to every selector and subquery that has no `@` (a subquery pinned here is left
/// alone inside, as in the upstream runner).
fn pin_at(expr: &mut Expr, t: i64) {
    let at = || {
        let d = Duration::from_millis(t.unsigned_abs());
        AtModifier::At(if t >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        })
    };
    match expr {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at()),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at()),
        Expr::Subquery(sq) if sq.at.is_none() => sq.at = Some(at()),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, t);
            if let Some(p) = a.param.as_mut() {
                pin_at(p, t);
            }
        }
        Expr::Unary(u) => pin_at(&mut u.expr, t),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t);
            pin_at(&mut b.rhs, t);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, t),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, t)),
        _ => {}
    }
}

fn show_vector(v: &[heimdall_scraper::promql::VectorSample]) -> String {
    let mut s = String::new();
    for x in v {
        let _ = write!(s, "{} {}; ", x.labels, x.v);
    }
    s
}

fn compare_matrix(
    got: &[Series],
    want: &[(Labels, Vec<Item>)],
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    if !got.windows(2).all(|w| w[0].labels < w[1].labels) {
        return Err("matrix not sorted by labels".to_owned());
    }
    let mut want_map: BTreeMap<&Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for (l, items) in want {
        let pts = want_map.entry(l).or_default();
        for (k, item) in items.iter().enumerate() {
            let t = start + k as i64 * step;
            if t > end {
                break;
            }
            match item {
                Item::Value(v) => pts.push((t, *v)),
                Item::Stale => pts.push((t, stale_nan())),
                Item::Empty => {}
            }
        }
    }
    want_map.retain(|_, p| !p.is_empty());
    if got.len() != want_map.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            want_map.len(),
            got.len(),
            got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
        ));
    }
    for s in got {
        let Some(w) = want_map.get(&s.labels) else {
            return Err(format!("unexpected series {}", s.labels));
        };
        let same = w.len() == s.samples.len()
            && w.iter()
                .zip(&s.samples)
                .all(|((t, v), p)| *t == p.t && almost_equal(*v, p.v));
        if !same {
            return Err(format!(
                "{}: expected {:?}, got {:?}",
                s.labels,
                w,
                s.samples.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

fn compare_matrix_raw(got: &[Series], want: &[(Labels, Vec<Item>)]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("expected {} series, got {}", want.len(), got.len()));
    }
    for (l, items) in want {
        let Some(s) = got.iter().find(|s| s.labels == *l) else {
            return Err(format!("missing series {l}"));
        };
        let vals: Vec<f64> = items
            .iter()
            .filter_map(|i| match i {
                Item::Value(v) => Some(*v),
                _ => None,
            })
            .collect();
        if vals.len() != s.samples.len()
            || !vals
                .iter()
                .zip(&s.samples)
                .all(|(a, p)| almost_equal(*a, p.v))
        {
            return Err(format!("{l}: expected {vals:?}, got {:?}", s.samples));
        }
    }
    Ok(())
}

/// The instant result at `t` must equal step `t` of the range query from t-1m to t+1m.
fn same_at_middle(
    instant: Result<Value, QueryError>,
    range: Result<Value, QueryError>,
    t: i64,
) -> Result<(), String> {
    let (instant, range) = match (instant, range) {
        (Ok(i), Ok(r)) => (i, r),
        (Err(a), Err(b)) if a == b => return Ok(()),
        (a, b) => return Err(format!("instant {a:?} vs range {b:?}")),
    };
    let Value::Matrix(m) = range else {
        return Err(format!("range query gave {range:?}"));
    };
    let mut at_t: Vec<(String, f64)> = m
        .iter()
        .filter_map(|s| {
            s.samples
                .iter()
                .find(|p| p.t == t)
                .map(|p| (s.labels.to_string(), p.v))
        })
        .collect();
    let mut want: Vec<(String, f64)> = match instant {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        Value::Scalar { v, .. } => vec![("{}".to_owned(), v)],
        other => return Err(format!("instant gave {other:?}")),
    };
    at_t.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let same = at_t.len() == want.len()
        && at_t
            .iter()
            .zip(&want)
            .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
    if same {
        Ok(())
    } else {
        Err(format!("instant {want:?} vs range step {at_t:?}"))
    }
}

fn run_file(path: &Path) -> Runner {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = Runner::new(&name);
    r.run(&text);
    r
}

fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "test"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn our_scripts_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/promql");
    let files = scripts_in(&dir);
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for f in &files {
        let r = run_file(f);
        eprintln!(
            "{:<28} passed {:>4}  failed {:>3}  skipped {:>3}",
            r.file, r.counts.passed, r.counts.failed, r.counts.skipped
        );
        total.passed += r.counts.passed;
        total.failed += r.counts.failed;
        failures.extend(r.failures);
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total.passed >= 100, "only {} evals ran", total.passed);
}

/// The upstream Prometheus scripts, for information: prints passed/failed/skipped per file.
#[test]
fn prometheus_upstream_scripts_report() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = [
        "../../shared/peer/promql-tests/main",
        "../../../shared/peer/promql-tests/main",
    ]
    .iter()
    .map(|p| base.join(p))
    .find(|p| p.is_dir());
    let Some(dir) = dir else {
        eprintln!("skipping: shared/peer/promql-tests/main not found next to the repository");
        return;
    };
    let mut total = Counts::default();
    let mut report = String::new();
    let mut all_failures = Vec::new();
    for f in scripts_in(&dir) {
        let r = run_file(&f);
        let c = r.counts;
        let _ = writeln!(
            report,
            "{:<28} passed {:>4}  failed {:>4} (unsupported {:>4})  skipped {:>4}",
            r.file, c.passed, c.failed, c.unsupported, c.skipped
        );
        total.passed += c.passed;
        total.failed += c.failed;
        total.skipped += c.skipped;
        total.unsupported += c.unsupported;
        all_failures.extend(r.failures);
    }
    let _ = writeln!(
        report,
        "{:<28} passed {:>4}  failed {:>4} (unsupported {:>4})  skipped {:>4}",
        "TOTAL", total.passed, total.failed, total.unsupported, total.skipped
    );
    eprintln!("{report}");
    if std::env::var_os("PROMQL_SHOW_FAILURES").is_some() {
        eprintln!("{}", all_failures.join("\n"));
    }
    assert!(
        total.passed + total.failed > 0,
        "no evals ran from {}",
        dir.display()
    );
}

#[test]
fn runner_parses_the_script_language() {
    assert_eq!(parse_duration("1m30s"), Ok(90_000));
    assert_eq!(parse_duration("10s53ms"), Ok(10_053));
    assert_eq!(parse_duration("0"), Ok(0));
    let mut v = Vec::new();
    expand_item("0+10x3", &mut v).unwrap();
    expand_item("_x2", &mut v).unwrap();
    expand_item("5-1x1", &mut v).unwrap();
    expand_item("1e3", &mut v).unwrap();
    expand_item("-2x1", &mut v).unwrap();
    let vals: Vec<String> = v
        .iter()
        .map(|i| match i {
            Item::Value(x) => x.to_string(),
            Item::Stale => "stale".into(),
            Item::Empty => "_".into(),
        })
        .collect();
    assert_eq!(
        vals,
        [
            "0", "10", "20", "30", "_", "_", "5", "4", "1000", "-2", "-2"
        ]
    );
    let (l, rest) = parse_series_line(r#"http_requests{job="api", path="/a b\"c"} 1 2"#).unwrap();
    assert_eq!(l.get("__name__"), Some("http_requests"));
    assert_eq!(l.get("path"), Some("/a b\"c"));
    assert_eq!(rest, "1 2");
    let (l, rest) = parse_series_line("{} 3").unwrap();
    assert!(l.is_empty());
    assert_eq!(rest, "3");
    assert!(almost_equal(1.0, 1.0 + 1e-9));
    assert!(!almost_equal(1.0, 1.001));
    assert!(almost_equal(f64::NAN, f64::NAN));
    assert!(!almost_equal(stale_nan(), f64::NAN));
}

fn one_series_store(samples: usize) -> MemStore {
    let mut m = MemStore::new();
    let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
    for k in 0..samples {
        m.add(&l, k as i64 * 15_000, 1.0);
    }
    m
}

#[test]
fn api_errors_carry_prometheus_types_and_messages() {
    let store = one_series_store(10);
    let engine = test_engine();

    let e = engine.instant(&store, "up +", 0).unwrap_err();
    assert!(matches!(e, QueryError::BadData(_)), "{e:?}");
    assert_eq!(e.error_type(), "bad_data");

    let e = engine.range(&store, "up", 0, 11_001_000, 1000).unwrap_err();
    assert_eq!(
        e,
        QueryError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_owned()
        )
    );
    assert!(engine.range(&store, "up", 0, 11_000_000, 1000).is_ok());
    let e = engine.range(&store, "up", 0, 1000, 0).unwrap_err();
    assert_eq!(e.error_type(), "bad_data");
    let e = engine.range(&store, "up", 1000, 0, 10).unwrap_err();
    assert_eq!(e.to_string(), "end timestamp must not be before start time");
    let e = engine.range(&store, "up[5m]", 0, 1000, 10).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );

    let e = engine.instant(&store, "limitk(1, up)", 0).unwrap_err();
    assert!(matches!(e, QueryError::Unsupported(_)), "{e:?}");
    assert_eq!(e.error_type(), "execution");

    let e = engine
        .instant(&store, r#"count_values("", up)"#, 0)
        .unwrap_err();
    assert_eq!(
        e,
        QueryError::Execution("invalid label name \"\"".to_owned())
    );
    assert_eq!(e.error_type(), "execution");
}

#[test]
fn max_samples_stops_a_query() {
    let store = one_series_store(100);
    let small = Engine::new(EngineOptions {
        lookback_delta: Duration::from_secs(300),
        max_samples: 50,
        timeout: Duration::from_secs(60),
    });
    // 100 steps of one series: 100 samples in memory.
    let e = small
        .range(&store, "up", 0, 99 * 15_000, 15_000)
        .unwrap_err();
    assert_eq!(
        e,
        QueryError::TooManySamples(
            "query processing would load too many samples into memory in query execution"
                .to_owned()
        )
    );
    assert_eq!(e.error_type(), "execution");
    // A window of 100 samples is too many as well.
    assert!(
        small
            .instant(&store, "count_over_time(up[1h])", 99 * 15_000)
            .is_err()
    );
    // 40 steps fit.
    assert!(small.range(&store, "up", 0, 39 * 15_000, 15_000).is_ok());
    // A subquery with more steps than max_samples is refused before it allocates.
    assert!(
        small
            .instant(&store, "max_over_time(vector(1)[1y:1s])", 0)
            .is_err()
    );
}

#[test]
fn deadline_times_a_query_out() {
    let store = one_series_store(10);
    let engine = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let e = engine.instant(&store, "sum(up)", 0).unwrap_err();
    assert_eq!(
        e,
        QueryError::Timeout("query timed out in query execution".to_owned())
    );
    assert_eq!(e.error_type(), "timeout");
}

#[test]
fn result_shapes() {
    let store = one_series_store(10);
    let engine = test_engine();
    assert_eq!(
        engine.instant(&store, "1 + 1", 5000).unwrap(),
        Value::Scalar { t: 5000, v: 2.0 }
    );
    assert_eq!(
        engine.instant(&store, "\"hi\"", 5000).unwrap(),
        Value::String {
            t: 5000,
            v: "hi".to_owned()
        }
    );
    let Value::Vector(v) = engine.instant(&store, "up", 20_000).unwrap() else {
        panic!("not a vector")
    };
    // An instant vector carries the evaluation time, not the sample's.
    assert_eq!((v.len(), v[0].t, v[0].v), (1, 20_000, 1.0));
    let Value::Matrix(m) = engine.instant(&store, "up[30s]", 30_000).unwrap() else {
        panic!("not a matrix")
    };
    // Raw samples in (0s, 30s]: 15s and 30s.
    assert_eq!(
        m[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        [15_000, 30_000]
    );
    let Value::Matrix(m) = engine.range(&store, "time()", 0, 30_000, 15_000).unwrap() else {
        panic!("not a matrix")
    };
    assert!(m[0].labels.is_empty());
    assert_eq!(
        m[0].samples.iter().map(|s| s.v).collect::<Vec<_>>(),
        [0.0, 15.0, 30.0]
    );
}

#[test]
fn selectors_and_series_matchers() {
    use heimdall_scraper::promql::{parse_selector, selectors};
    let m = parse_selector(r#"up{job="node", instance=~"a.*"}"#).unwrap();
    let shown: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        shown,
        [r#"__name__="up""#, r#"job="node""#, r#"instance=~"a.*""#]
    );
    assert!(parse_selector("rate(up[5m])").is_err());
    assert!(parse_selector(r#"{job=~".*"}"#).is_err());
    let expr = parse("sum(rate(a[5m])) / on() b offset 1m").unwrap();
    let all = selectors(&expr).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1][0].to_string(), r#"__name__="b""#);
}

/// Hostile queries fail cleanly: no panic, no stack overflow, no huge allocation.
#[test]
fn hostile_queries_fail_cleanly() {
    let store = one_series_store(10);
    let engine = test_engine();
    let deep_parens = format!("{}up{}", "(".repeat(5000), ")".repeat(5000));
    let long_chain = vec!["up"; 5000].join(" + ");
    let too_long = vec!["up"; 9000].join("+");
    let long_regex = format!("up{{job=~\"{}\"}}", vec!["node"; 20_000].join("|"));
    let queries = [
        deep_parens.as_str(),
        long_chain.as_str(),
        too_long.as_str(),
        long_regex.as_str(),
        "up @ 1e300",
        "up @ -1e300",
        "up offset 100000y",
        "up offset -100000y",
        "rate(up[100000y])",
        "max_over_time(up[100000y:1ms])",
        "sum_over_time(up[10y:1ms] @ -1e18)",
        "topk(1e300, up)",
        "topk(-1e300, up)",
        "quantile(NaN, up)",
        "histogram_quantile(NaN, up)",
        "label_replace(up, \"a\", \"$1$2$99\", \"job\", \"(.*)\")",
        "year(up * 1e300)",
        "hour(-up * 1e300)",
        "round(up, 0)",
        "up{job=~\"a{b}\"}",
        "count_values(\"x\", up / 0)",
    ];
    for q in queries {
        let _ = engine.instant(&store, q, 0);
        let _ = engine.instant(&store, q, i64::MAX);
        let _ = engine.instant(&store, q, i64::MIN);
        let _ = engine.range(&store, q, i64::MIN, i64::MAX, i64::MAX);
        let _ = engine.range(&store, q, 0, 100_000, 1);
    }
    assert!(matches!(
        engine.instant(&store, &too_long, 0),
        Err(QueryError::BadData(_))
    ));
    assert!(matches!(
        engine.instant(&store, &deep_parens, 0),
        Err(QueryError::BadData(_))
    ));
    assert!(engine.instant(&store, &long_regex, 0).is_ok());
}
