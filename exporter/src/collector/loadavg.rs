//! `loadavg`: node_load1, node_load5, node_load15 from `/proc/loadavg`.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Loadavg;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Loadavg))
}

impl Collector for Loadavg {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let [l1, l5, l15] = parse_loadavg(&paths.read_proc("loadavg")?)?;
        out.gauge("node_load1", "1m load average.", &[], l1);
        out.gauge("node_load5", "5m load average.", &[], l5);
        out.gauge("node_load15", "15m load average.", &[], l15);
        Ok(())
    }
}

/// Parses the first three fields of `/proc/loadavg` ("0.02 0.04 0.05 1/497 11947").
pub fn parse_loadavg(s: &str) -> Result<[f64; 3], CollectError> {
    let mut fields = s.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for (i, slot) in out.iter_mut().enumerate() {
        let f = fields.next().ok_or_else(|| {
            CollectError::parse("/proc/loadavg", format!("missing field {}", i + 1))
        })?;
        *slot = f.parse().map_err(|e| {
            CollectError::parse("/proc/loadavg", format!("field {}: {f:?}: {e}", i + 1))
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse_loadavg("0.02 0.04 0.05 1/497 11947\n").unwrap(),
            [0.02, 0.04, 0.05]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_loadavg("").is_err());
        assert!(parse_loadavg("0.1 x 0.3").is_err());
    }
}
