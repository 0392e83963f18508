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

/// Runs the scrape pools.
pub struct Manager {
    storage: Arc<dyn Appendable>,
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
    pub fn new(storage: Arc<dyn Appendable>, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            storage,
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
                let client = client::build(&c.tls, c.compression, self.hosts.clone()).map_err(
                    |e| ApplyError::Pool {
                        job: c.job().to_owned(),
                        reason: e.to_string(),
                    },
                )?;
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
