//! DNS over UDP: our own receive loop in front of the [`Handler`].
//!
//! hickory-server's UDP loop parses every packet into a `MessageRequest`, spawns a task per
//! packet (with no bound) and encodes every response through its generic encoder. Ours reads
//! with one task per core from the shared socket; plain queries are answered in place by
//! [`wire::respond`] from bytes packed with the zone, and everything else (UPDATE, NOTIFY,
//! TSIG-signed or malformed packets, transfers) goes to the same [`Handler`] hickory's TCP
//! listener uses, in a task, at most [`SLOW_TASKS`] at a time (beyond that, packets are
//! dropped and counted: UDP clients retry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use prometheus_client::metrics::counter::Counter;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::dns::Handler;
use crate::metrics::Metrics;
use crate::wire::{self, Answered, Outcome};

/// Packets handed to the general handler at the same time; more are dropped.
pub const SLOW_TASKS: usize = 256;
/// Largest datagram read (a DNS message over UDP is at most 65,535 bytes).
const RECV_BUFFER: usize = 65_535;

/// Fast-path response counters, looked up once (the label lookup costs more than the answer).
#[derive(Clone)]
struct Counters {
    noerror: Counter,
    nxdomain: Counter,
    refused: Counter,
    dropped: Counter,
}

impl Counters {
    fn new(metrics: &Metrics) -> Self {
        Self {
            noerror: metrics.dns_response_counter("query", "NOERROR"),
            nxdomain: metrics.dns_response_counter("query", "NXDOMAIN"),
            refused: metrics.dns_response_counter("query", "REFUSED"),
            dropped: metrics.udp_dropped.clone(),
        }
    }
}

/// Serves DNS on `socket` until `shutdown`.
pub async fn serve(socket: UdpSocket, handler: Handler, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let counters = Counters::new(handler.metrics());
    let handler = Arc::new(handler);
    let slow = Arc::new(Semaphore::new(SLOW_TASKS));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(
            socket.clone(),
            handler.clone(),
            slow.clone(),
            counters.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn worker(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    slow: Arc<Semaphore>,
    counters: Counters,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(usize::from(crate::dns::MAX_UDP_PAYLOAD));
    let mut errors = 0u32;
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            () = shutdown.cancelled() => return,
        };
        let (n, src) = match received {
            Ok(r) => {
                errors = 0;
                r
            }
            Err(e) => {
                // Transient on an unconnected socket (e.g. ENOBUFS); never a busy loop.
                errors = errors.saturating_add(1);
                tracing::debug!(error = %e, "DNS/UDP receive failed");
                if errors > 16 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        // Port 0 cannot be answered (and is a spoofing tell).
        if src.port() == 0 {
            continue;
        }
        let packet = &buf[..n];
        if handler.serving() {
            let zone = handler.zone();
            match wire::respond(&zone, packet, &mut out) {
                Outcome::Answered(code) => {
                    match code {
                        Answered::NoError => counters.noerror.inc(),
                        Answered::NxDomain => counters.nxdomain.inc(),
                        Answered::Refused => counters.refused.inc(),
                    };
                    if let Err(e) = socket.send_to(&out, src).await {
                        tracing::debug!(error = %e, client = %src, "DNS/UDP send failed");
                    }
                    continue;
                }
                Outcome::Ignore => continue,
                Outcome::Slow => {}
            }
        }
        let Ok(permit) = slow.clone().try_acquire_owned() else {
            counters.dropped.inc();
            continue;
        };
        let (handler, socket, raw) = (handler.clone(), socket.clone(), packet.to_vec());
        tokio::spawn(async move {
            general(&handler, socket, raw, src).await;
            drop(permit);
        });
    }
}

/// Hands one packet to the general handler.
async fn general(handler: &Handler, socket: Arc<UdpSocket>, raw: Vec<u8>, src: SocketAddr) {
    let head: Option<[u8; 12]> = raw.get(..12).and_then(|h| h.try_into().ok());
    let request = match Request::from_bytes(raw, src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            // Shorter than a header: not DNS, no answer. A response: never answered.
            let Some(head) = head else { return };
            if head[2] & 0x80 != 0 {
                return;
            }
            tracing::debug!(client = %src, error = %e, "malformed DNS request");
            let reply = formerr(head);
            if let Err(e) = socket.send_to(&reply, src).await {
                tracing::debug!(error = %e, client = %src, "DNS/UDP send failed");
            }
            return;
        }
    };
    handler
        .handle_request::<_, TokioTime>(&request, UdpReply { socket, dst: src })
        .await;
}

/// FORMERR for a request whose header is `head` and whose body did not parse (no question
/// echoed: it could not be read).
fn formerr(head: [u8; 12]) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..2].copy_from_slice(&head[..2]);
    // QR, the request's opcode and RD; RCODE 1.
    out[2] = 0x80 | (head[2] & 0x79);
    out[3] = ResponseCode::FormErr.low();
    out
}

/// Sends the general handler's responses to one UDP client.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // RFC 1035 §4.2.1: 512 bytes without EDNS; what fits is sent with TC set.
        let max = response.edns().map_or(512, |e| e.max_payload());
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a DNS response; sending SERVFAIL");
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: Default::default(),
                };
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}
