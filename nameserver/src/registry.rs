//! The registry model: services, their instances and leases. Pure and synchronous; the
//! caller supplies `now`, so expiry is unit-tested without sleeping.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The name `ns.<zone>` carries the nameserver's own address, so no instance may take it.
pub const RESERVED_INSTANCE_NAMES: &[&str] = &["ns"];

/// Bounds on what clients may register. A request that would exceed one is rejected with
/// [`RegistryError`] and changes nothing.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Instances over all services; the zone, the SRV RRsets and memory grow with it.
    pub max_instances: usize,
    /// Labels per instance.
    pub max_labels: usize,
    /// Bytes in a label key. Keys become `__meta_heimdall_label_<key>` in http_sd.
    pub max_label_key_len: usize,
    /// Bytes in a label value. `key=value` must fit one TXT character-string (255 bytes).
    pub max_label_value_len: usize,
    /// Longest lease a client may ask for.
    pub max_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instances: 10_000,
            max_labels: 32,
            max_label_key_len: 63,
            max_label_value_len: 191,
            max_ttl: Duration::from_secs(86_400),
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("invalid label {key:?}: {reason}")]
    InvalidLabel { key: String, reason: String },
    #[error("invalid address {0}: {1}")]
    InvalidAddress(IpAddr, &'static str),
    #[error(
        "invalid health_path {0:?}: must start with '/', have no spaces, and be at most 256 bytes"
    )]
    InvalidHealthPath(String),
    #[error("invalid port 0")]
    InvalidPort,
    #[error("invalid ttl_seconds {0}: must be between 1 and {1}")]
    InvalidTtl(u64, u64),
    #[error("registry is full ({0} instances)")]
    Full(usize),
    #[error(
        "instance {instance:?} is already registered with address {existing} (service {service:?}); \
         one instance name is one DNS name and one host"
    )]
    AddressConflict {
        instance: String,
        service: String,
        existing: IpAddr,
    },
    #[error("no instance {instance:?} in service {service:?}")]
    NotFound { service: String, instance: String },
}

/// Whether an instance is answered in SRV queries. New instances start `Up`; the health
/// checker marks them `Down` after consecutive failed probes and `Up` again after successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

/// What a client sends to register or renew an instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Address the instance is reached at; becomes its A or AAAA record.
    pub address: IpAddr,
    /// Port of the service; goes into the SRV record.
    pub port: u16,
    /// Free-form labels; become TXT `key=value` strings and http_sd meta labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lease length; the instance is removed unless renewed within it. None: no expiry.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// HTTP path the health checker probes (`GET http://<address>:<port><path>`, 2xx = up).
    /// Absent: `/health`; `null`: the instance is not probed and stays up.
    #[serde(default = "default_health_path")]
    pub health_path: Option<String>,
}

/// Heimdall's services all answer `/health`.
pub fn default_health_path() -> Option<String> {
    Some("/health".to_owned())
}

/// One registered instance of a service.
#[derive(Debug, Clone)]
pub struct Instance {
    pub address: IpAddr,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    pub ttl: Option<Duration>,
    pub registered_at: SystemTime,
    pub expires_at: Option<Instant>,
    pub health_path: Option<String>,
    pub health: Health,
    /// Consecutive probe results against the current state (failures while up, successes
    /// while down); reset when the state flips.
    pub streak: u32,
}

/// What [`Registry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    /// Same address, port and labels: only the lease moved, so DNS need not change.
    Renewed,
    Updated,
}

/// Services by name, each with its instances by name. Names are validated DNS labels.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    services: BTreeMap<String, BTreeMap<String, Instance>>,
    limits: Limits,
    count: usize,
}

impl Registry {
    pub fn new(limits: Limits) -> Self {
        Self {
            services: BTreeMap::new(),
            limits,
            count: 0,
        }
    }

    /// Services and their instances, sorted by name.
    pub fn services(&self) -> &BTreeMap<String, BTreeMap<String, Instance>> {
        &self.services
    }

    /// Instances over all services.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Registers or renews `service/instance`. Names are lowercased before validation.
    pub fn register(
        &mut self,
        service: &str,
        instance: &str,
        reg: Registration,
        now: Instant,
    ) -> Result<Registered, RegistryError> {
        let service = dns_label("service", service)?;
        let instance = dns_label("instance", instance)?;
        if RESERVED_INSTANCE_NAMES.contains(&instance.as_str()) {
            return Err(RegistryError::InvalidName {
                what: "instance",
                name: instance,
                reason: "reserved for the nameserver itself",
            });
        }
        self.validate(&reg)?;
        // One instance name is one DNS owner name; two services may share it only for one host.
        for (other, instances) in &self.services {
            if let Some(i) = instances.get(&instance)
                && i.address != reg.address
                && *other != service
            {
                return Err(RegistryError::AddressConflict {
                    instance,
                    service: other.clone(),
                    existing: i.address,
                });
            }
        }
        let ttl = reg.ttl_seconds.map(Duration::from_secs);
        let expires_at = ttl.map(|t| now + t);
        let existing = self
            .services
            .get_mut(&service)
            .and_then(|s| s.get_mut(&instance));
        if let Some(i) = existing {
            let same = i.address == reg.address
                && i.port == reg.port
                && i.labels == reg.labels
                && i.health_path == reg.health_path;
            if i.address != reg.address || i.port != reg.port {
                // A new endpoint is a new thing to probe: give it the benefit of the doubt.
                i.health = Health::Up;
                i.streak = 0;
            }
            i.address = reg.address;
            i.port = reg.port;
            i.labels = reg.labels;
            i.health_path = reg.health_path;
            i.ttl = ttl;
            i.expires_at = expires_at;
            return Ok(if same {
                Registered::Renewed
            } else {
                Registered::Updated
            });
        }
        if self.count >= self.limits.max_instances {
            return Err(RegistryError::Full(self.limits.max_instances));
        }
        self.services.entry(service).or_default().insert(
            instance,
            Instance {
                address: reg.address,
                port: reg.port,
                labels: reg.labels,
                ttl,
                registered_at: SystemTime::now(),
                expires_at,
                health_path: reg.health_path,
                health: Health::Up,
                streak: 0,
            },
        );
        self.count += 1;
        Ok(Registered::Created)
    }

    /// Removes `service/instance`.
    pub fn deregister(&mut self, service: &str, instance: &str) -> Result<(), RegistryError> {
        let not_found = || RegistryError::NotFound {
            service: service.to_owned(),
            instance: instance.to_owned(),
        };
        let service_l = service.to_ascii_lowercase();
        let instances = self.services.get_mut(&service_l).ok_or_else(not_found)?;
        instances
            .remove(&instance.to_ascii_lowercase())
            .ok_or_else(not_found)?;
        if instances.is_empty() {
            self.services.remove(&service_l);
        }
        self.count -= 1;
        Ok(())
    }

    /// Removes every instance whose lease ended at or before `now`; returns them as
    /// `(service, instance)`.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for (service, instances) in &mut self.services {
            instances.retain(|name, i| {
                let keep = i.expires_at.is_none_or(|e| e > now);
                if !keep {
                    gone.push((service.clone(), name.clone()));
                }
                keep
            });
        }
        self.services.retain(|_, instances| !instances.is_empty());
        self.count -= gone.len();
        gone
    }

    /// Puts `service/instance` back as it was before a change (`None`: it did not exist).
    pub fn restore(&mut self, service: &str, instance: &str, previous: Option<Instance>) {
        match previous {
            Some(i) => {
                let instances = self.services.entry(service.to_owned()).or_default();
                if instances.insert(instance.to_owned(), i).is_none() {
                    self.count += 1;
                }
            }
            None => {
                let _ = self.deregister(service, instance);
            }
        }
    }

    /// Removes every instance of `service`; returns how many.
    pub fn deregister_service(&mut self, service: &str) -> usize {
        let n = self
            .services
            .remove(&service.to_ascii_lowercase())
            .map_or(0, |s| s.len());
        self.count -= n;
        n
    }

    /// The instance `service/instance`, if registered.
    pub fn get(&self, service: &str, instance: &str) -> Option<&Instance> {
        self.services.get(service)?.get(instance)
    }

    /// Moves `instance` to `address` in every service it is registered in; returns those.
    pub fn set_address(
        &mut self,
        instance: &str,
        address: IpAddr,
    ) -> Result<Vec<String>, RegistryError> {
        if address.is_unspecified() || address.is_multicast() {
            return Err(RegistryError::InvalidAddress(
                address,
                "not a unicast address",
            ));
        }
        let mut moved = Vec::new();
        for (service, instances) in &mut self.services {
            if let Some(i) = instances.get_mut(instance)
                && i.address != address
            {
                i.address = address;
                i.health = Health::Up;
                i.streak = 0;
                moved.push(service.clone());
            }
        }
        Ok(moved)
    }

    /// Services `instance` is registered in.
    pub fn services_of(&self, instance: &str) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, i)| i.contains_key(instance))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Records one probe result for `service/instance`; after `failures` consecutive failures
    /// an up instance goes down, after `successes` consecutive successes a down one comes
    /// back. Returns the new state when it flipped.
    pub fn record_probe(
        &mut self,
        service: &str,
        instance: &str,
        ok: bool,
        failures: u32,
        successes: u32,
    ) -> Option<Health> {
        let i = self.services.get_mut(service)?.get_mut(instance)?;
        let against = match (i.health, ok) {
            (Health::Up, true) | (Health::Down, false) => {
                i.streak = 0;
                return None;
            }
            (Health::Up, false) => failures,
            (Health::Down, true) => successes,
        };
        i.streak += 1;
        if i.streak < against.max(1) {
            return None;
        }
        i.streak = 0;
        i.health = if ok { Health::Up } else { Health::Down };
        Some(i.health)
    }

    /// Instances per service and state, for the `heimdall_nameserver_instances` gauge.
    pub fn counts(&self) -> Vec<(String, Health, usize)> {
        let mut out = Vec::new();
        for (service, instances) in &self.services {
            let up = instances
                .values()
                .filter(|i| i.health == Health::Up)
                .count();
            out.push((service.clone(), Health::Up, up));
            out.push((service.clone(), Health::Down, instances.len() - up));
        }
        out
    }

    /// The earliest lease end, so the expiry task can sleep until then.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.services
            .values()
            .flat_map(|s| s.values())
            .filter_map(|i| i.expires_at)
            .min()
    }

    fn validate(&self, reg: &Registration) -> Result<(), RegistryError> {
        let a = reg.address;
        if a.is_unspecified() {
            return Err(RegistryError::InvalidAddress(a, "unspecified address"));
        }
        if a.is_multicast() {
            return Err(RegistryError::InvalidAddress(a, "multicast address"));
        }
        if reg.port == 0 {
            return Err(RegistryError::InvalidPort);
        }
        let max_ttl = self.limits.max_ttl.as_secs();
        if let Some(t) = reg.ttl_seconds
            && !(1..=max_ttl).contains(&t)
        {
            return Err(RegistryError::InvalidTtl(t, max_ttl));
        }
        if let Some(p) = &reg.health_path
            && (!p.starts_with('/')
                || p.len() > 256
                || p.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(RegistryError::InvalidHealthPath(p.clone()));
        }
        if reg.labels.len() > self.limits.max_labels {
            return Err(RegistryError::InvalidLabel {
                key: String::new(),
                reason: format!("more than {} labels", self.limits.max_labels),
            });
        }
        for (k, v) in &reg.labels {
            let bad = |reason: String| RegistryError::InvalidLabel {
                key: k.clone(),
                reason,
            };
            if k.is_empty() || k.len() > self.limits.max_label_key_len {
                return Err(bad(format!(
                    "key must be 1 to {} bytes",
                    self.limits.max_label_key_len
                )));
            }
            let mut chars = k.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad("key must match [a-zA-Z_][a-zA-Z0-9_]*".into()));
            }
            if v.len() > self.limits.max_label_value_len {
                return Err(bad(format!(
                    "value longer than {} bytes",
                    self.limits.max_label_value_len
                )));
            }
            if v.chars().any(char::is_control) {
                return Err(bad("value contains control characters".into()));
            }
        }
        Ok(())
    }
}

/// Lowercases `name` and checks it is one DNS label of `[a-z0-9-]{1,63}`, not starting or
/// ending with `-` (RFC 1123 host names).
pub fn dns_label(what: &'static str, name: &str) -> Result<String, RegistryError> {
    let bad = |reason| RegistryError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    let lower = name.to_ascii_lowercase();
    if !lower
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("only letters, digits and '-' are allowed"));
    }
    if lower.starts_with('-') || lower.ends_with('-') {
        return Err(bad("must not start or end with '-'"));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(addr: &str, port: u16, ttl: Option<u64>) -> Registration {
        Registration {
            address: addr.parse().unwrap(),
            port,
            labels: BTreeMap::new(),
            ttl_seconds: ttl,
            health_path: None,
        }
    }

    #[test]
    fn probes_flip_state_after_streaks() {
        let mut r = Registry::default();
        r.register("exporter", "a", reg("10.0.0.1", 1, None), Instant::now())
            .unwrap();
        let mut probe = |ok| r.record_probe("exporter", "a", ok, 3, 2);
        assert_eq!(probe(false), None);
        assert_eq!(probe(false), None);
        assert_eq!(probe(true), None, "a success resets the failure streak");
        assert_eq!(probe(false), None);
        assert_eq!(probe(false), None);
        assert_eq!(probe(false), Some(Health::Down));
        assert_eq!(probe(true), None);
        assert_eq!(probe(true), Some(Health::Up));
        assert_eq!(r.record_probe("exporter", "gone", true, 3, 2), None);
    }

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label("instance", "Web-1").unwrap(), "web-1");
        assert!(dns_label("instance", "").is_err());
        assert!(dns_label("instance", "-a").is_err());
        assert!(dns_label("instance", "a_b").is_err());
        assert!(dns_label("instance", "a.b").is_err());
        assert!(dns_label("instance", &"a".repeat(64)).is_err());
        assert!(dns_label("instance", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn register_renew_update_deregister() {
        let mut r = Registry::default();
        let now = Instant::now();
        let ok = r.register("exporter", "web-1", reg("10.0.0.1", 9090, None), now);
        assert_eq!(ok, Ok(Registered::Created));
        let again = r.register("Exporter", "WEB-1", reg("10.0.0.1", 9090, None), now);
        assert_eq!(again, Ok(Registered::Renewed));
        let moved = r.register("exporter", "web-1", reg("10.0.0.1", 9100, None), now);
        assert_eq!(moved, Ok(Registered::Updated));
        assert_eq!(r.len(), 1);
        r.deregister("exporter", "web-1").unwrap();
        assert!(r.is_empty() && r.services().is_empty());
        assert!(matches!(
            r.deregister("exporter", "web-1"),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn limits_and_conflicts() {
        let mut r = Registry::new(Limits {
            max_instances: 1,
            ..Limits::default()
        });
        let now = Instant::now();
        r.register("exporter", "a", reg("10.0.0.1", 1, None), now)
            .unwrap();
        assert_eq!(
            r.register("exporter", "b", reg("10.0.0.2", 1, None), now),
            Err(RegistryError::Full(1))
        );
        let mut r = Registry::default();
        r.register("exporter", "a", reg("10.0.0.1", 1, None), now)
            .unwrap();
        assert!(matches!(
            r.register("scraper", "a", reg("10.0.0.2", 1, None), now),
            Err(RegistryError::AddressConflict { .. })
        ));
        r.register("scraper", "a", reg("10.0.0.1", 2, None), now)
            .unwrap();
        assert!(
            r.register("x", "ns", reg("10.0.0.1", 1, None), now)
                .is_err()
        );
        assert!(r.register("x", "b", reg("0.0.0.0", 1, None), now).is_err());
        assert!(r.register("x", "b", reg("10.0.0.1", 0, None), now).is_err());
        assert!(
            r.register("x", "b", reg("10.0.0.1", 1, Some(0)), now)
                .is_err()
        );
        let mut bad = reg("10.0.0.1", 1, None);
        bad.labels.insert("1x".into(), "v".into());
        assert!(matches!(
            r.register("x", "b", bad, now),
            Err(RegistryError::InvalidLabel { .. })
        ));
    }

    #[test]
    fn leases_expire() {
        let mut r = Registry::default();
        let now = Instant::now();
        r.register("exporter", "a", reg("10.0.0.1", 1, Some(5)), now)
            .unwrap();
        r.register("exporter", "b", reg("10.0.0.2", 1, None), now)
            .unwrap();
        assert_eq!(r.next_expiry(), Some(now + Duration::from_secs(5)));
        assert!(r.expire(now + Duration::from_secs(4)).is_empty());
        let gone = r.expire(now + Duration::from_secs(5));
        assert_eq!(gone, vec![("exporter".to_owned(), "a".to_owned())]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.next_expiry(), None);
    }
}
