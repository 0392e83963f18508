//! Starts exporters in-process and stops them when the test ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use heimdall_exporter::collector::{
    BuildError, CollectError, Collector, CollectorOptions, Paths, Registration,
};
use heimdall_exporter::exposition::Sink;
use heimdall_exporter::scrape::Scraper;
use heimdall_exporter::server::{self, AppState};
use heimdall_exporter::web::WebSettings;
use tokio_util::sync::CancellationToken;

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits for it, so a test also proves graceful shutdown works.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops within the grace period");
        r.expect("server task").expect("server result");
    }
}

/// Starts the real binary's code path from command-line style arguments.
pub async fn start_args(args: &[&str]) -> Running {
    let mut argv = vec!["heimdall-exporter", "--web.listen-address=127.0.0.1:0"];
    argv.extend_from_slice(args);
    let config = heimdall_exporter::config::parse_from(argv).expect("config");
    let exporter = heimdall_exporter::Exporter::bind(&config).expect("bind");
    let addr = exporter.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(exporter.run(shutdown.clone()));
    Running {
        addr,
        shutdown,
        task,
    }
}

/// Starts a server over hand-made collectors.
pub async fn start_with(
    regs: &[&'static Registration],
    timeout: Duration,
    max_requests: usize,
    web: WebSettings,
) -> Running {
    let scraper = Scraper::new(
        regs,
        &CollectorOptions::default(),
        Paths::default(),
        timeout,
    )
    .expect("scraper");
    let state = Arc::new(AppState::new(scraper, web, "/metrics".into(), max_requests));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve(listener, state, shutdown.clone()));
    Running {
        addr,
        shutdown,
        task,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// A collector that emits one gauge after sleeping, to test timeouts and limits.
#[derive(Debug)]
pub struct Sleepy(pub Duration);

impl Collector for Sleepy {
    fn collect(&self, _: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        std::thread::sleep(self.0);
        out.gauge("test_sleepy", "Slept.", &[], 1.0);
        Ok(())
    }
}

#[derive(Debug)]
pub struct Quick;

impl Collector for Quick {
    fn collect(&self, _: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        out.gauge("test_quick", "Quick.", &[("k", "v")], 42.0);
        Ok(())
    }
}

#[derive(Debug)]
pub struct Failing;

impl Collector for Failing {
    fn collect(&self, _: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        out.gauge("test_partial", "Must not appear.", &[], 1.0);
        Err(CollectError::parse("test input", "broken on purpose"))
    }
}

fn sleepy_long(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Sleepy(Duration::from_secs(3))))
}
fn sleepy_short(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Sleepy(Duration::from_millis(400))))
}
fn quick(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Quick))
}
fn failing(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Failing))
}

pub static HUNG: Registration = Registration {
    name: "hung",
    enabled_by_default: true,
    build: sleepy_long,
};
pub static SLOW: Registration = Registration {
    name: "slow",
    enabled_by_default: true,
    build: sleepy_short,
};
pub static QUICK: Registration = Registration {
    name: "quick",
    enabled_by_default: true,
    build: quick,
};
pub static FAILING: Registration = Registration {
    name: "failing",
    enabled_by_default: true,
    build: failing,
};
