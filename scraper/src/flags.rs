//! Command-line flags of `heimdall-scraper` (and `heimdall scraper`): Prometheus' own flag
//! names where the knob is the same, each also an environment variable
//! (`HEIMDALL_SCRAPER_` + the flag in upper case, `.` and `-` as `_`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::ByteSize;

/// Flags of the scraper.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "heimdall-scraper",
    version,
    about = "Scrapes the fleet found in DNS, keeps it in a ring-buffer TSDB, answers the Prometheus HTTP API"
)]
pub struct Flags {
    /// prometheus.yml-style configuration file. Without one, the local fleet is scraped:
    /// `_exporter._tcp.heimdall.internal.` SRV at --discovery.nameserver every 5 s.
    #[arg(long = "config.file", env = "HEIMDALL_SCRAPER_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Nameserver asked when no --config.file is given.
    #[arg(
        long = "discovery.nameserver",
        env = "HEIMDALL_SCRAPER_DISCOVERY_NAMESERVER",
        default_value = "127.0.0.1:8600",
        value_parser = heimdall_common::parse_listen_address
    )]
    pub nameserver: SocketAddr,

    /// Address of the HTTP API, /federate, /metrics.
    #[arg(
        long = "web.listen-address",
        env = "HEIMDALL_SCRAPER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:9190",
        value_parser = heimdall_common::parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Directory of the write-ahead log and snapshots; empty keeps everything in memory only.
    #[arg(
        long = "storage.tsdb.path",
        env = "HEIMDALL_SCRAPER_STORAGE_TSDB_PATH",
        default_value = "heimdall-data/scraper"
    )]
    pub tsdb_path: PathBuf,

    /// How long samples are kept.
    #[arg(
        long = "storage.tsdb.retention.time",
        env = "HEIMDALL_SCRAPER_STORAGE_TSDB_RETENTION_TIME",
        default_value = "15d",
        value_parser = heimdall_common::parse_duration
    )]
    pub retention_time: Duration,

    /// Memory for sample chunks (e.g. 512MB, 2GiB); the oldest chunks go first when it is
    /// full. 0 = no budget.
    #[arg(
        long = "storage.tsdb.retention.size",
        env = "HEIMDALL_SCRAPER_STORAGE_TSDB_RETENTION_SIZE",
        default_value = "0",
        value_parser = parse_size
    )]
    pub retention_size: u64,

    /// How far back an instant selector looks for a sample.
    #[arg(
        long = "query.lookback-delta",
        env = "HEIMDALL_SCRAPER_QUERY_LOOKBACK_DELTA",
        default_value = "5m",
        value_parser = heimdall_common::parse_duration
    )]
    pub lookback_delta: Duration,

    /// Longest a query may run.
    #[arg(
        long = "query.timeout",
        env = "HEIMDALL_SCRAPER_QUERY_TIMEOUT",
        default_value = "2m",
        value_parser = heimdall_common::parse_duration
    )]
    pub query_timeout: Duration,

    /// Samples a query may load into memory at once.
    #[arg(
        long = "query.max-samples",
        env = "HEIMDALL_SCRAPER_QUERY_MAX_SAMPLES",
        default_value_t = 50_000_000
    )]
    pub query_max_samples: usize,

    /// Log level (error, warn, info, debug, trace) unless RUST_LOG is set.
    #[arg(
        long = "log.level",
        env = "HEIMDALL_SCRAPER_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

impl Flags {
    /// Parses `args` (the first is the program name), clap's error on bad input.
    pub fn parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }

    /// Flags and values for `/api/v1/status/flags`.
    pub fn as_map(&self) -> std::collections::BTreeMap<String, String> {
        let d = crate::scrape::target::format_duration;
        [
            (
                "config.file",
                self.config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("discovery.nameserver", self.nameserver.to_string()),
            ("web.listen-address", self.listen_address.to_string()),
            ("storage.tsdb.path", self.tsdb_path.display().to_string()),
            ("storage.tsdb.retention.time", d(self.retention_time)),
            (
                "storage.tsdb.retention.size",
                format!("{}B", self.retention_size),
            ),
            ("query.lookback-delta", d(self.lookback_delta)),
            ("query.timeout", d(self.query_timeout)),
            ("query.max-samples", self.query_max_samples.to_string()),
            ("log.level", self.log_level.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// A size like Prometheus' `--storage.tsdb.retention.size`: `512MB`, `2GB`, `1GiB`, `0`.
fn parse_size(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    s.parse::<ByteSize>()
        .map(|b| b.0)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_prometheus_names() {
        let f = Flags::parse_from(["heimdall-scraper"]).unwrap();
        assert_eq!(f.listen_address.to_string(), "127.0.0.1:9190");
        assert_eq!(f.retention_time, Duration::from_secs(15 * 86_400));
        assert_eq!(f.lookback_delta, Duration::from_secs(300));
        let f = Flags::parse_from([
            "s",
            "--config.file=p.yml",
            "--storage.tsdb.retention.size=1GiB",
            "--query.timeout=30s",
            "--web.listen-address=:9999",
        ])
        .unwrap();
        assert_eq!(f.retention_size, 1 << 30);
        assert_eq!(f.query_timeout, Duration::from_secs(30));
        assert_eq!(f.listen_address.port(), 9999);
        assert!(Flags::parse_from(["s", "--query.timeout=soon"]).is_err());
        assert!(Flags::parse_from(["s", "--nope"]).is_err());
    }
}
