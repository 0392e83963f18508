//! `netdev`: node_network_{receive,transmit}_*_total from `/proc/net/dev`, as node_exporter
//! 1.x's `netdev` collector with its default (non-detailed) metric set.
//!
//! node_exporter reads these counters over netlink by default; `/proc/net/dev` prints the
//! same sums its "legacy" mapping computes. The one netlink counter `/proc/net/dev` lacks,
//! `receive_nohandler`, is read from `/sys/class/net/<dev>/statistics/rx_nohandler` (and left
//! out for devices without that file).

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// Number of counters on a `/proc/net/dev` line.
const FIELDS: usize = 16;

/// Family and help of each `/proc/net/dev` column, in column order.
static FAMILIES: [(&str, &str); FIELDS] = [
    (
        "node_network_receive_bytes_total",
        "Network device statistic receive_bytes.",
    ),
    (
        "node_network_receive_packets_total",
        "Network device statistic receive_packets.",
    ),
    (
        "node_network_receive_errs_total",
        "Network device statistic receive_errs.",
    ),
    (
        "node_network_receive_drop_total",
        "Network device statistic receive_drop.",
    ),
    (
        "node_network_receive_fifo_total",
        "Network device statistic receive_fifo.",
    ),
    (
        "node_network_receive_frame_total",
        "Network device statistic receive_frame.",
    ),
    (
        "node_network_receive_compressed_total",
        "Network device statistic receive_compressed.",
    ),
    (
        "node_network_receive_multicast_total",
        "Network device statistic receive_multicast.",
    ),
    (
        "node_network_transmit_bytes_total",
        "Network device statistic transmit_bytes.",
    ),
    (
        "node_network_transmit_packets_total",
        "Network device statistic transmit_packets.",
    ),
    (
        "node_network_transmit_errs_total",
        "Network device statistic transmit_errs.",
    ),
    (
        "node_network_transmit_drop_total",
        "Network device statistic transmit_drop.",
    ),
    (
        "node_network_transmit_fifo_total",
        "Network device statistic transmit_fifo.",
    ),
    (
        "node_network_transmit_colls_total",
        "Network device statistic transmit_colls.",
    ),
    (
        "node_network_transmit_carrier_total",
        "Network device statistic transmit_carrier.",
    ),
    (
        "node_network_transmit_compressed_total",
        "Network device statistic transmit_compressed.",
    ),
];

const NOHANDLER: (&str, &str) = (
    "node_network_receive_nohandler_total",
    "Network device statistic receive_nohandler.",
);

#[derive(Debug)]
struct Netdev {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    let non_empty = |r: &Option<Regex>| r.clone().filter(|r| !r.as_str().is_empty());
    let include = non_empty(&opts.netdev_device_include);
    let exclude = non_empty(&opts.netdev_device_exclude);
    if include.is_some() && exclude.is_some() {
        return Err(BuildError {
            collector: "netdev",
            reason: "device-exclude & device-include are mutually exclusive".into(),
        });
    }
    Ok(Box::new(Netdev { include, exclude }))
}

impl Netdev {
    fn ignored(&self, dev: &str) -> bool {
        self.exclude.as_ref().is_some_and(|r| r.is_match(dev))
            || self.include.as_ref().is_some_and(|r| !r.is_match(dev))
    }
}

impl Collector for Netdev {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let text = paths.read_proc("net/dev")?;
        let mut path = paths.sys("class/net");
        for line in parse_net_dev(&text)? {
            if self.ignored(line.name) {
                continue;
            }
            let labels = [("device", line.name)];
            for ((name, help), &v) in FAMILIES.iter().zip(&line.stats) {
                out.counter(name, help, &labels, v as f64);
            }
            path.push(line.name);
            path.push("statistics/rx_nohandler");
            if let Some(v) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                out.counter(NOHANDLER.0, NOHANDLER.1, &labels, v as f64);
            }
            path.pop();
            path.pop();
            path.pop();
        }
        Ok(())
    }
}

/// One interface line of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevLine<'a> {
    pub name: &'a str,
    /// The 16 counters in column order (8 receive, 8 transmit).
    pub stats: [u64; FIELDS],
}

/// Parses `/proc/net/dev`: two header lines, then `name: 16 counters` per interface.
pub fn parse_net_dev(s: &str) -> Result<Vec<NetDevLine<'_>>, CollectError> {
    let bad =
        |line: &str, why: &str| CollectError::parse("/proc/net/dev", format!("{why} in {line:?}"));
    let mut out = Vec::new();
    for line in s.lines().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line
            .rsplit_once(':')
            .ok_or_else(|| bad(line, "missing colon"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad(line, "empty interface name"));
        }
        let mut stats = [0u64; FIELDS];
        let mut fields = rest.split_ascii_whitespace();
        for slot in &mut stats {
            let f = fields.next().ok_or_else(|| bad(line, "too few fields"))?;
            *slot = f.parse().map_err(|_| bad(line, "invalid counter"))?;
        }
        out.push(NetDevLine { name, stats });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789 9000 1 2 3 4 5 6 987654 8000 7 8 9 10 11 12
veth:x: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
";

    #[test]
    fn parses_net_dev() {
        let d = parse_net_dev(NET_DEV).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "lo");
        assert_eq!(d[0].stats[0], 1000);
        assert_eq!(d[1].name, "eth0");
        assert_eq!(
            d[1].stats,
            [
                123456789, 9000, 1, 2, 3, 4, 5, 6, 987654, 8000, 7, 8, 9, 10, 11, 12
            ]
        );
        assert_eq!(d[2].name, "veth:x", "the last colon separates the name");
    }

    #[test]
    fn rejects_garbage() {
        let head = "h1\nh2\n";
        assert!(parse_net_dev(&format!("{head}eth0 1 2 3\n")).is_err());
        assert!(parse_net_dev(&format!("{head}eth0: 1 2 3\n")).is_err());
        assert!(
            parse_net_dev(&format!(
                "{head}  : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
            ))
            .is_err()
        );
        assert!(
            parse_net_dev(&format!(
                "{head}eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n"
            ))
            .is_err()
        );
        assert!(
            parse_net_dev(&format!(
                "{head}eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -1\n"
            ))
            .is_err()
        );
        assert!(parse_net_dev("").unwrap().is_empty());
    }

    #[test]
    fn include_and_exclude_conflict() {
        let mut o = CollectorOptions {
            netdev_device_include: Some(Regex::new("^lo$").unwrap()),
            ..CollectorOptions::default()
        };
        assert!(build(&o).is_ok());
        o.netdev_device_exclude = Some(Regex::new("^eth").unwrap());
        assert!(build(&o).is_err());
    }

    #[test]
    fn collects_with_filter_and_nohandler() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::create_dir_all(root.join("sys/class/net/lo/statistics")).unwrap();
        std::fs::write(root.join("proc/net/dev"), NET_DEV).unwrap();
        std::fs::write(root.join("sys/class/net/lo/statistics/rx_nohandler"), "3\n").unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.into(),
            udev_data: root.join("udev"),
        };
        let o = CollectorOptions {
            netdev_device_exclude: Some(Regex::new("^veth").unwrap()),
            ..CollectorOptions::default()
        };
        let mut sink = Sink::new();
        build(&o).unwrap().collect(&paths, &mut sink).unwrap();
        let text = sink.render(crate::exposition::Format::Text);
        assert!(
            text.contains("node_network_receive_bytes_total{device=\"eth0\"} 1.23456789e+08\n")
        );
        assert!(text.contains("node_network_transmit_compressed_total{device=\"eth0\"} 12\n"));
        assert!(text.contains("node_network_receive_nohandler_total{device=\"lo\"} 3\n"));
        assert!(!text.contains("node_network_receive_nohandler_total{device=\"eth0\"}"));
        assert!(!text.contains("veth"));
        assert!(text.contains("# TYPE node_network_transmit_colls_total counter\n"));
    }
}
