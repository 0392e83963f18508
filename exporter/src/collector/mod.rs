//! Collectors: one file each, all listed in [`COLLECTORS`].
//!
//! A collector reads its files through [`Paths`] (never a literal `/proc/...`, so tests run on
//! fixture trees), parses them with pure functions, and appends node_exporter-named samples
//! to a [`Sink`]. The `--collector.<name>` / `--no-collector.<name>` flags and the
//! `node_scrape_collector_*` series are derived from the list.
//!
//! # Adding a collector
//! 1. Write `collector/<name>.rs` with a type implementing [`Collector`] and a
//!    `pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError>`.
//! 2. Add it to `mod` below and one [`Registration`] line to [`COLLECTORS`] (alphabetical).
//! 3. Flags of its own go into [`CollectorOptions`] under `--collector.<name>.<knob>`.
//! 4. Unit-test the parser on an inline string; extend `tests/fixtures` and refresh the golden
//!    file with `UPDATE_GOLDEN=1 cargo test -p heimdall-exporter golden`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::exposition::Sink;

#[cfg(target_os = "linux")]
mod cpu;
#[cfg(target_os = "linux")]
mod diskstats;
#[cfg(target_os = "linux")]
mod entropy;
#[cfg(target_os = "linux")]
mod filefd;
#[cfg(target_os = "linux")]
mod filesystem;
#[cfg(target_os = "linux")]
mod hwmon;
#[cfg(target_os = "linux")]
mod loadavg;
#[cfg(target_os = "linux")]
mod meminfo;
#[cfg(target_os = "linux")]
mod netclass;
#[cfg(target_os = "linux")]
mod netdev;
#[cfg(target_os = "linux")]
mod netstat;
mod os;
#[cfg(target_os = "linux")]
mod pressure;
#[cfg(target_os = "linux")]
mod processes;
#[cfg(target_os = "linux")]
mod sockstat;
#[cfg(target_os = "linux")]
mod stat;
#[cfg(target_os = "linux")]
mod tcpstat;
#[cfg(target_os = "linux")]
mod thermal_zone;
mod time;
#[cfg(target_os = "linux")]
mod uname;
#[cfg(target_os = "linux")]
mod vmstat;

#[cfg(not(target_os = "linux"))]
mod portable;
mod portable_map;

/// A source of metrics, run once per scrape on a blocking thread.
pub trait Collector: Send + Sync {
    /// Appends this collector's samples. An error makes `node_scrape_collector_success` 0
    /// for this scrape; samples appended before the error are dropped.
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError>;
}

/// One entry of the collector list.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    pub name: &'static str,
    pub enabled_by_default: bool,
    pub build: fn(&CollectorOptions) -> Result<Box<dyn Collector>, BuildError>,
}

macro_rules! reg {
    ($name:literal, $module:ident, $default:expr) => {
        Registration {
            name: $name,
            enabled_by_default: $default,
            build: $module::build,
        }
    };
}

/// Every collector this platform has, alphabetical. Names are node_exporter's.
#[cfg(target_os = "linux")]
pub static COLLECTORS: &[Registration] = &[
    reg!("cpu", cpu, true),
    reg!("diskstats", diskstats, true),
    reg!("entropy", entropy, true),
    reg!("filefd", filefd, true),
    reg!("filesystem", filesystem, true),
    reg!("hwmon", hwmon, true),
    reg!("loadavg", loadavg, true),
    reg!("meminfo", meminfo, true),
    reg!("netclass", netclass, true),
    reg!("netdev", netdev, true),
    reg!("netstat", netstat, true),
    reg!("os", os, true),
    reg!("pressure", pressure, true),
    reg!("processes", processes, true),
    reg!("sockstat", sockstat, true),
    reg!("stat", stat, true),
    reg!("tcpstat", tcpstat, true),
    reg!("thermal_zone", thermal_zone, true),
    reg!("time", time, true),
    reg!("uname", uname, true),
    reg!("vmstat", vmstat, true),
];

/// On other platforms the portable collectors read through `sysinfo`, with node_exporter's
/// names where the meaning is the same.
#[cfg(not(target_os = "linux"))]
pub static COLLECTORS: &[Registration] = &[
    reg!("cpu", portable, true),
    reg!("os", os, true),
    reg!("time", time, true),
];

/// Looks a collector up by name.
pub fn find(name: &str) -> Option<&'static Registration> {
    COLLECTORS.iter().find(|r| r.name == name)
}

/// Where the host's files are: node_exporter's `--path.*` flags.
#[derive(Debug, Clone)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
    pub udev_data: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
            udev_data: "/run/udev/data".into(),
        }
    }
}

impl Paths {
    /// `rel` below the procfs root, e.g. `proc("net/dev")`.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// `abs` (an absolute host path such as `/etc/os-release`) below the rootfs.
    pub fn root(&self, abs: &str) -> PathBuf {
        self.rootfs.join(abs.trim_start_matches('/'))
    }

    pub fn read_proc(&self, rel: &str) -> Result<String, CollectError> {
        read_file(&self.proc(rel))
    }

    pub fn read_sys(&self, rel: &str) -> Result<String, CollectError> {
        read_file(&self.sys(rel))
    }
}

/// Reads a whole (small, virtual) file into a string, naming the path on error.
pub fn read_file(path: &Path) -> Result<String, CollectError> {
    let io = |source| CollectError::Io {
        path: path.to_owned(),
        source,
    };
    let mut buf = Vec::new();
    read_into(path, &mut buf).map_err(io)?;
    String::from_utf8(buf).map_err(|e| io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Reads a whole virtual file into `buf` (cleared first, allocation reused): `open`, `read`
/// until EOF, `close`. std's `fs::read*` also `statx` the file for a size hint, which procfs
/// and sysfs answer with 0 or 4096 anyway; on a scrape of a few hundred sysfs attributes that
/// extra system call is a fifth of the collector's time.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read as _;
    buf.clear();
    buf.reserve(4096);
    // `Take` has no size hint to ask for, so `read_to_end` goes straight to `read`.
    std::fs::File::open(path)?.take(u64::MAX).read_to_end(buf)?;
    Ok(())
}

/// One `read(2)` of at most 128 bytes, trimmed, as node_exporter's `SysReadFile`: some sysfs
/// drivers answer a second read with EAGAIN forever, so attributes are read exactly once.
pub fn sys_read_file(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// node_exporter's `cleanMetricName`: lowercase, `[^a-z0-9:_]` → `_`, trim `_`.
pub(crate) fn clean_metric_name(s: &str) -> String {
    let replaced: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced.trim_matches('_').to_string()
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("parsing {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("no data")]
    NoData,
}

impl CollectError {
    pub fn parse(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        CollectError::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// True when the file simply is not there (module not loaded, feature absent).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CollectError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Why a collector could not be set up (bad flag value).
#[derive(Debug, thiserror::Error)]
#[error("collector {collector}: {reason}")]
pub struct BuildError {
    pub collector: &'static str,
    pub reason: String,
}

fn regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| format!("invalid regular expression: {e}"))
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// Settings of individual collectors, with node_exporter's flag names and defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectorOptions {
    /// Enables metric node_cpu_guest_seconds_total.
    #[arg(long = "collector.cpu.guest", env = "HEIMDALL_EXPORTER_COLLECTOR_CPU_GUEST",
          default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cpu_guest: bool,
    /// Enables metric node_cpu_info (and frequency, flags, bugs) from /proc/cpuinfo.
    #[arg(
        long = "collector.cpu.info",
        env = "HEIMDALL_EXPORTER_COLLECTOR_CPU_INFO"
    )]
    pub cpu_info: bool,
    /// Filter the `flags` field in cpuInfo with a value that must be a regular expression.
    #[arg(long = "collector.cpu.info.flags-include", env = "HEIMDALL_EXPORTER_COLLECTOR_CPU_INFO_FLAGS_INCLUDE", value_parser = regex)]
    pub cpu_info_flags_include: Option<Regex>,
    /// Filter the `bugs` field in cpuInfo with a value that must be a regular expression.
    #[arg(long = "collector.cpu.info.bugs-include", env = "HEIMDALL_EXPORTER_COLLECTOR_CPU_INFO_BUGS_INCLUDE", value_parser = regex)]
    pub cpu_info_bugs_include: Option<Regex>,

    /// Regexp of diskstats devices to exclude (mutually exclusive to device-include).
    #[arg(long = "collector.diskstats.device-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_DISKSTATS_DEVICE_EXCLUDE",
          default_value = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$", value_parser = regex)]
    pub diskstats_device_exclude: Regex,
    /// Regexp of diskstats devices to include (mutually exclusive to device-exclude).
    #[arg(long = "collector.diskstats.device-include", env = "HEIMDALL_EXPORTER_COLLECTOR_DISKSTATS_DEVICE_INCLUDE", value_parser = regex)]
    pub diskstats_device_include: Option<Regex>,

    /// Regexp of mount points to exclude for filesystem collector.
    #[arg(long = "collector.filesystem.mount-points-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_FILESYSTEM_MOUNT_POINTS_EXCLUDE",
          default_value = "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)", value_parser = regex)]
    pub filesystem_mount_points_exclude: Regex,
    /// Regexp of filesystem types to exclude for filesystem collector.
    #[arg(long = "collector.filesystem.fs-types-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_FILESYSTEM_FS_TYPES_EXCLUDE",
          default_value = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$",
          value_parser = regex)]
    pub filesystem_fs_types_exclude: Regex,
    /// How long to wait for a mount to respond before marking it as stale.
    #[arg(long = "collector.filesystem.mount-timeout", env = "HEIMDALL_EXPORTER_COLLECTOR_FILESYSTEM_MOUNT_TIMEOUT",
          default_value = "5s", value_parser = duration)]
    pub filesystem_mount_timeout: Duration,

    /// Regexp of hwmon chip to include (mutually exclusive to chip-exclude).
    #[arg(long = "collector.hwmon.chip-include", env = "HEIMDALL_EXPORTER_COLLECTOR_HWMON_CHIP_INCLUDE", value_parser = regex)]
    pub hwmon_chip_include: Option<Regex>,
    /// Regexp of hwmon chip to exclude (mutually exclusive to chip-include).
    #[arg(long = "collector.hwmon.chip-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_HWMON_CHIP_EXCLUDE", value_parser = regex)]
    pub hwmon_chip_exclude: Option<Regex>,

    /// Regexp of net devices to ignore for netclass collector.
    #[arg(long = "collector.netclass.ignored-devices", env = "HEIMDALL_EXPORTER_COLLECTOR_NETCLASS_IGNORED_DEVICES",
          default_value = "^$", value_parser = regex)]
    pub netclass_ignored_devices: Regex,
    /// Ignore devices where the speed is invalid. This will be the default behavior in 2.x.
    #[arg(
        long = "collector.netclass.ignore-invalid-speed",
        env = "HEIMDALL_EXPORTER_COLLECTOR_NETCLASS_IGNORE_INVALID_SPEED"
    )]
    pub netclass_ignore_invalid_speed: bool,

    /// Regexp of net devices to include (mutually exclusive to device-exclude).
    #[arg(long = "collector.netdev.device-include", env = "HEIMDALL_EXPORTER_COLLECTOR_NETDEV_DEVICE_INCLUDE", value_parser = regex)]
    pub netdev_device_include: Option<Regex>,
    /// Regexp of net devices to exclude (mutually exclusive to device-include).
    #[arg(long = "collector.netdev.device-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_NETDEV_DEVICE_EXCLUDE", value_parser = regex)]
    pub netdev_device_exclude: Option<Regex>,

    /// Regexp of fields to return for netstat collector.
    #[arg(long = "collector.netstat.fields", env = "HEIMDALL_EXPORTER_COLLECTOR_NETSTAT_FIELDS",
          default_value = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$",
          value_parser = regex)]
    pub netstat_fields: Regex,

    /// Export softirq calls per vector.
    #[arg(
        long = "collector.stat.softirq",
        env = "HEIMDALL_EXPORTER_COLLECTOR_STAT_SOFTIRQ"
    )]
    pub stat_softirq: bool,

    /// Regexp of fields to return for vmstat collector.
    #[arg(long = "collector.vmstat.fields", env = "HEIMDALL_EXPORTER_COLLECTOR_VMSTAT_FIELDS",
          default_value = "^(oom_kill|pgpg|pswp|pg.*fault).*", value_parser = regex)]
    pub vmstat_fields: Regex,

    /// Regexp of hwmon sensor to include (mutually exclusive to sensor-exclude). Matched
    /// against `<chip>;<sensor>`, e.g. `platform_coretemp_0;temp3`.
    #[arg(long = "collector.hwmon.sensor-include", env = "HEIMDALL_EXPORTER_COLLECTOR_HWMON_SENSOR_INCLUDE", value_parser = regex)]
    pub hwmon_sensor_include: Option<Regex>,
    /// Regexp of hwmon sensor to exclude (mutually exclusive to sensor-include). Matched
    /// against `<chip>;<sensor>`.
    #[arg(long = "collector.hwmon.sensor-exclude", env = "HEIMDALL_EXPORTER_COLLECTOR_HWMON_SENSOR_EXCLUDE", value_parser = regex)]
    pub hwmon_sensor_exclude: Option<Regex>,
}

/// node_exporter's defaults, independent of the environment (the `HEIMDALL_EXPORTER_*`
/// variables apply only through [`crate::config::parse_from`]).
impl Default for CollectorOptions {
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let cmd = Self::augment_args(clap::Command::new("defaults").no_binary_name(true))
            .mut_args(|a| a.env(None));
        // Only the literal defaults above are parsed, and `defaults_parse` checks them: a
        // failure here is a bug in this file, never bad input.
        let m = cmd
            .try_get_matches_from(std::iter::empty::<String>())
            .expect("collector option defaults parse");
        Self::from_arg_matches(&m).expect("collector option defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_and_builds() {
        let names: Vec<_> = COLLECTORS.iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "COLLECTORS must be alphabetical and unique");
        let opts = CollectorOptions::default();
        for r in COLLECTORS {
            assert!(
                r.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                r.name
            );
            (r.build)(&opts).unwrap_or_else(|e| panic!("{} fails to build: {e}", r.name));
        }
    }

    #[test]
    fn defaults_parse() {
        let o = CollectorOptions::default();
        assert!(o.cpu_guest);
        assert!(!o.filesystem_fs_types_exclude.is_match("tmpfs"));
        assert!(o.filesystem_fs_types_exclude.is_match("sysfs"));
        assert!(o.filesystem_mount_points_exclude.is_match("/proc/sys"));
        assert!(o.diskstats_device_exclude.is_match("sda1"));
        assert!(!o.diskstats_device_exclude.is_match("sda"));
        assert_eq!(o.filesystem_mount_timeout, Duration::from_secs(5));
    }

    #[test]
    fn paths_join_below_roots() {
        let p = Paths {
            procfs: "/f/proc".into(),
            sysfs: "/f/sys".into(),
            rootfs: "/f".into(),
            udev_data: "/f/udev".into(),
        };
        assert_eq!(p.proc("net/dev"), PathBuf::from("/f/proc/net/dev"));
        assert_eq!(
            p.root("/etc/os-release"),
            PathBuf::from("/f/etc/os-release")
        );
    }
}
