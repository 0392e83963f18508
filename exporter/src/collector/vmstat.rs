//! `vmstat`: `/proc/vmstat` fields matching `--collector.vmstat.fields`, as untyped
//! node_vmstat_<field>, like node_exporter's `vmstat_linux.go`.

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Vmstat {
    fields: Regex,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Vmstat {
        fields: opts.vmstat_fields.clone(),
    }))
}

impl Collector for Vmstat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let text = paths.read_proc("vmstat")?;
        let mut name = String::with_capacity(64);
        let mut help = String::with_capacity(64);
        for (field, value) in parse_vmstat(&text)? {
            if !self.fields.is_match(field) {
                continue;
            }
            name.clear();
            name.push_str("node_vmstat_");
            name.push_str(field);
            help.clear();
            help.push_str("/proc/vmstat information field ");
            help.push_str(field);
            help.push('.');
            out.untyped(&name, &help, &[], value);
        }
        Ok(())
    }
}

/// Parses `/proc/vmstat` ("name value" per line) in file order. Every value must parse, also
/// of fields that will be filtered out (as upstream).
pub fn parse_vmstat(s: &str) -> Result<Vec<(&str, f64)>, CollectError> {
    let mut out = Vec::with_capacity(256);
    for line in s.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(field) = parts.next() else {
            continue;
        };
        let raw = parts.next().ok_or_else(|| {
            CollectError::parse("/proc/vmstat", format!("{field}: missing value"))
        })?;
        let value: f64 = raw
            .parse()
            .map_err(|e| CollectError::parse("/proc/vmstat", format!("{field} {raw:?}: {e}")))?;
        if !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            tracing::debug!(field, "vmstat field is no valid metric name, skipped");
            continue;
        }
        out.push((field, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmstat() {
        let got = parse_vmstat("nr_free_pages 1000\npgfault 123456789\n\noom_kill 0\n").unwrap();
        assert_eq!(
            got,
            vec![
                ("nr_free_pages", 1000.0),
                ("pgfault", 123_456_789.0),
                ("oom_kill", 0.0)
            ]
        );
    }

    #[test]
    fn default_filter_selects_upstream_fields() {
        let re = CollectorOptions::default().vmstat_fields;
        let picked: Vec<_> = [
            "pgfault",
            "pgmajfault",
            "pgpgin",
            "pswpout",
            "oom_kill",
            "nr_dirty",
            "pgsteal_kswapd",
        ]
        .into_iter()
        .filter(|f| re.is_match(f))
        .collect();
        assert_eq!(
            picked,
            ["pgfault", "pgmajfault", "pgpgin", "pswpout", "oom_kill"]
        );
    }

    #[test]
    fn rejects_malformed_vmstat() {
        assert!(parse_vmstat("pgfault\n").is_err());
        assert!(parse_vmstat("pgfault many\n").is_err());
    }
}
