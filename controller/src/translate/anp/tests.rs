//! The pure mapping: priorities per rule and band, actions, `Pass`
//! exclusions, the baseline's band and singleton, node and network peers,
//! shared peer sets, problems, and what each change touches. Packet-level
//! truth is `tests/anp_trace.rs`.

use std::collections::BTreeMap;

use serde_json::json;
use switchyard_api::names;

use crate::k8s::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use crate::nb::{Col, DesiredRow, Owner, Table};
use crate::translate::policy::tests::{np, Fx};

fn anp(name: &str, spec: serde_json::Value) -> AdminNetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": spec,
    }))
    .expect("an ANP")
}

fn banp(name: &str, spec: serde_json::Value) -> BaselineAdminNetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": spec,
    }))
    .expect("a BANP")
}

fn from_ns(ns: &str) -> serde_json::Value {
    json!([{"namespaces": {"matchLabels": {"ns": ns}}}])
}

fn subject_x() -> serde_json::Value {
    json!({"namespaces": {"matchLabels": {"ns": "x"}}})
}

fn rule(action: &str, from: serde_json::Value) -> serde_json::Value {
    json!({"action": action, "from": from})
}

/// ACLs of one owner: (priority, action, match), by priority descending.
fn acls(
    rows: &BTreeMap<Owner, Vec<DesiredRow>>,
    kind: &'static str,
    key: &str,
) -> Vec<(i64, String, String)> {
    let mut v: Vec<(i64, String, String)> = rows
        .get(&Owner::of(kind, key))
        .into_iter()
        .flatten()
        .filter(|r| r.table == Table::Acl)
        .map(|r| {
            let p = match r.get("priority") {
                Some(Col::Int(p)) => *p,
                other => panic!("priority {other:?}"),
            };
            let s = |c: &str| match r.get(c) {
                Some(Col::Str(s)) => s.clone(),
                other => panic!("{c} {other:?}"),
            };
            (p, s("action"), s("match"))
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
    v
}

const ANP: &str = names::KIND_ADMIN_NETWORK_POLICY;
const BANP: &str = names::KIND_BASELINE_ADMIN_NETWORK_POLICY;

#[test]
fn anps_take_dense_priorities_in_evaluation_order_per_direction() {
    let mut fx = Fx::xyz();
    fx.apply(anp(
        "late",
        json!({"priority": 10, "subject": subject_x(),
        "ingress": [rule("Allow", from_ns("y")), rule("Deny", from_ns("z"))]}),
    ));
    fx.apply(anp("early", json!({"priority": 5, "subject": subject_x(),
        "ingress": [rule("Deny", from_ns("y")), rule("Allow", from_ns("z")), rule("Deny", from_ns("x"))],
        "egress": [{"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}]})));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let e = acls(&rows, ANP, "early");
    let l = acls(&rows, ANP, "late");
    let prio =
        |v: &[(i64, String, String)]| v.iter().map(|a| (a.0, a.1.clone())).collect::<Vec<_>>();
    assert_eq!(
        prio(&e),
        vec![
            (31999, "drop".into()),
            (31999, "drop".into()),
            (31998, "allow-related".into()),
            (31997, "drop".into())
        ]
    );
    // Ingress continues below "early"'s three rules; egress had its own band.
    assert_eq!(
        prio(&l),
        vec![(31996, "allow-related".into()), (31995, "drop".into())]
    );
    let egress = e.iter().find(|a| a.2.starts_with("inport")).unwrap();
    assert_eq!(egress.2, "inport == @anp.early && ip4.dst == 192.0.2.0/24");
    assert!(e
        .iter()
        .any(|a| a.2 == "outport == @anp.early && (ip4.src == $ns.y.v4 || ip6.src == $ns.y.v6)"));
    // The subject group holds exactly x's pods.
    let pg = rows[&Owner::of(ANP, "early")]
        .iter()
        .find(|r| r.table == Table::PortGroup)
        .unwrap();
    assert_eq!(
        pg.get("ports"),
        Some(&Col::refs(Table::LogicalSwitchPort, ["x_a", "x_b", "x_c"]))
    );
}

/// The addresses of a named address set of `owner`'s rows.
fn set_addrs(rows: &BTreeMap<Owner, Vec<DesiredRow>>, owner: &str, name: &str) -> Vec<String> {
    let row = rows[&Owner::of(ANP, owner)]
        .iter()
        .find(|r| r.name() == Some(name))
        .unwrap_or_else(|| panic!("{name} in {owner}'s rows"));
    match row.get("addresses") {
        Some(Col::Set(v)) => v.iter().map(|a| format!("{a:?}")).collect(),
        other => panic!("addresses {other:?}"),
    }
}

#[test]
fn pass_has_no_acl_and_lower_rules_match_only_what_it_leaves() {
    let mut fx = Fx::xyz();
    fx.apply(anp("first", json!({"priority": 1, "subject": subject_x(),
        "ingress": [rule("Allow", from_ns("z")), rule("Pass", from_ns("y")), rule("Deny", json!([{"namespaces": {}}]))]})));
    fx.apply(anp(
        "second",
        json!({"priority": 2, "subject": subject_x(),
        "ingress": [rule("Deny", json!([{"namespaces": {}}]))]}),
    ));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let f = acls(&rows, ANP, "first");
    assert_eq!(f.len(), 2, "{f:?}");
    // Above the pass: untouched.
    assert_eq!(f[0].0, 31999);
    assert_eq!(
        f[0].2,
        "outport == @anp.first && (ip4.src == $ns.z.v4 || ip6.src == $ns.z.v6)"
    );
    // Below it, in the same ANP and in the next: every namespace but y,
    // as a set of its own; the subject and ports as written. No negation.
    assert_eq!(f[1].0, 31997);
    assert_eq!(
        f[1].2,
        "outport == @anp.first && (ip4.src == $anp.first.i2.p0.t0.v4 || ip6.src == $anp.first.i2.p0.t0.v6)"
    );
    let s = acls(&rows, ANP, "second");
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, 31996);
    assert_eq!(
        s[0].2,
        "outport == @anp.second && (ip4.src == $anp.second.i0.p0.t0.v4 || ip6.src == $anp.second.i0.p0.t0.v6)"
    );
    // x's pods are .10-.12, y's .13-.15, z's .16-.18.
    let v4 = set_addrs(&rows, "second", "anp.second.i0.p0.t0.v4");
    assert!(v4.iter().any(|a| a.contains("10.244.1.10/31")), "{v4:?}");
    assert!(v4.iter().any(|a| a.contains("10.244.1.12/32")), "{v4:?}");
    assert!(v4.iter().any(|a| a.contains("10.244.1.16/31")), "{v4:?}");
    assert!(v4.iter().any(|a| a.contains("10.244.1.18/32")), "{v4:?}");
    assert_eq!(v4.len(), 4, "{v4:?}");
    for (_, _, m) in f.iter().chain(&s) {
        assert!(!m.contains('!'), "{m}");
    }
    let ready = super::readiness(crate::k8s::Kind::AdminNetworkPolicy, "second", &fx.view());
    assert_eq!(ready, Some(Ok(())));
}

#[test]
fn pass_over_some_pods_and_ports_splits_subject_and_ports() {
    let mut fx = Fx::xyz();
    // Pass TCP 80 from y to x/a only.
    fx.apply(anp(
        "pass",
        json!({"priority": 1,
        "subject": {"pods": {"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchLabels": {"pod": "a"}}}},
        "ingress": [{"action": "Pass", "from": from_ns("y"), "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}]}),
    ));
    fx.apply(anp(
        "deny",
        json!({"priority": 2, "subject": subject_x(),
        "ingress": [rule("Deny", from_ns("y"))]}),
    ));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let d: Vec<String> = acls(&rows, ANP, "deny").into_iter().map(|a| a.2).collect();
    let peer = "(ip4.src == $ns.y.v4 || ip6.src == $ns.y.v6)";
    assert_eq!(
        d,
        vec![
            // x/b and x/c: every port.
            format!("outport == @anp.deny.i0.p0.t0 && {peer}"),
            // x/a: everything but TCP 80.
            format!(
                "outport == @anp.deny.i0.p0.t1 && {peer} && (tcp.dst <= 79 || tcp.dst >= 81 || \
                 ip.proto == {{{}}})",
                (0..=255u8)
                    .filter(|n| *n != 6)
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ]
    );
    let pg = |name: &str| {
        rows[&Owner::of(ANP, "deny")]
            .iter()
            .find(|r| r.table == Table::PortGroup && r.name() == Some(name))
            .and_then(|r| r.get("ports").cloned())
    };
    assert_eq!(
        pg("anp.deny.i0.p0.t0"),
        Some(Col::refs(Table::LogicalSwitchPort, ["x_b", "x_c"]))
    );
    assert_eq!(
        pg("anp.deny.i0.p0.t1"),
        Some(Col::refs(Table::LogicalSwitchPort, ["x_a"]))
    );
}

fn one_pod(ns: &str, p: &str) -> serde_json::Value {
    json!({"namespaceSelector": {"matchLabels": {"ns": ns}}, "podSelector": {"matchLabels": {"pod": p}}})
}

#[test]
fn a_rule_past_the_term_cap_is_reported_and_not_programmed() {
    let mut fx = Fx::xyz();
    // One ANP per pod, passing a different TCP port from each pod: below
    // them, every (subject pod, peer pod) pair keeps a different set of
    // ports, 81 pieces at least.
    let pods: Vec<(&str, &str)> = ["x", "y", "z"]
        .iter()
        .flat_map(|n| ["a", "b", "c"].iter().map(move |p| (*n, *p)))
        .collect();
    for (k, (ns, p)) in pods.iter().enumerate() {
        let ingress: Vec<serde_json::Value> = pods
            .iter()
            .enumerate()
            .map(|(j, (ns2, p2))| {
                json!({"action": "Pass", "from": [{"pods": one_pod(ns2, p2)}],
                    "ports": [{"portNumber": {"protocol": "TCP", "port": 1000 + 10 * k + j}}]})
            })
            .collect();
        fx.apply(anp(
            &format!("s{k}"),
            json!({"priority": 1 + k, "subject": {"pods": one_pod(ns, p)}, "ingress": ingress}),
        ));
    }
    fx.apply(anp(
        "below",
        json!({"priority": 20, "subject": {"namespaces": {}},
        "ingress": [rule("Deny", json!([{"namespaces": {}}])),
            {"action": "Allow", "from": from_ns("x"), "ports": [{"portNumber": {"protocol": "UDP", "port": 53}}]}]}),
    ));
    let (rows, problems) = fx.rows();
    let b = acls(&rows, ANP, "below");
    // The second rule (UDP: no pass meets it) stays whole; the first is out.
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].1, "allow-related");
    assert!(
        problems
            .iter()
            .any(|p| p.note.contains("Ingress rule \"0\"") && p.note.contains("not enforced")),
        "{problems:?}"
    );
    let ready = super::readiness(crate::k8s::Kind::AdminNetworkPolicy, "below", &fx.view());
    assert!(matches!(ready, Some(Err(e)) if e.contains("more than 64")));
}

#[test]
fn baseline_sits_under_network_policy_and_must_be_named_default() {
    let mut fx = Fx::xyz();
    fx.apply(banp(
        "default",
        json!({"subject": subject_x(),
        "ingress": [rule("Allow", from_ns("y")), rule("Deny", json!([{"namespaces": {}}]))]}),
    ));
    fx.apply(banp(
        "other",
        json!({"subject": subject_x(),
        "ingress": [rule("Deny", json!([{"namespaces": {}}]))]}),
    ));
    let (rows, problems) = fx.rows();
    let b = acls(&rows, BANP, "default");
    assert_eq!(
        b.iter().map(|a| (a.0, a.1.as_str())).collect::<Vec<_>>(),
        vec![(10999, "allow-related"), (10998, "drop")]
    );
    assert!(b.iter().all(|a| a.0 < crate::translate::policy::DENY));
    assert!(!rows.contains_key(&Owner::of(BANP, "other")));
    assert!(
        problems.iter().any(|p| p.object.name == "other"),
        "{problems:?}"
    );
}

#[test]
fn node_and_network_peers_and_named_ports() {
    let mut fx = Fx::xyz();
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "metadata": {"name": "n1", "resourceVersion": "2", "labels": {"role": "worker"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.1"}]}}))
    .unwrap();
    fx.apply(node);
    fx.apply(anp("egress", json!({"priority": 3, "subject": subject_x(),
        "egress": [
            {"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "worker"}}}]},
            {"action": "Allow", "to": [{"networks": ["0.0.0.0/0", "2001:db8::/32"]}]},
            {"action": "Allow", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}}],
             "ports": [{"namedPort": "serve-80-tcp"}, {"portRange": {"protocol": "UDP", "start": 1000, "end": 2000}}]},
        ]})));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let set = rows
        .values()
        .flatten()
        .find(|r| r.table == Table::AddressSet && r.name() == Some("anp.egress.e0.nodes.v4"))
        .expect("node set");
    // The node's InternalIP and its management port address.
    assert_eq!(
        set.get("addresses"),
        Some(&Col::set(["10.244.1.2", "198.18.0.1"]))
    );
    let a = acls(&rows, ANP, "egress");
    let m: Vec<&str> = a.iter().map(|a| a.2.as_str()).collect();
    assert!(m.contains(&"inport == @anp.egress && (ip4.dst == $anp.egress.e0.nodes.v4 || ip6.dst == $anp.egress.e0.nodes.v6)"), "{m:#?}");
    assert!(
        m.contains(&"inport == @anp.egress && (ip4 || ip6.dst == 2001:db8::/32)"),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|x| x.contains("tcp.dst == 80") && x.contains(".p80.v4")),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|x| x.contains("udp.dst >= 1000 && udp.dst <= 2000")),
        "{m:#?}"
    );
    // The pod peer is a NetworkPolicy peer set, used by the ANP.
    assert!(fx
        .model
        .policy_index
        .peer_sets()
        .any(|(_, u)| u.users.contains("AdminNetworkPolicy:egress")));
}

#[test]
fn same_priority_is_reported_on_both() {
    let mut fx = Fx::xyz();
    for n in ["one", "two"] {
        fx.apply(anp(
            n,
            json!({"priority": 7, "subject": subject_x(), "ingress": [rule("Deny", from_ns("y"))]}),
        ));
    }
    let (_, problems) = fx.rows();
    let on: Vec<&str> = problems
        .iter()
        .filter(|p| p.reason == "AdminNetworkPolicyPriorityConflict")
        .map(|p| p.object.name.as_str())
        .collect();
    assert_eq!(on, vec!["one", "two"]);
}

#[test]
fn changes_touch_what_they_move() {
    let mut fx = Fx::xyz();
    fx.apply(anp(
        "a",
        json!({"priority": 1, "subject": subject_x(), "ingress": [rule("Deny", from_ns("y"))]}),
    ));
    fx.apply(anp(
        "b",
        json!({"priority": 2, "subject": {"namespaces": {"matchLabels": {"ns": "y"}}},
        "ingress": [rule("Deny", from_ns("z"))]}),
    ));
    fx.changes.clear();
    // Same shape, new peers: itself only.
    let mut changed = anp(
        "a",
        json!({"priority": 1, "subject": subject_x(), "ingress": [rule("Deny", from_ns("z"))]}),
    );
    changed.metadata.resource_version = Some("2".into());
    fx.apply(changed);
    assert_eq!(fx.touched(ANP), ["a".to_string()].into());
    // Our own status patch: nothing to translate.
    let mut status = anp(
        "a",
        json!({"priority": 1, "subject": subject_x(), "ingress": [rule("Deny", from_ns("z"))]}),
    );
    status.metadata.resource_version = Some("2s".into());
    status.status = Some(crate::k8s::policy_api::PolicyStatus::default());
    fx.apply(status);
    assert!(fx.touched(ANP).is_empty());
    // A new priority moves everything after it.
    let mut moved = anp(
        "a",
        json!({"priority": 3, "subject": subject_x(), "ingress": [rule("Deny", from_ns("z"))]}),
    );
    moved.metadata.resource_version = Some("3".into());
    fx.apply(moved);
    assert_eq!(fx.touched(ANP), ["a".to_string(), "b".to_string()].into());
    // A pod of x: only the ANP whose subject it is in.
    let mut p = crate::translate::policy::tests::pod("x", "d", json!({"pod": "d"}), json!([]));
    p.metadata.resource_version = Some("5".into());
    fx.add_pod(p);
    assert_eq!(fx.touched(ANP), ["a".to_string()].into());
    // A NetworkPolicy touches no ANP.
    fx.apply(np("x", "np", json!({"podSelector": {}})));
    assert!(fx.touched(ANP).is_empty());
}

#[test]
fn logging_follows_the_policys_annotation() {
    let mut fx = Fx::xyz();
    let mut p = anp(
        "logged",
        json!({"priority": 1, "subject": subject_x(),
        "ingress": [rule("Allow", from_ns("y")), rule("Deny", from_ns("z"))]}),
    );
    p.metadata.annotations = Some(
        [(
            switchyard_api::annotations::ACL_LOGGING.to_string(),
            r#"{"deny":"alert"}"#.to_string(),
        )]
        .into(),
    );
    fx.apply(p);
    let (rows, _) = fx.rows();
    let logged: Vec<(bool, Option<String>)> = rows[&Owner::of(ANP, "logged")]
        .iter()
        .filter(|r| r.table == Table::Acl)
        .map(|r| {
            let sev = match r.get("severity") {
                Some(Col::Set(v)) => v.first().cloned(),
                _ => None,
            };
            (r.get("log") == Some(&Col::Bool(true)), sev)
        })
        .collect();
    assert!(logged.contains(&(true, Some("alert".into()))), "{logged:?}");
    assert!(logged.contains(&(false, None)), "{logged:?}");
    assert!(rows.contains_key(&Owner::of(
        names::KIND_POLICY_METER,
        crate::translate::policy::METER_KEY
    )));
}

#[test]
fn only_a_changed_pass_moves_the_anps_below() {
    let mut fx = Fx::xyz();
    let spec = |deny_from: &str| {
        json!({"priority": 1, "subject": subject_x(),
            "ingress": [rule("Pass", from_ns("y")), rule("Deny", from_ns(deny_from))]})
    };
    fx.apply(anp("p", spec("z")));
    fx.apply(anp(
        "below",
        json!({"priority": 2, "subject": subject_x(),
        "ingress": [rule("Deny", json!([{"namespaces": {}}]))]}),
    ));
    fx.changes.clear();
    let mut edit = anp("p", spec("x"));
    edit.metadata.resource_version = Some("2".into());
    fx.apply(edit);
    assert_eq!(fx.touched(ANP), ["p".to_string()].into());
    let mut pass = anp(
        "p",
        json!({"priority": 1, "subject": subject_x(),
        "ingress": [rule("Pass", from_ns("z")), rule("Deny", from_ns("x"))]}),
    );
    pass.metadata.resource_version = Some("3".into());
    fx.apply(pass);
    assert_eq!(
        fx.touched(ANP),
        ["below".to_string(), "p".to_string()].into()
    );
}

#[test]
fn pass_members_touch_the_anps_below() {
    let mut fx = Fx::xyz();
    fx.apply(anp(
        "top",
        json!({"priority": 0, "subject": subject_x(), "ingress": [rule("Deny", from_ns("z"))]}),
    ));
    fx.apply(anp(
        "p",
        json!({"priority": 1, "subject": subject_x(),
            "ingress": [rule("Pass", from_ns("y")), rule("Deny", from_ns("z"))]}),
    ));
    fx.apply(anp(
        "below",
        json!({"priority": 2, "subject": {"namespaces": {"matchLabels": {"ns": "z"}}},
        "ingress": [rule("Deny", from_ns("z"))]}),
    ));
    fx.changes.clear();
    // A new pod of y is among the pass's peers: the ANP with the pass and
    // every one after it read it; the one above does not.
    let mut p = crate::translate::policy::tests::pod("y", "d", json!({"pod": "d"}), json!([]));
    p.metadata.resource_version = Some("5".into());
    fx.add_pod(p);
    assert_eq!(
        fx.touched(ANP),
        ["below".to_string(), "p".to_string()].into()
    );
}

/// The ports of port group `name` among `owner`'s rows.
fn pg_ports(rows: &BTreeMap<Owner, Vec<DesiredRow>>, owner: &str, name: &str) -> Option<Col> {
    rows[&Owner::of(ANP, owner)]
        .iter()
        .find(|r| r.table == Table::PortGroup && r.name() == Some(name))
        .and_then(|r| r.get("ports").cloned())
}

#[test]
fn pass_pieces_follow_relabelled_pods_from_one_round_to_the_next() {
    use crate::translate::policy::tests::{pod, serve_ports};
    let mut fx = Fx::xyz();
    // Each relabel is a newer version of the pod, as the API sends it.
    let version = std::cell::Cell::new(1);
    let gate = |ns: &str, p: &str, on: bool| {
        let labels = if on {
            json!({"pod": p, "gate": "pass"})
        } else {
            json!({"pod": p})
        };
        let mut pod = pod(ns, p, labels, serve_ports());
        version.set(version.get() + 1);
        pod.metadata.resource_version = Some(version.get().to_string());
        pod
    };
    let gated = |ns: &str| json!({"namespaceSelector": {"matchLabels": {"ns": ns}}, "podSelector": {"matchLabels": {"gate": "pass"}}});
    fx.apply(gate("x", "b", true));
    fx.apply(gate("y", "a", true));
    fx.apply(anp(
        "gate",
        json!({"priority": 1, "subject": {"pods": gated("x")},
        "ingress": [rule("Pass", json!([{"pods": gated("y")}]))]}),
    ));
    fx.apply(anp(
        "deny",
        json!({"priority": 2, "subject": subject_x(), "ingress": [rule("Deny", from_ns("y"))]}),
    ));
    let peer = "(ip4.src == $ns.y.v4 || ip6.src == $ns.y.v6)";
    let pieces = "(ip4.src == $anp.deny.i0.p0.t1.v4 || ip6.src == $anp.deny.i0.p0.t1.v6)";
    let want = vec![
        format!("outport == @anp.deny.i0.p0.t0 && {peer}"),
        format!("outport == @anp.deny.i0.p0.t1 && {pieces}"),
    ];
    let round = |fx: &Fx| {
        let (rows, problems) = fx.rows();
        assert!(problems.is_empty(), "{problems:?}");
        let m: Vec<String> = acls(&rows, ANP, "deny").into_iter().map(|a| a.2).collect();
        assert_eq!(m, want);
        let ready = super::readiness(crate::k8s::Kind::AdminNetworkPolicy, "deny", &fx.view());
        assert_eq!(ready, Some(Ok(())));
        (
            pg_ports(&rows, "deny", "anp.deny.i0.p0.t0"),
            pg_ports(&rows, "deny", "anp.deny.i0.p0.t1"),
            set_addrs(&rows, "deny", "anp.deny.i0.p0.t1.v4"),
        )
    };
    let pgs = |a: &[&str]| Some(Col::refs(Table::LogicalSwitchPort, a.iter().copied()));
    // Round 1: x/b is passed from y/a; y's pods are .13-.15.
    let (t0, t1, v4) = round(&fx);
    assert_eq!((t0, t1), (pgs(&["x_a", "x_c"]), pgs(&["x_b"])));
    assert!(v4.iter().any(|a| a.contains("10.244.1.14/31")), "{v4:?}");
    assert_eq!(v4.len(), 1, "{v4:?}");
    // Round 2: the pass's peer moves from y/a to y/c: x/b's piece now
    // has y/a and y/b, not what round 1 read.
    fx.apply(gate("y", "a", false));
    fx.apply(gate("y", "c", true));
    let (t0, t1, v4) = round(&fx);
    assert_eq!((t0, t1), (pgs(&["x_a", "x_c"]), pgs(&["x_b"])));
    assert!(v4.iter().any(|a| a.contains("10.244.1.13/32")), "{v4:?}");
    assert!(v4.iter().any(|a| a.contains("10.244.1.14/32")), "{v4:?}");
    assert_eq!(v4.len(), 2, "{v4:?}");
    // Round 3: the pass's subject moves from x/b to x/c.
    fx.apply(gate("x", "b", false));
    fx.apply(gate("x", "c", true));
    let (t0, t1, _) = round(&fx);
    assert_eq!((t0, t1), (pgs(&["x_a", "x_b"]), pgs(&["x_c"])));
    // Round 4: no pod gated on x: the rule is whole again, no piece row.
    fx.apply(gate("x", "c", false));
    let (rows, _) = fx.rows();
    let m: Vec<String> = acls(&rows, ANP, "deny").into_iter().map(|a| a.2).collect();
    assert_eq!(m, vec![format!("outport == @anp.deny && {peer}")]);
    assert_eq!(pg_ports(&rows, "deny", "anp.deny.i0.p0.t0"), None);
}
