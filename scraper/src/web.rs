//! The Prometheus HTTP API v1 (the subset Grafana, the gateway and `promtool` use), federation,
//! and the service endpoints, with Prometheus' JSON shapes and error envelopes.
//!
//! - `GET|POST /api/v1/query`, `/api/v1/query_range`: PromQL through [`crate::promql::Engine`],
//!   on a blocking thread, at most [`MAX_CONCURRENT_QUERIES`] at a time.
//! - `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`: from the [`Querier`].
//! - `/api/v1/targets`, `/api/v1/metadata`, `/api/v1/status/{buildinfo,runtimeinfo,tsdb,config,flags}`,
//!   `/api/v1/format_query`.
//! - `/federate?match[]=…`: the newest sample of every matching series, text format 0.0.4.
//! - `/-/healthy`, `/-/ready`, `POST|PUT /-/reload`, `/metrics`, `/health`.
//!
//! Errors: `{"status":"error","errorType":"bad_data","error":"…"}` with 400 (bad_data),
//! 422 (execution), 503 (timeout, unavailable), 500 (internal), 404 (not_found).
//! Parameters come from the query string and, for POST, a form body (`match[]` repeats).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::model::{Labels, METRIC_NAME, Matcher, is_stale};
use crate::promql::{Engine, QueryError, Value, format_value, parse_selector};
use crate::scrape::Manager;
use crate::scrape::target::format_duration;
use crate::storage::Querier;

/// Queries evaluated at once (Prometheus' `--query.max-concurrency` default); more wait.
pub const MAX_CONCURRENT_QUERIES: usize = 20;
/// Largest form body (a long query, or many `match[]`).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Points per series a range query may return (Prometheus' limit).
pub const MAX_POINTS: i64 = 11_000;
/// Prometheus' smallest and largest timestamps, the defaults of open `start`/`end`.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// What the API needs from the rest of the service besides queries and targets.
pub trait Status: Send + Sync {
    /// `/api/v1/status/tsdb` data.
    fn tsdb(&self) -> Json;
    /// The loaded configuration as YAML (secrets hidden).
    fn config_yaml(&self) -> String;
    /// Command-line flags and their values.
    fn flags(&self) -> BTreeMap<String, String>;
    /// The service's own `/metrics` text.
    fn metrics(&self) -> String;
    /// Metadata of scraped metrics: name → (type, help, unit) entries.
    fn metadata(&self, metric: Option<&str>, limit: usize) -> BTreeMap<String, Vec<Json>>;
    /// Reloads the configuration; the error says why it was kept.
    fn reload(&self) -> Result<(), String>;
    /// Retention for `runtimeinfo` (e.g. "15d").
    fn retention(&self) -> String;
    /// Whether the last (re)load succeeded, and when.
    fn last_reload(&self) -> (bool, SystemTime);
    /// Labels added to federated series that lack them.
    fn external_labels(&self) -> Labels;
}

/// What the handlers share.
pub struct ApiState {
    pub querier: Arc<dyn Querier>,
    pub engine: Arc<Engine>,
    pub manager: Arc<Manager>,
    pub status: Arc<dyn Status>,
    pub lookback: Duration,
    pub started: SystemTime,
    slots: Semaphore,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(
        querier: Arc<dyn Querier>,
        engine: Arc<Engine>,
        manager: Arc<Manager>,
        status: Arc<dyn Status>,
        lookback: Duration,
    ) -> Self {
        Self {
            querier,
            engine,
            manager,
            status,
            lookback,
            started: SystemTime::now(),
            slots: Semaphore::new(MAX_CONCURRENT_QUERIES),
        }
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/federate", get(federate))
        .route(
            "/-/healthy",
            get(|| async { "Heimdall scraper is Healthy.\n" }),
        )
        .route("/-/ready", get(|| async { "Heimdall scraper is Ready.\n" }))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .fallback(|| async { ApiError::new(ErrorType::NotFound, "not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

// --- errors ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Unavailable,
    Internal,
    NotFound,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An API error in Prometheus' envelope.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorType,
    message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let kind = match e.error_type() {
            "bad_data" => ErrorType::BadData,
            "timeout" => ErrorType::Timeout,
            "execution" => ErrorType::Execution,
            _ => ErrorType::Execution,
        };
        Self::new(kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": "error",
            "errorType": self.kind.as_str(),
            "error": self.message,
        });
        (self.kind.status(), axum::Json(body)).into_response()
    }
}

/// `{"status":"success","data":…}` from already-encoded JSON data.
fn success_raw(data: &str) -> Response {
    let mut body = String::with_capacity(data.len() + 32);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    body.push('}');
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn success(data: Json) -> Response {
    success_raw(&data.to_string())
}

// --- parameters --------------------------------------------------------------------------------

/// Form parameters from the query string and (POST) the body, in order.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn read(method: &Method, headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Self {
        let mut p = Vec::new();
        if let Some(q) = query {
            p.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if *method == Method::POST && is_form {
            p.extend(form_urlencoded::parse(body).into_owned());
        }
        Self(p)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter: unix seconds (fractions allowed) or RFC 3339.
    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(s) => parse_time(s)
                .map(Some)
                .map_err(|e| ApiError::bad(format!("invalid parameter {name:?}: {e}"))),
        }
    }

    /// A duration parameter: seconds (fractions allowed) or a Prometheus duration.
    fn duration(&self, name: &str) -> Result<Option<Duration>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(s) => parse_duration_param(s)
                .map(Some)
                .map_err(|e| ApiError::bad(format!("invalid parameter {name:?}: {e}"))),
        }
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(0),
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| ApiError::bad(format!("invalid parameter \"limit\": {s:?}"))),
        }
    }

    /// Every `match[]` selector parsed into matchers.
    fn matchers(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]")
            .into_iter()
            .map(|s| parse_selector(s).map_err(|e| ApiError::bad(e.to_string())))
            .collect()
    }
}

/// Prometheus' `parseTime`: float seconds or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (secs * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    heimdall_common::time::parse_rfc3339_ms(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Prometheus' `parseDuration`: float seconds or a duration like `15s`, `1m`.
pub fn parse_duration_param(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || !(0.0..=9.2e15).contains(&secs) {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        return Ok(Duration::from_secs_f64(secs));
    }
    heimdall_common::parse_duration(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

fn now_ms() -> i64 {
    crate::scrape::scrape_loop::now_ms()
}

// --- JSON encoding of results ------------------------------------------------------------------

/// Appends `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, &l.name);
        out.push(':');
        json_str(out, &l.value);
    }
    out.push('}');
}

/// `[<seconds>,"<value>"]` as Prometheus writes a sample.
fn json_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    let secs = t.div_euclid(1000);
    let ms = t.rem_euclid(1000);
    if ms == 0 {
        let _ = write!(out, "{secs}");
    } else {
        let frac = format!("{ms:03}");
        let _ = write!(out, "{secs}.{}", frac.trim_end_matches('0'));
    }
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// The `data` of a query response.
pub fn encode_value(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            json_point(&mut out, *t, *v);
        }
        Value::String { t, v } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            let mut p = String::new();
            json_point(&mut p, *t, 0.0);
            // A string result is [t, "text"]: reuse the time part.
            let time = p.trim_start_matches('[').split(',').next().unwrap_or("0");
            out.push_str(time);
            out.push(',');
            json_str(&mut out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                json_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    json_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

// --- handlers ----------------------------------------------------------------------------------

type Form = (Method, HeaderMap, RawQuery, Bytes);

fn params((method, headers, RawQuery(q), body): Form) -> Params {
    Params::read(&method, &headers, q, &body)
}

/// The engine, with a shorter timeout when the request asks for one (never a longer one).
fn engine_for(st: &ApiState, timeout: Option<Duration>) -> Arc<Engine> {
    match timeout {
        Some(t) if t < st.engine.options().timeout => {
            let mut o = st.engine.options().clone();
            o.timeout = t;
            Arc::new(Engine::new(o))
        }
        _ => st.engine.clone(),
    }
}

/// Runs `work` on a blocking thread with a query slot.
async fn evaluate<T: Send + 'static>(
    st: &ApiState,
    work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = st
        .slots
        .acquire()
        .await
        .map_err(|_| ApiError::new(ErrorType::Unavailable, "shutting down"))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(ErrorType::Internal, e.to_string()))?
        .map_err(ApiError::from)
}

async fn query(
    State(st): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    let expr = p.get("query").unwrap_or("").to_owned();
    let t = p.time("time")?.unwrap_or_else(now_ms);
    let timeout = p.duration("timeout")?;
    let (engine, querier) = (engine_for(&st, timeout), st.querier.clone());
    let v = evaluate(&st, move || engine.instant(&*querier, &expr, t)).await?;
    Ok(success_raw(&encode_value(&v)))
}

async fn query_range(
    State(st): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    let expr = p.get("query").unwrap_or("").to_owned();
    let start = p
        .time("start")?
        .ok_or_else(|| ApiError::bad("invalid parameter \"start\": missing"))?;
    let end = p
        .time("end")?
        .ok_or_else(|| ApiError::bad("invalid parameter \"end\": missing"))?;
    if end < start {
        return Err(ApiError::bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = p
        .duration("step")?
        .ok_or_else(|| ApiError::bad("invalid parameter \"step\": missing"))?;
    let step_ms = step.as_millis() as i64;
    if step_ms <= 0 {
        return Err(ApiError::bad(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step_ms > MAX_POINTS {
        return Err(ApiError::bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = p.duration("timeout")?;
    let (engine, querier) = (engine_for(&st, timeout), st.querier.clone());
    let v = evaluate(&st, move || {
        engine.range(&*querier, &expr, start, end, step_ms)
    })
    .await?;
    Ok(success_raw(&encode_value(&v)))
}

fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time("start")?.unwrap_or(MIN_TIME_MS);
    let end = p.time("end")?.unwrap_or(MAX_TIME_MS);
    if end < start {
        return Err(ApiError::bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

/// The sorted union of `lookup` over every `match[]` set.
fn union_over<T: Ord>(
    sets: &[Vec<Matcher>],
    lookup: impl Fn(&[Matcher]) -> Result<Vec<T>, crate::storage::StorageError>,
) -> Result<std::collections::BTreeSet<T>, QueryError> {
    let mut all = std::collections::BTreeSet::new();
    for m in sets {
        all.extend(lookup(m).map_err(|e| QueryError::Execution(e.to_string()))?);
    }
    Ok(all)
}

/// No `match[]` means every series: one empty matcher set.
fn or_all(sets: Vec<Vec<Matcher>>) -> Vec<Vec<Matcher>> {
    if sets.is_empty() { vec![vec![]] } else { sets }
}

async fn series(
    State(st): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    let sets = p.matchers()?;
    if sets.is_empty() {
        return Err(ApiError::bad("no match[] parameter provided"));
    }
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let querier = st.querier.clone();
    let found = evaluate(&st, move || {
        union_over(&sets, |m| querier.series(m, start, end))
    })
    .await?;
    let mut out = String::from("[");
    for (i, l) in found.iter().enumerate() {
        if limit > 0 && i >= limit {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        json_labels(&mut out, l);
    }
    out.push(']');
    Ok(success_raw(&out))
}

async fn labels(
    State(st): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    let sets = p.matchers()?;
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let querier = st.querier.clone();
    let names = evaluate(&st, move || {
        union_over(&or_all(sets), |m| querier.label_names(m, start, end))
    })
    .await?;
    let names: Vec<&String> = names
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .collect();
    Ok(success(json!(names)))
}

async fn label_values(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    // Prometheus 3 accepts `U__`-escaped UTF-8 names; plain names are what we store.
    if !crate::model::is_valid_label_name(&name) {
        return Err(ApiError::bad(format!("invalid label name: {name:?}")));
    }
    let sets = p.matchers()?;
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let querier = st.querier.clone();
    let values = evaluate(&st, move || {
        union_over(&or_all(sets), |m| {
            querier.label_values(&name, m, start, end)
        })
    })
    .await?;
    let values: Vec<&String> = values
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .collect();
    Ok(success(json!(values)))
}

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|l| (l.name.to_string(), Json::String(l.value.to_string())))
            .collect(),
    )
}

async fn targets(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, &Bytes::new());
    let state = p.get("state").unwrap_or("any").to_ascii_lowercase();
    let pool_filter = p.get("scrapePool").map(str::to_owned);
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_counts = serde_json::Map::new();
    for pool in st.manager.targets() {
        if pool_filter.as_ref().is_some_and(|f| *f != pool.job) {
            continue;
        }
        dropped_counts.insert(pool.job.clone(), json!(pool.dropped.len()));
        if state == "any" || state == "active" {
            for t in &pool.active {
                let s = t.state();
                active.push(json!({
                    "discoveredLabels": labels_json(&t.discovered),
                    "labels": labels_json(&t.labels),
                    "scrapePool": pool.job,
                    "scrapeUrl": t.url,
                    "globalUrl": t.url,
                    "lastError": s.last_error,
                    "lastScrape": s.last_scrape.map_or_else(
                        || "0001-01-01T00:00:00Z".to_owned(),
                        heimdall_common::time::format_rfc3339,
                    ),
                    "lastScrapeDuration": s.last_duration.as_secs_f64(),
                    "health": s.health.as_str(),
                    "scrapeInterval": format_duration(t.interval),
                    "scrapeTimeout": format_duration(t.timeout),
                }));
            }
        }
        if state == "any" || state == "dropped" {
            for d in &pool.dropped {
                dropped.push(json!({"discoveredLabels": labels_json(d), "scrapePool": pool.job}));
            }
        }
    }
    Ok(success(json!({
        "activeTargets": active,
        "droppedTargets": dropped,
        "droppedTargetCounts": dropped_counts,
    })))
}

async fn metadata(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, &Bytes::new());
    let limit = p.limit()?;
    let m = st.status.metadata(p.get("metric"), limit);
    Ok(success(json!(m)))
}

async fn format_query(
    method: Method,
    headers: HeaderMap,
    q: RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params((method, headers, q, body));
    let expr = p.get("query").unwrap_or("");
    let formatted = crate::promql::parse(expr)
        .map_err(ApiError::from)?
        .prettify();
    Ok(success(json!(formatted)))
}

async fn buildinfo() -> Response {
    // Grafana reads `version` to decide which Prometheus features to use: we speak the 3.x
    // API, so that is what we say; the revision names what actually answers.
    success(json!({
        "version": "3.0.0",
        "revision": concat!("heimdall-scraper ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn runtimeinfo(State(st): State<Arc<ApiState>>) -> Response {
    let (ok, when) = st.status.last_reload();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    success(json!({
        "startTime": heimdall_common::time::format_rfc3339(st.started),
        "CWD": cwd,
        "reloadConfigSuccess": ok,
        "lastConfigTime": heimdall_common::time::format_rfc3339(when),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": threads,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": st.status.retention(),
    }))
}

async fn tsdb_status(State(st): State<Arc<ApiState>>) -> Response {
    success(st.status.tsdb())
}

async fn config(State(st): State<Arc<ApiState>>) -> Response {
    success(json!({"yaml": st.status.config_yaml()}))
}

async fn flags(State(st): State<Arc<ApiState>>) -> Response {
    success(json!(st.status.flags()))
}

async fn reload(State(st): State<Arc<ApiState>>) -> Response {
    let status = st.status.clone();
    match tokio::task::spawn_blocking(move || status.reload()).await {
        Ok(Ok(())) => (StatusCode::OK, "").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        st.status.metrics(),
    )
        .into_response()
}

/// `/federate`: the newest sample (within the lookback) of every series matching any
/// `match[]`, grouped by metric name, in the text format with timestamps.
async fn federate(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, &Bytes::new());
    let sets = p.matchers()?;
    let now = now_ms();
    let mint = now - st.lookback.as_millis() as i64;
    let querier = st.querier.clone();
    let external = st.status.external_labels();
    let body = evaluate(&st, move || {
        let mut latest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for m in &sets {
            let found = querier
                .select(m, mint, now)
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            for s in found {
                if let Some(last) = s.samples.last()
                    && !is_stale(last.v)
                {
                    latest.insert(s.labels, (last.t, last.v));
                }
            }
        }
        Ok(encode_federation(&latest, &external))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

/// The text format of `latest` (sorted by labels, hence grouped by name), external labels
/// added where a series lacks them.
pub fn encode_federation(latest: &BTreeMap<Labels, (i64, f64)>, external: &Labels) -> Vec<u8> {
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    for (labels, (t, v)) in latest {
        let Some(name) = labels.metric_name() else {
            continue;
        };
        if current != Some(name) {
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b" untyped\n");
            current = Some(name);
        }
        out.extend_from_slice(name.as_bytes());
        let mut b = labels.builder();
        for l in external {
            if labels.get(&l.name).is_none() {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        let all = b.build();
        let mut first = true;
        for l in all.iter().filter(|l| &*l.name != METRIC_NAME) {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.extend_from_slice(l.name.as_bytes());
            out.extend_from_slice(b"=\"");
            for c in l.value.bytes() {
                match c {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    c => out.push(c),
                }
            }
            out.push(b'"');
        }
        if !first {
            out.push(b'}');
        }
        out.push(b' ');
        heimdall_common::float::write_go_float(&mut out, *v);
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(*t).as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse_as_prometheus() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time("soon").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_duration_param("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration_param("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration_param("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration_param("-1").is_err());
    }

    #[test]
    fn points_print_seconds_with_milliseconds() {
        let mut s = String::new();
        json_point(&mut s, 1_435_781_451_781, 1.0);
        assert_eq!(s, "[1435781451.781,\"1\"]");
        s.clear();
        json_point(&mut s, 1_000, 0.5);
        assert_eq!(s, "[1,\"0.5\"]");
        s.clear();
        json_point(&mut s, 1_500, f64::NAN);
        assert_eq!(s, "[1.5,\"NaN\"]");
    }

    #[test]
    fn federation_text_groups_by_name_and_adds_external_labels() {
        let mut latest = BTreeMap::new();
        latest.insert(
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            (1000, 1.0),
        );
        latest.insert(
            Labels::from_pairs([("__name__", "up"), ("job", "b"), ("dc", "x")]),
            (1000, 0.0),
        );
        let ext = Labels::from_pairs([("dc", "fra")]);
        let text = String::from_utf8(encode_federation(&latest, &ext)).unwrap();
        assert_eq!(
            text,
            // Sorted by the stored labels ({dc="x",job="b"} sorts before {job="a"}).
            "# TYPE up untyped\nup{dc=\"x\",job=\"b\"} 0 1000\nup{dc=\"fra\",job=\"a\"} 1 1000\n"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
