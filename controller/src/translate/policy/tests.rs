//! The pure translation: rows for a model, checked for exact matches,
//! sharing, references that resolve, failing closed, logging, and what
//! each change touches. Packet-level truth is `tests/policy_trace.rs`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use switchyard_api::names;

use super::*;
use crate::config::Config;
use crate::k8s::{Object, WatchEvent};
use crate::nb::{Col, DesiredRow, Owner};
use crate::translate::{registry, Assigned, Decisions};

pub(crate) struct Fx {
    pub model: Model,
    pub decisions: Decisions,
    pub config: Config,
    pub changes: Vec<Change>,
    next: u8,
}

pub(crate) fn np(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": spec,
    }))
    .expect("a NetworkPolicy")
}

/// The upstream e2e pods' container ports.
pub(crate) fn serve_ports() -> serde_json::Value {
    json!([
        {"name": "serve-80-tcp", "containerPort": 80},
        {"name": "serve-81-tcp", "containerPort": 81},
        {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
        {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
    ])
}

pub(crate) fn pod(
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    ports: serde_json::Value,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{ns}-{name}"),
                     "resourceVersion": "1", "labels": labels},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
    }))
    .expect("a Pod")
}

pub(crate) fn namespace(name: &str, annotations: serde_json::Value) -> Namespace {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"ns": name},
                     "annotations": annotations},
    }))
    .expect("a Namespace")
}

impl Fx {
    /// Namespaces x, y, z (labelled `ns`), pods a, b, c in each (labelled
    /// `pod`) serving the upstream e2e's named ports, all with addresses.
    pub fn xyz() -> Fx {
        let mut fx = Fx {
            model: Model::new(),
            decisions: Decisions::default(),
            config: Config::default(),
            changes: Vec::new(),
            next: 10,
        };
        fx.decisions.node_subnets.insert(
            "n1".into(),
            vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
        );
        let node: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(json!({"metadata": {"name": "n1", "resourceVersion": "1"}}))
                .unwrap();
        fx.apply(node);
        for ns in ["x", "y", "z"] {
            fx.apply(namespace(ns, json!({})));
            for p in ["a", "b", "c"] {
                fx.add_pod(pod(ns, p, json!({"pod": p}), serve_ports()));
            }
        }
        fx
    }

    pub fn apply(&mut self, o: impl Into<Object>) {
        let o = o.into();
        let kind = o.kind();
        self.model
            .apply(kind, WatchEvent::Applied(o.into()), &mut self.changes);
    }

    /// Adds a pod with the next addresses.
    pub fn add_pod(&mut self, p: Pod) {
        let key = format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap(),
            p.metadata.name.as_deref().unwrap()
        );
        let i = self.next;
        self.next += 1;
        self.apply(p);
        self.decisions.pod_addresses.insert(
            key,
            Assigned {
                ips: vec![
                    format!("10.244.1.{i}/24").parse().unwrap(),
                    format!("fd00:10:244:1::{i:x}/64").parse().unwrap(),
                ],
                mac: format!("0a:58:0a:f4:01:{i:02x}"),
            },
        );
    }

    pub fn view(&self) -> View<'_> {
        View {
            model: &self.model,
            decisions: &self.decisions,
            config: &self.config,
        }
    }

    /// Every owner's rows, as the engine publishes them at start.
    pub fn rows(&self) -> (BTreeMap<Owner, Vec<DesiredRow>>, Vec<Problem>) {
        let view = self.view();
        let mut problems = Vec::new();
        let mut out = BTreeMap::new();
        for t in registry() {
            for k in t.all(&view) {
                if let Some(r) = t.rows(&k, &view, &mut problems) {
                    out.insert(Owner::of(t.kind(), k), r);
                }
            }
        }
        (out, problems)
    }

    /// The owners of `kind` the recorded changes touch (then forgets them).
    pub fn touched(&mut self, kind: &str) -> BTreeSet<String> {
        let changes = std::mem::take(&mut self.changes);
        let view = self.view();
        let t = registry().iter().find(|t| t.kind() == kind).unwrap();
        let mut out = Vec::new();
        for c in &changes {
            t.owners(c, &view, &mut out);
        }
        out.into_iter().collect()
    }
}

fn s(c: Option<&Col>) -> &str {
    match c {
        Some(Col::Str(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn set_of(c: Option<&Col>) -> Vec<String> {
    match c {
        Some(Col::Set(v)) | Some(Col::Refs(_, v)) => v.clone(),
        other => panic!("not a set: {other:?}"),
    }
}

/// `match` of each ACL of an owner, by key.
fn acls(
    rows: &BTreeMap<Owner, Vec<DesiredRow>>,
    kind: &'static str,
    key: &str,
) -> BTreeMap<String, String> {
    rows.get(&Owner::of(kind, key))
        .into_iter()
        .flatten()
        .filter(|r| r.table == Table::Acl)
        .map(|r| (r.id.as_str().to_string(), s(r.get("match")).to_string()))
        .collect()
}

fn named<'a>(
    rows: &'a BTreeMap<Owner, Vec<DesiredRow>>,
    table: Table,
    name: &str,
) -> &'a DesiredRow {
    rows.values()
        .flatten()
        .find(|r| r.table == table && r.name() == Some(name))
        .unwrap_or_else(|| panic!("no {table:?} {name}"))
}

fn pg_of(fx: &Fx, policy: &str) -> String {
    pod_set_name(&fx.model.policy_index.policy(policy).unwrap().pod_set())
}

fn peer_name(scope_ns: &str, sel: &str, v6: bool) -> String {
    use crate::model::policy::{Scope, Selector};
    let (k, v) = sel.split_once('=').unwrap();
    let pods = Selector::parse(Some(
        &serde_json::from_value(json!({"matchLabels": {k: v}})).unwrap(),
    ))
    .unwrap();
    let set = PeerSet {
        scope: Scope::Namespace(scope_ns.into()),
        pods,
        port: None,
    };
    peer_set_name(&set, None, v6)
}

#[test]
fn deny_all_is_a_port_group_with_a_drop_and_no_allows() {
    let mut fx = Fx::xyz();
    fx.apply(np("x", "deny", json!({"podSelector": {}})));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty());
    let pg = pg_of(&fx, "x/deny");
    let group = named(&rows, Table::PortGroup, &pg);
    assert_eq!(set_of(group.get("ports")), vec!["x_a", "x_b", "x_c"]);
    let deny = acls(&rows, names::KIND_POLICY_PODS, "x/");
    assert_eq!(
        deny,
        BTreeMap::from([(
            "deny:Ingress".to_string(),
            format!("outport == @{pg} && ip")
        )])
    );
    assert!(acls(&rows, names::KIND_NETWORK_POLICY, "x/deny").is_empty());
    // The host's ACL on the node switch, now that a policy exists.
    let host = &rows[&Owner::of(names::KIND_POLICY_HOST, "n1")][0];
    assert_eq!(
        s(host.get("match")),
        "(ip4.src == 10.244.1.2 || ip6.src == fd00:10:244:1::2)"
    );
    assert_eq!(host.get("priority"), Some(&Col::Int(HOST_ALLOW)));
    assert_eq!(host.parents[0].name, "node-n1");
}

#[test]
fn rules_become_exact_matches() {
    let mut fx = Fx::xyz();
    fx.apply(np(
        "x",
        "web",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                 "ports": [{"protocol": "UDP", "port": 81, "endPort": 90}, {"protocol": "SCTP"}, {"port": 80}, {"port": 443}]},
                {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
                          {"ipBlock": {"cidr": "2001:db8::/32"}}]},
            ],
            "egress": [{}],
        }),
    ));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let pg = pg_of(&fx, "x/web");
    let (b4, b6) = (
        peer_name("x", "pod=b", false),
        peer_name("x", "pod=b", true),
    );
    let want: BTreeMap<String, String> = [
        (
            format!("{pg}:Ingress:0:sets:num"),
            format!("outport == @{pg} && (ip4.src == ${b4} || ip6.src == ${b6}) && tcp.dst == 80"),
        ),
        (
            format!("{pg}:Ingress:1:sets:num"),
            format!(
                "outport == @{pg} && (ip4.src == $ns.y.v4 || ip6.src == $ns.y.v6) && \
                 (sctp || tcp.dst == {{80, 443}} || (udp.dst >= 81 && udp.dst <= 90))"
            ),
        ),
        (
            format!("{pg}:Ingress:2:b0:num"),
            format!(
                "outport == @{pg} && (ip4.src == 192.168.0.0/16 && ip4.src != {{192.168.1.0/24}})"
            ),
        ),
        (
            format!("{pg}:Ingress:2:b1:num"),
            format!("outport == @{pg} && ip6.src == 2001:db8::/32"),
        ),
        (
            format!("{pg}:Egress:0:any:num"),
            format!("inport == @{pg} && ip"),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(acls(&rows, names::KIND_NETWORK_POLICY, "x/web"), want);
    // The peer's sets hold pod b's addresses, per family.
    let b = &fx.decisions.pod_addresses["x/b"];
    let v4 = named(&rows, Table::AddressSet, &b4);
    assert_eq!(
        set_of(v4.get("addresses")),
        vec![b.ips[0].addr().to_string()]
    );
    let v6 = named(&rows, Table::AddressSet, &b6);
    assert_eq!(
        set_of(v6.get("addresses")),
        vec![b.ips[1].addr().to_string()]
    );
    // Egress rows are after load balancing, ingress ones are not marked.
    let egress = rows[&Owner::of(names::KIND_NETWORK_POLICY, "x/web")]
        .iter()
        .find(|r| r.id.as_str().contains("Egress"))
        .unwrap();
    assert_eq!(egress.get("direction"), Some(&Col::str("from-lport")));
    assert_eq!(
        egress.get("options"),
        Some(&Col::map([("apply-after-lb", "true")]))
    );
    assert_eq!(egress.get("action"), Some(&Col::str("allow-related")));
    assert_eq!(egress.get("name"), Some(&Col::set(["x/web:Egress:0"])));
    let Some(Col::Map(ids)) = egress.get("external_ids") else {
        panic!()
    };
    assert_eq!(ids[names::POLICY], "x/web");
    assert_eq!(ids[names::RULE], "0");
    assert_eq!(ids[names::DIRECTION], "Egress");
    // Both directions isolated on the one port group.
    let deny = acls(&rows, names::KIND_POLICY_PODS, "x/pod=a");
    assert_eq!(deny.len(), 2);
    assert_eq!(deny["deny:Egress"], format!("inport == @{pg} && ip"));
}

#[test]
fn named_ports_resolve_on_each_destination_pod() {
    let mut fx = Fx::xyz();
    // Two servers with one port name on different numbers, and a UDP port
    // of that name that must not match a TCP rule.
    fx.add_pod(pod(
        "x",
        "s1",
        json!({"app": "srv"}),
        json!([{"name": "http", "containerPort": 8080}]),
    ));
    fx.add_pod(pod(
        "x",
        "s2",
        json!({"app": "srv"}),
        json!([{"name": "http", "containerPort": 9090},
               {"name": "http", "containerPort": 53, "protocol": "UDP"}]),
    ));
    fx.apply(np(
        "x",
        "in",
        json!({"podSelector": {"matchLabels": {"app": "srv"}},
               "ingress": [{"ports": [{"port": "http"}]}]}),
    ));
    fx.apply(np(
        "y",
        "out",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}],
                           "ports": [{"port": "http"}]},
                          {"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}],
                           "ports": [{"port": "http"}]}]}),
    ));
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let ingress = acls(&rows, names::KIND_NETWORK_POLICY, "x/in");
    assert_eq!(ingress.len(), 2, "{ingress:#?}");
    let pg = pg_of(&fx, "x/in");
    let m8080 = &ingress[&format!("{pg}:Ingress:0:any:TCP/http/8080")];
    assert!(m8080.ends_with("tcp.dst == 8080"), "{m8080}");
    assert!(
        m8080.starts_with(&format!("outport == @{pg} && (ip4.dst == $peer.x.")),
        "{m8080}"
    );
    // Each number's sets hold exactly the pods with that number.
    let set8080 = m8080
        .split("ip4.dst == $")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(set8080.ends_with(".p8080.v4"));
    let s1 = fx.decisions.pod_addresses["x/s1"].ips[0].addr().to_string();
    assert_eq!(
        set_of(named(&rows, Table::AddressSet, set8080).get("addresses")),
        vec![s1]
    );
    assert!(ingress.keys().any(|k| k.ends_with("TCP/http/9090")));
    // Egress: the namespace peer's pods with the port, and the ip block's
    // pods with it, per number.
    let egress = acls(&rows, names::KIND_NETWORK_POLICY, "y/out");
    let keys: Vec<&str> = egress
        .keys()
        .map(|k| k.rsplit_once(":Egress:").unwrap().1)
        .collect();
    assert_eq!(
        keys,
        vec![
            "0:sets:TCP/http/8080",
            "0:sets:TCP/http/9090",
            "1:b0:TCP/http/8080",
            "1:b0:TCP/http/9090"
        ]
    );
    let block = egress
        .values()
        .find(|m| m.contains("10.244.0.0/16") && m.contains("9090"))
        .unwrap();
    assert!(
        block.contains("ip4.dst == 10.244.0.0/16 && ip4.dst == $peer."),
        "{block}"
    );
}

#[test]
fn identical_selectors_share_one_set() {
    let mut fx = Fx::xyz();
    for i in 0..50 {
        fx.apply(np(
            "x",
            &format!("p{i}"),
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                          "podSelector": {"matchLabels": {"pod": "b"}}}],
                                "ports": [{"port": 80 + i}]}]}),
        ));
    }
    let (rows, _) = fx.rows();
    let count = |t: Table| rows.values().flatten().filter(|r| r.table == t).count();
    assert_eq!(count(Table::PortGroup), 1);
    // Namespace sets (3 x 2) and the one shared peer's pair.
    assert_eq!(count(Table::AddressSet), 6 + 2);
    assert_eq!(
        count(Table::Acl),
        50 + 1 + 1,
        "50 allows, one deny, the host"
    );
    let deny = rows[&Owner::of(names::KIND_POLICY_PODS, "x/pod=a")]
        .iter()
        .find(|r| r.table == Table::Acl)
        .unwrap();
    assert_eq!(deny.get("name"), Some(&Col::set(["x/p0+49:Ingress:deny"])));
}

/// Every `$set` and `@group` an ACL names is a row some owner writes,
/// every ACL hangs from a row that exists, names fit OVN's rules.
#[test]
fn every_reference_resolves_and_every_name_is_valid() {
    let mut fx = Fx::xyz();
    let specs = [
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}},
                                  {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
                                  {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                           "ports": [{"port": "serve-80-tcp"}, {"port": 81}, {"protocol": "UDP", "port": "serve-80-udp"}]}]}),
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "nowhere"}}}]},
                           {"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}),
    ];
    for (i, spec) in specs.iter().enumerate() {
        fx.apply(np(
            ["x", "y", "z"][i],
            &format!("a-very-long-policy-name-that-does-not-fit-{i}"),
            spec.clone(),
        ));
    }
    let (rows, problems) = fx.rows();
    assert!(problems.is_empty(), "{problems:?}");
    let have = |t: Table| -> BTreeSet<String> {
        rows.values()
            .flatten()
            .filter(|r| r.table == t)
            .filter_map(|r| r.name().map(str::to_string))
            .chain(
                fx.model
                    .namespaces
                    .keys()
                    .flat_map(|n| {
                        // The namespace translator's sets.
                        [false, true].map(|v6| names::namespace_address_set(n, v6))
                    })
                    .filter(|_| t == Table::AddressSet),
            )
            .collect()
    };
    let (sets, groups) = (have(Table::AddressSet), have(Table::PortGroup));
    let valid = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    for n in sets.iter().chain(groups.iter()) {
        assert!(valid(n), "{n} is not a valid OVN set name");
    }
    let mut acl_count = 0;
    let mut labels = BTreeSet::new();
    for r in rows.values().flatten().filter(|r| r.table == Table::Acl) {
        acl_count += 1;
        let m = s(r.get("match"));
        for tok in m.split(|c: char| c.is_whitespace() || "{},()".contains(c)) {
            if let Some(n) = tok.strip_prefix('$') {
                assert!(sets.contains(n), "{m}: no address set {n}");
            }
            if let Some(n) = tok.strip_prefix('@') {
                assert!(groups.contains(n), "{m}: no port group {n}");
            }
        }
        assert!(!m.contains("{}"), "an empty set in {m}");
        let p = &r.parents[0];
        assert!(
            (p.table == Table::PortGroup && groups.contains(&p.name))
                || p.table == Table::LogicalSwitch
        );
        let Some(Col::Set(name)) = r.get("name") else {
            panic!()
        };
        assert!(name[0].len() <= 63, "{name:?}");
        let Some(Col::Int(l)) = r.get("label") else {
            panic!()
        };
        assert!((1..=u32::MAX as i64).contains(l));
        labels.insert(*l);
    }
    assert_eq!(labels.len(), acl_count, "labels are distinct here");
    // The namespace selector matching nothing makes no ACL, not "any".
    assert!(acls(
        &rows,
        names::KIND_NETWORK_POLICY,
        "z/a-very-long-policy-name-that-does-not-fit-2"
    )
    .keys()
    .all(|k| !k.contains(":Ingress:0:")));
}

#[test]
fn unenforceable_parts_fail_closed_with_a_problem() {
    let mut fx = Fx::xyz();
    fx.apply(np(
        "x",
        "bad",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
    ));
    let (rows, problems) = fx.rows();
    assert!(acls(&rows, names::KIND_NETWORK_POLICY, "x/bad").is_empty());
    let pg = pg_of(&fx, "x/bad");
    assert_eq!(
        set_of(named(&rows, Table::PortGroup, &pg).get("ports")),
        vec!["x_a"]
    );
    assert!(acls(&rows, names::KIND_POLICY_PODS, "x/pod=a").contains_key("deny:Ingress"));
    assert_eq!(problems.len(), 1, "one Event per policy: {problems:?}");
    assert!(problems[0].note.contains("allows nothing"));
    assert_eq!(problems[0].object.kind, crate::k8s::Kind::NetworkPolicy);
    assert_eq!(problems[0].object.name, "bad");
    assert!(problems[0].note.contains("10.0.0.0/33"));
}

#[test]
fn host_network_and_unaddressed_pods_are_in_no_set() {
    let mut fx = Fx::xyz();
    let mut host = pod("x", "h", json!({"pod": "a"}), json!([]));
    host.spec.as_mut().unwrap().host_network = Some(true);
    fx.apply(host);
    fx.apply(pod("x", "pending", json!({"pod": "a"}), json!([])));
    fx.apply(np(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    let (rows, _) = fx.rows();
    let pg = pg_of(&fx, "x/p");
    assert_eq!(
        set_of(named(&rows, Table::PortGroup, &pg).get("ports")),
        vec!["x_a"]
    );
    let a4 = named(&rows, Table::AddressSet, &peer_name("x", "pod=a", false));
    assert_eq!(set_of(a4.get("addresses")).len(), 1);
}

#[test]
fn logging_follows_the_namespace_annotation() {
    let mut fx = Fx::xyz();
    fx.apply(np(
        "x",
        "p",
        json!({"ingress": [{"ports": [{"port": 80}]}]}),
    ));
    let (rows, _) = fx.rows();
    assert!(!rows.contains_key(&Owner::of(names::KIND_POLICY_METER, METER_KEY)));
    fx.apply(namespace(
        "x",
        json!({annotations::ACL_LOGGING: r#"{"deny":"warning","allow":"info"}"#}),
    ));
    assert_eq!(fx.touched(names::KIND_POLICY_METER).len(), 1);
    fx.apply(namespace("y", json!({annotations::ACL_LOGGING: "{nope"})));
    let (rows, problems) = fx.rows();
    let meter = &rows[&Owner::of(names::KIND_POLICY_METER, METER_KEY)];
    assert_eq!(meter[0].name(), Some(names::ACL_LOGGING_METER));
    assert_eq!(meter[1].get("rate"), Some(&Col::Int(LOG_RATE)));
    for r in rows.values().flatten().filter(|r| r.table == Table::Acl) {
        let action = match r.get("action") {
            Some(Col::Str(a)) => a.as_str(),
            _ => panic!(),
        };
        let want = match (r.parents[0].table, action) {
            (Table::LogicalSwitch, _) => None,
            (_, "drop") => Some("warning"),
            _ => Some("info"),
        };
        assert_eq!(r.get("log"), Some(&Col::Bool(want.is_some())));
        assert_eq!(r.get("severity"), Some(&Col::opt(want)));
        assert_eq!(
            r.get("meter"),
            Some(&Col::opt(want.map(|_| names::ACL_LOGGING_METER)))
        );
    }
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].object.name, "y");
    assert_eq!(problems[0].reason, "InvalidACLLogging");
}

#[test]
fn long_names_are_cut_with_a_hash_and_stay_distinct() {
    let a = acl::acl_name(&"n".repeat(100));
    let b = acl::acl_name(&format!("{}x", "n".repeat(99)));
    assert_eq!(a.len(), 63);
    assert_ne!(a, b);
    assert_eq!(acl::acl_name("short"), "short");
}
