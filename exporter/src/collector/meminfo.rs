//! `meminfo`: one gauge per `/proc/meminfo` line, named as node_exporter's `meminfo_linux.go`
//! names them: `Active(anon):  123 kB` becomes `node_memory_Active_anon_bytes` (value ×1024);
//! lines without a unit keep their name (`node_memory_HugePages_Total`). Every field is
//! exported, including ones this code has never heard of.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::{MetricType, Sink};

#[derive(Debug)]
struct Meminfo;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Meminfo))
}

impl Collector for Meminfo {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let text = paths.read_proc("meminfo")?;
        let fields = parse_meminfo(&text)?;
        if fields.is_empty() {
            return Err(CollectError::NoData);
        }
        let mut name = String::with_capacity(64);
        let mut help = String::with_capacity(64);
        for (key, value) in &fields {
            name.clear();
            name.push_str("node_memory_");
            name.push_str(key);
            help.clear();
            help.push_str("Memory information field ");
            help.push_str(key);
            help.push('.');
            let kind = if key.ends_with("_total") {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            out.emit(&name, &help, kind, &[], *value);
        }
        Ok(())
    }
}

fn is_metric_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Turns a meminfo key (without its colon) into node_exporter's metric suffix: the
/// parenthesised part becomes `_inner` (`Active(anon)` → `Active_anon`), and `_bytes` is
/// appended when the line has a unit.
pub fn mangle_key(key: &str, has_unit: bool) -> String {
    let mut out = String::with_capacity(key.len() + 6);
    // Go: regexp `\((.*)\)` replaced with `_${1}`: from the first '(' to the last ')'.
    match key
        .find('(')
        .and_then(|l| key.rfind(')').filter(|&r| r > l).map(|r| (l, r)))
    {
        Some((l, r)) => {
            out.push_str(&key[..l]);
            out.push('_');
            out.push_str(&key[l + 1..r]);
            out.push_str(&key[r + 1..]);
        }
        None => out.push_str(key),
    }
    if has_unit {
        out.push_str("_bytes");
    }
    out
}

/// Parses `/proc/meminfo` into (metric suffix, value) pairs in file order; values with a unit
/// (always kB) are converted to bytes. Fields whose mangled name is not a valid metric name
/// are skipped.
pub fn parse_meminfo(s: &str) -> Result<Vec<(String, f64)>, CollectError> {
    let mut out = Vec::with_capacity(64);
    for line in s.lines() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        let (raw_key, raw_value, has_unit) = match parts[..] {
            [] => continue,
            [k, v] => (k, v, false),
            [k, v, _unit] => (k, v, true),
            _ => {
                return Err(CollectError::parse(
                    "/proc/meminfo",
                    format!("invalid line {line:?}"),
                ));
            }
        };
        let mut value: f64 = raw_value.parse().map_err(|e| {
            CollectError::parse("/proc/meminfo", format!("invalid value in {line:?}: {e}"))
        })?;
        let key = raw_key.strip_suffix(':').unwrap_or(raw_key);
        if has_unit {
            value *= 1024.0;
        }
        let name = mangle_key(key, has_unit);
        if name.is_empty() || !name.chars().all(is_metric_name_char) {
            tracing::debug!(
                field = key,
                "meminfo field is no valid metric name, skipped"
            );
            continue;
        }
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_mangles() {
        let s = "MemTotal:       16000000 kB\n\
                 Active(anon):       2048 kB\n\
                 HugePages_Total:       4\n\
                 \n\
                 Weird-Name:            1 kB\n\
                 NewThing:              7 kB\n";
        let got = parse_meminfo(s).unwrap();
        assert_eq!(
            got,
            vec![
                ("MemTotal_bytes".to_owned(), 16_000_000.0 * 1024.0),
                ("Active_anon_bytes".to_owned(), 2048.0 * 1024.0),
                ("HugePages_Total".to_owned(), 4.0),
                ("NewThing_bytes".to_owned(), 7.0 * 1024.0),
            ]
        );
    }

    #[test]
    fn mangles_like_go_regexp() {
        assert_eq!(mangle_key("Inactive(file)", true), "Inactive_file_bytes");
        assert_eq!(mangle_key("A(b)c(d)", false), "A_b)c(d");
        assert_eq!(mangle_key("Odd)(", false), "Odd)(");
    }

    #[test]
    fn rejects_malformed_meminfo() {
        assert!(parse_meminfo("MemTotal: many kB\n").is_err());
        assert!(parse_meminfo("MemTotal:\n").is_err());
        assert!(parse_meminfo("MemTotal: 1 kB extra\n").is_err());
    }
}
