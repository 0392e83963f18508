//! Heimdall's exporter: node_exporter-compatible host metrics over HTTP.
//!
//! Metric names, labels, types, help texts and values are node_exporter's (1.x), so stock
//! dashboards and alert rules work unchanged; node_exporter's own fixture trees and golden
//! output are the compatibility proof (`tests/compat/golden.sh`). Heimdall's extras are
//! prefixed `heimdall_`.
//!
//! # Layout
//! - [`collector`]: the [`Collector`](collector::Collector) trait, [`Paths`](collector::Paths),
//!   per-collector options and the one list of collectors (`collector/<name>.rs` each).
//! - [`exposition`]: the 0.0.4 / OpenMetrics writer and the allocation-free [`Sink`](exposition::Sink).
//! - [`scrape`]: runs the enabled collectors concurrently, each under a timeout, and adds
//!   `node_scrape_collector_*` and `heimdall_exporter_build_info`.
//! - [`server`]: axum routes (`/metrics`, `/health`, `/`), concurrency limit, TLS, graceful shutdown.
//! - [`web`]: exporter-toolkit web config (TLS, bcrypt basic auth), bearer keys, failure limiter.
//! - [`config`]: flags (node_exporter's names), `HEIMDALL_EXPORTER_*` env vars, TOML file.
//! - [`registration`]: self-registration in the Heimdall nameserver (`--registry.*`): register,
//!   renew the lease, back off while the registry is away, deregister on shutdown.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = heimdall_exporter::config::parse_from(["heimdall-exporter", "--web.listen-address=127.0.0.1:0"])?;
//! let exporter = heimdall_exporter::Exporter::bind(&config)?;
//! println!("listening on {}", exporter.local_addr());
//! exporter.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! With `--registry.url=http://NAMESERVER:8053` the exporter also registers itself in the
//! nameserver's registry as `--registry.service` (default `exporter`) / `--registry.instance`
//! (default: the host name) at `--registry.advertise-address` (default: derived from the listen
//! address), with a `--registry.ttl` lease (default 30s) that [`Exporter::run`] renews until
//! shutdown and then deletes. The bearer token comes from `--registry.token-file` or the
//! `HEIMDALL_EXPORTER_REGISTRY_TOKEN` environment variable (never a flag).

pub mod collector;
pub mod config;
pub mod exposition;
pub mod registration;
pub mod scrape;
pub mod server;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::registration::Registrar;
use crate::scrape::Scraper;
use crate::server::AppState;
use crate::web::WebSettings;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Collector(#[from] collector::BuildError),
    #[error(transparent)]
    Web(#[from] web::WebConfigError),
    #[error(transparent)]
    Registration(#[from] registration::SetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, ready-to-serve exporter.
#[derive(Debug)]
pub struct Exporter {
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    registrar: Option<Registrar>,
}

impl Exporter {
    /// Builds the collectors, loads the web config, binds the listen address and, with
    /// `--registry.url`, prepares the self-registration.
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        let cli = &config.cli;
        let mut scraper = Scraper::new(
            &config.enabled,
            &cli.collectors,
            config.paths(),
            cli.collector_timeout,
        )?;
        let status = Arc::new(registration::Status::default());
        if config.registration.is_some() {
            scraper = scraper.with_registration(status.clone());
        }
        let web = WebSettings::load(
            cli.web_config_file.as_deref(),
            cli.bearer_token_file.as_deref(),
        )?;
        let listener =
            std::net::TcpListener::bind(cli.listen_address).map_err(|source| StartError::Bind {
                addr: cli.listen_address,
                source,
            })?;
        let registrar = match &config.registration {
            Some(settings) => {
                let bound = listener.local_addr().map_err(|source| StartError::Bind {
                    addr: cli.listen_address,
                    source,
                })?;
                Some(Registrar::new(settings, bound, status)?)
            }
            None => None,
        };
        let state = Arc::new(AppState::new(
            scraper,
            web,
            cli.telemetry_path.clone(),
            cli.max_requests,
        ));
        Ok(Self {
            state,
            listener,
            registrar,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// `http` or `https`, as clients must use it.
    pub fn scheme(&self) -> &'static str {
        if self.state.web.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn collectors(&self) -> Vec<&'static str> {
        self.state.scraper.names().collect()
    }

    /// Where this exporter registers itself as reachable, with `--registry.url`.
    pub fn advertised_address(&self) -> Option<SocketAddr> {
        self.registrar.as_ref().map(Registrar::advertised)
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests. With
    /// `--registry.url` it also keeps the registration alive meanwhile and deregisters before
    /// returning.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Some(registrar) = self.registrar else {
            return server::serve(self.listener, self.state, shutdown).await;
        };
        // Deregistration starts with shutdown, while requests drain; if the server stops on
        // its own (a TLS error), the registration goes too.
        let stop_registering = shutdown.child_token();
        let serve = async {
            let result = server::serve(self.listener, self.state, shutdown).await;
            stop_registering.cancel();
            result
        };
        let (result, ()) = tokio::join!(serve, registrar.run(stop_registering.clone()));
        result
    }
}

pub use heimdall_common::shutdown_signal;

/// Threads for blocking work (collectors, bcrypt); runs beyond this queue. Collectors take
/// 0.1–3 ms each, so three threads keep two cores busy; every thread costs ~0.5–0.7 MiB of
/// resident memory (stack and malloc arena), which is why it is not one per collector. A
/// collector that hangs holds one thread until it returns and is skipped meanwhile (see
/// `scrape`), so up to two distinct hung collectors still leave scrapes complete; beyond that,
/// scrapes still answer on time, with the queued collectors reported as failed.
pub const MAX_BLOCKING_THREADS: usize = 3;

/// The runtime of the `heimdall-exporter` binary: one event-loop thread (HTTP and encoding take
/// well under a millisecond per scrape) plus the bounded blocking pool for collectors. Every
/// thread costs resident memory on every host of the fleet, so the exporter keeps few.
pub fn exporter_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(30))
        .enable_all()
        .build()
}

/// The Tokio runtime `heimdall up` runs every service on: a worker per core (at most 4: the
/// services are I/O-light) and a bounded blocking pool.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(30))
        .enable_all()
        .build()
}

pub use heimdall_common::init_tracing;

/// The whole `heimdall-exporter` program, also run by `heimdall exporter ARGS…`:
/// `args` starts with the program name.
pub async fn main_with_args<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = match config::parse_from(args) {
        Ok(c) => c,
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("heimdall-exporter: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&config.cli.log_level);
    let exporter = match Exporter::bind(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("heimdall-exporter: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(
        address = %exporter.local_addr(),
        scheme = exporter.scheme(),
        collectors = ?exporter.collectors(),
        "heimdall-exporter listening"
    );
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    match exporter.run(shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall-exporter: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
