//! Replication by standard DNS means: the primary sends NOTIFY (RFC 1996) to its secondaries
//! on every new serial; a secondary polls the primary's SOA on the SOA refresh timer (and at
//! once on NOTIFY), pulls the zone by AXFR over TCP when the serial moved (RFC 5936), keeps
//! a copy on disk, and stops answering when it could not refresh for the SOA expire time.
//! Any RFC-compliant secondary (BIND, Knot) works against our primary the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::dns::{SecondaryLink, serial_ge};
use crate::metrics::{Metrics, ResultLabels};
use crate::store::{Store, registry_from_zone};
use crate::zone::{SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ZoneCell, ZoneData, wire_len};

/// One UDP exchange (SOA query, NOTIFY) waits this long per try.
const UDP_TIMEOUT: Duration = Duration::from_secs(2);
const UDP_TRIES: usize = 3;
/// A whole zone transfer must finish within this.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds on what a primary may send: records and bytes of one transfer.
const MAX_TRANSFER_RECORDS: usize = 1_000_000;
const MAX_TRANSFER_BYTES: usize = 256 << 20;
/// Changes closer together than this are announced with one NOTIFY.
const NOTIFY_COALESCE: Duration = Duration::from_millis(100);

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("primary answered {0}")]
    Rcode(ResponseCode),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

fn message(id: u16, op: OpCode, name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, op);
    m.add_query(Query::query(name.clone(), rtype));
    m
}

fn sign(m: &mut Message, key: Option<&TSigner>) -> Result<(), TransferError> {
    if let Some(key) = key {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (sig, _) = key
            .sign_message(m, now)
            .map_err(|e| TransferError::Malformed(format!("cannot sign: {e}")))?;
        m.set_signature(sig);
    }
    Ok(())
}

/// Sends `m` over UDP and waits for the answer with the same id, retrying on timeout.
async fn udp_exchange(server: SocketAddr, m: &Message) -> Result<Message, TransferError> {
    let bytes = m
        .to_bytes()
        .map_err(|e| TransferError::Malformed(e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| TransferError::Io("bind", e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| TransferError::Io("connect", e))?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..UDP_TRIES {
        socket
            .send(&bytes)
            .await
            .map_err(|e| TransferError::Io("send", e))?;
        let deadline = tokio::time::Instant::now() + UDP_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(TransferError::Io("receive", e)),
                Ok(Ok(n)) => match Message::from_bytes(&buf[..n]) {
                    Ok(r) if r.id == m.id && r.message_type == MessageType::Response => {
                        return Ok(r);
                    }
                    // A stray or late datagram: keep waiting for ours.
                    _ => continue,
                },
            }
        }
    }
    Err(TransferError::Timeout("no answer over UDP"))
}

/// The primary's SOA serial.
pub async fn query_soa(
    server: SocketAddr,
    zone: &Name,
    key: Option<&TSigner>,
) -> Result<u32, TransferError> {
    let mut m = message(rand_id(), OpCode::Query, zone, RecordType::SOA);
    sign(&mut m, key)?;
    let r = udp_exchange(server, &m).await?;
    if r.response_code != ResponseCode::NoError {
        return Err(TransferError::Rcode(r.response_code));
    }
    r.answers
        .iter()
        .find_map(|a| match &a.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .ok_or_else(|| TransferError::Malformed("no SOA in the answer".into()))
}

/// Pulls the whole zone by AXFR over TCP: every record, the SOA first, as sent.
pub async fn axfr(
    server: SocketAddr,
    zone: &Name,
    key: Option<&TSigner>,
) -> Result<Vec<Record>, TransferError> {
    tokio::time::timeout(TRANSFER_TIMEOUT, axfr_inner(server, zone, key))
        .await
        .map_err(|_| TransferError::Timeout("zone transfer"))?
}

async fn axfr_inner(
    server: SocketAddr,
    zone: &Name,
    key: Option<&TSigner>,
) -> Result<Vec<Record>, TransferError> {
    let mut m = message(rand_id(), OpCode::Query, zone, RecordType::AXFR);
    sign(&mut m, key)?;
    let bytes = m
        .to_bytes()
        .map_err(|e| TransferError::Malformed(e.to_string()))?;
    let mut tcp = TcpStream::connect(server)
        .await
        .map_err(|e| TransferError::Io("connect", e))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(&bytes);
    tcp.write_all(&framed)
        .await
        .map_err(|e| TransferError::Io("send", e))?;
    let mut records: Vec<Record> = Vec::new();
    let mut total = 0usize;
    let mut soas = 0;
    loop {
        let len = tcp
            .read_u16()
            .await
            .map_err(|e| TransferError::Io("read", e))?;
        let mut buf = vec![0u8; usize::from(len)];
        tcp.read_exact(&mut buf)
            .await
            .map_err(|e| TransferError::Io("read", e))?;
        total += buf.len();
        if total > MAX_TRANSFER_BYTES {
            return Err(TransferError::Malformed(format!(
                "more than {MAX_TRANSFER_BYTES} bytes"
            )));
        }
        let r = Message::from_bytes(&buf).map_err(|e| TransferError::Malformed(e.to_string()))?;
        if r.id != m.id {
            return Err(TransferError::Malformed("answer with another id".into()));
        }
        if r.response_code != ResponseCode::NoError {
            return Err(TransferError::Rcode(r.response_code));
        }
        for a in r.answers {
            if a.record_type() == RecordType::SOA {
                soas += 1;
                if soas == 2 {
                    return Ok(records);
                }
                if !records.is_empty() {
                    return Err(TransferError::Malformed(
                        "the transfer does not start with the SOA".into(),
                    ));
                }
            } else if records.is_empty() {
                return Err(TransferError::Malformed(
                    "the transfer does not start with the SOA".into(),
                ));
            }
            records.push(a);
            if records.len() > MAX_TRANSFER_RECORDS {
                return Err(TransferError::Malformed(format!(
                    "more than {MAX_TRANSFER_RECORDS} records"
                )));
            }
        }
    }
}

fn rand_id() -> u16 {
    // Ids only need to differ between exchanges in flight; the clock's nanoseconds do.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

/// Sends NOTIFY for `zone` at `serial` to `target`; true when it was acknowledged.
pub async fn send_notify(
    target: SocketAddr,
    zone: &Name,
    serial: u32,
    soa: Option<Record>,
) -> Result<(), TransferError> {
    let mut m = message(rand_id(), OpCode::Notify, zone, RecordType::SOA);
    m.metadata.authoritative = true;
    if let Some(soa) = soa {
        m.add_answer(soa);
    }
    let r = udp_exchange(target, &m).await?;
    match r.response_code {
        ResponseCode::NoError => {
            tracing::debug!(%target, serial, "NOTIFY acknowledged");
            Ok(())
        }
        code => Err(TransferError::Rcode(code)),
    }
}

/// Primary side: announces every new serial to `targets` until `shutdown`.
pub async fn run_notifier(
    store: Arc<Store>,
    targets: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    if targets.is_empty() {
        return;
    }
    let mut serials = store.subscribe();
    let zone = store.zone();
    let origin = store.config().origin.clone();
    // Announce at start too: a restarted primary serves a new serial.
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = serials.changed() => if changed.is_err() { return },
            }
        }
        first = false;
        tokio::time::sleep(NOTIFY_COALESCE).await;
        let serial = *serials.borrow_and_update();
        let soa = zone.load().soa().clone();
        let sends = targets.iter().map(|t| {
            let (origin, soa, metrics) = (origin.clone(), soa.clone(), store.metrics().clone());
            let t = *t;
            async move {
                let result = send_notify(t, &origin, serial, Some(soa)).await;
                let label = if result.is_ok() { "ok" } else { "failed" };
                if let Err(e) = result {
                    tracing::warn!(target = %t, serial, error = %e, "NOTIFY not acknowledged");
                }
                metrics
                    .notifies_sent
                    .get_or_create(&ResultLabels::new(label))
                    .inc();
            }
        });
        futures_util::future::join_all(sends).await;
    }
}

/// A secondary's zone copy on disk: the transferred records, SOA first, as a sequence of DNS
/// messages of at most [`crate::dns::TRANSFER_MESSAGE_BYTES`] each, every one framed by its
/// length as 4 bytes big-endian; written atomically (write, fsync, rename, fsync the directory).
fn save(path: &Path, records: &[Record], origin: &Name) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size = 0;
        while end < records.len()
            && (end == start
                || size + wire_len(&records[end]) <= crate::dns::TRANSFER_MESSAGE_BYTES)
        {
            size += wire_len(&records[end]);
            end += 1;
        }
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(origin.clone(), RecordType::AXFR));
        m.add_answers(records[start..end].iter().cloned());
        let encoded = m.to_bytes().map_err(std::io::Error::other)?;
        let check = Message::from_bytes(&encoded).map_err(std::io::Error::other)?;
        if check.metadata.truncation || check.answers.len() != end - start {
            return Err(std::io::Error::other(
                "a zone copy message did not fit; not saved",
            ));
        }
        bytes.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&encoded);
        start = end;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn load(path: &Path) -> Result<Vec<Record>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err("corrupt zone copy: torn length".into());
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err("corrupt zone copy: torn message".into());
        }
        let m = Message::from_bytes(&tail[..len]).map_err(|e| format!("corrupt zone copy: {e}"))?;
        if m.metadata.truncation {
            return Err("corrupt zone copy: truncated message".into());
        }
        records.extend(m.answers);
        rest = &tail[len..];
    }
    Ok(records)
}

/// Secondary side: keeps `cell` a copy of the primary's zone until `shutdown`.
pub struct Secondary {
    pub primary: SocketAddr,
    pub key: Option<TSigner>,
    pub store: Arc<Store>,
    pub cell: Arc<ZoneCell>,
    pub link: Arc<SecondaryLink>,
    pub metrics: Arc<Metrics>,
    /// Where the zone copy is kept; none: memory only.
    pub copy: Option<PathBuf>,
    pub limits: crate::registry::Limits,
}

impl std::fmt::Debug for Secondary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secondary")
            .field("primary", &self.primary)
            .field(
                "key",
                &self.key.as_ref().map(|k| k.signer_name().to_ascii()),
            )
            .finish_non_exhaustive()
    }
}

impl Secondary {
    fn install(&self, records: Vec<Record>) -> Result<u32, String> {
        let config = self.store.config();
        let zone = ZoneData::from_records(&config.origin, records).map_err(|e| e.to_string())?;
        let serial = zone.serial();
        let registry = registry_from_zone(config, &zone, self.limits.clone());
        self.metrics.zone_serial.set(i64::from(serial));
        self.metrics.zone_records.set(zone.len() as i64);
        self.cell.store(zone);
        self.link.serving.store(true, Ordering::Release);
        if let Err(registry) = self.store.try_replace_registry(registry) {
            let store = self.store.clone();
            tokio::spawn(async move { store.replace_registry(registry).await });
        }
        Ok(serial)
    }

    /// Loads the copy on disk, if any, so queries are answered before the primary is reached.
    pub fn load_copy(&self) {
        let Some(path) = &self.copy else { return };
        if !path.exists() {
            return;
        }
        match load(path).and_then(|r| self.install(r)) {
            Ok(serial) => {
                tracing::info!(path = %path.display(), serial, "serving the zone copy from disk")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot use the zone copy on disk; waiting for the primary")
            }
        }
    }

    /// One refresh: SOA, then AXFR when the primary is newer. Returns the serial now served.
    async fn refresh(&self, current: Option<u32>) -> Result<u32, TransferError> {
        let origin = &self.store.config().origin;
        let serial = query_soa(self.primary, origin, self.key.as_ref()).await?;
        if let Some(c) = current
            && serial_ge(c, serial)
        {
            return Ok(c);
        }
        let records = axfr(self.primary, origin, self.key.as_ref()).await?;
        if let Some(path) = &self.copy
            && let Err(e) = save(path, &records, origin)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot save the zone copy");
        }
        let n = records.len();
        let got = self.install(records).map_err(TransferError::Malformed)?;
        tracing::info!(primary = %self.primary, serial = got, records = n, "zone transferred from the primary");
        Ok(got)
    }

    /// Follows the primary until `shutdown`. Call [`Self::load_copy`] first (at bind time), so
    /// a copy on disk is served from the first query on.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut current = self
            .link
            .serving
            .load(Ordering::Acquire)
            .then(|| self.cell.load().serial());
        let mut last_ok = Instant::now();
        loop {
            let wait = match self.refresh(current).await {
                Ok(serial) => {
                    current = Some(serial);
                    last_ok = Instant::now();
                    self.metrics
                        .refreshes
                        .get_or_create(&ResultLabels::new("ok"))
                        .inc();
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.metrics.last_refresh.set(now as i64);
                    Duration::from_secs(SOA_REFRESH as u64)
                }
                Err(e) => {
                    tracing::warn!(primary = %self.primary, error = %e, "refresh from the primary failed");
                    self.metrics
                        .refreshes
                        .get_or_create(&ResultLabels::new("failed"))
                        .inc();
                    if last_ok.elapsed() > Duration::from_secs(SOA_EXPIRE as u64)
                        && self.link.serving.swap(false, Ordering::AcqRel)
                    {
                        tracing::error!(
                            "zone expired: no refresh for the SOA expire time; answering SERVFAIL"
                        );
                        current = None;
                    }
                    Duration::from_secs(SOA_RETRY as u64)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.link.refresh.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registration, Registry};
    use crate::zone::{ZoneConfig, build_records};

    #[test]
    fn zone_copy_round_trips_beyond_one_message() {
        let zc = ZoneConfig::new("heimdall.internal.", None).unwrap();
        let mut r = Registry::default();
        for i in 0..3_000u32 {
            let reg = Registration {
                address: std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
                port: 9090,
                labels: Default::default(),
                ttl_seconds: None,
                health_path: None,
            };
            r.register("exporter", &format!("web-{i}"), reg, Instant::now())
                .unwrap();
        }
        let records = build_records(&zc, &r, 9);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.axfr");
        save(&path, &records, &zc.origin).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 65_535);
        let back = load(&path).unwrap();
        assert_eq!(back.len(), records.len());
        assert_eq!(back, records);
        // A torn file is refused, not served in part.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(load(&path).unwrap_err().contains("torn"));
    }
}
