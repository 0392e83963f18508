//! Platform-neutral mapping for the portable (non-Linux) collector: plain host readings, as
//! `portable.rs` gathers them through `sysinfo`, to node_exporter-named samples. Compiled and
//! tested everywhere; used only where `portable` is.
#![cfg_attr(target_os = "linux", allow(dead_code))]

use std::collections::HashMap;

use super::clean_metric_name;
use crate::exposition::Sink;

/// Memory readings in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Memory {
    pub total: u64,
    pub available: u64,
    pub free: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// One mounted filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filesystem {
    pub device: String,
    pub fstype: String,
    pub mountpoint: String,
    pub size: u64,
    pub avail: u64,
}

/// Counters of one network interface since boot.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NetDev {
    pub device: String,
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
    pub receive_packets: u64,
    pub transmit_packets: u64,
    pub receive_errs: u64,
    pub transmit_errs: u64,
}

/// One temperature sensor; `label` is whatever the platform calls it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Temperature {
    pub label: String,
    pub celsius: f64,
}

/// Everything the portable collector read in one scrape; absent parts are `None`/empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Host {
    pub memory: Option<Memory>,
    pub load: Option<[f64; 3]>,
    pub boot_time: Option<u64>,
    pub filesystems: Vec<Filesystem>,
    pub netdevs: Vec<NetDev>,
    pub temperatures: Vec<Temperature>,
}

/// Appends `host` as node_exporter families (names, help and labels as on Linux).
pub(crate) fn emit(host: &Host, out: &mut Sink) {
    if let Some(m) = host.memory {
        for (field, v) in [
            ("MemTotal", m.total),
            ("MemAvailable", m.available),
            ("MemFree", m.free),
            ("SwapTotal", m.swap_total),
            ("SwapFree", m.swap_free),
        ] {
            let name = format!("node_memory_{field}_bytes");
            let help = format!("Memory information field {field}_bytes.");
            out.gauge(&name, &help, &[], v as f64);
        }
    }
    if let Some([l1, l5, l15]) = host.load {
        out.gauge("node_load1", "1m load average.", &[], l1);
        out.gauge("node_load5", "5m load average.", &[], l5);
        out.gauge("node_load15", "15m load average.", &[], l15);
    }
    if let Some(b) = host.boot_time {
        out.gauge(
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            &[],
            b as f64,
        );
    }

    let mut seen = std::collections::HashSet::new();
    for fs in &host.filesystems {
        // One series per (device, mountpoint, fstype), as node_exporter deduplicates.
        if !seen.insert((&fs.device, &fs.mountpoint, &fs.fstype)) {
            continue;
        }
        let labels = [
            ("device", fs.device.as_str()),
            ("device_error", ""),
            ("fstype", fs.fstype.as_str()),
            ("mountpoint", fs.mountpoint.as_str()),
        ];
        out.gauge(
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            &labels,
            fs.size as f64,
        );
        out.gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &labels,
            fs.avail as f64,
        );
    }

    for d in &host.netdevs {
        let labels = [("device", d.device.as_str())];
        for (stat, v) in [
            ("receive_bytes", d.receive_bytes),
            ("receive_packets", d.receive_packets),
            ("receive_errs", d.receive_errs),
            ("transmit_bytes", d.transmit_bytes),
            ("transmit_packets", d.transmit_packets),
            ("transmit_errs", d.transmit_errs),
        ] {
            let name = format!("node_network_{stat}_total");
            let help = format!("Network device statistic {stat}.");
            out.counter(&name, &help, &labels, v as f64);
        }
    }

    // chip = the cleaned label; sensors of one chip are numbered temp1, temp2, ...
    let mut per_chip: HashMap<String, usize> = HashMap::new();
    for t in &host.temperatures {
        if !t.celsius.is_finite() {
            continue;
        }
        let mut chip = clean_metric_name(&t.label);
        if chip.is_empty() {
            chip = "unknown".into();
        }
        let n = per_chip.entry(chip.clone()).or_default();
        *n += 1;
        let sensor = format!("temp{n}");
        out.gauge(
            "node_hwmon_temp_celsius",
            "Hardware monitor for temperature (input)",
            &[("chip", &chip), ("sensor", &sensor)],
            t.celsius,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    fn render(host: &Host) -> String {
        let mut sink = Sink::new();
        emit(host, &mut sink);
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn maps_everything() {
        let host = Host {
            memory: Some(Memory {
                total: 8 << 30,
                available: 4 << 30,
                free: 1 << 30,
                swap_total: 2 << 30,
                swap_free: 2 << 30,
            }),
            load: Some([0.5, 0.25, 0.125]),
            boot_time: Some(1_700_000_000),
            filesystems: vec![
                Filesystem {
                    device: "/dev/disk3s1".into(),
                    fstype: "apfs".into(),
                    mountpoint: "/".into(),
                    size: 1000,
                    avail: 400,
                },
                Filesystem {
                    device: "/dev/disk3s1".into(),
                    fstype: "apfs".into(),
                    mountpoint: "/".into(),
                    size: 1,
                    avail: 1,
                },
            ],
            netdevs: vec![NetDev {
                device: "en0".into(),
                receive_bytes: 10,
                transmit_bytes: 20,
                receive_packets: 1,
                transmit_packets: 2,
                receive_errs: 0,
                transmit_errs: 3,
            }],
            temperatures: vec![
                Temperature {
                    label: "PECI CPU".into(),
                    celsius: 45.5,
                },
                Temperature {
                    label: "PECI CPU".into(),
                    celsius: 46.0,
                },
                Temperature {
                    label: "broken".into(),
                    celsius: f64::NAN,
                },
            ],
        };
        let text = render(&host);
        for line in [
            "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n",
            "node_memory_MemTotal_bytes 8.589934592e+09\n",
            "node_memory_SwapFree_bytes 2.147483648e+09\n",
            "node_load15 0.125\n",
            "node_boot_time_seconds 1.7e+09\n",
            "node_filesystem_size_bytes{device=\"/dev/disk3s1\",device_error=\"\",fstype=\"apfs\",mountpoint=\"/\"} 1000\n",
            "node_filesystem_avail_bytes{device=\"/dev/disk3s1\",device_error=\"\",fstype=\"apfs\",mountpoint=\"/\"} 400\n",
            "# TYPE node_network_transmit_errs_total counter\n",
            "node_network_transmit_errs_total{device=\"en0\"} 3\n",
            "node_hwmon_temp_celsius{chip=\"peci_cpu\",sensor=\"temp1\"} 45.5\n",
            "node_hwmon_temp_celsius{chip=\"peci_cpu\",sensor=\"temp2\"} 46\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.matches("node_filesystem_size_bytes{").count(), 1);
        assert!(!text.contains("broken"));
    }

    #[test]
    fn empty_host_emits_nothing() {
        assert_eq!(render(&Host::default()), "");
    }
}
