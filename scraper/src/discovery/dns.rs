//! `dns_sd_configs`: targets from DNS SRV (or A/AAAA plus a port) records.
//!
//! Lookups go through hickory-resolver. With our extension `nameservers: [host:port, …]` the
//! servers are asked in turn, each with its own timeout, until one gives a usable answer
//! (records, NODATA or NXDOMAIN — the last two mean "no targets"); a refresh where every
//! server failed keeps the last good target set, as Prometheus does. Without `nameservers`,
//! the system's resolver configuration (`/etc/resolv.conf`) is used.
//!
//! Labels, as Prometheus sets them: `__address__` (`host:port`, the SRV target without its final
//! dot), `__meta_dns_name`, `__meta_dns_srv_record_target`, `__meta_dns_srv_record_port`.
//!
//! Two things Prometheus does not do, both needed for a fleet registered in our nameserver:
//! - Addresses: the A/AAAA records of SRV targets (the additional section, or a lookup when
//!   they did not fit) go into a [`HostCache`] that the scrape client resolves from first, so
//!   `web-1.heimdall.internal:9090` is scraped without the system resolver knowing the zone.
//! - Big fleets: one SRV answer holds about 900 targets. For a name `_svc._tcp.Z` we first ask
//!   for `_shards._svc._tcp.Z` PTR (published by heimdall-nameserver); when it exists, the
//!   targets come from every shard it lists (≤ 256 each), so no fleet size is cut.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio_util::sync::CancellationToken;

use super::{ADDRESS_LABEL, Sink, TargetGroup};
use crate::model::Labels;

/// Shards followed for one name (4,096 × 256 targets is far beyond any registry's bound).
const MAX_SHARDS: usize = 4096;
/// Concurrent A/AAAA lookups for SRV targets whose addresses were not in the answer.
const ADDRESS_LOOKUPS: usize = 16;
/// Hosts remembered by a [`HostCache`]; beyond this, entries not refreshed longest go first.
const HOST_CACHE_MAX: usize = 200_000;

/// Which records a `dns_sd_config` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordKind {
    #[default]
    Srv,
    A,
    Aaaa,
}

/// One `dns_sd_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSdOptions {
    pub names: Vec<String>,
    pub kind: RecordKind,
    /// The port of A/AAAA targets (SRV records carry their own).
    pub port: u16,
    pub refresh_interval: Duration,
    /// Servers to ask, in order; empty = the system's resolver configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Per server and lookup.
    pub timeout: Duration,
}

/// Why a discoverer could not be set up (lookups that fail are logged and retried instead).
#[derive(Debug, thiserror::Error)]
pub enum DnsSdError {
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    #[error("cannot build a resolver for {server}: {reason}")]
    Resolver { server: String, reason: String },
}

/// Host name → addresses learnt from DNS answers, read by the scrape client before the
/// system resolver. Names are lowercase without the final dot.
#[derive(Debug, Default)]
pub struct HostCache {
    hosts: RwLock<HashMap<String, (Vec<IpAddr>, Instant)>>,
}

impl HostCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self, host: &str) -> Option<Vec<IpAddr>> {
        let hosts = match self.hosts.read() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        hosts.get(&key).map(|(a, _)| a.clone())
    }

    /// Records `addresses` for each host (replacing what was known).
    pub fn insert_all(&self, entries: impl IntoIterator<Item = (String, Vec<IpAddr>)>) {
        let now = Instant::now();
        let mut hosts = match self.hosts.write() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        for (host, addrs) in entries {
            if addrs.is_empty() {
                continue;
            }
            let key = host.trim_end_matches('.').to_ascii_lowercase();
            hosts.insert(key, (addrs, now));
        }
        if hosts.len() > HOST_CACHE_MAX {
            let mut ages: Vec<Instant> = hosts.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cut = ages[hosts.len() - HOST_CACHE_MAX];
            hosts.retain(|_, (_, t)| *t >= cut);
        }
    }

    pub fn len(&self) -> usize {
        match self.hosts.read() {
            Ok(h) => h.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A DNS discoverer.
#[derive(Debug)]
pub struct DnsSd {
    opts: DnsSdOptions,
    /// One resolver per server, asked in this order (or the system resolver alone).
    resolvers: Vec<(String, TokioResolver)>,
    hosts: Arc<HostCache>,
}

/// What one lookup found; `Ok(None)` is a definite "no such records" (NXDOMAIN or NODATA).
type Answer = Result<Option<hickory_resolver::lookup::Lookup>, String>;

impl DnsSd {
    pub fn new(opts: DnsSdOptions, hosts: Arc<HostCache>) -> Result<Self, DnsSdError> {
        let mut ro = ResolverOpts::default();
        ro.timeout = opts.timeout;
        // We rotate over the servers ourselves; no caching (answers must be fresh each refresh).
        ro.attempts = 1;
        ro.cache_size = 0;
        ro.num_concurrent_reqs = 1;
        ro.edns0 = true;
        ro.try_tcp_on_error = true;
        let mut resolvers = Vec::new();
        if opts.nameservers.is_empty() {
            let mut b =
                Resolver::builder_tokio().map_err(|e| DnsSdError::SystemConfig(e.to_string()))?;
            let o = b.options_mut();
            o.timeout = opts.timeout;
            o.cache_size = 0;
            let r = b
                .build()
                .map_err(|e| DnsSdError::SystemConfig(e.to_string()))?;
            resolvers.push(("system resolver".to_owned(), r));
        } else {
            for server in &opts.nameservers {
                let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                for c in &mut ns.connections {
                    c.port = server.port();
                }
                let mut o = ro.clone();
                o.use_hosts_file = ResolveHosts::Never;
                let r = Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(o)
                .build()
                .map_err(|e| DnsSdError::Resolver {
                    server: server.to_string(),
                    reason: e.to_string(),
                })?;
                resolvers.push((server.to_string(), r));
            }
        }
        Ok(Self {
            opts,
            resolvers,
            hosts,
        })
    }

    /// Refreshes every `refresh_interval` until `shutdown`, publishing each name's group;
    /// a name whose lookup failed on every server keeps its last group.
    pub async fn run(self, sink: Sink, shutdown: CancellationToken) {
        let mut last: HashMap<String, TargetGroup> = HashMap::new();
        loop {
            for name in &self.opts.names {
                match self.refresh_name(name).await {
                    Ok(group) => {
                        last.insert(name.clone(), group);
                    }
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "DNS discovery failed; keeping the last targets");
                    }
                }
            }
            let mut groups: Vec<TargetGroup> = self
                .opts
                .names
                .iter()
                .filter_map(|n| last.get(n).cloned())
                .collect();
            groups.retain(|g| !g.targets.is_empty());
            sink.set(groups);
            tokio::select! {
                () = tokio::time::sleep(self.opts.refresh_interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Asks the servers in turn for `name` `rtype`.
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        let mut errors = Vec::new();
        for (server, r) in &self.resolvers {
            match r.lookup(name, rtype).await {
                Ok(l) => return Ok(Some(l)),
                Err(e) if e.is_no_records_found() => return Ok(None),
                Err(e) => errors.push(format!("{server}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    /// The target group of one configured name.
    pub async fn refresh_name(&self, name: &str) -> Result<TargetGroup, String> {
        let qname = if self.opts.nameservers.is_empty() || name.ends_with('.') {
            name.to_owned()
        } else {
            // An explicit server is authoritative for full names; no search list applies.
            format!("{name}.")
        };
        let mut targets = Vec::new();
        match self.opts.kind {
            RecordKind::Srv => {
                let mut names = vec![qname.clone()];
                if qname.starts_with('_')
                    && let Some(shards) = self
                        .lookup(&format!("_shards.{qname}"), RecordType::PTR)
                        .await?
                {
                    names = shards
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::PTR(p) => Some(p.0.to_ascii()),
                            _ => None,
                        })
                        .take(MAX_SHARDS)
                        .collect();
                }
                let mut addresses: HashMap<String, Vec<IpAddr>> = HashMap::new();
                for n in &names {
                    let Some(answer) = self.lookup(n, RecordType::SRV).await? else {
                        continue;
                    };
                    for r in answer.additionals() {
                        if let Some(ip) = r.data.ip_addr() {
                            addresses
                                .entry(r.name.to_ascii().to_ascii_lowercase())
                                .or_default()
                                .push(ip);
                        }
                    }
                    for r in answer.answers() {
                        let RData::SRV(srv) = &r.data else { continue };
                        let target = srv.target.to_ascii();
                        let host = target.trim_end_matches('.');
                        targets.push(Labels::from_pairs([
                            (ADDRESS_LABEL, host_port(host, srv.port)),
                            ("__meta_dns_name", name.to_owned()),
                            ("__meta_dns_srv_record_target", target.clone()),
                            ("__meta_dns_srv_record_port", srv.port.to_string()),
                        ]));
                    }
                }
                if !self.opts.nameservers.is_empty() {
                    self.learn_addresses(&targets, addresses).await;
                }
            }
            RecordKind::A | RecordKind::Aaaa => {
                let rtype = if self.opts.kind == RecordKind::A {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                if let Some(answer) = self.lookup(&qname, rtype).await? {
                    for r in answer.answers() {
                        if let Some(ip) = r.data.ip_addr() {
                            targets.push(Labels::from_pairs([
                                (ADDRESS_LABEL, host_port(&ip.to_string(), self.opts.port)),
                                ("__meta_dns_name", name.to_owned()),
                            ]));
                        }
                    }
                }
            }
        }
        targets.sort();
        targets.dedup();
        Ok(TargetGroup {
            source: name.to_owned(),
            targets,
            labels: Labels::empty(),
        })
    }

    /// Puts the SRV targets' addresses into the host cache, looking up those the answers
    /// did not carry.
    async fn learn_addresses(&self, targets: &[Labels], mut known: HashMap<String, Vec<IpAddr>>) {
        let missing: Vec<String> = targets
            .iter()
            .filter_map(|t| t.get("__meta_dns_srv_record_target"))
            .map(str::to_ascii_lowercase)
            .filter(|h| !known.contains_key(h))
            .collect();
        for chunk in missing.chunks(ADDRESS_LOOKUPS) {
            let lookups = chunk.iter().map(|host| async move {
                let mut ips = Vec::new();
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Ok(Some(l)) = self.lookup(host, rtype).await {
                        ips.extend(l.answers().iter().filter_map(|r| r.data.ip_addr()));
                    }
                }
                (host.clone(), ips)
            });
            for (host, ips) in futures_util::future::join_all(lookups).await {
                known.insert(host, ips);
            }
        }
        self.hosts.insert_all(known);
    }
}

/// `host:port`, brackets around IPv6 addresses (Go's net.JoinHostPort).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("web-1.z", 9090), "web-1.z:9090");
        assert_eq!(host_port("::1", 9090), "[::1]:9090");
    }

    #[test]
    fn host_cache_is_case_and_dot_insensitive_and_bounded() {
        let c = HostCache::new();
        c.insert_all([("Web-1.Z.".to_owned(), vec!["10.0.0.1".parse().unwrap()])]);
        assert_eq!(c.get("web-1.z"), Some(vec!["10.0.0.1".parse().unwrap()]));
        assert_eq!(c.get("WEB-1.z."), c.get("web-1.z"));
        assert_eq!(c.get("web-2.z"), None);
        c.insert_all([("empty".to_owned(), vec![])]);
        assert_eq!(c.len(), 1);
    }
}
