//! The HTTP API: auth, validation, listing and http_sd.

use crate::harness::{self, TOKEN, exporter};

#[tokio::test]
async fn writes_need_the_token() {
    let ns = harness::start_with_token().await;
    let r = ns
        .put("exporter", "web-1", exporter("10.0.0.1", 9090), None)
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "missing bearer token");

    let r = ns
        .put(
            "exporter",
            "web-1",
            exporter("10.0.0.1", 9090),
            Some("wrong"),
        )
        .await;
    assert_eq!(r.status(), 401);

    let r = ns
        .client
        .delete(ns.url("/v1/services/exporter/instances/web-1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 401);

    let r = ns
        .put("exporter", "web-1", exporter("10.0.0.1", 9090), Some(TOKEN))
        .await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["result"], "created");
    // Reads stay open.
    assert_eq!(
        ns.get_json("/v1/services").await["services"]["exporter"][0]["instance"],
        "web-1"
    );
    ns.stop().await;
}

async fn expect_400(
    ns: &harness::Running,
    service: &str,
    instance: &str,
    body: serde_json::Value,
    reason: &str,
) {
    let r = ns.put(service, instance, body, None).await;
    assert_eq!(r.status(), 400, "{service}/{instance}");
    let body: serde_json::Value = r.json().await.expect("json error");
    let msg = body["error"].as_str().expect("error string");
    assert!(msg.contains(reason), "{msg:?} should mention {reason:?}");
}

#[tokio::test]
async fn bad_input_gets_400_with_a_reason() {
    let ns = harness::start(&[]).await;
    let ok = exporter("10.0.0.1", 9090);
    expect_400(
        &ns,
        "exporter",
        "web_1",
        ok.clone(),
        "only letters, digits and '-'",
    )
    .await;
    expect_400(
        &ns,
        "exporter",
        "-web",
        ok.clone(),
        "must not start or end with '-'",
    )
    .await;
    expect_400(
        &ns,
        "exp.orter",
        "web-1",
        ok.clone(),
        "invalid service name",
    )
    .await;
    let long = "a".repeat(64);
    expect_400(&ns, "exporter", &long, ok.clone(), "1 to 63 characters").await;
    expect_400(&ns, "exporter", "ns", ok.clone(), "reserved").await;
    expect_400(
        &ns,
        "exporter",
        "web-1",
        exporter("0.0.0.0", 9090),
        "unspecified",
    )
    .await;
    expect_400(&ns, "exporter", "web-1", exporter("10.0.0.1", 0), "port").await;
    let mut bad_label = ok.clone();
    bad_label["labels"]["bad-key"] = "v".into();
    expect_400(&ns, "exporter", "web-1", bad_label, "bad-key").await;
    let mut bad_ttl = ok.clone();
    bad_ttl["ttl_seconds"] = 0.into();
    expect_400(&ns, "exporter", "web-1", bad_ttl, "ttl_seconds").await;
    let mut unknown = ok.clone();
    unknown["colour"] = "red".into();
    expect_400(&ns, "exporter", "web-1", unknown, "colour").await;

    // A body over the limit is refused before parsing, still as JSON.
    let huge = serde_json::json!({ "address": "10.0.0.1", "port": 1, "labels": { "k": "x".repeat(70_000) } });
    let r = ns.put("exporter", "web-1", huge, None).await;
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.expect("json error");
    assert!(body["error"].is_string());

    // Nothing was registered by any of these.
    assert_eq!(
        ns.get_json("/v1/services").await["services"],
        serde_json::json!({})
    );

    let r = ns
        .client
        .delete(ns.url("/v1/services/exporter/instances/ghost"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 404);
    ns.stop().await;
}

#[tokio::test]
async fn one_instance_name_is_one_address() {
    let ns = harness::start(&[]).await;
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9090))
        .await;
    // The same host may run another service...
    ns.register("scraper", "web-1", exporter("10.0.0.1", 9190))
        .await;
    // ...but the name cannot point at two hosts.
    let r = ns
        .put("scraper", "web-1", exporter("10.0.0.9", 9190), None)
        .await;
    assert_eq!(r.status(), 409);
    ns.stop().await;
}

#[tokio::test]
async fn http_sd_and_listing() {
    let ns = harness::start(&[]).await;
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9090))
        .await;
    ns.register("exporter", "web-2", exporter("fd00::2", 9100))
        .await;
    ns.register(
        "scraper",
        "mon-1",
        serde_json::json!({"address": "10.0.0.5", "port": 9190}),
    )
    .await;

    let sd = ns.get_json("/v1/sd?service=exporter").await;
    assert_eq!(
        sd,
        serde_json::json!([
            {"targets": ["10.0.0.1:9090"], "labels": {
                "__meta_heimdall_service": "exporter", "__meta_heimdall_instance": "web-1",
                "__meta_heimdall_label_env": "test", "__meta_heimdall_label_rack": "r1"}},
            {"targets": ["[fd00::2]:9100"], "labels": {
                "__meta_heimdall_service": "exporter", "__meta_heimdall_instance": "web-2",
                "__meta_heimdall_label_env": "test", "__meta_heimdall_label_rack": "r1"}},
        ])
    );
    let all = ns.get_json("/v1/sd").await;
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    assert_eq!(
        ns.get_json("/v1/sd?service=nothing").await,
        serde_json::json!([])
    );

    let listed = ns.get_json("/v1/services").await;
    let web1 = &listed["services"]["exporter"][0];
    assert_eq!(web1["instance"], "web-1");
    assert_eq!(web1["address"], "10.0.0.1");
    assert_eq!(web1["port"], 9090);
    assert_eq!(web1["health"], "up");
    assert_eq!(web1["labels"]["rack"], "r1");
    assert!(web1["ttl_seconds"].is_null());

    let r = ns
        .client
        .get(ns.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    ns.stop().await;
}
