//! DNS discovery against heimdall-nameserver started in-process on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use heimdall_nameserver::registry::Registration;
use heimdall_scraper::discovery::dns::{DnsSd, DnsSdOptions, HostCache, RecordKind};
use tokio_util::sync::CancellationToken;

struct Ns {
    dns: SocketAddr,
    store: std::sync::Arc<heimdall_nameserver::store::Store>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn nameserver() -> Ns {
    let config = heimdall_nameserver::config::Config::parse_from([
        "heimdall-nameserver",
        "--dns.listen-address=127.0.0.1:0",
        "--http.listen-address=127.0.0.1:0",
        "--storage.path=",
        "--health.interval=0s",
    ])
    .unwrap();
    let ns = heimdall_nameserver::Nameserver::bind(&config).unwrap();
    let (dns, store) = (ns.local_dns_addr(), ns.store());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        ns.run(s).await.unwrap();
    });
    Ns {
        dns,
        store,
        stop,
        task,
    }
}

async fn register(ns: &Ns, n: usize) {
    // Concurrent registrations share zone rebuilds (one by one, 1,200 take a minute in debug).
    let all = (0..n).map(|i| {
        let reg = Registration {
            address: format!("10.1.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
            port: 9090,
            labels: BTreeMap::new(),
            ttl_seconds: None,
            health_path: None,
        };
        let store = ns.store.clone();
        async move { store.register("exporter", &format!("web-{i}"), reg).await }
    });
    for r in futures_util::future::join_all(all).await {
        r.unwrap();
    }
}

fn options(nameservers: Vec<SocketAddr>) -> DnsSdOptions {
    DnsSdOptions {
        names: vec!["_exporter._tcp.heimdall.internal".into()],
        kind: RecordKind::Srv,
        port: 0,
        refresh_interval: Duration::from_secs(30),
        nameservers,
        timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn srv_targets_with_prometheus_labels_and_addresses() {
    let ns = nameserver().await;
    register(&ns, 3).await;
    let hosts = HostCache::new();
    let sd = DnsSd::new(options(vec![ns.dns]), hosts.clone()).unwrap();
    let group = sd
        .refresh_name("_exporter._tcp.heimdall.internal")
        .await
        .unwrap();
    assert_eq!(group.targets.len(), 3);
    let t = &group.targets[0];
    assert_eq!(t.get("__address__"), Some("web-0.heimdall.internal:9090"));
    assert_eq!(
        t.get("__meta_dns_srv_record_target"),
        Some("web-0.heimdall.internal.")
    );
    assert_eq!(t.get("__meta_dns_srv_record_port"), Some("9090"));
    assert_eq!(
        t.get("__meta_dns_name"),
        Some("_exporter._tcp.heimdall.internal")
    );
    assert_eq!(
        hosts.get("web-2.heimdall.internal"),
        Some(vec!["10.1.0.3".parse().unwrap()])
    );
    // A name with no records: a valid, empty answer (not an error).
    let none = sd
        .refresh_name("_nothing._tcp.heimdall.internal")
        .await
        .unwrap();
    assert!(none.targets.is_empty());
    ns.stop.cancel();
    ns.task.await.unwrap();
}

#[tokio::test]
async fn a_big_fleet_comes_whole_through_the_shards() {
    let ns = nameserver().await;
    // More than one SRV answer holds (~900 over TCP): only the shards give them all.
    register(&ns, 1200).await;
    let hosts = HostCache::new();
    let sd = DnsSd::new(options(vec![ns.dns]), hosts.clone()).unwrap();
    let group = sd
        .refresh_name("_exporter._tcp.heimdall.internal")
        .await
        .unwrap();
    assert_eq!(group.targets.len(), 1200);
    assert_eq!(hosts.len(), 1200, "every target has an address");
    ns.stop.cancel();
    ns.task.await.unwrap();
}

#[tokio::test]
async fn a_dead_nameserver_is_skipped_and_all_dead_is_an_error() {
    let ns = nameserver().await;
    register(&ns, 2).await;
    // A bound socket that never answers: the first server times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap();
    let sd = DnsSd::new(options(vec![dead, ns.dns]), HostCache::new()).unwrap();
    let group = sd
        .refresh_name("_exporter._tcp.heimdall.internal")
        .await
        .unwrap();
    assert_eq!(group.targets.len(), 2);
    let only_dead = DnsSd::new(options(vec![dead]), HostCache::new()).unwrap();
    let err = only_dead
        .refresh_name("_exporter._tcp.heimdall.internal")
        .await
        .unwrap_err();
    assert!(err.contains(&dead.to_string()), "{err}");
    ns.stop.cancel();
    ns.task.await.unwrap();
}
