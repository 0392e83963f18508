//! The DNS view of the registry: [`build`] turns a [`Registry`] into hickory records,
//! [`Zone`] serves them through an `InMemoryZoneHandler` and swaps them on every change.
//!
//! Names in zone `Z` (default `heimdall.internal.`):
//! - `Z` SOA and NS `ns.Z`; `ns.Z` A/AAAA the advertised DNS address.
//! - `<instance>.Z` A/AAAA its address, TXT one `key=value` string per label.
//! - `_<service>._tcp.Z` SRV `0 0 <port> <instance>.Z` for every healthy instance.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneHandler, ZoneType};

use crate::registry::{Health, Registry};

/// TTL of instance records: short, so a deregistered or expired instance leaves caches soon.
pub const RECORD_TTL: u32 = 15;
/// SOA minimum, the negative-caching TTL (RFC 2308): an instance registered right after a
/// NXDOMAIN answer is visible within this time.
pub const NEGATIVE_TTL: u32 = 5;
/// TTL of the apex SOA and NS records.
pub const APEX_TTL: u32 = 300;

/// Longest origin: `_<63-byte service>._tcp.` adds 70 bytes and a name may have 253, so
/// with this bound every name the registry accepts fits.
pub const MAX_ORIGIN_LEN: usize = 180;

/// Why the zone could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("invalid zone name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("cannot create the zone: {0}")]
    Handler(String),
}

/// Zone-wide settings.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// Fully qualified origin, e.g. `heimdall.internal.`.
    pub origin: Name,
    /// Address published for `ns.<origin>`; none when the server listens on a wildcard.
    pub ns_address: Option<IpAddr>,
}

impl ZoneConfig {
    /// Parses `origin` (a trailing dot is added when missing).
    pub fn new(origin: &str, ns_address: Option<IpAddr>) -> Result<Self, ZoneError> {
        let bad = |reason: String| ZoneError::Name {
            name: origin.to_owned(),
            reason,
        };
        let mut name = Name::from_ascii(origin).map_err(|e| bad(e.to_string()))?;
        name.set_fqdn(true);
        if name.is_root() {
            return Err(bad("the root zone cannot be served".into()));
        }
        if name.to_ascii().len() > MAX_ORIGIN_LEN {
            return Err(bad(format!(
                "longer than {MAX_ORIGIN_LEN} characters, leaving no room for instance names"
            )));
        }
        Ok(Self {
            origin: name.to_lowercase(),
            ns_address: ns_address.filter(|a| !a.is_unspecified()),
        })
    }

    fn child(&self, labels: &[&str]) -> Name {
        let mut n = self.origin.clone();
        for l in labels.iter().rev() {
            // Cannot fail: labels are validated by the registry (1 to 63 of [a-z0-9-], plus
            // `_`), and MAX_ORIGIN_LEN leaves room for them. Should it ever, the label is
            // dropped and the record lands on a wrong name rather than the server panicking.
            n = n.prepend_label(*l).unwrap_or(n);
        }
        n
    }

    /// `<instance>.<origin>`.
    pub fn instance_name(&self, instance: &str) -> Name {
        self.child(&[instance])
    }

    /// `_<service>._tcp.<origin>`.
    pub fn srv_name(&self, service: &str) -> Name {
        self.child(&[&format!("_{service}"), "_tcp"])
    }

    /// `ns.<origin>`.
    pub fn ns_name(&self) -> Name {
        self.child(&["ns"])
    }
}

/// Builds every record of the zone from `registry` with SOA `serial`.
pub fn build(zc: &ZoneConfig, registry: &Registry, serial: u32) -> BTreeMap<RrKey, RecordSet> {
    let mut map: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
    let mut add = |name: Name, ttl: u32, rdata: RData| {
        let key = RrKey::new(LowerName::new(&name), rdata.record_type());
        let set = map
            .entry(key)
            .or_insert_with(|| RecordSet::with_ttl(name.clone(), rdata.record_type(), ttl));
        set.insert(Record::from_rdata(name, ttl, rdata), serial);
    };
    let origin = zc.origin.clone();
    let ns = zc.ns_name();
    add(origin.clone(), APEX_TTL, RData::SOA(soa(zc, serial)));
    add(origin, APEX_TTL, RData::NS(NS(ns.clone())));
    if let Some(a) = zc.ns_address {
        add(ns, APEX_TTL, address_rdata(a));
    }
    for (service, instances) in registry.services() {
        let srv = zc.srv_name(service);
        for (name, i) in instances {
            let host = zc.instance_name(name);
            // The A/AAAA and TXT stay for down instances: `dig` shows them; SRV leaves them out.
            add(host.clone(), RECORD_TTL, address_rdata(i.address));
            if !i.labels.is_empty() {
                let strings = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                add(host.clone(), RECORD_TTL, RData::TXT(TXT::new(strings)));
            }
            if i.health == Health::Up {
                add(
                    srv.clone(),
                    RECORD_TTL,
                    RData::SRV(SRV::new(0, 0, i.port, host)),
                );
            }
        }
    }
    map
}

fn soa(zc: &ZoneConfig, serial: u32) -> SOA {
    let rname = zc.child(&["hostmaster"]);
    SOA::new(zc.ns_name(), rname, serial, 60, 10, 3600, NEGATIVE_TTL)
}

fn address_rdata(a: IpAddr) -> RData {
    match a {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The served zone. Cloning shares the handler.
#[derive(Clone)]
pub struct Zone {
    config: ZoneConfig,
    handler: Arc<InMemoryZoneHandler>,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("origin", &self.config.origin)
            .finish_non_exhaustive()
    }
}

impl Zone {
    /// Creates the handler with the records of `registry` at `serial`.
    pub fn new(config: ZoneConfig, registry: &Registry, serial: u32) -> Result<Self, ZoneError> {
        let records = build(&config, registry, serial);
        let handler = InMemoryZoneHandler::new(
            config.origin.clone(),
            records,
            ZoneType::Primary,
            // AXFR stays off until it can be restricted to allowed secondaries.
            AxfrPolicy::Deny,
        )
        .map_err(ZoneError::Handler)?;
        Ok(Self {
            config,
            handler: Arc::new(handler),
        })
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// The handler to register in a hickory `Catalog`.
    pub fn handler(&self) -> Arc<dyn ZoneHandler> {
        self.handler.clone()
    }

    /// The serial currently served.
    pub async fn serial(&self) -> u32 {
        self.handler.serial().await
    }

    /// Replaces every record with those of `registry` at `serial`, under one write lock, so a
    /// query sees either the old zone or the new one. Rebuilding everything is O(instances);
    /// at the 10,000-instance bound that is a few milliseconds per change.
    pub async fn publish(&self, registry: &Registry, serial: u32) {
        let records = build(&self.config, registry, serial);
        let mut guard = self.handler.records_mut().await;
        *guard = records.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registration;
    use hickory_proto::rr::RecordType;
    use std::time::Instant;

    #[test]
    fn records_for_two_instances() {
        let zc = ZoneConfig::new("Heimdall.Internal", Some("127.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(zc.origin.to_ascii(), "heimdall.internal.");
        let mut r = Registry::default();
        for (n, a) in [("web-1", "10.0.0.1"), ("web-2", "fd00::2")] {
            let mut labels = BTreeMap::new();
            labels.insert("rack".to_owned(), "r1".to_owned());
            let reg = Registration {
                address: a.parse().unwrap(),
                port: 9090,
                labels,
                ttl_seconds: None,
            };
            r.register("exporter", n, reg, Instant::now()).unwrap();
        }
        let map = build(&zc, &r, 7);
        let get = |name: &str, t: RecordType| {
            map.get(&RrKey::new(
                LowerName::new(&Name::from_ascii(name).unwrap()),
                t,
            ))
            .map(|s| s.records_without_rrsigs().count())
        };
        assert_eq!(get("heimdall.internal.", RecordType::SOA), Some(1));
        assert_eq!(get("heimdall.internal.", RecordType::NS), Some(1));
        assert_eq!(get("ns.heimdall.internal.", RecordType::A), Some(1));
        assert_eq!(
            get("_exporter._tcp.heimdall.internal.", RecordType::SRV),
            Some(2)
        );
        assert_eq!(get("web-1.heimdall.internal.", RecordType::A), Some(1));
        assert_eq!(get("web-2.heimdall.internal.", RecordType::AAAA), Some(1));
        assert_eq!(get("web-2.heimdall.internal.", RecordType::TXT), Some(1));
        assert_eq!(map.len(), 8);
    }
}
