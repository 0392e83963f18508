//! What Heimdall's services share, and nothing else: process signals, logging setup, and the
//! parsing of the flag values every service has (listen addresses, durations, timestamps).
//!
//! # Layout
//! - [`shutdown_signal`]: resolves on SIGINT or SIGTERM.
//! - [`init_tracing`]: the `tracing` subscriber (`RUST_LOG` or `--log.level`).
//! - [`parse_listen_address`], [`parse_duration`]: clap value parsers with Go's spellings.
//! - [`float`]: floats as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints them (text format).
//! - [`time`]: calendar days and RFC 3339 timestamps (API time parameters, `lastScrape`).

pub mod float;
pub mod time;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Installs the `tracing` subscriber on stderr: `RUST_LOG` if set, else `level` (with
/// hickory-server's one-line-per-request `info` log held at `warn`). Colours only on a
/// terminal. A second call (several services in one process) keeps the first subscriber.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hickory_server::server=warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// `host:port`, `:port` (all IPv4 interfaces, as Go writes it), `[::1]:port` or `name:port`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let with_host = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    with_host
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is not host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses a Go/Prometheus-style duration: `500ms`, `5s`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h, d)"))?;
        if num_end == 0 {
            return Err(format!("{s:?}: expected a number"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("{s:?}: bad number {:?}", &rest[..num_end]))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            "w" => n * 7.0 * 86400.0,
            "y" => n * 365.0 * 86400.0,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (use ms, s, m, h, d, w, y)"
                ));
            }
        };
        let part = Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{s:?}: out of range"))?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_duration("99999999999999999999y").is_err(),
            "no overflow panic"
        );
        assert!(parse_duration("9999999999999999y9999999999999999y").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9090").unwrap(),
            "0.0.0.0:9090".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_listen_address("nonsense").is_err());
    }
}
