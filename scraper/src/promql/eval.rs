//! The evaluator: walks the parsed expression and evaluates every node over all steps of the
//! query at once, as Prometheus' engine does.
//!
//! - Selectors fetch their series once for the whole range (`[start - offset - lookback, end -
//!   offset]`), then pick the value for each step with a cursor that only moves forward.
//! - Every node yields an [`Evaluated`]: scalars as one value per step, instant vectors as
//!   series whose points sit at step timestamps. Parents walk their children's points step by
//!   step, so `rate(x[5m])` at 12:00 is the same number in an instant and in a range query.
//! - Output series are created once per distinct label set through [`Out`]; per-step work
//!   touches only numbers and indices (no per-sample allocation or label hashing).
//! - Limits: `max_samples` counts the points held by evaluated nodes and the open range
//!   windows (as Prometheus' `currentSamples`), and a deadline is checked while iterating.

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::value::{Evaluated, Value, VectorSample};
use super::{EngineOptions, QueryError, aggregations, binary, duration_ms, functions};
use crate::model::{Labels, METRIC_NAME, MatchOp, Matcher, is_stale};
use crate::storage::{Querier, Sample, Series};

/// Prometheus' error text when the deadline passes.
pub(crate) const TIMEOUT_MSG: &str = "query timed out in query execution";
/// Prometheus' error text when `max_samples` is exceeded.
pub(crate) const TOO_MANY_SAMPLES_MSG: &str =
    "query processing would load too many samples into memory in query execution";
/// Prometheus' error text when one step of a result holds a label set twice.
pub(crate) const DUPLICATE_LABELSET_MSG: &str =
    "vector cannot contain metrics with the same labelset";

/// How many loop iterations pass between two looks at the clock.
const DEADLINE_CHECK_EVERY: u32 = 1024;

/// What one query evaluation shares across nodes and subqueries: the storage, the limits and
/// the times `@ start()` / `@ end()` refer to.
pub(crate) struct Context<'q> {
    querier: &'q dyn Querier,
    pub(crate) lookback: i64,
    max_samples: usize,
    samples: usize,
    deadline: Instant,
    ticks: u32,
    pub(crate) subquery_step: i64,
    pub(crate) query_start: i64,
    pub(crate) query_end: i64,
    /// The range query's step (0 for an instant query), for `step()`.
    pub(crate) query_step: i64,
}

impl<'q> Context<'q> {
    pub(crate) fn new(
        querier: &'q dyn Querier,
        opts: &EngineOptions,
        deadline: Instant,
        subquery_step: i64,
        query_start: i64,
        query_end: i64,
        query_step: i64,
    ) -> Self {
        Self {
            querier,
            lookback: duration_ms(opts.lookback_delta).max(1),
            max_samples: opts.max_samples,
            samples: 0,
            deadline,
            ticks: 0,
            subquery_step,
            query_start,
            query_end,
            query_step,
        }
    }

    /// Counts `n` more samples in memory; fails once the total passes `max_samples`.
    pub(crate) fn charge(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples = self.samples.saturating_add(n);
        if self.samples > self.max_samples {
            return Err(QueryError::TooManySamples(TOO_MANY_SAMPLES_MSG.to_owned()));
        }
        Ok(())
    }

    /// Forgets `n` samples (a node's input, once its output is built).
    pub(crate) fn release(&mut self, n: usize) {
        self.samples = self.samples.saturating_sub(n);
    }

    /// Called in loops: looks at the clock every [`DEADLINE_CHECK_EVERY`] calls.
    pub(crate) fn tick(&mut self) -> Result<(), QueryError> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(DEADLINE_CHECK_EVERY) {
            self.check_deadline()?;
        }
        Ok(())
    }

    pub(crate) fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(TIMEOUT_MSG.to_owned()));
        }
        Ok(())
    }

    fn select(
        &mut self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        self.check_deadline()?;
        self.querier
            .select(matchers, mint, maxt)
            .map_err(|e| QueryError::exec(format!("expanding series: {e}")))
    }
}

/// The evaluation timestamps: `start`, `start + step`, … `<= end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    pub(crate) start: i64,
    pub(crate) step: i64,
    len: usize,
}

impl Steps {
    /// Fails when `end < start`, `step <= 0`, or there would be more steps than `limit` (a
    /// subquery such as `x[1y:1ms]` would otherwise allocate without bound).
    pub(crate) fn new(start: i64, end: i64, step: i64, limit: usize) -> Result<Self, QueryError> {
        if step <= 0 || end < start {
            return Err(QueryError::BadData(format!(
                "invalid evaluation range: start {start}, end {end}, step {step}"
            )));
        }
        let n = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
        let len = usize::try_from(n)
            .ok()
            .filter(|n| *n <= limit.max(1))
            .ok_or_else(|| QueryError::TooManySamples(TOO_MANY_SAMPLES_MSG.to_owned()))?;
        Ok(Self { start, step, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Timestamp of step `i` (`i < len`, so it lies between start and end; computed wide
    /// because `step * i` alone may not fit).
    pub(crate) fn ts(&self, i: usize) -> i64 {
        let t = i128::from(self.start) + i128::from(self.step) * i as i128;
        i64::try_from(t).unwrap_or(i64::MAX)
    }

    pub(crate) fn end(&self) -> i64 {
        self.ts(self.len - 1)
    }

    /// Index of the step at timestamp `t` (a point of a step-aligned series).
    pub(crate) fn index(&self, t: i64) -> usize {
        usize::try_from((i128::from(t) - i128::from(self.start)) / i128::from(self.step))
            .unwrap_or(0)
    }
}

/// A range-vector argument, fetched or evaluated once for the whole query: the raw samples
/// (staleness markers dropped) and how to cut a window for each step.
pub(crate) struct RangeSource {
    pub(crate) series: Vec<Series>,
    pub(crate) range: i64,
    pub(crate) offset: i64,
    pub(crate) at: Option<i64>,
    /// Points a subquery's evaluation counted against `max_samples`; the caller releases them
    /// once the windows are computed (a matrix selector's windows are counted as they open).
    pub(crate) charged: usize,
}

/// Evaluates nodes over one set of steps (the query's, or a subquery's).
pub(crate) struct Evaluator<'c, 'q> {
    pub(crate) ctx: &'c mut Context<'q>,
    pub(crate) steps: Steps,
}

impl Evaluator<'_, '_> {
    pub(crate) fn eval(&mut self, expr: &Expr) -> Result<Evaluated, QueryError> {
        self.ctx.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => {
                self.ctx.charge(self.steps.len())?;
                Ok(Evaluated::Scalar(vec![n.val; self.steps.len()]))
            }
            Expr::StringLiteral(s) => Ok(Evaluated::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Evaluated::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Evaluated::Scalar(v))
                }
                Evaluated::Vector(mut m) => {
                    for s in &mut m {
                        s.labels = drop_metric_name(&s.labels);
                        s.samples.iter_mut().for_each(|p| p.v = -p.v);
                    }
                    Ok(Evaluated::Vector(merge_same_labelset(m)?))
                }
                other => Err(QueryError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Evaluated::Vector(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if self.steps.len() != 1 {
                    return Err(QueryError::BadData(
                        "range vectors can only be evaluated as function arguments or at the top of an instant query"
                            .to_owned(),
                    ));
                }
                let src = self.range_source(expr)?;
                let t = src
                    .at
                    .unwrap_or(self.steps.start)
                    .saturating_sub(src.offset);
                let lo = t.saturating_sub(src.range);
                let mut out = Vec::with_capacity(src.series.len());
                for mut s in src.series {
                    s.samples.retain(|p| p.t > lo && p.t <= t);
                    if !s.samples.is_empty() {
                        out.push(s);
                    }
                }
                Ok(Evaluated::Range(out))
            }
            Expr::Call(call) => functions::eval_call(self, call),
            Expr::Aggregate(agg) => aggregations::eval(self, agg),
            Expr::Binary(bin) => binary::eval(self, bin),
            Expr::Extension(ext) => Err(QueryError::unsupported(format!(
                "extension expression {}",
                ext.expr.name()
            ))),
        }
    }

    /// Evaluates a node that must be a scalar (function and aggregation parameters).
    pub(crate) fn eval_scalar(&mut self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Evaluated::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates a node that must be an instant vector.
    pub(crate) fn eval_vector(&mut self, expr: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr)? {
            Evaluated::Vector(m) => Ok(m),
            other => Err(QueryError::BadData(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// The timestamp an `@` modifier pins evaluation to, if any.
    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.ctx.query_start),
            Some(AtModifier::End) => Some(self.ctx.query_end),
            Some(AtModifier::At(st)) => Some(system_time_ms(st)),
        }
    }

    /// The first and last reference times a selector reads at: each step shifted by the
    /// offset, or the `@` time for every step.
    fn ref_span(&self, at: Option<i64>, offset: i64) -> (i64, i64) {
        match at {
            Some(a) => (a.saturating_sub(offset), a.saturating_sub(offset)),
            None => (
                self.steps.start.saturating_sub(offset),
                self.steps.end().saturating_sub(offset),
            ),
        }
    }

    /// An instant vector selector: at each step the newest sample in `(t - lookback, t]`
    /// (t shifted by offset / pinned by `@`), unless it is a staleness marker. With
    /// `record_t` the point carries the sample's timestamp (ms) instead of its value, for
    /// `timestamp()`.
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        record_t: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let matchers = selector_matchers(vs)?;
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.ctx.lookback;
        let (first, last) = self.ref_span(at, offset);
        let raw = self.ctx.select(
            &matchers,
            first.saturating_sub(lookback).saturating_add(1),
            last,
        )?;
        let steps = self.steps;
        let n = steps.len();
        let pick = |samples: &[Sample], r: i64| -> Option<Sample> {
            let i = samples.partition_point(|p| p.t <= r);
            let p = *samples.get(i.checked_sub(1)?)?;
            (p.t > r.saturating_sub(lookback) && !is_stale(p.v)).then_some(p)
        };
        let value = |p: Sample| if record_t { p.t as f64 } else { p.v };
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.ctx.tick()?;
            let mut points: Vec<Sample> = Vec::new();
            if at.is_some() {
                if let Some(p) = pick(&s.samples, first) {
                    points = (0..n)
                        .map(|i| Sample {
                            t: steps.ts(i),
                            v: value(p),
                        })
                        .collect();
                }
            } else {
                let mut j = 0;
                for i in 0..n {
                    let ts = steps.ts(i);
                    let r = ts.saturating_sub(offset);
                    while s.samples.get(j).is_some_and(|p| p.t <= r) {
                        j += 1;
                    }
                    let Some(p) = j.checked_sub(1).and_then(|k| s.samples.get(k)) else {
                        continue;
                    };
                    if p.t > r.saturating_sub(lookback) && !is_stale(p.v) {
                        if points.is_empty() {
                            points.reserve(n - i);
                        }
                        points.push(Sample {
                            t: ts,
                            v: value(*p),
                        });
                    }
                }
            }
            if !points.is_empty() {
                self.ctx.charge(points.len())?;
                out.push(Series {
                    labels: s.labels,
                    samples: points,
                });
            }
        }
        Ok(out)
    }

    /// Fetches (matrix selector) or evaluates (subquery) a range-vector argument once for the
    /// whole query.
    pub(crate) fn range_source(&mut self, expr: &Expr) -> Result<RangeSource, QueryError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let matchers = selector_matchers(vs)?;
                let offset = offset_ms(&vs.offset);
                let at = self.at_ms(&vs.at);
                let range = duration_ms(ms.range);
                let (first, last) = self.ref_span(at, offset);
                let raw = self.ctx.select(
                    &matchers,
                    first.saturating_sub(range).saturating_add(1),
                    last,
                )?;
                let mut series = Vec::with_capacity(raw.len());
                for mut s in raw {
                    s.samples.retain(|p| !is_stale(p.v));
                    if !s.samples.is_empty() {
                        series.push(s);
                    }
                }
                Ok(RangeSource {
                    series,
                    range,
                    offset,
                    at,
                    charged: 0,
                })
            }
            Expr::Subquery(sq) => self.subquery(sq),
            other => Err(QueryError::BadData(format!(
                "expected a range vector, got {}",
                expr_kind(other)
            ))),
        }
    }

    /// Evaluates a subquery's inner expression at its own steps, aligned to multiples of its
    /// step as Prometheus does, covering every window the outer steps will cut.
    fn subquery(&mut self, sq: &SubqueryExpr) -> Result<RangeSource, QueryError> {
        let offset = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = duration_ms(sq.range);
        let step = sq.step.map(duration_ms).unwrap_or(self.ctx.subquery_step);
        if step <= 0 {
            return Err(QueryError::BadData(
                "subquery step must be positive".to_owned(),
            ));
        }
        let (first, last) = self.ref_span(at, offset);
        let lo = first.saturating_sub(range);
        // Go's integer division truncates toward zero; so does Rust's.
        let mut start = step.saturating_mul(lo / step);
        if start <= lo {
            start = start.saturating_add(step);
        }
        let series = if last < start {
            Vec::new()
        } else {
            let steps = Steps::new(start, last, step, self.ctx.max_samples)?;
            let mut inner = Evaluator {
                ctx: &mut *self.ctx,
                steps,
            };
            match inner.eval(&sq.expr)? {
                Evaluated::Vector(m) => m,
                Evaluated::Scalar(v) => vec![Series {
                    labels: Labels::empty(),
                    samples: v
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Sample { t: steps.ts(i), v })
                        .collect(),
                }],
                other => {
                    return Err(QueryError::BadData(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )));
                }
            }
        };
        Ok(RangeSource {
            charged: points(&series),
            series,
            range,
            offset,
            at,
        })
    }

    /// Calls `f(step index, step timestamp, window)` for every step at which the window
    /// `(end - range, end]` of `samples` is not empty, `end` being the step time shifted by the
    /// offset or pinned by `@`. The window slides forward, so each sample is visited a
    /// bounded number of times; its size is counted against `max_samples` while open.
    pub(crate) fn for_each_window(
        &mut self,
        src: &RangeSource,
        samples: &[Sample],
        mut f: impl FnMut(usize, i64, i64, &[Sample]) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut charged = 0usize;
        let result = (|| {
            for i in 0..self.steps.len() {
                self.ctx.tick()?;
                let ts = self.steps.ts(i);
                let end = src.at.unwrap_or(ts).saturating_sub(src.offset);
                let start = end.saturating_sub(src.range);
                if src.at.is_none() || i == 0 {
                    while samples.get(hi).is_some_and(|p| p.t <= end) {
                        hi += 1;
                    }
                    while lo < hi && samples.get(lo).is_some_and(|p| p.t <= start) {
                        lo += 1;
                    }
                    let len = hi - lo;
                    if len > charged {
                        self.ctx.charge(len - charged)?;
                    } else {
                        self.ctx.release(charged - len);
                    }
                    charged = len;
                }
                let window = samples.get(lo..hi).unwrap_or(&[]);
                if !window.is_empty() {
                    f(i, ts, end, window)?;
                }
            }
            Ok(())
        })();
        self.ctx.release(charged);
        result
    }
}

/// Evaluates an instant query at `t`.
pub(crate) fn run_instant(ctx: &mut Context<'_>, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    let steps = Steps::new(t, t, 1, 1)?;
    let mut ev = Evaluator { ctx, steps };
    Ok(match ev.eval(expr)? {
        Evaluated::Scalar(v) => Value::Scalar {
            t,
            v: v.first().copied().unwrap_or(f64::NAN),
        },
        Evaluated::String(v) => Value::String { t, v },
        Evaluated::Vector(m) => Value::Vector(
            m.into_iter()
                .filter_map(|s| {
                    let v = s.samples.first()?.v;
                    Some(VectorSample {
                        labels: s.labels,
                        t,
                        v,
                    })
                })
                .collect(),
        ),
        Evaluated::Range(mut m) => {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(m)
        }
    })
}

/// Evaluates a range query; the result is a matrix sorted by labels.
pub(crate) fn run_range(
    ctx: &mut Context<'_>,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Value, QueryError> {
    match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => {}
        other => {
            let name = match other {
                ValueType::Matrix => "range vector",
                ValueType::String => "string",
                _ => "unknown",
            };
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            )));
        }
    }
    let steps = Steps::new(start, end, step, super::MAX_POINTS_PER_SERIES as usize + 1)?;
    let mut ev = Evaluator { ctx, steps };
    let mut m = match ev.eval(expr)? {
        Evaluated::Scalar(v) => vec![Series {
            labels: Labels::empty(),
            samples: v
                .into_iter()
                .enumerate()
                .map(|(i, v)| Sample { t: steps.ts(i), v })
                .collect(),
        }],
        Evaluated::Vector(m) => m,
        other => {
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                other.type_name()
            )));
        }
    };
    m.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(m))
}

/// Collects a node's output series, one per distinct label set, in the order they first
/// appear (which is the order of an instant query's result, as in Prometheus).
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) series: Vec<Series>,
    index: HashMap<Labels, usize>,
    points: usize,
    /// Points this output may hold before the query is over `max_samples`.
    room: usize,
}

impl Out {
    /// An empty output that fails as soon as it would take the query over `max_samples`.
    pub(crate) fn new(ctx: &Context<'_>) -> Self {
        Self {
            room: ctx.max_samples.saturating_sub(ctx.samples),
            ..Self::default()
        }
    }

    /// The output series for `labels`, created on first use.
    pub(crate) fn slot(&mut self, labels: Labels) -> usize {
        if let Some(i) = self.index.get(&labels) {
            return *i;
        }
        let i = self.series.len();
        self.series.push(Series {
            labels: labels.clone(),
            samples: Vec::new(),
        });
        self.index.insert(labels, i);
        i
    }

    /// Appends a point; two points at one step in one series mean the result holds a label
    /// set twice, which Prometheus refuses.
    pub(crate) fn push(&mut self, slot: usize, t: i64, v: f64) -> Result<(), QueryError> {
        let Some(s) = self.series.get_mut(slot) else {
            return Err(QueryError::exec("internal error: unknown output series"));
        };
        if s.samples.last().is_some_and(|p| p.t == t) {
            return Err(QueryError::exec(DUPLICATE_LABELSET_MSG));
        }
        self.points += 1;
        if self.points > self.room {
            return Err(QueryError::TooManySamples(TOO_MANY_SAMPLES_MSG.to_owned()));
        }
        s.samples.push(Sample { t, v });
        Ok(())
    }

    /// The series that got at least one point, counted against `max_samples`.
    pub(crate) fn finish(self, ctx: &mut Context<'_>) -> Result<Vec<Series>, QueryError> {
        let out: Vec<Series> = self
            .series
            .into_iter()
            .filter(|s| !s.samples.is_empty())
            .collect();
        ctx.charge(points(&out))?;
        Ok(out)
    }
}

/// Walks the step-aligned points of many series in step order.
pub(crate) struct Cursors(Vec<usize>);

impl Cursors {
    pub(crate) fn new(n: usize) -> Self {
        Self(vec![0; n])
    }

    /// The value of series `si` at step time `ts`, if it has one (call with increasing `ts`).
    pub(crate) fn at(&mut self, si: usize, s: &Series, ts: i64) -> Option<f64> {
        let pos = self.0.get_mut(si)?;
        let p = s.samples.get(*pos)?;
        if p.t == ts {
            *pos += 1;
            Some(p.v)
        } else {
            None
        }
    }
}

/// Total points in a matrix.
pub(crate) fn points(m: &[Series]) -> usize {
    m.iter().map(|s| s.samples.len()).sum()
}

/// The labels without `__name__` (and the `__type__`/`__unit__` metadata labels, as Prometheus'
/// `DropReserved(IsMetadataLabel)`).
pub(crate) fn drop_metric_name(labels: &Labels) -> Labels {
    if !labels
        .iter()
        .any(|l| matches!(&*l.name, METRIC_NAME | "__type__" | "__unit__"))
    {
        return labels.clone();
    }
    let mut b = labels.builder();
    b.del(METRIC_NAME).del("__type__").del("__unit__");
    b.build()
}

/// Merges series that ended up with the same labels (after dropping `__name__`, say), as long
/// as they have no point at the same step; otherwise fails as Prometheus does.
pub(crate) fn merge_same_labelset(m: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    if m.len() <= 1 {
        return Ok(m);
    }
    let mut seen = HashSet::with_capacity(m.len());
    if m.iter().all(|s| seen.insert(&s.labels)) {
        return Ok(m);
    }
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(m.len());
    let mut out: Vec<Series> = Vec::with_capacity(m.len());
    let mut merged = Vec::new();
    for s in m {
        match index.get(&s.labels) {
            Some(&i) => {
                if let Some(target) = out.get_mut(i) {
                    target.samples.extend(s.samples);
                    merged.push(i);
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    for i in merged {
        if let Some(s) = out.get_mut(i) {
            s.samples.sort_by_key(|p| p.t);
            if s.samples.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(QueryError::exec(DUPLICATE_LABELSET_MSG));
            }
        }
    }
    Ok(out)
}

/// Fails when two series of a result have the same labels (Prometheus checks this for the
/// output of range-vector functions, whatever their timestamps).
pub(crate) fn check_unique_labelsets(m: &[Series]) -> Result<(), QueryError> {
    let mut seen = HashSet::with_capacity(m.len());
    if m.iter().all(|s| seen.insert(&s.labels)) {
        Ok(())
    } else {
        Err(QueryError::exec(DUPLICATE_LABELSET_MSG))
    }
}

/// The label matchers of a selector, the metric name becoming `__name__="…"`.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::unsupported("`or` between label matchers"));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.as_str()));
    }
    for m in &vs.matchers.matchers {
        out.push(convert_matcher(m)?);
    }
    if out.iter().all(Matcher::matches_empty) {
        return Err(QueryError::BadData(
            "vector selector must contain at least one non-empty matcher".to_owned(),
        ));
    }
    Ok(out)
}

fn convert_matcher(m: &promql_parser::label::Matcher) -> Result<Matcher, QueryError> {
    let op = match &m.op {
        ParserMatchOp::Equal => MatchOp::Equal,
        ParserMatchOp::NotEqual => MatchOp::NotEqual,
        ParserMatchOp::Re(_) => MatchOp::Regex,
        ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    match Matcher::new(op, m.name.as_str(), m.value.as_str()) {
        Ok(matcher) => Ok(matcher),
        Err(e) => {
            // Go accepts `a{b}` as literal braces; the parser already rewrote such regexes
            // for Rust (`^(?:a\{b})$`), so retry with its version.
            if let ParserMatchOp::Re(re) | ParserMatchOp::NotRe(re) = &m.op
                && let Some(inner) = re
                    .as_str()
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                && let Ok(matcher) = Matcher::new(op, m.name.as_str(), inner)
            {
                return Ok(matcher);
            }
            Err(QueryError::BadData(e.to_string()))
        }
    }
}

/// Appends the matchers of every selector under `expr`.
pub(crate) fn collect_selectors(
    expr: &Expr,
    out: &mut Vec<Vec<Matcher>>,
) -> Result<(), QueryError> {
    match expr {
        Expr::VectorSelector(vs) => out.push(selector_matchers(vs)?),
        Expr::MatrixSelector(ms) => out.push(selector_matchers(&ms.vs)?),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect_selectors(p, out)?;
            }
            collect_selectors(&a.expr, out)?;
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out)?,
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out)?;
            collect_selectors(&b.rhs, out)?;
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out)?,
        Expr::Subquery(s) => collect_selectors(&s.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                collect_selectors(a, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

/// Whether the tree under `expr` is deeper than `budget` levels (stops descending once it is,
/// so the check itself recurses at most `budget` deep).
pub(crate) fn deeper_than(expr: &Expr, budget: usize) -> bool {
    let Some(budget) = budget.checked_sub(1) else {
        return true;
    };
    match expr {
        Expr::Aggregate(a) => {
            deeper_than(&a.expr, budget)
                || a.param.as_deref().is_some_and(|p| deeper_than(p, budget))
        }
        Expr::Unary(u) => deeper_than(&u.expr, budget),
        Expr::Binary(b) => deeper_than(&b.lhs, budget) || deeper_than(&b.rhs, budget),
        Expr::Paren(p) => deeper_than(&p.expr, budget),
        Expr::Subquery(s) => deeper_than(&s.expr, budget),
        Expr::Call(c) => c.args.args.iter().any(|a| deeper_than(a, budget)),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => false,
    }
}

/// What kind of node `expr` is, for error messages.
pub(crate) fn expr_kind(expr: &Expr) -> &'static str {
    match expr {
        Expr::Aggregate(_) => "aggregation",
        Expr::Unary(_) => "unary expression",
        Expr::Binary(_) => "binary expression",
        Expr::Paren(_) => "parenthesized expression",
        Expr::Subquery(_) => "subquery",
        Expr::NumberLiteral(_) => "number literal",
        Expr::StringLiteral(_) => "string literal",
        Expr::VectorSelector(_) => "vector selector",
        Expr::MatrixSelector(_) => "matrix selector",
        Expr::Call(_) => "function call",
        Expr::Extension(_) => "extension",
    }
}

/// `expr` without surrounding parentheses.
pub(crate) fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// An offset in milliseconds (negative offsets look into the future).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(*d),
        Some(Offset::Neg(d)) => -duration_ms(*d),
    }
}

fn system_time_ms(st: &SystemTime) -> i64 {
    match st.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(e) => -duration_ms(e.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: points.iter().map(|&(t, v)| Sample { t, v }).collect(),
        }
    }

    #[test]
    fn steps_cover_start_to_end() {
        let s = Steps::new(0, 10, 3, 100).unwrap();
        assert_eq!((s.len(), s.ts(3), s.end(), s.index(9)), (4, 9, 9, 3));
        assert!(Steps::new(10, 0, 1, 100).is_err());
        assert!(Steps::new(0, 10, 0, 100).is_err());
        assert!(matches!(
            Steps::new(i64::MIN, i64::MAX, 1, 1000),
            Err(QueryError::TooManySamples(_))
        ));
    }

    #[test]
    fn merges_series_that_collide_without_overlap() {
        let m = vec![
            series(&[("a", "1")], &[(0, 1.0)]),
            series(&[("a", "2")], &[(0, 2.0)]),
            series(&[("a", "1")], &[(10, 3.0)]),
        ];
        let merged = merge_same_labelset(m).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].samples.len(), 2);
        let clash = vec![
            series(&[("a", "1")], &[(0, 1.0)]),
            series(&[("a", "1")], &[(0, 3.0)]),
        ];
        assert_eq!(
            merge_same_labelset(clash).unwrap_err(),
            QueryError::exec(DUPLICATE_LABELSET_MSG)
        );
    }

    #[test]
    fn drops_the_name_and_metadata_labels() {
        let l = Labels::from_pairs([("__name__", "x"), ("__type__", "counter"), ("a", "b")]);
        assert_eq!(drop_metric_name(&l), Labels::from_pairs([("a", "b")]));
    }

    #[test]
    fn output_refuses_two_points_at_one_step() {
        let mut out = Out {
            room: 10,
            ..Out::default()
        };
        let a = out.slot(Labels::from_pairs([("a", "1")]));
        assert_eq!(out.slot(Labels::from_pairs([("a", "1")])), a);
        out.push(a, 0, 1.0).unwrap();
        assert!(out.push(a, 0, 2.0).is_err());
        out.push(a, 10, 2.0).unwrap();
    }
}
