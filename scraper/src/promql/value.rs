//! Query results as the HTTP API hands them out, the evaluator's intermediate values, and the
//! float formatting Prometheus uses in JSON.
//!
//! The evaluator works on whole ranges at once: every node of the expression yields its value at
//! every step of the query ([`Evaluated`]), the way Prometheus' engine does, so an instant query
//! is just a range query with one step and both share one code path.

use crate::model::Labels;
use crate::storage::Series;

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (`1 + 1`, `scalar(x)`, `time()`).
    Scalar { t: i64, v: f64 },
    /// A string literal (`"a"`); only instant queries return one.
    String { t: i64, v: String },
    /// An instant vector: one sample per series, all at the evaluation time.
    Vector(Vec<VectorSample>),
    /// A range vector: raw samples of each series (instant query over `x[5m]`) or the
    /// evaluated points at each step (range query), sorted by labels.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus' `resultType` for this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// What a node of the expression evaluated to, over every step of the evaluation.
#[derive(Debug)]
pub(crate) enum Evaluated {
    /// One value per step (a scalar has a value at every step).
    Scalar(Vec<f64>),
    /// An instant vector over the steps: each series has points only at step timestamps,
    /// oldest first, and only at the steps where it has a value.
    Vector(Vec<Series>),
    /// A range vector (a matrix selector or subquery evaluated on its own): raw samples.
    /// Only an instant query's top level, or a function argument, produces one.
    Range(Vec<Series>),
    String(String),
}

impl Evaluated {
    /// The type as Prometheus names it in error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Evaluated::Scalar(_) => "scalar",
            Evaluated::Vector(_) => "instant vector",
            Evaluated::Range(_) => "range vector",
            Evaluated::String(_) => "string",
        }
    }
}

/// Formats a sample value the way Prometheus' JSON API does: `NaN`, `+Inf`, `-Inf`, otherwise
/// the shortest representation that reads back to the same float, in exponent form only below
/// 1e-6 or from 1e21 on (Go's `strconv` `'e'` style: `1e-07`, `1e+21`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent(&format!("{v:e}"))
    } else {
        format!("{v}")
    }
}

/// Formats like Go's `strconv.FormatFloat(v, 'f', -1, 64)` (used for `count_values` labels and
/// the `quantile` label): shortest round-trip digits, never an exponent.
pub(crate) fn format_go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Rust writes `1e-7` / `1.5e21`; Go writes `1e-07` / `1.5e+21` (sign always, two digits at least).
fn go_exponent(rust: &str) -> String {
    let Some((mantissa, exp)) = rust.split_once('e') else {
        return rust.to_owned();
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    let pad = if digits.len() < 2 { "0" } else { "" };
    format!("{mantissa}e{sign}{pad}{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_prometheus_json() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(1e-7), "1e-07");
        assert_eq!(format_value(1.5e21), "1.5e+21");
        assert_eq!(format_value(1e100), "1e+100");
        assert_eq!(format_value(123456789.0), "123456789");
        assert_eq!(format_go_f(1e21), "1000000000000000000000");
        assert_eq!(format_go_f(f64::INFINITY), "+Inf");
    }
}
