//! `pressure`: pressure stall information from `/proc/pressure/{cpu,io,memory,irq}`, as
//! node_exporter's `pressure_linux.go`: cumulative stall totals (µs) as seconds.

use std::io;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// A family's name and help.
type Family = (&'static str, &'static str);

/// Resources in upstream's order, with the families of their `some` and `full` totals.
const RESOURCES: [(&str, Option<Family>, Option<Family>); 4] = [
    (
        "cpu",
        Some((
            "node_pressure_cpu_waiting_seconds_total",
            "Total time in seconds that processes have waited for CPU time",
        )),
        None,
    ),
    (
        "io",
        Some((
            "node_pressure_io_waiting_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
        )),
        Some((
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IO congestion",
        )),
    ),
    (
        "memory",
        Some((
            "node_pressure_memory_waiting_seconds_total",
            "Total time in seconds that processes have waited for memory",
        )),
        Some((
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds no process could make progress due to memory congestion",
        )),
    ),
    (
        "irq",
        None,
        Some((
            "node_pressure_irq_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IRQ congestion",
        )),
    ),
];

#[derive(Debug)]
struct Pressure;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Pressure))
}

/// True for the errors that mean "this kernel has no PSI (for this resource)".
fn is_unavailable(e: &CollectError) -> bool {
    match e {
        CollectError::Io { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
        }
        _ => false,
    }
}

fn usec_to_seconds(total: u64) -> f64 {
    // Two divisions, as upstream, for bit-identical values.
    total as f64 / 1000.0 / 1000.0
}

impl Collector for Pressure {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        for (i, (res, some_family, full_family)) in RESOURCES.iter().enumerate() {
            let text = match paths.read_proc(&format!("pressure/{res}")) {
                Ok(t) => t,
                Err(e) if is_unavailable(&e) => {
                    // node_exporter stops here with "no data" but keeps what it already sent;
                    // keep the resources read so far (irq PSI is missing on many kernels).
                    tracing::debug!(resource = res, error = %e, "pressure information is unavailable");
                    return if i == 0 {
                        Err(CollectError::NoData)
                    } else {
                        Ok(())
                    };
                }
                Err(e) => return Err(e),
            };
            let psi = parse_psi(&text, res)?;
            if (some_family.is_some() && psi.some.is_none())
                || (*res != "cpu" && psi.full.is_none())
            {
                tracing::debug!(resource = res, "pressure information lacks some/full data");
                return if i == 0 {
                    Err(CollectError::NoData)
                } else {
                    Ok(())
                };
            }
            if let (Some((name, help)), Some(total)) = (some_family, psi.some) {
                out.counter(name, help, &[], usec_to_seconds(total));
            }
            if let (Some((name, help)), Some(total)) = (full_family, psi.full) {
                out.counter(name, help, &[], usec_to_seconds(total));
            }
        }
        Ok(())
    }
}

/// The cumulative `total=` values (µs) of one pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Psi {
    pub some: Option<u64>,
    pub full: Option<u64>,
}

/// Parses a `/proc/pressure/<res>` file:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=12345` and optionally a `full ...` line.
pub fn parse_psi(s: &str, res: &str) -> Result<Psi, CollectError> {
    let what = || format!("/proc/pressure/{res}");
    let mut psi = Psi::default();
    for line in s.lines() {
        let mut parts = line.split_ascii_whitespace();
        let slot = match parts.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        let mut total = None;
        for (i, key) in ["avg10", "avg60", "avg300", "total"]
            .into_iter()
            .enumerate()
        {
            let field = parts
                .next()
                .ok_or_else(|| CollectError::parse(what(), format!("missing {key} in {line:?}")))?;
            let value = field
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .ok_or_else(|| {
                    CollectError::parse(what(), format!("expected {key}= in {line:?}"))
                })?;
            if i < 3 {
                value
                    .parse::<f64>()
                    .map_err(|e| CollectError::parse(what(), format!("{key} {value:?}: {e}")))?;
            } else {
                total =
                    Some(value.parse::<u64>().map_err(|e| {
                        CollectError::parse(what(), format!("total {value:?}: {e}"))
                    })?);
            }
        }
        *slot = total;
    }
    Ok(psi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let s = "some avg10=1.50 avg60=0.20 avg300=0.00 total=2500000\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=42";
        assert_eq!(
            parse_psi(s, "io").unwrap(),
            Psi {
                some: Some(2_500_000),
                full: Some(42)
            }
        );
        assert_eq!(
            parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", "cpu").unwrap(),
            Psi {
                some: Some(7),
                full: None
            }
        );
    }

    #[test]
    fn converts_like_upstream() {
        assert_eq!(usec_to_seconds(2_500_000), 2.5);
        assert_eq!(usec_to_seconds(0), 0.0);
    }

    #[test]
    fn rejects_malformed_psi() {
        assert!(parse_psi("some avg10=0.00 avg60=0.00\n", "cpu").is_err());
        assert!(parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=x\n", "cpu").is_err());
        assert!(parse_psi("full avg10=a avg60=0.00 avg300=0.00 total=1\n", "io").is_err());
        assert!(parse_psi("some avg60=0.00 avg10=0.00 avg300=0.00 total=1\n", "io").is_err());
    }
}
