//! `entropy`: node_entropy_available_bits and node_entropy_pool_size_bits from
//! `/proc/sys/kernel/random/{entropy_avail,poolsize}`, as node_exporter's `entropy_linux.go`.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Entropy;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Entropy))
}

impl Collector for Entropy {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let read = |file: &str| {
            let rel = format!("sys/kernel/random/{file}");
            parse_uint(&paths.read_proc(&rel)?, &rel)
        };
        let available = read("entropy_avail")?;
        let pool_size = read("poolsize")?;
        out.gauge(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            &[],
            available as f64,
        );
        out.gauge(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            &[],
            pool_size as f64,
        );
        Ok(())
    }
}

/// Parses a file holding one unsigned integer (surrounding whitespace allowed).
pub fn parse_uint(s: &str, what: &str) -> Result<u64, CollectError> {
    let t = s.trim();
    t.parse()
        .map_err(|e| CollectError::parse(what.to_owned(), format!("{t:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uint() {
        assert_eq!(parse_uint("256\n", "x").unwrap(), 256);
        assert_eq!(parse_uint(" 4096", "x").unwrap(), 4096);
    }

    #[test]
    fn rejects_malformed_uint() {
        assert!(parse_uint("", "x").is_err());
        assert!(parse_uint("-1\n", "x").is_err());
        assert!(parse_uint("12 34\n", "x").is_err());
    }
}
