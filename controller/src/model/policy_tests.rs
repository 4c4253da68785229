use super::*;
use crate::model::policy_index::{PeerSet, PolicyIndex};
use serde_json::json;

fn np(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .expect("a NetworkPolicy")
}

fn sel(v: serde_json::Value) -> LabelSelector {
    serde_json::from_value(v).unwrap()
}

#[test]
fn equal_selectors_have_one_canonical_form() {
    let a = Selector::parse(Some(&sel(json!({"matchLabels": {"b": "2", "a": "1"}})))).unwrap();
    let b = Selector::parse(Some(&sel(json!({"matchExpressions": [
        {"key": "a", "operator": "In", "values": ["1"]},
        {"key": "b", "operator": "In", "values": ["2", "2"]},
    ]}))))
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.text(), "a=1,b=2");
    let c = Selector::parse(Some(&sel(json!({"matchExpressions": [
        {"key": "t", "operator": "NotIn", "values": ["y", "x"]},
        {"key": "e", "operator": "Exists"},
        {"key": "g", "operator": "DoesNotExist"},
        {"key": "i", "operator": "In", "values": ["q", "p"]},
    ]}))))
    .unwrap();
    assert_eq!(c.text(), "e,!g,i in (p,q),t notin (x,y)");
    let labels = |p: &[(&str, &str)]| -> Labels {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(c.matches(&labels(&[("e", ""), ("i", "p"), ("t", "z")])));
    assert!(!c.matches(&labels(&[("e", ""), ("i", "p"), ("t", "x")])));
    assert!(!c.matches(&labels(&[("e", ""), ("i", "p"), ("g", "1")])));
    assert!(Selector::parse(None).unwrap().is_all());
    assert!(Selector::parse(Some(&LabelSelector::default()))
        .unwrap()
        .is_all());
    // What the API server would refuse.
    for bad in [
        json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["1"]}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["1"]}]}),
        json!({"matchLabels": {"a": "has space"}}),
        json!({"matchLabels": {"": "x"}}),
    ] {
        assert!(Selector::parse(Some(&sel(bad.clone()))).is_err(), "{bad}");
    }
}

#[test]
fn policy_types_default_as_the_api_documents() {
    let p = PolicyInfo::from_policy(&np("x", "p", json!({})));
    assert!(p.isolates(Direction::Ingress) && !p.isolates(Direction::Egress));
    assert_eq!(
        p.rules(Direction::Ingress),
        Some(&[][..]),
        "deny all ingress"
    );
    let p = PolicyInfo::from_policy(&np("x", "p", json!({"egress": [{}]})));
    assert!(p.isolates(Direction::Ingress) && p.isolates(Direction::Egress));
    let p = PolicyInfo::from_policy(&np("x", "p", json!({"egress": []})));
    assert!(
        !p.isolates(Direction::Egress),
        "an empty egress list is none"
    );
    let p = PolicyInfo::from_policy(&np(
        "x",
        "p",
        json!({"policyTypes": ["Egress"], "ingress": [{}]}),
    ));
    assert!(!p.isolates(Direction::Ingress) && p.isolates(Direction::Egress));
    assert_eq!(p.rules(Direction::Egress), Some(&[][..]));
    // An unknown type isolates both ways (closed), with a problem.
    let p = PolicyInfo::from_policy(&np("x", "p", json!({"policyTypes": ["Sideways"]})));
    assert!(p.isolates(Direction::Ingress) && p.isolates(Direction::Egress));
    assert_eq!(p.problems.len(), 1);
}

#[test]
fn peers_and_ports_parse_and_empty_lists_mean_any() {
    let p = PolicyInfo::from_policy(&np(
        "x",
        "p",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [
                {},
                {"from": [], "ports": []},
                {"from": [
                    {"podSelector": {"matchLabels": {"pod": "b"}}},
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "c"}}},
                    {"namespaceSelector": {}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.9/8", "except": ["10.1.0.0/16", "192.168.0.0/16"]}},
                ],
                 "ports": [
                    {"port": 80},
                    {"protocol": "UDP", "port": 81, "endPort": 90},
                    {"protocol": "SCTP"},
                    {"port": "serve-80-tcp"},
                ]},
            ],
        }),
    ));
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let rules = p.rules(Direction::Ingress).unwrap();
    assert_eq!(rules[0], Rule::default());
    assert_eq!(rules[1], Rule::default());
    let peers = rules[2].peers.as_ref().unwrap();
    let s = |t: &str| {
        Selector::parse(Some(&sel(
            json!({"matchLabels": {t.split('=').next().unwrap(): t.split('=').nth(1).unwrap()}}),
        )))
        .unwrap()
    };
    assert!(peers.contains(&Peer::Pods {
        scope: Scope::Namespace("x".into()),
        pods: s("pod=b")
    }));
    assert!(peers.contains(&Peer::Namespaces(s("ns=y"))));
    assert!(peers.contains(&Peer::Pods {
        scope: Scope::Namespaces(s("ns=y")),
        pods: s("pod=c")
    }));
    assert!(
        peers.contains(&Peer::Namespaces(Selector::all())),
        "all pods of all namespaces"
    );
    assert!(peers.contains(&Peer::Block(IpBlock {
        cidr: "10.0.0.0/8".parse().unwrap(),
        except: vec!["10.1.0.0/16".parse().unwrap()],
    })));
    let ports = rules[2].ports.as_ref().unwrap();
    assert!(ports.contains(&Port::Range(Protocol::Tcp, 80, 80)));
    assert!(ports.contains(&Port::Range(Protocol::Udp, 81, 90)));
    assert!(ports.contains(&Port::Protocol(Protocol::Sctp)));
    assert!(ports.contains(&Port::Named(PortName {
        protocol: Protocol::Tcp,
        name: "serve-80-tcp".into()
    })));
}

#[test]
fn what_cannot_be_enforced_matches_nothing() {
    let p = PolicyInfo::from_policy(&np(
        "x",
        "p",
        json!({
            "ingress": [
                // One bad peer of two: the other stays.
                {"from": [{"ipBlock": {"cidr": "10.0.0/8"}}, {"podSelector": {}}]},
                // All peers bad: the rule goes (an empty list would be "any").
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nonsense"]}}]},
                // All ports bad: the rule goes.
                {"ports": [{"protocol": "ICMP"}, {"port": 70000}, {"port": 90, "endPort": 80}]},
                {"ports": [{"port": "http", "endPort": 90}, {"port": "NOT_A_NAME"}]},
                {"from": [{}]},
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]},
            ],
        }),
    ));
    let rules = p.rules(Direction::Ingress).unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].peers.as_ref().unwrap().len(), 1);
    assert!(p.problems.len() >= 10, "{:?}", p.problems);
    // A bad podSelector: every pod of the namespace, isolated, no rule.
    let p = PolicyInfo::from_policy(&np(
        "x",
        "p",
        json!({
            "podSelector": {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["1"]}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{}],
            "egress": [{}],
        }),
    ));
    assert!(p.pods.is_all());
    assert_eq!(p.rules(Direction::Ingress), Some(&[][..]));
    assert_eq!(p.rules(Direction::Egress), Some(&[][..]));
    assert!(p.problems[0].contains("podSelector"));
}

#[test]
fn the_index_shares_sets_and_forgets_them_with_their_last_user() {
    let mut idx = PolicyIndex::default();
    let spec = json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                     "ports": [{"port": "http"}]}],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"t": "1"}}, "podSelector": {"matchLabels": {"app": "api"}}}],
                    "ports": [{"port": "grpc"}]}],
    });
    idx.set("x/p1", Some(&np("x", "p1", spec.clone())));
    idx.set("x/p2", Some(&np("x", "p2", spec)));
    assert_eq!(idx.pod_sets().count(), 1);
    let used = idx.pod_set("x/app=web").unwrap();
    assert_eq!(used.users.len(), 2);
    let keys: Vec<&String> = idx.peer_sets().map(|(k, _)| k).collect();
    // The ingress source, the ingress named-port destinations (the
    // policy's own pods with "http"), the egress named-port destinations
    // (the peer's pods with "grpc"); no unfiltered egress set, since the
    // egress rule has only named ports.
    assert_eq!(
        keys,
        vec![
            "ns:x|app=db",
            "ns:x|app=web|TCP/http",
            "nsel:t=1|app=api|TCP/grpc"
        ]
    );
    assert_eq!(idx.peer_sets_for("other").count(), 1, "the across set");
    assert_eq!(idx.using_port_name("grpc").count(), 2);
    idx.set("x/p1", None);
    assert_eq!(idx.pod_set("x/app=web").unwrap().users.len(), 1);
    idx.set("x/p2", None);
    assert!(idx.is_empty());
    assert_eq!(idx.pod_sets().count() + idx.peer_sets().count(), 0);
    assert_eq!(idx.using_port_name("grpc").count(), 0);
    assert_eq!(idx.peer_sets_for("x").count(), 0);
    // A peer set's key names its scope, selector and port.
    let s = PeerSet::cluster_named(&PortName {
        protocol: Protocol::Udp,
        name: "dns".into(),
    });
    assert_eq!(s.key(), "nsel:||UDP/dns");
}
