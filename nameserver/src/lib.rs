//! Heimdall's nameserver: the fleet registry served as an authoritative DNS zone.
//!
//! Instances register over HTTP or TSIG-signed DNS UPDATE; each becomes `<instance>.<zone>`
//! A/AAAA (+ TXT labels) and a target of `_<service>._tcp.<zone>` SRV while its health checks
//! pass, so `dig`, hickory-resolver and the scraper discover the fleet by standard DNS, stock
//! Prometheus by `http_sd_config`, and BIND or Knot replicate it by NOTIFY + AXFR.
//!
//! # Layout
//! - [`registry`]: services, instances, leases, health state and their bounds; pure, validated.
//! - [`zone`]: registry → records (SOA, NS, A/AAAA, SRV, TXT, shards, DNS-SD names) and the
//!   indexed, immutable [`zone::ZoneData`] served through a swappable [`zone::ZoneCell`].
//! - [`udp`]: our UDP loop: plain queries are answered by [`wire`] from answers packed with the
//!   zone (compressed, bytes copied per query); everything else goes to [`dns`].
//! - [`dns`]: the request handler for TCP (hickory-server's listener) and the rest of UDP:
//!   queries, AXFR/IXFR in many messages with an ACL, UPDATE, NOTIFY; [`tsig`] verifies and
//!   signs (BIND key files); [`update`] maps RFC 2136 updates onto the registry.
//! - [`store`]: the one write path: registry change → journal ([`persist`]) → new serial →
//!   new zone, with concurrent changes sharing one zone rebuild; lease expiry.
//! - [`health`]: the health checker; [`replication`]: NOTIFY sender (primary), SOA poll + AXFR
//!   client (secondary); [`metrics`]: `/metrics`.
//! - [`http`]: the axum registration API and Prometheus http_sd; [`config`]: flags and env.
//!
//! # Extending
//! A new record shape is a change in [`zone::build_records`] (and, if clients may write it, in
//! [`update::apply`]); the handler answers whatever the zone holds. A new record *type* also
//! wants a case in [`wire::pack`]'s encoder, or its queries take the general (slower) path. A new registry field goes
//! into [`registry::Registration`], the journal's [`persist::StoredInstance`] and
//! `Store::journal`.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = heimdall_nameserver::config::Config::parse_from([
//!     "heimdall-nameserver", "--dns.listen-address=127.0.0.1:0", "--http.listen-address=127.0.0.1:0",
//!     "--storage.path=",
//! ])?;
//! let ns = heimdall_nameserver::Nameserver::bind(&config)?;
//! println!("DNS on {}, HTTP on {}", ns.local_dns_addr(), ns.local_http_addr());
//! ns.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod dns;
pub mod health;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod registry;
pub mod replication;
pub mod store;
pub mod tsig;
pub mod udp;
pub mod update;
pub mod wire;
pub mod zone;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_server::Server;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dns::{Handler, Role, SecondaryLink};
use crate::health::HealthConfig;
use crate::http::ApiState;
use crate::metrics::Metrics;
use crate::persist::Persist;
use crate::registry::{Registration, Registry};
use crate::replication::Secondary;
use crate::store::Store;
use crate::tsig::Keys;
use crate::zone::ZoneConfig;

/// A TCP connection that sends no request for this long is closed.
const DNS_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per DNS TCP connection. hickory-server writes a connection's queue only
/// between requests, so a zone transfer must fit the queue whole: one message per
/// [`dns::TRANSFER_MESSAGE_BYTES`], about 100 instances each, plus room. The channel allocates
/// as messages arrive, so an idle connection costs nothing for this bound.
fn dns_tcp_response_buffer(max_instances: usize) -> usize {
    64 + max_instances / 64
}
/// With `:0`, UDP picks a port and TCP must get the same one; tries before giving up.
const SAME_PORT_TRIES: usize = 16;

/// Why the nameserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Zone(#[from] zone::ZoneError),
    #[error("cannot read token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Keys(#[from] tsig::KeyFileError),
    #[error("--primary.tsig-key {0:?} is not in --dns.tsig-key-file")]
    UnknownKey(String),
    #[error("registry storage: {0}")]
    Storage(#[from] persist::PersistError),
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
    handler: Handler,
    token: Option<String>,
    protect_reads: bool,
    notify: Vec<SocketAddr>,
    health: HealthConfig,
    secondary: Option<Secondary>,
    tcp_response_buffer: usize,
    udp: UdpSocket,
    tcp: TcpListener,
    http: TcpListener,
}

impl Nameserver {
    /// Reads the token and keys, loads the registry from disk (primary) and binds DNS (UDP
    /// and TCP on one port) and HTTP.
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        let token = config.token_file.as_deref().map(read_token).transpose()?;
        let keys = match &config.tsig_key_file {
            Some(p) => Keys::from_file(p)?,
            None => Keys::default(),
        };
        let (udp, tcp) = bind_dns(config.dns_listen_address)?;
        let dns_addr = udp
            .local_addr()
            .map_err(|e| bind_error(config.dns_listen_address, "DNS/UDP", e))?;
        let ns_address = config.dns_advertise_address.or(Some(dns_addr.ip()));
        let zc = ZoneConfig::new(&config.zone, ns_address)?;
        let metrics = Arc::new(Metrics::new());
        let storage = Some(config.storage_path.clone()).filter(|p| !p.as_os_str().is_empty());
        let (store, role, secondary) = match config.primary.filter(|_| config.is_secondary()) {
            Some(primary) => {
                let key = match &config.primary_tsig_key {
                    Some(name) => {
                        let n = hickory_proto::rr::Name::from_ascii(name)
                            .map_err(|_| StartError::UnknownKey(name.clone()))?;
                        Some(
                            keys.get(&n)
                                .cloned()
                                .ok_or_else(|| StartError::UnknownKey(name.clone()))?,
                        )
                    }
                    None => None,
                };
                if let Some(dir) = &storage {
                    std::fs::create_dir_all(dir).map_err(|e| persist::PersistError::Io {
                        op: "create",
                        path: dir.clone(),
                        source: e,
                    })?;
                }
                let store = Arc::new(Store::secondary(zc, primary.to_string(), metrics.clone()));
                let link = Arc::new(SecondaryLink {
                    primaries: vec![primary.ip()],
                    ..SecondaryLink::default()
                });
                let secondary = Secondary {
                    primary,
                    key,
                    store: store.clone(),
                    cell: store.zone(),
                    link: link.clone(),
                    metrics: metrics.clone(),
                    copy: storage.map(|d| d.join("zone.axfr")),
                    limits: config.limits(),
                };
                // Serve the copy on disk from the first query on, even if the primary is down.
                secondary.load_copy();
                (store, Role::Secondary(link), Some(secondary))
            }
            None => {
                let mut registry = Registry::new(config.limits());
                let mut serial = initial_serial();
                let persist = match &storage {
                    Some(dir) => {
                        let (p, loaded) = Persist::open(dir)?;
                        if !loaded.is_clean() {
                            // Each problem was logged by `persist` with file, line and reason.
                            tracing::warn!(dir = %dir.display(), problems = loaded.problems.len(),
                                instances = loaded.instances.len(),
                                "registry storage was damaged; serving the good part and keeping the damaged files as *.corrupt-*");
                        }
                        let now = std::time::Instant::now();
                        for i in &loaded.instances {
                            let reg = Registration {
                                address: i.address,
                                port: i.port,
                                labels: i.labels.clone(),
                                ttl_seconds: i.ttl_seconds,
                                health_path: i.health_path.clone(),
                            };
                            // A restart grants every lease a full ttl from now.
                            if let Err(e) = registry.register(&i.service, &i.instance, reg, now) {
                                tracing::error!(service = i.service, instance = i.instance, error = %e,
                                    "stored instance refused by the current limits");
                            }
                        }
                        if !loaded.instances.is_empty() {
                            tracing::info!(
                                instances = registry.len(),
                                serial = loaded.serial,
                                "registry restored"
                            );
                        }
                        // Newer than anything a secondary saw from the previous run.
                        if dns::serial_ge(loaded.serial, serial) {
                            serial = loaded.serial.wrapping_add(1);
                        }
                        Some(p)
                    }
                    None => None,
                };
                let store = Arc::new(Store::new(zc, registry, serial, persist, metrics.clone()));
                let role = Role::Primary {
                    store: store.clone(),
                };
                (store, role, None)
            }
        };
        let handler = Handler::new(
            store.zone(),
            keys,
            config.allow_transfer.clone(),
            role,
            metrics,
        );
        let http = bind_tcp(config.http_listen_address, "HTTP")?;
        Ok(Self {
            store,
            handler,
            token,
            protect_reads: config.protect_reads,
            notify: config.notify.clone(),
            health: config.health(),
            secondary,
            tcp_response_buffer: dns_tcp_response_buffer(config.max_instances),
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

    /// Serves DNS and HTTP, expires leases, checks health, notifies secondaries (primary) or
    /// follows the primary (secondary) until `shutdown`, then stops everything and writes a
    /// final snapshot.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let udp = tokio::net::UdpSocket::from_std(self.udp).map_err(RunError::Socket)?;
        let tcp = tokio::net::TcpListener::from_std(self.tcp).map_err(RunError::Socket)?;
        let http = tokio::net::TcpListener::from_std(self.http).map_err(RunError::Socket)?;

        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(udp::serve(udp, self.handler.clone(), shutdown.clone()));
        let mut dns = Server::new(self.handler);
        dns.register_listener(tcp, DNS_TCP_IDLE_TIMEOUT, self.tcp_response_buffer);

        match self.secondary {
            Some(secondary) => {
                tasks.spawn(secondary.run(shutdown.clone()));
            }
            None => {
                let (store, stop) = (self.store.clone(), shutdown.clone());
                tasks.spawn(async move { store.run_expiry(stop).await });
                tasks.spawn(health::run(
                    self.store.clone(),
                    self.health,
                    shutdown.clone(),
                ));
                tasks.spawn(replication::run_notifier(
                    self.store.clone(),
                    self.notify,
                    shutdown.clone(),
                ));
            }
        }

        let state = Arc::new(ApiState::new(
            self.store.clone(),
            self.token.as_deref(),
            self.protect_reads,
        ));
        let http_result = http::serve(http, state, shutdown.clone()).await;
        // The HTTP server returns on shutdown or on error; either way stop the rest.
        shutdown.cancel();
        let dns_result = dns.shutdown_gracefully().await;
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "background task failed");
            }
        }
        self.store.snapshot().await;
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
