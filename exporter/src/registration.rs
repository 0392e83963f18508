//! Self-registration in the Heimdall nameserver's HTTP registry (`--registry.url`).
//!
//! [`Registrar::run`] puts this exporter's address under
//! `PUT /v1/services/<service>/instances/<instance>` with a lease of `--registry.ttl`, renews it
//! every third of the lease, and deletes it when the exporter shuts down, so the nameserver's SRV
//! records and http_sd list only exporters that are running. If the exporter dies without
//! deregistering, the lease runs out and the nameserver drops it by itself.
//!
//! The registry being away never stops the exporter: unanswered attempts (refused connection,
//! timeout, 5xx) are retried with jittered exponential backoff from [`INITIAL_BACKOFF`] up to a
//! third of the lease (at most [`MAX_BACKOFF`]); refusals (4xx: bad token, bad name) are logged
//! with the registry's reason and retried at that slowest pace, since only an operator can fix
//! them. Warnings are rate-limited to the first failure and every [`LOG_EVERY`]th after it.
//! `heimdall_exporter_registered` and `heimdall_exporter_registration_failures_total` on
//! `/metrics` show the state.
//!
//! The pure parts (names, addresses, labels) are here too, so `config` validates them at start.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::exposition::Sink;

/// Every registry request gives up after this; the attempt then counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Shutdown waits at most this long for the deregistration (and as long again for a renewal
/// in flight); the lease ends by itself anyway.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry delay after a failure; it doubles up to a third of the lease, at most
/// [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest lease: renewals go every third of it, and a lease must outlive a slow round trip.
pub const MIN_TTL: Duration = Duration::from_secs(2);
/// Of consecutive failures, the first and every this-many-th are logged at warn/error (the
/// others at debug), so a registry that is down for an hour costs a few dozen lines.
pub const LOG_EVERY: u64 = 10;
/// The environment variable holding the registry token itself. It has no flag, so the secret
/// never shows in `ps`; `--registry.token-file` is the other way.
pub const TOKEN_ENV: &str = "HEIMDALL_EXPORTER_REGISTRY_TOKEN";
/// Only this much of an error answer is read, and [`MAX_MESSAGE_CHARS`] of it logged.
#[cfg(feature = "registration")]
const MAX_ERROR_BODY: usize = 4096;
#[cfg(feature = "registration")]
const MAX_MESSAGE_CHARS: usize = 300;
/// The nameserver publishes itself as `ns.<zone>`, so it refuses this instance name.
const RESERVED_INSTANCE_NAMES: &[&str] = &["ns"];

/// A secret that `Debug` does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the registry's bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    None,
    /// `--registry.token-file`, read once at start.
    File(PathBuf),
    /// [`TOKEN_ENV`].
    Env(Secret),
}

/// `--registry.advertise-address`: an IP, with or without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertise {
    pub ip: IpAddr,
    /// `None`: the port the exporter listens on.
    pub port: Option<u16>,
}

/// The validated `--registry.*` settings; present only when `--registry.url` is set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the nameserver's HTTP API, without a trailing `/`.
    pub url: String,
    pub token: TokenSource,
    pub service: String,
    pub instance: String,
    pub advertise: Option<Advertise>,
    /// Whole seconds, at least [`MIN_TTL`].
    pub ttl: Duration,
    pub labels: BTreeMap<String, String>,
}

/// Why registration could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("registry token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("registry token: {0}")]
    Token(&'static str),
    #[error("--registry.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("registry HTTP client: {0}")]
    Client(String),
    #[error(
        "--registry.url: this build has no registration support (cargo feature \"registration\")"
    )]
    NotBuilt,
}

// --- flag values ------------------------------------------------------------------------------

/// `--registry.url`: `http://` or `https://`, a host, an optional path prefix; no query.
pub fn parse_registry_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{s:?} has no host"));
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?}: give the base URL only (no query, fragment or spaces)"
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// Checks that `name` is one DNS label, `[a-z0-9-]{1,63}` without a leading or trailing `-`
/// (upper case is lowered), as the nameserver requires of service and instance names.
pub fn parse_dns_label(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("{name:?} must be 1 to 63 characters"));
    }
    let lower = name.to_ascii_lowercase();
    if !lower
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{name:?}: only letters, digits and '-' are allowed"
        ));
    }
    if lower.starts_with('-') || lower.ends_with('-') {
        return Err(format!("{name:?} must not start or end with '-'"));
    }
    Ok(lower)
}

/// `--registry.instance`: a DNS label other than the nameserver's own `ns`.
pub fn parse_instance(name: &str) -> Result<String, String> {
    let label = parse_dns_label(name)?;
    if RESERVED_INSTANCE_NAMES.contains(&label.as_str()) {
        return Err(format!("{label:?} is reserved for the nameserver itself"));
    }
    Ok(label)
}

/// The default instance name from a host name: its first label, lowercased, every run of
/// characters outside `[a-z0-9-]` replaced by one `-`, cut to 63 characters, without leading
/// or trailing `-` (`Web_01.example.com` → `web-01`).
pub fn instance_from_host_name(host: &str) -> Result<String, String> {
    let first = host.trim().split('.').next().unwrap_or("");
    let mut out = String::with_capacity(first.len());
    let mut replaced = false;
    for c in first.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
            replaced = false;
        } else if !replaced {
            out.push('-');
            replaced = true;
        }
    }
    let trimmed = out.trim_matches('-');
    let cut = trimmed
        .get(..trimmed.len().min(63))
        .unwrap_or(trimmed)
        .trim_end_matches('-');
    if cut.is_empty() {
        return Err(format!(
            "cannot make an instance name from the host name {host:?}; set --registry.instance"
        ));
    }
    parse_instance(cut).map_err(|e| format!("{e} (from the host name); set --registry.instance"))
}

/// This host's name as the kernel knows it (`uname -n`).
pub fn host_name() -> Option<String> {
    #[cfg(target_os = "linux")]
    let name = Some(
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    );
    #[cfg(not(target_os = "linux"))]
    let name = sysinfo::System::host_name().ok();
    name.filter(|n| !n.trim().is_empty())
}

/// `--registry.advertise-address`: `ip:port`, `[v6]:port` or an IP alone (then the listen
/// port). Names are refused: the registry publishes an address record.
pub fn parse_advertise_address(s: &str) -> Result<Advertise, String> {
    let adv = if let Ok(sa) = s.parse::<SocketAddr>() {
        Advertise {
            ip: sa.ip(),
            port: Some(sa.port()),
        }
    } else if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
        Advertise { ip, port: None }
    } else {
        return Err(format!(
            "{s:?} is not ip:port or an IP address (host names are not accepted)"
        ));
    };
    if adv.ip.is_unspecified() || adv.ip.is_multicast() {
        return Err(format!("{s:?}: others cannot reach this exporter there"));
    }
    if adv.port == Some(0) {
        return Err(format!("{s:?}: port 0"));
    }
    Ok(adv)
}

/// `--registry.ttl`: a duration of at least [`MIN_TTL`], rounded up to whole seconds (the
/// registry counts leases in seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d < MIN_TTL {
        return Err(format!("{s:?}: at least {MIN_TTL:?}"));
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Ok(Duration::from_secs(secs))
}

/// `--registry.label`: `key=value`, keys `[a-zA-Z_][a-zA-Z0-9_]*` (they become
/// `__meta_heimdall_label_<key>` in http_sd), values without control characters.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    let mut chars = k.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || k.len() > 63 {
        return Err(format!(
            "{s:?}: the key must match [a-zA-Z_][a-zA-Z0-9_]* (at most 63 characters)"
        ));
    }
    if v.chars().any(char::is_control) || v.len() > 191 {
        return Err(format!(
            "{s:?}: the value must be at most 191 bytes without control characters"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

// --- the advertised address -------------------------------------------------------------------

/// The address registered for this exporter. An explicit `configured` wins (its port defaulting
/// to the listen port). Otherwise: the listen port with the listen IP when that is a specific
/// address, or, on a wildcard (`0.0.0.0`, `::`), the host's primary IPv4 address from
/// `primary_ipv4` (usually [`primary_ipv4`]), falling back to 127.0.0.1.
pub fn advertise_address(
    listen: SocketAddr,
    configured: Option<Advertise>,
    primary_ipv4: impl FnOnce() -> Option<Ipv4Addr>,
) -> SocketAddr {
    if let Some(a) = configured {
        return SocketAddr::new(a.ip, a.port.unwrap_or(listen.port()));
    }
    let ip = if listen.ip().is_unspecified() {
        IpAddr::V4(primary_ipv4().unwrap_or(Ipv4Addr::LOCALHOST))
    } else {
        listen.ip()
    };
    SocketAddr::new(ip, listen.port())
}

/// The IPv4 address this host would send from to reach the internet: connecting a UDP socket
/// only consults the routing table, no packet leaves. `None` without a default route, or if
/// the answer is a loopback or unspecified address.
pub fn primary_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(8, 8, 8, 8), 53)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

// --- state for /metrics -----------------------------------------------------------------------

/// What the registration loop reports to `/metrics`.
#[derive(Debug, Default)]
pub struct Status {
    registered: AtomicBool,
    failures: AtomicU64,
}

impl Status {
    /// Whether the last registration or renewal succeeded (and no deregistration followed).
    pub fn registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// Failed registration and renewal attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Writes `heimdall_exporter_registered` and `heimdall_exporter_registration_failures_total`.
    pub fn emit(&self, out: &mut Sink) {
        out.gauge(
            "heimdall_exporter_registered",
            "Whether the last registration or renewal in the Heimdall nameserver succeeded.",
            &[],
            if self.registered() { 1.0 } else { 0.0 },
        );
        out.counter(
            "heimdall_exporter_registration_failures_total",
            "Registration and renewal attempts in the Heimdall nameserver that failed.",
            &[],
            self.failures() as f64,
        );
    }
}

// --- the loop ---------------------------------------------------------------------------------

/// The body of `PUT /v1/services/{service}/instances/{instance}`.
#[derive(Debug, Clone, serde::Serialize)]
struct Body {
    address: IpAddr,
    port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    ttl_seconds: u64,
}

/// What a registry request came back with.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The `error` of a JSON error body, else the start of the body.
    message: String,
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    /// No usable answer: refused connection, timeout, 5xx, 408, 429. Retried with backoff.
    Unreachable(String),
    /// The registry said no (other 4xx, or an unexpected redirect): an operator must act.
    Refused(Answer),
}

/// Registers one exporter and keeps its lease until shutdown.
#[derive(Debug)]
pub struct Registrar {
    http: Http,
    /// The instance's URL in the registry.
    url: String,
    token: Option<Secret>,
    service: String,
    instance: String,
    body: Body,
    ttl: Duration,
    status: Arc<Status>,
}

impl Registrar {
    /// Reads the token, derives the advertised address from the bound `listen` address and
    /// builds the HTTP client.
    pub fn new(
        settings: &Settings,
        listen: SocketAddr,
        status: Arc<Status>,
    ) -> Result<Self, SetupError> {
        let token = match &settings.token {
            TokenSource::None => None,
            TokenSource::File(path) => Some(read_token(path)?),
            TokenSource::Env(t) => Some(t.clone()),
        };
        if let Some(t) = &token
            && http::HeaderValue::from_str(&format!("Bearer {}", t.expose())).is_err()
        {
            return Err(SetupError::Token(
                "must be printable ASCII (it goes into an HTTP header)",
            ));
        }
        let url = format!(
            "{}/v1/services/{}/instances/{}",
            settings.url, settings.service, settings.instance
        );
        let address = advertise_address(listen, settings.advertise, || {
            let found = primary_ipv4();
            if found.is_none() {
                tracing::warn!(
                    "no non-loopback IPv4 address found for the wildcard listen address; \
                     registering 127.0.0.1 (set --registry.advertise-address)"
                );
            }
            found
        });
        Ok(Self {
            http: Http::new(&url)?,
            url,
            token,
            service: settings.service.clone(),
            instance: settings.instance.clone(),
            body: Body {
                address: address.ip(),
                port: address.port(),
                labels: settings.labels.clone(),
                ttl_seconds: settings.ttl.as_secs(),
            },
            ttl: settings.ttl,
            status,
        })
    }

    /// The address and port this exporter is registered under.
    pub fn advertised(&self) -> SocketAddr {
        SocketAddr::new(self.body.address, self.body.port)
    }

    /// Registers, renews every third of the lease and retries failures until `shutdown`, then
    /// deregisters (within twice [`DEREGISTER_TIMEOUT`]). Never fails: the exporter serves on
    /// whatever the registry does.
    pub async fn run(self, shutdown: CancellationToken) {
        let renew_every = self.ttl / 3;
        let slowest = renew_every.clamp(INITIAL_BACKOFF, MAX_BACKOFF);
        tracing::info!(
            registry = %self.url,
            address = %self.advertised(),
            ttl = ?self.ttl,
            "registering in the nameserver"
        );
        let mut backoff = INITIAL_BACKOFF;
        let mut failed_in_row: u64 = 0;
        let mut last_failure: Option<u16> = None;
        let mut ever_registered = false;
        let mut attempted = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            attempted = true;
            let put = self.put();
            tokio::pin!(put);
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // A request already sent is processed anyway; let it finish first, or it
                    // could land after the deregistration and register the instance again.
                    let _ = tokio::time::timeout(DEREGISTER_TIMEOUT, put).await;
                    break;
                }
                r = &mut put => r,
            };
            let wait = match outcome {
                Ok(created) => {
                    self.status.registered.store(true, Ordering::Relaxed);
                    if !ever_registered {
                        tracing::info!(
                            service = %self.service,
                            instance = %self.instance,
                            failures = failed_in_row,
                            "registered in the nameserver"
                        );
                    } else if failed_in_row > 0 {
                        tracing::info!(
                            failures = failed_in_row,
                            "registered in the nameserver again"
                        );
                    } else if created {
                        tracing::info!(
                            "registered again: the nameserver had lost this instance (restart or expired lease)"
                        );
                    } else {
                        tracing::debug!("registration renewed");
                    }
                    ever_registered = true;
                    failed_in_row = 0;
                    last_failure = None;
                    backoff = INITIAL_BACKOFF;
                    renew_every
                }
                Err(failure) => {
                    self.status.registered.store(false, Ordering::Relaxed);
                    self.status.failures.fetch_add(1, Ordering::Relaxed);
                    failed_in_row += 1;
                    let kind = match &failure {
                        Failure::Unreachable(_) => 0,
                        Failure::Refused(a) => a.status,
                    };
                    let log = failed_in_row == 1
                        || failed_in_row.is_multiple_of(LOG_EVERY)
                        || last_failure != Some(kind);
                    last_failure = Some(kind);
                    let wait = match &failure {
                        Failure::Unreachable(_) => {
                            let w = jitter(backoff.min(slowest));
                            backoff = (backoff * 2).min(slowest);
                            w
                        }
                        Failure::Refused(_) => jitter(slowest),
                    };
                    if log {
                        self.log_failure(&failure, failed_in_row, wait);
                    } else {
                        tracing::debug!(?failure, failures = failed_in_row, "registration failed");
                    }
                    wait
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        // An attempt cut short or unanswered may still have registered, so any attempt is
        // undone; the registry answers 404 if there was nothing.
        if attempted {
            self.deregister(ever_registered).await;
        }
    }

    fn log_failure(&self, failure: &Failure, failures: u64, retry_in: Duration) {
        let retry_in = format!("{:.1}s", retry_in.as_secs_f64());
        match failure {
            Failure::Unreachable(reason) => tracing::warn!(
                registry = %self.url,
                error = %reason,
                failures,
                retry_in,
                "cannot reach the nameserver to register; retrying"
            ),
            Failure::Refused(a) => tracing::error!(
                registry = %self.url,
                status = a.status,
                error = %a.message,
                failures,
                retry_in,
                "the nameserver refused the registration; retrying slowly (check the token and names)"
            ),
        }
    }

    /// One registration or renewal; `Ok(true)` when the registry created the instance.
    async fn put(&self) -> Result<bool, Failure> {
        let body = serde_json::to_vec(&self.body)
            .map_err(|e| Failure::Unreachable(format!("cannot encode the registration: {e}")))?;
        let a = self
            .http
            .send(
                http::Method::PUT,
                &self.url,
                self.token.as_ref(),
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(Failure::Unreachable)?;
        match a.status {
            200..=299 => Ok(a.status == 201),
            408 | 429 | 500..=599 => Err(Failure::Unreachable(format!(
                "HTTP {}: {}",
                a.status, a.message
            ))),
            _ => Err(Failure::Refused(a)),
        }
    }

    /// Deletes the registration. Failures matter (warn) only if a registration ever succeeded.
    async fn deregister(&self, was_registered: bool) {
        let answer = self
            .http
            .send(
                http::Method::DELETE,
                &self.url,
                self.token.as_ref(),
                None,
                DEREGISTER_TIMEOUT,
            )
            .await;
        self.status.registered.store(false, Ordering::Relaxed);
        match answer {
            Ok(a) if (200..300).contains(&a.status) => {
                tracing::info!(registry = %self.url, "deregistered from the nameserver")
            }
            Ok(a) if a.status == 404 => {
                tracing::debug!(registry = %self.url, "was not registered at shutdown")
            }
            Ok(a) if was_registered => tracing::warn!(
                registry = %self.url,
                status = a.status,
                error = %a.message,
                "the nameserver refused the deregistration; the lease ends within {:?}",
                self.ttl
            ),
            Err(e) if was_registered => tracing::warn!(
                registry = %self.url,
                error = %e,
                "cannot deregister; the lease ends within {:?}",
                self.ttl
            ),
            other => tracing::debug!(?other, "deregistration of a never registered instance"),
        }
    }
}

/// Between half of `d` and all of it, so a fleet that lost the registry at the same moment
/// does not come back in lockstep.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Every RandomState is seeded afresh: enough randomness for spreading retries.
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = d / 2;
    half + half.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
}

fn read_token(path: &Path) -> Result<Secret, SetupError> {
    let bad = |reason: String| SetupError::TokenFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .ok_or_else(|| bad("no token in file".into()))
}

/// Boils an error answer down to one line: the `error` of `{"error": "..."}`, else its text.
#[cfg(feature = "registration")]
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if one_line.is_empty() {
        "(no message)".into()
    } else {
        one_line
    }
}

#[cfg(feature = "registration")]
#[derive(Debug)]
struct Http(reqwest::Client);

#[cfg(feature = "registration")]
impl Http {
    fn new(url: &str) -> Result<Self, SetupError> {
        reqwest::Url::parse(url).map_err(|e| SetupError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A registry does not redirect; following one would send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("heimdall-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(Self)
            .map_err(|e| SetupError::Client(e.to_string()))
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        token: Option<&Secret>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let mut req = self.0.request(method, url).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let mut resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Answer {
                status,
                message: String::new(),
            });
        }
        let mut body = Vec::new();
        // Bounded read: an error answer is a short JSON object.
        while body.len() < MAX_ERROR_BODY {
            match tokio::time::timeout(timeout, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        let mut message = error_message(&body);
        if resp.status().is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            message = format!("unexpected redirect to {to} (check --registry.url)");
        }
        Ok(Answer { status, message })
    }
}

/// reqwest's `Display` stops at the outermost layer ("error sending request"); the cause
/// (connection refused, timed out) is what an operator needs.
#[cfg(feature = "registration")]
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    if e.is_timeout() {
        return "timed out".into();
    }
    // The outermost layer only repeats the URL, which the log line has already.
    let Some(mut cause) = e.source() else {
        return e.to_string();
    };
    let mut out = cause.to_string();
    while let Some(c) = cause.source() {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c;
    }
    out
}

/// Without the `registration` feature there is no client: [`Registrar::new`] refuses.
#[cfg(not(feature = "registration"))]
#[derive(Debug)]
enum Http {}

#[cfg(not(feature = "registration"))]
impl Http {
    fn new(_url: &str) -> Result<Self, SetupError> {
        Err(SetupError::NotBuilt)
    }

    async fn send(
        &self,
        _method: http::Method,
        _url: &str,
        _token: Option<&Secret>,
        _body: Option<Vec<u8>>,
        _timeout: Duration,
    ) -> Result<Answer, String> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_from_host_names() {
        let ok = |h: &str| instance_from_host_name(h).unwrap();
        assert_eq!(ok("web-1"), "web-1");
        assert_eq!(ok("Web-1.example.com"), "web-1");
        assert_eq!(ok("db_01"), "db-01");
        assert_eq!(ok("my  host__x"), "my-host-x");
        assert_eq!(ok("-edge-"), "edge");
        assert_eq!(ok("héllo"), "h-llo");
        assert_eq!(ok(" node7 \n"), "node7");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(ok(&long), "a".repeat(62));
        assert_eq!(ok(&"x".repeat(100)), "x".repeat(63));
        for bad in ["", ".", "___", "ns", "NS.example.com", "---"] {
            let e = instance_from_host_name(bad).unwrap_err();
            assert!(e.contains("--registry.instance"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn explicit_names_are_validated_not_rewritten() {
        assert_eq!(parse_dns_label("Exporter").unwrap(), "exporter");
        assert_eq!(parse_instance("web-1").unwrap(), "web-1");
        for bad in ["", "a_b", "a.b", "-a", "a-", &"a".repeat(64)] {
            assert!(parse_dns_label(bad).is_err(), "{bad:?}");
        }
        assert!(parse_instance("ns").unwrap_err().contains("reserved"));
    }

    #[test]
    fn advertise_address_derivation() {
        let never = || -> Option<Ipv4Addr> { panic!("must not look up the primary address") };
        let primary = || Some(Ipv4Addr::new(10, 0, 0, 5));
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        // A specific listen IP is what others reach.
        assert_eq!(
            advertise_address(sa("192.168.1.9:9090"), None, never),
            sa("192.168.1.9:9090")
        );
        assert_eq!(
            advertise_address(sa("[2001:db8::1]:9090"), None, never),
            sa("[2001:db8::1]:9090")
        );
        // Wildcards take the primary IPv4 address, or loopback without one.
        assert_eq!(
            advertise_address(sa("0.0.0.0:9100"), None, primary),
            sa("10.0.0.5:9100")
        );
        assert_eq!(
            advertise_address(sa("[::]:9100"), None, primary),
            sa("10.0.0.5:9100")
        );
        assert_eq!(
            advertise_address(sa("0.0.0.0:9100"), None, || None),
            sa("127.0.0.1:9100")
        );
        // An explicit address wins; without a port it keeps the listen port.
        let explicit = parse_advertise_address("203.0.113.7:80").unwrap();
        assert_eq!(
            advertise_address(sa("0.0.0.0:9100"), Some(explicit), never),
            sa("203.0.113.7:80")
        );
        let ip_only = parse_advertise_address("203.0.113.7").unwrap();
        assert_eq!(
            advertise_address(sa("0.0.0.0:9100"), Some(ip_only), never),
            sa("203.0.113.7:9100")
        );
        let v6 = parse_advertise_address("[2001:db8::2]").unwrap();
        assert_eq!(
            advertise_address(sa("[::]:9100"), Some(v6), never),
            sa("[2001:db8::2]:9100")
        );
    }

    #[test]
    fn primary_ipv4_is_never_loopback() {
        // Whatever this machine's routes are, the answer is usable or absent.
        if let Some(ip) = primary_ipv4() {
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        }
    }

    #[test]
    fn flag_values() {
        assert!(parse_advertise_address("0.0.0.0:9100").is_err());
        assert!(parse_advertise_address("10.0.0.1:0").is_err());
        assert!(parse_advertise_address("host.example:9100").is_err());
        assert!(parse_advertise_address("224.0.0.1:9100").is_err());

        assert_eq!(parse_ttl("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_ttl("2500ms").unwrap(), Duration::from_secs(3));
        assert!(parse_ttl("1s").unwrap_err().contains("at least"));
        assert!(parse_ttl("30").is_err());

        assert_eq!(
            parse_registry_url("http://127.0.0.1:8053/").unwrap(),
            "http://127.0.0.1:8053"
        );
        assert_eq!(
            parse_registry_url("https://ns.example/heimdall").unwrap(),
            "https://ns.example/heimdall"
        );
        for bad in [
            "127.0.0.1:8053",
            "ftp://x",
            "http://",
            "http://:80",
            "http://x/?a=b",
        ] {
            assert!(parse_registry_url(bad).is_err(), "{bad:?}");
        }

        assert_eq!(parse_label("dc=fra").unwrap(), ("dc".into(), "fra".into()));
        assert_eq!(parse_label("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert_eq!(parse_label("_k=").unwrap(), ("_k".into(), String::new()));
        for bad in ["dc", "1dc=x", "d-c=x", "=x", "k=a\nb"] {
            assert!(parse_label(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(feature = "registration")]
    #[test]
    fn error_messages_are_one_bounded_line() {
        assert_eq!(
            error_message(br#"{"error":"invalid bearer token"}"#),
            "invalid bearer token"
        );
        assert_eq!(error_message(b"Bad\n  Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(b""), "(no message)");
        assert_eq!(
            error_message("x".repeat(5000).as_bytes()).len(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(800));
            assert!(
                (Duration::from_millis(400)..=Duration::from_millis(800)).contains(&j),
                "{j:?}"
            );
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = format!("{:?}", TokenSource::Env(Secret::new("hunter2")));
        assert!(!s.contains("hunter2"), "{s}");
    }
}
