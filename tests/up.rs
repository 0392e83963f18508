//! `heimdall up` started as a user starts it: the real binary, its printed addresses, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child if the test fails half-way, so no server outlives the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn up_starts_the_stack_and_the_scraper_scrapes_the_exporter() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .args([
                "up",
                "--exporter.listen-address",
                "127.0.0.1:0",
                "--nameserver.dns-address",
                "127.0.0.1:0",
                "--nameserver.http-address",
                "127.0.0.1:0",
                "--scraper.listen-address",
                "127.0.0.1:0",
            ])
            .arg(format!("--data.path={}", data.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn heimdall"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next_line = || {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("heimdall up prints where its services listen")
    };
    let url = loop {
        let line = next_line();
        if let Some(rest) = line.trim().strip_prefix("exporter") {
            break rest.split_whitespace().next().expect("url").to_owned();
        }
    };
    let registry = loop {
        let line = next_line();
        if let Some((_, rest)) = line.split_once("registry: ") {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    let scraper = loop {
        let line = next_line();
        if let Some(rest) = line.trim().strip_prefix("scraper") {
            let query_url = rest.split_whitespace().next().expect("scraper url");
            break query_url
                .split("/api/v1/")
                .next()
                .expect("scraper base")
                .to_owned();
        }
    };
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let body = rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body")
    });
    assert!(
        body.contains("node_scrape_collector_success{collector=\"cpu\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE node_cpu_seconds_total counter"),
        "{body}"
    );

    // The local exporter is registered in the nameserver, so http_sd (and SRV) find it.
    let sd_url = registry.replace("/v1/services", "/v1/sd?service=exporter");
    let sd: serde_json::Value = rt.block_on(async {
        reqwest::get(&sd_url)
            .await
            .expect("GET /v1/sd")
            .json()
            .await
            .expect("http_sd JSON")
    });
    let target = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    assert_eq!(sd[0]["targets"][0], target, "{sd}");

    // The scraper found the exporter through the nameserver (SRV) and scrapes it: `up` is 1
    // and node_exporter's metrics are queryable through the Prometheus API.
    let query = |q: &str| -> serde_json::Value {
        rt.block_on(async {
            reqwest::Client::new()
                .get(format!(
                    "{scraper}/api/v1/query?query={}",
                    q.replace('{', "%7B")
                        .replace('}', "%7D")
                        .replace('"', "%22")
                        .replace(' ', "%20")
                        .replace('=', "%3D")
                ))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("GET /api/v1/query")
                .json()
                .await
                .expect("query JSON")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let up = query("up{job=\"exporter\"}");
        let result = &up["data"]["result"];
        if result.as_array().is_some_and(|r| r.len() == 1) && result[0]["value"][1] == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scraper never scraped the exporter: {up}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpus = query("count(node_cpu_seconds_total{mode=\"idle\"})");
    assert_eq!(cpus["status"], "success", "{cpus}");
    assert!(
        cpus["data"]["result"][0]["value"][1]
            .as_str()
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1)),
        "{cpus}"
    );

    // SIGTERM: a clean, prompt, successful exit.
    let pid = child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            assert!(status.success(), "heimdall up exits 0 on SIGTERM: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heimdall up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exporter_subcommand_takes_the_exporter_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(["exporter", "--help"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--web.listen-address",
        "--path.procfs",
        "--collector.cpu",
        "--collector.filesystem.mount-points-exclude",
    ] {
        assert!(help.contains(flag), "missing {flag} in:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(["exporter", "--collector.timeout=soon"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collector.timeout"), "{err}");
}
