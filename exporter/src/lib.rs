//! Heimdall's exporter: node_exporter-compatible host metrics over HTTP.

pub mod collector;
pub mod config;
pub mod exposition;
