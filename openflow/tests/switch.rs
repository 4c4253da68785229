//! Against a real ovs-vswitchd: negotiation, flow-mods, errors.

mod common;

use std::net::Ipv4Addr;

use openflow::{
    flow_flags, Action, Client, ClientConfig, Error, ErrorType, FlowMod, Match, Version,
};

const BOTH: [Version; 2] = [Version::V1_3, Version::V1_5];

#[tokio::test]
async fn negotiates_each_version_and_reads_features() {
    let bed = common::switch("nego");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        assert_eq!(c.version(), v);
        let f = c.features();
        assert!(f.n_tables >= 200, "OVS has 254 tables, got {}", f.n_tables);
        assert_ne!(f.datapath_id, 0);
        c.echo().await.expect("echo");
        c.barrier().await.expect("barrier");
    }
    // Offering both picks the highest.
    let cfg = ClientConfig::new(&bed.sw.mgmt_remote()).unwrap();
    let (c, _ev) = Client::connect(cfg).await.unwrap();
    assert_eq!(c.version(), Version::V1_5);
}

fn sample(i: u16) -> FlowMod {
    FlowMod::add(
        Match::new()
            .ip()
            .ipv4_dst_prefix(Ipv4Addr::new(10, i as u8, 0, 0), 16),
    )
    .table(1)
    .priority(100 + i)
    .cookie(0x100 + u64::from(i % 2))
    .actions(vec![Action::output(u32::from(i) + 1)])
}

#[tokio::test]
async fn add_modify_delete_match_ovs_ofctl() {
    let bed = common::switch("flows");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        c.flow_mod(FlowMod::delete_all()).await.unwrap();
        let flows: Vec<FlowMod> = (0..6).map(sample).collect();
        c.flow_mods(flows.clone()).await.unwrap();
        let mut want: Vec<String> = flows
            .iter()
            .map(|f| f.to_flow_stats().to_ofctl(false))
            .collect();
        want.sort();
        assert_eq!(common::our_flows(&c).await, want);
        assert_eq!(bed.ofctl_flows(v), want, "ovs-ofctl dump-flows differs");

        // modify (non-strict) by cookie: only cookie 0x101 flows change.
        c.flow_mod(
            FlowMod::modify(Match::new())
                .table(1)
                .cookie_mask(0x101, u64::MAX)
                .actions(vec![Action::local()]),
        )
        .await
        .unwrap();
        let ours = common::our_flows(&c).await;
        assert_eq!(
            ours.iter().filter(|l| l.ends_with("actions=LOCAL")).count(),
            3
        );
        assert!(ours
            .iter()
            .filter(|l| l.contains("cookie=0x101"))
            .all(|l| l.ends_with("LOCAL")));
        assert_eq!(bed.ofctl_flows(v), ours);

        // modify_strict touches exactly one flow.
        let one = sample(0);
        c.flow_mod(
            FlowMod::modify_strict(one.match_.clone())
                .table(1)
                .priority(one.priority)
                .actions(vec![Action::normal()]),
        )
        .await
        .unwrap();
        let ours = common::our_flows(&c).await;
        assert_eq!(
            ours.iter()
                .filter(|l| l.ends_with("actions=NORMAL"))
                .count(),
            1
        );
        assert_eq!(bed.ofctl_flows(v), ours);

        // delete_strict with the wrong priority deletes nothing; with the
        // right one, exactly that flow.
        c.flow_mod(
            FlowMod::delete_strict(one.match_.clone())
                .table(1)
                .priority(1),
        )
        .await
        .unwrap();
        assert_eq!(common::our_flows(&c).await.len(), 6);
        c.flow_mod(
            FlowMod::delete_strict(one.match_.clone())
                .table(1)
                .priority(one.priority),
        )
        .await
        .unwrap();
        assert_eq!(common::our_flows(&c).await.len(), 5);

        // delete by cookie mask: the remaining cookie 0x100 flows go.
        c.flow_mod(FlowMod::delete(Match::new()).cookie_mask(0x100, u64::MAX))
            .await
            .unwrap();
        let ours = common::our_flows(&c).await;
        assert_eq!(ours.len(), 3, "{ours:#?}");
        assert!(ours.iter().all(|l| l.contains("cookie=0x101")));
        assert_eq!(bed.ofctl_flows(v), ours);
    }
}

#[tokio::test]
async fn flow_attributes_print_like_ovs_ofctl() {
    let bed = common::switch("attrs");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        c.flow_mod(FlowMod::delete_all()).await.unwrap();
        let fm = FlowMod::add(Match::new().tcp().tcp_dst(443))
            .table(7)
            .priority(7)
            .cookie(0xabc)
            .idle_timeout(300)
            .hard_timeout(600)
            .flags(flow_flags::SEND_FLOW_REM)
            .importance(if v == Version::V1_5 { 9 } else { 0 })
            .actions(vec![]);
        c.flow_mod(fm.clone()).await.unwrap();
        let ours = common::our_flows(&c).await;
        assert_eq!(ours, vec![fm.to_flow_stats().to_ofctl(false)]);
        assert_eq!(bed.ofctl_flows(v), ours);
        assert!(ours[0].ends_with("actions=drop"), "{}", ours[0]);
    }
}

#[tokio::test]
async fn bad_flow_mod_is_a_typed_error_naming_the_request() {
    let bed = common::switch("badflow");
    for v in BOTH {
        let (c, _ev) = bed.connect(v).await;
        c.flow_mod(FlowMod::delete_all()).await.unwrap();
        // tcp_dst without ip/tcp prerequisites.
        let bad = FlowMod::add(Match::new().tcp_dst(80))
            .table(3)
            .priority(33)
            .actions(vec![Action::output(1)]);
        let good = |p| FlowMod::add(Match::new().ip()).table(3).priority(p);
        let err = c
            .flow_mods(vec![good(1), bad.clone(), good(2)])
            .await
            .expect_err("prerequisite violation must fail");
        let Error::Rejected { failures } = &err else {
            panic!("want Rejected, got {err:?}");
        };
        assert_eq!(failures.len(), 1, "{failures:?}");
        let r = &failures[0];
        assert_eq!(r.error.kind(), ErrorType::BadMatch, "{err}");
        assert_eq!(r.error.code_name(), "OFPBMC_BAD_PREREQ");
        assert!(
            r.request
                .contains("FLOW_MOD add table=3, priority=33,tcp_dst=80"),
            "{}",
            r.request
        );
        let (_, mtype, xid) = r
            .error
            .failed_header()
            .expect("error data echoes the request");
        assert_eq!((mtype, xid), (14, r.xid));
        assert!(
            err.to_string()
                .contains("OFPET_BAD_MATCH/OFPBMC_BAD_PREREQ"),
            "{err}"
        );
        // The good ones around it were applied.
        assert_eq!(common::our_flows(&c).await.len(), 2);
        // The connection is still usable.
        c.barrier().await.unwrap();
    }
}

#[tokio::test]
async fn switch_going_away_closes_the_client() {
    let mut bed = common::switch("gone");
    let (c, mut events) = bed.connect(Version::V1_5).await;
    c.barrier().await.unwrap();
    bed.sw.stop();
    let reason = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(openflow::Event::Closed { reason }) => return reason,
                Some(_) => {}
                None => return String::new(),
            }
        }
    })
    .await
    .expect("no Closed event after ovs-vswitchd stopped");
    assert!(reason.contains("closed"), "{reason}");
    assert!(!c.is_connected());
    let err = c.barrier().await.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    // Connecting again fails cleanly while the switch is down.
    let cfg = ClientConfig::new(&bed.sw.mgmt_remote()).unwrap();
    assert!(Client::connect(cfg).await.is_err());
}
