//! NXT_CT_FLUSH against the userspace datapath's conntrack: entries made by
//! packet-outs through `ct(commit)`, checked with `ovs-appctl
//! dpctl/dump-conntrack`.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use openflow::{Action, Ct, CtFlush, CtTuple, CtZone, PacketOut, Version};

fn conntrack(bed: &common::Bed) -> Vec<String> {
    bed.sw
        .appctl(&["dpctl/dump-conntrack"])
        .expect("dump-conntrack")
        .lines()
        .map(str::to_string)
        .collect()
}

fn has(entries: &[String], zone: u16, sport: u16) -> bool {
    let (z, p) = (format!("zone={zone}"), format!("sport={sport}"));
    entries.iter().any(|l| {
        let mut tokens = l.split([',', '(', ')']);
        let first_sport = tokens.clone().find(|t| t.starts_with("sport="));
        tokens.any(|t| t == z) && first_sport == Some(p.as_str())
    })
}

async fn commit(
    c: &openflow::Client,
    zone: u16,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
) {
    let pkt = common::ipv4_packet(
        proto,
        Ipv4Addr::from(src),
        Ipv4Addr::from(dst),
        sport,
        dport,
    );
    let ct = Action::Ct(Ct {
        commit: true,
        zone: CtZone::Imm(zone),
        ..Ct::default()
    });
    c.packet_out(PacketOut::new(pkt, vec![ct]))
        .await
        .expect("packet-out");
}

async fn flush_scenario(v: Version) {
    let bed = common::switch(&format!("ct{}", v.wire()));
    let (c, _ev) = bed.connect(v).await;
    commit(&c, 5, 6, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80).await;
    commit(&c, 5, 6, [10, 0, 0, 1], [10, 0, 0, 2], 1001, 80).await;
    commit(&c, 6, 17, [10, 0, 0, 3], [10, 0, 0, 4], 2000, 53).await;
    commit(&c, 6, 17, [10, 0, 0, 3], [10, 0, 0, 4], 2001, 53).await;
    commit(&c, 6, 17, [10, 0, 0, 3], [10, 0, 0, 4], 2002, 53).await;
    let all = |bed: &common::Bed| conntrack(bed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while all(&bed).len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "entries: {:#?}",
            all(&bed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = all(&bed);
    for (z, p) in [(5, 1000), (5, 1001), (6, 2000), (6, 2001), (6, 2002)] {
        assert!(has(&e, z, p), "{v:?}: zone {z} sport {p} missing: {e:#?}");
    }

    // By zone: zone 5 goes, zone 6 stays. The barrier behind the flush
    // means it has been processed when ct_flush returns.
    c.ct_flush(CtFlush::zone(5)).await.unwrap();
    let e = all(&bed);
    assert!(
        !has(&e, 5, 1000) && !has(&e, 5, 1001),
        "{v:?}: zone 5 not flushed: {e:#?}"
    );
    assert_eq!(e.len(), 3, "{v:?}: {e:#?}");

    // By original 5-tuple in zone 6.
    c.ct_flush(CtFlush {
        zone: Some(6),
        ip_proto: 17,
        orig: CtTuple {
            src: Some(Ipv4Addr::new(10, 0, 0, 3).into()),
            dst: Some(Ipv4Addr::new(10, 0, 0, 4).into()),
            src_port: 2000,
            dst_port: 53,
            ..CtTuple::default()
        },
        reply: CtTuple::default(),
    })
    .await
    .unwrap();
    let e = all(&bed);
    assert!(!has(&e, 6, 2000), "{v:?}: orig tuple not flushed: {e:#?}");
    assert!(
        has(&e, 6, 2001) && has(&e, 6, 2002),
        "{v:?}: flushed too much: {e:#?}"
    );

    // By reply tuple.
    c.ct_flush(CtFlush {
        zone: Some(6),
        ip_proto: 17,
        orig: CtTuple::default(),
        reply: CtTuple {
            src: Some(Ipv4Addr::new(10, 0, 0, 4).into()),
            dst: Some(Ipv4Addr::new(10, 0, 0, 3).into()),
            src_port: 53,
            dst_port: 2001,
            ..CtTuple::default()
        },
    })
    .await
    .unwrap();
    let e = all(&bed);
    assert!(!has(&e, 6, 2001), "{v:?}: reply tuple not flushed: {e:#?}");
    assert!(has(&e, 6, 2002), "{v:?}: flushed too much: {e:#?}");
    assert_eq!(e.len(), 1, "{v:?}: {e:#?}");
}

#[tokio::test]
async fn ct_flush_by_zone_and_tuple_openflow13() {
    flush_scenario(Version::V1_3).await;
}

#[tokio::test]
async fn ct_flush_by_zone_and_tuple_openflow15() {
    flush_scenario(Version::V1_5).await;
}
