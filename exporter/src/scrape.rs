//! One scrape: every enabled collector runs concurrently on the blocking pool, each under a
//! timeout, and the framework adds `node_scrape_collector_{duration_seconds,success}`.
//!
//! Concurrent scrapes run collectors concurrently, as node_exporter does. A collector that hangs
//! (an NFS `statvfs`, a wedged sysfs read) cannot hold the scrape: its result is abandoned after
//! `timeout` and it reports `success 0`. While such an abandoned run is still stuck on its
//! thread the collector is skipped (also `success 0`) rather than started again, so a hung
//! mount costs a bounded number of blocked threads, not one per scrape.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::collector::{BuildError, Collector, CollectorOptions, Paths, Registration};
use crate::exposition::{Format, Sink, encode};
use crate::registration;

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Marks a collector run finished when its thread leaves `collect`.
struct Finish {
    state: Arc<AtomicU8>,
    abandoned: Arc<AtomicUsize>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if self.state.swap(DONE, Ordering::AcqRel) == ABANDONED {
            self.abandoned.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Last outcome of one collector, for `/health`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CollectorStatus {
    pub success: bool,
    pub duration_seconds: f64,
    /// Unix seconds of the last run's start; 0 before the first scrape.
    pub last_run_unix: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Entry {
    name: &'static str,
    collector: Arc<dyn Collector>,
    /// Runs that timed out and whose thread has not returned yet.
    abandoned: Arc<AtomicUsize>,
    status: Mutex<CollectorStatus>,
}

/// The enabled collectors and what is needed to run them.
pub struct Scraper {
    entries: Vec<Entry>,
    paths: Arc<Paths>,
    timeout: Duration,
    build_info: BuildInfo,
    /// Self-registration state, reported on every scrape when registration is on.
    registration: Option<Arc<registration::Status>>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("collectors", &self.names().collect::<Vec<_>>())
            .field("paths", &self.paths)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Labels of `heimdall_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc: &'static str,
}

impl BuildInfo {
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: option_env!("HEIMDALL_GIT_REVISION").unwrap_or("unknown"),
            rustc: option_env!("HEIMDALL_RUSTC_VERSION").unwrap_or("unknown"),
        }
    }
}

/// Why a `collect[]` / `exclude[]` filter was refused (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("couldn't create filtered metrics handler: collector {0:?} not available")]
    Unknown(String),
    #[error(
        "couldn't create filtered metrics handler: combined collect and exclude queries are not allowed"
    )]
    Combined,
}

impl Scraper {
    /// Builds the collectors in `enabled` (names from [`crate::collector::COLLECTORS`]).
    pub fn new(
        enabled: &[&'static Registration],
        options: &CollectorOptions,
        paths: Paths,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let mut entries = Vec::with_capacity(enabled.len());
        for reg in enabled {
            let collector: Arc<dyn Collector> = Arc::from((reg.build)(options)?);
            entries.push(Entry {
                name: reg.name,
                collector,
                abandoned: Arc::new(AtomicUsize::new(0)),
                status: Mutex::new(CollectorStatus::default()),
            });
        }
        Ok(Self {
            entries,
            paths: Arc::new(paths),
            timeout,
            build_info: BuildInfo::current(),
            registration: None,
        })
    }

    /// Adds `heimdall_exporter_registered` and `heimdall_exporter_registration_failures_total`
    /// from `status` to every scrape.
    pub fn with_registration(mut self, status: Arc<registration::Status>) -> Self {
        self.registration = Some(status);
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.name)
    }

    pub fn statuses(&self) -> Vec<(&'static str, CollectorStatus)> {
        self.entries
            .iter()
            .map(|e| (e.name, lock(&e.status).clone()))
            .collect()
    }

    /// Resolves node_exporter's `collect[]` / `exclude[]` parameters to entry indices.
    pub fn select(
        &self,
        collect: &[String],
        exclude: &[String],
    ) -> Result<Vec<usize>, FilterError> {
        if !collect.is_empty() && !exclude.is_empty() {
            return Err(FilterError::Combined);
        }
        let index = |name: &str| {
            self.entries
                .iter()
                .position(|e| e.name == name)
                .ok_or_else(|| FilterError::Unknown(name.to_owned()))
        };
        if !collect.is_empty() {
            let mut out = Vec::with_capacity(collect.len());
            for name in collect {
                let i = index(name)?;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            return Ok(out);
        }
        let mut skip = Vec::with_capacity(exclude.len());
        for name in exclude {
            skip.push(index(name)?);
        }
        Ok((0..self.entries.len())
            .filter(|i| !skip.contains(i))
            .collect())
    }

    /// Runs the selected collectors and writes the exposition into `out`.
    pub async fn scrape(&self, selected: &[usize], format: Format, out: &mut Vec<u8>) {
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let runs = selected
            .iter()
            .map(|&i| self.run_one(&self.entries[i], started_at));
        let results = futures_util::future::join_all(runs).await;

        let mut framework = Sink::new();
        let mut sinks: Vec<Sink> = Vec::with_capacity(results.len());
        for (&i, (sink, outcome)) in selected.iter().zip(results) {
            let name = self.entries[i].name;
            framework.gauge(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                &[("collector", name)],
                outcome.duration_seconds,
            );
            framework.gauge(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                &[("collector", name)],
                if outcome.success { 1.0 } else { 0.0 },
            );
            if let Some(sink) = sink {
                sinks.push(sink);
            }
        }
        let bi = &self.build_info;
        framework.gauge(
            "heimdall_exporter_build_info",
            "A metric with a constant '1' value labeled by version, revision, and rustc from which heimdall_exporter was built.",
            &[("version", bi.version), ("revision", bi.revision), ("rustc", bi.rustc)],
            1.0,
        );
        if let Some(status) = &self.registration {
            status.emit(&mut framework);
        }
        let mut refs: Vec<&Sink> = Vec::with_capacity(sinks.len() + 1);
        refs.push(&framework);
        refs.extend(sinks.iter());
        encode(&refs, format, out);
    }

    async fn run_one(&self, entry: &Entry, started_at: f64) -> (Option<Sink>, CollectorStatus) {
        let start = Instant::now();
        let result: Result<Sink, String> = if entry.abandoned.load(Ordering::Acquire) > 0 {
            Err("an earlier run timed out and is still running (hung?); skipped".to_owned())
        } else {
            let collector = Arc::clone(&entry.collector);
            let paths = Arc::clone(&self.paths);
            let abandoned = Arc::clone(&entry.abandoned);
            // RUNNING → DONE when the thread returns, RUNNING → ABANDONED on timeout; whichever
            // comes second knows the order, so the abandoned count is exact without a lock.
            let state = Arc::new(AtomicU8::new(RUNNING));
            let task_state = Arc::clone(&state);
            let task = tokio::task::spawn_blocking(move || {
                // Runs on return and on panic alike.
                let _finish = Finish {
                    state: task_state,
                    abandoned,
                };
                let mut sink = Sink::new();
                collector.collect(&paths, &mut sink).map(|()| sink)
            });
            match tokio::time::timeout(self.timeout, task).await {
                Ok(Ok(Ok(sink))) => Ok(sink),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(join)) => Err(format!("collector panicked: {join}")),
                Err(_) => {
                    // Count first, then claim: the thread's decrement can then never come
                    // before this increment (the count would wrap below zero meanwhile).
                    entry.abandoned.fetch_add(1, Ordering::AcqRel);
                    if state
                        .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        // It finished just now: nothing is stuck.
                        entry.abandoned.fetch_sub(1, Ordering::AcqRel);
                    }
                    Err(format!("timed out after {:?}", self.timeout))
                }
            }
        };
        let status = CollectorStatus {
            success: result.is_ok(),
            duration_seconds: start.elapsed().as_secs_f64(),
            last_run_unix: started_at,
            error: result.as_ref().err().cloned(),
        };
        match &result {
            Ok(_) => tracing::trace!(collector = entry.name, "collector succeeded"),
            Err(e) if e == "no data" => {
                tracing::debug!(collector = entry.name, "collector returned no data")
            }
            Err(e) => tracing::warn!(collector = entry.name, error = %e, "collector failed"),
        }
        *lock(&entry.status) = status.clone();
        (result.ok(), status)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned status only means a panic happened while it was being written; the value
    // is plain data and still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
