//! `tcpstat`: node_tcp_connection_states{state} from `/proc/net/tcp` and `/proc/net/tcp6`
//! (absent without IPv6), as node_exporter 1.x's `tcpstat_linux.go` (the /proc version).
//!
//! Besides one count per TCP state seen, the summed send and receive queues are exported as
//! the pseudo-states `tx_queued_bytes` and `rx_queued_bytes` (whenever any socket is listed).

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// Label of each kernel TCP state (`include/net/tcp_states.h`), index = state number.
const STATES: [&str; 12] = [
    "unknown",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Counts per state (index as [`STATES`]; 0 collects states outside 1..=11) plus the
/// queue sums. A `None` was never seen and is not exported.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TcpStats {
    pub states: [Option<f64>; STATES.len()],
    pub tx_queued_bytes: Option<f64>,
    pub rx_queued_bytes: Option<f64>,
}

impl TcpStats {
    fn add(&mut self, other: &TcpStats) {
        let sum = |a: &mut Option<f64>, b: Option<f64>| {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0.0) + b);
            }
        };
        for (a, &b) in self.states.iter_mut().zip(&other.states) {
            sum(a, b);
        }
        sum(&mut self.tx_queued_bytes, other.tx_queued_bytes);
        sum(&mut self.rx_queued_bytes, other.rx_queued_bytes);
    }
}

#[derive(Debug)]
struct Tcpstat;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Tcpstat))
}

impl Collector for Tcpstat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let mut stats = parse_tcp_stats(&paths.read_proc("net/tcp")?)?;
        match paths.read_proc("net/tcp6") {
            Ok(s) => stats.add(&parse_tcp_stats(&s)?),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        const NAME: &str = "node_tcp_connection_states";
        const HELP: &str = "Number of connection states.";
        for (state, v) in STATES.iter().zip(stats.states) {
            if let Some(v) = v {
                out.gauge(NAME, HELP, &[("state", state)], v);
            }
        }
        if let Some(v) = stats.tx_queued_bytes {
            out.gauge(NAME, HELP, &[("state", "tx_queued_bytes")], v);
        }
        if let Some(v) = stats.rx_queued_bytes {
            out.gauge(NAME, HELP, &[("state", "rx_queued_bytes")], v);
        }
        Ok(())
    }
}

/// Parses `/proc/net/tcp{,6}`: a header line, then one socket per line with the state in
/// hex in field 4 and `tx_queue:rx_queue` in hex in field 5.
pub fn parse_tcp_stats(s: &str) -> Result<TcpStats, CollectError> {
    let bad =
        |line: &str, why: &str| CollectError::parse("/proc/net/tcp", format!("{why}: {line:?}"));
    let mut stats = TcpStats::default();
    for line in s.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let Some(_sl) = fields.next() else {
            continue;
        };
        let (Some(_local), Some(_remote), Some(st), Some(queues)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(line, "invalid TCP stats line"));
        };
        let mut qu = queues.split(':');
        let (Some(tx), Some(rx)) = (qu.next(), qu.next()) else {
            return Err(bad(line, "cannot parse tx_queues and rx_queues"));
        };
        let hex = |f: &str| {
            if f.starts_with('+') {
                None
            } else {
                u64::from_str_radix(f, 16).ok()
            }
        };
        let tx = hex(tx).ok_or_else(|| bad(line, "invalid tx_queue"))?;
        let rx = hex(rx).ok_or_else(|| bad(line, "invalid rx_queue"))?;
        // Go's ParseInt(st, 16, 8): a signed 8-bit value.
        let st = i8::from_str_radix(st, 16).map_err(|_| bad(line, "invalid state"))?;
        *stats.tx_queued_bytes.get_or_insert(0.0) += tx as f64;
        *stats.rx_queued_bytes.get_or_insert(0.0) += rx as f64;
        let idx = usize::try_from(st)
            .ok()
            .filter(|&i| i < STATES.len())
            .unwrap_or(0);
        *stats.states[idx].get_or_insert(0.0) += 1.0;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written for these tests: two listeners, one established socket with queued data,
    // one TIME_WAIT.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   113        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:C9A8 01 00000100:00000010 01:00000014 00000000     0        0 1003 4 0000000000000000 20 4 31 10 -1
   3: 0F02000A:0016 0202000A:C9A9 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D3C2 01 00000001:00000000 00:00000000 00000000  1000        0 2002 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn parses_states_and_queues() {
        let s = parse_tcp_stats(TCP).unwrap();
        assert_eq!(s.states[10], Some(2.0));
        assert_eq!(s.states[1], Some(1.0));
        assert_eq!(s.states[6], Some(1.0));
        assert_eq!(s.states[2], None);
        assert_eq!(s.tx_queued_bytes, Some(256.0));
        assert_eq!(s.rx_queued_bytes, Some(18.0));
    }

    #[test]
    fn header_only_has_nothing() {
        assert_eq!(
            parse_tcp_stats("  sl  local_address\n").unwrap(),
            TcpStats::default()
        );
        assert_eq!(parse_tcp_stats("").unwrap(), TcpStats::default());
    }

    #[test]
    fn unknown_state_is_summed_as_unknown() {
        let s = parse_tcp_stats("h\n0: a b 0C 0:0\n1: a b 7F 0:0\n").unwrap();
        assert_eq!(s.states[0], Some(2.0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_tcp_stats("h\n0: a b\n").is_err());
        assert!(parse_tcp_stats("h\n0: a b 01 00000000\n").is_err());
        assert!(parse_tcp_stats("h\n0: a b 01 zz:00\n").is_err());
        assert!(parse_tcp_stats("h\n0: a b 01 00:+1\n").is_err());
        assert!(parse_tcp_stats("h\n0: a b GG 00:00\n").is_err());
        assert!(
            parse_tcp_stats("h\n0: a b 80 00:00\n").is_err(),
            "state is a signed 8-bit value"
        );
    }

    #[test]
    fn collects_v4_and_v6() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::write(root.join("proc/net/tcp"), TCP).unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.into(),
            udev_data: root.join("udev"),
        };
        let c = build(&CollectorOptions::default()).unwrap();
        c.collect(&paths, &mut Sink::new())
            .expect("tcp6 may be absent");
        std::fs::write(root.join("proc/net/tcp6"), TCP6).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let mut buf = Vec::new();
        crate::exposition::encode(&[&sink], crate::exposition::Format::Text, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let want = "# HELP node_tcp_connection_states Number of connection states.
# TYPE node_tcp_connection_states gauge
node_tcp_connection_states{state=\"established\"} 2
node_tcp_connection_states{state=\"listen\"} 3
node_tcp_connection_states{state=\"rx_queued_bytes\"} 18
node_tcp_connection_states{state=\"time_wait\"} 1
node_tcp_connection_states{state=\"tx_queued_bytes\"} 257
";
        assert_eq!(text, want);
    }
}
