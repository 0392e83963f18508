//! `filefd`: node_filefd_allocated and node_filefd_maximum from `/proc/sys/fs/file-nr`, as
//! node_exporter's `filefd_linux.go`.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Filefd;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Filefd))
}

impl Collector for Filefd {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let (allocated, maximum) = parse_file_nr(&paths.read_proc("sys/fs/file-nr")?)?;
        out.gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            &[],
            allocated,
        );
        out.gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            &[],
            maximum,
        );
        Ok(())
    }
}

/// Parses `file-nr` ("allocated unused maximum"; the middle value is always 0 since 2.6).
pub fn parse_file_nr(s: &str) -> Result<(f64, f64), CollectError> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let [allocated, _, maximum, ..] = parts[..] else {
        return Err(CollectError::parse(
            "/proc/sys/fs/file-nr",
            format!("expected 3 values, got {}", parts.len()),
        ));
    };
    let num = |v: &str| {
        v.parse::<f64>().map_err(|e| {
            CollectError::parse("/proc/sys/fs/file-nr", format!("invalid value {v:?}: {e}"))
        })
    };
    Ok((num(allocated)?, num(maximum)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_nr() {
        assert_eq!(
            parse_file_nr("2048\t0\t9223372\n").unwrap(),
            (2048.0, 9_223_372.0)
        );
    }

    #[test]
    fn rejects_malformed_file_nr() {
        assert!(parse_file_nr("").is_err());
        assert!(parse_file_nr("1 0\n").is_err());
        assert!(parse_file_nr("1 0 lots\n").is_err());
    }
}
