//! Heimdall's nameserver: the fleet registry served as an authoritative DNS zone.
//!
//! Instances register over HTTP; each becomes `<instance>.<zone>` A/AAAA (+ TXT labels) and
//! a target of `_<service>._tcp.<zone>` SRV, so `dig`, hickory-resolver and the scraper
//! discover the fleet by standard DNS, and stock Prometheus by `http_sd_config`.
//!
//! # Layout
//! - [`registry`]: services, instances, leases and their bounds; pure, validated, unit-tested.
//! - [`zone`]: registry → hickory records (SOA, NS, A/AAAA, SRV, TXT), served by an
//!   `InMemoryZoneHandler` whose records are swapped on every change.
//! - [`store`]: the registry and the zone kept in step (serial bump per change), lease expiry.
//! - [`http`]: the axum registration API and Prometheus http_sd.
//! - [`config`]: flags and `HEIMDALL_NAMESERVER_*` env vars.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = heimdall_nameserver::config::Config::parse_from([
//!     "heimdall-nameserver", "--dns.listen-address=127.0.0.1:0", "--http.listen-address=127.0.0.1:0",
//! ])?;
//! let ns = heimdall_nameserver::Nameserver::bind(&config)?;
//! println!("DNS on {}, HTTP on {}", ns.local_dns_addr(), ns.local_http_addr());
//! ns.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod http;
pub mod registry;
pub mod store;
pub mod zone;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::LowerName;
use hickory_server::Server;
use hickory_server::zone_handler::Catalog;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::ApiState;
use crate::registry::Registry;
use crate::store::Store;
use crate::zone::{Zone, ZoneConfig};

/// A TCP connection that sends no request for this long is closed.
const DNS_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per DNS TCP connection before the connection is back-pressured.
const DNS_TCP_RESPONSE_BUFFER: usize = 64;
/// With `:0`, UDP picks a port and TCP must get the same one; tries before giving up.
const SAME_PORT_TRIES: usize = 16;

/// Why the nameserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Zone(#[from] zone::ZoneError),
    #[error("cannot read token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Why the nameserver stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("DNS server: {0}")]
    Dns(String),
    #[error("cannot use the bound socket: {0}")]
    Socket(std::io::Error),
}

/// A bound, ready-to-serve nameserver.
#[derive(Debug)]
pub struct Nameserver {
    store: Arc<Store>,
    token: Option<String>,
    udp: UdpSocket,
    tcp: TcpListener,
    http: TcpListener,
}

impl Nameserver {
    /// Reads the token, builds the (empty) zone and binds DNS (UDP and TCP on one port) and HTTP.
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        let token = config.token_file.as_deref().map(read_token).transpose()?;
        let (udp, tcp) = bind_dns(config.dns_listen_address)?;
        let dns_addr = udp
            .local_addr()
            .map_err(|e| bind_error(config.dns_listen_address, "DNS/UDP", e))?;
        let ns_address = config.dns_advertise_address.or(Some(dns_addr.ip()));
        let zc = ZoneConfig::new(&config.zone, ns_address)?;
        let registry = Registry::new(config.limits());
        let serial = initial_serial();
        let zone = Zone::new(zc, &registry, serial)?;
        let http = bind_tcp(config.http_listen_address, "HTTP")?;
        Ok(Self {
            store: Arc::new(Store::new(registry, zone, serial)),
            token,
            udp,
            tcp,
            http,
        })
    }

    /// The bound DNS address (UDP and TCP).
    pub fn local_dns_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The bound HTTP API address.
    pub fn local_http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The registry and zone, for embedding (e.g. `heimdall up` registering its exporter).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Serves DNS and HTTP and expires leases until `shutdown`, then stops all three.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let udp = tokio::net::UdpSocket::from_std(self.udp).map_err(RunError::Socket)?;
        let tcp = tokio::net::TcpListener::from_std(self.tcp).map_err(RunError::Socket)?;
        let http = tokio::net::TcpListener::from_std(self.http).map_err(RunError::Socket)?;

        let mut catalog = Catalog::new();
        let zone = self.store.zone();
        catalog.upsert(LowerName::new(&zone.config().origin), vec![zone.handler()]);
        let mut dns = Server::new(catalog);
        dns.register_socket(udp);
        dns.register_listener(tcp, DNS_TCP_IDLE_TIMEOUT, DNS_TCP_RESPONSE_BUFFER);

        let expiry_store = self.store.clone();
        let expiry_shutdown = shutdown.clone();
        let expiry = tokio::spawn(async move { expiry_store.run_expiry(expiry_shutdown).await });

        let state = Arc::new(ApiState::new(self.store.clone(), self.token.as_deref()));
        let http_result = http::serve(http, state, shutdown.clone()).await;
        // The HTTP server returns on shutdown or on error; either way stop the rest.
        shutdown.cancel();
        let dns_result = dns.shutdown_gracefully().await;
        if let Err(e) = expiry.await {
            tracing::error!(error = %e, "lease expiry task failed");
        }
        http_result.map_err(RunError::Http)?;
        dns_result.map_err(|e| RunError::Dns(e.to_string()))
    }
}

fn bind_error(addr: SocketAddr, what: &'static str, source: std::io::Error) -> StartError {
    StartError::Bind { addr, what, source }
}

fn bind_tcp(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    let l = TcpListener::bind(addr).map_err(|e| bind_error(addr, what, e))?;
    l.set_nonblocking(true)
        .map_err(|e| bind_error(addr, what, e))?;
    Ok(l)
}

/// Binds UDP and TCP on the same port; with port 0, retries until both get one.
fn bind_dns(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), StartError> {
    let tries = if addr.port() == 0 { SAME_PORT_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr).map_err(|e| bind_error(addr, "DNS/UDP", e))?;
        udp.set_nonblocking(true)
            .map_err(|e| bind_error(addr, "DNS/UDP", e))?;
        let bound = udp
            .local_addr()
            .map_err(|e| bind_error(addr, "DNS/UDP", e))?;
        match bind_tcp(bound, "DNS/TCP") {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| bind_error(addr, "DNS/TCP", std::io::ErrorKind::AddrInUse.into())))
}

fn read_token(path: &std::path::Path) -> Result<String, StartError> {
    let bad = |reason: String| StartError::TokenFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| bad("no token in file".into()))
}

/// Seconds since the epoch, so a restarted (still empty) zone's serial moves forward.
fn initial_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    // Truncation is RFC 1982 serial arithmetic's business; wrapping is fine.
    secs as u32
}

pub use heimdall_common::init_tracing;

/// The whole binary: parse flags, bind, serve until SIGINT/SIGTERM.
pub async fn main_with_args<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = match Config::parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_tracing(&config.log_level);
    let ns = match Nameserver::bind(&config) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("heimdall-nameserver: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(
        dns = %ns.local_dns_addr(),
        http = %ns.local_http_addr(),
        zone = %config.zone,
        "heimdall-nameserver listening"
    );
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        heimdall_common::shutdown_signal().await;
        trigger.cancel();
    });
    match ns.run(shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall-nameserver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
