//! PromQL functions, listed in one table ([`FUNCTIONS`]) by name.
//!
//! Three kinds: window functions over a range vector (`rate`, `*_over_time`, …) that see the
//! samples of one series in `(t - range, t]` at each step; per-sample maps of an instant
//! vector (`abs`, `ln`, …); and functions with their own evaluation (`label_replace`,
//! `histogram_quantile`, `absent`, …). A name missing from the table is
//! [`QueryError::Unsupported`]. The numerics follow Prometheus' `functions.go`.

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr};

use super::QueryError;
use super::aggregations::{kahan_sum_inc, quantile};
use super::eval::{
    Cursors, Evaluator, Out, check_unique_labelsets, drop_metric_name, merge_same_labelset, points,
    selector_matchers, unwrap_parens,
};
use super::value::Evaluated;
use crate::model::{Labels, METRIC_NAME, MatchOp};
use crate::storage::{Sample, Series};

/// What a window function knows about the current step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The evaluation time of the step.
    pub(crate) ts: i64,
    /// The window is `(end - range, end]`.
    pub(crate) end: i64,
    pub(crate) range: i64,
    /// The scalar arguments at this step (`quantile_over_time`'s φ, `predict_linear`'s t).
    pub(crate) param: f64,
}

type WindowFn = fn(&[Sample], &Window) -> Option<f64>;

#[derive(Clone, Copy)]
enum Kind {
    /// A function of the samples in each step's window of a range vector.
    Window(WindowFn),
    /// A function of each sample's value; the result drops the metric name.
    Map(fn(f64) -> f64),
    /// Evaluated by its own code in [`eval_call`].
    Special,
}

struct Function {
    name: &'static str,
    kind: Kind,
}

const fn window(name: &'static str, f: WindowFn) -> Function {
    Function {
        name,
        kind: Kind::Window(f),
    }
}

const fn map(name: &'static str, f: fn(f64) -> f64) -> Function {
    Function {
        name,
        kind: Kind::Map(f),
    }
}

const fn special(name: &'static str) -> Function {
    Function {
        name,
        kind: Kind::Special,
    }
}

/// Every function this engine evaluates.
static FUNCTIONS: &[Function] = &[
    // Range-vector window functions.
    window("rate", |w, c| extrapolated_rate(w, c, true, true)),
    window("increase", |w, c| extrapolated_rate(w, c, true, false)),
    window("delta", |w, c| extrapolated_rate(w, c, false, false)),
    window("irate", |w, _| instant_value(w, true)),
    window("idelta", |w, _| instant_value(w, false)),
    window("deriv", |w, _| deriv(w)),
    window("predict_linear", predict_linear),
    window("changes", |w, _| Some(changes(w))),
    window("resets", |w, _| Some(resets(w))),
    window("avg_over_time", |w, _| Some(avg_over_time(w))),
    window("sum_over_time", |w, _| Some(sum_over_time(w))),
    window("count_over_time", |w, _| Some(w.len() as f64)),
    window("min_over_time", |w, _| {
        compare_over_time(w, |cur, best| cur < best || best.is_nan())
    }),
    window("max_over_time", |w, _| {
        compare_over_time(w, |cur, best| cur > best || best.is_nan())
    }),
    window("last_over_time", |w, _| w.last().map(|p| p.v)),
    window("first_over_time", |w, _| w.first().map(|p| p.v)),
    window("present_over_time", |_, _| Some(1.0)),
    window("mad_over_time", |w, _| Some(mad_over_time(w))),
    window("ts_of_first_over_time", |w, _| {
        w.first().map(|p| p.t as f64 / 1000.0)
    }),
    window("ts_of_last_over_time", |w, _| {
        w.last().map(|p| p.t as f64 / 1000.0)
    }),
    window("ts_of_min_over_time", |w, _| {
        ts_of_best(w, |cur, best| cur <= best || best.is_nan())
    }),
    window("ts_of_max_over_time", |w, _| {
        ts_of_best(w, |cur, best| cur >= best || best.is_nan())
    }),
    window("stddev_over_time", |w, _| {
        Some(variance_over_time(w).sqrt())
    }),
    window("stdvar_over_time", |w, _| Some(variance_over_time(w))),
    window("quantile_over_time", |w, c| {
        let mut values: Vec<f64> = w.iter().map(|p| p.v).collect();
        Some(quantile(c.param, &mut values))
    }),
    special("absent_over_time"),
    // Per-sample maps.
    map("abs", f64::abs),
    map("ceil", f64::ceil),
    map("floor", f64::floor),
    map("exp", f64::exp),
    map("sqrt", f64::sqrt),
    map("ln", f64::ln),
    map("log2", f64::log2),
    map("log10", f64::log10),
    map("sin", f64::sin),
    map("cos", f64::cos),
    map("tan", f64::tan),
    map("asin", f64::asin),
    map("acos", f64::acos),
    map("atan", f64::atan),
    map("sinh", f64::sinh),
    map("cosh", f64::cosh),
    map("tanh", f64::tanh),
    map("asinh", f64::asinh),
    map("acosh", f64::acosh),
    map("atanh", f64::atanh),
    map("deg", |v| v * 180.0 / std::f64::consts::PI),
    map("rad", |v| v * std::f64::consts::PI / 180.0),
    map("sgn", |v| {
        if v < 0.0 {
            -1.0
        } else if v > 0.0 {
            1.0
        } else {
            v
        }
    }),
    // Their own evaluation.
    special("round"),
    special("clamp"),
    special("clamp_min"),
    special("clamp_max"),
    special("time"),
    special("start"),
    special("end"),
    special("range"),
    special("step"),
    special("min_of"),
    special("max_of"),
    special("pi"),
    special("vector"),
    special("scalar"),
    special("sort"),
    special("sort_desc"),
    special("timestamp"),
    special("label_replace"),
    special("label_join"),
    special("absent"),
    special("histogram_quantile"),
    special("days_in_month"),
    special("day_of_month"),
    special("day_of_week"),
    special("day_of_year"),
    special("hour"),
    special("minute"),
    special("month"),
    special("year"),
];

/// Names of the functions this engine evaluates (for docs and tests).
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.name)
}

/// Evaluates a function call.
pub(crate) fn eval_call(ev: &mut Evaluator<'_, '_>, call: &Call) -> Result<Evaluated, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| unwrap_parens(a)).collect();
    let Some(f) = FUNCTIONS.iter().find(|f| f.name == name) else {
        return Err(QueryError::unsupported(format!("function {name}()")));
    };
    let arg = |i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| QueryError::BadData(format!("missing argument {} of {name}()", i + 1)))
    };
    match f.kind {
        Kind::Window(wf) => eval_window(ev, name, wf, &args),
        Kind::Map(mf) => {
            let m = ev.eval_vector(arg(0)?)?;
            map_series(ev, m, true, |_, v| Some(mf(v))).map(Evaluated::Vector)
        }
        Kind::Special => match name {
            "absent_over_time" => absent_over_time(ev, arg(0)?),
            "round" => {
                let m = ev.eval_vector(arg(0)?)?;
                let to = match args.get(1) {
                    Some(a) => ev.eval_scalar(a)?,
                    None => vec![1.0; ev.steps.len()],
                };
                let out = map_series(ev, m, true, |i, v| {
                    // Multiplying by the inverse is what Prometheus does (fewer float surprises).
                    let inv = 1.0 / to.get(i).copied().unwrap_or(f64::NAN);
                    Some((v * inv + 0.5).floor() / inv)
                })?;
                ev.ctx.release(to.len());
                Ok(Evaluated::Vector(out))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let m = ev.eval_vector(arg(0)?)?;
                let n = ev.steps.len();
                let (lo, hi) = match name {
                    "clamp" => (ev.eval_scalar(arg(1)?)?, ev.eval_scalar(arg(2)?)?),
                    "clamp_min" => (ev.eval_scalar(arg(1)?)?, vec![f64::INFINITY; n]),
                    _ => (vec![f64::NEG_INFINITY; n], ev.eval_scalar(arg(1)?)?),
                };
                let out = map_series(ev, m, true, |i, v| {
                    let (lo, hi) = (lo.get(i).copied()?, hi.get(i).copied()?);
                    if hi < lo {
                        return None;
                    }
                    Some(go_max(lo, go_min(hi, v)))
                })?;
                ev.ctx.release(2 * n);
                Ok(Evaluated::Vector(out))
            }
            "time" => {
                ev.ctx.charge(ev.steps.len())?;
                Ok(Evaluated::Scalar(
                    (0..ev.steps.len())
                        .map(|i| ev.steps.ts(i) as f64 / 1000.0)
                        .collect(),
                ))
            }
            "start" | "end" | "range" | "step" => {
                // The query's parameters in seconds (experimental functions in Prometheus).
                let c = &ev.ctx;
                let ms = match name {
                    "start" => c.query_start,
                    "end" => c.query_end,
                    "range" => c.query_end.saturating_sub(c.query_start),
                    _ => c.query_step,
                };
                ev.ctx.charge(ev.steps.len())?;
                Ok(Evaluated::Scalar(vec![ms as f64 / 1000.0; ev.steps.len()]))
            }
            "min_of" | "max_of" => {
                let mut a = ev.eval_scalar(arg(0)?)?;
                let b = ev.eval_scalar(arg(1)?)?;
                let f = if name == "min_of" { go_min } else { go_max };
                a.iter_mut().zip(&b).for_each(|(x, y)| *x = f(*x, *y));
                ev.ctx.release(b.len());
                Ok(Evaluated::Scalar(a))
            }
            "pi" => {
                ev.ctx.charge(ev.steps.len())?;
                Ok(Evaluated::Scalar(vec![
                    std::f64::consts::PI;
                    ev.steps.len()
                ]))
            }
            "vector" => {
                let v = ev.eval_scalar(arg(0)?)?;
                let steps = ev.steps;
                Ok(Evaluated::Vector(vec![Series {
                    labels: Labels::empty(),
                    samples: v
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Sample { t: steps.ts(i), v })
                        .collect(),
                }]))
            }
            "scalar" => {
                let m = ev.eval_vector(arg(0)?)?;
                let mut out = vec![f64::NAN; ev.steps.len()];
                let mut seen = vec![0u32; ev.steps.len()];
                for s in &m {
                    for p in &s.samples {
                        let i = ev.steps.index(p.t);
                        if let (Some(o), Some(n)) = (out.get_mut(i), seen.get_mut(i)) {
                            *n += 1;
                            *o = if *n == 1 { p.v } else { f64::NAN };
                        }
                    }
                }
                ev.ctx.release(points(&m));
                Ok(Evaluated::Scalar(out))
            }
            "sort" | "sort_desc" => {
                let mut m = ev.eval_vector(arg(0)?)?;
                // Only an instant query has an order; a range query's matrix is sorted by labels.
                if ev.steps.len() == 1 {
                    let desc = name == "sort_desc";
                    let key = |s: &Series| s.samples.first().map_or(f64::NAN, |p| p.v);
                    m.sort_by(|a, b| {
                        let (x, y) = (key(a), key(b));
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.total_cmp(&x),
                            _ => x.total_cmp(&y),
                        }
                    });
                }
                Ok(Evaluated::Vector(m))
            }
            "timestamp" => {
                let a = arg(0)?;
                let m = if let Expr::VectorSelector(vs) = a {
                    let m = ev.vector_selector(vs, true)?;
                    map_series(ev, m, true, |_, t| Some(t / 1000.0))?
                } else {
                    let m = ev.eval_vector(a)?;
                    let steps = ev.steps;
                    let mut m = map_series(ev, m, true, |i, _| Some(steps.ts(i) as f64))?;
                    m.iter_mut()
                        .flat_map(|s| s.samples.iter_mut())
                        .for_each(|p| p.v = p.t as f64 / 1000.0);
                    m
                };
                Ok(Evaluated::Vector(m))
            }
            "label_replace" => label_replace(ev, &args),
            "label_join" => label_join(ev, &args),
            "absent" => {
                let m = ev.eval_vector(arg(0)?)?;
                let mut present = vec![false; ev.steps.len()];
                for p in m.iter().flat_map(|s| &s.samples) {
                    if let Some(x) = present.get_mut(ev.steps.index(p.t)) {
                        *x = true;
                    }
                }
                ev.ctx.release(points(&m));
                Ok(Evaluated::Vector(absent_series(ev, arg(0)?, &present)?))
            }
            "histogram_quantile" => histogram_quantile(ev, arg(0)?, arg(1)?),
            "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour"
            | "minute" | "month" | "year" => date_function(ev, name, args.first().copied()),
            _ => Err(QueryError::unsupported(format!("function {name}()"))),
        },
    }
}

/// Maps the points of each series (`f(step index, value)`, `None` drops the point), then
/// merges series whose labels became equal.
fn map_series(
    ev: &mut Evaluator<'_, '_>,
    mut m: Vec<Series>,
    drop_name: bool,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Vec<Series>, QueryError> {
    let before = points(&m);
    let steps = ev.steps;
    for s in &mut m {
        ev.ctx.tick()?;
        if drop_name {
            s.labels = drop_metric_name(&s.labels);
        }
        s.samples.retain_mut(|p| match f(steps.index(p.t), p.v) {
            Some(v) => {
                p.v = v;
                true
            }
            None => false,
        });
    }
    m.retain(|s| !s.samples.is_empty());
    ev.ctx.release(before - points(&m));
    merge_same_labelset(m)
}

/// Runs a window function over every series of its range-vector argument.
fn eval_window(
    ev: &mut Evaluator<'_, '_>,
    name: &str,
    f: WindowFn,
    args: &[&Expr],
) -> Result<Evaluated, QueryError> {
    let Some(midx) = args
        .iter()
        .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
    else {
        return Err(QueryError::BadData(format!(
            "expected a range vector argument in call to {name}()"
        )));
    };
    // The other argument, if any, is a scalar (φ of quantile_over_time, t of predict_linear).
    let mut param = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != midx {
            param = ev.eval_scalar(a)?;
        }
    }
    let src = ev.range_source(args[midx])?;
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::new();
    for s in &src.series {
        let mut samples = Vec::new();
        ev.for_each_window(&src, &s.samples, |i, ts, end, w| {
            let c = Window {
                ts,
                end,
                range: src.range,
                param: param.get(i).copied().unwrap_or(f64::NAN),
            };
            if let Some(v) = f(w, &c) {
                samples.push(Sample { t: ts, v });
            }
            Ok(())
        })?;
        if !samples.is_empty() {
            ev.ctx.charge(samples.len())?;
            out.push(Series {
                labels: if keep_name {
                    s.labels.clone()
                } else {
                    drop_metric_name(&s.labels)
                },
                samples,
            });
        }
    }
    ev.ctx.release(param.len() + src.charged);
    check_unique_labelsets(&out)?;
    Ok(Evaluated::Vector(out))
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the window
/// edges (to an edge when the first/last sample is within 1.1 average intervals of it,
/// otherwise by half an average interval), counter resets added back and, for counters, never
/// extrapolated below zero. As Prometheus' `extrapolatedRate`.
fn extrapolated_rate(w: &[Sample], c: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w.first()?, w.last()?);
    let range_start = c.end.saturating_sub(c.range);
    let mut result = last.v - first.v;
    if is_counter {
        for pair in w.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (c.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_interval = sampled / (w.len() - 1) as f64;
    let threshold = avg_interval * 1.1;
    if to_start >= threshold {
        to_start = avg_interval / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past the point where it would.
        let to_zero = if result > 0.0 && first.v >= 0.0 {
            sampled * (first.v / result)
        } else {
            to_start
        };
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_interval / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= c.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: from the last two samples (a drop counts as a counter reset for irate).
fn instant_value(w: &[Sample], is_rate: bool) -> Option<f64> {
    let [.., prev, last] = w else { return None };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares slope and intercept (at `intercept_t`), Kahan-summed, as Prometheus'
/// `linearRegression`.
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = w.first().map_or(f64::NAN, |p| p.v);
    let mut const_y = true;
    for (i, p) in w.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = p.t.saturating_sub(intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn deriv(w: &[Sample]) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    Some(linear_regression(w, w.first()?.t).0)
}

fn predict_linear(w: &[Sample], c: &Window) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(w, c.ts);
    Some(slope * c.param + intercept)
}

fn changes(w: &[Sample]) -> f64 {
    w.windows(2)
        .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
        .count() as f64
}

fn resets(w: &[Sample]) -> f64 {
    w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64
}

/// The mean, Kahan-summed, switching to an incremental mean only if the sum overflows.
fn avg_over_time(w: &[Sample]) -> f64 {
    let Some((first, rest)) = w.split_first() else {
        return f64::NAN;
    };
    let (mut sum, mut count, mut mean, mut c) = (first.v, 1.0, 0.0, 0.0);
    let mut incremental = false;
    for (i, p) in rest.iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (s, nc) = kahan_sum_inc(p.v, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn sum_over_time(w: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in w {
        (sum, c) = kahan_sum_inc(p.v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

fn compare_over_time(w: &[Sample], better: fn(f64, f64) -> bool) -> Option<f64> {
    let mut best = w.first()?.v;
    for p in w {
        if better(p.v, best) {
            best = p.v;
        }
    }
    Some(best)
}

/// The timestamp (seconds) of the best sample; `better` decides ties (`>=` keeps the last).
fn ts_of_best(w: &[Sample], better: fn(f64, f64) -> bool) -> Option<f64> {
    let first = w.first()?;
    let (mut best, mut t) = (first.v, first.t);
    for p in w {
        if better(p.v, best) {
            best = p.v;
            t = p.t;
        }
    }
    Some(t as f64 / 1000.0)
}

/// Median absolute deviation from the median; a NaN sample makes it NaN.
fn mad_over_time(w: &[Sample]) -> f64 {
    if w.iter().any(|p| p.v.is_nan()) {
        return f64::NAN;
    }
    let mut values: Vec<f64> = w.iter().map(|p| p.v).collect();
    let median = quantile(0.5, &mut values);
    for v in &mut values {
        *v = (*v - median).abs();
    }
    quantile(0.5, &mut values)
}

fn variance_over_time(w: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in w {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Go's `math.Max` (NaN wins except against +Inf; +0 beats -0).
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min` (NaN wins except against -Inf; -0 beats +0).
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// The labels `absent()` gives its result: the selector's equality matchers (a label matched
/// twice, or by anything but `=`, is left out), as Prometheus' `createLabelsForAbsentFunction`.
fn absent_labels(expr: &Expr) -> Result<Labels, QueryError> {
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(Labels::empty()),
    };
    let mut b = Labels::empty().builder();
    let mut has: HashMap<String, bool> = HashMap::new();
    for m in selector_matchers(vs)? {
        if m.name == METRIC_NAME {
            continue;
        }
        let seen = has.get(&m.name).copied().unwrap_or(false);
        if m.op == MatchOp::Equal && !seen {
            b.set(m.name.as_str(), m.value.as_str());
            has.insert(m.name.clone(), true);
        } else {
            b.del(&m.name);
        }
    }
    Ok(b.build())
}

/// One series with value 1 at the steps where `present` is false.
fn absent_series(
    ev: &mut Evaluator<'_, '_>,
    arg: &Expr,
    present: &[bool],
) -> Result<Vec<Series>, QueryError> {
    let samples: Vec<Sample> = present
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(i, _)| Sample {
            t: ev.steps.ts(i),
            v: 1.0,
        })
        .collect();
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    ev.ctx.charge(samples.len())?;
    Ok(vec![Series {
        labels: absent_labels(arg)?,
        samples,
    }])
}

fn absent_over_time(ev: &mut Evaluator<'_, '_>, arg: &Expr) -> Result<Evaluated, QueryError> {
    let src = ev.range_source(arg)?;
    let mut present = vec![false; ev.steps.len()];
    for s in &src.series {
        ev.for_each_window(&src, &s.samples, |i, _, _, _| {
            if let Some(p) = present.get_mut(i) {
                *p = true;
            }
            Ok(())
        })?;
    }
    ev.ctx.release(src.charged);
    Ok(Evaluated::Vector(absent_series(ev, arg, &present)?))
}

fn string_arg<'e>(args: &[&'e Expr], i: usize, func: &str) -> Result<&'e str, QueryError> {
    match args.get(i) {
        Some(Expr::StringLiteral(s)) => Ok(&s.val),
        _ => Err(QueryError::BadData(format!(
            "expected a string as argument {} of {func}()",
            i + 1
        ))),
    }
}

fn label_replace(ev: &mut Evaluator<'_, '_>, args: &[&Expr]) -> Result<Evaluated, QueryError> {
    let dst = string_arg(args, 1, "label_replace")?;
    let repl = string_arg(args, 2, "label_replace")?;
    let src = string_arg(args, 3, "label_replace")?;
    let re_src = string_arg(args, 4, "label_replace")?;
    let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|_| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {re_src}"
        ))
    })?;
    if dst.is_empty() {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let Some(arg) = args.first() else {
        return Err(QueryError::BadData(
            "label_replace() needs a vector".to_owned(),
        ));
    };
    let mut m = ev.eval_vector(arg)?;
    for s in &mut m {
        let value = s.labels.get(src).unwrap_or("");
        if let Some(caps) = re.captures(value) {
            let mut res = String::new();
            caps.expand(repl, &mut res);
            let mut b = s.labels.builder();
            b.set(dst, res);
            s.labels = b.build();
        }
    }
    merge_same_labelset(m).map(Evaluated::Vector)
}

fn label_join(ev: &mut Evaluator<'_, '_>, args: &[&Expr]) -> Result<Evaluated, QueryError> {
    let dst = string_arg(args, 1, "label_join")?;
    let sep = string_arg(args, 2, "label_join")?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let s = string_arg(args, i, "label_join")?;
        if s.is_empty() {
            return Err(QueryError::exec(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if dst.is_empty() {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let Some(arg) = args.first() else {
        return Err(QueryError::BadData(
            "label_join() needs a vector".to_owned(),
        ));
    };
    let mut m = ev.eval_vector(arg)?;
    for s in &mut m {
        let joined = srcs
            .iter()
            .map(|l| s.labels.get(l).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(sep);
        let mut b = s.labels.builder();
        b.set(dst, joined);
        s.labels = b.build();
    }
    merge_same_labelset(m).map(Evaluated::Vector)
}

/// A classic histogram bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub(crate) upper: f64,
    pub(crate) count: f64,
}

/// The φ-quantile from classic buckets, interpolating linearly within the bucket, as
/// Prometheus' `BucketQuantile` (sorts and may rewrite `buckets`).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Merge buckets with the same upper bound.
    buckets.dedup_by(|b, kept| {
        if b.upper == kept.upper {
            kept.count += b.count;
            true
        } else {
            false
        }
    });
    // Float noise can make cumulative counts dip slightly; treat tiny dips as equal.
    let mut prev = buckets.first().map_or(0.0, |b| b.count);
    for b in buckets.iter_mut().skip(1) {
        let delta = (b.count - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / b.count <= 1e-12 {
            b.count = prev;
        } else {
            prev = b.count;
        }
    }
    // Force monotonic counts.
    let mut max = buckets.first().map_or(0.0, |b| b.count);
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|b| b.count < rank);
    if b == n - 1 {
        return buckets[n - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// `histogram_quantile(φ, buckets)` over classic `le` buckets.
fn histogram_quantile(
    ev: &mut Evaluator<'_, '_>,
    q_arg: &Expr,
    v_arg: &Expr,
) -> Result<Evaluated, QueryError> {
    let q = ev.eval_scalar(q_arg)?;
    let input = ev.eval_vector(v_arg)?;
    // Per series: its histogram (labels without `le`; the metric name still tells histograms
    // apart) and upper bound. Series whose `le` does not parse are ignored, as in Prometheus
    // (which warns). The result drops the name, so two histograms differing only by name
    // collide in the output and fail the query, as in Prometheus.
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut series_bucket: Vec<Option<(usize, f64)>> = Vec::with_capacity(input.len());
    for s in &input {
        let upper = s.labels.get("le").and_then(parse_go_float);
        series_bucket.push(upper.map(|upper| {
            let mut b = s.labels.builder();
            b.del("le");
            let labels = b.build();
            let n = group_labels.len();
            let g = *group_index.entry(labels.clone()).or_insert(n);
            if g == n {
                group_labels.push(drop_metric_name(&labels));
            }
            (g, upper)
        }));
    }
    let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); group_labels.len()];
    let mut slots: Vec<Option<usize>> = vec![None; group_labels.len()];
    let mut out = Out::new(ev.ctx);
    let mut cursors = Cursors::new(input.len());
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        buckets.iter_mut().for_each(Vec::clear);
        for (si, s) in input.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(v) = cursors.at(si, s, ts) else {
                continue;
            };
            if let Some(Some((g, upper))) = series_bucket.get(si)
                && let Some(b) = buckets.get_mut(*g)
            {
                b.push(Bucket {
                    upper: *upper,
                    count: v,
                });
            }
        }
        let qv = q.get(step).copied().unwrap_or(f64::NAN);
        for (g, b) in buckets.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let v = bucket_quantile(qv, b);
            let slot = match slots[g] {
                Some(slot) => slot,
                None => {
                    let slot = out.slot(group_labels[g].clone());
                    slots[g] = Some(slot);
                    slot
                }
            };
            out.push(slot, ts, v)?;
        }
    }
    ev.ctx.release(points(&input) + q.len());
    out.finish(ev.ctx).map(Evaluated::Vector)
}

/// Parses a float as Go's `strconv.ParseFloat` does for bucket bounds (`+Inf`, `1e3`, …).
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    s.parse().ok()
}

/// The date functions: of each sample's value (Unix seconds), or of the step time when
/// called without an argument.
fn date_function(
    ev: &mut Evaluator<'_, '_>,
    name: &str,
    arg: Option<&Expr>,
) -> Result<Evaluated, QueryError> {
    let f = |secs: i64| -> f64 {
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        match name {
            "days_in_month" => days_in_month(y, m) as f64,
            "day_of_month" => d as f64,
            "day_of_week" => (days + 4).rem_euclid(7) as f64,
            "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
            "hour" => (secs_of_day / 3600) as f64,
            "minute" => (secs_of_day % 3600 / 60) as f64,
            "month" => m as f64,
            _ => y as f64,
        }
    };
    match arg {
        None => {
            let steps = ev.steps;
            let samples: Vec<Sample> = (0..steps.len())
                .map(|i| {
                    let t = steps.ts(i);
                    Sample {
                        t,
                        v: f(t.div_euclid(1000)),
                    }
                })
                .collect();
            ev.ctx.charge(samples.len())?;
            Ok(Evaluated::Vector(vec![Series {
                labels: Labels::empty(),
                samples,
            }]))
        }
        Some(a) => {
            let m = ev.eval_vector(a)?;
            // Go's int64(float) truncates toward zero; `as` does too (and saturates).
            map_series(ev, m, true, |_, v| Some(f(v as i64))).map(Evaluated::Vector)
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    fn win(end: i64, range: i64) -> Window {
        Window {
            ts: end,
            end,
            range,
            param: f64::NAN,
        }
    }

    #[test]
    fn table_has_no_duplicates() {
        let mut names: Vec<&str> = names().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        // Samples every 15s from 15s to 300s over a 5m window ending at 300s: the first
        // sample is one interval from the start, so the rate extrapolates to the full window.
        let w: Vec<Sample> = (1..=20).map(|i| s(i * 15_000, i as f64 * 15.0)).collect();
        let r = extrapolated_rate(&w, &win(300_000, 300_000), true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // increase: the same over 300s.
        let inc = extrapolated_rate(&w, &win(300_000, 300_000), true, false).unwrap();
        assert!((inc - 300.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn rate_handles_counter_resets_and_zero_clamp() {
        // 0 10 20 | reset | 5: increase 10+10+5 = 25 over 3 intervals of 10s.
        let w = vec![
            s(10_000, 0.0),
            s(20_000, 10.0),
            s(30_000, 20.0),
            s(40_000, 5.0),
        ];
        // Window (0, 40s]: 10s to the start (= one interval, below 1.1: extrapolate fully),
        // but the counter starts at 0, so the zero point clamps it to the first sample.
        let inc = extrapolated_rate(&w, &win(40_000, 40_000), true, false).unwrap();
        assert!((inc - 25.0).abs() < 1e-9, "{inc}");
        // delta does not look for resets: 5 - 0 = 5, extrapolated by 10s on the left: 5*40/30.
        let d = extrapolated_rate(&w, &win(40_000, 40_000), false, false).unwrap();
        assert!((d - 5.0 * 40.0 / 30.0).abs() < 1e-9, "{d}");
        assert!(extrapolated_rate(&w[..1], &win(40_000, 40_000), true, true).is_none());
    }

    #[test]
    fn irate_uses_the_last_two_samples() {
        let w = vec![s(0, 1.0), s(10_000, 5.0), s(20_000, 25.0)];
        assert_eq!(instant_value(&w, true), Some(2.0));
        assert_eq!(instant_value(&w, false), Some(20.0));
        // A drop is a reset: the rate is the new value over the interval.
        let w = vec![s(0, 10.0), s(10_000, 5.0)];
        assert_eq!(instant_value(&w, true), Some(0.5));
        assert_eq!(instant_value(&w, false), Some(-5.0));
    }

    #[test]
    fn regression_and_counts() {
        let w = vec![s(0, 1.0), s(10_000, 3.0), s(20_000, 5.0)];
        assert!((deriv(&w).unwrap() - 0.2).abs() < 1e-12);
        let c = Window {
            ts: 20_000,
            end: 20_000,
            range: 60_000,
            param: 10.0,
        };
        assert!((predict_linear(&w, &c).unwrap() - 7.0).abs() < 1e-12);
        let w = vec![
            s(0, 1.0),
            s(1, 1.0),
            s(2, 0.0),
            s(3, f64::NAN),
            s(4, f64::NAN),
        ];
        assert_eq!(changes(&w), 2.0);
        assert_eq!(resets(&w), 1.0);
    }

    #[test]
    fn over_time_aggregates() {
        let w = vec![s(0, 1.0), s(1000, 2.0), s(2000, 6.0)];
        assert_eq!(avg_over_time(&w), 3.0);
        // Median 2, deviations 1 0 4: median 1.
        assert_eq!(mad_over_time(&w), 1.0);
        assert_eq!(ts_of_best(&w, |c, b| c >= b || b.is_nan()), Some(2.0));
        assert_eq!(ts_of_best(&w, |c, b| c <= b || b.is_nan()), Some(0.0));
        assert_eq!(sum_over_time(&w), 9.0);
        let nan_first = vec![s(0, f64::NAN), s(1, 2.0)];
        assert_eq!(
            compare_over_time(&nan_first, |c, b| c < b || b.is_nan()),
            Some(2.0)
        );
        assert!((variance_over_time(&w) - 14.0 / 3.0).abs() < 1e-12);
        // The mean of values whose sum overflows is still found.
        let big = vec![s(0, f64::MAX), s(1, f64::MAX)];
        assert_eq!(avg_over_time(&big), f64::MAX);
    }

    #[test]
    fn bucket_quantile_interpolates() {
        let mut b = vec![
            Bucket {
                upper: 0.1,
                count: 10.0,
            },
            Bucket {
                upper: 0.5,
                count: 50.0,
            },
            Bucket {
                upper: f64::INFINITY,
                count: 100.0,
            },
            Bucket {
                upper: 1.0,
                count: 90.0,
            },
        ];
        // rank 45 falls in (0.1, 0.5]: 0.1 + 0.4 * 35/40.
        assert!((bucket_quantile(0.45, &mut b) - 0.45).abs() < 1e-12);
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(bucket_quantile(0.99, &mut b), 1.0);
        let mut no_inf = vec![Bucket {
            upper: 1.0,
            count: 1.0,
        }];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }

    #[test]
    fn calendar() {
        // 2024-02-29T13:45:00Z
        let secs = days_from_civil(2024, 2, 29) * 86_400 + 13 * 3600 + 45 * 60;
        assert_eq!(civil_from_days(secs.div_euclid(86_400)), (2024, 2, 29));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_min(f64::NAN, 1.0).is_nan());
    }
}
