//! What DNS clients see after registrations over HTTP.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{self, ZONE, assert_rcode, exporter, soa_serial, srv_targets};

const SRV: &str = "_exporter._tcp.heimdall.internal.";

async fn two_exporters() -> harness::Running {
    let ns = harness::start(&[]).await;
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9090))
        .await;
    ns.register("exporter", "web-2", exporter("10.0.0.2", 9100))
        .await;
    ns
}

#[tokio::test]
async fn srv_lists_both_exporters_with_ports_targets_and_glue() {
    let ns = two_exporters().await;
    for m in [
        ns.query(SRV, RecordType::SRV).await,
        ns.query_tcp(SRV, RecordType::SRV).await,
    ] {
        assert_rcode(&m, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "authoritative answer");
        assert_eq!(
            srv_targets(&m),
            vec![
                (9090, "web-1.heimdall.internal.".to_owned()),
                (9100, "web-2.heimdall.internal.".to_owned()),
            ]
        );
        // Every target's address rides along (hickory's catalog glued only the first one).
        let mut glue: Vec<String> = m
            .additionals
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(format!("{} {}", r.name, a.0)),
                _ => None,
            })
            .collect();
        glue.sort();
        assert_eq!(
            glue,
            vec![
                "web-1.heimdall.internal. 10.0.0.1",
                "web-2.heimdall.internal. 10.0.0.2"
            ]
        );
    }
    for (name, addr) in [("web-1", "10.0.0.1"), ("web-2", "10.0.0.2")] {
        let m = ns.query(&format!("{name}.{ZONE}"), RecordType::A).await;
        assert!(matches!(&m.answers[..], [r] if r.data == RData::A(addr.parse().unwrap())));
    }
    ns.stop().await;
}

#[tokio::test]
async fn a_aaaa_txt_and_case_insensitive_names() {
    let ns = two_exporters().await;
    ns.register("exporter", "v6-host", exporter("fd00::7", 9090))
        .await;
    let m = ns.query("WEB-1.Heimdall.Internal.", RecordType::A).await;
    assert_rcode(&m, ResponseCode::NoError);
    assert!(matches!(&m.answers[..], [r] if r.data == RData::A("10.0.0.1".parse().unwrap())));

    let m = ns
        .query("v6-host.heimdall.internal.", RecordType::AAAA)
        .await;
    let [r] = &m.answers[..] else {
        panic!("one AAAA: {m:?}")
    };
    assert!(matches!(&r.data, RData::AAAA(a) if a.0.to_string() == "fd00::7"));

    let m = ns.query("web-2.heimdall.internal.", RecordType::TXT).await;
    let [r] = &m.answers[..] else {
        panic!("one TXT: {m:?}")
    };
    let RData::TXT(txt) = &r.data else {
        panic!("TXT: {r:?}")
    };
    let strings: Vec<String> = txt
        .txt_data
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    assert_eq!(strings, vec!["env=test", "rack=r1"]);

    // The apex and the nameserver's own name.
    let m = ns.query(ZONE, RecordType::NS).await;
    assert!(matches!(&m.answers[..], [r] if r.data.to_string() == "ns.heimdall.internal."));
    let m = ns.query("ns.heimdall.internal.", RecordType::A).await;
    assert!(matches!(&m.answers[..], [r] if r.data == RData::A("127.0.0.1".parse().unwrap())));
    ns.stop().await;
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa() {
    let ns = two_exporters().await;
    let m = ns.query("nope.heimdall.internal.", RecordType::A).await;
    assert_rcode(&m, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    assert!(soa_serial(&m).is_some(), "SOA in authority: {m:?}");

    // The name exists with an A record, not an AAAA: NODATA is NOERROR with no answers.
    let m = ns.query("web-1.heimdall.internal.", RecordType::AAAA).await;
    assert_rcode(&m, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(soa_serial(&m).is_some(), "SOA in authority: {m:?}");

    // A zone we do not serve.
    let m = ns.query("example.com.", RecordType::A).await;
    assert_rcode(&m, ResponseCode::Refused);
    ns.stop().await;
}

#[tokio::test]
async fn delete_removes_from_srv_and_bumps_serial() {
    let ns = two_exporters().await;
    let before = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    let r = ns
        .client
        .delete(ns.url("/v1/services/exporter/instances/web-1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 204);
    let m = ns.query(SRV, RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![(9100, "web-2.heimdall.internal.".to_owned())]
    );
    let m = ns.query("web-1.heimdall.internal.", RecordType::A).await;
    assert_rcode(&m, ResponseCode::NXDomain);
    let after = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    assert_eq!(after, before.wrapping_add(1));

    // Deleting the last instance leaves the service name NXDOMAIN.
    let r = ns
        .client
        .delete(ns.url("/v1/services/exporter/instances/web-2"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 204);
    assert_rcode(
        &ns.query(SRV, RecordType::SRV).await,
        ResponseCode::NXDomain,
    );
    ns.stop().await;
}

#[tokio::test]
async fn serial_increases_on_change_not_on_renewal() {
    let ns = harness::start(&[]).await;
    let s0 = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9090))
        .await;
    let s1 = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    assert_eq!(s1, s0.wrapping_add(1));
    // Same data again: a lease renewal does not touch the zone.
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9090))
        .await;
    let s2 = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    assert_eq!(s2, s1);
    ns.register("exporter", "web-1", exporter("10.0.0.1", 9091))
        .await;
    let s3 = soa_serial(&ns.query(ZONE, RecordType::SOA).await).expect("serial");
    assert_eq!(s3, s1.wrapping_add(1));
    let listed = ns.get_json("/v1/services").await;
    assert_eq!(listed["serial"], s3);
    ns.stop().await;
}

#[tokio::test]
async fn lease_expiry_removes_the_instance() {
    let ns = two_exporters().await;
    let mut short = exporter("10.0.0.3", 9090);
    short["ttl_seconds"] = 1.into();
    ns.register("exporter", "web-3", short).await;
    assert_eq!(srv_targets(&ns.query(SRV, RecordType::SRV).await).len(), 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = ns.query("web-3.heimdall.internal.", RecordType::A).await;
        if m.metadata.response_code == ResponseCode::NXDomain {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-3 still there after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = ns.query(SRV, RecordType::SRV).await;
    assert_eq!(srv_targets(&m).len(), 2, "the permanent ones stay");
    let listed = ns.get_json("/v1/services").await;
    assert_eq!(
        listed["services"]["exporter"].as_array().map(Vec::len),
        Some(2)
    );
    ns.stop().await;
}
