//! The scraper end to end, started as a user would (flags and a prometheus.yml), against
//! fake targets on loopback: scraping, the API, staleness, target errors, reload, restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use heimdall_scraper::Scraper;
use heimdall_scraper::flags::Flags;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A target whose body the test changes; `None` answers 500.
#[derive(Clone)]
struct FakeTarget {
    body: Arc<Mutex<Option<String>>>,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl FakeTarget {
    async fn start(body: &str) -> Self {
        let shared = Arc::new(Mutex::new(Some(body.to_owned())));
        let s = shared.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move {
                    match s.lock().unwrap().clone() {
                        Some(b) => (
                            axum::http::StatusCode::OK,
                            [("content-type", "text/plain; version=0.0.4")],
                            b,
                        ),
                        None => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            [("content-type", "text/plain")],
                            "broken".to_owned(),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let st = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(st.cancelled_owned())
                .await
                .unwrap();
        });
        Self {
            body: shared,
            addr,
            stop,
        }
    }

    fn set(&self, body: Option<&str>) {
        *self.body.lock().unwrap() = body.map(str::to_owned);
    }
}

struct Running {
    api: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Running {
    async fn start(config: &std::path::Path, data: &std::path::Path) -> Self {
        let flags = Flags::parse_from([
            "heimdall-scraper".to_owned(),
            format!("--config.file={}", config.display()),
            "--web.listen-address=127.0.0.1:0".to_owned(),
            format!("--storage.tsdb.path={}", data.display()),
        ])
        .unwrap();
        let stop = CancellationToken::new();
        let scraper = Scraper::bind(&flags, stop.clone()).unwrap();
        let api = format!("http://{}", scraper.local_addr());
        let task = tokio::spawn(async move {
            scraper.run().await.unwrap();
        });
        Self {
            api,
            stop,
            task,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn query(&self, q: &str) -> Vec<Value> {
        let v = self
            .get(&format!(
                "/api/v1/query?query={}",
                form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// Polls `q` until `check` holds (bounded: 15 s).
    async fn wait_for(&self, q: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        for _ in 0..150 {
            last = self.query(q).await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{q}: condition not met; last result {last:?}");
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn config(dir: &std::path::Path, jobs: &[(&str, std::net::SocketAddr)]) -> std::path::PathBuf {
    let mut yaml =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n");
    for (job, addr) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n        labels: {{rack: r1}}\n"
        ));
    }
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

const BODY: &str = "# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\ndemo_requests_total{path=\"/a\"} 10\ndemo_requests_total{path=\"/b\"} 20\n# TYPE demo_temp gauge\ndemo_temp 21.5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_answers_goes_stale_reloads_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::start(BODY).await;
    let cfg = config(dir.path(), &[("demo", target.addr)]);
    let data = dir.path().join("data");
    let s = Running::start(&cfg, &data).await;

    // Scraped, with the target's labels and the report series.
    let up = s
        .wait_for("up", |r| r.len() == 1 && r[0]["value"][1] == "1")
        .await;
    assert_eq!(up[0]["metric"]["job"], "demo");
    assert_eq!(up[0]["metric"]["instance"], target.addr.to_string());
    assert_eq!(up[0]["metric"]["rack"], "r1");
    let r = s.query("demo_requests_total").await;
    assert_eq!(r.len(), 2);
    let r = s.query("sum by (job) (demo_requests_total)").await;
    assert_eq!(r[0]["value"][1], "30");
    let r = s.query("scrape_samples_scraped").await;
    assert_eq!(r[0]["value"][1], "3");

    // Targets API.
    let t = s.get("/api/v1/targets").await;
    let active = &t["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up");
    assert_eq!(active["scrapePool"], "demo");
    assert_eq!(active["labels"]["job"], "demo");
    assert_eq!(
        active["discoveredLabels"]["__address__"],
        target.addr.to_string()
    );
    // Metadata from the HELP/TYPE lines.
    let m = s.get("/api/v1/metadata?metric=demo_requests_total").await;
    assert_eq!(m["data"]["demo_requests_total"][0]["type"], "counter");

    // A series that disappears goes stale: gone from instant queries at once.
    target.set(Some("demo_requests_total{path=\"/a\"} 11\ndemo_temp 22\n"));
    s.wait_for("demo_requests_total", |r| r.len() == 1).await;
    // A failing target: up 0, the error in the API, its series stale.
    target.set(None);
    s.wait_for("up", |r| r.len() == 1 && r[0]["value"][1] == "0")
        .await;
    s.wait_for("demo_temp", |r| r.is_empty()).await;
    let t = s.get("/api/v1/targets").await;
    let err = t["data"]["activeTargets"][0]["lastError"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains("500"), "{err}");
    target.set(Some(BODY));
    s.wait_for("up", |r| r.len() == 1 && r[0]["value"][1] == "1")
        .await;

    // Reload with a second job.
    let second = FakeTarget::start("other_metric 1\n").await;
    config(
        dir.path(),
        &[("demo", target.addr), ("second", second.addr)],
    );
    let r = s
        .http
        .post(format!("{}/-/reload", s.api))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    s.wait_for("other_metric", |r| r.len() == 1).await;
    // A broken config is refused and the running one kept.
    std::fs::write(&cfg, "scrape_configs: [{job_name: x, nope: 1}]\n").unwrap();
    let r = s
        .http
        .post(format!("{}/-/reload", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("nope"));
    s.wait_for("up", |r| r.len() == 2).await;

    // Restart: what was scraped is still there.
    let before = s.query("count_over_time(demo_temp[1h])").await;
    assert_eq!(before.len(), 1);
    s.stop().await;
    config(dir.path(), &[("demo", target.addr)]);
    let s = Running::start(&cfg, &data).await;
    let after = s.query("count_over_time(demo_temp[1h])").await;
    assert_eq!(after.len(), 1, "data survives a restart");
    let (b, a): (f64, f64) = (
        before[0]["value"][1].as_str().unwrap().parse().unwrap(),
        after[0]["value"][1].as_str().unwrap().parse().unwrap(),
    );
    assert!(a >= b, "{a} < {b}");
    s.stop().await;
    target.stop.cancel();
    second.stop.cancel();
}

#[tokio::test]
async fn api_errors_have_prometheus_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[]);
    let s = Running::start(&cfg, &dir.path().join("data")).await;
    let v = s.get("/api/v1/query?query=sum(").await;
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    let v = s
        .get("/api/v1/query_range?query=up&start=10&end=5&step=1")
        .await;
    assert_eq!(v["errorType"], "bad_data");
    let v = s
        .get("/api/v1/query_range?query=up&start=0&end=100000&step=1")
        .await;
    assert!(
        v["error"].as_str().unwrap().contains("11,000 points"),
        "{v}"
    );
    let v = s.get("/api/v1/series").await;
    assert_eq!(v["error"], "no match[] parameter provided");
    let v = s.get("/api/v1/query?query=up&time=soon").await;
    assert_eq!(v["errorType"], "bad_data");
    let v = s.get("/api/v1/status/buildinfo").await;
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].as_str().unwrap().starts_with('3'));
    let v = s.get("/api/v1/nope").await;
    assert_eq!(v["errorType"], "not_found");
    s.stop().await;
}
