//! Flags and `HEIMDALL_NAMESERVER_*` environment variables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::registry::Limits;

/// Heimdall's nameserver: the fleet registry as an authoritative DNS zone plus an HTTP API.
#[derive(Debug, Clone, Parser)]
#[command(name = "heimdall-nameserver", version)]
pub struct Config {
    /// DNS listen address, UDP and TCP (`host:port`, or `:port` for all interfaces).
    #[arg(long = "dns.listen-address", env = "HEIMDALL_NAMESERVER_DNS_LISTEN_ADDRESS",
          default_value = "127.0.0.1:8600", value_parser = parse_listen_address)]
    pub dns_listen_address: SocketAddr,
    /// Address published as `ns.<zone>`; defaults to the DNS listen address unless that is a wildcard.
    #[arg(
        long = "dns.advertise-address",
        env = "HEIMDALL_NAMESERVER_DNS_ADVERTISE_ADDRESS"
    )]
    pub dns_advertise_address: Option<IpAddr>,
    /// Zone served authoritatively.
    #[arg(
        long = "zone",
        env = "HEIMDALL_NAMESERVER_ZONE",
        default_value = "heimdall.internal."
    )]
    pub zone: String,
    /// HTTP API listen address.
    #[arg(long = "http.listen-address", env = "HEIMDALL_NAMESERVER_HTTP_LISTEN_ADDRESS",
          default_value = "127.0.0.1:8053", value_parser = parse_listen_address)]
    pub http_listen_address: SocketAddr,
    /// File holding the bearer token that registrations must carry (first non-empty,
    /// non-`#` line). Without it, writes are open.
    #[arg(
        long = "registry.token-file",
        env = "HEIMDALL_NAMESERVER_REGISTRY_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Most instances over all services; registrations beyond it get 507.
    #[arg(
        long = "registry.max-instances",
        env = "HEIMDALL_NAMESERVER_REGISTRY_MAX_INSTANCES",
        default_value_t = 10_000
    )]
    pub max_instances: usize,
    /// Longest lease a client may ask for, in seconds.
    #[arg(
        long = "registry.max-ttl-seconds",
        env = "HEIMDALL_NAMESERVER_REGISTRY_MAX_TTL_SECONDS",
        default_value_t = 86_400
    )]
    pub max_ttl_seconds: u64,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", env = "HEIMDALL_NAMESERVER_LOG_LEVEL", default_value = "info",
          value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: String,
}

impl Config {
    /// Parses command-line style arguments (the first is the program name).
    pub fn parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_instances: self.max_instances,
            max_ttl: Duration::from_secs(self.max_ttl_seconds),
            ..Limits::default()
        }
    }
}

pub use heimdall_common::parse_listen_address;
