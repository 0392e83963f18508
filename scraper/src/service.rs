//! The scraper as one service: configuration, TSDB, scrape manager, query engine and HTTP API
//! wired together, with reload (SIGHUP, `POST /-/reload`) and a clean shutdown that flushes
//! the write-ahead log.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::flags::Flags;
use crate::model::Labels;
use crate::promql::{Engine, EngineOptions};
use crate::scrape::{Manager, MetadataStore, PoolConfig};
use crate::tsdb::{Options as TsdbOptions, Tsdb};
use crate::web::{self, ApiState, Status};

/// Why the scraper could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::tsdb::TsdbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
enum ConfigSource {
    File(PathBuf),
    Local(SocketAddr),
}

impl ConfigSource {
    fn load(&self) -> Result<Config, String> {
        match self {
            ConfigSource::File(p) => Config::load(p).map_err(|e| e.to_string()),
            ConfigSource::Local(ns) => Ok(Config::default_local(*ns)),
        }
    }
}

/// The live configuration and what the API reports about it.
struct Live {
    config: Config,
    ok: bool,
    at: SystemTime,
}

/// What the API asks of the service ([`Status`]).
struct ServiceStatus {
    source: ConfigSource,
    live: Mutex<Live>,
    tsdb: Arc<Tsdb>,
    manager: Arc<Manager>,
    metadata: Arc<MetadataStore>,
    flags: Flags,
}

impl ServiceStatus {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        match self.live.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        }
    }
}

impl Status for ServiceStatus {
    fn tsdb(&self) -> serde_json::Value {
        serde_json::to_value(self.tsdb.status()).unwrap_or_default()
    }

    fn config_yaml(&self) -> String {
        self.live()
            .config
            .to_yaml()
            .unwrap_or_else(|e| e.to_string())
    }

    fn flags(&self) -> BTreeMap<String, String> {
        self.flags.as_map()
    }

    fn metrics(&self) -> String {
        render_metrics(&self.tsdb, &self.manager, &self.live())
    }

    fn metadata(
        &self,
        metric: Option<&str>,
        limit: usize,
    ) -> BTreeMap<String, Vec<serde_json::Value>> {
        self.metadata.to_api(metric, limit)
    }

    fn reload(&self) -> Result<(), String> {
        let result = self.source.load().and_then(|c| {
            let pools = pool_configs(&c)?;
            self.manager.apply(pools).map_err(|e| e.to_string())?;
            Ok(c)
        });
        let mut live = self.live();
        live.at = SystemTime::now();
        match result {
            Ok(c) => {
                live.config = c;
                live.ok = true;
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                live.ok = false;
                tracing::error!(error = %e, "configuration reload failed; keeping the running one");
                Err(e)
            }
        }
    }

    fn retention(&self) -> String {
        crate::scrape::target::format_duration(self.flags.retention_time)
    }

    fn last_reload(&self) -> (bool, SystemTime) {
        let l = self.live();
        (l.ok, l.at)
    }

    fn external_labels(&self) -> Labels {
        self.live().config.global.external_labels.clone()
    }
}

/// Every scrape pool of `config`, files (passwords, certificates) read.
pub fn pool_configs(config: &Config) -> Result<Vec<PoolConfig>, String> {
    config
        .scrape_configs
        .iter()
        .map(|sc| PoolConfig::from_config(sc, &config.global))
        .collect()
}

/// The scraper, bound and ready to run.
pub struct Scraper {
    status: Arc<ServiceStatus>,
    tsdb: Arc<Tsdb>,
    manager: Arc<Manager>,
    engine: Arc<Engine>,
    listener: std::net::TcpListener,
    lookback: Duration,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Scraper {
    /// Loads the configuration, opens (and replays) the TSDB and binds the API. Nothing
    /// runs yet; `shutdown` will stop everything [`Self::run`] starts.
    pub fn bind(flags: &Flags, shutdown: CancellationToken) -> Result<Self, StartError> {
        let source = match &flags.config_file {
            Some(p) => ConfigSource::File(p.clone()),
            None => ConfigSource::Local(flags.nameserver),
        };
        let config = source.load().map_err(StartError::Config)?;
        let pools = pool_configs(&config).map_err(StartError::Config)?;
        let opts = TsdbOptions {
            retention: flags.retention_time,
            memory_budget_bytes: (flags.retention_size > 0).then_some(flags.retention_size),
            ..TsdbOptions::default()
        };
        let tsdb = if flags.tsdb_path.as_os_str().is_empty() {
            Tsdb::in_memory(opts)
        } else {
            Tsdb::open(&flags.tsdb_path, opts)?
        };
        let tsdb = Arc::new(tsdb);
        let metadata = MetadataStore::new();
        let manager = Manager::new(tsdb.clone(), metadata.clone(), shutdown.clone());
        let engine = Arc::new(Engine::new(EngineOptions {
            lookback_delta: flags.lookback_delta,
            max_samples: flags.query_max_samples,
            timeout: flags.query_timeout,
        }));
        let listener = std::net::TcpListener::bind(flags.listen_address).map_err(|source| {
            StartError::Bind {
                addr: flags.listen_address,
                source,
            }
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind {
                addr: flags.listen_address,
                source,
            })?;
        let status = Arc::new(ServiceStatus {
            source,
            live: Mutex::new(Live {
                config,
                ok: true,
                at: SystemTime::now(),
            }),
            tsdb: tsdb.clone(),
            manager: manager.clone(),
            metadata,
            flags: flags.clone(),
        });
        // Pools start in run(); validate them now so a bad config fails at start.
        let _ = pools;
        Ok(Self {
            status,
            tsdb,
            manager,
            engine,
            listener,
            lookback: flags.lookback_delta,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The storage, for embedding and tests.
    pub fn tsdb(&self) -> &Arc<Tsdb> {
        &self.tsdb
    }

    /// Scrapes and serves until the shutdown token fires, then flushes the TSDB.
    pub async fn run(self) -> Result<(), std::io::Error> {
        let shutdown = self.shutdown.clone();
        let config = self.status.live().config.clone();
        let pools = pool_configs(&config).map_err(std::io::Error::other)?;
        self.manager
            .apply(pools)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.manager.clone().run());
        let tsdb = self.tsdb.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let every = tsdb.options().maintenance_interval;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                let t = tsdb.clone();
                let now = crate::scrape::scrape_loop::now_ms();
                match tokio::task::spawn_blocking(move || t.maintain(now)).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "TSDB maintenance failed"),
                    Err(e) => tracing::error!(error = %e, "TSDB maintenance panicked"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        #[cfg(unix)]
        {
            let status = self.status.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
                    return;
                };
                loop {
                    tokio::select! {
                        _ = hup.recv() => {
                            let s = status.clone();
                            let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                        }
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
        let state = Arc::new(ApiState::new(
            self.tsdb.clone(),
            self.engine.clone(),
            self.manager.clone(),
            self.status.clone(),
            self.lookback,
        ));
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let served = web::serve(listener, state, shutdown.clone()).await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        let tsdb = self.tsdb.clone();
        match tokio::task::spawn_blocking(move || tsdb.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot flush the TSDB"),
            Err(e) => tracing::error!(error = %e, "TSDB close panicked"),
        }
        served
    }
}

/// The scraper's own metrics, OpenMetrics text.
fn render_metrics(tsdb: &Tsdb, manager: &Manager, live: &Live) -> String {
    let s = tsdb.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let suffix = if kind == "counter" { "_total" } else { "" };
        for (labels, v) in samples {
            let mut b = Vec::new();
            heimdall_common::float::write_go_float(&mut b, *v);
            let _ = writeln!(
                out,
                "{name}{suffix}{labels} {}",
                String::from_utf8_lossy(&b)
            );
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        "heimdall_scraper_tsdb_head_series",
        "gauge",
        "Series in memory.",
        &one(s.series),
    );
    metric(
        "heimdall_scraper_tsdb_head_chunks",
        "gauge",
        "Chunks in memory.",
        &one(s.chunks),
    );
    metric(
        "heimdall_scraper_tsdb_chunk_bytes",
        "gauge",
        "Bytes of sample chunks in memory.",
        &one(s.chunk_bytes),
    );
    metric(
        "heimdall_scraper_tsdb_samples_appended",
        "counter",
        "Samples appended.",
        &one(s.samples_appended_total),
    );
    metric(
        "heimdall_scraper_tsdb_out_of_order_samples",
        "counter",
        "Samples rejected as out of order.",
        &one(s.out_of_order_samples_total),
    );
    metric(
        "heimdall_scraper_tsdb_duplicate_samples",
        "counter",
        "Samples rejected as duplicates.",
        &one(s.duplicate_samples_total),
    );
    metric(
        "heimdall_scraper_tsdb_out_of_bounds_samples",
        "counter",
        "Samples older than the retention.",
        &one(s.out_of_bounds_samples_total),
    );
    metric(
        "heimdall_scraper_tsdb_chunks_dropped",
        "counter",
        "Chunks dropped, by reason (retention time, memory budget).",
        &[
            (
                "{reason=\"retention\"}".into(),
                s.chunks_dropped_retention_total as f64,
            ),
            (
                "{reason=\"budget\"}".into(),
                s.chunks_dropped_budget_total as f64,
            ),
        ],
    );
    metric(
        "heimdall_scraper_tsdb_wal_bytes",
        "counter",
        "Bytes written to the write-ahead log.",
        &one(s.wal_bytes_total),
    );
    metric(
        "heimdall_scraper_tsdb_wal_write_errors",
        "counter",
        "Failed write-ahead log writes (data kept in memory).",
        &one(s.wal_write_errors_total),
    );
    metric(
        "heimdall_scraper_tsdb_checkpoints",
        "counter",
        "Snapshots written.",
        &one(s.checkpoints_total),
    );
    let mut health: HashMap<(String, &'static str), u64> = HashMap::new();
    for pool in manager.targets() {
        for t in &pool.active {
            *health
                .entry((pool.job.clone(), t.state().health.as_str()))
                .or_default() += 1;
        }
    }
    let mut rows: Vec<(String, f64)> = health
        .into_iter()
        .map(|((job, h), n)| (format!("{{scrape_job=\"{job}\",health=\"{h}\"}}"), n as f64))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    metric(
        "heimdall_scraper_targets",
        "gauge",
        "Targets by job and health.",
        &rows,
    );
    metric(
        "heimdall_scraper_config_last_reload_successful",
        "gauge",
        "Whether the last configuration (re)load succeeded.",
        &[(String::new(), if live.ok { 1.0 } else { 0.0 })],
    );
    out.push_str("# EOF\n");
    out
}
