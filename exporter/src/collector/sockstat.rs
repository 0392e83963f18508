//! `sockstat`: node_sockstat_* from `/proc/net/sockstat` and `/proc/net/sockstat6` (either may
//! be absent when that IP version is disabled), as node_exporter 1.x's `sockstat_linux.go`.
//!
//! `mem` values are in pages; node_exporter adds `<PROTO>_mem_bytes` = mem × the page size.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// Keys of a protocol line that node_exporter exports (`inuse` always, the others when
/// present), in its order.
const KEYS: [&str; 6] = ["inuse", "orphan", "tw", "alloc", "mem", "memory"];

#[derive(Debug)]
struct Sockstat {
    page_size: u64,
}

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Sockstat {
        page_size: page_size(),
    }))
}

/// The kernel's page size (Go's `os.Getpagesize()`), from this process's auxiliary vector;
/// 4096 if that cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    const WORD: usize = size_of::<usize>();
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    let word = |b: &[u8]| -> u64 {
        let mut a = [0u8; WORD];
        a.copy_from_slice(b);
        usize::from_ne_bytes(a) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|p| (word(&p[..WORD]), word(&p[WORD..])))
        .find(|&(k, _)| k == AT_PAGESZ)
        .map_or(4096, |(_, v)| v)
}

impl Collector for Sockstat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        for (file, ipv6) in [("net/sockstat", false), ("net/sockstat6", true)] {
            let text = match paths.read_proc(file) {
                Ok(t) => t,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let stat = parse_sockstat(&text)?;
            self.emit(out, ipv6, &stat);
        }
        Ok(())
    }
}

impl Sockstat {
    fn emit(&self, out: &mut Sink, ipv6: bool, stat: &NetSockstat<'_>) {
        if !ipv6 && let Some(used) = stat.used {
            out.gauge(
                "node_sockstat_sockets_used",
                "Number of IPv4 sockets in use.",
                &[],
                used as f64,
            );
        }
        for p in &stat.protocols {
            let get = |k: &str| {
                p.values
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == k)
                    .map(|&(_, v)| v)
            };
            let mem_bytes = get("mem").map(|m| m.wrapping_mul(self.page_size as i64));
            let values = KEYS
                .iter()
                .map(|&k| {
                    (
                        k,
                        if k == "inuse" {
                            Some(get(k).unwrap_or(0))
                        } else {
                            get(k)
                        },
                    )
                })
                .chain(std::iter::once(("mem_bytes", mem_bytes)));
            for (key, v) in values {
                let Some(v) = v else { continue };
                out.gauge(
                    &format!("node_sockstat_{}_{key}", p.protocol),
                    &format!("Number of {} sockets in state {key}.", p.protocol),
                    &[],
                    v as f64,
                );
            }
        }
    }
}

/// A parsed sockstat file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NetSockstat<'a> {
    /// `sockets: used N` (IPv4 only).
    pub used: Option<i64>,
    pub protocols: Vec<Protocol<'a>>,
}

/// One protocol line, e.g. `TCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1`.
#[derive(Debug, PartialEq, Eq)]
pub struct Protocol<'a> {
    pub protocol: &'a str,
    pub values: Vec<(&'a str, i64)>,
}

/// Parses `/proc/net/sockstat{,6}`: `PROTO: key value [key value ...]` per line, single
/// spaces, values integers (Go base-0 syntax, as procfs reads them).
pub fn parse_sockstat(s: &str) -> Result<NetSockstat<'_>, CollectError> {
    let mut stat = NetSockstat::default();
    for line in s.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 3 {
            return Err(CollectError::parse(
                "sockstat",
                format!("malformed line {line:?}"),
            ));
        }
        let kvs = &fields[1..];
        if !kvs.len().is_multiple_of(2) {
            return Err(CollectError::parse(
                "sockstat",
                format!("odd number of fields in key/value pairs of {line:?}"),
            ));
        }
        let mut values = Vec::with_capacity(kvs.len() / 2);
        for kv in kvs.chunks_exact(2) {
            let v = super::netclass::parse_go_int(kv[1]).ok_or_else(|| {
                CollectError::parse("sockstat", format!("invalid value {:?} in {line:?}", kv[1]))
            })?;
            values.push((kv[0], v));
        }
        let proto = fields[0].strip_suffix(':').unwrap_or(fields[0]);
        if proto == "sockets" {
            let used = values
                .iter()
                .rev()
                .find(|(k, _)| *k == "used")
                .map_or(0, |&(_, v)| v);
            stat.used = Some(used);
        } else {
            stat.protocols.push(Protocol {
                protocol: proto,
                values,
            });
        }
    }
    Ok(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKSTAT: &str = "\
sockets: used 229
TCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
";
    const SOCKSTAT6: &str = "\
TCP6: inuse 17
UDP6: inuse 9
FRAG6: inuse 0 memory 0
";

    #[test]
    fn parses_sockstat() {
        let s = parse_sockstat(SOCKSTAT).unwrap();
        assert_eq!(s.used, Some(229));
        assert_eq!(s.protocols.len(), 5);
        assert_eq!(s.protocols[0].protocol, "TCP");
        assert_eq!(
            s.protocols[0].values,
            vec![
                ("inuse", 4),
                ("orphan", 0),
                ("tw", 4),
                ("alloc", 17),
                ("mem", 1)
            ]
        );
        assert_eq!(parse_sockstat(SOCKSTAT6).unwrap().used, None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_sockstat("TCP: inuse\n").is_err());
        assert!(parse_sockstat("TCP: inuse 1 tw\n").is_err());
        assert!(parse_sockstat("TCP: inuse x\n").is_err());
        assert!(parse_sockstat("TCP:\n").is_err());
        assert!(parse_sockstat("").unwrap().protocols.is_empty());
    }

    #[test]
    fn collects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::write(root.join("proc/net/sockstat"), SOCKSTAT).unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.into(),
            udev_data: root.join("udev"),
        };
        let c = Sockstat { page_size: 4096 };
        c.collect(&paths, &mut Sink::new())
            .expect("sockstat6 may be absent");
        std::fs::write(root.join("proc/net/sockstat6"), SOCKSTAT6).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let text = sink.render(crate::exposition::Format::Text);
        assert!(text.contains(
            "# HELP node_sockstat_TCP_mem_bytes Number of TCP sockets in state mem_bytes.\n# TYPE node_sockstat_TCP_mem_bytes gauge\nnode_sockstat_TCP_mem_bytes 4096\n"
        ));
        assert!(text.contains("node_sockstat_sockets_used 229\n"));
        assert!(text.contains("node_sockstat_FRAG6_memory 0\n"));
        assert!(text.contains("node_sockstat_TCP6_inuse 17\n"));
        assert!(!text.contains("node_sockstat_RAW_mem"));
        assert!(!text.contains("node_sockstat_TCP6_tw"));
    }

    #[test]
    fn page_size_is_sane() {
        let p = page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "{p}");
    }
}
