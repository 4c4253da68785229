//! Flow statistics of one table, and what happens to a flow's counters
//! when it is modified, added over itself, or deleted and re-added,
//! against a real ovs-vswitchd. Counter consumers (the node agent's per-policy counters)
//! build on exactly these facts.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use openflow::{port, Action, FlowMod, FlowStats, FlowStatsRequest, Match, PacketOut, Version};

const BOTH: [Version; 2] = [Version::V1_3, Version::V1_5];

fn m() -> Match {
    Match::new()
        .udp()
        .ipv4_dst(Ipv4Addr::new(10, 9, 9, 9))
        .udp_dst(4789)
}

async fn one(c: &openflow::Client, table: u8) -> FlowStats {
    let f = c.dump_flows(FlowStatsRequest::table(table)).await.unwrap();
    assert_eq!(f.len(), 1, "table {table}: {f:?}");
    assert_eq!(f[0].table_id, table);
    f.into_iter().next().unwrap()
}

#[tokio::test]
async fn table_stats_and_counters_across_replacement() {
    let bed = common::switch("stats");
    let p1 = bed.sw.add_internal_port("p1").unwrap();
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        // Table 0 hands the packet to tables 3 and 5 (as ovn-controller's
        // pipeline stages follow one another).
        let t3 = FlowMod::add(m()).table(3).priority(100).cookie(0x33);
        let t5 = FlowMod::add(m())
            .table(5)
            .priority(100)
            .cookie(0x55)
            .actions(vec![Action::output(p1)]);
        c.replace_flows(vec![
            FlowMod::add(m())
                .priority(100)
                .cookie(0x11)
                .actions(vec![Action::resubmit(3), Action::resubmit(5)]),
            t3.clone(),
            t5.clone(),
        ])
        .await
        .unwrap();
        let pkt = common::ipv4_packet(
            17,
            Ipv4Addr::new(10, 9, 9, 1),
            Ipv4Addr::new(10, 9, 9, 9),
            1234,
            4789,
        );
        let send = |n: usize| {
            let (c, pkt) = (c.clone(), pkt.clone());
            async move {
                for _ in 0..n {
                    c.packet_out(PacketOut::new(
                        pkt.clone(),
                        vec![Action::output(port::TABLE)],
                    ))
                    .await
                    .unwrap();
                }
            }
        };
        let counted = |table: u8, n: u64| {
            let c = c.clone();
            async move {
                common::eventually(Duration::from_secs(15), "flow counters", || {
                    let c = c.clone();
                    async move { one(&c, table).await.packet_count == n }
                })
                .await;
            }
        };
        send(3).await;
        counted(3, 3).await;
        // One table's request answers with that table's flows only.
        let f3 = one(&c, 3).await;
        assert_eq!((f3.cookie, f3.byte_count), (0x33, 3 * pkt.len() as u64));
        assert_eq!(one(&c, 5).await.cookie, 0x55);
        let all = c.dump_flows(FlowStatsRequest::all()).await.unwrap();
        assert_eq!(all.len(), 3, "{v:?}");

        // Modified (actions changed): counters and age stay.
        c.flow_mod(
            FlowMod::modify_strict(m())
                .table(3)
                .priority(100)
                .actions(vec![Action::resubmit(4)]),
        )
        .await
        .unwrap();
        let modified = one(&c, 3).await;
        assert_eq!(modified.packet_count, 3, "{v:?}");
        assert!(
            (modified.duration_sec, modified.duration_nsec) >= (f3.duration_sec, f3.duration_nsec),
            "{v:?}: {f3:?} then {modified:?}"
        );

        // Added again over itself: OVS carries the counters over to the
        // new flow, whose age restarts (so age says nothing of counters).
        c.flow_mod(t3.clone()).await.unwrap();
        let readded = one(&c, 3).await;
        assert_eq!(readded.packet_count, 3, "{v:?}");
        assert_eq!(readded.byte_count, f3.byte_count, "{v:?}");
        assert!(
            (readded.duration_sec, readded.duration_nsec)
                < (modified.duration_sec, modified.duration_nsec),
            "{v:?}: {modified:?} then {readded:?}"
        );

        // Deleted and added: a new flow, from zero (the counters go
        // backwards).
        send(2).await;
        counted(3, 5).await;
        c.flow_mod(FlowMod::delete_strict(m()).table(3).priority(100))
            .await
            .unwrap();
        assert!(c
            .dump_flows(FlowStatsRequest::table(3))
            .await
            .unwrap()
            .is_empty());
        c.flow_mod(t3).await.unwrap();
        assert_eq!(one(&c, 3).await.packet_count, 0, "{v:?}");
        c.flow_mod(FlowMod::delete_all()).await.unwrap();
    }
}
