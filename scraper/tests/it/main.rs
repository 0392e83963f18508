//! The scraper's integration tests: one binary, a module per area.

mod discovery;
mod promql;
