//! Aggregation operators (`sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `count_values`) with `by` / `without`.
//!
//! Each input series is mapped to its group once; each step then folds the values of the
//! series present at that step into per-group state that is reused from step to step. The
//! float arithmetic follows Prometheus 3.x exactly: Kahan-Neumaier compensated sums for `sum`
//! and `avg` (switching `avg` to an incremental mean only when the sum would overflow),
//! Welford's update for `stddev`/`stdvar`, and NaN that loses to any number in `min`/`max`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::QueryError;
use super::eval::{Cursors, Evaluator, Out, points, unwrap_parens};
use super::value::{Evaluated, format_go_f};
use crate::model::{Labels, METRIC_NAME};
use crate::storage::Series;

/// The largest float that converts to an int64 without overflow (Prometheus' `maxInt64`).
const MAX_INT64: f64 = 9_223_372_036_854_774_784.0;
const MIN_INT64: f64 = -9_223_372_036_854_775_808.0;

/// Kahan summation with Neumaier's improvement, as Prometheus' `kahansum.Inc`: returns the
/// new sum and compensation.
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The φ-quantile of `values` (sorted in place), interpolating between neighbours, as
/// Prometheus' `quantile`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Prometheus sorts NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let at = |i: f64| values.get(i as usize).copied().unwrap_or(f64::NAN);
    at(lower) * (1.0 - weight) + at(upper) * weight
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Quantile,
}

/// Per-group running state for one step.
#[derive(Debug, Default, Clone)]
struct GroupState {
    seen: bool,
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
}

impl GroupState {
    fn start(&mut self, kind: Kind, f: f64) {
        self.seen = true;
        self.value = f;
        self.mean = f;
        self.kahan_c = 0.0;
        self.count = 1.0;
        self.incremental_mean = false;
        match kind {
            Kind::Stddev | Kind::Stdvar => {
                self.value = if f.is_nan() || f.is_infinite() {
                    f64::NAN
                } else {
                    0.0
                };
            }
            Kind::Quantile => {
                self.values.clear();
                self.values.push(f);
            }
            Kind::Group => self.value = 1.0,
            _ => {}
        }
    }

    fn add(&mut self, kind: Kind, f: f64) {
        match kind {
            Kind::Sum => (self.value, self.kahan_c) = kahan_sum_inc(f, self.value, self.kahan_c),
            Kind::Avg => {
                self.count += 1.0;
                if !self.incremental_mean {
                    let (v, c) = kahan_sum_inc(f, self.value, self.kahan_c);
                    if !v.is_infinite() {
                        (self.value, self.kahan_c) = (v, c);
                        return;
                    }
                    // The sum would overflow: go on with the incremental mean.
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan_c /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.kahan_c) =
                    kahan_sum_inc(f / self.count, q * self.mean, q * self.kahan_c);
            }
            Kind::Count => self.count += 1.0,
            Kind::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Kind::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Kind::Group => {}
            Kind::Stddev | Kind::Stdvar => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            Kind::Quantile => self.values.push(f),
        }
    }

    fn result(&mut self, kind: Kind, q: f64) -> f64 {
        match kind {
            Kind::Sum => self.value + self.kahan_c,
            Kind::Avg if self.incremental_mean => self.mean + self.kahan_c,
            Kind::Avg => self.value / self.count + self.kahan_c / self.count,
            Kind::Count => self.count,
            Kind::Stdvar => self.value / self.count,
            Kind::Stddev => (self.value / self.count).sqrt(),
            Kind::Quantile => quantile(q, &mut self.values),
            Kind::Min | Kind::Max | Kind::Group => self.value,
        }
    }
}

/// The labels of the group a series falls in (also the group's output labels).
fn group_labels(labels: &Labels, without: bool, grouping: &[String]) -> Labels {
    if without {
        let mut b = labels.builder();
        for g in grouping {
            b.del(g);
        }
        b.del(METRIC_NAME);
        b.build()
    } else if grouping.is_empty() {
        Labels::empty()
    } else {
        Labels::from_sorted(
            labels
                .iter()
                .filter(|l| grouping.iter().any(|g| *g == *l.name))
                .cloned()
                .collect(),
        )
    }
}

/// Evaluates an aggregation.
pub(crate) fn eval(ev: &mut Evaluator<'_, '_>, a: &AggregateExpr) -> Result<Evaluated, QueryError> {
    let op = a.op.to_string();
    let (without, grouping): (bool, &[String]) = match &a.modifier {
        Some(LabelModifier::Include(l)) => (false, &l.labels),
        Some(LabelModifier::Exclude(l)) => (true, &l.labels),
        None => (false, &[]),
    };
    let kind = match op.as_str() {
        "sum" => Kind::Sum,
        "avg" => Kind::Avg,
        "count" => Kind::Count,
        "min" => Kind::Min,
        "max" => Kind::Max,
        "group" => Kind::Group,
        "stddev" => Kind::Stddev,
        "stdvar" => Kind::Stdvar,
        "quantile" => Kind::Quantile,
        "topk" | "bottomk" => {
            let k = param_scalar(ev, a)?;
            let input = ev.eval_vector(&a.expr)?;
            let out = top_k(ev, op == "topk", &k, &input, without, grouping)?;
            ev.ctx.release(points(&input) + k.len());
            return Ok(Evaluated::Vector(out));
        }
        "count_values" => {
            let Some(Expr::StringLiteral(label)) = a.param.as_deref().map(unwrap_parens) else {
                return Err(QueryError::BadData(
                    "count_values needs a string parameter".to_owned(),
                ));
            };
            let input = ev.eval_vector(&a.expr)?;
            let out = count_values(ev, &label.val, &input, without, grouping)?;
            ev.ctx.release(points(&input));
            return Ok(Evaluated::Vector(out));
        }
        other => return Err(QueryError::unsupported(format!("aggregation {other}"))),
    };
    let q = if kind == Kind::Quantile {
        param_scalar(ev, a)?
    } else {
        Vec::new()
    };
    let input = ev.eval_vector(&a.expr)?;

    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let mut result: Vec<Series> = Vec::new();
    let series_group: Vec<usize> = input
        .iter()
        .map(|s| {
            let labels = group_labels(&s.labels, without, grouping);
            let n = result.len();
            *group_index.entry(labels).or_insert_with_key(|labels| {
                result.push(Series {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                n
            })
        })
        .collect();
    drop(group_index);

    let mut groups = vec![GroupState::default(); result.len()];
    let mut cursors = Cursors::new(input.len());
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        for g in &mut groups {
            g.seen = false;
        }
        for (si, s) in input.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(f) = cursors.at(si, s, ts) else {
                continue;
            };
            let Some(g) = series_group.get(si).and_then(|gi| groups.get_mut(*gi)) else {
                continue;
            };
            if g.seen {
                g.add(kind, f);
            } else {
                g.start(kind, f);
            }
        }
        let qv = q.get(step).copied().unwrap_or(f64::NAN);
        for (g, out) in groups.iter_mut().zip(result.iter_mut()) {
            if g.seen {
                let v = g.result(kind, qv);
                out.samples.push(crate::storage::Sample { t: ts, v });
            }
        }
    }
    result.retain(|s| !s.samples.is_empty());
    ev.ctx.charge(points(&result))?;
    ev.ctx.release(points(&input) + q.len());
    Ok(Evaluated::Vector(result))
}

fn param_scalar(ev: &mut Evaluator<'_, '_>, a: &AggregateExpr) -> Result<Vec<f64>, QueryError> {
    match a.param.as_deref() {
        Some(p) => ev.eval_scalar(p),
        None => Err(QueryError::BadData(format!("{} needs a parameter", a.op))),
    }
}

/// A heap entry ordered by how bad it is to keep: the heap top is the first to evict.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    nan: bool,
    /// Larger is worse: `-v` for topk, `v` for bottomk.
    key: f64,
    series: usize,
    v: f64,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        // NaN is the worst, then by key.
        self.nan
            .cmp(&other.nan)
            .then_with(|| self.key.total_cmp(&other.key))
    }
}

/// `topk` / `bottomk`: the k best series per group at each step, with their own labels.
fn top_k(
    ev: &mut Evaluator<'_, '_>,
    top: bool,
    k: &[f64],
    input: &[Series],
    without: bool,
    grouping: &[String],
) -> Result<Vec<Series>, QueryError> {
    // As Prometheus: a NaN anywhere fails the query, even over an empty input.
    if k.iter().any(|v| v.is_nan()) {
        return Err(QueryError::exec("Parameter value is NaN"));
    }
    let max = k.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max < 1.0 || k.is_empty() {
        return Ok(Vec::new());
    }
    let min = k.iter().copied().fold(f64::INFINITY, f64::min);
    if min <= MIN_INT64 {
        return Err(QueryError::exec(format!(
            "Scalar value {} underflows int64",
            super::format_value(min)
        )));
    }
    if max >= MAX_INT64 {
        return Err(QueryError::exec(format!(
            "Scalar value {} overflows int64",
            super::format_value(max)
        )));
    }
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let series_group: Vec<usize> = input
        .iter()
        .map(|s| {
            let n = group_index.len();
            *group_index
                .entry(group_labels(&s.labels, without, grouping))
                .or_insert(n)
        })
        .collect();
    let mut heaps: Vec<BinaryHeap<Ranked>> = vec![BinaryHeap::new(); group_index.len()];
    drop(group_index);
    let mut slots: Vec<Option<usize>> = vec![None; input.len()];
    let mut out = Out::new(ev.ctx);
    let mut cursors = Cursors::new(input.len());
    let mut sorted: Vec<Ranked> = Vec::new();
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        let kf = k.get(step).copied().unwrap_or(0.0);
        // Truncation as Go's int64(float); bounded by the number of series.
        let kk = (kf as i64).min(input.len() as i64);
        for h in &mut heaps {
            h.clear();
        }
        for (si, s) in input.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(v) = cursors.at(si, s, ts) else {
                continue;
            };
            if kk < 1 {
                continue;
            }
            let entry = Ranked {
                nan: v.is_nan(),
                key: if top { -v } else { v },
                series: si,
                v,
            };
            let Some(h) = series_group.get(si).and_then(|g| heaps.get_mut(*g)) else {
                continue;
            };
            if (h.len() as i64) < kk {
                h.push(entry);
            } else if h.peek().is_some_and(|worst| entry < *worst) {
                h.pop();
                h.push(entry);
            }
        }
        for h in &mut heaps {
            sorted.clear();
            sorted.extend(h.drain());
            sorted.sort();
            for r in &sorted {
                let slot = match slots.get(r.series).copied().flatten() {
                    Some(slot) => slot,
                    None => {
                        let Some(s) = input.get(r.series) else {
                            continue;
                        };
                        let slot = out.slot(s.labels.clone());
                        if let Some(x) = slots.get_mut(r.series) {
                            *x = Some(slot);
                        }
                        slot
                    }
                };
                out.push(slot, ts, r.v)?;
            }
        }
    }
    out.finish(ev.ctx)
}

/// `count_values("label", v)`: how many series have each value, per group.
fn count_values(
    ev: &mut Evaluator<'_, '_>,
    label: &str,
    input: &[Series],
    without: bool,
    grouping: &[String],
) -> Result<Vec<Series>, QueryError> {
    if label.is_empty() {
        return Err(QueryError::exec("invalid label name \"\""));
    }
    let mut grouping: Vec<String> = grouping.to_vec();
    if !without {
        grouping.push(label.to_owned());
    }
    let mut out = Out::new(ev.ctx);
    let mut cursors = Cursors::new(input.len());
    let mut counts: Vec<(usize, f64)> = Vec::new();
    let mut by_slot: HashMap<usize, usize> = HashMap::new();
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        counts.clear();
        by_slot.clear();
        for (si, s) in input.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(v) = cursors.at(si, s, ts) else {
                continue;
            };
            let mut b = s.labels.builder();
            b.set(label, format_go_f(v));
            let slot = out.slot(group_labels(&b.build(), without, &grouping));
            match by_slot.get(&slot) {
                Some(&i) => {
                    if let Some(c) = counts.get_mut(i) {
                        c.1 += 1.0;
                    }
                }
                None => {
                    by_slot.insert(slot, counts.len());
                    counts.push((slot, 1.0));
                }
            }
        }
        for &(slot, c) in &counts {
            out.push(slot, ts, c)?;
        }
    }
    out.finish(ev.ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahan_sum_recovers_lost_low_bits() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e100, 1.0, -1e100] {
            (s, c) = kahan_sum_inc(v, s, c);
        }
        assert_eq!(s + c, 1.0);
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &mut [3.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, &mut [3.0, 1.0]), 3.0);
        assert_eq!(quantile(1.5, &mut [3.0, 1.0]), f64::INFINITY);
        assert_eq!(quantile(-0.5, &mut [3.0, 1.0]), f64::NEG_INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }
}
