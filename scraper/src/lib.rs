//! Heimdall's scraper: finds every exporter through the nameserver (DNS SRV), scrapes them
//! all on time, keeps recent history in its own ring-buffer TSDB with a write-ahead log, and
//! answers the Prometheus HTTP API so Grafana and the gateway can read it.
//!
//! The pieces meet at small seams, as in Prometheus: the scrape loop writes through an
//! [`storage::Appender`] that commits or rolls back a whole scrape, and queries read through
//! a [`storage::Querier`], so each side is tested on its own.
//!
//! # Layout
//! - [`model`]: label sets, label matchers, the staleness marker.
//! - [`storage`]: the `Appender` and `Querier` seams between scraping, the TSDB and PromQL.
//! - [`config`]: the `prometheus.yml` subset (global, scrape_configs, remote_write, alerting),
//!   validated at start with the YAML path of any bad key; the no-file default.
//! - [`relabel`]: Prometheus' relabeling actions, for target, metric and write relabeling.
//! - [`discovery`]: target groups from static configs, files ([`discovery::file`]) and DNS
//!   ([`discovery::dns`], with the host cache the scrape client resolves from).
//! - [`textparse`]: the streaming, zero-copy exposition parser (text 0.0.4 and OpenMetrics 1.0).
//! - [`check`]: `heimdall check metrics`: validates and lints an exposition, as
//!   `promtool check metrics` does.
//! - [`scrape`]: the scrape manager (a pool per job), target labels, the per-target loop
//!   with its series cache and staleness, the HTTP client.
//! - [`tsdb`]: the in-memory TSDB (Gorilla chunks, postings, retention) with its WAL and snapshots.
//! - [`promql`]: the PromQL engine (parser from `promql-parser`, our evaluator) over a
//!   [`storage::Querier`], with the `.test` script runner's in-memory store.
//! - [`web`]: the Prometheus HTTP API, `/federate`, `/-/reload`, `/metrics`.
//! - [`service`]: everything wired into one service; [`flags`]: its command line.
//!
//! # Extending
//! - A discoverer: a module in [`discovery`] with `async fn run(self, sink, shutdown)` that
//!   publishes whole target-group sets, started by [`scrape::Manager::apply`].
//! - An API endpoint: a handler in [`web`] returning `Result<Response, ApiError>`.
//! - A PromQL function: see [`promql`].

pub mod check;
pub mod config;
pub mod discovery;
pub mod flags;
pub mod model;
pub mod promql;
pub mod relabel;
pub mod scrape;
pub mod service;
pub mod storage;
pub mod textparse;
pub mod tsdb;
pub mod web;

pub use service::{Scraper, StartError};

/// The whole binary: parse flags, start, serve until SIGINT/SIGTERM (SIGHUP reloads).
pub async fn main_with_args<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let flags = match flags::Flags::parse_from(args) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    heimdall_common::init_tracing(&flags.log_level);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let scraper = match Scraper::bind(&flags, shutdown.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("heimdall-scraper: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(api = %scraper.local_addr(), "heimdall-scraper listening");
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        heimdall_common::shutdown_signal().await;
        trigger.cancel();
    });
    match scraper.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall-scraper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
