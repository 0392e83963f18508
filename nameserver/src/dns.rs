//! The DNS request handler: hickory-server does the sockets and the wire parsing, this
//! answers. It replaces hickory's `Catalog` because the registry needs what the catalog does
//! not do (see ../shared/DEPENDENCIES.md): UPDATE with server-side TSIG, NOTIFY, zone
//! transfers in many messages with an ACL, and additional-section data for every SRV target.
//!
//! - QUERY: authoritative answers from the [`ZoneData`] served; NXDOMAIN and NODATA carry the
//!   SOA; names outside the zone are REFUSED; EDNS(0) is echoed (BADVERS for versions > 0);
//!   over UDP an answer that does not fit is truncated with TC set (the client retries over
//!   TCP); additional data is added only as far as it fits and never sets TC (RFC 2181 §9).
//! - AXFR, and IXFR answered with the full zone (RFC 1995 §4 allows it), over TCP only, for
//!   clients in the transfer ACL or signing with a configured TSIG key; the zone goes out in
//!   as many messages as needed (about 16 KiB each), each TSIG-signed when the request was.
//! - UPDATE (RFC 2136) on a primary, TSIG-signed with a configured key only; see [`update`].
//! - NOTIFY (RFC 1996) on a secondary, from its primary: triggers a refresh.
//!
//! [`update`]: crate::update

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::Notify;

use crate::metrics::{Metrics, ResultLabels};
use crate::store::Store;
use crate::tsig::{Keys, Session, Verified};
use crate::zone::{Lookup, ZoneCell, ZoneData, wire_len};

/// Largest UDP response we send, whatever the client offers (the DNS flag day 2020 value
/// avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Target size of one zone-transfer message (a TCP message holds at most 65,535 bytes).
pub const TRANSFER_MESSAGE_BYTES: usize = 60_000;
/// A transfer whose client reads nothing for this long is abandoned.
const TRANSFER_STALL: Duration = Duration::from_secs(10);
/// Room kept for a TSIG record when sizing signed messages.
const TSIG_ROOM: usize = 200;

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether this server owns the zone or copies it.
#[derive(Debug, Clone)]
pub enum Role {
    Primary { store: Arc<Store> },
    Secondary(Arc<SecondaryLink>),
}

/// What the DNS handler shares with a secondary's refresh task.
#[derive(Debug, Default)]
pub struct SecondaryLink {
    /// Addresses NOTIFY is accepted from (the primary's).
    pub primaries: Vec<IpAddr>,
    /// Woken by a NOTIFY.
    pub refresh: Notify,
    /// False until the first transfer (or load from disk), and after the zone expired.
    pub serving: std::sync::atomic::AtomicBool,
}

/// The request handler given to hickory's `Server` (TCP) and to our UDP loop ([`crate::udp`]).
#[derive(Debug, Clone)]
pub struct Handler {
    zone: Arc<ZoneCell>,
    keys: Keys,
    transfer_acl: Vec<Cidr>,
    role: Role,
    metrics: Arc<Metrics>,
}

/// The parts of one response; built twice when signed (once to compute the MAC).
struct Reply<'a> {
    meta: Metadata,
    answers: Vec<&'a Record>,
    authorities: Vec<&'a Record>,
    additionals: Vec<&'a Record>,
}

impl<'a> Reply<'a> {
    fn new(request: &Request, code: ResponseCode) -> Self {
        let mut meta = Metadata::new(
            request.metadata.id,
            MessageType::Response,
            request.metadata.op_code,
        );
        meta.response_code = code;
        meta.recursion_desired = request.metadata.recursion_desired;
        meta.checking_disabled = request.metadata.checking_disabled;
        Self {
            meta,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl Handler {
    pub fn new(
        zone: Arc<ZoneCell>,
        keys: Keys,
        transfer_acl: Vec<Cidr>,
        role: Role,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            zone,
            keys,
            transfer_acl,
            role,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The zone served now.
    pub fn zone(&self) -> Arc<ZoneData> {
        self.zone.load()
    }

    /// Whether queries are answered (a secondary not yet loaded, or expired, answers SERVFAIL).
    pub fn serving(&self) -> bool {
        match &self.role {
            Role::Primary { .. } => true,
            Role::Secondary(link) => link.serving.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Encodes `reply`, signing it with `session` when given, and sends it.
    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        reply: Reply<'_>,
        session: Option<&mut Session>,
    ) -> ResponseInfo {
        self.try_send(request, handle, edns, reply, session)
            .await
            .unwrap_or_else(|| failed(request))
    }

    /// Sends an answer with no records and `code`.
    async fn send_code<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        code: ResponseCode,
        session: Option<&mut Session>,
    ) -> ResponseInfo {
        self.send(request, handle, edns, Reply::new(request, code), session)
            .await
    }

    /// [`Self::send`], or `None` when the message could not be queued (the connection's
    /// queue is full or closed); the signing chain then stays where it was.
    async fn try_send<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        mut reply: Reply<'_>,
        session: Option<&mut Session>,
    ) -> Option<ResponseInfo> {
        let max = match request.protocol() {
            Protocol::Udp => edns.map_or(512, |e| e.max_payload()),
            _ => u16::MAX,
        };
        let mut signature = None;
        let mut session = session;
        let mut before = None;
        if let Some(session) = session.as_deref_mut() {
            // Encode once, leaving room for the TSIG, to know what fits and what to sign.
            let mut buf = Vec::with_capacity(512);
            let mut enc = BinEncoder::new(&mut buf);
            enc.set_max_size(max.saturating_sub(TSIG_ROOM as u16).max(512));
            let tbs = MessageResponseBuilder::new(&request.queries, edns).build(
                reply.meta,
                reply.answers.iter().copied(),
                reply.authorities.iter().copied(),
                None,
                reply.additionals.iter().copied(),
            );
            match tbs.destructive_emit(&mut enc) {
                Ok(info) => {
                    let counts = info.counts();
                    if info.truncation {
                        // Send exactly what was signed.
                        reply.meta.truncation = true;
                        reply.answers.truncate(usize::from(counts.answers));
                        reply.authorities.truncate(usize::from(counts.authorities));
                        let extra = usize::from(edns.is_some());
                        reply
                            .additionals
                            .truncate(usize::from(counts.additionals).saturating_sub(extra));
                    }
                    before = Some(session.clone());
                    match session.sign(request.metadata.id, &buf) {
                        Ok(sig) => signature = Some(sig),
                        Err(e) => tracing::error!(error = %e, "cannot sign the response"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode the response to sign it"),
            }
        }
        let mut response = MessageResponseBuilder::new(&request.queries, edns).build(
            reply.meta,
            reply.answers.iter().copied(),
            reply.authorities.iter().copied(),
            None,
            reply.additionals.iter().copied(),
        );
        if let Some(sig) = signature {
            response.set_signature(sig);
        }
        match handle.send_response(response).await {
            Ok(info) => {
                self.metrics.dns_response(
                    opcode_name(request.metadata.op_code),
                    &info.response_code.to_str().to_uppercase(),
                );
                Some(info)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot send the response");
                if let (Some(session), Some(before)) = (session, before) {
                    *session = before;
                }
                None
            }
        }
    }

    async fn query<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        session: Option<&mut Session>,
    ) -> ResponseInfo {
        let query = match request.queries.queries() {
            [q] => q,
            _ => {
                return self
                    .send_code(request, handle, edns, ResponseCode::FormErr, session)
                    .await;
            }
        };
        if !self.serving() {
            return self
                .send_code(request, handle, edns, ResponseCode::ServFail, session)
                .await;
        }
        let zone = self.zone.load();
        let qtype = query.query_type();
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
            || !zone.contains(query.name())
        {
            return self
                .send_code(request, handle, edns, ResponseCode::Refused, session)
                .await;
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return self
                .transfer(request, handle, edns, session, &zone, qtype)
                .await;
        }
        let mut reply = Reply::new(request, ResponseCode::NoError);
        reply.meta.authoritative = true;
        match zone.lookup(query.name(), qtype) {
            Lookup::Found(sets) => {
                let budget = match request.protocol() {
                    Protocol::Udp => usize::from(edns.map_or(512, |e| e.max_payload())),
                    _ => usize::from(u16::MAX),
                };
                // Header, question, OPT and the TSIG when the request was signed.
                let tsig = if session.is_some() { TSIG_ROOM } else { 0 };
                let mut used = 12 + query.name().len() + 5 + 11 + tsig;
                for set in &sets {
                    reply.answers.extend(set.records.iter());
                    used += set.wire_len;
                }
                for set in &sets {
                    for g in &set.glue {
                        let len = wire_len(g);
                        if used + len > budget {
                            break;
                        }
                        used += len;
                        reply.additionals.push(g);
                    }
                }
            }
            Lookup::NoData => reply.authorities.push(zone.negative_soa()),
            Lookup::NxDomain => {
                reply.meta.response_code = ResponseCode::NXDomain;
                reply.authorities.push(zone.negative_soa());
            }
            Lookup::NotInZone => {
                reply.meta.response_code = ResponseCode::Refused;
                reply.meta.authoritative = false;
            }
        }
        self.send(request, handle, edns, reply, session).await
    }

    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        mut session: Option<&mut Session>,
        zone: &ZoneData,
        qtype: RecordType,
    ) -> ResponseInfo {
        let count = |result: &str| {
            self.metrics
                .transfers
                .get_or_create(&ResultLabels::new(result))
                .inc()
        };
        let src = request.src().ip();
        let allowed = session.is_some() || self.transfer_acl.iter().any(|c| c.contains(src));
        if !allowed {
            tracing::warn!(client = %src, "zone transfer refused: not in --dns.allow-transfer and not TSIG-signed");
            count("refused");
            return self
                .send_code(request, handle, edns, ResponseCode::Refused, session)
                .await;
        }
        let origin = LowerName::new(zone.origin());
        if request.queries.queries().first().map(|q| q.name()) != Some(&origin) {
            count("refused");
            return self
                .send_code(request, handle, edns, ResponseCode::NotAuth, session)
                .await;
        }
        let current =
            |soa: &Record| matches!(&soa.data, RData::SOA(s) if serial_ge(s.serial, zone.serial()));
        let client_current =
            qtype == RecordType::IXFR && request.authorities.first().is_some_and(current);
        if request.protocol() == Protocol::Udp || client_current {
            // RFC 1995 §4: a single SOA says "up to date" or "ask again over TCP".
            let mut reply = Reply::new(request, ResponseCode::NoError);
            reply.meta.authoritative = true;
            reply.answers.push(zone.soa());
            count("soa-only");
            return self.send(request, handle, edns, reply, session).await;
        }
        let records: Vec<&Record> = zone
            .transfer_records()
            .chain(std::iter::once(zone.soa()))
            .collect();
        let mut start = 0;
        let mut info = None;
        while start < records.len() {
            let mut end = start;
            let mut size = 0;
            while end < records.len()
                && (end == start || size + wire_len(records[end]) <= TRANSFER_MESSAGE_BYTES)
            {
                size += wire_len(records[end]);
                end += 1;
            }
            // The connection's queue holds a few messages: wait for it to drain rather than
            // drop a message, and give up only when the client stopped reading for a while.
            let mut backoff = Duration::from_millis(1);
            let deadline = tokio::time::Instant::now() + TRANSFER_STALL;
            let sent = loop {
                let mut reply = Reply::new(request, ResponseCode::NoError);
                reply.meta.authoritative = true;
                reply.answers.extend_from_slice(&records[start..end]);
                if let Some(sent) = self
                    .try_send(request, handle, edns, reply, session.as_deref_mut())
                    .await
                {
                    break sent;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(client = %src, sent = start, total = records.len(), "zone transfer abandoned: the client stopped reading");
                    count("failed");
                    return failed(request);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            };
            info = Some(sent);
            start = end;
        }
        tracing::info!(client = %src, serial = zone.serial(), records = records.len(), "zone transferred");
        count("ok");
        info.unwrap_or_else(|| failed(request))
    }

    async fn update<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        session: Option<&mut Session>,
    ) -> ResponseInfo {
        let count = |result: &str| {
            self.metrics
                .updates
                .get_or_create(&ResultLabels::new(result))
                .inc()
        };
        let Role::Primary { store } = &self.role else {
            count("refused");
            return self
                .send_code(request, handle, edns, ResponseCode::Refused, session)
                .await;
        };
        let zone = self.zone.load();
        let code = match request.queries.queries() {
            [z] if z.query_type() == RecordType::SOA
                && z.name() == &LowerName::new(zone.origin()) =>
            {
                None
            }
            [z] if !zone.contains(z.name()) => Some(ResponseCode::NotAuth),
            _ => Some(ResponseCode::FormErr),
        };
        if let Some(code) = code {
            count("bad-zone");
            return self
                .send(request, handle, edns, Reply::new(request, code), session)
                .await;
        }
        let Some(key) = session.as_ref().map(|s| s.key_name().to_ascii()) else {
            tracing::warn!(client = %request.src(), "UPDATE refused: not signed with a TSIG key");
            count("refused");
            return self
                .send_code(request, handle, edns, ResponseCode::Refused, session)
                .await;
        };
        let lease = request.edns.as_ref().and_then(update_lease);
        let code = match store
            .dns_update(&request.answers, &request.authorities, lease)
            .await
        {
            Ok(()) => {
                tracing::info!(client = %request.src(), key, records = request.authorities.len(), "UPDATE applied");
                count("ok");
                ResponseCode::NoError
            }
            Err(rejected) => {
                tracing::warn!(client = %request.src(), key, code = %rejected.code, reason = rejected.reason, "UPDATE rejected");
                count("rejected");
                rejected.code
            }
        };
        self.send(request, handle, edns, Reply::new(request, code), session)
            .await
    }

    async fn notify<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
        edns: Option<&Edns>,
        session: Option<&mut Session>,
    ) -> ResponseInfo {
        let code = match &self.role {
            Role::Secondary(link)
                if session.is_some() || link.primaries.contains(&request.src().ip()) =>
            {
                tracing::debug!(from = %request.src(), "NOTIFY received; refreshing");
                link.refresh.notify_one();
                ResponseCode::NoError
            }
            Role::Secondary(_) => {
                tracing::warn!(from = %request.src(), "NOTIFY from an address that is not the primary");
                ResponseCode::Refused
            }
            Role::Primary { .. } => ResponseCode::NotImp,
        };
        let mut reply = Reply::new(request, code);
        reply.meta.authoritative = code == ResponseCode::NoError;
        self.send(request, handle, edns, reply, session).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query {
            // Never answer a response (that way lie loops); nothing is sent.
            return failed(request);
        }
        let mut resp_edns = None;
        if let Some(req) = &request.edns {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e.set_version(0);
            if req.version() > 0 {
                let mut reply = Reply::new(request, ResponseCode::BADVERS);
                reply.meta.response_code = ResponseCode::BADVERS;
                let e = e;
                return self.send(request, &mut handle, Some(&e), reply, None).await;
            }
            resp_edns = Some(e);
        }
        let edns = resp_edns.as_ref();
        let mut session = None;
        if let Some(sig) = &request.signature {
            match self.keys.verify(request.as_slice(), sig, T::current_time()) {
                Verified::Ok(s) => session = Some(s),
                Verified::Failed(f) => {
                    tracing::warn!(client = %request.src(), key = %sig.name, reason = f.reason, "TSIG check failed");
                    let reply = Reply::new(request, f.code);
                    let mut buf = Vec::new();
                    let mut enc = BinEncoder::new(&mut buf);
                    let unsigned = MessageResponseBuilder::new(&request.queries, edns)
                        .build_no_records(reply.meta);
                    let sig = match unsigned.destructive_emit(&mut enc) {
                        Ok(_) => f.context.sign(&buf).ok(),
                        Err(_) => None,
                    };
                    let mut response = MessageResponseBuilder::new(&request.queries, edns)
                        .build_no_records(reply.meta);
                    if let Some(sig) = sig {
                        response.set_signature(sig);
                    }
                    self.metrics
                        .dns_response(opcode_name(request.metadata.op_code), "NOTAUTH");
                    return handle
                        .send_response(response)
                        .await
                        .unwrap_or_else(|_| failed(request));
                }
            }
        }
        let session = session.as_mut();
        match request.metadata.op_code {
            OpCode::Query => self.query(request, &mut handle, edns, session).await,
            OpCode::Update => self.update(request, &mut handle, edns, session).await,
            OpCode::Notify => self.notify(request, &mut handle, edns, session).await,
            _ => {
                self.send_code(request, &mut handle, edns, ResponseCode::NotImp, session)
                    .await
            }
        }
    }
}

/// The EDNS UPDATE-LEASE option (draft-sekar-dns-ul): the lease in seconds.
fn update_lease(edns: &Edns) -> Option<u64> {
    match edns.option(EdnsCode::UL)? {
        EdnsOption::Unknown(_, bytes) if bytes.len() >= 4 => Some(u64::from(u32::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        _ => None,
    }
}

/// RFC 1982: whether `a` is at or after `b`.
pub fn serial_ge(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

fn failed(request: &Request) -> ResponseInfo {
    let mut meta = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    meta.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata: meta,
        counts: Default::default(),
    })
}

fn opcode_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Query => "query",
        OpCode::Update => "update",
        OpCode::Notify => "notify",
        OpCode::Status => "status",
        _ => "other",
    }
}
