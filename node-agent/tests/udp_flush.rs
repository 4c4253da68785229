//! The conntrack flush of a removed UDP backend against a real
//! `ovs-vswitchd` (userspace conntrack): entries committed by packet-outs
//! through `ct(commit[,nat])` in OVN-style zones named in the bridge's
//! `external_ids`, flushed by [`Flusher`], checked with `ovs-appctl
//! dpctl/dump-conntrack`.

// The switch-in-a-directory and packet helpers of the openflow crate's
// tests, shared rather than written twice.
#[path = "../../openflow/tests/common/mod.rs"]
mod ofbed;

use std::net::Ipv4Addr;
use std::time::Duration;

use openflow::{Action, Ct, CtZone, Nat, NatAddrs, NatKind, PacketOut, Version};
use switchyard_node::ovs::Ovs;
use switchyard_node::udp_flush::run::{Config, Flusher};
use switchyard_node::udp_flush::{Backend, Proto};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const GONE: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);

/// One committed connection: zone, protocol, client port (unique per
/// connection: how it is found again), destination, and the DNAT target.
struct Conn {
    zone: u16,
    proto: u8,
    sport: u16,
    dst: (Ipv4Addr, u16),
    dnat: Option<(Ipv4Addr, u16)>,
    flushed: bool,
}

async fn commit(c: &openflow::Client, conn: &Conn) {
    let pkt = ofbed::ipv4_packet(conn.proto, CLIENT, conn.dst.0, conn.sport, conn.dst.1);
    let actions = conn
        .dnat
        .map(|(ip, port)| {
            vec![Action::Nat(Nat {
                kind: Some(NatKind::Dst),
                addrs: Some(NatAddrs::V4 { min: ip, max: None }),
                ports: Some((port, port)),
                ..Nat::default()
            })]
        })
        .unwrap_or_default();
    let ct = Action::Ct(Ct {
        commit: true,
        zone: CtZone::Imm(conn.zone),
        actions,
        ..Ct::default()
    });
    c.packet_out(PacketOut::new(pkt, vec![ct]))
        .await
        .expect("packet-out");
}

/// (zone, original source port) of every entry.
fn entries(bed: &ofbed::Bed) -> Vec<(u16, u16)> {
    let text = bed
        .sw
        .appctl(&["dpctl/dump-conntrack"])
        .expect("dump-conntrack");
    text.lines()
        .filter_map(|l| {
            let tokens: Vec<&str> = l.split([',', '(', ')']).collect();
            let sport = tokens.iter().find_map(|t| t.strip_prefix("sport="))?;
            // Zone 0 is not printed.
            let zone = tokens
                .iter()
                .find_map(|t| t.strip_prefix("zone="))
                .unwrap_or("0");
            Some((zone.parse().ok()?, sport.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn flushes_the_removed_backend_in_every_ovn_zone_and_nothing_else() {
    let bed = ofbed::switch("udpfl");
    let bridge = bed.sw.bridge().to_string();
    // The zones ovn-controller would have recorded: a pod's port and a
    // gateway router's DNAT zone. Zone 7 is nobody's.
    bed.sw
        .vsctl(&[
            "set",
            "Bridge",
            &bridge,
            "external_ids:ct-zone-client-pod=5",
            "external_ids:ct-zone-7f1e-dnat=6",
        ])
        .expect("ovs-vsctl");
    let (c, _ev) = bed.connect(Version::V1_3).await;
    let udp = 17;
    let conns = [
        // Load-balanced to the gone backend: in the pod's zone, in the
        // router's zone, and in the default zone.
        (5, udp, 5000, (VIP, 53), Some((GONE, 5353)), true),
        (6, udp, 5001, (VIP, 53), Some((GONE, 5353)), true),
        (0, udp, 5002, (VIP, 53), Some((GONE, 5353)), true),
        // Straight to the gone backend.
        (5, udp, 5003, (GONE, 5353), None, true),
        // Another backend, another port of the same address, TCP to the
        // same address and port, a zone OVN does not name: all stay.
        (5, udp, 5004, (VIP, 53), Some((OTHER, 5353)), false),
        (5, udp, 5005, (VIP, 53), Some((GONE, 9999)), false),
        (5, 6, 5006, (GONE, 5353), None, false),
        (7, udp, 5007, (GONE, 5353), None, false),
    ]
    .map(|(zone, proto, sport, dst, dnat, flushed)| Conn {
        zone,
        proto,
        sport,
        dst,
        dnat,
        flushed,
    });
    for conn in &conns {
        commit(&c, conn).await;
    }
    let want = conns.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while entries(&bed).len() < want {
        assert!(
            std::time::Instant::now() < deadline,
            "not every entry committed: {}",
            bed.sw.appctl(&["dpctl/dump-conntrack"]).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = entries(&bed);
    for conn in &conns {
        assert!(
            before.contains(&(conn.zone, conn.sport)),
            "zone {} sport {} not committed: {before:?}",
            conn.zone,
            conn.sport
        );
    }

    let ovs = Ovs::connect(&bed.sw.ovs_remote(), Duration::from_secs(10))
        .await
        .expect("OVSDB");
    let cfg = Config {
        bridge: bridge.clone(),
        ovs_rundir: bed.sw.mgmt_path().parent().expect("rundir").to_path_buf(),
    };
    let mut flusher = Flusher::new(cfg, ovs);
    ofbed::eventually(Duration::from_secs(10), "the zones in the replica", || {
        let n = flusher.zones().len();
        async move { n == 3 }
    })
    .await;
    let gone = Backend {
        proto: Proto::Udp,
        addr: (GONE, 5353).into(),
    };
    // One message per zone (0, 5, 6); the barrier behind them means they
    // were applied when flush returns.
    assert_eq!(flusher.flush(&[gone]).await, Ok(3));
    let after = entries(&bed);
    for conn in &conns {
        let present = after.contains(&(conn.zone, conn.sport));
        assert_eq!(
            present, !conn.flushed,
            "zone {} sport {}: {after:?}",
            conn.zone, conn.sport
        );
    }
    // Again: nothing left to flush, no error.
    assert_eq!(flusher.flush(&[gone]).await, Ok(3));
    assert_eq!(entries(&bed), after);
}
