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
//! - [`textparse`]: the streaming, zero-copy exposition parser (text 0.0.4 and OpenMetrics 1.0).
//! - [`check`]: `heimdall check metrics`: validates and lints an exposition, as
//!   `promtool check metrics` does.

pub mod check;
pub mod model;
pub mod storage;
pub mod textparse;
