//! The DNS view of the registry: [`build_records`] turns a [`Registry`] into records,
//! [`ZoneData`] indexes them for answering, and [`ZoneCell`] holds the zone currently served,
//! swapped whole on every change (a query sees the old zone or the new one, never a mix).
//!
//! Names in zone `Z` (default `heimdall.internal.`):
//! - `Z` SOA and NS `ns.Z`; `ns.Z` A/AAAA the advertised DNS address.
//! - `<instance>.Z` A/AAAA its address, TXT one `key=value` string per label.
//! - `_<service>._tcp.Z` SRV `0 0 <port> <instance>.Z` for every healthy instance. One TCP
//!   message holds about 900 such targets (measured with `dig`: 889 of 3,000 in 65,496 bytes);
//!   a larger set is answered with as many as fit and the TC bit set, never cut silently.
//!   Clients of big fleets use the shards below.
//! - `_shards._<service>._tcp.Z` PTR `_s<k>._<service>._tcp.Z` for k in 0..N, and TXT
//!   `count=<healthy instances>` `shards=<N>`; `_s<k>._<service>._tcp.Z` SRV holds the healthy
//!   instances whose name hashes (FNV-1a) to shard k. N is the smallest power of two that keeps
//!   every shard at or under [`SHARD_MAX`] targets, so each shard fits one TCP message (and
//!   usually one UDP message with EDNS): a fleet of any registrable size is fully discoverable,
//!   and a client can check it saw everything by summing the shards against `count`.
//! - DNS-SD (RFC 6763): `<instance>._<service>._tcp.Z` SRV + TXT per healthy instance, and
//!   `_services._dns-sd._udp.Z` PTR `_<service>._tcp.Z` per service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::registry::{Health, Registry};
use crate::wire::{self, Found, NegativeSoa, Packed};

/// TTL of instance records: short, so a deregistered or expired instance leaves caches soon.
pub const RECORD_TTL: u32 = 15;
/// SOA minimum, the negative-caching TTL (RFC 2308): an instance registered right after a
/// NXDOMAIN answer is visible within this time.
pub const NEGATIVE_TTL: u32 = 5;
/// TTL of the apex SOA and NS records.
pub const APEX_TTL: u32 = 300;
/// SOA timers: secondaries poll every REFRESH s, retry after RETRY s, and stop answering when
/// they could not reach the primary for EXPIRE s.
pub const SOA_REFRESH: i32 = 60;
pub const SOA_RETRY: i32 = 10;
pub const SOA_EXPIRE: i32 = 3600;
/// Most SRV targets in one shard: 256 SRV records of long names stay well under 16 KiB.
pub const SHARD_MAX: usize = 256;

/// Longest origin: `<63-byte instance>._<63-byte service>._tcp.` adds 135 bytes and a name
/// may have 253, so with this bound every name the registry accepts fits.
pub const MAX_ORIGIN_LEN: usize = 110;

/// Why the zone could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("invalid zone name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("invalid zone data: {0}")]
    Data(String),
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

    /// `<instance>._<service>._tcp.<origin>` (DNS-SD service instance name).
    pub fn dnssd_instance_name(&self, service: &str, instance: &str) -> Name {
        self.child(&[instance, &format!("_{service}"), "_tcp"])
    }

    /// `_shards._<service>._tcp.<origin>`.
    pub fn shard_index_name(&self, service: &str) -> Name {
        self.child(&["_shards", &format!("_{service}"), "_tcp"])
    }

    /// `_s<k>._<service>._tcp.<origin>`.
    pub fn shard_name(&self, service: &str, shard: usize) -> Name {
        self.child(&[&format!("_s{shard}"), &format!("_{service}"), "_tcp"])
    }

    /// `ns.<origin>`.
    pub fn ns_name(&self) -> Name {
        self.child(&["ns"])
    }

    /// The single label of `name` directly under the origin (`web-1` of `web-1.<origin>`).
    pub fn instance_of(&self, name: &Name) -> Option<String> {
        let origin_labels = self.origin.num_labels();
        if name.num_labels() != origin_labels + 1 || !self.origin.zone_of(name) {
            return None;
        }
        name.iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
    }

    /// The service of `_<service>._tcp.<origin>`.
    pub fn service_of(&self, name: &Name) -> Option<String> {
        let origin_labels = self.origin.num_labels();
        if name.num_labels() != origin_labels + 2 || !self.origin.zone_of(name) {
            return None;
        }
        let mut labels = name.iter();
        let service = labels.next()?.strip_prefix(b"_")?;
        if !labels.next()?.eq_ignore_ascii_case(b"_tcp") {
            return None;
        }
        Some(String::from_utf8_lossy(service).to_ascii_lowercase())
    }
}

/// Which shard `instance` belongs to when a service has `shards` (a power of two) shards.
pub fn shard_of(instance: &str, shards: usize) -> usize {
    // FNV-1a: stable across versions and platforms, so shard names do not move on upgrade.
    let mut h: u32 = 0x811c_9dc5;
    for b in instance.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize & (shards - 1)
}

/// The smallest power of two that keeps every shard of `instances` at or under [`SHARD_MAX`].
pub fn shard_count<'a>(instances: impl Iterator<Item = &'a str> + Clone) -> usize {
    let mut n = 1;
    loop {
        let mut sizes = vec![0usize; n];
        for i in instances.clone() {
            sizes[shard_of(i, n)] += 1;
        }
        // 2^16 shards hold far more than the registry's bound; stop there whatever the hash does.
        if sizes.iter().all(|&s| s <= SHARD_MAX) || n >= 1 << 16 {
            return n;
        }
        n *= 2;
    }
}

/// Every record of the zone built from `registry`, SOA first.
pub fn build_records(zc: &ZoneConfig, registry: &Registry, serial: u32) -> Vec<Record> {
    let mut out = Vec::with_capacity(8 + registry.len() * 5);
    let rec = |name: Name, ttl: u32, rdata: RData| Record::from_rdata(name, ttl, rdata);
    out.push(rec(
        zc.origin.clone(),
        APEX_TTL,
        RData::SOA(soa(zc, serial)),
    ));
    out.push(rec(
        zc.origin.clone(),
        APEX_TTL,
        RData::NS(NS(zc.ns_name())),
    ));
    if let Some(a) = zc.ns_address {
        out.push(rec(zc.ns_name(), APEX_TTL, address_rdata(a)));
    }
    let services_name = zc.child(&["_services", "_dns-sd", "_udp"]);
    // One A/AAAA and TXT per instance name, even when it is in several services.
    let mut hosts: HashMap<&str, &crate::registry::Instance> = HashMap::new();
    for (service, instances) in registry.services() {
        let srv_name = zc.srv_name(service);
        out.push(rec(
            services_name.clone(),
            RECORD_TTL,
            RData::PTR(PTR(srv_name.clone())),
        ));
        let healthy: Vec<(&str, &crate::registry::Instance)> = instances
            .iter()
            .filter(|(_, i)| i.health == Health::Up)
            .map(|(n, i)| (n.as_str(), i))
            .collect();
        let shards = shard_count(healthy.iter().map(|(n, _)| *n));
        let index = zc.shard_index_name(service);
        for k in 0..shards {
            out.push(rec(
                index.clone(),
                RECORD_TTL,
                RData::PTR(PTR(zc.shard_name(service, k))),
            ));
        }
        out.push(rec(
            index,
            RECORD_TTL,
            RData::TXT(TXT::new(vec![
                format!("count={}", healthy.len()),
                format!("shards={shards}"),
            ])),
        ));
        for (name, i) in instances {
            hosts.entry(name.as_str()).or_insert(i);
        }
        for (name, i) in healthy {
            let host = zc.instance_name(name);
            let srv = || RData::SRV(SRV::new(0, 0, i.port, host.clone()));
            out.push(rec(srv_name.clone(), RECORD_TTL, srv()));
            out.push(rec(
                zc.shard_name(service, shard_of(name, shards)),
                RECORD_TTL,
                srv(),
            ));
            let dnssd = zc.dnssd_instance_name(service, name);
            out.push(rec(dnssd.clone(), RECORD_TTL, srv()));
            out.push(rec(dnssd, RECORD_TTL, RData::TXT(labels_txt(i))));
        }
    }
    for (name, i) in hosts {
        // A/AAAA and TXT stay for down instances: `dig` shows them; SRV leaves them out.
        let host = zc.instance_name(name);
        out.push(rec(host.clone(), RECORD_TTL, address_rdata(i.address)));
        if !i.labels.is_empty() {
            out.push(rec(host, RECORD_TTL, RData::TXT(labels_txt(i))));
        }
    }
    out
}

fn labels_txt(i: &crate::registry::Instance) -> TXT {
    if i.labels.is_empty() {
        // RFC 6763 §6.1: a DNS-SD TXT record with no data holds one empty string.
        return TXT::new(vec![String::new()]);
    }
    TXT::new(i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn soa(zc: &ZoneConfig, serial: u32) -> SOA {
    let rname = zc.child(&["hostmaster"]);
    SOA::new(
        zc.ns_name(),
        rname,
        serial,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        NEGATIVE_TTL,
    )
}

fn address_rdata(a: IpAddr) -> RData {
    match a {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// Upper bound of a record's size on the wire (no name compression).
pub fn wire_len(r: &Record) -> usize {
    let name = r.name.len() + 1;
    let rdata = match &r.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(s) => 6 + s.target.len() + 1,
        RData::PTR(p) => p.0.len() + 1,
        RData::NS(n) => n.0.len() + 1,
        RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 1).sum(),
        RData::SOA(s) => s.mname.len() + s.rname.len() + 2 + 20,
        // Types this zone never builds; a transferred zone may have them. Be generous.
        _ => 512,
    };
    name + 10 + rdata
}

/// One RRset: its records, the A/AAAA of the names they point to (additional-section
/// data for SRV and NS), the wire size of the records, and the set encoded for the UDP fast
/// path ([`wire::pack`]; `None` for types it does not encode).
#[derive(Debug)]
pub struct RrSet {
    pub rtype: RecordType,
    pub records: Vec<Record>,
    pub glue: Vec<Record>,
    pub wire_len: usize,
    pub packed: Option<Packed>,
}

impl RrSet {
    fn new(r: Record) -> Self {
        Self {
            rtype: r.record_type(),
            wire_len: wire_len(&r),
            records: vec![r],
            glue: Vec::new(),
            packed: None,
        }
    }
}

/// What a name holds.
#[derive(Debug, Default)]
struct Node {
    sets: Vec<RrSet>,
}

/// The answer to a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The RRsets found (one, or every set at the name for ANY).
    Found(Vec<&'a RrSet>),
    /// The name exists (possibly as an empty non-terminal) but has no set of this type.
    NoData,
    /// No such name in the zone.
    NxDomain,
    /// The name is not in this zone.
    NotInZone,
}

/// An immutable, indexed zone: what one serial serves.
#[derive(Debug)]
pub struct ZoneData {
    origin: LowerName,
    origin_name: Name,
    /// The origin as an index key ([`wire::key`]).
    origin_key: Box<[u8]>,
    serial: u32,
    soa: Record,
    /// The SOA as negative answers carry it (TTL per RFC 2308), as a record and encoded.
    negative_soa: Record,
    negative_packed: NegativeSoa,
    /// Every name in the zone by its key ([`wire::key`]), so the UDP fast path looks up the
    /// bytes of the question.
    nodes: HashMap<Box<[u8]>, Node>,
    count: usize,
}

impl ZoneData {
    /// Indexes `records`, which must hold exactly one SOA at `origin` and nothing outside it.
    pub fn from_records(origin: &Name, records: Vec<Record>) -> Result<Self, ZoneError> {
        let mut nodes: HashMap<Box<[u8]>, Node> = HashMap::new();
        let mut soa = None;
        let count = records.len();
        for r in records {
            if !origin.zone_of(&r.name) {
                return Err(ZoneError::Data(format!("{} is outside {origin}", r.name)));
            }
            if r.dns_class != DNSClass::IN {
                return Err(ZoneError::Data(format!(
                    "{} has class {}",
                    r.name, r.dns_class
                )));
            }
            let rtype = r.record_type();
            if rtype == RecordType::SOA {
                if r.name != *origin || soa.is_some() {
                    return Err(ZoneError::Data(format!(
                        "misplaced or second SOA at {}",
                        r.name
                    )));
                }
                soa = Some(r.clone());
            }
            // Every ancestor up to the origin exists (empty non-terminals answer NODATA).
            let mut parent = r.name.base_name();
            while parent.num_labels() > origin.num_labels() {
                nodes.entry(wire::key(&parent)).or_default();
                parent = parent.base_name();
            }
            let node = nodes.entry(wire::key(&r.name)).or_default();
            match node.sets.iter_mut().find(|s| s.rtype == rtype) {
                Some(set) => {
                    if !set.records.iter().any(|x| x.data == r.data) {
                        set.wire_len += wire_len(&r);
                        set.records.push(r);
                    }
                }
                None => node.sets.push(RrSet::new(r)),
            }
        }
        let soa = soa.ok_or_else(|| ZoneError::Data(format!("no SOA at {origin}")))?;
        // Additional-section data: the addresses of SRV targets and NS hosts in this zone.
        let addresses = |nodes: &HashMap<Box<[u8]>, Node>, target: &Name| -> Vec<Record> {
            nodes
                .get(&wire::key(target))
                .map(|n| {
                    n.sets
                        .iter()
                        .filter(|s| matches!(s.rtype, RecordType::A | RecordType::AAAA))
                        .flat_map(|s| s.records.iter().cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut glue: Vec<(Box<[u8]>, RecordType, Vec<Record>)> = Vec::new();
        for (name, node) in &nodes {
            for set in &node.sets {
                let mut g = Vec::new();
                for r in &set.records {
                    match &r.data {
                        RData::SRV(s) => g.extend(addresses(&nodes, &s.target)),
                        RData::NS(n) => g.extend(addresses(&nodes, &n.0)),
                        _ => {}
                    }
                }
                if !g.is_empty() {
                    glue.push((name.clone(), set.rtype, g));
                }
            }
        }
        for (name, rtype, g) in glue {
            if let Some(set) = nodes
                .get_mut(&name)
                .and_then(|n| n.sets.iter_mut().find(|s| s.rtype == rtype))
            {
                set.glue = g;
            }
        }
        for (name, node) in &mut nodes {
            for set in &mut node.sets {
                set.packed = wire::pack(name, &set.records, &set.glue);
            }
        }
        let RData::SOA(soa_data) = soa.data.clone() else {
            return Err(ZoneError::Data(format!(
                "the SOA at {origin} has no SOA data"
            )));
        };
        Ok(Self::assemble(origin, soa, &soa_data, nodes, count))
    }

    fn assemble(
        origin: &Name,
        soa: Record,
        soa_data: &SOA,
        nodes: HashMap<Box<[u8]>, Node>,
        count: usize,
    ) -> Self {
        let origin_key = wire::key(origin);
        let mut negative_soa = soa.clone();
        negative_soa.ttl = soa.ttl.min(soa_data.minimum);
        let negative_packed = NegativeSoa::new(soa.ttl, soa_data, &origin_key);
        Self {
            origin: LowerName::new(origin),
            origin_name: origin.clone(),
            origin_key,
            serial: soa_data.serial,
            soa,
            negative_soa,
            negative_packed,
            nodes,
            count,
        }
    }

    /// The zone built from `registry`.
    pub fn build(zc: &ZoneConfig, registry: &Registry, serial: u32) -> Self {
        let records = build_records(zc, registry, serial);
        // Cannot fail: build_records makes one SOA and only names under the origin.
        Self::from_records(&zc.origin, records).unwrap_or_else(|e| {
            tracing::error!(error = %e, "built an invalid zone; serving the apex only");
            Self::empty(zc, serial)
        })
    }

    /// A zone with only its SOA and NS, built directly (nothing to validate).
    pub fn empty(zc: &ZoneConfig, serial: u32) -> Self {
        let soa_data = soa(zc, serial);
        let soa = Record::from_rdata(zc.origin.clone(), APEX_TTL, RData::SOA(soa_data.clone()));
        let ns = Record::from_rdata(zc.origin.clone(), APEX_TTL, RData::NS(NS(zc.ns_name())));
        let key = wire::key(&zc.origin);
        let mut sets = vec![RrSet::new(soa.clone()), RrSet::new(ns)];
        for set in &mut sets {
            set.packed = wire::pack(&key, &set.records, &set.glue);
        }
        let nodes = HashMap::from([(key, Node { sets })]);
        Self::assemble(&zc.origin, soa, &soa_data, nodes, 2)
    }

    pub fn origin(&self) -> &Name {
        &self.origin_name
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The apex SOA.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA for the authority section of NXDOMAIN and NODATA answers: its TTL is the
    /// smaller of the SOA's TTL and MINIMUM (RFC 2308 §3).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// [`Self::negative_soa`] for the UDP fast path.
    pub fn negative_packed(&self) -> &NegativeSoa {
        &self.negative_packed
    }

    /// The origin as an index key ([`wire::key`]).
    pub fn origin_key(&self) -> &[u8] {
        &self.origin_key
    }

    /// The packed set of type `rtype` at the name whose key is `key`, which must be in the
    /// zone ([`wire::in_zone`]).
    pub fn packed(&self, key: &[u8], rtype: u16) -> Found<'_> {
        let Some(node) = self.nodes.get(key) else {
            return Found::NxDomain;
        };
        match node.sets.iter().find(|s| u16::from(s.rtype) == rtype) {
            None => Found::NoData,
            Some(set) => set.packed.as_ref().map_or(Found::Unpacked, Found::Set),
        }
    }

    /// Records in the zone.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `name` is at or under the origin.
    pub fn contains(&self, name: &LowerName) -> bool {
        self.origin.zone_of(name)
    }

    /// The set of `rtype` at `name`.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&RrSet> {
        self.nodes
            .get(&wire::key(name))
            .and_then(|n| n.sets.iter().find(|s| s.rtype == rtype))
    }

    /// Whether `name` exists (with records, or as an empty non-terminal).
    pub fn name_exists(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(&wire::key(name))
    }

    /// Whether `name` owns any record.
    pub fn name_in_use(&self, name: &LowerName) -> bool {
        self.nodes
            .get(&wire::key(name))
            .is_some_and(|n| !n.sets.is_empty())
    }

    /// Answers `rtype` at `name` (`ANY` gives every set at the name).
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Lookup<'_> {
        if !self.origin.zone_of(name) {
            return Lookup::NotInZone;
        }
        let Some(node) = self.nodes.get(&wire::key(name)) else {
            return Lookup::NxDomain;
        };
        let found: Vec<&RrSet> = if rtype == RecordType::ANY {
            node.sets.iter().collect()
        } else {
            node.sets.iter().filter(|s| s.rtype == rtype).collect()
        };
        if found.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found(found)
        }
    }

    /// Every record for a zone transfer: the SOA first, then all others (the SOA not again).
    pub fn transfer_records(&self) -> impl Iterator<Item = &Record> {
        std::iter::once(&self.soa).chain(
            self.nodes
                .values()
                .flat_map(|n| n.sets.iter())
                .filter(|s| s.rtype != RecordType::SOA)
                .flat_map(|s| s.records.iter()),
        )
    }

    /// Every RRset with its owner name, for rebuilding a registry from a transferred zone.
    pub fn sets(&self) -> impl Iterator<Item = (&Name, &RrSet)> {
        self.nodes
            .values()
            .flat_map(|n| n.sets.iter())
            .filter_map(|s| s.records.first().map(|r| (&r.name, s)))
    }
}

/// The zone being served, replaced whole on every change.
#[derive(Debug)]
pub struct ZoneCell {
    current: RwLock<Arc<ZoneData>>,
}

impl ZoneCell {
    pub fn new(zone: ZoneData) -> Self {
        Self {
            current: RwLock::new(Arc::new(zone)),
        }
    }

    /// The zone now served; cheap (an `Arc` clone under a read lock held for nanoseconds).
    pub fn load(&self) -> Arc<ZoneData> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serves `zone` from now on.
    pub fn store(&self, zone: ZoneData) {
        let zone = Arc::new(zone);
        match self.current.write() {
            Ok(mut g) => *g = zone,
            Err(poisoned) => *poisoned.into_inner() = zone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registration;
    use std::collections::BTreeMap;
    use std::time::Instant;

    fn lname(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).unwrap())
    }

    fn registry(n: usize) -> Registry {
        let mut r = Registry::default();
        for i in 0..n {
            let mut labels = BTreeMap::new();
            labels.insert("rack".to_owned(), "r1".to_owned());
            let reg = Registration {
                address: format!("10.0.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
                port: 9090,
                labels,
                ttl_seconds: None,
                health_path: None,
            };
            r.register("exporter", &format!("web-{i}"), reg, Instant::now())
                .unwrap();
        }
        r
    }

    #[test]
    fn records_for_two_instances() {
        let zc = ZoneConfig::new("Heimdall.Internal", Some("127.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(zc.origin.to_ascii(), "heimdall.internal.");
        let mut r = registry(1);
        let reg = Registration {
            address: "fd00::2".parse().unwrap(),
            port: 9100,
            labels: BTreeMap::new(),
            ttl_seconds: None,
            health_path: None,
        };
        r.register("exporter", "web-v6", reg, Instant::now())
            .unwrap();
        let z = ZoneData::build(&zc, &r, 7);
        assert_eq!(z.serial(), 7);
        let count = |name: &str, t: RecordType| match z.lookup(&lname(name), t) {
            Lookup::Found(sets) => sets.iter().map(|s| s.records.len()).sum(),
            _ => 0,
        };
        assert_eq!(count("heimdall.internal.", RecordType::SOA), 1);
        assert_eq!(count("heimdall.internal.", RecordType::NS), 1);
        assert_eq!(count("ns.heimdall.internal.", RecordType::A), 1);
        assert_eq!(
            count("_exporter._tcp.heimdall.internal.", RecordType::SRV),
            2
        );
        assert_eq!(count("web-0.heimdall.internal.", RecordType::A), 1);
        assert_eq!(count("WEB-V6.heimdall.internal.", RecordType::AAAA), 1);
        assert_eq!(count("web-0.heimdall.internal.", RecordType::TXT), 1);
        assert_eq!(
            count("web-0._exporter._tcp.heimdall.internal.", RecordType::SRV),
            1
        );
        assert_eq!(
            count("_s0._exporter._tcp.heimdall.internal.", RecordType::SRV),
            2
        );
        assert_eq!(
            count("_shards._exporter._tcp.heimdall.internal.", RecordType::PTR),
            1
        );
        assert_eq!(
            count("_services._dns-sd._udp.heimdall.internal.", RecordType::PTR),
            1
        );
        // SRV glue: the targets' addresses.
        let srv = z
            .rrset(&lname("_exporter._tcp.heimdall.internal."), RecordType::SRV)
            .unwrap();
        assert_eq!(srv.glue.len(), 2);
        assert!(matches!(
            z.lookup(&lname("_tcp.heimdall.internal."), RecordType::A),
            Lookup::NoData
        ));
        assert!(matches!(
            z.lookup(&lname("nope.heimdall.internal."), RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            z.lookup(&lname("example.com."), RecordType::A),
            Lookup::NotInZone
        ));
        assert_eq!(z.transfer_records().count(), z.len());
        assert_eq!(
            z.transfer_records().next().unwrap().record_type(),
            RecordType::SOA
        );
    }

    #[test]
    fn shards_cover_every_instance_exactly_once() {
        let zc = ZoneConfig::new("heimdall.internal.", None).unwrap();
        let r = registry(10_000);
        let z = ZoneData::build(&zc, &r, 1);
        let index = z
            .rrset(
                &lname("_shards._exporter._tcp.heimdall.internal."),
                RecordType::PTR,
            )
            .unwrap();
        let shards = index.records.len();
        assert!(shards.is_power_of_two() && shards > 1, "{shards}");
        let mut seen = std::collections::HashSet::new();
        for p in &index.records {
            let RData::PTR(PTR(shard)) = &p.data else {
                panic!("not a PTR")
            };
            let set = z.rrset(&LowerName::new(shard), RecordType::SRV).unwrap();
            assert!(set.records.len() <= SHARD_MAX);
            assert!(set.wire_len < 16 * 1024, "{}", set.wire_len);
            for r in &set.records {
                let RData::SRV(s) = &r.data else { panic!() };
                assert!(seen.insert(s.target.to_ascii()), "{} twice", s.target);
            }
        }
        assert_eq!(seen.len(), 10_000);
        let full = z
            .rrset(&lname("_exporter._tcp.heimdall.internal."), RecordType::SRV)
            .unwrap();
        assert_eq!(full.records.len(), 10_000);
    }

    #[test]
    fn from_records_refuses_bad_zones() {
        let origin = Name::from_ascii("heimdall.internal.").unwrap();
        let a = |n: &str| {
            Record::from_rdata(
                Name::from_ascii(n).unwrap(),
                5,
                RData::A(A::new(10, 0, 0, 1)),
            )
        };
        assert!(ZoneData::from_records(&origin, vec![a("x.heimdall.internal.")]).is_err());
        let zc = ZoneConfig::new("heimdall.internal.", None).unwrap();
        let mut ok: Vec<Record> = build_records(&zc, &Registry::default(), 1);
        ok.push(a("x.example.com."));
        assert!(ZoneData::from_records(&origin, ok).is_err());
    }

    #[test]
    fn empty_zone_answers_the_apex() {
        let zc = ZoneConfig::new("heimdall.internal.", None).unwrap();
        let z = ZoneData::empty(&zc, 3);
        assert_eq!(z.serial(), 3);
        assert!(matches!(
            z.lookup(&lname("heimdall.internal."), RecordType::NS),
            Lookup::Found(_)
        ));
        assert_eq!(z.transfer_records().count(), z.len());
    }

    #[test]
    fn names_parse_back() {
        let zc = ZoneConfig::new("heimdall.internal.", None).unwrap();
        assert_eq!(
            zc.instance_of(&zc.instance_name("web-1")).as_deref(),
            Some("web-1")
        );
        assert_eq!(
            zc.service_of(&zc.srv_name("exporter")).as_deref(),
            Some("exporter")
        );
        assert_eq!(zc.instance_of(&zc.srv_name("exporter")), None);
        assert_eq!(zc.service_of(&zc.instance_name("web-1")), None);
        assert_eq!(shard_count(["a", "b"].into_iter()), 1);
    }
}
