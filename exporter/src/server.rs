//! HTTP: `/metrics` (or `--web.telemetry-path`), `/health`, and a landing page at `/`.
//!
//! `/metrics` negotiates 0.0.4 text or OpenMetrics from `Accept`, gzips when
//! `Accept-Encoding` allows, honours node_exporter's `collect[]` / `exclude[]` parameters and
//! admits at most `--web.max-requests` scrapes at once (the rest get 503 immediately).
//! Authentication, when configured, guards every route but `/health`, which is a liveness
//! probe for the nameserver's health checks and tells nothing but versions and collector names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::exposition::Format;
use crate::scrape::Scraper;
use crate::web::{AuthOutcome, FailureLimiter, WebSettings};

/// A request's URI beyond this length is refused (414) before any work; bodies are not read.
const MAX_QUERY_BYTES: usize = 4096;
/// How long in-flight requests may finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared state of the HTTP handlers.
#[derive(Debug)]
pub struct AppState {
    pub scraper: Scraper,
    pub web: WebSettings,
    pub telemetry_path: String,
    scrapes: Option<Semaphore>,
    limiter: FailureLimiter,
    started: Instant,
    /// Size of the last response, so the next buffer is allocated once at the right size.
    last_body_len: AtomicUsize,
}

impl AppState {
    pub fn new(
        scraper: Scraper,
        web: WebSettings,
        telemetry_path: String,
        max_requests: usize,
    ) -> Self {
        Self {
            scraper,
            web,
            telemetry_path,
            scrapes: (max_requests > 0).then(|| Semaphore::new(max_requests)),
            limiter: FailureLimiter::default(),
            started: Instant::now(),
            last_body_len: AtomicUsize::new(64 * 1024),
        }
    }
}

/// The router, without TLS or listener concerns (tests call it directly).
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = Router::new()
        .route(&state.telemetry_path, get(metrics))
        // Fastest level: metrics text compresses ~6x even so, for a third of the CPU of the default.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        );
    Router::new()
        .route("/", get(landing))
        .merge(metrics)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/health", get(health))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            common_headers,
        ))
        .with_state(state)
}

async fn common_headers(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return (StatusCode::URI_TOO_LONG, "query string too long\n").into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (k, v) in &state.web.headers {
        h.insert(k.clone(), v.clone());
    }
    resp
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let auth = &state.web.auth;
    if !auth.enabled() {
        return next.run(req).await;
    }
    let ip = peer.ip();
    if let Some(wait) = state.limiter.blocked_for(ip) {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentication attempts; retry later\n",
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(header_value).await {
        AuthOutcome::Allowed => {
            state.limiter.record_success(ip);
            next.run(req).await
        }
        outcome => {
            if outcome == AuthOutcome::Denied {
                state.limiter.record_failure(ip);
                tracing::info!(client = %ip, "authentication failed");
            }
            let body = if outcome == AuthOutcome::Missing {
                "authentication required: send basic auth or an Authorization: Bearer key\n"
            } else {
                "invalid credentials\n"
            };
            let mut r = (StatusCode::UNAUTHORIZED, body).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"heimdall-exporter\", charset=\"UTF-8\""),
            );
            r
        }
    }
}

/// node_exporter's `collect[]` and `exclude[]` query parameters.
fn filters(query: Option<&str>) -> (Vec<String>, Vec<String>) {
    let (mut collect, mut exclude) = (Vec::new(), Vec::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "collect[]" => collect.push(v.into_owned()),
            "exclude[]" => exclude.push(v.into_owned()),
            _ => {}
        }
    }
    (collect, exclude)
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap, req: Request) -> Response {
    let (collect, exclude) = filters(req.uri().query());
    let selected = match state.scraper.select(&collect, &exclude) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let _permit = match &state.scrapes {
        Some(sem) => match sem.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many concurrent scrapes (--web.max-requests); retry later\n",
                )
                    .into_response();
            }
        },
        None => None,
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let hint = state.last_body_len.load(Ordering::Relaxed);
    let mut body = Vec::with_capacity(hint + hint / 8);
    state.scraper.scrape(&selected, format, &mut body).await;
    state.last_body_len.store(body.len(), Ordering::Relaxed);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[derive(Debug, serde::Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    collectors: serde_json::Map<String, serde_json::Value>,
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    let mut collectors = serde_json::Map::new();
    for (name, status) in state.scraper.statuses() {
        collectors.insert(
            name.to_owned(),
            serde_json::to_value(status).unwrap_or(serde_json::Value::Null),
        );
    }
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        collectors,
    })
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    let names: Vec<&str> = state.scraper.names().collect();
    let path = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Heimdall exporter</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}}\
         code{{background:#eef1f4;padding:0 .2rem}}</style></head><body>\
         <h1>Heimdall exporter</h1><p>Version {version}. node_exporter-compatible host metrics.</p>\
         <ul><li><a href=\"{path}\">Metrics</a> (<code>{path}</code>)</li>\
         <li><a href=\"/health\">Health</a> (JSON)</li></ul>\
         <p>Enabled collectors: {collectors}.</p></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        collectors = names.join(", "),
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Serves `router` on `listener` (plain or TLS) until `shutdown`, then lets in-flight requests
/// finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = state.web.tls.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let watcher = {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        })
    };
    let result = match tls {
        #[cfg(feature = "tls")]
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("TLS from {} and {}: {e}", cert.display(), key.display()),
                    )
                })?;
            axum_server::tls_rustls::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app)
                .await
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(std::io::Error::other(
            "this build has no TLS support (cargo feature \"tls\")",
        )),
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app)
                .await
        }
    };
    watcher.abort();
    result
}
