//! Bundles, groups, packet-out, statistics and port status against a real
//! ovs-vswitchd.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openflow::{
    port, Action, Bucket, Error, ErrorType, Event, FlowMod, FlowStatsRequest, GroupMod, GroupType,
    Match, PacketOut, PortReason, Version,
};

const BOTH: [Version; 2] = [Version::V1_3, Version::V1_5];

fn flows(cookie: u64, n: u16) -> Vec<FlowMod> {
    (0..n)
        .map(|i| {
            FlowMod::add(
                Match::new()
                    .ip()
                    .ipv4_dst(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
            )
            .table(0)
            .priority(100)
            .cookie(cookie)
            .actions(vec![Action::output(u32::from(i % 4) + 1)])
        })
        .collect()
}

fn texts(fms: &[FlowMod]) -> Vec<String> {
    let mut v: Vec<String> = fms
        .iter()
        .map(|f| f.to_flow_stats().to_ofctl(false))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn bundle_replaces_flows_and_a_bad_bundle_changes_nothing() {
    let bed = common::switch("bundle");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        c.flow_mods(flows(0xa, 5)).await.unwrap();
        let b = flows(0xb, 3);
        c.replace_flows(b.clone()).await.unwrap();
        assert_eq!(common::our_flows(&c).await, texts(&b), "{v:?}");
        assert_eq!(bed.ofctl_flows(v), texts(&b));

        // One bad flow (missing prerequisite) among good ones: rejected,
        // named, and nothing changes.
        let mut bad = flows(0xc, 4);
        bad.insert(
            2,
            FlowMod::add(Match::new().udp_dst(53))
                .priority(7)
                .cookie(0xc),
        );
        let err = c
            .replace_flows(bad)
            .await
            .expect_err("bad bundle must fail");
        let failures = err.rejections();
        assert_eq!(failures.len(), 1, "{err}");
        assert!(
            failures[0]
                .request
                .contains("BUNDLE_ADD_MESSAGE(FLOW_MOD add"),
            "{err}"
        );
        assert!(failures[0].request.contains("udp_dst=53"), "{err}");
        assert_eq!(failures[0].error.kind(), ErrorType::BadMatch);
        assert_eq!(
            common::our_flows(&c).await,
            texts(&b),
            "{v:?}: bad bundle changed flows"
        );

        // Open, add, discard: nothing changes either.
        let mut bundle = c.open_bundle().await.unwrap();
        bundle
            .add_flow_mods(vec![FlowMod::delete_all()])
            .await
            .unwrap();
        bundle.discard().await.unwrap();
        assert_eq!(common::our_flows(&c).await, texts(&b));
    }
}

/// A second connection dumping flows while a bundle swaps 2000 flows for
/// 2000 others never sees a mix.
#[tokio::test]
async fn bundle_commit_is_atomic_to_an_observer() {
    let bed = common::switch("atomic");
    let (c, _ev) = bed.connect(Version::V1_5).await;
    let (watcher, _ev2) = bed.connect(Version::V1_3).await;
    c.replace_flows(flows(1, 2000)).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let seen = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut observations = Vec::new();
            while !done.load(Ordering::Relaxed) || observations.is_empty() {
                let dump = watcher.dump_flows(FlowStatsRequest::all()).await.unwrap();
                let old = dump.iter().filter(|f| f.cookie == 1).count();
                let new = dump.iter().filter(|f| f.cookie == 2).count();
                observations.push((old, new));
            }
            observations
        })
    };
    for round in 0..3u64 {
        c.replace_flows(flows(2 - (round % 2), 2000)).await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let seen = seen.await.unwrap();
    for (old, new) in &seen {
        assert!(
            (*old == 2000 && *new == 0) || (*old == 0 && *new == 2000),
            "observer saw a mixed table: {old} old + {new} new"
        );
    }
}

#[tokio::test]
async fn group_mods_of_every_type() {
    let bed = common::switch("groups");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        c.group_mod(GroupMod::delete(openflow::ALL_GROUPS))
            .await
            .unwrap();
        let two = || {
            vec![
                Bucket::new(vec![Action::output(1)]),
                Bucket::new(vec![Action::output(2)]),
            ]
        };
        c.group_mod(GroupMod::add(1, GroupType::All, two()))
            .await
            .unwrap();
        c.group_mod(GroupMod::add(
            2,
            GroupType::Select,
            vec![
                Bucket::new(vec![Action::output(1)]).weight(10),
                Bucket::new(vec![Action::output(2)]).weight(20),
            ],
        ))
        .await
        .unwrap();
        c.group_mod(GroupMod::add(
            3,
            GroupType::Indirect,
            vec![Bucket::new(vec![Action::output(3)])],
        ))
        .await
        .unwrap();
        c.group_mod(GroupMod::add(
            4,
            GroupType::FastFailover,
            vec![
                Bucket::new(vec![Action::output(1)]).watch_port(1),
                Bucket::new(vec![Action::output(2)]).watch_port(2),
            ],
        ))
        .await
        .unwrap();
        let dump = bed.ofctl(&["-O", "OpenFlow15", "dump-groups"]);
        for want in [
            "group_id=1,type=all,bucket=bucket_id:0,actions=output:1,bucket=bucket_id:1,actions=output:2",
            "group_id=2,type=select,bucket=bucket_id:0,weight:10,actions=output:1,bucket=bucket_id:1,weight:20,actions=output:2",
            "group_id=3,type=indirect,bucket=bucket_id:0,actions=output:3",
            "group_id=4,type=ff,bucket=bucket_id:0,watch_port:1,actions=output:1,bucket=bucket_id:1,watch_port:2,actions=output:2",
        ] {
            assert!(dump.contains(want), "{v:?}: {want} missing from\n{dump}");
        }
        // A flow may point at a group; adding an existing group is a typed error.
        c.flow_mod(
            FlowMod::add(Match::new())
                .table(5)
                .actions(vec![Action::Group(2)]),
        )
        .await
        .unwrap();
        let err = c
            .group_mod(GroupMod::add(1, GroupType::All, two()))
            .await
            .unwrap_err();
        assert_eq!(
            err.rejections()[0].error.kind(),
            ErrorType::GroupModFailed,
            "{err}"
        );
        assert_eq!(
            err.rejections()[0].error.code_name(),
            "OFPGMFC_GROUP_EXISTS"
        );
        // Modify, then delete.
        c.group_mod(GroupMod::modify(
            3,
            GroupType::Indirect,
            vec![Bucket::new(vec![Action::output(4)])],
        ))
        .await
        .unwrap();
        let dump = bed.ofctl(&["-O", "OpenFlow15", "dump-groups"]);
        assert!(
            dump.contains("group_id=3,type=indirect,bucket=bucket_id:0,actions=output:4"),
            "{dump}"
        );
        c.group_mod(GroupMod::delete(openflow::ALL_GROUPS))
            .await
            .unwrap();
        let dump = bed.ofctl(&["-O", "OpenFlow15", "dump-groups"]);
        assert!(!dump.contains("group_id="), "{dump}");
        c.flow_mod(FlowMod::delete_all()).await.unwrap();
    }
}

#[tokio::test]
async fn packet_out_moves_flow_aggregate_and_port_counters() {
    let bed = common::switch("pktout");
    let p1 = bed.sw.add_internal_port("p1").unwrap();
    let up = bed.sw.exec(&["ip", "link", "set", "p1", "up"]).unwrap();
    assert!(up.status.success(), "{up:?}");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        let cookie = 0x77 + u64::from(v.wire());
        let m = Match::new()
            .udp()
            .ipv4_dst(Ipv4Addr::new(10, 9, 9, 9))
            .udp_dst(4789);
        c.replace_flows(vec![FlowMod::add(m)
            .priority(100)
            .cookie(cookie)
            .actions(vec![Action::output(p1)])])
            .await
            .unwrap();
        let before = c.port_stats(p1).await.unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].port_no, p1);
        let pkt = common::ipv4_packet(
            17,
            Ipv4Addr::new(10, 9, 9, 1),
            Ipv4Addr::new(10, 9, 9, 9),
            1234,
            4789,
        );
        for _ in 0..3 {
            c.packet_out(PacketOut::new(
                pkt.clone(),
                vec![Action::output(port::TABLE)],
            ))
            .await
            .unwrap();
        }
        let req = FlowStatsRequest {
            cookie,
            cookie_mask: u64::MAX,
            ..FlowStatsRequest::all()
        };
        common::eventually(Duration::from_secs(15), "flow counters", || {
            let c = c.clone();
            let req = req.clone();
            async move {
                let f = c.dump_flows(req).await.unwrap();
                f.len() == 1 && f[0].packet_count == 3
            }
        })
        .await;
        let f = c.dump_flows(req.clone()).await.unwrap();
        assert_eq!(f[0].byte_count, 3 * pkt.len() as u64);
        let agg = c.aggregate(req).await.unwrap();
        assert_eq!(
            (agg.flow_count, agg.packet_count, agg.byte_count),
            (1, 3, 3 * pkt.len() as u64)
        );
        let text = bed.ofctl(&[
            "-O",
            v.ofctl_name(),
            "dump-flows",
            &format!("cookie={cookie:#x}/-1"),
        ]);
        assert!(
            text.contains("n_packets=3,") && f[0].to_ofctl(true).contains("n_packets=3,"),
            "{text}"
        );
        common::eventually(Duration::from_secs(15), "port tx counters", || {
            let c = c.clone();
            let before = before[0].tx_packets;
            async move { c.port_stats(p1).await.unwrap()[0].tx_packets >= before + 3 }
        })
        .await;
        let descs = c.port_descs().await.unwrap();
        assert!(
            descs.iter().any(|d| d.name == "p1" && d.port_no == p1),
            "{descs:?}"
        );
        assert!(descs
            .iter()
            .any(|d| d.port_no == port::LOCAL && d.name == "br0"));
    }
}

#[tokio::test]
async fn packet_out_with_bad_port_is_rejected() {
    let bed = common::switch("badpo");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        let err = c
            .packet_out(
                PacketOut::new(vec![0; 60], vec![Action::output(1)]).in_port(0xffff_ff00 - 1),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{err}");
        assert!(
            err.rejections()[0].request.starts_with("PACKET_OUT"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn port_status_is_delivered_on_port_add_and_delete() {
    let bed = common::switch("portst");
    for (i, v) in BOTH.into_iter().enumerate() {
        let (_c, mut events) = bed.connect(v).await;
        let name = format!("pp{i}");
        let no = bed.sw.add_internal_port(&name).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut got = None;
        while got.is_none() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::PortStatus(ps))) if ps.desc.name == name => got = Some(ps),
                Ok(Some(_)) => {}
                Ok(None) => panic!("events ended"),
                Err(_) => panic!("{v:?}: no port status for {name}"),
            }
        }
        let ps = got.unwrap();
        assert_eq!(ps.reason, PortReason::Add);
        assert_eq!(ps.desc.port_no, no);
        bed.sw.vsctl(&["del-port", &name]).unwrap();
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::PortStatus(ps)))
                    if ps.desc.name == name && ps.reason == PortReason::Delete =>
                {
                    break
                }
                Ok(Some(_)) => {}
                other => panic!("{v:?}: no delete status for {name}: {other:?}"),
            }
        }
    }
}

/// A flow that fails only when the bundle is committed (an overlap check)
/// makes the commit fail; the error names the bundled flow-mod, and nothing
/// changes.
#[tokio::test]
async fn commit_time_failure_names_the_bundled_flow() {
    let bed = common::switch("commitfail");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        let keep = flows(0xd, 2);
        c.replace_flows(keep.clone()).await.unwrap();
        // Overlaps the kept flows (same priority, a packet can match both).
        let overlapping = FlowMod::add(Match::new().ip().ipv4_src(Ipv4Addr::new(1, 2, 3, 4)))
            .priority(100)
            .cookie(0xe)
            .flags(openflow::flow_flags::CHECK_OVERLAP)
            .actions(vec![Action::output(9)]);
        let mut bundle = c.open_bundle().await.unwrap();
        bundle
            .add_flow_mods(vec![
                FlowMod::add(Match::new().ip().ipv4_dst(Ipv4Addr::new(10, 9, 0, 0)))
                    .priority(100)
                    .cookie(0xe),
                overlapping,
            ])
            .await
            .expect("adds are valid on their own");
        let err = bundle
            .commit()
            .await
            .expect_err("overlap must fail the commit");
        let failures = err.rejections();
        assert!(
            failures
                .iter()
                .any(|r| r.error.kind() == ErrorType::BundleFailed
                    && r.request.starts_with("BUNDLE_CONTROL CommitRequest")
                    && r.error.code_name().ends_with("_MSG_FAILED")),
            "{v:?}: {err}: {failures:#?}"
        );
        assert!(
            failures
                .iter()
                .any(|r| r.error.kind() == ErrorType::FlowModFailed
                    && r.error.code_name() == "OFPFMFC_OVERLAP"
                    && r.request.contains("check_overlap")
                    && r.request.starts_with("BUNDLE_ADD_MESSAGE(FLOW_MOD add")),
            "{v:?}: {err}\n{failures:#?}"
        );
        assert_eq!(
            common::our_flows(&c).await,
            texts(&keep),
            "{v:?}: failed commit changed flows"
        );
    }
}

/// `send` does not wait; an error for it arrives as an event with its xid.
#[tokio::test]
async fn errors_for_sent_messages_arrive_as_events() {
    let bed = common::switch("sendev");
    let (c, mut events) = bed.connect(Version::V1_5).await;
    let bad = FlowMod::add(Match::new().udp_dst(1)).priority(1);
    let xid = c.send(openflow::Message::FlowMod(bad)).await.unwrap();
    c.barrier().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Error { xid: x, error })) => {
                assert_eq!(x, xid);
                assert_eq!(error.kind(), ErrorType::BadMatch);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no error event: {other:?}"),
        }
    }
}
