//! Starts nameservers in-process, registers over HTTP and sends raw DNS queries.

use std::net::SocketAddr;
use std::time::Duration;

use heimdall_nameserver::Nameserver;
use heimdall_nameserver::config::Config;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const ZONE: &str = "heimdall.internal.";
pub const TOKEN: &str = "s3cret-token";

pub struct Running {
    pub dns: SocketAddr,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), heimdall_nameserver::RunError>>,
    pub client: reqwest::Client,
    pub store: Option<std::sync::Arc<heimdall_nameserver::store::Store>>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a nameserver on port 0 with `args` added to the defaults.
pub async fn start(args: &[&str]) -> Running {
    start_inner(args, Some(tempfile::tempdir().expect("tempdir"))).await
}

/// Starts a nameserver whose writes need [`TOKEN`].
pub async fn start_with_token() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, format!("# write token\n{TOKEN}\n")).expect("write token");
    let arg = format!("--registry.token-file={}", path.display());
    start_inner(&[&arg], Some(dir)).await
}

async fn start_inner(args: &[&str], dir: Option<tempfile::TempDir>) -> Running {
    let mut argv: Vec<String> = vec!["heimdall-nameserver".into()];
    let given = |flag: &str| args.iter().any(|a| a.starts_with(flag));
    for (flag, default) in [
        ("--dns.listen-address", "127.0.0.1:0"),
        ("--http.listen-address", "127.0.0.1:0"),
    ] {
        if !given(flag) {
            argv.push(format!("{flag}={default}"));
        }
    }
    // Registered test addresses do not answer /health: no health checks unless asked for.
    if !given("--health.interval") {
        argv.push("--health.interval=0s".into());
    }
    if !given("--storage.path") {
        let path = dir
            .as_ref()
            .map_or_else(String::new, |d| d.path().join("ns").display().to_string());
        argv.push(format!("--storage.path={path}"));
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let config = Config::parse_from(argv).expect("config");
    let ns = Nameserver::bind(&config).expect("bind");
    let dns = ns.local_dns_addr();
    let http = ns.local_http_addr();
    let store = Some(ns.store());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ns.run(shutdown.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    Running {
        dns,
        http,
        shutdown,
        task,
        client,
        store,
        _dir: dir,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Registers `service/instance` and checks it was accepted.
    pub async fn register(&self, service: &str, instance: &str, body: serde_json::Value) {
        let r = self.put(service, instance, body, Some(TOKEN)).await;
        assert!(r.status().is_success(), "register: {}", r.status());
    }

    pub async fn put(
        &self,
        service: &str,
        instance: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .put(self.url(&format!("/v1/services/{service}/instances/{instance}")))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("PUT")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// Asks over UDP.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Message {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let q = query_bytes(name, rtype);
        sock.send_to(&q, self.dns).await.expect("send");
        let mut buf = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("DNS answer within 5 s")
            .expect("recv");
        Message::from_vec(&buf[..n]).expect("parse answer")
    }

    /// Asks over TCP (2-byte length prefix, RFC 1035 4.2.2).
    pub async fn query_tcp(&self, name: &str, rtype: RecordType) -> Message {
        let mut s = tokio::net::TcpStream::connect(self.dns).await.expect("tcp");
        let q = query_bytes(name, rtype);
        let len = u16::try_from(q.len()).expect("small query");
        s.write_all(&len.to_be_bytes()).await.expect("write");
        s.write_all(&q).await.expect("write");
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
            .await
            .expect("answer within 5 s")
            .expect("read len");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.expect("read");
        Message::from_vec(&buf).expect("parse answer")
    }

    /// Stops the server and waits for it, so each test also proves clean shutdown.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops within 15 s");
        r.expect("task").expect("run result");
    }
}

fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m.to_vec().expect("encode")
}

fn rand_id() -> u16 {
    // Distinct enough for one socket per query.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos & 0xffff) as u16
}

pub fn assert_rcode(m: &Message, want: ResponseCode) {
    assert_eq!(m.metadata.response_code, want, "rcode of {m:?}");
}

/// SRV answers as sorted `(port, target)`.
pub fn srv_targets(m: &Message) -> Vec<(u16, String)> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The SOA serial in the answer or authority section.
pub fn soa_serial(m: &Message) -> Option<u32> {
    m.answers
        .iter()
        .chain(m.authorities.iter())
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
}

pub fn exporter(addr: &str, port: u16) -> serde_json::Value {
    serde_json::json!({ "address": addr, "port": port, "labels": { "rack": "r1", "env": "test" } })
}

/// A BIND-format key file with one hmac-sha256 key called `name`.
pub fn key_file(dir: &std::path::Path, name: &str, secret: &[u8]) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.key"));
    let b64 = data_encoding::BASE64.encode(secret);
    std::fs::write(
        &path,
        format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{b64}\";\n}};\n"),
    )
    .expect("write key");
    path
}

pub fn signer(name: &str, secret: &[u8]) -> hickory_proto::rr::TSigner {
    hickory_proto::rr::TSigner::new(
        secret.to_vec(),
        hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).expect("key name"),
        300,
    )
    .expect("signer")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends `m` (signed with `key` when given) over TCP from `src_ip` and reads answers until
/// `done` says the exchange is complete; bounded by 30 s and 10,000 messages.
pub async fn exchange_tcp(
    server: SocketAddr,
    src_ip: std::net::IpAddr,
    mut m: Message,
    key: Option<&hickory_proto::rr::TSigner>,
    done: impl Fn(&[Message]) -> bool,
) -> Vec<Message> {
    if let Some(k) = key {
        let (sig, _) = k.sign_message(&m, now_secs()).expect("sign");
        m.set_signature(sig);
    }
    let bytes = m.to_vec().expect("encode");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(src_ip, 0)).expect("bind source");
    let mut s = sock.connect(server).await.expect("connect");
    s.write_all(&u16::try_from(bytes.len()).expect("len").to_be_bytes())
        .await
        .expect("write");
    s.write_all(&bytes).await.expect("write");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&out) && out.len() < 10_000 {
        let mut len = [0u8; 2];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break, // closed
            Err(_) => panic!("no complete answer within 30 s"),
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.expect("read");
        out.push(Message::from_vec(&buf).expect("parse"));
    }
    out
}

/// An AXFR exchange is complete at the second SOA or at an error.
pub fn axfr_done(msgs: &[Message]) -> bool {
    msgs.last()
        .is_some_and(|m| m.metadata.response_code != ResponseCode::NoError)
        || msgs
            .iter()
            .flat_map(|m| m.answers.iter())
            .filter(|r| r.record_type() == RecordType::SOA)
            .count()
            >= 2
}

pub fn one_answer(msgs: &[Message]) -> bool {
    !msgs.is_empty()
}

pub fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}
