//! Integration tests: the exporter started in-process on 127.0.0.1:0, exercised over HTTP.

mod harness;
mod http;
mod security;
