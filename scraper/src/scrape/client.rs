//! The HTTP side of a scrape: one client per scrape pool (job), a resolver that knows the
//! addresses DNS discovery learnt, and a bounded body read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::discovery::dns::HostCache;

/// TLS settings of a job (`tls_config`), files already read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    /// PEM of the CA certificates that sign the targets' certificates (added to the system's).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate followed by its key, for targets that want one.
    pub identity_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

/// How a job authenticates (`basic_auth`, `authorization`).
#[derive(Clone, Default, PartialEq)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    /// `Authorization: <kind> <credentials>` (kind `Bearer` by default).
    Header {
        kind: String,
        credentials: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <secret>)"),
            Auth::Header { kind, .. } => write!(f, "Header({kind} <secret>)"),
        }
    }
}

/// Resolves from the [`HostCache`] first, then the system resolver.
#[derive(Debug)]
struct CachedResolver {
    hosts: Arc<HostCache>,
}

impl Resolve for CachedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        if let Some(ips) = self.hosts.get(name.as_str()) {
            let addrs: Addrs = Box::new(
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            return Box::pin(async move { Ok(addrs) });
        }
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(found.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

/// Why a client could not be built (bad certificate or key PEM).
#[derive(Debug, thiserror::Error)]
#[error("HTTP client: {0}")]
pub struct ClientError(String);

/// A client for one scrape pool. Timeouts are per request (the scrape timeout); the connect
/// timeout bounds a dead host below it.
pub fn build(
    tls: &TlsOptions,
    compression: bool,
    hosts: Arc<HostCache>,
) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("heimdall-scraper/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(CachedResolver { hosts }))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::limited(10))
        .gzip(compression)
        .tls_danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(pem) = &tls.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError(format!("ca_file: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(pem) = &tls.identity_pem {
        let id = reqwest::Identity::from_pem(pem)
            .map_err(|e| ClientError(format!("cert_file/key_file: {e}")))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| ClientError(e.to_string()))
}

/// What a scrape request can fail with; the text goes into the target's `lastError`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded ({0} bytes)")]
    TooBig(u64),
    #[error("context deadline exceeded")]
    Timeout,
}

/// Reads a response body into `buf` (cleared first), at most `limit` bytes (0 = no limit).
pub async fn read_body(
    mut resp: reqwest::Response,
    buf: &mut Vec<u8>,
    limit: u64,
) -> Result<(), FetchError> {
    buf.clear();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Http(error_chain(&e)))?
    {
        if limit > 0 && (buf.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooBig(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(())
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}
