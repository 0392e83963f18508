//! Service discovery: where the targets come from.
//!
//! As in Prometheus, a discoverer produces *target groups*: a list of targets (each a label
//! set holding at least `__address__`, plus `__meta_*` labels) and labels common to the group.
//! Every discoverer has the same verb, `async fn run(self, out: Sink, shutdown)`, and replaces
//! its whole set of groups in its [`Sink`] each time it learns something new; a failed refresh
//! keeps the last good set. The scrape manager reads all sinks of a job when woken.
//!
//! - static: `static_configs`, set once ([`Sink::set`] at start).
//! - [`file`]: `file_sd_configs`, JSON or YAML files (globs in the last path element).
//! - [`dns`]: `dns_sd_configs`, SRV (or A/AAAA + port) lookups through hickory-resolver against
//!   the configured nameservers, tried in turn; the addresses the answers carry are kept in
//!   a [`dns::HostCache`] so scraping `web-1.heimdall.internal:9090` needs no system resolver.

pub mod dns;
pub mod file;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::model::Labels;

/// The label holding a target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";

/// Targets found together, with labels common to all of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetGroup {
    /// Where the group came from (file path and index, DNS name, …), for the API and logs.
    pub source: String,
    /// One label set per target; each has [`ADDRESS_LABEL`].
    pub targets: Vec<Labels>,
    /// Labels of every target in the group (a target's own labels win).
    pub labels: Labels,
}

/// Where discoverers publish, and the scrape manager reads: the current groups of every
/// provider, keyed by (job, provider index), and a wake-up for the manager.
#[derive(Debug, Default)]
pub struct Discovered {
    groups: Mutex<BTreeMap<(String, usize), Vec<TargetGroup>>>,
    changed: Notify,
}

impl Discovered {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A sink for provider `index` of `job`.
    pub fn sink(self: &Arc<Self>, job: &str, index: usize) -> Sink {
        Sink {
            to: self.clone(),
            key: (job.to_owned(), index),
        }
    }

    /// Every group of `job`, provider by provider.
    pub fn groups(&self, job: &str) -> Vec<TargetGroup> {
        let groups = match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        groups
            .iter()
            .filter(|((j, _), _)| j == job)
            .flat_map(|(_, g)| g.iter().cloned())
            .collect()
    }

    /// Forgets every provider (a config reload starts new ones).
    pub fn clear(&self) {
        match self.groups.lock() {
            Ok(mut g) => g.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }

    /// Forgets the providers of `job` (its pool is being replaced).
    pub fn clear_job(&self, job: &str) {
        let mut groups = match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        groups.retain(|(j, _), _| j != job);
    }

    /// Waits until some provider published.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// One provider's handle on [`Discovered`].
#[derive(Debug, Clone)]
pub struct Sink {
    to: Arc<Discovered>,
    key: (String, usize),
}

impl Sink {
    /// Replaces this provider's groups and wakes the manager when they changed.
    pub fn set(&self, groups: Vec<TargetGroup>) {
        let mut all = match self.to.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if all.get(&self.key) == Some(&groups) {
            return;
        }
        all.insert(self.key.clone(), groups);
        drop(all);
        // notify_one keeps a permit when the manager is not waiting yet: no update is missed.
        self.to.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sinks_replace_their_own_groups_and_wake_the_reader() {
        let d = Discovered::new();
        let (a, b) = (d.sink("node", 0), d.sink("node", 1));
        let group = |addr: &str| TargetGroup {
            source: addr.to_owned(),
            targets: vec![Labels::from_pairs([(ADDRESS_LABEL, addr)])],
            labels: Labels::empty(),
        };
        a.set(vec![group("a:1")]);
        b.set(vec![group("b:1")]);
        d.sink("other", 0).set(vec![group("c:1")]);
        // The permit left by set() makes this return at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), d.changed())
            .await
            .unwrap();
        assert_eq!(d.groups("node").len(), 2);
        a.set(vec![]);
        assert_eq!(d.groups("node"), vec![group("b:1")]);
        d.clear();
        assert!(d.groups("node").is_empty());
    }
}
