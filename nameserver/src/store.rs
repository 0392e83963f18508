//! [`Store`]: the registry and the zone kept in step. Every change goes through here,
//! bumps the SOA serial and republishes the zone before the caller gets its answer, so a
//! client that registered can resolve its name at once.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::registry::{Registered, Registration, Registry, RegistryError};
use crate::zone::Zone;

/// The expiry task wakes at least this often, so a lease added while it sleeps is seen.
const EXPIRY_MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    serial: u32,
}

/// The registry plus the zone that serves it.
#[derive(Debug)]
pub struct Store {
    // A tokio mutex held across `publish`, so zones are published in the order of changes.
    inner: Mutex<Inner>,
    zone: Zone,
}

impl Store {
    pub fn new(registry: Registry, zone: Zone, serial: u32) -> Self {
        Self {
            inner: Mutex::new(Inner { registry, serial }),
            zone,
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Runs `read` over the registry.
    pub async fn read<T>(&self, read: impl FnOnce(&Registry) -> T) -> T {
        read(&self.inner.lock().await.registry)
    }

    /// The serial of the last published zone.
    pub async fn serial(&self) -> u32 {
        self.inner.lock().await.serial
    }

    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        reg: Registration,
    ) -> Result<Registered, RegistryError> {
        let mut inner = self.inner.lock().await;
        let done = inner
            .registry
            .register(service, instance, reg, Instant::now())?;
        if done != Registered::Renewed {
            self.publish(&mut inner).await;
        }
        Ok(done)
    }

    pub async fn deregister(&self, service: &str, instance: &str) -> Result<(), RegistryError> {
        let mut inner = self.inner.lock().await;
        inner.registry.deregister(service, instance)?;
        self.publish(&mut inner).await;
        Ok(())
    }

    /// Removes expired instances; returns how many.
    pub async fn expire(&self, now: Instant) -> usize {
        let mut inner = self.inner.lock().await;
        let gone = inner.registry.expire(now);
        for (service, instance) in &gone {
            tracing::info!(service, instance, "lease expired");
        }
        if !gone.is_empty() {
            self.publish(&mut inner).await;
        }
        gone.len()
    }

    async fn publish(&self, inner: &mut Inner) {
        // RFC 1982 serial arithmetic: wrapping is what secondaries expect.
        inner.serial = inner.serial.wrapping_add(1);
        self.zone.publish(&inner.registry, inner.serial).await;
    }

    /// Expires leases until `shutdown`: sleeps until the next lease ends (at most
    /// [`EXPIRY_MAX_SLEEP`]), then removes what has ended.
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
