//! `netclass`: node_network_* device properties from `/sys/class/net/<iface>/*`, as
//! node_exporter 1.x's `netclass_linux.go` (sysfs mode, its default).
//!
//! Attributes that cannot be read for a benign reason (absent, permission denied, or the
//! driver answering EINVAL/EOPNOTSUPP, e.g. `speed` of a link that is down) are left out;
//! an unparsable number fails the scrape, as procfs does.

use std::io;
use std::path::Path;

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

#[derive(Debug)]
struct Netclass {
    ignored: Regex,
    ignore_invalid_speed: bool,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Netclass {
        ignored: opts.netclass_ignored_devices.clone(),
        ignore_invalid_speed: opts.netclass_ignore_invalid_speed,
    }))
}

/// What node_exporter reads of one interface. Numbers are `None` when the file is absent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Iface {
    pub addr_assign_type: Option<i64>,
    pub address: String,
    pub broadcast: String,
    pub carrier: Option<i64>,
    pub carrier_changes: Option<i64>,
    pub carrier_up_count: Option<i64>,
    pub carrier_down_count: Option<i64>,
    pub dev_id: Option<i64>,
    pub dormant: Option<i64>,
    pub duplex: String,
    pub flags: Option<i64>,
    pub ifalias: String,
    pub ifindex: Option<i64>,
    pub iflink: Option<i64>,
    pub link_mode: Option<i64>,
    pub mtu: Option<i64>,
    pub name_assign_type: Option<i64>,
    pub netdev_group: Option<i64>,
    pub operstate: String,
    pub speed: Option<i64>,
    pub tx_queue_len: Option<i64>,
    pub kind: Option<i64>,
}

/// Whether `name` is an attribute file [`Iface::set`] uses.
fn is_attribute(name: &str) -> bool {
    matches!(
        name,
        "addr_assign_type"
            | "addr_len"
            | "address"
            | "broadcast"
            | "carrier"
            | "carrier_changes"
            | "carrier_up_count"
            | "carrier_down_count"
            | "dev_id"
            | "dormant"
            | "duplex"
            | "flags"
            | "ifalias"
            | "ifindex"
            | "iflink"
            | "link_mode"
            | "mtu"
            | "name_assign_type"
            | "netdev_group"
            | "operstate"
            | "speed"
            | "tx_queue_len"
            | "type"
    )
}

impl Iface {
    /// Stores one attribute; `value` is the file's content with surrounding space trimmed.
    pub fn set(&mut self, attr: &str, value: &str) -> Result<(), CollectError> {
        let int = || {
            parse_go_int(value).map(Some).ok_or_else(|| {
                CollectError::parse(
                    format!("netclass attribute {attr}"),
                    format!("invalid integer {value:?}"),
                )
            })
        };
        match attr {
            "addr_assign_type" => self.addr_assign_type = int()?,
            // Not exported, but procfs parses it, so a bad value fails all the same.
            "addr_len" => {
                int()?;
            }
            "address" => self.address = value.to_owned(),
            "broadcast" => self.broadcast = value.to_owned(),
            "carrier" => self.carrier = int()?,
            "carrier_changes" => self.carrier_changes = int()?,
            "carrier_up_count" => self.carrier_up_count = int()?,
            "carrier_down_count" => self.carrier_down_count = int()?,
            "dev_id" => self.dev_id = int()?,
            "dormant" => self.dormant = int()?,
            "duplex" => self.duplex = value.to_owned(),
            "flags" => self.flags = int()?,
            "ifalias" => self.ifalias = value.to_owned(),
            "ifindex" => self.ifindex = int()?,
            "iflink" => self.iflink = int()?,
            "link_mode" => self.link_mode = int()?,
            "mtu" => self.mtu = int()?,
            "name_assign_type" => self.name_assign_type = int()?,
            "netdev_group" => self.netdev_group = int()?,
            "operstate" => self.operstate = value.to_owned(),
            "speed" => self.speed = int()?,
            "tx_queue_len" => self.tx_queue_len = int()?,
            "type" => self.kind = int()?,
            _ => {}
        }
        Ok(())
    }

    /// `up`/`down` from bit 0 (IFF_UP) of `flags`, `unknown` without flags.
    pub fn admin_state(&self) -> &'static str {
        match self.flags {
            None => "unknown",
            Some(f) if f & 1 == 1 => "up",
            Some(_) => "down",
        }
    }
}

/// Parses an integer as Go's `strconv.ParseInt(s, 0, 64)`: optional sign, then a `0x`, `0o`,
/// `0b` or `0` (octal) prefix selects the base; underscores may separate digits after a
/// prefix.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let cleaned;
    let digits = if base != 10 && digits.contains('_') {
        if digits.ends_with('_') || digits.contains("__") {
            return None;
        }
        cleaned = digits.replace('_', "");
        cleaned.as_str()
    } else {
        digits
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let u = u64::from_str_radix(digits, base).ok()?;
    if neg {
        if u > 1u64 << 63 {
            None
        } else {
            Some((u as i64).wrapping_neg())
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// A read error that makes procfs skip the attribute instead of failing.
fn ignorable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || matches!(e.raw_os_error(), Some(EINVAL | EOPNOTSUPP))
}

/// Reads the attributes of the interface directory `dir`.
fn read_iface(dir: &Path) -> Result<Iface, CollectError> {
    let io_err = |path: &Path, source| CollectError::Io {
        path: path.to_owned(),
        source,
    };
    let mut iface = Iface::default();
    let mut bytes = Vec::with_capacity(4096);
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_attribute(n)) else {
            continue;
        };
        // Only regular files, as procfs (sysfs attributes are; symlinks and dirs are not).
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match super::read_into(&path, &mut bytes) {
            Ok(()) => {}
            Err(e) if ignorable(&e) => continue,
            Err(e) => return Err(io_err(&path, e)),
        }
        iface.set(name, String::from_utf8_lossy(&bytes).trim())?;
    }
    Ok(iface)
}

impl Collector for Netclass {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let base = paths.sys("class/net");
        let no_data = |e: CollectError| match &e {
            CollectError::Io { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                CollectError::NoData
            }
            _ => e,
        };
        let entries = std::fs::read_dir(&base).map_err(|source| {
            no_data(CollectError::Io {
                path: base.clone(),
                source,
            })
        })?;
        let mut devices = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: base.clone(),
                source,
            })?;
            // Device entries are symlinks (or directories); plain files such as
            // `bonding_masters` are not devices.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if self.ignored.is_match(&name) {
                continue;
            }
            let iface = read_iface(&entry.path()).map_err(no_data)?;
            devices.push((name, iface));
        }
        for (name, iface) in &devices {
            self.emit(out, name, iface);
        }
        Ok(())
    }
}

impl Netclass {
    fn emit(&self, out: &mut Sink, dev: &str, i: &Iface) {
        let labels = [("device", dev)];
        out.gauge(
            "node_network_up",
            "Value is 1 if operstate is 'up', 0 otherwise.",
            &labels,
            if i.operstate == "up" { 1.0 } else { 0.0 },
        );
        out.gauge(
            "node_network_info",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
            &[
                ("device", dev),
                ("address", &i.address),
                ("broadcast", &i.broadcast),
                ("duplex", &i.duplex),
                ("operstate", &i.operstate),
                ("adminstate", i.admin_state()),
                ("ifalias", &i.ifalias),
            ],
            1.0,
        );
        // Speed in Mbit/s to bytes/s, in Go's integer arithmetic; -1 means unknown.
        let speed = i
            .speed
            .filter(|&s| s >= 0 || !self.ignore_invalid_speed)
            .map(|s| s.wrapping_mul(1_000_000) / 8);
        let fields: [(&str, &str, bool, Option<i64>); 17] = [
            (
                "node_network_address_assign_type",
                "Network device property: address_assign_type",
                false,
                i.addr_assign_type,
            ),
            (
                "node_network_carrier",
                "Network device property: carrier",
                false,
                i.carrier,
            ),
            (
                "node_network_carrier_changes_total",
                "Network device property: carrier_changes_total",
                true,
                i.carrier_changes,
            ),
            (
                "node_network_carrier_up_changes_total",
                "Network device property: carrier_up_changes_total",
                true,
                i.carrier_up_count,
            ),
            (
                "node_network_carrier_down_changes_total",
                "Network device property: carrier_down_changes_total",
                true,
                i.carrier_down_count,
            ),
            (
                "node_network_device_id",
                "Network device property: device_id",
                false,
                i.dev_id,
            ),
            (
                "node_network_dormant",
                "Network device property: dormant",
                false,
                i.dormant,
            ),
            (
                "node_network_flags",
                "Network device property: flags",
                false,
                i.flags,
            ),
            (
                "node_network_iface_id",
                "Network device property: iface_id",
                false,
                i.ifindex,
            ),
            (
                "node_network_iface_link",
                "Network device property: iface_link",
                false,
                i.iflink,
            ),
            (
                "node_network_iface_link_mode",
                "Network device property: iface_link_mode",
                false,
                i.link_mode,
            ),
            (
                "node_network_mtu_bytes",
                "Network device property: mtu_bytes",
                false,
                i.mtu,
            ),
            (
                "node_network_net_dev_group",
                "Network device property: net_dev_group",
                false,
                i.netdev_group,
            ),
            (
                "node_network_name_assign_type",
                "Network device property: name_assign_type",
                false,
                i.name_assign_type,
            ),
            (
                "node_network_speed_bytes",
                "Network device property: speed_bytes",
                false,
                speed,
            ),
            (
                "node_network_transmit_queue_length",
                "Network device property: transmit_queue_length",
                false,
                i.tx_queue_len,
            ),
            (
                "node_network_protocol_type",
                "Network device property: protocol_type",
                false,
                i.kind,
            ),
        ];
        for (name, help, counter, v) in fields {
            let Some(v) = v else { continue };
            if counter {
                out.counter(name, help, &labels, v as f64);
            } else {
                out.gauge(name, help, &labels, v as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ints() {
        assert_eq!(parse_go_int("1500"), Some(1500));
        assert_eq!(parse_go_int("-1"), Some(-1));
        assert_eq!(parse_go_int("+7"), Some(7));
        assert_eq!(parse_go_int("0x1303"), Some(0x1303));
        assert_eq!(parse_go_int("0X20"), Some(32));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("0o17"), Some(15));
        assert_eq!(parse_go_int("0b101"), Some(5));
        assert_eq!(parse_go_int("0x_ff"), Some(255));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "-",
            "0x",
            "08",
            "1.5",
            "abc",
            "9223372036854775808",
            "--1",
            "0x+1",
            " 1",
        ] {
            assert_eq!(parse_go_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sets_attributes() {
        let mut i = Iface::default();
        assert_eq!(i.admin_state(), "unknown");
        i.set("flags", "0x1002").unwrap();
        assert_eq!(i.admin_state(), "down");
        i.set("flags", "0x1003").unwrap();
        assert_eq!(i.admin_state(), "up");
        i.set("type", "772").unwrap();
        assert_eq!(i.kind, Some(772));
        i.set("address", "00:11:22:33:44:55").unwrap();
        assert_eq!(i.address, "00:11:22:33:44:55");
        i.set("uevent", "whatever").unwrap();
        assert!(i.set("mtu", "").is_err());
        assert!(i.set("speed", "fast").is_err());
        assert!(i.set("addr_len", "x").is_err());
    }

    fn write_iface(dir: &Path, speed: &str) {
        std::fs::create_dir_all(dir.join("statistics")).unwrap();
        for (f, v) in [
            ("address", "aa:bb:cc:dd:ee:ff\n"),
            ("broadcast", "ff:ff:ff:ff:ff:ff\n"),
            ("carrier", "1\n"),
            ("carrier_changes", "3\n"),
            ("dev_id", "0x0\n"),
            ("duplex", "full\n"),
            ("flags", "0x1003\n"),
            ("ifalias", "\n"),
            ("ifindex", "4\n"),
            ("mtu", "9000\n"),
            ("operstate", "up\n"),
            ("speed", speed),
            ("type", "1\n"),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
    }

    fn collect(opts: &CollectorOptions, sys: &Path) -> Result<String, CollectError> {
        let paths = Paths {
            procfs: sys.join("proc"),
            sysfs: sys.to_owned(),
            rootfs: sys.to_owned(),
            udev_data: sys.join("udev"),
        };
        let mut sink = Sink::new();
        build(opts).unwrap().collect(&paths, &mut sink)?;
        let mut buf = Vec::new();
        crate::exposition::encode(&[&sink], crate::exposition::Format::Text, &mut buf);
        Ok(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn collects_tree() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("class/net");
        write_iface(&net.join("eth0"), "10000\n");
        write_iface(&net.join("wg0"), "-1\n");
        write_iface(&net.join("skipme"), "1\n");
        std::fs::write(net.join("bonding_masters"), "bond0\n").unwrap();

        let mut o = CollectorOptions {
            netclass_ignored_devices: Regex::new("^skip").unwrap(),
            ..CollectorOptions::default()
        };
        let text = collect(&o, dir.path()).unwrap();
        assert!(text.contains(
            "node_network_info{address=\"aa:bb:cc:dd:ee:ff\",adminstate=\"up\",broadcast=\"ff:ff:ff:ff:ff:ff\",device=\"eth0\",duplex=\"full\",ifalias=\"\",operstate=\"up\"} 1\n"
        ));
        assert!(text.contains("node_network_speed_bytes{device=\"eth0\"} 1.25e+09\n"));
        assert!(text.contains("node_network_speed_bytes{device=\"wg0\"} -125000\n"));
        assert!(text.contains("# TYPE node_network_carrier_changes_total counter\n"));
        assert!(text.contains("node_network_mtu_bytes{device=\"eth0\"} 9000\n"));
        assert!(text.contains("node_network_up{device=\"wg0\"} 1\n"));
        assert!(
            !text.contains("node_network_iface_link{"),
            "absent attribute left out"
        );
        assert!(!text.contains("skipme"));
        assert!(!text.contains("bonding_masters"));

        o.netclass_ignore_invalid_speed = true;
        let text = collect(&o, dir.path()).unwrap();
        assert!(!text.contains("node_network_speed_bytes{device=\"wg0\"}"));
        assert!(text.contains("node_network_speed_bytes{device=\"eth0\"}"));

        std::fs::write(net.join("wg0/mtu"), "lots\n").unwrap();
        assert!(collect(&o, dir.path()).is_err());
    }

    #[test]
    fn missing_class_dir_is_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let r = collect(&CollectorOptions::default(), dir.path());
        assert!(matches!(r, Err(CollectError::NoData)));
    }
}
