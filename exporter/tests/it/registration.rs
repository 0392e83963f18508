//! Self-registration against a fake nameserver registry (axum on 127.0.0.1) that records every
//! request: register, renew, retry while the registry is away, refusals, deregistration.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::put;
use tokio_util::sync::CancellationToken;

use crate::harness::{self, Running, client};

/// Every wait polls against this deadline; a healthy run needs a second or two.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
struct Registry {
    requests: Mutex<Vec<Request>>,
    /// When set, writes must carry `Bearer <token>`, as the real nameserver checks.
    token: Option<String>,
}

impl Registry {
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, method: &Method) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method)
            .count()
    }
}

struct FakeRegistry {
    state: Arc<Registry>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl FakeRegistry {
    async fn start(token: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, token)
    }

    /// Serves on a given listener (the retry test picks the port before the registry exists).
    fn serve(listener: tokio::net::TcpListener, token: Option<&str>) -> Self {
        let state = Arc::new(Registry {
            requests: Mutex::default(),
            token: token.map(str::to_owned),
        });
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/v1/services/{service}/instances/{instance}",
                put(answer).delete(answer),
            )
            .with_state(state.clone());
        let shutdown = CancellationToken::new();
        let server =
            axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::spawn(async move { server.await });
        Self {
            state,
            addr,
            shutdown,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Records the request and answers as the nameserver does: 201 on the first PUT of an
/// instance, 200 on renewals, 204 on DELETE, 401 with a JSON error on a wrong token.
async fn answer(
    State(st): State<Arc<Registry>>,
    Path((service, instance)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let previous_puts = st.count(&Method::PUT);
    st.requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: format!("/v1/services/{service}/instances/{instance}"),
        authorization: authorization.clone(),
        body: serde_json::from_str(&body).ok(),
    });
    if let Some(token) = &st.token
        && authorization.as_deref() != Some(&format!("Bearer {token}"))
    {
        let error = serde_json::json!({"error": "invalid bearer token"});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    match method {
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ if previous_puts == 0 => StatusCode::CREATED.into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

/// Polls `cond` until it holds or [`DEADLINE`] passes.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled series on the exporter's `/metrics`.
async fn metric(s: &Running, name: &str) -> f64 {
    let body = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

fn token_file(dir: &tempfile::TempDir, token: &str) -> String {
    let path = dir.path().join("registry.token");
    std::fs::write(&path, format!("# the registry's write token\n\n{token}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn registers_renews_and_deregisters() {
    let registry = FakeRegistry::start(Some("s3cret")).await;
    let dir = tempfile::tempdir().unwrap();
    let s = harness::start_args(&[
        &format!("--registry.url={}/", registry.url()),
        &format!("--registry.token-file={}", token_file(&dir, "s3cret")),
        "--registry.service=node",
        "--registry.instance=Web-1",
        "--registry.ttl=2s",
        "--registry.label=dc=fra,rack=r1",
    ])
    .await;

    eventually("the exporter renewed twice", async || {
        registry.state.count(&Method::PUT) >= 3
    })
    .await;
    assert_eq!(metric(&s, "heimdall_exporter_registered").await, 1.0);
    assert_eq!(
        metric(&s, "heimdall_exporter_registration_failures_total").await,
        0.0
    );
    let first = registry.state.requests()[0].clone();
    assert_eq!(first.method, Method::PUT);
    assert_eq!(first.path, "/v1/services/node/instances/web-1");
    assert_eq!(first.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(
        first.body.unwrap(),
        serde_json::json!({
            "address": "127.0.0.1",
            "port": s.addr.port(),
            "labels": {"dc": "fra", "rack": "r1"},
            "ttl_seconds": 2,
        })
    );

    // `run` returns only after the deregistration, so it has happened once `stop` is back.
    s.stop().await;
    let requests = registry.state.requests();
    let last = requests.last().unwrap();
    assert_eq!(last.method, Method::DELETE, "{requests:#?}");
    assert_eq!(last.path, "/v1/services/node/instances/web-1");
    assert_eq!(last.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(registry.state.count(&Method::DELETE), 1);
}

#[tokio::test]
async fn retries_until_the_registry_comes_up() {
    // A port with nobody on it: reserve one, then free it for the registry that comes later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = harness::start_args(&[
        &format!("--registry.url=http://127.0.0.1:{port}"),
        "--registry.instance=late-registry",
        "--registry.ttl=3s",
    ])
    .await;
    eventually("a failed attempt is counted", async || {
        metric(&s, "heimdall_exporter_registration_failures_total").await >= 1.0
    })
    .await;
    assert_eq!(metric(&s, "heimdall_exporter_registered").await, 0.0);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the freed port is still free");
    let registry = FakeRegistry::serve(listener, None);
    eventually("the exporter registered", async || {
        metric(&s, "heimdall_exporter_registered").await == 1.0
    })
    .await;
    let first = registry.state.requests()[0].clone();
    assert_eq!(first.method, Method::PUT);
    assert!(first.authorization.is_none());
    let body = first.body.unwrap();
    assert_eq!(body["address"], "127.0.0.1");
    assert_eq!(body["ttl_seconds"], 3);
    assert!(body.get("labels").is_none(), "{body}");
    assert_eq!(first.path, "/v1/services/exporter/instances/late-registry");

    s.stop().await;
    assert_eq!(registry.state.count(&Method::DELETE), 1);
}

/// A shared buffer for a test's log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_refusal_is_logged_and_retried() {
    // The test runtime has one thread, so this subscriber sees the exporter's tasks too.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = FakeRegistry::start(Some("right")).await;
    let dir = tempfile::tempdir().unwrap();
    let s = harness::start_args(&[
        &format!("--registry.url={}", registry.url()),
        &format!("--registry.token-file={}", token_file(&dir, "wr0ng-t0ken")),
        "--registry.instance=refused",
        "--registry.ttl=2s",
    ])
    .await;
    eventually("the refused registration was retried", async || {
        registry.state.count(&Method::PUT) >= 2
    })
    .await;
    assert!(
        metric(&s, "heimdall_exporter_registration_failures_total").await >= 2.0,
        "every refusal counts"
    );
    assert_eq!(metric(&s, "heimdall_exporter_registered").await, 0.0);
    // The exporter itself is unaffected.
    let health = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    s.stop().await;
    let text = logs.text();
    let refusal = text
        .lines()
        .find(|l| l.contains("refused the registration"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{text}"));
    assert!(refusal.contains("ERROR"), "{refusal}");
    assert!(refusal.contains("status=401"), "{refusal}");
    assert!(refusal.contains("invalid bearer token"), "{refusal}");
    assert!(
        !text.contains("wr0ng-t0ken"),
        "the token must not be logged:\n{text}"
    );
}

#[tokio::test]
async fn without_a_registry_url_nothing_registers() {
    let s = harness::start_args(&[]).await;
    let body = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("heimdall_exporter_regist"), "{body}");
    s.stop().await;
}
