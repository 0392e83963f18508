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
//! - [`promql`]: the PromQL engine (parser from `promql-parser`, our evaluator) over a
//!   `Querier`, with the `.test` script runner's in-memory store.
//! - [`discovery`]: target groups from static configs, files ([`discovery::file`]) and DNS
//!   ([`discovery::dns`], with the host cache the scrape client resolves from).

pub mod discovery;
pub mod model;
pub mod promql;
pub mod storage;
