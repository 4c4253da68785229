//! The aggregation, with no I/O: cookie → logical flow → ACL → series,
//! replaced and removed flows, removed policies.

use std::collections::BTreeMap;

use openflow::{FlowStats, Match};
use switchyard_api::names;

use super::aggregate::*;
use super::{PolicyCounters, Totals};

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn np_allow(policy: &str, rule: &str) -> BTreeMap<String, String> {
    ids(&[
        (names::OWNER_KIND, names::KIND_NETWORK_POLICY),
        (names::POLICY, policy),
        (names::DIRECTION, "Ingress"),
        (names::RULE, rule),
        (names::ACTION, "allow"),
    ])
}

fn series(kind: &str, ns: &str, policy: &str, rule: &str, action: &str) -> SeriesKey {
    SeriesKey {
        kind: kind.into(),
        namespace: ns.into(),
        policy: policy.into(),
        direction: "Ingress".into(),
        rule: rule.into(),
        action: action.into(),
    }
}

fn lflow(cookie: u32, table: u8, hint: Option<u32>) -> LogicalFlow {
    LogicalFlow {
        cookie,
        pipeline: "egress".into(),
        table_id: table,
        hint,
    }
}

/// An OpenFlow flow: `n` distinguishes flows of one cookie.
fn flow(cookie: u32, n: u16, packets: u64, bytes: u64, age: u32) -> FlowStats {
    FlowStats {
        table_id: 44,
        priority: 2000,
        cookie: u64::from(cookie),
        packet_count: packets,
        byte_count: bytes,
        duration_sec: age,
        match_: Match::new().udp().udp_dst(n),
        ..Default::default()
    }
}

fn get(acc: &Accumulator, k: &SeriesKey) -> Option<Totals> {
    acc.totals().get(k).copied()
}

const ACL_A: u32 = 0xaaaa_0001;
const ACL_DENY: u32 = 0xdddd_0001;
const LF_A1: u32 = 0x1111_0001;
const LF_A2: u32 = 0x1111_0002;
const LF_DENY: u32 = 0x2222_0001;

fn mapping() -> Mapping {
    Mapping::new(
        [
            lflow(LF_A1, 4, Some(ACL_A)),
            lflow(LF_A2, 4, Some(ACL_A)),
            lflow(LF_DENY, 4, Some(ACL_DENY)),
            lflow(0x3333_0001, 4, None),
        ],
        [
            (ACL_A, acl_series(&np_allow("ns1/web", "0"))),
            (
                ACL_DENY,
                acl_series(&ids(&[
                    (names::OWNER_KIND, names::KIND_POLICY_PODS),
                    (names::POLICY, "ns1/web,ns1/other"),
                    (names::DIRECTION, "Ingress"),
                    (names::ACTION, "deny"),
                ])),
            ),
        ],
    )
}

#[test]
fn acl_ids_become_series() {
    assert_eq!(
        acl_series(&np_allow("ns1/web", "2")),
        vec![series("NetworkPolicy", "ns1", "web", "2", "allow")]
    );
    // A shared default deny counts for each policy.
    let deny = acl_series(&ids(&[
        (names::OWNER_KIND, names::KIND_POLICY_PODS),
        (names::POLICY, "a/x,a/y"),
        (names::DIRECTION, "Ingress"),
        (names::ACTION, "deny"),
    ]));
    assert_eq!(
        deny,
        vec![
            series("NetworkPolicy", "a", "x", "default", "deny"),
            series("NetworkPolicy", "a", "y", "default", "deny"),
        ]
    );
    // Admin policies are cluster-scoped; the kind tells ANP from BANP.
    let anp = acl_series(&ids(&[
        (names::OWNER_KIND, names::KIND_ADMIN_NETWORK_POLICY),
        (names::POLICY, "tenants"),
        (names::DIRECTION, "Ingress"),
        (names::RULE, "1"),
        (names::ACTION, "pass"),
    ]));
    assert_eq!(
        anp,
        vec![series("AdminNetworkPolicy", "", "tenants", "1", "pass")]
    );
    let banp = acl_series(&ids(&[
        (names::OWNER_KIND, names::KIND_BASELINE_ADMIN_NETWORK_POLICY),
        (names::POLICY, "default"),
        (names::DIRECTION, "Ingress"),
        (names::RULE, "0"),
        (names::ACTION, "deny"),
    ]));
    assert_eq!(banp[0].kind, "BaselineAdminNetworkPolicy");
    // The host's allow names no policy.
    assert!(acl_series(&ids(&[(names::ACTION, "allow")])).is_empty());
}

#[test]
fn uuid_prefix_is_the_first_32_bits() {
    let u = uuid::Uuid::parse_str("8f3a1c2b-0000-4000-8000-000000000001").unwrap();
    assert_eq!(uuid_prefix(&u), 0x8f3a_1c2b);
}

#[test]
fn flows_add_up_per_policy_through_logical_flows() {
    let m = mapping();
    let mut acc = Accumulator::default();
    let allow = series("NetworkPolicy", "ns1", "web", "0", "allow");
    let web_deny = series("NetworkPolicy", "ns1", "web", "default", "deny");
    let other_deny = series("NetworkPolicy", "ns1", "other", "default", "deny");
    // Every live series shows, at zero, before any packet.
    acc.ingest(&[], &m);
    assert_eq!(get(&acc, &allow), Some(Totals::default()));
    acc.ingest(
        &[
            flow(LF_A1, 1, 3, 300, 5),
            flow(LF_A1, 2, 1, 100, 5),
            flow(LF_A2, 1, 2, 200, 5),
            flow(LF_DENY, 1, 7, 700, 5),
            // No ACL's, no cookie known, a 64-bit cookie: ignored.
            flow(0x3333_0001, 1, 50, 5000, 5),
            flow(0x4444_0001, 1, 50, 5000, 5),
            FlowStats {
                cookie: 1 << 40,
                ..flow(LF_A1, 9, 50, 5000, 5)
            },
        ],
        &m,
    );
    let t = |p, b| {
        Some(Totals {
            packets: p,
            bytes: b,
        })
    };
    assert_eq!(get(&acc, &allow), t(6, 600));
    assert_eq!(get(&acc, &web_deny), t(7, 700));
    assert_eq!(get(&acc, &other_deny), t(7, 700));
    assert_eq!(acc.totals().len(), 3);
    // Deltas, not sums of totals.
    acc.ingest(
        &[
            flow(LF_A1, 1, 4, 400, 6),
            flow(LF_A1, 2, 1, 100, 6),
            flow(LF_A2, 1, 2, 200, 6),
            flow(LF_DENY, 1, 9, 900, 6),
        ],
        &m,
    );
    assert_eq!(get(&acc, &allow), t(7, 700));
    assert_eq!(get(&acc, &web_deny), t(9, 900));
}

#[test]
fn replaced_and_removed_flows_keep_totals_monotonic() {
    let m = mapping();
    let mut acc = Accumulator::default();
    let allow = series("NetworkPolicy", "ns1", "web", "0", "allow");
    let t = |p, b| {
        Some(Totals {
            packets: p,
            bytes: b,
        })
    };
    acc.ingest(&[flow(LF_A1, 1, 10, 1000, 100)], &m);
    assert_eq!(get(&acc, &allow), t(10, 1000));
    // Reinstalled with counters reset, and 2 packets since: counts 2.
    acc.ingest(&[flow(LF_A1, 1, 2, 200, 1)], &m);
    assert_eq!(get(&acc, &allow), t(12, 1200));
    // Added over itself (OVS carries the counters over, the age restarts):
    // only what it gained.
    acc.ingest(&[flow(LF_A1, 1, 5, 500, 0)], &m);
    assert_eq!(get(&acc, &allow), t(15, 1500));
    // Gone, then back (a new flow): counts from zero again.
    acc.ingest(&[], &m);
    assert_eq!(get(&acc, &allow), t(15, 1500));
    assert_eq!(acc.flows(), 0);
    acc.ingest(&[flow(LF_A1, 1, 1, 100, 0)], &m);
    assert_eq!(get(&acc, &allow), t(16, 1600));
}

#[test]
fn flows_the_databases_do_not_know_yet_count_once_known() {
    let allow = series("NetworkPolicy", "ns1", "web", "0", "allow");
    let full = mapping();
    // The SB replica lags: the logical flow is not there yet.
    let lagging = Mapping::new(
        [lflow(LF_DENY, 4, Some(ACL_DENY))],
        [(ACL_A, acl_series(&np_allow("ns1/web", "0")))],
    );
    let mut acc = Accumulator::default();
    acc.ingest(&[flow(LF_A1, 1, 3, 300, 1)], &lagging);
    assert_eq!(get(&acc, &allow), Some(Totals::default()));
    acc.ingest(&[flow(LF_A1, 1, 4, 400, 2)], &full);
    assert_eq!(get(&acc, &allow).map(|t| t.packets), Some(4));
    // Lagging again (a resync): what was counted is kept, not recounted.
    acc.ingest(&[flow(LF_A1, 1, 5, 500, 3)], &lagging);
    acc.ingest(&[flow(LF_A1, 1, 6, 600, 4)], &full);
    assert_eq!(get(&acc, &allow).map(|t| t.packets), Some(6));
}

#[test]
fn deleted_policies_drop_their_series() {
    let mut acc = Accumulator::default();
    acc.ingest(&[flow(LF_A1, 1, 3, 300, 1)], &mapping());
    let allow = series("NetworkPolicy", "ns1", "web", "0", "allow");
    assert!(get(&acc, &allow).is_some());
    let without = Mapping::new(
        [lflow(LF_DENY, 4, Some(ACL_DENY))],
        [(
            ACL_DENY,
            acl_series(&ids(&[
                (names::POLICY, "ns1/other"),
                (names::DIRECTION, "Ingress"),
                (names::ACTION, "deny"),
            ])),
        )],
    );
    acc.ingest(&[flow(LF_DENY, 1, 1, 100, 1)], &without);
    assert_eq!(get(&acc, &allow), None);
    assert_eq!(acc.totals().len(), 1, "{:?}", acc.totals());
}

#[test]
fn ambiguous_prefixes_count_nowhere() {
    // Two logical flows with one cookie but different ACLs; two ACLs with
    // one prefix: such packets cannot be attributed.
    let m = Mapping::new(
        [
            lflow(LF_A1, 4, Some(ACL_A)),
            lflow(LF_A1, 4, Some(ACL_DENY)),
            lflow(LF_A2, 4, Some(ACL_A)),
        ],
        [
            (ACL_A, acl_series(&np_allow("ns1/web", "0"))),
            (ACL_A, acl_series(&np_allow("ns1/x", "0"))),
        ],
    );
    assert!(m.series_of(u64::from(LF_A1)).is_none());
    assert!(m.series_of(u64::from(LF_A2)).is_none());
}

#[test]
fn table_offsets_are_learnt_per_pipeline() {
    let m = Mapping::new(
        [
            lflow(LF_A1, 4, Some(ACL_A)),
            lflow(0x3333_0001, 4, None),
            LogicalFlow {
                cookie: 0x5555_0001,
                pipeline: "ingress".into(),
                table_id: 9,
                hint: None,
            },
        ],
        [],
    );
    let mut off = TableOffsets::default();
    assert_eq!(off.tables(&m), None);
    // Only the egress stage seen: still unknown.
    off.learn(&[flow(0x3333_0001, 1, 0, 0, 0)], &m);
    assert_eq!(off.tables(&m), None);
    let ingress = FlowStats {
        table_id: 17,
        ..flow(0x5555_0001, 1, 0, 0, 0)
    };
    off.learn(&[ingress], &m);
    // egress: 44 - 4; ingress: 17 - 9.
    assert_eq!(off.tables(&m), Some(vec![17, 44]));
}

#[test]
fn exposition_names_and_labels() {
    let m = crate::metrics::Metrics::new();
    let c: &PolicyCounters = m.policy_counters();
    c.publish(BTreeMap::from([(
        series("NetworkPolicy", "ns1", "web", "default", "deny"),
        Totals {
            packets: 5,
            bytes: 420,
        },
    )]));
    let text = m.encode();
    let labels = r#"{kind="NetworkPolicy",namespace="ns1",policy="web",direction="Ingress",rule="default",action="deny"}"#;
    assert!(
        text.contains(&format!("switchyard_networkpolicy_packets_total{labels} 5")),
        "{text}"
    );
    assert!(
        text.contains(&format!("switchyard_networkpolicy_bytes_total{labels} 420")),
        "{text}"
    );
    assert!(
        text.contains("# TYPE switchyard_networkpolicy_packets counter"),
        "{text}"
    );
    // One end marker, at the end, with the node's own metrics before it.
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(
        text.contains("switchyard_node_ovn_installed_wait_seconds"),
        "{text}"
    );
}
