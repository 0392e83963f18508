//! Integration tests: the exporter started in-process on 127.0.0.1:0, exercised over HTTP.

#[cfg(target_os = "linux")]
mod golden;
mod harness;
mod http;
#[cfg(feature = "registration")]
mod registration;
mod security;
