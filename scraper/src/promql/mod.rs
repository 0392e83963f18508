//! The PromQL engine: parses a query with `promql-parser` and evaluates it over a
//! [`Querier`], with Prometheus 3.x semantics.
//!
//! Evaluation follows Prometheus' engine: every selector fetches its series once for the whole
//! query range, and every node of the expression is then evaluated at every step (an instant
//! query is a range query with one step), so instant and range queries share one code path and
//! give the same value at the same time.
//!
//! # Layout
//! - [`Engine`] (this file): the API the HTTP layer calls, options, errors, [`parse`] and
//!   [`parse_selector`].
//! - `eval`: the evaluator (selectors with lookback, offset and `@`, subqueries, the per-step
//!   output accumulator, limits and the deadline).
//! - `functions`: the function table (`rate`, `*_over_time`, `histogram_quantile`, …).
//! - `aggregations`: `sum`, `avg`, `topk`, … with `by` / `without`.
//! - `binary`: arithmetic, comparisons and set operators, with vector matching.
//! - `value`: result types and Prometheus' float formatting.
//! - [`memstore`]: a small in-memory [`Querier`] for tests and benchmarks.
//!
//! # Adding a function
//! Write it in `functions.rs` and add one line to `FUNCTIONS` with its kind (range-vector
//! window function, per-sample map, or special). Anything the table lacks fails with
//! [`QueryError::Unsupported`], never a wrong answer.

mod aggregations;
mod binary;
mod eval;
mod functions;
pub mod memstore;
mod value;

use std::time::{Duration, Instant};

use promql_parser::parser::Expr;

use crate::model::Matcher;
use crate::storage::Querier;

pub use value::{Value, VectorSample, format_value};

/// Prometheus' cap on points per series in a range query (`/api/v1/query_range`).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The step of a subquery written without one (`x[1h:]`): Prometheus uses the global
/// evaluation interval, 1m by default.
pub const DEFAULT_SUBQUERY_STEP: Duration = Duration::from_secs(60);

/// Engine settings, as Prometheus' `--query.*` flags.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_delta: Duration,
    /// Most samples a query may hold in memory at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Longest a query may run (`--query.timeout`).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    /// Prometheus' defaults: 5m lookback, 50M samples, 2m timeout.
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a query failed. [`QueryError::error_type`] gives Prometheus' `errorType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query or its parameters are invalid (parse errors, bad step, …).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (many-to-many matching, duplicate label sets, storage errors, …).
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    TooManySamples(String),
    /// Valid PromQL this engine does not implement yet.
    #[error("{0}")]
    Unsupported(String),
}

impl QueryError {
    /// Prometheus' `errorType` for the HTTP API.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Unsupported(_) => "execution",
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }

    pub(crate) fn unsupported(what: impl std::fmt::Display) -> Self {
        QueryError::Unsupported(format!("unsupported in this PromQL engine: {what}"))
    }
}

/// Most bytes a query may have outside string literals. The parser builds, and drops, the
/// syntax tree recursively: `a+a+…` with ~16k terms overflows a 2 MiB thread stack, so longer
/// queries are refused (long regexes inside quotes do not count).
pub const MAX_QUERY_STRUCTURE_BYTES: usize = 16 * 1024;

/// Deepest syntax tree the evaluator accepts (it recurses once per level); real queries stay
/// far below.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Parses a PromQL expression; errors are [`QueryError::BadData`] with the parser's message.
/// Queries beyond [`MAX_QUERY_STRUCTURE_BYTES`] or [`MAX_EXPR_DEPTH`] are refused.
pub fn parse(expr: &str) -> Result<Expr, QueryError> {
    let structure = structural_len(expr);
    if structure > MAX_QUERY_STRUCTURE_BYTES {
        return Err(QueryError::BadData(format!(
            "query too long: {structure} bytes outside string literals, at most {MAX_QUERY_STRUCTURE_BYTES}"
        )));
    }
    let parsed = promql_parser::parser::parse(expr).map_err(QueryError::BadData)?;
    if eval::deeper_than(&parsed, MAX_EXPR_DEPTH) {
        return Err(QueryError::BadData(format!(
            "query nesting exceeds {MAX_EXPR_DEPTH} levels"
        )));
    }
    Ok(parsed)
}

/// Length of `s` without the contents of its string literals (`"…"`, `'…'`, `` `…` ``).
fn structural_len(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        n += c.len_utf8();
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for d in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' && c != '`' {
                    escaped = true;
                } else if d == c {
                    n += 1;
                    break;
                }
            }
        }
    }
    n
}

/// Parses a series selector (`up{job="node"}`, as in `match[]` of `/api/v1/series`) into
/// label matchers, the metric name becoming a `__name__` matcher.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    match parse(s)? {
        Expr::VectorSelector(vs) => eval::selector_matchers(&vs),
        other => Err(QueryError::BadData(format!(
            "invalid series selector {s:?}: expected a vector selector, got {}",
            eval::expr_kind(&other)
        ))),
    }
}

/// The matchers of every selector in `expr`, in the order they appear (for `/api/v1/series`
/// style lookups and for tools that need to know what a query reads).
pub fn selectors(expr: &Expr) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut out = Vec::new();
    eval::collect_selectors(expr, &mut out)?;
    Ok(out)
}

/// Names of the functions the engine evaluates; any other function is
/// [`QueryError::Unsupported`].
pub fn supported_functions() -> impl Iterator<Item = &'static str> {
    functions::names()
}

/// Evaluates PromQL queries. Cheap to share: it holds only settings.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
    subquery_step: Duration,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self {
            opts,
            subquery_step: DEFAULT_SUBQUERY_STEP,
        }
    }

    /// Sets the step of subqueries that name none (Prometheus: the global evaluation interval).
    pub fn with_subquery_step(mut self, step: Duration) -> Self {
        self.subquery_step = step;
        self
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `t_ms` (`/api/v1/query`).
    pub fn instant(&self, q: &dyn Querier, expr: &str, t_ms: i64) -> Result<Value, QueryError> {
        let parsed = parse(expr)?;
        self.instant_expr(q, &parsed, t_ms)
    }

    /// Evaluates an already parsed expression at `t_ms`.
    pub fn instant_expr(
        &self,
        q: &dyn Querier,
        expr: &Expr,
        t_ms: i64,
    ) -> Result<Value, QueryError> {
        let mut ctx = self.context(q, t_ms, t_ms, 0);
        eval::run_instant(&mut ctx, expr, t_ms)
    }

    /// Evaluates `expr` at `start_ms`, `start_ms + step_ms`, … up to `end_ms`
    /// (`/api/v1/query_range`). The result is a matrix sorted by labels.
    pub fn range(
        &self,
        q: &dyn Querier,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        check_range(start_ms, end_ms, step_ms)?;
        let parsed = parse(expr)?;
        self.range_expr(q, &parsed, start_ms, end_ms, step_ms)
    }

    /// Range evaluation of an already parsed expression (arguments as [`Self::range`]).
    pub fn range_expr(
        &self,
        q: &dyn Querier,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        check_range(start_ms, end_ms, step_ms)?;
        let mut ctx = self.context(q, start_ms, end_ms, step_ms);
        eval::run_range(&mut ctx, expr, start_ms, end_ms, step_ms)
    }

    fn context<'q>(
        &self,
        q: &'q dyn Querier,
        start: i64,
        end: i64,
        step: i64,
    ) -> eval::Context<'q> {
        eval::Context::new(
            q,
            &self.opts,
            Instant::now() + self.opts.timeout,
            duration_ms(self.subquery_step).max(1),
            start,
            end,
            step,
        )
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(EngineOptions::default())
    }
}

/// The checks Prometheus' API applies to a range query's parameters, with its messages.
fn check_range(start_ms: i64, end_ms: i64, step_ms: i64) -> Result<(), QueryError> {
    if end_ms < start_ms {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".to_owned(),
        ));
    }
    if step_ms <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .to_owned(),
        ));
    }
    if end_ms.saturating_sub(start_ms) / step_ms > MAX_POINTS_PER_SERIES {
        return Err(QueryError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A duration in milliseconds, saturating (durations come from parsed queries and options).
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
