//! The scraper's integration tests, one module per area.

mod config;
