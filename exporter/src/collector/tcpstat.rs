//! `tcpstat`: node_tcp_connection_states{state}, as node_exporter 1.x's `tcpstat_linux.go`.
//!
//! Besides one count per TCP state seen, the summed send and receive queues are exported as
//! the pseudo-states `tx_queued_bytes` and `rx_queued_bytes` (whenever any socket is listed).
//!
//! Two sources give the same numbers:
//! - On the live host (`--path.procfs` is `/proc`) the kernel is asked over
//!   `NETLINK_SOCK_DIAG` (inet_diag dumps of AF_INET and AF_INET6), as node_exporter does.
//!   Reading `/proc/net/tcp{,6}` walks the whole socket hash table in the kernel and costs
//!   milliseconds per scrape even with few sockets.
//! - Otherwise (fixture trees, the host's proc mounted elsewhere), and whenever the netlink
//!   socket cannot be used at all (no netlink in a sandbox, no tcp_diag), the text files
//!   `/proc/net/tcp` and `/proc/net/tcp6` are parsed. AF_INET6 / `tcp6` is skipped when
//!   `<procfs>/net/tcp6` is absent (no IPv6).
//!
//! Queues: for a LISTEN socket both sources report the accept backlog as the receive queue.
//! inet_diag reports the backlog *limit* (`sk_max_ack_backlog`) as its send queue, where
//! `/proc/net/tcp` shows the (empty) send queue; the netlink path therefore adds nothing to
//! `tx_queued_bytes` for listeners, so both paths agree. (node_exporter's netlink version
//! sums `idiag_wqueue` unconditionally and so counts e.g. 4096 per listener.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// `TCP_LISTEN`.
const LISTEN: usize = 10;

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

    /// Counts one socket: `state` as the kernel numbers it, queues in bytes.
    fn socket(&mut self, state: usize, tx: u64, rx: u64) {
        *self.tx_queued_bytes.get_or_insert(0.0) += tx as f64;
        *self.rx_queued_bytes.get_or_insert(0.0) += rx as f64;
        let idx = if state < STATES.len() { state } else { 0 };
        *self.states[idx].get_or_insert(0.0) += 1.0;
    }
}

#[derive(Debug, Default)]
struct Tcpstat {
    /// Whether "netlink unavailable, reading /proc/net/tcp" was logged already.
    fallback_logged: AtomicBool,
}

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Tcpstat::default()))
}

impl Collector for Tcpstat {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let stats = if paths.procfs == Path::new("/proc") {
            match netlink_stats(has_ipv6(paths)) {
                Ok(stats) => stats,
                Err(Netlink::Failed(e)) => return Err(e),
                Err(Netlink::Unavailable(e)) => {
                    if !self.fallback_logged.swap(true, Ordering::Relaxed) {
                        tracing::debug!(error = %e, "tcpstat: NETLINK_SOCK_DIAG unavailable, reading /proc/net/tcp instead");
                    }
                    text_stats(paths)?
                }
            }
        } else {
            text_stats(paths)?
        };
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

/// IPv6 sockets are counted when `<procfs>/net/tcp6` exists (as node_exporter decides).
fn has_ipv6(paths: &Paths) -> bool {
    !matches!(std::fs::metadata(paths.proc("net/tcp6")), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// The text path: `/proc/net/tcp` plus `/proc/net/tcp6` when present.
fn text_stats(paths: &Paths) -> Result<TcpStats, CollectError> {
    let mut stats = parse_tcp_stats(&paths.read_proc("net/tcp")?)?;
    match paths.read_proc("net/tcp6") {
        Ok(s) => stats.add(&parse_tcp_stats(&s)?),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    Ok(stats)
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
        // Go's ParseInt(st, 16, 8): a signed 8-bit value; negative ones count as unknown.
        let st = i8::from_str_radix(st, 16).map_err(|_| bad(line, "invalid state"))?;
        stats.socket(usize::try_from(st).unwrap_or(0), tx, rx);
    }
    Ok(stats)
}

// --- NETLINK_SOCK_DIAG ---------------------------------------------------------------------

/// Names the source in errors.
const SOCK_DIAG: &str = "NETLINK_SOCK_DIAG";
/// A scrape never waits longer than this for the kernel's next reply datagram.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Upper bound on the bytes of one dump (~900k sockets); more is treated as an error.
const MAX_DUMP_BYTES: usize = 64 << 20;
/// Receive buffer; the kernel builds dump datagrams of at most 32 KiB.
const RECV_BUF: usize = 64 << 10;

// <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>, <linux/socket.h>, <linux/in.h>
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The original inet_diag request: the kernel turns it into an AF_UNSPEC dump, so one walk of
/// the socket hash table covers IPv4 and IPv6 (the walk, ~1.5 ms on a large table, is the cost).
const TCPDIAG_GETSOCK: u16 = 18;
/// `inet_diag_req`: family, src_len, dst_len, ext, sockid (48), states, dbs.
const LEGACY_REQ_LEN: usize = 4 + 48 + 8;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// All states 0..=11; the kernel adds TCP_NEW_SYN_RECV (request sockets, reported as
/// SYN_RECV) whenever SYN_RECV is asked for, as `/proc/net/tcp` lists them.
const TCPF_ALL: u32 = 0xfff;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states (u32), inet_diag_sockid.
const REQ_LEN: usize = 8 + 48;
/// `struct inet_diag_msg`: family, state, timer, retrans, inet_diag_sockid (48 bytes), then
/// expires, rqueue, wqueue, uid, inode (u32 each).
const DIAG_MSG_LEN: usize = 4 + 48 + 5 * 4;
const DIAG_MSG_STATE: usize = 1;
const DIAG_MSG_RQUEUE: usize = 4 + 48 + 4;
const DIAG_MSG_WQUEUE: usize = DIAG_MSG_RQUEUE + 4;

/// Why the netlink path gave no numbers.
#[derive(Debug)]
enum Netlink {
    /// No usable NETLINK_SOCK_DIAG here (socket refused, no tcp_diag): read the text files.
    Unavailable(CollectError),
    /// This scrape failed.
    Failed(CollectError),
}

fn sock_diag_io(source: std::io::Error) -> CollectError {
    CollectError::Io {
        path: SOCK_DIAG.into(),
        source,
    }
}

fn bad_reply(reason: impl std::fmt::Display) -> CollectError {
    CollectError::parse(format!("{SOCK_DIAG} reply"), reason)
}

/// A negative errno from NLMSG_ERROR or NLMSG_DONE (keeps its kind, so ENOENT is "not found").
fn kernel_error(errno: i32) -> CollectError {
    let os = std::io::Error::from_raw_os_error(errno.wrapping_neg());
    sock_diag_io(std::io::Error::new(
        os.kind(),
        format!("kernel answered with an error: {os}"),
    ))
}

/// Counts the TCP sockets of AF_INET (and AF_INET6 when `ipv6`) over one netlink socket.
fn netlink_stats(ipv6: bool) -> Result<TcpStats, Netlink> {
    use rustix::net::sockopt::{Timeout, set_socket_timeout};
    use rustix::net::{AddressFamily, SocketFlags, SocketType, netlink, socket_with};

    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(|e| Netlink::Unavailable(sock_diag_io(e.into())))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(RECV_TIMEOUT))
        .map_err(|e| Netlink::Failed(sock_diag_io(e.into())))?;
    let mut buf = vec![0; RECV_BUF];
    let mut stats = TcpStats::default();
    // One walk for both families where the kernel has the compat request (every kernel since
    // 2.6); otherwise one SOCK_DIAG_BY_FAMILY dump per family.
    match dump(&fd, &legacy_request(1), &mut buf, &mut stats) {
        Ok(()) => return Ok(stats),
        Err(e) if e.is_not_found() => return Err(Netlink::Unavailable(e)),
        Err(e) => {
            tracing::debug!(error = %e, "TCPDIAG_GETSOCK refused; dumping per family");
            stats = TcpStats::default();
        }
    }
    let families: &[u8] = if ipv6 {
        &[AF_INET, AF_INET6]
    } else {
        &[AF_INET]
    };
    for (seq, &family) in (2..).zip(families) {
        match dump(&fd, &inet_diag_request(family, seq), &mut buf, &mut stats) {
            Ok(()) => {}
            Err(e) => return Err(Netlink::Failed(e)),
        }
    }
    Ok(stats)
}

/// `nlmsghdr` + legacy `inet_diag_req` asking for every TCP socket of both families.
fn legacy_request(seq: u32) -> [u8; NLMSG_HDRLEN + LEGACY_REQ_LEN] {
    const LEN: usize = NLMSG_HDRLEN + LEGACY_REQ_LEN;
    let mut r = [0; LEN];
    r[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    r[16] = AF_INET; // ignored by the kernel for dumps (AF_UNSPEC), set for old kernels
    // 17 src_len, 18 dst_len, 19 ext: 0; 20..68 sockid: no filter.
    r[68..72].copy_from_slice(&TCPF_ALL.to_ne_bytes());
    // 72..76 dbs 0.
    r
}

/// The request datagram: `nlmsghdr` + `inet_diag_req_v2` asking for a dump of all TCP
/// sockets of `family`, native-endian.
fn inet_diag_request(family: u8, seq: u32) -> [u8; NLMSG_HDRLEN + REQ_LEN] {
    const LEN: usize = NLMSG_HDRLEN + REQ_LEN;
    let mut r = [0; LEN];
    r[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    // 12..16 nlmsg_pid 0 (the kernel fills ours in).
    r[16] = family;
    r[17] = IPPROTO_TCP;
    // 18 idiag_ext 0 (no attributes wanted), 19 pad.
    r[20..24].copy_from_slice(&TCPF_ALL.to_ne_bytes());
    // 24..72 inet_diag_sockid zeroed: no filter.
    r
}

/// Sends one dump request and reads its multipart reply up to NLMSG_DONE into `stats`.
fn dump(
    fd: &rustix::fd::OwnedFd,
    req: &[u8],
    buf: &mut [u8],
    stats: &mut TcpStats,
) -> Result<(), CollectError> {
    use rustix::io::Errno;
    use rustix::net::netlink::SocketAddrNetlink;
    use rustix::net::{RecvFlags, SendFlags, recv, sendto};

    let sent = sendto(fd, req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))
        .map_err(|e| sock_diag_io(e.into()))?;
    if sent != req.len() {
        return Err(sock_diag_io(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {sent} of {} request bytes", req.len()),
        )));
    }
    let mut total = 0usize;
    loop {
        // TRUNC: `len` is the datagram's real length even when it did not fit.
        let (n, len) = match recv(fd, &mut *buf, RecvFlags::TRUNC) {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                return Err(sock_diag_io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply within {RECV_TIMEOUT:?}"),
                )));
            }
            Err(e) => return Err(sock_diag_io(e.into())),
        };
        if len > n {
            return Err(bad_reply(format!(
                "datagram of {len} bytes exceeds the {n}-byte buffer"
            )));
        }
        if n == 0 {
            return Err(bad_reply("empty datagram before NLMSG_DONE"));
        }
        total += n;
        if total > MAX_DUMP_BYTES {
            return Err(bad_reply(format!(
                "dump exceeds {} MiB",
                MAX_DUMP_BYTES >> 20
            )));
        }
        if parse_inet_diag(&buf[..n], stats)? == Done::Yes {
            return Ok(());
        }
    }
}

/// Whether a datagram ended the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    No,
    Yes,
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn ne_i32(b: &[u8], at: usize) -> Option<i32> {
    ne_u32(b, at).map(|v| i32::from_ne_bytes(v.to_ne_bytes()))
}

/// Parses one datagram of a SOCK_DIAG_BY_FAMILY dump: `inet_diag_msg`s are counted into
/// `acc` (state, and `idiag_rqueue`/`idiag_wqueue` as rx/tx queue; a LISTEN socket's wqueue
/// is its backlog limit and is not summed, matching `/proc/net/tcp`). Stops at NLMSG_DONE;
/// NLMSG_ERROR, a dump that ended in an error, and malformed messages are errors.
fn parse_inet_diag(mut buf: &[u8], acc: &mut TcpStats) -> Result<Done, CollectError> {
    while !buf.is_empty() {
        let (Some(len), Some(ty)) = (ne_u32(buf, 0), ne_u16(buf, 4)) else {
            return Err(bad_reply(format!(
                "truncated message header ({} bytes)",
                buf.len()
            )));
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(bad_reply(format!(
                "message length {len} outside {NLMSG_HDRLEN}..={}",
                buf.len()
            )));
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        match ty {
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                let (true, Some(&state), Some(rqueue), Some(wqueue)) = (
                    payload.len() >= DIAG_MSG_LEN,
                    payload.get(DIAG_MSG_STATE),
                    ne_u32(payload, DIAG_MSG_RQUEUE),
                    ne_u32(payload, DIAG_MSG_WQUEUE),
                ) else {
                    return Err(bad_reply(format!(
                        "inet_diag_msg of {} bytes, want at least {DIAG_MSG_LEN}",
                        payload.len()
                    )));
                };
                let state = usize::from(state);
                let tx = if state == LISTEN { 0 } else { wqueue };
                acc.socket(state, tx.into(), rqueue.into());
            }
            NLMSG_DONE => {
                // A dump the kernel could not finish ends with a negative errno here.
                return match ne_i32(payload, 0) {
                    Some(errno) if errno < 0 => Err(kernel_error(errno)),
                    _ => Ok(Done::Yes),
                };
            }
            NLMSG_ERROR => match ne_i32(payload, 0) {
                None => return Err(bad_reply("truncated NLMSG_ERROR")),
                Some(0) => {} // an acknowledgement
                Some(errno) => return Err(kernel_error(errno)),
            },
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => return Err(bad_reply("NLMSG_OVERRUN: data lost")),
            other => return Err(bad_reply(format!("unexpected message type {other}"))),
        }
        // Messages are 4-byte aligned; the last one may end the datagram unpadded.
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(Done::No)
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
        let text = sink.render(crate::exposition::Format::Text);
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

    // --- netlink ---

    /// One netlink message of type `ty` around `payload`, padded to 4 bytes.
    fn nlmsg(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    /// A SOCK_DIAG_BY_FAMILY reply for one socket.
    fn diag(family: u8, state: u8, rqueue: u32, wqueue: u32) -> Vec<u8> {
        let mut p = vec![family, state, 0, 0];
        p.extend_from_slice(&[0xAB; 48]); // inet_diag_sockid
        for v in [1234u32, rqueue, wqueue, 1000, 99] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(p.len(), DIAG_MSG_LEN);
        nlmsg(SOCK_DIAG_BY_FAMILY, &p)
    }

    fn done(errno: i32) -> Vec<u8> {
        nlmsg(NLMSG_DONE, &errno.to_ne_bytes())
    }

    fn error(errno: i32) -> Vec<u8> {
        // struct nlmsgerr: error, then the offending request's header.
        let mut p = errno.to_ne_bytes().to_vec();
        p.extend_from_slice(&inet_diag_request(AF_INET, 1)[..NLMSG_HDRLEN]);
        nlmsg(NLMSG_ERROR, &p)
    }

    #[test]
    fn request_layout() {
        let r = inet_diag_request(AF_INET6, 2);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 2);
        assert_eq!(&r[12..16], &[0; 4]);
        assert_eq!(&r[16..20], &[10, 6, 0, 0]);
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 0xfff);
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn parses_diag_messages() {
        let mut buf = [
            diag(AF_INET, 1, 0x10, 0x100),
            diag(AF_INET, 6, 0, 0),
            diag(AF_INET, 1, 0, 1),
        ]
        .concat();
        let mut s = TcpStats::default();
        assert_eq!(parse_inet_diag(&buf, &mut s).unwrap(), Done::No);
        assert_eq!(s.states[1], Some(2.0));
        assert_eq!(s.states[6], Some(1.0));
        assert_eq!(s.tx_queued_bytes, Some(257.0));
        assert_eq!(s.rx_queued_bytes, Some(16.0));

        buf = [diag(AF_INET, 10, 3, 4096), done(0), diag(AF_INET, 1, 9, 9)].concat();
        assert_eq!(parse_inet_diag(&buf, &mut s).unwrap(), Done::Yes);
        assert_eq!(s.states[10], Some(1.0));
        assert_eq!(s.states[1], Some(2.0), "nothing after NLMSG_DONE is read");
        assert_eq!(
            s.tx_queued_bytes,
            Some(257.0),
            "a listener's wqueue is its limit"
        );
        assert_eq!(
            s.rx_queued_bytes,
            Some(19.0),
            "a listener's rqueue is its backlog"
        );

        // NOOP and an acknowledgement are skipped; a DONE without payload ends too.
        let buf = [nlmsg(NLMSG_NOOP, &[]), error(0), nlmsg(NLMSG_DONE, &[])].concat();
        assert_eq!(parse_inet_diag(&buf, &mut s).unwrap(), Done::Yes);
        assert_eq!(parse_inet_diag(&[], &mut s).unwrap(), Done::No);
    }

    #[test]
    fn unknown_diag_state_is_counted_as_unknown() {
        // 12 is TCP_NEW_SYN_RECV (never reported as such), 13 TCP_BOUND_INACTIVE.
        let buf = [diag(AF_INET6, 12, 0, 0), diag(AF_INET6, 200, 1, 2)].concat();
        let mut s = TcpStats::default();
        parse_inet_diag(&buf, &mut s).unwrap();
        assert_eq!(s.states[0], Some(2.0));
        assert_eq!(s.states.iter().flatten().count(), 1);
        assert_eq!(s.tx_queued_bytes, Some(2.0));
    }

    #[test]
    fn diag_errors_are_reported() {
        let mut s = TcpStats::default();
        let e = parse_inet_diag(&[diag(AF_INET, 1, 0, 0), error(-1)].concat(), &mut s)
            .unwrap_err()
            .to_string();
        assert!(e.contains(SOCK_DIAG) && e.contains("os error 1"), "{e}");
        let e = parse_inet_diag(&error(-2), &mut s).unwrap_err();
        assert!(e.is_not_found(), "ENOENT means no tcp_diag: {e}");
        let e = parse_inet_diag(&done(-16), &mut s).unwrap_err().to_string();
        assert!(e.contains("os error 16"), "{e}");
        let e = parse_inet_diag(&nlmsg(NLMSG_ERROR, &[1, 2]), &mut s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated NLMSG_ERROR"), "{e}");
        let e = parse_inet_diag(&nlmsg(NLMSG_OVERRUN, &[]), &mut s).unwrap_err();
        assert!(e.to_string().contains("OVERRUN"), "{e}");
        let e = parse_inet_diag(&nlmsg(99, &[]), &mut s).unwrap_err();
        assert!(e.to_string().contains("type 99"), "{e}");
    }

    #[test]
    fn malformed_diag_is_an_error_not_a_panic() {
        let first = diag(AF_INET, 1, 5, 5);
        let good = [first.clone(), done(0)].concat();
        // Every truncation of a valid datagram fails cleanly, except the one that is a
        // shorter valid datagram.
        for cut in 1..good.len() {
            let mut s = TcpStats::default();
            match parse_inet_diag(&good[..cut], &mut s) {
                Ok(Done::No) if cut == first.len() => {}
                Ok(d) => panic!("cut at {cut} parsed as {d:?}"),
                Err(_) => {}
            }
        }
        let mut s = TcpStats::default();
        let zero_len = [0u8; 16];
        let e = parse_inet_diag(&zero_len, &mut s).unwrap_err().to_string();
        assert!(e.contains("message length 0"), "{e}");
        // A length beyond the datagram.
        let mut long = diag(AF_INET, 1, 0, 0);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_inet_diag(&long, &mut s).is_err());
        // A reply too short for an inet_diag_msg.
        let short = nlmsg(SOCK_DIAG_BY_FAMILY, &[2, 1, 0, 0]);
        let e = parse_inet_diag(&short, &mut s).unwrap_err().to_string();
        assert!(e.contains("inet_diag_msg of 4 bytes"), "{e}");
        assert_eq!(s, TcpStats::default());
    }

    #[test]
    fn netlink_and_text_agree() {
        // The sockets of TCP and TCP6 above as inet_diag reports them (listeners' wqueue is
        // their backlog limit).
        let v4 = [
            diag(AF_INET, 10, 2, 4096),
            diag(AF_INET, 10, 0, 128),
            diag(AF_INET, 1, 0x10, 0x100),
            diag(AF_INET, 6, 0, 0),
            done(0),
        ]
        .concat();
        let v6 = [
            diag(AF_INET6, 10, 0, 4096),
            diag(AF_INET6, 1, 0, 1),
            done(0),
        ]
        .concat();
        let mut nl = TcpStats::default();
        assert_eq!(parse_inet_diag(&v4, &mut nl).unwrap(), Done::Yes);
        assert_eq!(parse_inet_diag(&v6, &mut nl).unwrap(), Done::Yes);
        let mut text = parse_tcp_stats(TCP).unwrap();
        text.add(&parse_tcp_stats(TCP6).unwrap());
        assert_eq!(nl, text);
    }

    /// The live host: netlink (when this sandbox has it) and the text files both work and
    /// agree in shape. Counts are not compared: sockets come and go meanwhile.
    #[test]
    fn live_netlink_matches_proc_shape() {
        let paths = Paths::default();
        if !paths.proc("net/tcp").exists() {
            return;
        }
        let nl = match netlink_stats(has_ipv6(&paths)) {
            Ok(s) => s,
            Err(Netlink::Unavailable(e)) => {
                eprintln!("netlink unavailable here, skipped: {e}");
                return;
            }
            Err(Netlink::Failed(e)) => panic!("netlink: {e}"),
        };
        let text = text_stats(&paths).unwrap();
        if text.states[LISTEN].is_some() {
            assert!(nl.states[LISTEN].is_some(), "netlink {nl:?}\ntext {text:?}");
        }
        // The collector on /proc takes the netlink path (or falls back) and succeeds.
        let c = build(&CollectorOptions::default()).unwrap();
        c.collect(&paths, &mut Sink::new()).unwrap();
    }
}
