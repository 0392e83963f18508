//! Basic auth, bearer keys, the failed-attempt limiter and TLS.

use std::time::Duration;

use heimdall_exporter::web::WebSettings;

use crate::harness::{self, QUICK, client, data};

fn settings(yaml: &str, keys: Option<&str>) -> (tempfile::TempDir, WebSettings) {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, yaml).unwrap();
    let key_file = keys.map(|k| {
        let p = dir.path().join("keys");
        std::fs::write(&p, k).unwrap();
        p
    });
    let s = WebSettings::load(Some(&web), key_file.as_deref()).unwrap();
    (dir, s)
}

#[tokio::test]
async fn auth_required_on_metrics_but_not_health() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let (_dir, web) = settings(
        &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        Some("key-1\n"),
    );
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, web).await;
    let c = client();
    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert!(r.text().await.unwrap().contains("authentication required"));
    assert_eq!(c.get(s.url("/")).send().await.unwrap().status(), 401);
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);

    let ok = c
        .get(s.url("/metrics"))
        .basic_auth("prom", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("test_quick"));
    let ok = c
        .get(s.url("/metrics"))
        .bearer_auth("key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = c
        .get(s.url("/metrics"))
        .bearer_auth("key-2")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let bad = c
        .get(s.url("/metrics"))
        .basic_auth("prom", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let (_dir, web) = settings("", Some("right\n"));
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, web).await;
    let c = client();
    let mut saw_429 = false;
    for _ in 0..8 {
        let r = c
            .get(s.url("/metrics"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            401 => {}
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                saw_429 = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(saw_429, "brute force is throttled");
    // Even the right key waits out the window: the limiter runs before the check.
    let r = c
        .get(s.url("/metrics"))
        .bearer_auth("right")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    s.stop().await;
}

#[tokio::test]
async fn tls_from_web_config() {
    let yaml = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        data("tls/cert.pem").display(),
        data("tls/key.pem").display()
    );
    let (_dir, web) = settings(&yaml, None);
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, web).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(data("tls/ca.pem")).unwrap()).unwrap();
    let tls = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://{}/metrics", s.addr);
    let r = tls.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("test_quick"));
    // Plain HTTP to the TLS port does not get metrics.
    let plain = client().get(s.url("/metrics")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    s.stop().await;
}
