//! The scraper's integration tests: one binary, a module per area.

mod config;
mod discovery;
mod promql;
mod scrape;
mod textparse;
mod tsdb;
