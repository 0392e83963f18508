//! The registration API over HTTP (axum). Every handler returns `Result<_, ApiError>`;
//! errors are `{"error": "..."}` with a fitting status.
//!
//! - `PUT /v1/services/{service}/instances/{instance}` `{address, port, labels?, ttl_seconds?}`:
//!   register or renew (201 when created, 200 otherwise). Needs the bearer token if one is set.
//! - `DELETE` the same path: deregister (204). Needs the bearer token if one is set.
//! - `GET /v1/services`: every service with its instances, health and leases.
//! - `GET /v1/sd[?service=<name>]`: Prometheus `http_sd_config` JSON of the healthy instances.
//!   Both reads are open unless `--registry.protect-reads` asks for the token there too.
//! - `GET /metrics`: the nameserver's own metrics; `GET /health`.
//!
//! On a secondary, writes answer 421 Misdirected Request naming the primary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::registry::{Health, Registered, Registration, Registry, RegistryError};
use crate::store::{ChangeError, Store};

/// Request bodies above this are answered 413 before they are parsed; a registration is a
/// few hundred bytes even with the maximum number of labels.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// SHA-256 of the write token; `None` leaves writes open.
    token_digest: Option<[u8; 32]>,
    /// Whether reads need the token too.
    protect_reads: bool,
}

impl ApiState {
    pub fn new(store: Arc<Store>, token: Option<&str>, protect_reads: bool) -> Self {
        Self {
            store,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            protect_reads,
        }
    }

    fn authorize_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.protect_reads {
            self.authorize(headers)
        } else {
            Ok(())
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(want) = &self.token_digest else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(given) = given else {
            return Err(ApiError::unauthorized("missing bearer token"));
        };
        // Digests have a fixed length, so the comparison time says nothing about the token.
        let d: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(d.ct_eq(want)) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("invalid bearer token"))
        }
    }
}

/// An error answer: `{"error": message}` with `status`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match e {
            RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
            RegistryError::AddressConflict { .. } => StatusCode::CONFLICT,
            RegistryError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Registry(e) => e.into(),
            ChangeError::Persist(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            ChangeError::Secondary(_) => Self::new(StatusCode::MISDIRECTED_REQUEST, e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // axum says 422 for well-formed JSON of the wrong shape; to a client that is bad
        // input like any other, so it gets the same 400 as a bad name.
        let status = match r {
            JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
            _ => r.status(),
        };
        Self::new(status, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

/// The API routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/v1/services/{service}/instances/{instance}",
            put(register).delete(deregister),
        )
        .route("/v1/services", get(services))
        .route("/v1/sd", get(http_sd))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[derive(Debug, Serialize)]
struct Written {
    service: String,
    instance: String,
    result: &'static str,
    serial: u32,
}

async fn register(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<(StatusCode, Json<Written>), ApiError> {
    st.authorize(&headers)?;
    let Path((service, instance)) = path?;
    let Json(reg) = body?;
    let done = st.store.register(&service, &instance, reg).await?;
    let (status, result) = match done {
        Registered::Created => (StatusCode::CREATED, "created"),
        Registered::Updated => (StatusCode::OK, "updated"),
        Registered::Renewed => (StatusCode::OK, "renewed"),
    };
    let written = Written {
        service: service.to_ascii_lowercase(),
        instance: instance.to_ascii_lowercase(),
        result,
        serial: st.store.serial().await,
    };
    Ok((status, Json(written)))
}

async fn deregister(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    st.authorize(&headers)?;
    let Path((service, instance)) = path?;
    st.store.deregister(&service, &instance).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct InstanceView {
    instance: String,
    address: std::net::IpAddr,
    port: u16,
    labels: BTreeMap<String, String>,
    health: Health,
    health_path: Option<String>,
    registered_at_seconds: u64,
    ttl_seconds: Option<u64>,
    expires_in_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ServicesView {
    serial: u32,
    services: BTreeMap<String, Vec<InstanceView>>,
}

async fn services(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<ServicesView>, ApiError> {
    st.authorize_read(&headers)?;
    let now = Instant::now();
    let serial = st.store.zone().load().serial();
    let services = st
        .store
        .read(|r: &Registry| {
            r.services()
                .iter()
                .map(|(s, instances)| {
                    let list = instances
                        .iter()
                        .map(|(name, i)| InstanceView {
                            instance: name.clone(),
                            address: i.address,
                            port: i.port,
                            labels: i.labels.clone(),
                            health: i.health,
                            health_path: i.health_path.clone(),
                            registered_at_seconds: i
                                .registered_at
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs()),
                            ttl_seconds: i.ttl.map(|t| t.as_secs()),
                            expires_in_seconds: i
                                .expires_at
                                .map(|e| e.saturating_duration_since(now).as_secs()),
                        })
                        .collect();
                    (s.clone(), list)
                })
                .collect()
        })
        .await;
    Ok(Json(ServicesView { serial, services }))
}

#[derive(Debug, Deserialize)]
struct SdQuery {
    service: Option<String>,
}

#[derive(Debug, Serialize)]
struct TargetGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// One target group per healthy instance, so each carries its own labels.
async fn http_sd(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<SdQuery>, QueryRejection>,
) -> Result<Json<Vec<TargetGroup>>, ApiError> {
    st.authorize_read(&headers)?;
    let Query(q) = query?;
    let want = q.service.map(|s| s.to_ascii_lowercase());
    let groups = st
        .store
        .read(|r: &Registry| {
            let mut out = Vec::new();
            for (service, instances) in r.services() {
                if want.as_ref().is_some_and(|w| w != service) {
                    continue;
                }
                for (name, i) in instances.iter().filter(|(_, i)| i.health == Health::Up) {
                    let mut labels = BTreeMap::new();
                    labels.insert("__meta_heimdall_service".to_owned(), service.clone());
                    labels.insert("__meta_heimdall_instance".to_owned(), name.clone());
                    for (k, v) in &i.labels {
                        labels.insert(format!("__meta_heimdall_label_{k}"), v.clone());
                    }
                    out.push(TargetGroup {
                        targets: vec![SocketAddr::new(i.address, i.port).to_string()],
                        labels,
                    });
                }
            }
            out
        })
        .await;
    Ok(Json(groups))
}

async fn health() -> &'static str {
    "OK\n"
}

async fn metrics(State(st): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.store.metrics().encode(),
    )
}
