//! [`Store`]: the registry, its journal on disk and the zone that serves it, kept in step.
//!
//! Every change goes through here: it is applied to the registry, written to the journal
//! (fsync) with a new SOA serial, and published as a new zone before the caller gets its
//! answer, so a client that registered can resolve its name at once and a restart keeps it.
//! Rebuilding the zone is O(instances), so concurrent changes share one rebuild: a writer
//! waits until a zone at least as new as its change is served, and whoever rebuilds first
//! covers everyone queued behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::Record;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::persist::{Change, Persist, StoredInstance};
use crate::registry::{Health, Registered, Registration, Registry, RegistryError};
use crate::update::{self, Rejected};
use crate::zone::{ZoneCell, ZoneConfig, ZoneData};

/// The expiry task wakes at least this often, so a lease added while it sleeps is seen.
const EXPIRY_MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// Serial of the newest change (what the next publish serves).
    serial: u32,
    /// Bumped by every change; the publisher serves up to the value it saw.
    generation: u64,
    persist: Option<Persist>,
}

/// Why a change was not kept.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot write the registry to disk: {0}")]
    Persist(String),
    #[error("this nameserver is a secondary; send changes to the primary at {0}")]
    Secondary(String),
}

/// The registry plus the zone that serves it.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    /// Generation of the zone now served; held while rebuilding so rebuilds queue.
    published: Mutex<u64>,
    zone: Arc<ZoneCell>,
    config: ZoneConfig,
    metrics: Arc<Metrics>,
    serial_tx: watch::Sender<u32>,
    /// Set on secondaries: writes are refused with this primary address.
    primary: Option<String>,
}

impl Store {
    /// A store serving `registry` at `serial`, journaling to `persist` when given.
    pub fn new(
        config: ZoneConfig,
        registry: Registry,
        serial: u32,
        persist: Option<Persist>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let zone = ZoneData::build(&config, &registry, serial);
        metrics.set_instances(&registry.counts());
        metrics.zone_serial.set(i64::from(serial));
        metrics.zone_records.set(zone.len() as i64);
        let (serial_tx, _) = watch::channel(serial);
        Self {
            inner: Mutex::new(Inner {
                registry,
                serial,
                generation: 0,
                persist,
            }),
            published: Mutex::new(0),
            zone: Arc::new(ZoneCell::new(zone)),
            config,
            metrics,
            serial_tx,
            primary: None,
        }
    }

    /// A secondary's store: the zone comes from transfers, and writes are refused.
    pub fn secondary(config: ZoneConfig, primary: String, metrics: Arc<Metrics>) -> Self {
        let mut s = Self::new(config, Registry::default(), 0, None, metrics);
        s.primary = Some(primary);
        s
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// The zone served, shared with the DNS handler.
    pub fn zone(&self) -> Arc<ZoneCell> {
        self.zone.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The primary's address when this is a secondary.
    pub fn primary(&self) -> Option<&str> {
        self.primary.as_deref()
    }

    /// Serials as they are published (for NOTIFY).
    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.serial_tx.subscribe()
    }

    /// Runs `read` over the registry.
    pub async fn read<T>(&self, read: impl FnOnce(&Registry) -> T) -> T {
        read(&self.inner.lock().await.registry)
    }

    /// The serial of the newest change.
    pub async fn serial(&self) -> u32 {
        self.inner.lock().await.serial
    }

    fn writable(&self) -> Result<(), ChangeError> {
        match &self.primary {
            Some(p) => Err(ChangeError::Secondary(p.clone())),
            None => Ok(()),
        }
    }

    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        reg: Registration,
    ) -> Result<Registered, ChangeError> {
        self.writable()?;
        let (service, instance) = (service.to_ascii_lowercase(), instance.to_ascii_lowercase());
        let mut inner = self.inner.lock().await;
        // Applied in place (renewals are frequent and a copy of a big registry is not free);
        // validation happens before any mutation, and a failed journal write is undone.
        let previous = inner.registry.get(&service, &instance).cloned();
        let done = inner
            .registry
            .register(&service, &instance, reg, Instant::now())?;
        if done == Registered::Renewed {
            // Only the lease moved: nothing to publish. A restart grants every lease a full
            // ttl, so renewals need not be journaled either.
            return Ok(done);
        }
        let key = [(service.clone(), instance.clone())];
        let generation = match self.journal(&mut inner, &key) {
            Ok(g) => g,
            Err(e) => {
                inner.registry.restore(&service, &instance, previous);
                return Err(e);
            }
        };
        drop(inner);
        self.publish_through(generation).await;
        Ok(done)
    }

    pub async fn deregister(&self, service: &str, instance: &str) -> Result<(), ChangeError> {
        self.writable()?;
        let mut inner = self.inner.lock().await;
        let mut next = inner.registry.clone();
        next.deregister(service, instance)?;
        let key = (service.to_ascii_lowercase(), instance.to_ascii_lowercase());
        let generation = self.commit(&mut inner, next, &[key])?;
        drop(inner);
        self.publish_through(generation).await;
        Ok(())
    }

    /// Applies an RFC 2136 update: prerequisites against the zone served, then the update
    /// section on a copy of the registry, swapped in only if all of it applied.
    pub async fn dns_update(
        &self,
        prerequisites: &[Record],
        updates: &[Record],
        lease_seconds: Option<u64>,
    ) -> Result<(), Rejected> {
        if let Some(p) = &self.primary {
            return Err(Rejected {
                code: hickory_proto::op::ResponseCode::Refused,
                reason: format!("secondary; the primary is {p}"),
            });
        }
        let mut inner = self.inner.lock().await;
        update::check_prerequisites(&self.zone.load(), prerequisites)?;
        let mut next = inner.registry.clone();
        let touched = update::apply(
            &self.config,
            &mut next,
            updates,
            lease_seconds,
            Instant::now(),
        )?;
        if touched.is_empty() {
            return Ok(());
        }
        let generation = self
            .commit(&mut inner, next, &touched)
            .map_err(|e| Rejected {
                code: hickory_proto::op::ResponseCode::ServFail,
                reason: e.to_string(),
            })?;
        drop(inner);
        self.publish_through(generation).await;
        Ok(())
    }

    /// Removes expired instances; returns how many.
    pub async fn expire(&self, now: Instant) -> usize {
        let mut inner = self.inner.lock().await;
        if inner.registry.next_expiry().is_none_or(|t| t > now) {
            return 0;
        }
        let mut next = inner.registry.clone();
        let gone = next.expire(now);
        if gone.is_empty() {
            return 0;
        }
        for (service, instance) in &gone {
            tracing::info!(service, instance, "lease expired");
        }
        let generation = match self.commit(&mut inner, next, &gone) {
            Ok(g) => g,
            // The journal failed: keep serving the old state; the next tick retries.
            Err(e) => {
                tracing::error!(error = %e, "cannot expire leases");
                return 0;
            }
        };
        drop(inner);
        self.publish_through(generation).await;
        gone.len()
    }

    /// Records probe results `(service, instance, ok)`; publishes when an instance changed
    /// state. Health is not journaled: after a restart every instance starts up.
    pub async fn record_probes(
        &self,
        results: &[(String, String, bool)],
        failures: u32,
        successes: u32,
    ) {
        let mut inner = self.inner.lock().await;
        let mut flipped = false;
        for (service, instance, ok) in results {
            if let Some(state) = inner
                .registry
                .record_probe(service, instance, *ok, failures, successes)
            {
                tracing::warn!(service, instance, ?state, "health changed");
                flipped = true;
            }
        }
        if !flipped {
            return;
        }
        inner.serial = inner.serial.wrapping_add(1);
        inner.generation += 1;
        let generation = inner.generation;
        drop(inner);
        self.publish_through(generation).await;
    }

    /// Replaces the registry wholesale (a secondary's view, rebuilt from a transferred zone).
    pub async fn replace_registry(&self, registry: Registry) {
        self.metrics.set_instances(&registry.counts());
        self.inner.lock().await.registry = registry;
    }

    /// [`Self::replace_registry`] without waiting; gives the registry back when the lock is
    /// held.
    pub fn try_replace_registry(&self, registry: Registry) -> Result<(), Registry> {
        match self.inner.try_lock() {
            Ok(mut inner) => {
                self.metrics.set_instances(&registry.counts());
                inner.registry = registry;
                Ok(())
            }
            Err(_) => Err(registry),
        }
    }

    /// Journals the changed `keys` of `next` with a new serial, then makes `next` current.
    fn commit(
        &self,
        inner: &mut Inner,
        next: Registry,
        keys: &[(String, String)],
    ) -> Result<u64, ChangeError> {
        let previous = std::mem::replace(&mut inner.registry, next);
        self.journal(inner, keys)
            .inspect_err(|_| inner.registry = previous)
    }

    /// Journals the changed `keys` of the (already changed) registry with a new serial.
    fn journal(&self, inner: &mut Inner, keys: &[(String, String)]) -> Result<u64, ChangeError> {
        let serial = inner.serial.wrapping_add(1);
        let next = &inner.registry;
        if let Some(p) = inner.persist.as_mut() {
            let changes: Vec<Change> = keys
                .iter()
                .map(|(s, i)| match next.get(s, i) {
                    Some(x) => Change::Put(StoredInstance {
                        service: s.clone(),
                        instance: i.clone(),
                        address: x.address,
                        port: x.port,
                        labels: x.labels.clone(),
                        ttl_seconds: x.ttl.map(|t| t.as_secs()),
                        health_path: x.health_path.clone(),
                    }),
                    None => Change::Delete {
                        service: s.clone(),
                        instance: i.clone(),
                    },
                })
                .collect();
            if let Err(e) = p.append(&changes, serial) {
                self.metrics.persist_errors.inc();
                return Err(ChangeError::Persist(e.to_string()));
            }
        }
        inner.serial = serial;
        inner.generation += 1;
        Ok(inner.generation)
    }

    /// Returns once the zone served includes generation `generation`.
    async fn publish_through(&self, generation: u64) {
        let mut published = self.published.lock().await;
        if *published >= generation {
            return;
        }
        let inner = self.inner.lock().await;
        let zone = ZoneData::build(&self.config, &inner.registry, inner.serial);
        let (serial, now_generation) = (inner.serial, inner.generation);
        let counts = inner.registry.counts();
        drop(inner);
        self.metrics.zone_serial.set(i64::from(serial));
        self.metrics.zone_records.set(zone.len() as i64);
        self.metrics.set_instances(&counts);
        self.zone.store(zone);
        *published = now_generation;
        self.serial_tx.send_replace(serial);
    }

    /// Writes a compact snapshot (at shutdown, so the next start replays nothing).
    pub async fn snapshot(&self) {
        if let Some(p) = self.inner.lock().await.persist.as_mut()
            && let Err(e) = p.snapshot_now()
        {
            tracing::error!(error = %e, "cannot write the registry snapshot");
        }
    }

    /// Expires leases until `shutdown`: sleeps until the next lease ends (at most
    /// a second), then removes what has ended.
    pub async fn run_expiry(&self, shutdown: CancellationToken) {
        loop {
            let now = Instant::now();
            let next = self.read(Registry::next_expiry).await;
            let wait = next
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(EXPIRY_MAX_SLEEP)
                .min(EXPIRY_MAX_SLEEP);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            self.expire(Instant::now()).await;
        }
    }
}

/// Rebuilds the registry a zone describes (a secondary's read-only view): every SRV of
/// `_<service>._tcp` with its target's address and TXT labels. Down instances are not in
/// the zone's SRV sets, so a secondary lists only healthy ones.
pub fn registry_from_zone(
    config: &ZoneConfig,
    zone: &ZoneData,
    limits: crate::registry::Limits,
) -> Registry {
    use hickory_proto::rr::{LowerName, RData, RecordType};
    let mut registry = Registry::new(limits);
    let now = Instant::now();
    for (name, set) in zone.sets() {
        if set.rtype != RecordType::SRV {
            continue;
        }
        let Some(service) = config.service_of(name) else {
            continue;
        };
        for r in &set.records {
            let RData::SRV(srv) = &r.data else { continue };
            let Some(instance) = config.instance_of(&srv.target) else {
                continue;
            };
            let host = LowerName::new(&srv.target);
            let address = [RecordType::A, RecordType::AAAA].iter().find_map(|t| {
                zone.rrset(&host, *t)
                    .and_then(|s| s.records.first())
                    .and_then(|r| r.data.ip_addr())
            });
            let Some(address) = address else { continue };
            let labels = zone
                .rrset(&host, RecordType::TXT)
                .and_then(|s| s.records.first())
                .map(|r| match &r.data {
                    RData::TXT(t) => t
                        .txt_data
                        .iter()
                        .filter_map(|s| {
                            let s = String::from_utf8_lossy(s);
                            s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
                        })
                        .collect(),
                    _ => Default::default(),
                })
                .unwrap_or_default();
            let reg = Registration {
                address,
                port: srv.port,
                labels,
                ttl_seconds: None,
                health_path: None,
            };
            if let Err(e) = registry.register(&service, &instance, reg, now) {
                tracing::debug!(error = %e, "transferred SRV not representable in the registry");
            }
        }
    }
    registry
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}
