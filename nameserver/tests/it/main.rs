//! Integration tests: the nameserver started in-process on 127.0.0.1:0 (UDP, TCP, HTTP),
//! fed over HTTP and queried over DNS.

mod dns;
mod harness;
mod http;
mod protocol;
