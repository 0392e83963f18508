//! Binary operators: arithmetic, comparisons (filtering, or 0/1 with `bool`) and the set
//! operators `and`/`or`/`unless`, between scalars and instant vectors, with Prometheus' vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`).
//!
//! Join signatures and result label sets are computed once per series (or pair of series),
//! never per step; each step only looks up small index tables.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::eval::{Cursors, Evaluator, Out, drop_metric_name, merge_same_labelset, points};
use super::value::Evaluated;
use crate::model::{Label, Labels, METRIC_NAME};
use crate::storage::Series;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl Op {
    fn from_token(token: &str) -> Result<Self, QueryError> {
        Ok(match token {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eql,
            "!=" => Op::Neq,
            ">" => Op::Gtr,
            "<" => Op::Lss,
            ">=" => Op::Gte,
            "<=" => Op::Lte,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(QueryError::unsupported(format!("binary operator {other}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            Op::Eql | Op::Neq | Op::Gtr | Op::Lss | Op::Gte | Op::Lte
        )
    }

    /// Arithmetic changes what the value means, so the result loses its metric name.
    fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Mod | Op::Atan2
        )
    }

    /// The value and whether a comparison holds (arithmetic always "holds"). Comparisons
    /// return the left value, as Prometheus' `vectorElemBinop`.
    pub(crate) fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            // Go's math.Mod and Rust's `%` are both C's fmod (sign of the dividend).
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eql => (l, l == r),
            Op::Neq => (l, l != r),
            Op::Gtr => (l, l > r),
            Op::Lss => (l, l < r),
            Op::Gte => (l, l >= r),
            Op::Lte => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, false),
        }
    }
}

/// How the two sides of a vector-vector operation are joined.
struct Matching<'a> {
    card: &'a VectorMatchCardinality,
    /// `on(…)` (true) or `ignoring(…)` (false; also the default, ignoring nothing).
    on: bool,
    labels: &'a [String],
    /// `group_left(…)` / `group_right(…)` labels copied from the "one" side.
    include: &'a [String],
}

impl<'a> Matching<'a> {
    fn new(m: Option<&'a BinModifier>) -> Result<Self, QueryError> {
        static ONE_TO_ONE: VectorMatchCardinality = VectorMatchCardinality::OneToOne;
        let Some(m) = m else {
            return Ok(Self {
                card: &ONE_TO_ONE,
                on: false,
                labels: &[],
                include: &[],
            });
        };
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(QueryError::unsupported(
                "fill modifiers of binary operators",
            ));
        }
        let (on, labels) = match &m.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.as_slice()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.as_slice()),
            None => (false, &[][..]),
        };
        let include = m.card.labels().map(|l| l.labels.as_slice()).unwrap_or(&[]);
        Ok(Self {
            card: &m.card,
            on,
            labels,
            include,
        })
    }

    /// The join signature: the `on` labels, or all labels but `__name__` and the ignored ones.
    fn signature(&self, labels: &Labels) -> Vec<Label> {
        labels
            .iter()
            .filter(|l| {
                if self.on {
                    self.labels.iter().any(|n| *n == *l.name)
                } else {
                    &*l.name != METRIC_NAME && !self.labels.iter().any(|n| *n == *l.name)
                }
            })
            .cloned()
            .collect()
    }

    /// The labels a series is matched on, for error messages.
    fn match_labels(&self, labels: &Labels) -> Labels {
        Labels::from_sorted(self.signature(labels))
    }
}

/// Evaluates a binary expression.
pub(crate) fn eval(ev: &mut Evaluator<'_, '_>, e: &BinaryExpr) -> Result<Evaluated, QueryError> {
    let op = Op::from_token(&e.op.to_string())?;
    let return_bool = e.return_bool();
    let lhs = ev.eval(&e.lhs)?;
    let rhs = ev.eval(&e.rhs)?;
    match (lhs, rhs) {
        (Evaluated::Scalar(mut l), Evaluated::Scalar(r)) => {
            for (a, b) in l.iter_mut().zip(r) {
                let (v, keep) = op.apply(*a, b);
                *a = if op.is_comparison() {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                };
            }
            ev.ctx.release(l.len());
            Ok(Evaluated::Scalar(l))
        }
        (Evaluated::Vector(v), Evaluated::Scalar(s)) => {
            vector_scalar(ev, op, v, &s, false, return_bool).map(Evaluated::Vector)
        }
        (Evaluated::Scalar(s), Evaluated::Vector(v)) => {
            vector_scalar(ev, op, v, &s, true, return_bool).map(Evaluated::Vector)
        }
        (Evaluated::Vector(l), Evaluated::Vector(r)) => {
            let matching = Matching::new(e.modifier.as_ref())?;
            let out = match op {
                Op::And | Op::Or | Op::Unless => set_operation(ev, op, &l, &r, &matching)?,
                _ => vector_vector(ev, op, &l, &r, &matching, return_bool)?,
            };
            ev.ctx.release(points(&l) + points(&r));
            Ok(Evaluated::Vector(out))
        }
        (l, r) => Err(QueryError::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

/// Vector op scalar (or scalar op vector when `swap`), series by series in place.
fn vector_scalar(
    ev: &mut Evaluator<'_, '_>,
    op: Op,
    mut m: Vec<Series>,
    scalar: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Series>, QueryError> {
    if matches!(op, Op::And | Op::Or | Op::Unless) {
        return Err(QueryError::BadData(
            "set operator not allowed in binary scalar expression".to_owned(),
        ));
    }
    let steps = ev.steps;
    let drop_name = op.changes_metric_schema() || return_bool;
    let before = points(&m);
    for s in &mut m {
        ev.ctx.tick()?;
        if drop_name {
            s.labels = drop_metric_name(&s.labels);
        }
        s.samples.retain_mut(|p| {
            let sc = scalar.get(steps.index(p.t)).copied().unwrap_or(f64::NAN);
            let (l, r) = if swap { (sc, p.v) } else { (p.v, sc) };
            let (mut v, keep) = op.apply(l, r);
            if op.is_comparison() {
                // A comparison keeps the vector's value, whichever side it is on.
                v = p.v;
            }
            if return_bool {
                p.v = if keep { 1.0 } else { 0.0 };
                return true;
            }
            p.v = v;
            keep
        });
    }
    m.retain(|s| !s.samples.is_empty());
    ev.ctx.release(before - points(&m) + scalar.len());
    merge_same_labelset(m)
}

/// Interns join signatures into small integers shared by both sides.
fn signatures(
    matching: &Matching<'_>,
    l: &[Series],
    r: &[Series],
) -> (Vec<usize>, Vec<usize>, usize) {
    let mut index: HashMap<Vec<Label>, usize> = HashMap::new();
    let mut sig = |s: &Series| {
        let n = index.len();
        *index.entry(matching.signature(&s.labels)).or_insert(n)
    };
    let ls = l.iter().map(&mut sig).collect();
    let rs = r.iter().map(&mut sig).collect();
    (ls, rs, index.len())
}

/// Arithmetic and comparisons between two vectors: one-to-one, many-to-one (`group_left`) or
/// one-to-many (`group_right`).
fn vector_vector(
    ev: &mut Evaluator<'_, '_>,
    op: Op,
    lhs: &[Series],
    rhs: &[Series],
    matching: &Matching<'_>,
    return_bool: bool,
) -> Result<Vec<Series>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let (lsig, rsig, nsig) = signatures(matching, lhs, rhs);
    let one_to_many = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    let one_to_one = matches!(matching.card, VectorMatchCardinality::OneToOne);
    // The "many" side drives the loop; the "one" side is looked up by signature.
    let (many, many_sig, one, one_sig) = if one_to_many {
        (rhs, &rsig, lhs, &lsig)
    } else {
        (lhs, &lsig, rhs, &rsig)
    };
    let mut one_by_sig: Vec<Option<(usize, f64)>> = vec![None; nsig];
    let mut matched_one: Vec<bool> = vec![false; nsig];
    let mut matched_many: HashSet<(usize, usize)> = HashSet::new();
    let mut touched: Vec<usize> = Vec::new();
    let mut result_slot: HashMap<(usize, usize), usize> = HashMap::new();
    let mut out = Out::new(ev.ctx);
    let (mut many_cur, mut one_cur) = (Cursors::new(many.len()), Cursors::new(one.len()));
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        for sig in touched.drain(..) {
            one_by_sig[sig] = None;
            matched_one[sig] = false;
        }
        matched_many.clear();
        for (j, s) in one.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(v) = one_cur.at(j, s, ts) else {
                continue;
            };
            let sig = one_sig[j];
            if let Some((dup, _)) = one_by_sig[sig] {
                let side = if one_to_many { "left" } else { "right" };
                let (a, b) = if s.labels <= one[dup].labels {
                    (&s.labels, &one[dup].labels)
                } else {
                    (&one[dup].labels, &s.labels)
                };
                return Err(QueryError::exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    go_labels(&matching.match_labels(&s.labels)),
                    go_labels(a),
                    go_labels(b)
                )));
            }
            one_by_sig[sig] = Some((j, v));
            touched.push(sig);
        }
        for (i, s) in many.iter().enumerate() {
            ev.ctx.tick()?;
            let Some(vm) = many_cur.at(i, s, ts) else {
                continue;
            };
            let sig = many_sig[i];
            let Some((j, vo)) = one_by_sig[sig] else {
                continue;
            };
            let (l, r) = if one_to_many { (vo, vm) } else { (vm, vo) };
            let (mut v, keep) = op.apply(l, r);
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            }
            let slot = match result_slot.get(&(i, j)) {
                Some(slot) => *slot,
                None => {
                    let labels =
                        result_labels(op, &s.labels, &one[j].labels, matching, return_bool);
                    let slot = out.slot(labels);
                    result_slot.insert((i, j), slot);
                    slot
                }
            };
            if one_to_one {
                if matched_one[sig] {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched_one[sig] = true;
            } else if !matched_many.insert((sig, slot)) {
                return Err(QueryError::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            if !keep && !return_bool {
                continue;
            }
            out.push(slot, ts, v)?;
        }
    }
    out.finish(ev.ctx)
}

/// Labels as Go's `labels.Labels.String()` prints them: `{__name__="up", job="node"}`.
fn go_labels(labels: &Labels) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&l.name);
        s.push('=');
        s.push_str(&format!("{:?}", &*l.value));
    }
    s.push('}');
    s
}

/// The labels of a vector-vector result, as Prometheus' `resultMetric`.
fn result_labels(
    op: Op,
    many: &Labels,
    one: &Labels,
    matching: &Matching<'_>,
    return_bool: bool,
) -> Labels {
    let base = if op.changes_metric_schema() || return_bool {
        drop_metric_name(many)
    } else {
        many.clone()
    };
    let one_to_one = matches!(matching.card, VectorMatchCardinality::OneToOne);
    if !one_to_one && matching.include.is_empty() {
        return base;
    }
    let mut b = base.builder();
    if one_to_one {
        if matching.on {
            b.retain(|l| matching.labels.iter().any(|n| *n == *l.name));
        } else {
            for n in matching.labels {
                b.del(n);
            }
        }
    }
    for n in matching.include {
        match one.get(n) {
            Some(v) => b.set(n.as_str(), v),
            None => b.del(n),
        };
    }
    b.build()
}

/// `and`, `or`, `unless`: series pass through unchanged, selected by signature presence.
fn set_operation(
    ev: &mut Evaluator<'_, '_>,
    op: Op,
    lhs: &[Series],
    rhs: &[Series],
    matching: &Matching<'_>,
) -> Result<Vec<Series>, QueryError> {
    let (lsig, rsig, nsig) = signatures(matching, lhs, rhs);
    let mut present = vec![false; nsig];
    let mut touched = Vec::new();
    let mut out = Out::new(ev.ctx);
    let mut lslot: Vec<Option<usize>> = vec![None; lhs.len()];
    let mut rslot: Vec<Option<usize>> = vec![None; rhs.len()];
    let (mut lcur, mut rcur) = (Cursors::new(lhs.len()), Cursors::new(rhs.len()));
    let mut lvals: Vec<(usize, f64)> = Vec::with_capacity(lhs.len());
    let mut rvals: Vec<(usize, f64)> = Vec::with_capacity(rhs.len());
    for step in 0..ev.steps.len() {
        let ts = ev.steps.ts(step);
        lvals.clear();
        rvals.clear();
        for (i, s) in lhs.iter().enumerate() {
            if let Some(v) = lcur.at(i, s, ts) {
                lvals.push((i, v));
            }
        }
        for (j, s) in rhs.iter().enumerate() {
            if let Some(v) = rcur.at(j, s, ts) {
                rvals.push((j, v));
            }
        }
        ev.ctx.tick()?;
        for sig in touched.drain(..) {
            present[sig] = false;
        }
        let emit =
            |out: &mut Out, slots: &mut Vec<Option<usize>>, side: &[Series], i: usize, v: f64| {
                let slot = match slots[i] {
                    Some(s) => s,
                    None => {
                        let s = out.slot(side[i].labels.clone());
                        slots[i] = Some(s);
                        s
                    }
                };
                out.push(slot, ts, v)
            };
        match op {
            Op::And | Op::Unless => {
                for &(j, _) in &rvals {
                    present[rsig[j]] = true;
                    touched.push(rsig[j]);
                }
                let want = op == Op::And;
                for &(i, v) in &lvals {
                    if present[lsig[i]] == want {
                        emit(&mut out, &mut lslot, lhs, i, v)?;
                    }
                }
            }
            _ => {
                for &(i, v) in &lvals {
                    present[lsig[i]] = true;
                    touched.push(lsig[i]);
                    emit(&mut out, &mut lslot, lhs, i, v)?;
                }
                for &(j, v) in &rvals {
                    if !present[rsig[j]] {
                        emit(&mut out, &mut rslot, rhs, j, v)?;
                    }
                }
            }
        }
    }
    out.finish(ev.ctx)
}
