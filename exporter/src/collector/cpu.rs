//! `cpu`: per-CPU time from `/proc/stat`, `/proc/cpuinfo` details (with `--collector.cpu.info`),
//! thermal throttle counters and isolated CPUs from sysfs, as node_exporter's `cpu_linux.go`.
//!
//! Families: node_cpu_seconds_total, node_cpu_guest_seconds_total, node_cpu_info,
//! node_cpu_frequency_hertz, node_cpu_flag_info, node_cpu_bug_info,
//! node_cpu_core_throttles_total, node_cpu_package_throttles_total, node_cpu_isolated.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// `USER_HZ`: the unit of the times in `/proc/stat`, fixed at 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// If a CPU's idle time goes back by this many seconds or more, it was hot-plugged: node_exporter
/// forgets that CPU's previous values instead of holding them.
const JUMP_BACK_SECONDS: f64 = 3.0;

const SECONDS_HELP: &str = "Seconds the CPUs spent in each mode.";
const GUEST_HELP: &str = "Seconds the CPUs spent in guests (VMs) for each mode.";
const INFO_HELP: &str = "CPU information from /proc/cpuinfo.";
const FREQ_HELP: &str = "CPU frequency in hertz from /proc/cpuinfo.";
const FLAG_HELP: &str =
    "The `flags` field of CPU information from /proc/cpuinfo taken from the first core.";
const BUG_HELP: &str =
    "The `bugs` field of CPU information from /proc/cpuinfo taken from the first core.";
const CORE_THROTTLE_HELP: &str = "Number of times this CPU core has been throttled.";
const PACKAGE_THROTTLE_HELP: &str = "Number of times this CPU package has been throttled.";
const ISOLATED_HELP: &str =
    "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.";

/// Seconds per mode of one CPU, in `/proc/stat` column order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    pub guest: f64,
    pub guest_nice: f64,
}

impl CpuTimes {
    fn fields_mut(&mut self) -> [&mut f64; 10] {
        [
            &mut self.user,
            &mut self.nice,
            &mut self.system,
            &mut self.idle,
            &mut self.iowait,
            &mut self.irq,
            &mut self.softirq,
            &mut self.steal,
            &mut self.guest,
            &mut self.guest_nice,
        ]
    }

    fn fields(&self) -> [f64; 10] {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
            self.guest,
            self.guest_nice,
        ]
    }
}

#[derive(Debug)]
struct Cpu {
    guest: bool,
    info: bool,
    flags_include: Option<Regex>,
    bugs_include: Option<Regex>,
    /// Last values seen per CPU, so that counters never go backwards (node_exporter's cache).
    stats: Mutex<BTreeMap<u32, CpuTimes>>,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Cpu {
        guest: opts.cpu_guest,
        info: opts.cpu_info,
        flags_include: opts.cpu_info_flags_include.clone(),
        bugs_include: opts.cpu_info_bugs_include.clone(),
        stats: Mutex::new(BTreeMap::new()),
    }))
}

impl Collector for Cpu {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        if self.info {
            let text = paths.read_proc("cpuinfo")?;
            let info = parse_cpuinfo(&text)?;
            self.emit_info(&info, out);
        }
        self.collect_stat(paths, out)?;
        collect_isolated(paths, out)?;
        collect_thermal_throttle(paths, out);
        Ok(())
    }
}

impl Cpu {
    fn emit_info(&self, info: &[CpuInfo<'_>], out: &mut Sink) {
        let mut num = itoa::Buffer::new();
        for c in info {
            let cpu = num.format(c.processor);
            out.gauge(
                "node_cpu_info",
                INFO_HELP,
                &[
                    ("package", c.physical_id),
                    ("core", c.core_id),
                    ("cpu", cpu),
                    ("vendor", c.vendor_id),
                    ("family", c.cpu_family),
                    ("model", c.model),
                    ("model_name", c.model_name),
                    ("microcode", c.microcode),
                    ("stepping", c.stepping),
                    ("cachesize", c.cache_size),
                ],
                1.0,
            );
        }
        for c in info {
            let cpu = num.format(c.processor);
            out.gauge(
                "node_cpu_frequency_hertz",
                FREQ_HELP,
                &[
                    ("package", c.physical_id),
                    ("core", c.core_id),
                    ("cpu", cpu),
                ],
                c.cpu_mhz * 1e6,
            );
        }
        if let Some(first) = info.first() {
            emit_field_info(
                first.flags,
                self.flags_include.as_ref(),
                "node_cpu_flag_info",
                FLAG_HELP,
                "flag",
                out,
            );
            emit_field_info(
                first.bugs,
                self.bugs_include.as_ref(),
                "node_cpu_bug_info",
                BUG_HELP,
                "bug",
                out,
            );
        }
    }

    fn collect_stat(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let fresh = parse_cpu_stat(&paths.read_proc("stat")?)?;
        let mut cache = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        update_cpu_stats(&mut cache, &fresh);
        let mut num = itoa::Buffer::new();
        for (&id, t) in cache.iter() {
            let cpu = num.format(id);
            for (mode, v) in [
                ("user", t.user),
                ("nice", t.nice),
                ("system", t.system),
                ("idle", t.idle),
                ("iowait", t.iowait),
                ("irq", t.irq),
                ("softirq", t.softirq),
                ("steal", t.steal),
            ] {
                out.counter(
                    "node_cpu_seconds_total",
                    SECONDS_HELP,
                    &[("cpu", cpu), ("mode", mode)],
                    v,
                );
            }
            if self.guest {
                // Guest time is also accounted in user and nice; exposed separately.
                out.counter(
                    "node_cpu_guest_seconds_total",
                    GUEST_HELP,
                    &[("cpu", cpu), ("mode", "user")],
                    t.guest,
                );
                out.counter(
                    "node_cpu_guest_seconds_total",
                    GUEST_HELP,
                    &[("cpu", cpu), ("mode", "nice")],
                    t.guest_nice,
                );
            }
        }
        Ok(())
    }
}

fn emit_field_info(
    values: &str,
    filter: Option<&Regex>,
    name: &str,
    help: &str,
    label: &str,
    out: &mut Sink,
) {
    let Some(filter) = filter else {
        return;
    };
    for v in values.split_ascii_whitespace() {
        if filter.is_match(v) {
            out.gauge(name, help, &[(label, v)], 1.0);
        }
    }
}

/// Merges freshly read times into the cache as node_exporter does: a counter that went
/// backwards keeps its previous value, an idle jump back of [`JUMP_BACK_SECONDS`] or more resets
/// the CPU (hotplug), and CPUs no longer listed are dropped.
pub fn update_cpu_stats(cache: &mut BTreeMap<u32, CpuTimes>, fresh: &[(u32, CpuTimes)]) {
    for &(id, new) in fresh {
        let mut cur = cache.get(&id).copied().unwrap_or_default();
        if cur.idle - new.idle >= JUMP_BACK_SECONDS {
            tracing::debug!(
                cpu = id,
                old = cur.idle,
                new = new.idle,
                "CPU idle jumped backwards, possible hotplug"
            );
            cur = CpuTimes::default();
        }
        for (slot, value) in cur.fields_mut().into_iter().zip(new.fields()) {
            if value >= *slot {
                *slot = value;
            }
        }
        cache.insert(id, cur);
    }
    if cache.len() != fresh.len() {
        cache.retain(|id, _| fresh.iter().any(|(f, _)| f == id));
    }
}

/// Parses the per-CPU `cpuN` lines of `/proc/stat` into seconds (the aggregate `cpu` line is
/// skipped). Missing trailing columns (old kernels) read as 0.
pub fn parse_cpu_stat(s: &str) -> Result<Vec<(u32, CpuTimes)>, CollectError> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(key) = parts.next() else {
            continue;
        };
        let Some(id) = key.strip_prefix("cpu") else {
            continue;
        };
        let mut times = CpuTimes::default();
        let mut n = 0;
        for (slot, f) in times.fields_mut().into_iter().zip(parts) {
            let ticks: f64 = f.parse().map_err(|e| {
                CollectError::parse("/proc/stat", format!("{key}: value {f:?}: {e}"))
            })?;
            *slot = ticks / USER_HZ;
            n += 1;
        }
        if n == 0 {
            return Err(CollectError::parse(
                "/proc/stat",
                format!("{key}: no values"),
            ));
        }
        if id.is_empty() {
            continue; // the all-CPU total
        }
        let id: u32 = id
            .parse()
            .map_err(|e| CollectError::parse("/proc/stat", format!("cpu id {key:?}: {e}")))?;
        out.push((id, times));
    }
    Ok(out)
}

/// One processor's entry of `/proc/cpuinfo` (the fields node_exporter uses), borrowing the text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuInfo<'a> {
    pub processor: u32,
    pub vendor_id: &'a str,
    pub cpu_family: &'a str,
    pub model: &'a str,
    pub model_name: &'a str,
    pub stepping: &'a str,
    pub microcode: &'a str,
    pub cpu_mhz: f64,
    pub cache_size: &'a str,
    pub physical_id: &'a str,
    pub core_id: &'a str,
    /// Space-separated.
    pub flags: &'a str,
    /// Space-separated.
    pub bugs: &'a str,
}

/// Parses the number of a `processor` line like Go's `ParseUint(s, 0, 32)` (decimal, or with a
/// `0x`/`0o`/`0b` prefix).
fn parse_processor(v: &str) -> Result<u32, CollectError> {
    let err = |e: &dyn std::fmt::Display| {
        CollectError::parse("/proc/cpuinfo", format!("processor {v:?}: {e}"))
    };
    let (digits, radix) = match v.get(..2) {
        Some("0x" | "0X") => (&v[2..], 16),
        Some("0o" | "0O") => (&v[2..], 8),
        Some("0b" | "0B") => (&v[2..], 2),
        _ if v.len() > 1 && v.starts_with('0') => (&v[1..], 8),
        _ => (v, 10),
    };
    u32::from_str_radix(digits, radix).map_err(|e| err(&e))
}

/// Parses `/proc/cpuinfo` in the x86 layout (a `processor` line starts each entry), as
/// procfs's `parseCPUInfoX86` does.
pub fn parse_cpuinfo(s: &str) -> Result<Vec<CpuInfo<'_>>, CollectError> {
    let mut lines = s.lines();
    let first = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or("");
    let Some(first_value) = first
        .strip_prefix("processor")
        .and_then(|rest| rest.split_once(": "))
        .map(|(_, v)| v)
    else {
        return Err(CollectError::parse(
            "/proc/cpuinfo",
            format!("cannot parse line {first:?}: expected a \"processor\" line"),
        ));
    };
    let mut cpus = vec![CpuInfo {
        processor: parse_processor(first_value)?,
        ..CpuInfo::default()
    }];
    for line in lines {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let key = key.trim();
        if key == "processor" {
            cpus.push(CpuInfo {
                processor: parse_processor(value)?,
                ..CpuInfo::default()
            });
            continue;
        }
        let Some(cur) = cpus.last_mut() else {
            continue;
        };
        match key {
            "vendor" | "vendor_id" => cur.vendor_id = value,
            "cpu family" => cur.cpu_family = value,
            "model" => cur.model = value,
            "model name" => cur.model_name = value,
            "stepping" => cur.stepping = value,
            "microcode" => cur.microcode = value,
            "cpu MHz" => {
                cur.cpu_mhz = value.parse().map_err(|e| {
                    CollectError::parse("/proc/cpuinfo", format!("cpu MHz {value:?}: {e}"))
                })?;
            }
            "cache size" => cur.cache_size = value,
            "physical id" => cur.physical_id = value,
            "core id" => cur.core_id = value,
            "flags" => cur.flags = value,
            "bugs" => cur.bugs = value,
            _ => {}
        }
    }
    Ok(cpus)
}

/// Parses a sysfs CPU list such as `1,3-5,9`.
pub fn parse_cpu_range(s: &str) -> Result<Vec<u16>, CollectError> {
    let err = |part: &str, why: &dyn std::fmt::Display| {
        CollectError::parse("cpu list", format!("{part:?}: {why}"))
    };
    let mut out = Vec::new();
    for part in s.trim_end_matches('\n').split(',') {
        if part.is_empty() {
            continue;
        }
        if let Some((a, b)) = part.split_once('-') {
            let start: u16 = a.parse().map_err(|e| err(part, &e))?;
            let end: u16 = b.parse().map_err(|e| err(part, &e))?;
            out.extend(start..=end);
        } else {
            out.push(part.parse().map_err(|e| err(part, &e))?);
        }
    }
    Ok(out)
}

fn collect_isolated(paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
    let text = match paths.read_sys("devices/system/cpu/isolated") {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut num = itoa::Buffer::new();
    for cpu in parse_cpu_range(&text)? {
        out.gauge(
            "node_cpu_isolated",
            ISOLATED_HELP,
            &[("cpu", num.format(cpu))],
            1.0,
        );
    }
    Ok(())
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `cpuN/thermal_throttle/{core,package}_throttle_count`, read once per core and per package
/// in glob (lexical) order of the CPU directories. Unreadable files are skipped, as upstream.
fn collect_thermal_throttle(paths: &Paths, out: &mut Sink) {
    let base = paths.sys("devices/system/cpu");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return;
    };
    let mut cpus: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    cpus.sort_unstable();

    let mut packages: BTreeMap<u64, u64> = BTreeMap::new();
    let mut cores: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for name in &cpus {
        let dir = base.join(name);
        let Some(package) = read_u64(&dir.join("topology/physical_package_id")) else {
            continue;
        };
        let Some(core) = read_u64(&dir.join("topology/core_id")) else {
            continue;
        };
        if let std::collections::btree_map::Entry::Vacant(e) = cores.entry((package, core))
            && let Some(n) = read_u64(&dir.join("thermal_throttle/core_throttle_count"))
        {
            e.insert(n);
        }
        if let std::collections::btree_map::Entry::Vacant(e) = packages.entry(package)
            && let Some(n) = read_u64(&dir.join("thermal_throttle/package_throttle_count"))
        {
            e.insert(n);
        }
    }

    let mut pbuf = itoa::Buffer::new();
    let mut cbuf = itoa::Buffer::new();
    for (&package, &n) in &packages {
        out.counter(
            "node_cpu_package_throttles_total",
            PACKAGE_THROTTLE_HELP,
            &[("package", pbuf.format(package))],
            n as f64,
        );
    }
    for (&(package, core), &n) in &cores {
        out.counter(
            "node_cpu_core_throttles_total",
            CORE_THROTTLE_HELP,
            &[
                ("package", pbuf.format(package)),
                ("core", cbuf.format(core)),
            ],
            n as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  300 20 100 9000 30 1 40 0 5 2\n\
                        cpu0 150 10 50 4500 15 1 20 0 3 1\n\
                        cpu1 150 10 50 4500 15 0 20 0 2 1\n\
                        intr 123 0 1\nctxt 42\nbtime 1700000000\n";

    #[test]
    fn parses_cpu_lines_in_seconds() {
        let cpus = parse_cpu_stat(STAT).unwrap();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].0, 0);
        assert_eq!(cpus[0].1.user, 1.5);
        assert_eq!(cpus[0].1.idle, 45.0);
        assert_eq!(cpus[0].1.guest_nice, 0.01);
        assert_eq!(cpus[1].0, 1);
        assert_eq!(cpus[1].1.irq, 0.0);
    }

    #[test]
    fn short_cpu_lines_default_to_zero() {
        let cpus = parse_cpu_stat("cpu0 100 200 300 400\n").unwrap();
        assert_eq!(cpus[0].1.idle, 4.0);
        assert_eq!(cpus[0].1.steal, 0.0);
    }

    #[test]
    fn rejects_malformed_stat() {
        assert!(parse_cpu_stat("cpu0 10 x 3\n").is_err());
        assert!(parse_cpu_stat("cpu0\n").is_err());
        assert!(parse_cpu_stat("cpuX 1 2 3\n").is_err());
    }

    #[test]
    fn cache_holds_counters_and_resets_on_hotplug() {
        let t = |user: f64, idle: f64| CpuTimes {
            user,
            idle,
            ..CpuTimes::default()
        };
        let mut cache = BTreeMap::new();
        update_cpu_stats(&mut cache, &[(0, t(10.0, 100.0)), (1, t(5.0, 50.0))]);
        // user went backwards a little: held.
        update_cpu_stats(&mut cache, &[(0, t(9.0, 101.0)), (1, t(6.0, 51.0))]);
        assert_eq!(cache[&0], t(10.0, 101.0));
        // idle jumped back by >= 3s: reset to the new values.
        update_cpu_stats(&mut cache, &[(0, t(1.0, 2.0)), (1, t(7.0, 52.0))]);
        assert_eq!(cache[&0], t(1.0, 2.0));
        // cpu1 went offline.
        update_cpu_stats(&mut cache, &[(0, t(2.0, 3.0))]);
        assert_eq!(cache.keys().copied().collect::<Vec<_>>(), vec![0]);
    }

    const CPUINFO: &str = "processor\t: 0\n\
vendor_id\t: AuthenticAMD\n\
cpu family\t: 23\n\
model\t\t: 49\n\
model name\t: AMD EPYC 7B12\n\
stepping\t: 0\n\
microcode\t: 0x1000065\n\
cpu MHz\t\t: 2250.000\n\
cache size\t: 512 KB\n\
physical id\t: 0\n\
core id\t\t: 0\n\
flags\t\t: fpu sse2 avx avx2 aes\n\
bugs\t\t: sysret_ss_attrs spectre_v1\n\
power management:\n\
\n\
processor\t: 1\n\
vendor_id\t: AuthenticAMD\n\
cpu MHz\t\t: 1500.5\n\
physical id\t: 0\n\
core id\t\t: 1\n\
flags\t\t: fpu\n";

    #[test]
    fn parses_cpuinfo() {
        let info = parse_cpuinfo(CPUINFO).unwrap();
        assert_eq!(info.len(), 2);
        assert_eq!(info[0].processor, 0);
        assert_eq!(info[0].vendor_id, "AuthenticAMD");
        assert_eq!(info[0].model_name, "AMD EPYC 7B12");
        assert_eq!(info[0].cache_size, "512 KB");
        assert_eq!(info[0].microcode, "0x1000065");
        assert_eq!(info[0].cpu_mhz, 2250.0);
        assert_eq!(info[0].flags, "fpu sse2 avx avx2 aes");
        assert_eq!(info[1].processor, 1);
        assert_eq!(info[1].core_id, "1");
        assert_eq!(info[1].cpu_mhz, 1500.5);
        assert_eq!(info[1].model, "");
    }

    #[test]
    fn rejects_malformed_cpuinfo() {
        assert!(parse_cpuinfo("").is_err());
        assert!(parse_cpuinfo("vendor_id\t: X\n").is_err());
        assert!(parse_cpuinfo("processor\t: zero\n").is_err());
        assert!(parse_cpuinfo("processor\t: 0\ncpu MHz\t: fast\n").is_err());
    }

    #[test]
    fn flag_filter() {
        let mut sink = Sink::new();
        let re = Regex::new("^(aes|avx.?)$").unwrap();
        emit_field_info(
            "fpu sse2 avx avx2 aes avx512f",
            Some(&re),
            "f",
            "h",
            "flag",
            &mut sink,
        );
        let got: Vec<_> = sink.samples().map(|(_, l, _)| l.to_owned()).collect();
        assert_eq!(got, ["flag=\"avx\"", "flag=\"avx2\"", "flag=\"aes\""]);
        let mut sink = Sink::new();
        emit_field_info("fpu", None, "f", "h", "flag", &mut sink);
        assert!(sink.is_empty());
    }

    #[test]
    fn parses_cpu_ranges() {
        assert_eq!(parse_cpu_range("1,3-5,9\n").unwrap(), vec![1, 3, 4, 5, 9]);
        assert_eq!(parse_cpu_range("\n").unwrap(), Vec::<u16>::new());
        assert!(parse_cpu_range("1-x").is_err());
        assert!(parse_cpu_range("1-2-3").is_err());
        assert!(parse_cpu_range("99999").is_err());
    }

    #[test]
    fn parses_processor_numbers_like_go() {
        assert_eq!(parse_processor("12").unwrap(), 12);
        assert_eq!(parse_processor("0x10").unwrap(), 16);
        assert_eq!(parse_processor("0").unwrap(), 0);
        assert!(parse_processor("-1").is_err());
    }
}
