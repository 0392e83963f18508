//! RFC 2136 DNS UPDATE, mapped onto the registry.
//!
//! The zone is generated from the registry, so an update is accepted only in the shapes the
//! registry can hold, and is applied to the registry (the zone is then rebuilt from it):
//!
//! | update record (class IN = add) | meaning |
//! |---|---|
//! | `<i>.Z A/AAAA addr` | address of instance `i` (new, or moves every service of `i`) |
//! | `_<s>._tcp.Z SRV p w port <i>.Z` (or at `<i>._<s>._tcp.Z`) | register `i` in service `s` |
//! | `<i>.Z TXT "k=v" …` | labels of `i` |
//! | class ANY, type ANY or A/AAAA at `<i>.Z` | deregister `i` from every service |
//! | class ANY, type TXT at `<i>.Z` | drop the labels of `i` |
//! | class ANY, type ANY or SRV at `_<s>._tcp.Z` | deregister every instance of `s` |
//! | class ANY SRV at `<i>._<s>._tcp.Z`, or class NONE SRV `… <i>.Z` at `_<s>._tcp.Z` | deregister `i` from `s` |
//!
//! An SRV add needs the instance's address: from an A/AAAA earlier in the same update or
//! from its existing registration. Leases: the EDNS UPDATE-LEASE option (code 2,
//! draft-sekar-dns-ul) sets the lease; without it the instance stays until deleted.
//! Anything else is REFUSED, and the whole update then changes nothing (RFC 2136 §3.4:
//! all or nothing). Prerequisites (§2.4) are checked against the zone being served.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};

use crate::registry::{Registration, Registry, default_health_path};
use crate::zone::{Lookup, ZoneConfig, ZoneData};

/// Why an update was not applied: the rcode for the client and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub code: ResponseCode,
    pub reason: String,
}

fn reject(code: ResponseCode, reason: impl Into<String>) -> Rejected {
    Rejected {
        code,
        reason: reason.into(),
    }
}

/// Checks the prerequisite section against `zone` (RFC 2136 §3.2).
pub fn check_prerequisites(zone: &ZoneData, prereqs: &[Record]) -> Result<(), Rejected> {
    // Value-dependent prerequisites are compared per RRset, all records of a set together.
    let mut exact: HashMap<(LowerName, RecordType), Vec<&RData>> = HashMap::new();
    for r in prereqs {
        let name = LowerName::new(&r.name);
        if !zone.contains(&name) {
            return Err(reject(
                ResponseCode::NotZone,
                format!("{} is outside the zone", r.name),
            ));
        }
        if r.ttl != 0 {
            return Err(reject(
                ResponseCode::FormErr,
                "prerequisite with a non-zero TTL",
            ));
        }
        let rtype = r.record_type();
        let empty = matches!(r.data, RData::Update0(_));
        match r.dns_class {
            DNSClass::ANY if empty => {
                if rtype == RecordType::ANY {
                    if !zone.name_in_use(&name) {
                        return Err(reject(
                            ResponseCode::NXDomain,
                            format!("{} not in use", r.name),
                        ));
                    }
                } else if zone.rrset(&name, rtype).is_none() {
                    return Err(reject(
                        ResponseCode::NXRRSet,
                        format!("no {rtype} RRset at {}", r.name),
                    ));
                }
            }
            DNSClass::NONE if empty => {
                if rtype == RecordType::ANY {
                    if zone.name_in_use(&name) {
                        return Err(reject(
                            ResponseCode::YXDomain,
                            format!("{} is in use", r.name),
                        ));
                    }
                } else if zone.rrset(&name, rtype).is_some() {
                    return Err(reject(
                        ResponseCode::YXRRSet,
                        format!("{rtype} RRset exists at {}", r.name),
                    ));
                }
            }
            DNSClass::IN if !empty => exact.entry((name, rtype)).or_default().push(&r.data),
            _ => return Err(reject(ResponseCode::FormErr, "malformed prerequisite")),
        }
    }
    for ((name, rtype), wanted) in exact {
        let matches = match zone.lookup(&name, rtype) {
            Lookup::Found(sets) => {
                let have: Vec<&RData> = sets
                    .iter()
                    .flat_map(|s| s.records.iter().map(|r| &r.data))
                    .collect();
                have.len() == wanted.len() && wanted.iter().all(|w| have.contains(w))
            }
            _ => false,
        };
        if !matches {
            return Err(reject(
                ResponseCode::NXRRSet,
                format!("{rtype} RRset at {name} differs from the prerequisite"),
            ));
        }
    }
    Ok(())
}

/// What a name in the zone means to the registry.
enum Owner {
    Instance(String),
    Service(String),
    DnsSdInstance { service: String, instance: String },
}

fn owner(zc: &ZoneConfig, r: &Record) -> Option<Owner> {
    if let Some(i) = zc.instance_of(&r.name) {
        return Some(Owner::Instance(i));
    }
    if let Some(s) = zc.service_of(&r.name) {
        return Some(Owner::Service(s));
    }
    // <instance>._<service>._tcp.<origin>
    let base = r.name.base_name();
    let service = zc.service_of(&base)?;
    let instance = r.name.iter().next()?;
    Some(Owner::DnsSdInstance {
        service,
        instance: String::from_utf8_lossy(instance).to_ascii_lowercase(),
    })
}

/// Applies the update section to `registry` (a copy the caller swaps in only on success).
/// Returns the `(service, instance)` pairs it touched, for the journal.
pub fn apply(
    zc: &ZoneConfig,
    registry: &mut Registry,
    updates: &[Record],
    lease_seconds: Option<u64>,
    now: Instant,
) -> Result<Vec<(String, String)>, Rejected> {
    let mut touched = Vec::new();
    // Addresses and labels given earlier in this update for instances not registered yet.
    let mut pending_address: HashMap<String, IpAddr> = HashMap::new();
    let mut pending_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let refused = |why: String| reject(ResponseCode::Refused, why);
    let registry_err = |e: crate::registry::RegistryError| refused(e.to_string());
    for r in updates {
        if !zc.origin.zone_of(&r.name) {
            return Err(reject(
                ResponseCode::NotZone,
                format!("{} is outside the zone", r.name),
            ));
        }
        let rtype = r.record_type();
        let Some(name_owner) = owner(zc, r) else {
            return Err(refused(format!(
                "{} is not a name the registry manages (instances are <name>.{}, services _<name>._tcp.{})",
                r.name, zc.origin, zc.origin
            )));
        };
        let unsupported = || refused(format!("{rtype} at {} cannot be changed by UPDATE", r.name));
        let dnssd_instance = match &name_owner {
            Owner::DnsSdInstance { instance, .. } => Some(instance.clone()),
            _ => None,
        };
        match (r.dns_class, name_owner) {
            (DNSClass::IN, Owner::Instance(i)) => match &r.data {
                RData::A(a) => set_address(
                    registry,
                    &i,
                    IpAddr::V4(a.0),
                    &mut pending_address,
                    &mut touched,
                )?,
                RData::AAAA(a) => set_address(
                    registry,
                    &i,
                    IpAddr::V6(a.0),
                    &mut pending_address,
                    &mut touched,
                )?,
                RData::TXT(txt) => {
                    let mut labels = pending_labels
                        .remove(&i)
                        .unwrap_or_else(|| existing_labels(registry, &i));
                    for s in txt.txt_data.iter() {
                        let s = String::from_utf8_lossy(s);
                        let (k, v) = s.split_once('=').ok_or_else(|| {
                            refused(format!("TXT string {s:?} of {i} is not key=value"))
                        })?;
                        labels.insert(k.to_owned(), v.to_owned());
                    }
                    for service in registry.services_of(&i) {
                        let mut reg = current(registry, &service, &i)?;
                        reg.labels = labels.clone();
                        registry
                            .register(&service, &i, reg, now)
                            .map_err(registry_err)?;
                        touched.push((service, i.clone()));
                    }
                    pending_labels.insert(i, labels);
                }
                _ => return Err(unsupported()),
            },
            (DNSClass::IN, Owner::Service(service) | Owner::DnsSdInstance { service, .. }) => {
                let RData::SRV(srv) = &r.data else {
                    return Err(unsupported());
                };
                let Some(i) = zc.instance_of(&srv.target) else {
                    return Err(refused(format!(
                        "SRV target {} must be an instance name <name>.{}",
                        srv.target, zc.origin
                    )));
                };
                if let Some(instance) = &dnssd_instance
                    && *instance != i
                {
                    return Err(refused(format!(
                        "SRV at {} must point to {instance}.{}",
                        r.name, zc.origin
                    )));
                }
                let address = pending_address
                    .get(&i)
                    .copied()
                    .or_else(|| any_address(registry, &i))
                    .ok_or_else(|| {
                        refused(format!(
                            "no address for {i}: add its A or AAAA record in the same update"
                        ))
                    })?;
                let labels = pending_labels
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| existing_labels(registry, &i));
                let health_path = registry
                    .get(&service, &i)
                    .map_or_else(default_health_path, |x| x.health_path.clone());
                let reg = Registration {
                    address,
                    port: srv.port,
                    labels,
                    ttl_seconds: lease_seconds,
                    health_path,
                };
                registry
                    .register(&service, &i, reg, now)
                    .map_err(registry_err)?;
                touched.push((service, i));
            }
            (DNSClass::ANY, Owner::Instance(i)) => match rtype {
                RecordType::ANY | RecordType::A | RecordType::AAAA => {
                    for service in registry.services_of(&i) {
                        registry.deregister(&service, &i).map_err(registry_err)?;
                        touched.push((service, i.clone()));
                    }
                    pending_address.remove(&i);
                }
                RecordType::TXT => {
                    for service in registry.services_of(&i) {
                        let mut reg = current(registry, &service, &i)?;
                        reg.labels.clear();
                        registry
                            .register(&service, &i, reg, now)
                            .map_err(registry_err)?;
                        touched.push((service, i.clone()));
                    }
                    pending_labels.remove(&i);
                }
                _ => return Err(unsupported()),
            },
            (DNSClass::ANY, Owner::Service(service)) => {
                if !matches!(rtype, RecordType::ANY | RecordType::SRV) {
                    return Err(unsupported());
                }
                let names: Vec<String> = registry
                    .services()
                    .get(&service)
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default();
                registry.deregister_service(&service);
                touched.extend(names.into_iter().map(|i| (service.clone(), i)));
            }
            (DNSClass::ANY, Owner::DnsSdInstance { service, instance }) => {
                if !matches!(rtype, RecordType::ANY | RecordType::SRV) {
                    return Err(unsupported());
                }
                // Deleting what does not exist is not an error in RFC 2136.
                if registry.deregister(&service, &instance).is_ok() {
                    touched.push((service, instance));
                }
            }
            (DNSClass::NONE, Owner::Service(service) | Owner::DnsSdInstance { service, .. }) => {
                let RData::SRV(srv) = &r.data else {
                    return Err(unsupported());
                };
                if let Some(i) = zc.instance_of(&srv.target)
                    && registry
                        .get(&service, &i)
                        .is_some_and(|x| x.port == srv.port)
                {
                    registry.deregister(&service, &i).map_err(registry_err)?;
                    touched.push((service, i));
                }
            }
            (DNSClass::NONE, Owner::Instance(i)) => match &r.data {
                RData::A(_) | RData::AAAA(_) => {
                    if r.data
                        .ip_addr()
                        .is_some_and(|a| any_address(registry, &i) == Some(a))
                    {
                        for service in registry.services_of(&i) {
                            registry.deregister(&service, &i).map_err(registry_err)?;
                            touched.push((service, i.clone()));
                        }
                    }
                }
                RData::TXT(txt) => {
                    for service in registry.services_of(&i) {
                        let mut reg = current(registry, &service, &i)?;
                        for s in txt.txt_data.iter() {
                            let s = String::from_utf8_lossy(s);
                            if let Some((k, v)) = s.split_once('=')
                                && reg.labels.get(k).is_some_and(|x| x == v)
                            {
                                reg.labels.remove(k);
                            }
                        }
                        registry
                            .register(&service, &i, reg, now)
                            .map_err(registry_err)?;
                        touched.push((service, i.clone()));
                    }
                }
                _ => return Err(unsupported()),
            },
            (class, _) => {
                return Err(reject(
                    ResponseCode::FormErr,
                    format!("update record of class {class}"),
                ));
            }
        }
    }
    touched.sort();
    touched.dedup();
    Ok(touched)
}

fn set_address(
    registry: &mut Registry,
    instance: &str,
    address: IpAddr,
    pending: &mut HashMap<String, IpAddr>,
    touched: &mut Vec<(String, String)>,
) -> Result<(), Rejected> {
    let services = registry
        .set_address(instance, address)
        .map_err(|e| Rejected {
            code: ResponseCode::Refused,
            reason: e.to_string(),
        })?;
    touched.extend(services.into_iter().map(|s| (s, instance.to_owned())));
    pending.insert(instance.to_owned(), address);
    Ok(())
}

fn any_address(registry: &Registry, instance: &str) -> Option<IpAddr> {
    registry
        .services()
        .values()
        .find_map(|s| s.get(instance).map(|i| i.address))
}

fn existing_labels(registry: &Registry, instance: &str) -> BTreeMap<String, String> {
    registry
        .services()
        .values()
        .find_map(|s| s.get(instance).map(|i| i.labels.clone()))
        .unwrap_or_default()
}

/// The registration that reproduces `service/instance` as it is (lease kept). Callers pass
/// names from `services_of`, so it exists; should it not, the update is refused.
fn current(registry: &Registry, service: &str, instance: &str) -> Result<Registration, Rejected> {
    let i = registry.get(service, instance).ok_or_else(|| {
        reject(
            ResponseCode::ServFail,
            format!("{instance} vanished from {service} during the update"),
        )
    })?;
    Ok(Registration {
        address: i.address,
        port: i.port,
        labels: i.labels.clone(),
        ttl_seconds: i.ttl.map(|t| t.as_secs()),
        health_path: i.health_path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SRV, TXT};

    fn zc() -> ZoneConfig {
        ZoneConfig::new("heimdall.internal.", None).unwrap()
    }

    fn rec(name: &str, class: DNSClass, data: RData) -> Record {
        let mut r = Record::from_rdata(Name::from_ascii(name).unwrap(), 60, data);
        r.dns_class = class;
        r
    }

    fn srv(port: u16, target: &str) -> RData {
        RData::SRV(SRV::new(0, 0, port, Name::from_ascii(target).unwrap()))
    }

    #[test]
    fn add_instance_with_address_srv_and_labels() {
        let mut r = Registry::default();
        let updates = [
            rec(
                "web-9.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 9)),
            ),
            rec(
                "web-9.heimdall.internal.",
                DNSClass::IN,
                RData::TXT(TXT::new(vec!["rack=r2".into()])),
            ),
            rec(
                "_exporter._tcp.heimdall.internal.",
                DNSClass::IN,
                srv(9090, "web-9.heimdall.internal."),
            ),
        ];
        let touched = apply(&zc(), &mut r, &updates, Some(60), Instant::now()).unwrap();
        assert_eq!(touched, vec![("exporter".to_owned(), "web-9".to_owned())]);
        let i = r.get("exporter", "web-9").unwrap();
        assert_eq!(i.address, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(i.port, 9090);
        assert_eq!(i.labels.get("rack").map(String::as_str), Some("r2"));
        assert!(i.expires_at.is_some());

        // Delete by SRV value, then the whole name.
        let del = [rec(
            "_exporter._tcp.heimdall.internal.",
            DNSClass::NONE,
            srv(9090, "web-9.heimdall.internal."),
        )];
        apply(&zc(), &mut r, &del, None, Instant::now()).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn refuses_what_the_registry_cannot_hold() {
        let mut r = Registry::default();
        let no_address = [rec(
            "_exporter._tcp.heimdall.internal.",
            DNSClass::IN,
            srv(9090, "web-1.heimdall.internal."),
        )];
        let e = apply(&zc(), &mut r, &no_address, None, Instant::now()).unwrap_err();
        assert_eq!(e.code, ResponseCode::Refused);
        assert!(e.reason.contains("no address"), "{}", e.reason);
        let outside = [rec(
            "web-1.example.com.",
            DNSClass::IN,
            RData::A(A::new(10, 0, 0, 1)),
        )];
        assert_eq!(
            apply(&zc(), &mut r, &outside, None, Instant::now())
                .unwrap_err()
                .code,
            ResponseCode::NotZone
        );
        let apex = [rec(
            "heimdall.internal.",
            DNSClass::IN,
            RData::A(A::new(10, 0, 0, 1)),
        )];
        assert_eq!(
            apply(&zc(), &mut r, &apex, None, Instant::now())
                .unwrap_err()
                .code,
            ResponseCode::Refused
        );
        let foreign_target = [
            rec(
                "web-1.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 1)),
            ),
            rec(
                "_exporter._tcp.heimdall.internal.",
                DNSClass::IN,
                srv(9090, "web-1.example.com."),
            ),
        ];
        assert!(apply(&zc(), &mut r, &foreign_target, None, Instant::now()).is_err());
        let reserved = [
            rec(
                "ns.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 1)),
            ),
            rec(
                "_exporter._tcp.heimdall.internal.",
                DNSClass::IN,
                srv(9090, "ns.heimdall.internal."),
            ),
        ];
        assert!(apply(&zc(), &mut r, &reserved, None, Instant::now()).is_err());
    }

    #[test]
    fn prerequisites() {
        let zc = zc();
        let mut r = Registry::default();
        let add = [
            rec(
                "web-1.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 1)),
            ),
            rec(
                "_exporter._tcp.heimdall.internal.",
                DNSClass::IN,
                srv(9090, "web-1.heimdall.internal."),
            ),
        ];
        apply(&zc, &mut r, &add, None, Instant::now()).unwrap();
        let zone = ZoneData::build(&zc, &r, 2);
        let p = |name: &str, class, data| {
            let mut x = rec(name, class, data);
            x.ttl = 0;
            check_prerequisites(&zone, &[x]).map_err(|e| e.code)
        };
        let upd = |t| RData::Update0(t);
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::ANY,
                upd(RecordType::ANY)
            ),
            Ok(())
        );
        assert_eq!(
            p(
                "web-2.heimdall.internal.",
                DNSClass::ANY,
                upd(RecordType::ANY)
            ),
            Err(ResponseCode::NXDomain)
        );
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::ANY,
                upd(RecordType::AAAA)
            ),
            Err(ResponseCode::NXRRSet)
        );
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::NONE,
                upd(RecordType::ANY)
            ),
            Err(ResponseCode::YXDomain)
        );
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::NONE,
                upd(RecordType::A)
            ),
            Err(ResponseCode::YXRRSet)
        );
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 1))
            ),
            Ok(())
        );
        assert_eq!(
            p(
                "web-1.heimdall.internal.",
                DNSClass::IN,
                RData::A(A::new(10, 0, 0, 2))
            ),
            Err(ResponseCode::NXRRSet)
        );
        assert_eq!(
            p("x.example.", DNSClass::ANY, upd(RecordType::ANY)),
            Err(ResponseCode::NotZone)
        );
    }
}
