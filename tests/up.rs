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
fn up_starts_the_exporter_and_prints_where() {
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
