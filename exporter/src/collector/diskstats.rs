//! `diskstats`: node_disk_* from `/proc/diskstats`, udev's device database
//! (`<udev data>/b<major>:<minor>`) and `/sys/block/<dev>/queue/rotational`, as node_exporter
//! 1.x's `diskstats_linux.go`.
//!
//! Only as many per-device statistics are exported as the kernel prints (11 before 4.18,
//! 15 with the discard fields, 17 with the flush fields); lines with fewer than 11 statistics
//! are skipped, as procfs does.

use std::collections::HashMap;

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// Seconds per `/proc/diskstats` tick (milliseconds).
const SECONDS_PER_TICK: f64 = 1.0 / 1000.0;
/// "standard UNIX 512-byte sectors", whatever the device's block size.
const UNIX_SECTOR_SIZE: f64 = 512.0;

/// Statistics after major, minor and name, as procfs reads them (at most 17).
const MAX_STATS: usize = 17;

/// One per-device statistic: family name, help, counter (else gauge), factor.
struct Stat {
    name: &'static str,
    help: &'static str,
    counter: bool,
    factor: f64,
}

const fn stat(name: &'static str, help: &'static str, counter: bool, factor: f64) -> Stat {
    Stat {
        name,
        help,
        counter,
        factor,
    }
}

/// In `/proc/diskstats` column order.
static STATS: [Stat; MAX_STATS] = [
    stat(
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        true,
        1.0,
    ),
    stat(
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        true,
        1.0,
    ),
    stat(
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        true,
        UNIX_SECTOR_SIZE,
    ),
    stat(
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        true,
        SECONDS_PER_TICK,
    ),
    stat(
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        true,
        1.0,
    ),
    stat(
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        true,
        1.0,
    ),
    stat(
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        true,
        UNIX_SECTOR_SIZE,
    ),
    stat(
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        true,
        SECONDS_PER_TICK,
    ),
    stat(
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        false,
        1.0,
    ),
    stat(
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        true,
        SECONDS_PER_TICK,
    ),
    stat(
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        true,
        SECONDS_PER_TICK,
    ),
    stat(
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        true,
        1.0,
    ),
    stat(
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        true,
        1.0,
    ),
    stat(
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        true,
        1.0,
    ),
    stat(
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        true,
        SECONDS_PER_TICK,
    ),
    stat(
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        true,
        1.0,
    ),
    stat(
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        true,
        SECONDS_PER_TICK,
    ),
];

/// udev properties exported as ATA gauges (when `ID_ATA` is set): property, family, help.
static ATA: [(&str, &str, &str); 3] = [
    (
        "ID_ATA_WRITE_CACHE",
        "node_disk_ata_write_cache",
        "ATA disk has a write cache.",
    ),
    (
        "ID_ATA_WRITE_CACHE_ENABLED",
        "node_disk_ata_write_cache_enabled",
        "ATA disk has its write cache enabled.",
    ),
    (
        "ID_ATA_ROTATION_RATE_RPM",
        "node_disk_ata_rotation_rate_rpm",
        "ATA disk rotation rate in RPMs (0 for SSDs).",
    ),
];

#[derive(Debug)]
struct Diskstats {
    exclude: Option<Regex>,
    include: Option<Regex>,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    // As node_exporter: an empty pattern means "no filter", and the exclude pattern has a
    // default, so including needs `--collector.diskstats.device-exclude=` as well.
    let exclude = Some(opts.diskstats_device_exclude.clone()).filter(|r| !r.as_str().is_empty());
    let include = opts
        .diskstats_device_include
        .clone()
        .filter(|r| !r.as_str().is_empty());
    if exclude.is_some() && include.is_some() {
        return Err(BuildError {
            collector: "diskstats",
            reason: "device-exclude & device-include are mutually exclusive".into(),
        });
    }
    Ok(Box::new(Diskstats { exclude, include }))
}

impl Diskstats {
    fn ignored(&self, dev: &str) -> bool {
        self.exclude.as_ref().is_some_and(|r| r.is_match(dev))
            || self.include.as_ref().is_some_and(|r| !r.is_match(dev))
    }
}

impl Collector for Diskstats {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let text = paths.read_proc("diskstats")?;
        let disks = parse_diskstats(&text)?;
        let mut major_buf = itoa::Buffer::new();
        let mut minor_buf = itoa::Buffer::new();
        for d in &disks {
            if self.ignored(d.name) {
                continue;
            }
            let dev = d.name;
            // A missing or unreadable udev entry just leaves the udev labels empty.
            let udev_text =
                std::fs::read_to_string(paths.udev_data.join(format!("b{}:{}", d.major, d.minor)))
                    .unwrap_or_default();
            let info = parse_udev_properties(&udev_text);
            let prop = |k: &str| info.get(k).copied().unwrap_or("");

            // Usually the serial printed on the disk label, then the fallbacks.
            let serial = [
                prop("SCSI_IDENT_SERIAL"),
                prop("ID_SERIAL_SHORT"),
                prop("ID_SERIAL"),
            ]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("");
            let rotational = read_rotational(paths, dev);

            out.gauge(
                "node_disk_info",
                "Info of /sys/block/<block_device>.",
                &[
                    ("device", dev),
                    ("major", major_buf.format(d.major)),
                    ("minor", minor_buf.format(d.minor)),
                    ("path", prop("ID_PATH")),
                    ("wwn", prop("ID_WWN")),
                    ("model", prop("ID_MODEL")),
                    ("serial", serial),
                    ("revision", prop("ID_REVISION")),
                    ("rotational", &rotational),
                ],
                1.0,
            );

            let labels = [("device", dev)];
            for (s, &v) in STATS.iter().zip(&d.stats[..d.count]) {
                let v = v as f64 * s.factor;
                if s.counter {
                    out.counter(s.name, s.help, &labels, v);
                } else {
                    out.gauge(s.name, s.help, &labels, v);
                }
            }

            let fs_type = prop("ID_FS_TYPE");
            if !fs_type.is_empty() {
                out.gauge(
                    "node_disk_filesystem_info",
                    "Info about disk filesystem.",
                    &[
                        ("device", dev),
                        ("type", fs_type),
                        ("usage", prop("ID_FS_USAGE")),
                        ("uuid", prop("ID_FS_UUID")),
                        ("version", prop("ID_FS_VERSION")),
                    ],
                    1.0,
                );
            }

            let dm_name = prop("DM_NAME");
            if !dm_name.is_empty() {
                out.gauge(
                    "node_disk_device_mapper_info",
                    "Info about disk device mapper.",
                    &[
                        ("device", dev),
                        ("name", dm_name),
                        ("uuid", prop("DM_UUID")),
                        ("vg_name", prop("DM_VG_NAME")),
                        ("lv_name", prop("DM_LV_NAME")),
                        ("lv_layer", prop("DM_LV_LAYER")),
                    ],
                    1.0,
                );
            }

            if !prop("ID_ATA").is_empty() {
                for (key, name, help) in ATA {
                    // Absent or unparsable attributes are skipped (node_exporter logs them).
                    if let Some(v) = info.get(key).and_then(|s| s.parse::<f64>().ok()) {
                        out.gauge(name, help, &labels, v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `queue/rotational` of a block device, written in base 2 as node_exporter does; "0" when
/// it cannot be read.
fn read_rotational(paths: &Paths, dev: &str) -> String {
    let path = paths.sysfs.join("block").join(dev).join("queue/rotational");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(|| "0".to_owned(), |v| format!("{v:b}"))
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLine<'a> {
    pub major: u32,
    pub minor: u32,
    pub name: &'a str,
    /// Statistics in column order; only the first `count` are meaningful.
    pub stats: [u64; MAX_STATS],
    pub count: usize,
}

/// Parses `/proc/diskstats`. Lines with fewer than 11 statistics are skipped and columns
/// past the 17th ignored, like procfs; an unparsable number is an error.
pub fn parse_diskstats(s: &str) -> Result<Vec<DiskLine<'_>>, CollectError> {
    let bad = |line: &str, why: String| {
        CollectError::parse("/proc/diskstats", format!("{why} in {line:?}"))
    };
    let mut out = Vec::new();
    for line in s.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(major), Some(minor), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let major = major
            .parse()
            .map_err(|e| bad(line, format!("major {major:?}: {e}")))?;
        let minor = minor
            .parse()
            .map_err(|e| bad(line, format!("minor {minor:?}: {e}")))?;
        let mut stats = [0u64; MAX_STATS];
        let mut count = 0;
        for (slot, f) in stats.iter_mut().zip(fields) {
            *slot = f
                .parse()
                .map_err(|e| bad(line, format!("field {} {f:?}: {e}", count + 4)))?;
            count += 1;
        }
        if count >= 11 {
            out.push(DiskLine {
                major,
                minor,
                name,
                stats,
                count,
            });
        }
    }
    Ok(out)
}

/// The `E:KEY=value` device properties of a udev database entry; later keys win.
pub fn parse_udev_properties(s: &str) -> HashMap<&str, &str> {
    s.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = "\
   8       0 sdz 10 2 300 40 5 6 700 80 0 90 100
   8       1 sdz1 1 0 8 1 0 0 0 0 0 1 1
 253       0 dm-9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
 259       0 nvme9n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
   7       0 loop9 0 0 0 0
";

    #[test]
    fn parses_field_counts() {
        let d = parse_diskstats(DISKSTATS).unwrap();
        assert_eq!(d.len(), 4, "short loop9 line is skipped");
        assert_eq!(
            (d[0].major, d[0].minor, d[0].name, d[0].count),
            (8, 0, "sdz", 11)
        );
        assert_eq!(d[0].stats[2], 300);
        assert_eq!(d[2].count, 15);
        assert_eq!(
            d[3].count, 17,
            "columns past the 17th statistic are ignored"
        );
        assert_eq!(d[3].stats[16], 17);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_diskstats("8 0 sda 1 2 x 4 5 6 7 8 9 10 11").is_err());
        assert!(parse_diskstats("x 0 sda 1 2 3 4 5 6 7 8 9 10 11").is_err());
        assert!(parse_diskstats("8 0 sda 1 2 3 4 5 6 7 8 9 10 -1").is_err());
        assert!(parse_diskstats("").unwrap().is_empty());
        assert!(parse_diskstats("\n  \n8 0\n").unwrap().is_empty());
    }

    #[test]
    fn parses_udev() {
        let p = parse_udev_properties(
            "S:disk/by-id/foo\nE:ID_MODEL=Disk\nE:DM_LV_LAYER=\nE:ID_FS_VERSION=LVM2 001\nE:ID_PATH=a=b\nW:1\nE:BROKEN\n",
        );
        assert_eq!(p.get("ID_MODEL"), Some(&"Disk"));
        assert_eq!(p.get("DM_LV_LAYER"), Some(&""));
        assert_eq!(p.get("ID_FS_VERSION"), Some(&"LVM2 001"));
        assert_eq!(p.get("ID_PATH"), Some(&"a=b"));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn collects_from_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("sys/block/sdz/queue")).unwrap();
        std::fs::create_dir_all(root.join("udev")).unwrap();
        std::fs::write(root.join("proc/diskstats"), DISKSTATS).unwrap();
        std::fs::write(root.join("sys/block/sdz/queue/rotational"), "1\n").unwrap();
        std::fs::write(
            root.join("udev/b8:0"),
            "E:ID_ATA=1\nE:ID_ATA_ROTATION_RATE_RPM=7200\nE:ID_ATA_WRITE_CACHE=x\nE:ID_SERIAL_SHORT=S1\nE:ID_FS_TYPE=ext4\n",
        )
        .unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.into(),
            udev_data: root.join("udev"),
        };
        let c = build(&CollectorOptions::default()).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let text = sink.render(crate::exposition::Format::Text);
        assert!(text.contains(
            "node_disk_info{device=\"sdz\",major=\"8\",minor=\"0\",model=\"\",path=\"\",revision=\"\",rotational=\"1\",serial=\"S1\",wwn=\"\"} 1\n"
        ));
        assert!(text.contains("node_disk_read_bytes_total{device=\"sdz\"} 153600\n"));
        assert!(text.contains("node_disk_io_time_seconds_total{device=\"sdz\"} 0.09\n"));
        assert!(text.contains("node_disk_ata_rotation_rate_rpm{device=\"sdz\"} 7200\n"));
        assert!(!text.contains("node_disk_ata_write_cache{"));
        assert!(text.contains("node_disk_filesystem_info{device=\"sdz\",type=\"ext4\",usage=\"\",uuid=\"\",version=\"\"} 1\n"));
        assert!(!text.contains("sdz1"), "partition excluded by default");
        assert!(text.contains("node_disk_discard_time_seconds_total{device=\"dm-9\"} 0.015\n"));
        assert!(!text.contains("node_disk_flush_requests_total{device=\"dm-9\"}"));
        assert!(text.contains("node_disk_flush_requests_total{device=\"nvme9n1\"} 16\n"));
        assert!(text.contains("node_disk_info{device=\"dm-9\",major=\"253\",minor=\"0\",model=\"\",path=\"\",revision=\"\",rotational=\"0\""));
    }

    #[test]
    fn include_and_exclude_conflict() {
        let mut o = CollectorOptions {
            diskstats_device_include: Some(Regex::new("^sda$").unwrap()),
            ..CollectorOptions::default()
        };
        assert!(build(&o).is_err());
        o.diskstats_device_exclude = Regex::new("").unwrap();
        assert!(build(&o).is_ok());
    }
}
