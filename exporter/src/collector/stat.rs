//! `stat`: kernel counters from `/proc/stat`, as node_exporter's `stat_linux.go`:
//! node_intr_total, node_context_switches_total, node_forks_total, node_boot_time_seconds,
//! node_procs_running, node_procs_blocked and, with `--collector.stat.softirq`,
//! node_softirqs_total{vector}.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// The softirq vectors of the `softirq` line, in column order, with node_exporter's names.
pub const SOFTIRQ_VECTORS: [&str; 10] = [
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
];

#[derive(Debug)]
struct Stat {
    softirq: bool,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Stat {
        softirq: opts.stat_softirq,
    }))
}

impl Collector for Stat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let s = parse_stat(&paths.read_proc("stat")?)?;
        out.counter(
            "node_intr_total",
            "Total number of interrupts serviced.",
            &[],
            s.intr as f64,
        );
        out.counter(
            "node_context_switches_total",
            "Total number of context switches.",
            &[],
            s.ctxt as f64,
        );
        out.counter(
            "node_forks_total",
            "Total number of forks.",
            &[],
            s.processes as f64,
        );
        out.gauge(
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            &[],
            s.btime as f64,
        );
        out.gauge(
            "node_procs_running",
            "Number of processes in runnable state.",
            &[],
            s.procs_running as f64,
        );
        out.gauge(
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            &[],
            s.procs_blocked as f64,
        );
        if self.softirq {
            for (vector, n) in SOFTIRQ_VECTORS.iter().zip(s.softirq) {
                out.counter(
                    "node_softirqs_total",
                    "Number of softirq calls.",
                    &[("vector", vector)],
                    n as f64,
                );
            }
        }
        Ok(())
    }
}

/// The non-CPU counters of `/proc/stat`; absent lines read as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStat {
    pub intr: u64,
    pub ctxt: u64,
    pub btime: u64,
    pub processes: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
    /// Per vector, in [`SOFTIRQ_VECTORS`] order.
    pub softirq: [u64; 10],
}

fn num(key: &str, v: &str) -> Result<u64, CollectError> {
    v.parse()
        .map_err(|e| CollectError::parse("/proc/stat", format!("{key} {v:?}: {e}")))
}

/// Parses `/proc/stat` (the keyed lines; `cpu*` lines are the cpu collector's business).
pub fn parse_stat(s: &str) -> Result<KernelStat, CollectError> {
    let mut st = KernelStat::default();
    for line in s.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(key), Some(first)) = (parts.next(), parts.next()) else {
            continue;
        };
        match key {
            "intr" => st.intr = num(key, first)?,
            "ctxt" => st.ctxt = num(key, first)?,
            "btime" => st.btime = num(key, first)?,
            "processes" => st.processes = num(key, first)?,
            "procs_running" => st.procs_running = num(key, first)?,
            "procs_blocked" => st.procs_blocked = num(key, first)?,
            "softirq" => {
                num(key, first)?; // the total
                for (i, slot) in st.softirq.iter_mut().enumerate() {
                    let v = parts.next().ok_or_else(|| {
                        CollectError::parse(
                            "/proc/stat",
                            format!("softirq: missing vector {}", SOFTIRQ_VECTORS[i]),
                        )
                    })?;
                    *slot = num(key, v)?;
                }
            }
            _ => {}
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        let s = "cpu  1 2 3 4 5 6 7 8 9 10\n\
                 cpu0 1 2 3 4 5 6 7 8 9 10\n\
                 intr 9000 5 0 7\n\
                 ctxt 123456\n\
                 btime 1700000000\n\
                 processes 777\n\
                 procs_running 3\n\
                 procs_blocked 1\n\
                 softirq 55 1 2 3 4 5 6 7 8 9 10\n";
        let st = parse_stat(s).unwrap();
        assert_eq!(
            st,
            KernelStat {
                intr: 9000,
                ctxt: 123456,
                btime: 1_700_000_000,
                processes: 777,
                procs_running: 3,
                procs_blocked: 1,
                softirq: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            }
        );
    }

    #[test]
    fn absent_lines_are_zero() {
        assert_eq!(parse_stat("ctxt 5\n\n").unwrap().btime, 0);
    }

    #[test]
    fn rejects_malformed_stat() {
        assert!(parse_stat("ctxt lots\n").is_err());
        assert!(parse_stat("btime -1\n").is_err());
        assert!(parse_stat("softirq 10 1 2 3\n").is_err());
        assert!(parse_stat("softirq 10 1 2 3 4 5 6 7 8 9 x\n").is_err());
    }
}
