//! Flags and `HEIMDALL_NAMESERVER_*` environment variables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::dns::Cidr;
use crate::health::HealthConfig;
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
    /// Reads (`/v1/services`, `/v1/sd`) need the bearer token too.
    #[arg(
        long = "registry.protect-reads",
        env = "HEIMDALL_NAMESERVER_REGISTRY_PROTECT_READS"
    )]
    pub protect_reads: bool,
    /// Directory for the registry journal and snapshot (a secondary keeps its zone copy
    /// there). Empty: keep nothing on disk.
    #[arg(
        long = "storage.path",
        env = "HEIMDALL_NAMESERVER_STORAGE_PATH",
        default_value = "heimdall-data/nameserver",
        value_parser = parse_path
    )]
    pub storage_path: PathBuf,
    /// BIND-format TSIG key file (`tsig-keygen` output, one or more `key` clauses). Its keys
    /// may send DNS UPDATEs and pull zone transfers; without it UPDATE is refused.
    #[arg(
        long = "dns.tsig-key-file",
        env = "HEIMDALL_NAMESERVER_DNS_TSIG_KEY_FILE"
    )]
    pub tsig_key_file: Option<PathBuf>,
    /// Addresses (`10.0.0.0/8`, `127.0.0.1`) allowed to transfer the zone (AXFR/IXFR)
    /// without TSIG; repeatable or comma-separated. TSIG-signed transfers with a configured
    /// key are always allowed.
    #[arg(long = "dns.allow-transfer", env = "HEIMDALL_NAMESERVER_DNS_ALLOW_TRANSFER",
          value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_transfer: Vec<Cidr>,
    /// Secondaries (`host:port`) sent a NOTIFY on every change; repeatable or comma-separated.
    #[arg(
        long = "dns.notify",
        env = "HEIMDALL_NAMESERVER_DNS_NOTIFY",
        value_delimiter = ','
    )]
    pub notify: Vec<SocketAddr>,
    /// `primary` owns the registry; `secondary` copies the zone of `--primary` by AXFR and
    /// refuses writes.
    #[arg(long = "role", env = "HEIMDALL_NAMESERVER_ROLE", default_value = "primary",
          value_parser = ["primary", "secondary"])]
    pub role: String,
    /// The primary's DNS address (`host:port`), for `--role secondary`.
    #[arg(
        long = "primary",
        env = "HEIMDALL_NAMESERVER_PRIMARY",
        required_if_eq("role", "secondary")
    )]
    pub primary: Option<SocketAddr>,
    /// Name of the key in `--dns.tsig-key-file` a secondary signs its transfers with.
    #[arg(
        long = "primary.tsig-key",
        env = "HEIMDALL_NAMESERVER_PRIMARY_TSIG_KEY"
    )]
    pub primary_tsig_key: Option<String>,
    /// Time between health-check rounds (Go duration); 0s disables health checks.
    #[arg(long = "health.interval", env = "HEIMDALL_NAMESERVER_HEALTH_INTERVAL",
          default_value = "10s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// Timeout of one health probe.
    #[arg(long = "health.timeout", env = "HEIMDALL_NAMESERVER_HEALTH_TIMEOUT",
          default_value = "2s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Health probes in flight at once.
    #[arg(
        long = "health.concurrency",
        env = "HEIMDALL_NAMESERVER_HEALTH_CONCURRENCY",
        default_value_t = 64
    )]
    pub health_concurrency: usize,
    /// Consecutive failed probes that mark an instance down.
    #[arg(long = "health.failures", env = "HEIMDALL_NAMESERVER_HEALTH_FAILURES",
          default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_failures: u32,
    /// Consecutive good probes that bring a down instance back.
    #[arg(long = "health.successes", env = "HEIMDALL_NAMESERVER_HEALTH_SUCCESSES",
          default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_successes: u32,
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

    pub fn health(&self) -> HealthConfig {
        HealthConfig {
            interval: self.health_interval,
            timeout: self.health_timeout,
            concurrency: self.health_concurrency,
            failures: self.health_failures,
            successes: self.health_successes,
        }
    }

    pub fn is_secondary(&self) -> bool {
        self.role == "secondary"
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_instances: self.max_instances,
            max_ttl: Duration::from_secs(self.max_ttl_seconds),
            ..Limits::default()
        }
    }
}

pub use heimdall_common::{parse_duration, parse_listen_address};

/// Any path, the empty one included (clap's own parser refuses an empty value).
fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.trim().parse()
}
