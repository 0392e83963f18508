//! Scraping: a pool per job, a loop per target.
//!
//! The [`Manager`] holds one pool per `scrape_config`. A pool runs its discoverers (static,
//! file, DNS), and whenever they publish, the manager turns the job's target groups into
//! targets ([`target::from_groups`]) and starts a loop for each new target and stops the
//! loops of targets that went away (which then write their staleness markers). A config
//! reload ([`Manager::apply`]) replaces only the pools whose configuration changed.
//!
//! - [`target`]: labels and URL of a target (Prometheus' `PopulateLabels`), its health.
//! - [`scrape_loop`]: the per-target loop and its series cache ([`scrape_loop::Ingest`]).
//! - [`client`]: the HTTP client of a pool (TLS, auth, resolver with the DNS host cache).

pub mod client;
pub mod scrape_loop;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::discovery::dns::{DnsSd, DnsSdOptions, HostCache};
use crate::discovery::file::{FileSd, FileSdOptions};
use crate::discovery::{Discovered, TargetGroup};
use crate::model::Labels;
use crate::storage::Appendable;
use client::TlsOptions;
use scrape_loop::LoopOptions;
use target::{Populated, Target, TargetDefaults};

/// After a discovery update, targets are synced at most this often (Prometheus: 5 s).
pub const SYNC_THROTTLE: Duration = Duration::from_secs(1);
/// Targets one pool runs at most; more are reported as errors, not started.
pub const MAX_TARGETS_PER_POOL: usize = 100_000;

/// Everything one scrape pool (job) needs, resolved from the configuration (files read).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub defaults: TargetDefaults,
    pub loop_opts: LoopOptions,
    pub tls: TlsOptions,
    pub compression: bool,
    pub static_groups: Vec<TargetGroup>,
    pub file_sd: Vec<FileSdOptions>,
    pub dns_sd: Vec<DnsSdOptions>,
}

impl PoolConfig {
    pub fn job(&self) -> &str {
        &self.defaults.job
    }
}

struct Running {
    target: Arc<Target>,
    stop: CancellationToken,
}

struct Pool {
    config: Arc<PoolConfig>,
    opts: Arc<LoopOptions>,
    client: reqwest::Client,
    /// Stops the pool's discoverers.
    providers: CancellationToken,
    loops: HashMap<(Labels, String), Running>,
    dropped: Vec<Labels>,
    errors: Vec<String>,
}

impl Pool {
    fn stop(&mut self) {
        self.providers.cancel();
        for (_, r) in self.loops.drain() {
            r.stop.cancel();
        }
    }
}

/// A job's targets for the API.
#[derive(Debug, Clone)]
pub struct PoolTargets {
    pub job: String,
    pub active: Vec<Arc<Target>>,
    pub dropped: Vec<Labels>,
    /// Targets that could not be built (bad labels, bad interval, …).
    pub errors: Vec<String>,
}

/// Why a pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("job {job}: {reason}")]
    Pool { job: String, reason: String },
}

/// Metric metadata (TYPE, HELP, UNIT) seen in scrapes, for `/api/v1/metadata`: per metric
/// name the distinct entries across targets, bounded.
#[derive(Debug, Default)]
pub struct MetadataStore {
    map: Mutex<BTreeMap<String, Vec<Meta>>>,
}

/// One metric's metadata as a target exposes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

/// Metric names remembered at most, and distinct entries per name.
const MAX_METADATA_NAMES: usize = 100_000;
const MAX_METADATA_PER_NAME: usize = 16;

impl MetadataStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records changed entries of one target.
    pub fn record(&self, batch: Vec<(String, Meta)>) {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for (name, meta) in batch {
            if map.len() >= MAX_METADATA_NAMES && !map.contains_key(&name) {
                continue;
            }
            let entries = map.entry(name).or_default();
            if !entries.contains(&meta) {
                if entries.len() >= MAX_METADATA_PER_NAME {
                    entries.remove(0);
                }
                entries.push(meta);
            }
        }
    }

    /// `/api/v1/metadata` data: name → [{type, help, unit}], optionally one metric, at most
    /// `limit` names (0 = all).
    pub fn to_api(
        &self,
        metric: Option<&str>,
        limit: usize,
    ) -> BTreeMap<String, Vec<serde_json::Value>> {
        let map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.iter()
            .filter(|(n, _)| metric.is_none_or(|m| m == n.as_str()))
            .take(if limit == 0 { usize::MAX } else { limit })
            .map(|(n, entries)| {
                let list = entries
                    .iter()
                    .map(|m| serde_json::json!({"type": m.kind, "help": m.help, "unit": m.unit}))
                    .collect();
                (n.clone(), list)
            })
            .collect()
    }
}

/// Runs the scrape pools.
pub struct Manager {
    storage: Arc<dyn Appendable>,
    metadata: Arc<MetadataStore>,
    hosts: Arc<HostCache>,
    discovered: Arc<Discovered>,
    pools: Mutex<BTreeMap<String, Pool>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    pub fn new(
        storage: Arc<dyn Appendable>,
        metadata: Arc<MetadataStore>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            metadata,
            hosts: HostCache::new(),
            discovered: Discovered::new(),
            pools: Mutex::new(BTreeMap::new()),
            shutdown,
        })
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pool>> {
        match self.pools.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        }
    }

    /// Makes `configs` the running pools: unchanged pools keep running (their targets are not
    /// disturbed), changed and new ones (re)start, removed ones stop. All or nothing: a pool
    /// that cannot start (bad TLS files, resolver setup) fails the whole apply first.
    pub fn apply(&self, configs: Vec<PoolConfig>) -> Result<(), ApplyError> {
        let mut prepared = Vec::new();
        {
            let pools = self.pools();
            for c in configs {
                if pools.get(c.job()).is_some_and(|p| *p.config == c) {
                    prepared.push((c.job().to_owned(), None));
                    continue;
                }
                let client =
                    client::build(&c.tls, c.compression, self.hosts.clone()).map_err(|e| {
                        ApplyError::Pool {
                            job: c.job().to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                let mut dns = Vec::new();
                for o in &c.dns_sd {
                    dns.push(DnsSd::new(o.clone(), self.hosts.clone()).map_err(|e| {
                        ApplyError::Pool {
                            job: c.job().to_owned(),
                            reason: e.to_string(),
                        }
                    })?);
                }
                prepared.push((c.job().to_owned(), Some((c, client, dns))));
            }
        }
        let mut pools = self.pools();
        let keep: Vec<&String> = prepared.iter().map(|(j, _)| j).collect();
        let gone: Vec<String> = pools
            .keys()
            .filter(|j| !keep.contains(j))
            .cloned()
            .collect();
        for job in gone {
            if let Some(mut p) = pools.remove(&job) {
                p.stop();
            }
            self.discovered.clear_job(&job);
        }
        for (job, new) in prepared {
            let Some((config, client, dns)) = new else {
                continue;
            };
            if let Some(mut old) = pools.remove(&job) {
                old.stop();
            }
            self.discovered.clear_job(&job);
            let providers = self.shutdown.child_token();
            let mut index = 0;
            if !config.static_groups.is_empty() {
                self.discovered
                    .sink(&job, index)
                    .set(config.static_groups.clone());
                index += 1;
            }
            for o in &config.file_sd {
                let sink = self.discovered.sink(&job, index);
                tokio::spawn(FileSd::new(o.clone()).run(sink, providers.clone()));
                index += 1;
            }
            for sd in dns {
                let sink = self.discovered.sink(&job, index);
                tokio::spawn(sd.run(sink, providers.clone()));
                index += 1;
            }
            let opts = Arc::new(config.loop_opts.clone());
            pools.insert(
                job,
                Pool {
                    config: Arc::new(config),
                    opts,
                    client,
                    providers,
                    loops: HashMap::new(),
                    dropped: Vec::new(),
                    errors: Vec::new(),
                },
            );
        }
        drop(pools);
        self.sync();
        Ok(())
    }

    /// Starts and stops loops to match what discovery currently says.
    pub fn sync(&self) {
        let mut pools = self.pools();
        for (job, pool) in pools.iter_mut() {
            let groups = self.discovered.groups(job);
            let (populated, mut errors) = target::from_groups(&groups, &pool.config.defaults);
            let mut wanted: HashMap<(Labels, String), Target> = HashMap::new();
            let mut dropped = Vec::new();
            for p in populated {
                match p {
                    Populated::Target(t) => {
                        if wanted.len() >= MAX_TARGETS_PER_POOL {
                            errors.push(format!(
                                "more than {MAX_TARGETS_PER_POOL} targets; the rest are not scraped"
                            ));
                            break;
                        }
                        wanted.entry(t.key()).or_insert(t);
                    }
                    Populated::Dropped(l) => dropped.push(l),
                }
            }
            pool.loops.retain(|key, running| {
                let keep = wanted.contains_key(key);
                if !keep {
                    running.stop.cancel();
                }
                keep
            });
            for (key, t) in wanted {
                if pool.loops.contains_key(&key) {
                    continue;
                }
                let target = Arc::new(t);
                let stop = self.shutdown.child_token();
                tokio::spawn(scrape_loop::run(
                    target.clone(),
                    pool.client.clone(),
                    self.storage.clone(),
                    self.metadata.clone(),
                    pool.opts.clone(),
                    stop.clone(),
                    self.shutdown.clone(),
                ));
                pool.loops.insert(key, Running { target, stop });
            }
            dropped.truncate(MAX_TARGETS_PER_POOL);
            pool.dropped = dropped;
            errors.truncate(100);
            for e in &errors {
                tracing::warn!(job = %job, error = %e, "invalid target");
            }
            pool.errors = errors;
        }
    }

    /// Syncs on every discovery update (at most every [`SYNC_THROTTLE`]) until shutdown.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.discovered.changed() => {}
                () = self.shutdown.cancelled() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(SYNC_THROTTLE) => {}
                () = self.shutdown.cancelled() => break,
            }
            self.sync();
        }
        let mut pools = self.pools();
        for p in pools.values_mut() {
            p.stop();
        }
    }

    /// Every pool's targets, by job.
    pub fn targets(&self) -> Vec<PoolTargets> {
        let pools = self.pools();
        pools
            .iter()
            .map(|(job, p)| {
                let mut active: Vec<Arc<Target>> =
                    p.loops.values().map(|r| r.target.clone()).collect();
                active.sort_by(|a, b| a.labels.cmp(&b.labels));
                PoolTargets {
                    job: job.clone(),
                    active,
                    dropped: p.dropped.clone(),
                    errors: p.errors.clone(),
                }
            })
            .collect()
    }

    /// The addresses DNS discovery learnt (shared with the scrape clients).
    pub fn hosts(&self) -> &Arc<HostCache> {
        &self.hosts
    }
}

/// `Accept` for `protocols` as Prometheus builds it (weights from 0.6 down, then `*/*`).
/// The protobuf format is not parsed here, so it is never asked for.
pub fn accept_header(protocols: &[crate::config::ScrapeProtocol]) -> String {
    use crate::config::ScrapeProtocol;
    let mut weight = 6;
    let mut parts = Vec::new();
    for p in protocols {
        if *p == ScrapeProtocol::PrometheusProto {
            continue;
        }
        parts.push(format!("{};q=0.{weight}", p.media_type()));
        weight -= 1;
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// Reads a secret given inline or in a file (trailing newline trimmed).
fn secret(inline: &str, file: Option<&std::path::Path>, what: &str) -> Result<String, String> {
    match file {
        Some(f) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("{what} {}: {e}", f.display())),
        None => Ok(inline.to_owned()),
    }
}

impl PoolConfig {
    /// The pool of one `scrape_config` (global defaults already resolved into it by the
    /// config loader), reading password, credential and certificate files now.
    pub fn from_config(
        sc: &crate::config::ScrapeConfig,
        global: &crate::config::GlobalConfig,
    ) -> Result<Self, String> {
        use crate::config::DnsRecordType;
        use crate::discovery::dns::RecordKind;
        let job = sc.job_name.clone();
        let err = |e: String| format!("job {job}: {e}");
        let auth = match (&sc.basic_auth, &sc.authorization) {
            (Some(b), _) => client::Auth::Basic {
                username: b.username.clone(),
                password: secret(
                    b.password.expose(),
                    b.password_file.as_deref(),
                    "basic_auth.password_file",
                )
                .map_err(err)?,
            },
            (None, Some(a)) => client::Auth::Header {
                kind: a.kind.clone(),
                credentials: secret(
                    a.credentials.expose(),
                    a.credentials_file.as_deref(),
                    "authorization.credentials_file",
                )
                .map_err(err)?,
            },
            (None, None) => client::Auth::None,
        };
        let read = |p: &Option<std::path::PathBuf>,
                    what: &str|
         -> Result<Option<Vec<u8>>, String> {
            p.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| format!("job {job}: {what} {}: {e}", p.display()))
                })
                .transpose()
        };
        let tls_cfg = &sc.tls_config;
        let identity = match (
            read(&tls_cfg.cert_file, "tls_config.cert_file")?,
            read(&tls_cfg.key_file, "tls_config.key_file")?,
        ) {
            (Some(mut cert), Some(key)) => {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                Some(cert)
            }
            _ => None,
        };
        let tls = TlsOptions {
            ca_pem: read(&tls_cfg.ca_file, "tls_config.ca_file")?,
            identity_pem: identity,
            insecure_skip_verify: tls_cfg.insecure_skip_verify,
        };
        let static_groups = sc
            .static_configs
            .iter()
            .enumerate()
            .map(|(i, s)| TargetGroup {
                source: format!("{i}"),
                targets: s
                    .targets
                    .iter()
                    .map(|t| Labels::from_pairs([(crate::discovery::ADDRESS_LABEL, t.as_str())]))
                    .collect(),
                labels: s.labels.clone(),
            })
            .collect();
        let file_sd = sc
            .file_sd_configs
            .iter()
            .map(|f| FileSdOptions {
                files: f.files.clone(),
                refresh_interval: f.refresh_interval,
            })
            .collect();
        let dns_sd = sc
            .dns_sd_configs
            .iter()
            .map(|d| DnsSdOptions {
                names: d.names.clone(),
                kind: match d.record_type {
                    DnsRecordType::Srv => RecordKind::Srv,
                    DnsRecordType::A => RecordKind::A,
                    DnsRecordType::Aaaa => RecordKind::Aaaa,
                },
                port: d.port,
                refresh_interval: d.refresh_interval,
                nameservers: d.nameservers.clone(),
                timeout: Duration::from_secs(5).min(d.refresh_interval),
            })
            .collect();
        let _ = global;
        Ok(Self {
            defaults: TargetDefaults {
                job: job.clone(),
                scheme: sc.scheme.as_str().to_owned(),
                metrics_path: sc.metrics_path.clone(),
                params: sc.params.clone(),
                interval: sc.scrape_interval,
                timeout: sc.scrape_timeout,
                relabel: sc.relabel_configs.clone(),
            },
            loop_opts: LoopOptions {
                honor_labels: sc.honor_labels,
                honor_timestamps: sc.honor_timestamps,
                sample_limit: sc.sample_limit as usize,
                label_limit: sc.label_limit as usize,
                label_name_length_limit: sc.label_name_length_limit as usize,
                label_value_length_limit: sc.label_value_length_limit as usize,
                body_size_limit: sc.body_size_limit.0,
                metric_relabel: sc.metric_relabel_configs.clone(),
                accept: accept_header(&sc.scrape_protocols),
                auth,
            },
            tls,
            compression: sc.enable_compression,
            static_groups,
            file_sd,
            dns_sd,
        })
    }
}
