//! The UDP query fast path: answers straight from bytes encoded when the zone was built.
//!
//! Almost every packet a registry sees is a plain QUERY for one name: an exporter's A, a
//! service's SRV, a DNS-SD instance. For those, hickory's generic path (parse into a
//! `MessageRequest`, build a `MessageResponse`, encode it record by record with a compression
//! table of heap-allocated labels) costs more than the lookup itself, and its encoder does not
//! compress owner names against the question (every answer repeats the full name).
//!
//! So [`pack`] encodes every RRset once, when the zone is built, as the answer section of a
//! message whose question is the set's owner name: owner names are a pointer to the question
//! (offset 12), names inside the records are compressed against the question and against each
//! other, and the A/AAAA of SRV and NS targets follow as additional records, each owner a
//! pointer to the target written just before. SRV targets themselves are not compressed
//! (RFC 2782). A query then costs: check the header, lowercase the name into a stack buffer,
//! one hash lookup, and copies into a reused buffer ([`respond`]).
//!
//! Only what the fast path fully understands takes it: one question, class IN, opcode QUERY,
//! no TSIG, EDNS version 0 or none, not AXFR/IXFR/ANY, every name uncompressed, nothing after
//! the OPT record. Everything else (UPDATE, NOTIFY, signed requests, malformed packets, a set
//! of a type [`pack`] does not encode) goes to the general handler in [`crate::dns`], which
//! answers the same way.
//!
//! Sizes: answers are packed up to [`MAX_UDP_PAYLOAD`]; a set whose answer section alone does
//! not fit a client's UDP size is answered with no records and TC set (the client retries over
//! TCP, which the general handler serves); additional records go in as far as they fit and
//! never set TC (RFC 2181 §9).

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};

use crate::dns::MAX_UDP_PAYLOAD;
use crate::zone::ZoneData;

/// Where the question's name starts in every message.
const QNAME_AT: usize = 12;
/// An OPT record with no options.
const OPT_LEN: usize = 11;
const TYPE_SOA: u16 = 6;
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
/// Pointers reach 14 bits.
const POINTER_LIMIT: usize = 0x3FFF;

/// The zone's index key for `name`: its wire form (length-prefixed labels, then the root's 0),
/// lowercased.
pub fn key(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        // Labels are at most 63 bytes (hickory checks when the name is made).
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// One RRset, encoded for a UDP answer (see the module doc).
#[derive(Debug)]
pub enum Packed {
    Fits {
        /// The answer section, then the additional records.
        bytes: Box<[u8]>,
        /// Bytes of `bytes` that are the answer section.
        answer_len: u16,
        /// Records in the answer section.
        answers: u16,
        /// End of each additional record in `bytes`, in order.
        glue_ends: Box<[u16]>,
    },
    /// The answer section alone exceeds the largest UDP message we send: always TC.
    TooBig,
}

/// Encodes `records` (all owned by the name whose key is `owner`) and their `glue`; `None`
/// when a record has a type or shape this encoder does not handle (the general handler
/// answers those).
pub fn pack(owner: &[u8], records: &[Record], glue: &[Record]) -> Option<Packed> {
    let base = QNAME_AT + owner.len() + 4;
    let limit = usize::from(MAX_UDP_PAYLOAD).checked_sub(base + OPT_LEN)?;
    let mut p = Packer::new(base, owner);
    for r in records {
        p.record(r, true)?;
        if p.buf.len() > limit {
            return Some(Packed::TooBig);
        }
    }
    let answer_len = p.buf.len();
    let mut glue_ends = Vec::new();
    for g in glue {
        p.record(g, false)?;
        if p.buf.len() > limit {
            // Later glue could only be bigger in total; what is written past here is unused.
            p.buf
                .truncate(glue_ends.last().map_or(answer_len, |e| usize::from(*e)));
            break;
        }
        glue_ends.push(p.buf.len() as u16);
    }
    Some(Packed::Fits {
        bytes: p.buf.into_boxed_slice(),
        answer_len: answer_len as u16,
        answers: records.len() as u16,
        glue_ends: glue_ends.into_boxed_slice(),
    })
}

/// Compressing encoder for the records of one answer.
struct Packer {
    /// Message offset of `buf[0]`.
    base: usize,
    buf: Vec<u8>,
    /// Names already in the message (lowercase wire form of a suffix) and where they start.
    names: Vec<(Box<[u8]>, u16)>,
}

impl Packer {
    fn new(base: usize, owner: &[u8]) -> Self {
        let mut names = Vec::new();
        let mut at = 0;
        while at < owner.len() && owner[at] != 0 {
            names.push((owner[at..].into(), (QNAME_AT + at) as u16));
            at += 1 + usize::from(owner[at]);
        }
        Self {
            base,
            buf: Vec::with_capacity(64),
            names,
        }
    }

    fn put16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn put32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn find(&self, suffix: &[u8]) -> Option<u16> {
        self.names
            .iter()
            .find(|(n, _)| **n == *suffix)
            .map(|(_, at)| *at)
    }

    /// Writes `name`, ending in a pointer to an earlier copy of a suffix when `compress`;
    /// either way its suffixes become targets for later names.
    fn name(&mut self, name: &Name, compress: bool) {
        let lower = key(name);
        let mut at = 0;
        for label in name.iter() {
            let suffix = &lower[at..];
            if let Some(ptr) = self.find(suffix) {
                if compress {
                    self.put16(0xC000 | ptr);
                    return;
                }
            } else if self.base + self.buf.len() < POINTER_LIMIT {
                self.names
                    .push((suffix.into(), (self.base + self.buf.len()) as u16));
            }
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
            at += 1 + label.len();
        }
        self.buf.push(0);
    }

    /// Writes `r`; its owner is the question's name when `owner_is_question`.
    fn record(&mut self, r: &Record, owner_is_question: bool) -> Option<()> {
        if owner_is_question {
            self.put16(0xC000 | QNAME_AT as u16);
        } else {
            self.name(&r.name, true);
        }
        self.put16(u16::from(r.record_type()));
        self.put16(CLASS_IN);
        self.put32(r.ttl);
        let len_at = self.buf.len();
        self.put16(0);
        match &r.data {
            RData::A(a) => self.buf.extend_from_slice(&a.0.octets()),
            RData::AAAA(a) => self.buf.extend_from_slice(&a.0.octets()),
            RData::SRV(s) => {
                self.put16(s.priority);
                self.put16(s.weight);
                self.put16(s.port);
                self.name(&s.target, false);
            }
            RData::PTR(p) => self.name(&p.0, true),
            RData::NS(n) => self.name(&n.0, true),
            RData::CNAME(c) => self.name(&c.0, true),
            RData::TXT(t) => {
                for s in t.txt_data.iter() {
                    self.buf.push(u8::try_from(s.len()).ok()?);
                    self.buf.extend_from_slice(s);
                }
            }
            RData::SOA(s) => {
                self.name(&s.mname, true);
                self.name(&s.rname, true);
                self.put32(s.serial);
                self.put32(s.refresh as u32);
                self.put32(s.retry as u32);
                self.put32(s.expire as u32);
                self.put32(s.minimum);
            }
            _ => return None,
        }
        let rdlen = u16::try_from(self.buf.len() - len_at - 2).ok()?;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        Some(())
    }
}

/// A name inside the SOA that negative answers carry.
#[derive(Debug)]
enum SoaName {
    /// The labels before the origin (the origin itself is then a pointer into the question).
    UnderOrigin(Box<[u8]>),
    /// Outside the zone: written whole.
    Whole(Box<[u8]>),
}

/// The SOA for the authority section of NXDOMAIN/NODATA answers, with the TTL RFC 2308 §3
/// asks for (the smaller of the SOA's TTL and its MINIMUM).
#[derive(Debug)]
pub struct NegativeSoa {
    ttl: u32,
    mname: SoaName,
    rname: SoaName,
    /// SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM.
    numbers: [u8; 20],
}

impl NegativeSoa {
    /// The SOA `s` (whose record has TTL `ttl`) of the zone whose key is `origin`.
    pub fn new(ttl: u32, s: &SOA, origin: &[u8]) -> Self {
        let name = |n: &Name| {
            let k = key(n);
            let mut wire = Vec::with_capacity(k.len());
            for label in n.iter() {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label);
            }
            wire.push(0);
            if in_zone(&k, origin) {
                let prefix = k.len() - origin.len();
                SoaName::UnderOrigin(wire[..prefix].into())
            } else {
                SoaName::Whole(wire.into())
            }
        };
        let mut numbers = [0; 20];
        for (i, v) in [
            s.serial,
            s.refresh as u32,
            s.retry as u32,
            s.expire as u32,
            s.minimum,
        ]
        .iter()
        .enumerate()
        {
            numbers[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        Self {
            ttl: ttl.min(s.minimum),
            mname: name(&s.mname),
            rname: name(&s.rname),
            numbers,
        }
    }

    /// Appends the record, the origin being at message offset `origin_at`.
    fn write(&self, out: &mut Vec<u8>, origin_at: usize) {
        let ptr = (0xC000 | origin_at as u16).to_be_bytes();
        out.extend_from_slice(&ptr);
        out.extend_from_slice(&TYPE_SOA.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        for n in [&self.mname, &self.rname] {
            match n {
                SoaName::UnderOrigin(prefix) => {
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(&ptr);
                }
                SoaName::Whole(wire) => out.extend_from_slice(wire),
            }
        }
        out.extend_from_slice(&self.numbers);
        let rdlen = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
}

/// Whether the name `key` is at or under `origin` (both keys).
pub fn in_zone(key: &[u8], origin: &[u8]) -> bool {
    key.len() >= origin.len() && key.ends_with(origin) && is_label_start(key, origin)
}

/// Whether `origin`, a suffix of `name` (both keys), starts at one of `name`'s labels.
fn is_label_start(name: &[u8], origin: &[u8]) -> bool {
    let want = name.len() - origin.len();
    let mut at = 0;
    while at < want {
        at += 1 + usize::from(name[at]);
    }
    at == want
}

/// What the zone holds for a packed lookup.
#[derive(Debug)]
pub enum Found<'a> {
    Set(&'a Packed),
    NoData,
    NxDomain,
    NotInZone,
    /// The set exists but is not packed: the general handler answers.
    Unpacked,
}

/// The response code of a fast answer, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    NoError,
    NxDomain,
    Refused,
}

/// What [`respond`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds the whole response.
    Answered(Answered),
    /// Not for the fast path: hand the packet to the general handler.
    Slow,
    /// A response, not a query: send nothing (answering responses invites loops).
    Ignore,
}

/// The parts of a query the fast path needs.
struct Question {
    /// End of the question (after QTYPE and QCLASS) in the request.
    end: usize,
    key_len: usize,
    qtype: u16,
    /// The requester's UDP payload size when it sent EDNS(0).
    payload: Option<u16>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks `req` is a query the fast path answers and reads its question, the name lowercased
/// into `key`.
fn parse(req: &[u8], key: &mut [u8; 255]) -> Result<Question, Outcome> {
    if req.len() < QNAME_AT + 5 {
        return Err(Outcome::Slow);
    }
    if req[2] & 0x80 != 0 {
        return Err(Outcome::Ignore);
    }
    let opcode = (req[2] >> 3) & 0x0F;
    if opcode != 0 || u16_at(req, 4) != 1 || u16_at(req, 6) != 0 || u16_at(req, 8) != 0 {
        return Err(Outcome::Slow);
    }
    let additionals = u16_at(req, 10);
    let mut at = QNAME_AT;
    let mut len = 0;
    loop {
        let l = usize::from(*req.get(at).ok_or(Outcome::Slow)?);
        if l == 0 {
            key[len] = 0;
            len += 1;
            at += 1;
            break;
        }
        // A pointer (or reserved label type) in a question: unusual, the general path decides.
        if l > 63 || len + 1 + l + 1 > key.len() || at + 1 + l >= req.len() {
            return Err(Outcome::Slow);
        }
        key[len] = l as u8;
        for (k, b) in key[len + 1..len + 1 + l]
            .iter_mut()
            .zip(&req[at + 1..at + 1 + l])
        {
            *k = b.to_ascii_lowercase();
        }
        len += 1 + l;
        at += 1 + l;
    }
    if at + 4 > req.len() {
        return Err(Outcome::Slow);
    }
    let qtype = u16_at(req, at);
    let qclass = u16_at(req, at + 2);
    let end = at + 4;
    if qclass != CLASS_IN || matches!(qtype, TYPE_IXFR | TYPE_AXFR | TYPE_ANY) {
        return Err(Outcome::Slow);
    }
    let payload = match additionals {
        0 if end == req.len() => None,
        1 if req.len() >= end + OPT_LEN
            && req[end] == 0
            && u16_at(req, end + 1) == TYPE_OPT
            // EDNS version 0 (others get BADVERS from the general handler).
            && req[end + 6] == 0
            && end + OPT_LEN + usize::from(u16_at(req, end + 9)) == req.len() =>
        {
            Some(u16_at(req, end + 3))
        }
        _ => return Err(Outcome::Slow),
    };
    Ok(Question {
        end,
        key_len: len,
        qtype,
        payload,
    })
}

/// Answers `req` from `zone` into `out` when it is a plain query (see the module doc).
pub fn respond(zone: &ZoneData, req: &[u8], out: &mut Vec<u8>) -> Outcome {
    let mut key = [0u8; 255];
    let q = match parse(req, &mut key) {
        Ok(q) => q,
        Err(o) => return o,
    };
    let key = &key[..q.key_len];
    let origin = zone.origin_key();
    let found = if in_zone(key, origin) {
        zone.packed(key, q.qtype)
    } else {
        Found::NotInZone
    };
    if matches!(found, Found::Unpacked) {
        return Outcome::Slow;
    }
    let budget = match q.payload {
        Some(p) => usize::from(p.clamp(512, MAX_UDP_PAYLOAD)),
        None => 512,
    };
    out.clear();
    // Header: ID, QR + AA, RD copied, CD copied; counts filled below.
    out.extend_from_slice(&req[..2]);
    out.extend_from_slice(&[0x84 | (req[2] & 0x01), req[3] & 0x10]);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&req[QNAME_AT..q.end]);
    let opt = if q.payload.is_some() { OPT_LEN } else { 0 };
    let (mut answers, mut authorities, mut additionals) = (0u16, 0u16, 0u16);
    let mut rcode = Answered::NoError;
    let origin_at = QNAME_AT + key.len() - origin.len();
    match found {
        Found::Set(Packed::Fits {
            bytes,
            answer_len,
            answers: n,
            glue_ends,
        }) if out.len() + opt + usize::from(*answer_len) <= budget => {
            let room = budget - out.len() - opt;
            let glue = glue_ends
                .iter()
                .take_while(|e| usize::from(**e) <= room)
                .count();
            let end = glue.checked_sub(1).map_or(*answer_len, |i| glue_ends[i]);
            out.extend_from_slice(&bytes[..usize::from(end)]);
            answers = *n;
            additionals = glue as u16;
        }
        // The answer does not fit this client's UDP size: TC, and it retries over TCP.
        Found::Set(_) => out[2] |= 0x02,
        Found::NoData => {
            zone.negative_packed().write(out, origin_at);
            authorities = 1;
        }
        Found::NxDomain => {
            zone.negative_packed().write(out, origin_at);
            authorities = 1;
            rcode = Answered::NxDomain;
            out[3] |= 3;
        }
        Found::NotInZone | Found::Unpacked => {
            rcode = Answered::Refused;
            out[2] &= !0x04;
            out[3] |= 5;
        }
    }
    if q.payload.is_some() {
        // Our payload size: what the client offered, within 512..=1232 (as the general path).
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&(budget as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        additionals += 1;
    }
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out[8..10].copy_from_slice(&authorities.to_be_bytes());
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    Outcome::Answered(rcode)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};
    use hickory_proto::serialize::binary::BinDecodable;

    use super::*;
    use crate::registry::{Registration, Registry};
    use crate::zone::{ZoneConfig, ZoneData};

    fn zone(n: usize) -> ZoneData {
        let zc = ZoneConfig::new("heimdall.internal.", Some("127.0.0.1".parse().unwrap())).unwrap();
        let mut r = Registry::default();
        for i in 0..n {
            let reg = Registration {
                address: format!("10.0.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
                port: 9090,
                labels: BTreeMap::from([("rack".to_owned(), format!("r{i}"))]),
                ttl_seconds: None,
                health_path: None,
            };
            r.register("exporter", &format!("web-{i}"), reg, Instant::now())
                .unwrap();
        }
        ZoneData::build(&zc, &r, 42)
    }

    fn query(name: &str, t: RecordType, payload: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xBEEF;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(p) = payload {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    fn answer(z: &ZoneData, req: &[u8]) -> Message {
        let mut out = Vec::new();
        assert!(matches!(respond(z, req, &mut out), Outcome::Answered(_)));
        Message::from_bytes(&out).unwrap()
    }

    #[test]
    fn answers_match_the_zone() {
        let z = zone(3);
        let m = answer(
            &z,
            &query("Web-1.Heimdall.Internal.", RecordType::A, Some(4096)),
        );
        assert_eq!(m.metadata.id, 0xBEEF);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        // The question comes back as asked (case included); the answer points at it.
        assert_eq!(m.queries[0].name().to_ascii(), "Web-1.Heimdall.Internal.");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::A("10.0.0.2".parse().unwrap()));
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), MAX_UDP_PAYLOAD);

        let m = answer(
            &z,
            &query("_exporter._tcp.heimdall.internal.", RecordType::SRV, None),
        );
        assert_eq!(m.answers.len(), 3);
        assert!(m.edns.is_none());
        let mut targets: Vec<String> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(s) => {
                    assert_eq!(s.port, 9090);
                    s.target.to_ascii()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        targets.sort();
        assert_eq!(targets[0], "web-0.heimdall.internal.");
        // Glue: one A per target, owned by the target.
        assert_eq!(m.additionals.len(), 3);
        for g in &m.additionals {
            assert!(targets.contains(&g.name.to_ascii()), "{}", g.name);
        }

        let m = answer(
            &z,
            &query("web-2.heimdall.internal.", RecordType::TXT, Some(1232)),
        );
        assert_eq!(m.answers[0].data.to_string(), "rack=r2");
        let m = answer(&z, &query("heimdall.internal.", RecordType::SOA, None));
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(soa.serial, 42);
        assert_eq!(soa.mname.to_ascii(), "ns.heimdall.internal.");
        let m = answer(&z, &query("heimdall.internal.", RecordType::NS, None));
        assert_eq!(m.additionals.len(), 1, "the NS host's address");
    }

    #[test]
    fn every_packed_set_decodes_to_its_records() {
        let z = zone(20);
        let mut checked = 0;
        for (name, set) in z.sets() {
            let Some(Packed::Fits { .. }) = &set.packed else {
                continue;
            };
            let m = answer(&z, &query(&name.to_ascii(), set.rtype, Some(1232)));
            let mut got: Vec<String> = m.answers.iter().map(|r| r.to_string()).collect();
            let mut want: Vec<String> = set.records.iter().map(|r| r.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name} {}", set.rtype);
            checked += 1;
        }
        assert!(checked > 60, "{checked}");
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let z = zone(1);
        let m = answer(
            &z,
            &query("nope.heimdall.internal.", RecordType::A, Some(1232)),
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].name.to_ascii(), "heimdall.internal.");
        // RFC 2308: the smaller of the SOA's TTL and MINIMUM.
        assert_eq!(m.authorities[0].ttl, crate::zone::NEGATIVE_TTL);
        assert_eq!(m.authorities[0].data, z.negative_soa().data);
        // An empty non-terminal and a name without the type: NODATA.
        for (name, t) in [
            ("_tcp.heimdall.internal.", RecordType::A),
            ("web-0.heimdall.internal.", RecordType::AAAA),
        ] {
            let m = answer(&z, &query(name, t, None));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities.len(), 1);
        }
        let m = answer(&z, &query("example.com.", RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
        // A name that ends like the zone without being in it.
        let m = answer(&z, &query("xheimdall.internal.", RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn too_big_is_truncated_and_glue_is_trimmed() {
        let z = zone(20);
        // 20 SRV records (43 or 44 bytes: SRV targets are never compressed) exceed 512 bytes:
        // TC with no records (the client retries over TCP).
        let m = answer(
            &z,
            &query("_exporter._tcp.heimdall.internal.", RecordType::SRV, None),
        );
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        // With EDNS 1232 they fit, and the glue fills what is left without setting TC.
        let req = query(
            "_exporter._tcp.heimdall.internal.",
            RecordType::SRV,
            Some(1232),
        );
        let mut out = Vec::new();
        respond(&z, &req, &mut out);
        assert!(out.len() <= 1232);
        let m = Message::from_bytes(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 20);
        // 12 + 38 (question) + 10 × 43 + 10 × 44 + 11 (OPT) leaves 301 bytes: 18 glue A of
        // 16 bytes (owner names point at the SRV targets).
        assert_eq!(m.additionals.len(), 18);
        assert_eq!(out.len(), 12 + 38 + 10 * 43 + 10 * 44 + 18 * 16 + 11);
        let z = zone(200);
        let m = answer(
            &z,
            &query(
                "_exporter._tcp.heimdall.internal.",
                RecordType::SRV,
                Some(4096),
            ),
        );
        assert!(m.metadata.truncation && m.answers.is_empty());
    }

    #[test]
    fn other_requests_go_to_the_general_handler() {
        let z = zone(1);
        let mut out = Vec::new();
        let slow = |req: &[u8], out: &mut Vec<u8>| respond(&z, req, out);
        for t in [RecordType::ANY, RecordType::AXFR, RecordType::IXFR] {
            assert_eq!(
                slow(&query("heimdall.internal.", t, None), &mut out),
                Outcome::Slow
            );
        }
        let mut update = Message::query();
        update.metadata.op_code = OpCode::Update;
        update.add_query(Query::query(
            Name::from_ascii("heimdall.internal.").unwrap(),
            RecordType::SOA,
        ));
        assert_eq!(slow(&update.to_vec().unwrap(), &mut out), Outcome::Slow);
        let mut two = Message::query();
        for _ in 0..2 {
            two.add_query(Query::query(
                Name::from_ascii("web-0.heimdall.internal.").unwrap(),
                RecordType::A,
            ));
        }
        assert_eq!(slow(&two.to_vec().unwrap(), &mut out), Outcome::Slow);
        // EDNS version 1 (BADVERS is the general handler's).
        let mut req = query("web-0.heimdall.internal.", RecordType::A, Some(1232));
        let n = req.len();
        req[n - 5] = 1;
        assert_eq!(slow(&req, &mut out), Outcome::Slow);
        // Trailing bytes.
        let mut req = query("web-0.heimdall.internal.", RecordType::A, None);
        req.push(0);
        assert_eq!(slow(&req, &mut out), Outcome::Slow);
        // A response is never answered.
        let mut req = query("web-0.heimdall.internal.", RecordType::A, None);
        req[2] |= 0x80;
        assert_eq!(slow(&req, &mut out), Outcome::Ignore);
    }

    #[test]
    fn no_panic_on_mutated_packets() {
        let z = zone(5);
        let base = query(
            "_exporter._tcp.heimdall.internal.",
            RecordType::SRV,
            Some(1232),
        );
        let mut out = Vec::new();
        for cut in 0..base.len() {
            let _ = respond(&z, &base[..cut], &mut out);
        }
        // A seeded xorshift over single- and multi-byte mutations.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut p = base.clone();
            for _ in 0..=(next() % 4) {
                let i = (next() as usize) % p.len();
                p[i] = next() as u8;
            }
            if let Outcome::Answered(_) = respond(&z, &p, &mut out) {
                assert!(out.len() <= usize::from(MAX_UDP_PAYLOAD));
                assert!(Message::from_bytes(&out).is_ok(), "{p:?}");
            }
        }
    }
}
