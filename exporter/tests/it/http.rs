//! `/metrics`, `/health`, `/`: formats, filters, limits, timeouts.

use std::time::Duration;

use heimdall_exporter::web::WebSettings;

use crate::harness::{self, FAILING, HUNG, QUICK, SLOW, client};

#[tokio::test]
async fn text_format_by_default_and_openmetrics_on_request() {
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, WebSettings::default()).await;
    let c = client();
    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("# TYPE test_quick gauge\ntest_quick{k=\"v\"} 42\n"),
        "{body}"
    );
    assert!(
        body.contains("node_scrape_collector_success{collector=\"quick\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("heimdall_exporter_build_info{"), "{body}");
    assert!(!body.contains("# EOF"));

    let r = c
        .get(s.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("test_quick{k=\"v\"} 42.0\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn gzip_when_accepted() {
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, WebSettings::default()).await;
    // A client without transparent decompression, to see the wire bytes.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(s.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let r = raw.get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let text = r.text().await.unwrap();
    assert!(text.contains("test_quick"));
    s.stop().await;
}

#[tokio::test]
async fn collect_and_exclude_filters() {
    let s = harness::start_with(
        &[&QUICK, &FAILING],
        Duration::from_secs(5),
        0,
        WebSettings::default(),
    )
    .await;
    let c = client();
    let body = c
        .get(s.url("/metrics?collect[]=quick"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("collector=\"quick\""));
    assert!(!body.contains("collector=\"failing\""), "{body}");
    let body = c
        .get(s.url("/metrics?exclude%5B%5D=quick"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("collector=\"quick\""), "{body}");
    assert!(body.contains("collector=\"failing\""));

    let r = c
        .get(s.url("/metrics?collect[]=nosuch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("\"nosuch\" not available"));
    let r = c
        .get(s.url("/metrics?collect[]=quick&exclude[]=failing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}

#[tokio::test]
async fn failing_collector_reports_zero_and_drops_partial_output() {
    let s = harness::start_with(
        &[&QUICK, &FAILING],
        Duration::from_secs(5),
        0,
        WebSettings::default(),
    )
    .await;
    let body = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("node_scrape_collector_success{collector=\"failing\"} 0\n"),
        "{body}"
    );
    assert!(body.contains("node_scrape_collector_success{collector=\"quick\"} 1\n"));
    assert!(!body.contains("test_partial"), "{body}");
    let health: serde_json::Value = client()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["collectors"]["failing"]["success"], false);
    assert!(
        health["collectors"]["failing"]["error"]
            .as_str()
            .unwrap()
            .contains("broken on purpose")
    );
    assert_eq!(health["collectors"]["quick"]["success"], true);
    s.stop().await;
}

#[tokio::test]
async fn hung_collector_cannot_hold_the_scrape() {
    let s = harness::start_with(
        &[&QUICK, &HUNG],
        Duration::from_millis(200),
        0,
        WebSettings::default(),
    )
    .await;
    let c = client();
    let body = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("node_scrape_collector_success{collector=\"hung\"} 0\n"),
        "{body}"
    );
    assert!(body.contains("test_quick{k=\"v\"} 42\n"), "{body}");
    assert!(!body.contains("test_sleepy"));
    // While the first run is still stuck, the next scrape skips it instead of piling up threads.
    let health: serde_json::Value = c
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["collectors"]["hung"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    let _ = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let health: serde_json::Value = c
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["collectors"]["hung"]["error"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{health}"
    );
    s.stop().await;
}

/// Regression: a guard against hung collectors once skipped every collector that another
/// request was running, so concurrent scrapes came back incomplete.
#[tokio::test]
async fn concurrent_scrapes_are_all_complete() {
    let s = harness::start_with(
        &[&QUICK, &SLOW],
        Duration::from_secs(5),
        0,
        WebSettings::default(),
    )
    .await;
    let c = client();
    let bodies = futures_util::future::join_all((0..4).map(|_| async {
        c.get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }))
    .await;
    for body in bodies {
        assert!(
            body.contains("node_scrape_collector_success{collector=\"slow\"} 1\n"),
            "{body}"
        );
        assert!(body.contains("test_sleepy 1\n"), "{body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn excess_concurrent_scrapes_get_503() {
    let s = harness::start_with(&[&SLOW], Duration::from_secs(5), 1, WebSettings::default()).await;
    let c = client();
    let (a, b) = tokio::join!(c.get(s.url("/metrics")).send(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.get(s.url("/metrics")).send().await
    });
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 503]);
    // Once the first finished, scrapes are admitted again.
    assert_eq!(c.get(s.url("/metrics")).send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn landing_page_links_metrics_and_health() {
    let s = harness::start_with(&[&QUICK], Duration::from_secs(5), 0, WebSettings::default()).await;
    let r = client().get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("href=\"/metrics\"") && body.contains("href=\"/health\""),
        "{body}"
    );
    assert_eq!(
        client().get(s.url("/nope")).send().await.unwrap().status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn real_collectors_on_this_host_via_flags() {
    let s = harness::start_args(&[
        "--web.telemetry-path=/m",
        "--collector.disable-defaults",
        "--collector.loadavg",
        "--collector.time",
    ])
    .await;
    let c = client();
    let body = c
        .get(s.url("/m"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("node_scrape_collector_success{collector=\"loadavg\"}"),
        "{body}"
    );
    assert!(
        body.contains("node_scrape_collector_success{collector=\"time\"}"),
        "{body}"
    );
    assert!(!body.contains("collector=\"cpu\""), "{body}");
    assert_eq!(c.get(s.url("/metrics")).send().await.unwrap().status(), 404);
    s.stop().await;
}
