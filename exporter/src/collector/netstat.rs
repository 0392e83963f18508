//! `netstat`: node_netstat_<Protocol>_<Field> from `/proc/net/netstat`, `/proc/net/snmp` and
//! `/proc/net/snmp6` (absent when IPv6 is disabled), filtered by
//! `--collector.netstat.fields`, as node_exporter 1.x's `netstat_linux.go`.

use std::collections::BTreeMap;

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// Protocol → field → raw value.
pub type NetStats<'a> = BTreeMap<&'a str, BTreeMap<&'a str, &'a str>>;

#[derive(Debug)]
struct Netstat {
    fields: Regex,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Netstat {
        fields: opts.netstat_fields.clone(),
    }))
}

impl Collector for Netstat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let netstat = paths.read_proc("net/netstat")?;
        let snmp = paths.read_proc("net/snmp")?;
        let snmp6 = match paths.read_proc("net/snmp6") {
            Ok(s) => s,
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => return Err(e),
        };
        let mut stats = parse_net_stats(&netstat, "/proc/net/netstat")?;
        // Protocols of a later file replace those of an earlier one, as node_exporter merges.
        stats.extend(parse_net_stats(&snmp, "/proc/net/snmp")?);
        stats.extend(parse_snmp6(&snmp6));

        let mut key = String::new();
        for (proto, fields) in &stats {
            for (field, raw) in fields {
                // node_exporter rejects any unparsable value, matched by the filter or not.
                let v: f64 = raw.parse().map_err(|e| {
                    CollectError::parse(
                        "netstat",
                        format!("invalid value {raw:?} for {proto}{field}: {e}"),
                    )
                })?;
                key.clear();
                key.push_str(proto);
                key.push('_');
                key.push_str(field);
                if !self.fields.is_match(&key) {
                    continue;
                }
                out.untyped(
                    &format!("node_netstat_{key}"),
                    &format!("Statistic {proto}{field}."),
                    &[],
                    v,
                );
            }
        }
        Ok(())
    }
}

/// Parses the header/value line pairs of `/proc/net/netstat` and `/proc/net/snmp`
/// ("TcpExt: A B" then "TcpExt: 1 2"). Fields are separated by single spaces.
pub fn parse_net_stats<'a>(s: &'a str, file: &str) -> Result<NetStats<'a>, CollectError> {
    let mut stats = NetStats::new();
    let mut lines = s.lines();
    while let Some(names) = lines.next() {
        let values = lines
            .next()
            .ok_or_else(|| CollectError::parse(file, format!("no value line after {names:?}")))?;
        let names: Vec<&str> = names.split(' ').collect();
        let values: Vec<&str> = values.split(' ').collect();
        let protocol = names[0]
            .strip_suffix(':')
            .filter(|p| !p.is_empty())
            .ok_or_else(|| CollectError::parse(file, format!("no protocol in {:?}", names[0])))?;
        if names.len() != values.len() {
            return Err(CollectError::parse(
                file,
                format!("field count mismatch for {protocol}"),
            ));
        }
        let fields = stats.entry(protocol).or_default();
        fields.clear();
        fields.extend(names[1..].iter().copied().zip(values[1..].iter().copied()));
    }
    Ok(stats)
}

/// Parses `/proc/net/snmp6` ("Ip6InReceives  7"): the protocol is the name up to and
/// including its first '6'; lines without one or without a value are skipped.
pub fn parse_snmp6(s: &str) -> NetStats<'_> {
    let mut stats = NetStats::new();
    for line in s.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(name), Some(value)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(i) = name.find('6') {
            let (proto, field) = name.split_at(i + 1);
            stats.entry(proto).or_default().insert(field, value);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &str = "\
TcpExt: SyncookiesSent ListenDrops TCPTimeouts
TcpExt: 1 2 3
IpExt: InOctets OutOctets
IpExt: 6286396970 2786264347
";
    const SNMP: &str = "\
Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm MaxConn InErrs
Tcp: 1 -1 5
";
    const SNMP6: &str = "\
Ip6InReceives                   \t7
Ip6InOctets 460
Icmp6InMsgs 0
Udp6InErrors 4
UdpLite6InErrors 0
NoSixHere 1
lonely
";

    #[test]
    fn parses_pairs() {
        let s = parse_net_stats(SNMP, "snmp").unwrap();
        assert_eq!(s["Ip"]["Forwarding"], "1");
        assert_eq!(s["Tcp"]["MaxConn"], "-1");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn parses_snmp6() {
        let s = parse_snmp6(SNMP6);
        assert_eq!(s["Ip6"]["InReceives"], "7");
        assert_eq!(s["Udp6"]["InErrors"], "4");
        assert_eq!(s["UdpLite6"]["InErrors"], "0");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_net_stats("Tcp: A B\nTcp: 1\n", "x").is_err());
        assert!(parse_net_stats("Tcp: A B\n", "x").is_err());
        assert!(parse_net_stats("\n\n", "x").is_err());
        assert!(parse_net_stats("Tcp A\nTcp 1\n", "x").is_err());
        assert!(parse_net_stats("", "x").unwrap().is_empty());
    }

    fn collect(netstat: &str, fields: &str) -> Result<String, CollectError> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::write(root.join("proc/net/netstat"), netstat).unwrap();
        std::fs::write(root.join("proc/net/snmp"), SNMP).unwrap();
        std::fs::write(root.join("proc/net/snmp6"), SNMP6).unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.into(),
            udev_data: root.join("udev"),
        };
        let mut o = CollectorOptions::default();
        if !fields.is_empty() {
            o.netstat_fields = Regex::new(fields).unwrap();
        }
        let mut sink = Sink::new();
        build(&o).unwrap().collect(&paths, &mut sink)?;
        let mut buf = Vec::new();
        crate::exposition::encode(&[&sink], crate::exposition::Format::Text, &mut buf);
        Ok(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn collects_default_fields() {
        let text = collect(NETSTAT, "").unwrap();
        assert!(text.contains(
            "# HELP node_netstat_IpExt_InOctets Statistic IpExtInOctets.\n# TYPE node_netstat_IpExt_InOctets untyped\nnode_netstat_IpExt_InOctets 6.28639697e+09\n"
        ));
        assert!(text.contains("node_netstat_Ip_Forwarding 1\n"));
        assert!(text.contains("node_netstat_Tcp_InErrs 5\n"));
        assert!(text.contains("node_netstat_TcpExt_ListenDrops 2\n"));
        assert!(text.contains("node_netstat_TcpExt_TCPTimeouts 3\n"));
        assert!(text.contains("node_netstat_Ip6_InOctets 460\n"));
        assert!(text.contains("node_netstat_UdpLite6_InErrors 0\n"));
        assert!(!text.contains("MaxConn"));
        assert!(!text.contains("DefaultTTL"));
        assert!(!text.contains("NoSix"));
    }

    #[test]
    fn custom_fields_and_bad_values() {
        let text = collect(NETSTAT, "^Tcp_MaxConn$").unwrap();
        assert_eq!(text.matches("\nnode_netstat_").count(), 1);
        assert!(text.contains("node_netstat_Tcp_MaxConn -1\n"));
        assert!(collect("TcpExt: A\nTcpExt: x\n", "").is_err());
    }
}
