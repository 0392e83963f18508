//! UPDATE with TSIG, zone transfers with their ACL, replication to a secondary, health
//! checks, persistence across restarts, the 10,000-instance scale, and hostile packets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::harness::{self, Running, ZONE, assert_rcode, exchange_tcp, srv_targets};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const SRV_NAME: &str = "_exporter._tcp.heimdall.internal.";

fn update_message(records: Vec<Record>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    m.add_query(Query::query(
        Name::from_ascii(ZONE).unwrap(),
        RecordType::SOA,
    ));
    m.add_authorities(records);
    m
}

fn rand_id() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.subsec_nanos() as u16)
}

fn add_exporter(instance: &str, ip: [u8; 4], port: u16) -> Vec<Record> {
    let host = Name::from_ascii(format!("{instance}.{ZONE}")).unwrap();
    vec![
        Record::from_rdata(
            host.clone(),
            60,
            RData::A(A::from(std::net::Ipv4Addr::from(ip))),
        ),
        Record::from_rdata(
            Name::from_ascii(SRV_NAME).unwrap(),
            60,
            RData::SRV(SRV::new(0, 0, port, host)),
        ),
    ]
}

async fn send_update(
    ns: &Running,
    records: Vec<Record>,
    key: Option<&hickory_proto::rr::TSigner>,
) -> Message {
    let msgs = exchange_tcp(
        ns.dns,
        harness::loopback(),
        update_message(records),
        key,
        harness::one_answer,
    )
    .await;
    msgs.into_iter().next().expect("an answer")
}

async fn start_with_key(extra: &[&str]) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = harness::key_file(dir.path(), "heimdall-update", SECRET);
    let mut args = vec![format!("--dns.tsig-key-file={}", key.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (harness::start(&refs).await, dir)
}

#[tokio::test]
async fn tsig_signed_update_registers_and_unsigned_or_forged_change_nothing() {
    let (ns, _dir) = start_with_key(&[]).await;
    let key = harness::signer("heimdall-update", SECRET);

    let unsigned = send_update(&ns, add_exporter("web-9", [10, 0, 0, 9], 9090), None).await;
    assert_rcode(&unsigned, ResponseCode::Refused);
    let forged = harness::signer("heimdall-update", b"not-the-secret-not-the-secret!!!");
    let bad = send_update(
        &ns,
        add_exporter("web-9", [10, 0, 0, 9], 9090),
        Some(&forged),
    )
    .await;
    assert_rcode(&bad, ResponseCode::NotAuth);
    let unknown = harness::signer("someone-else", SECRET);
    let bad = send_update(
        &ns,
        add_exporter("web-9", [10, 0, 0, 9], 9090),
        Some(&unknown),
    )
    .await;
    assert_rcode(&bad, ResponseCode::NotAuth);
    assert!(srv_targets(&ns.query_tcp(SRV_NAME, RecordType::SRV).await).is_empty());

    let ok = send_update(&ns, add_exporter("web-9", [10, 0, 0, 9], 9090), Some(&key)).await;
    assert_rcode(&ok, ResponseCode::NoError);
    assert!(
        ok.signature.is_some(),
        "the answer to a signed update is signed"
    );
    assert_eq!(
        srv_targets(&ns.query(SRV_NAME, RecordType::SRV).await),
        vec![(9090, "web-9.heimdall.internal.".to_owned())]
    );
    let listed = ns.get_json("/v1/services").await;
    assert_eq!(listed["services"]["exporter"][0]["address"], "10.0.0.9");

    // A record shape the registry cannot hold is refused and changes nothing.
    let apex = vec![Record::from_rdata(
        Name::from_ascii(ZONE).unwrap(),
        60,
        RData::A(A::new(10, 0, 0, 1)),
    )];
    assert_rcode(
        &send_update(&ns, apex, Some(&key)).await,
        ResponseCode::Refused,
    );

    // Delete every RRset of the instance name: gone from the SRV set.
    let mut del = Record::update0(
        Name::from_ascii(format!("web-9.{ZONE}")).unwrap(),
        0,
        RecordType::ANY,
    );
    del.dns_class = DNSClass::ANY;
    assert_rcode(
        &send_update(&ns, vec![del], Some(&key)).await,
        ResponseCode::NoError,
    );
    assert!(srv_targets(&ns.query_tcp(SRV_NAME, RecordType::SRV).await).is_empty());
    ns.stop().await;
}

fn axfr_query() -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii(ZONE).unwrap(),
        RecordType::AXFR,
    ));
    m
}

#[tokio::test]
async fn axfr_for_allowed_addresses_and_tsig_keys_only() {
    let (ns, _dir) = start_with_key(&["--dns.allow-transfer=127.0.0.1/32"]).await;
    ns.register("exporter", "web-1", harness::exporter("10.0.0.1", 9090))
        .await;
    let allowed = exchange_tcp(
        ns.dns,
        harness::loopback(),
        axfr_query(),
        None,
        harness::axfr_done,
    )
    .await;
    let records: Vec<&Record> = allowed.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(
        records.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );
    assert_eq!(
        records.last().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );
    assert!(records.iter().any(|r| r.record_type() == RecordType::SRV));

    let other: IpAddr = [127, 0, 0, 2].into();
    let refused = exchange_tcp(ns.dns, other, axfr_query(), None, harness::one_answer).await;
    assert_rcode(&refused[0], ResponseCode::Refused);
    assert!(refused[0].answers.is_empty());

    let key = harness::signer("heimdall-update", SECRET);
    let signed = exchange_tcp(ns.dns, other, axfr_query(), Some(&key), harness::axfr_done).await;
    let n: usize = signed.iter().map(|m| m.answers.len()).sum();
    assert_eq!(
        n,
        records.len(),
        "TSIG-signed transfer from a non-listed address"
    );
    assert!(
        signed.iter().all(|m| m.signature.is_some()),
        "every message signed"
    );
    ns.stop().await;
}

#[tokio::test]
async fn ten_thousand_instances_are_fully_discoverable() {
    let ns = harness::start(&["--dns.allow-transfer=127.0.0.1"]).await;
    let store = ns_store(&ns).await;
    // Registered in-process and concurrently: this is about serving, HTTP is tested elsewhere.
    let regs = (0..10_000u32).map(|i| {
        let store = store.clone();
        async move {
            let reg = heimdall_nameserver::registry::Registration {
                address: IpAddr::from([10, (i >> 16) as u8 + 1, (i >> 8) as u8, i as u8]),
                port: 9090,
                labels: Default::default(),
                ttl_seconds: None,
                health_path: None,
            };
            store
                .register("exporter", &format!("host-{i}"), reg)
                .await
                .unwrap();
        }
    });
    futures_util::future::join_all(regs).await;

    // Shards: the index lists them, each fits one TCP answer, together they hold everyone.
    let index = ns
        .query_tcp("_shards._exporter._tcp.heimdall.internal.", RecordType::PTR)
        .await;
    assert_rcode(&index, ResponseCode::NoError);
    let shards: Vec<Name> = index
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.clone()),
            _ => None,
        })
        .collect();
    assert!(shards.len() >= 40, "{} shards", shards.len());
    let mut seen = std::collections::HashSet::new();
    for shard in &shards {
        let m = ns.query_tcp(&shard.to_ascii(), RecordType::SRV).await;
        assert!(!m.metadata.truncation, "shard {shard} truncated");
        for (_, target) in srv_targets(&m) {
            assert!(seen.insert(target));
        }
    }
    assert_eq!(seen.len(), 10_000);

    // The whole set does not fit 64 KiB: the answer says so (TC), it is never cut silently.
    let full = ns.query_tcp(SRV_NAME, RecordType::SRV).await;
    assert!(full.metadata.truncation, "TC set on the oversized RRset");
    // Over UDP the big sets are truncated with TC too.
    let udp = ns.query(&shards[0].to_ascii(), RecordType::SRV).await;
    assert!(udp.metadata.truncation);

    // AXFR carries every record over many messages.
    let msgs = exchange_tcp(
        ns.dns,
        harness::loopback(),
        axfr_query(),
        None,
        harness::axfr_done,
    )
    .await;
    assert!(msgs.len() > 10, "{} messages", msgs.len());
    let srv_count = msgs
        .iter()
        .flat_map(|m| m.answers.iter())
        .filter(|r| r.name.to_ascii() == SRV_NAME && r.record_type() == RecordType::SRV)
        .count();
    assert_eq!(srv_count, 10_000);
    ns.stop().await;
}

async fn ns_store(ns: &Running) -> std::sync::Arc<heimdall_nameserver::store::Store> {
    ns.store.clone().expect("harness keeps the store")
}

fn free_port() -> u16 {
    // UDP and TCP on the same number; a race with another process is possible but rare.
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn secondary_follows_by_notify_and_answers_after_the_primary_dies() {
    let port = free_port();
    let notify = format!("--dns.notify=127.0.0.1:{port}");
    let primary = harness::start(&["--dns.allow-transfer=127.0.0.1", &notify]).await;
    primary
        .register("exporter", "web-1", harness::exporter("10.0.0.1", 9090))
        .await;
    let listen = format!("--dns.listen-address=127.0.0.1:{port}");
    let from = format!("--primary={}", primary.dns);
    let secondary = harness::start(&["--role=secondary", &from, &listen]).await;
    let want = srv_targets(&primary.query(SRV_NAME, RecordType::SRV).await);
    wait_for("initial transfer", || async {
        srv_targets(&secondary.query(SRV_NAME, RecordType::SRV).await) == want
    })
    .await;

    // A change reaches the secondary by NOTIFY, long before the 60 s refresh timer.
    primary
        .register("exporter", "web-2", harness::exporter("10.0.0.2", 9100))
        .await;
    let want = srv_targets(&primary.query(SRV_NAME, RecordType::SRV).await);
    assert_eq!(want.len(), 2);
    wait_for("NOTIFY-driven refresh", || async {
        srv_targets(&secondary.query(SRV_NAME, RecordType::SRV).await) == want
    })
    .await;
    // Its HTTP view is rebuilt from the zone; writes are refused, pointing to the primary.
    let listed = secondary.get_json("/v1/services").await;
    assert_eq!(
        listed["services"]["exporter"].as_array().map(Vec::len),
        Some(2)
    );
    let r = secondary
        .put(
            "exporter",
            "web-3",
            harness::exporter("10.0.0.3", 1),
            Some(harness::TOKEN),
        )
        .await;
    assert_eq!(r.status(), 421);
    assert!(r.text().await.unwrap().contains(&primary.dns.to_string()));

    primary.stop().await;
    assert_eq!(
        srv_targets(&secondary.query(SRV_NAME, RecordType::SRV).await),
        want
    );
    secondary.stop().await;
}

/// A minimal HTTP server answering 200 to everything, as an instance's /health.
async fn healthy_server(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nOK\n")
                .await;
        });
    }
}

#[tokio::test]
async fn health_checks_take_dead_instances_out_of_srv_and_back() {
    let ns = harness::start(&[
        "--health.interval=100ms",
        "--health.failures=2",
        "--health.successes=1",
    ])
    .await;
    let alive = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive_port = alive.local_addr().unwrap().port();
    tokio::spawn(healthy_server(alive));
    let dead_port = free_port();
    let body = |port: u16| serde_json::json!({ "address": "127.0.0.1", "port": port });
    ns.register("exporter", "alive", body(alive_port)).await;
    ns.register("exporter", "dead", body(dead_port)).await;

    let only_alive = vec![(alive_port, "alive.heimdall.internal.".to_owned())];
    wait_for("dead instance marked down", || async {
        srv_targets(&ns.query(SRV_NAME, RecordType::SRV).await) == only_alive
    })
    .await;
    let listed = ns.get_json("/v1/services").await;
    let states: Vec<(String, String)> = listed["services"]["exporter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap().to_owned(),
                i["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("dead".into(), "down".into())),
        "{states:?}"
    );
    // Still resolvable by name; only the SRV set leaves it out.
    let a = ns.query("dead.heimdall.internal.", RecordType::A).await;
    assert_eq!(a.answers.len(), 1);
    let metrics = ns
        .client
        .get(ns.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("heimdall_nameserver_instances{service=\"exporter\",state=\"down\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("heimdall_nameserver_health_probe_failures_total{service=\"exporter\"}")
    );

    // It comes back once it answers.
    let revived = tokio::net::TcpListener::bind(("127.0.0.1", dead_port))
        .await
        .unwrap();
    tokio::spawn(healthy_server(revived));
    wait_for("revived instance back in SRV", || async {
        srv_targets(&ns.query(SRV_NAME, RecordType::SRV).await).len() == 2
    })
    .await;
    ns.stop().await;
}

#[tokio::test]
async fn registry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let ns = harness::start(&[&storage]).await;
    ns.register("exporter", "web-1", harness::exporter("10.0.0.1", 9090))
        .await;
    ns.register("exporter", "web-2", harness::exporter("10.0.0.2", 9090))
        .await;
    let r = ns
        .client
        .delete(ns.url("/v1/services/exporter/instances/web-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let serial = harness::soa_serial(&ns.query(ZONE, RecordType::SOA).await).unwrap();
    ns.stop().await;

    let again = harness::start(&[&storage]).await;
    assert_eq!(
        srv_targets(&again.query(SRV_NAME, RecordType::SRV).await),
        vec![(9090, "web-1.heimdall.internal.".to_owned())]
    );
    let listed = again.get_json("/v1/services").await;
    assert_eq!(listed["services"]["exporter"][0]["labels"]["rack"], "r1");
    let serial2 = harness::soa_serial(&again.query(ZONE, RecordType::SOA).await).unwrap();
    assert!(
        serial2.wrapping_sub(serial) as i32 > 0,
        "serial moves forward across restarts"
    );
    again.stop().await;
}

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test]
async fn hostile_packets_never_take_the_server_down() {
    let (ns, _dir) = start_with_key(&[]).await;
    ns.register("exporter", "web-1", harness::exporter("10.0.0.1", 9090))
        .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut valid = Message::query();
    valid.metadata.id = 7;
    valid.add_query(Query::query(
        Name::from_ascii(SRV_NAME).unwrap(),
        RecordType::SRV,
    ));
    let valid = valid.to_vec().unwrap();
    let update = update_message(add_exporter("web-9", [10, 0, 0, 9], 9090))
        .to_vec()
        .unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 5], // truncated header
        vec![0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // huge counts, no data
        // A question whose name is a compression pointer to itself.
        vec![0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A name pointing forward past the end.
        vec![0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0, 1, 0, 1],
        // A response (QR set) must not be answered.
        {
            let mut v = valid.clone();
            v[2] |= 0x80;
            v
        },
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..20_000 {
        let base = if i % 2 == 0 { &valid } else { &update };
        let mut p = base.clone();
        match rng.next() % 4 {
            0 => {
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % p.len();
                    p[at] = rng.next() as u8;
                }
            }
            1 => p.truncate((rng.next() as usize) % p.len()),
            2 => p.extend((0..rng.next() % 64).map(|_| rng.next() as u8)),
            _ => p = (0..rng.next() % 512).map(|_| rng.next() as u8).collect(),
        }
        cases.push(p);
    }
    for (n, p) in cases.iter().enumerate() {
        sock.send_to(p, ns.dns).await.unwrap();
        if n % 256 == 0 {
            // Let the server drain; UDP may drop under load, that is fine.
            tokio::task::yield_now().await;
        }
    }
    // Still answering correctly, and nothing was registered by a mangled unsigned update.
    let m = ns.query(SRV_NAME, RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![(9090, "web-1.heimdall.internal.".to_owned())]
    );
    let m = ns.query_tcp(SRV_NAME, RecordType::SRV).await;
    assert_rcode(&m, ResponseCode::NoError);
    let _: SocketAddr = ns.dns;
    ns.stop().await;
}
