//! Traffic policies, ClientIP affinity, conflicting addresses, and which
//! owners a change touches.

use super::*;

#[test]
fn external_traffic_policy_local_load_balancer() {
    let mut svc = service(
        "lb",
        1,
        ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ip: Some("10.96.0.30".into()),
            external_ips: Some(vec!["192.0.2.10".into()]),
            ports: Some(vec![port("", "UDP", 53, Some(30053))]),
            external_traffic_policy: Some("Local".into()),
            ..Default::default()
        },
    );
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.51.100.7".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let eps = slice(
        "lb",
        "IPv4",
        &[("", "UDP", 5353)],
        &[
            ("10.244.1.5", "n1", true, false),
            ("10.244.2.5", "n2", false, true),
            ("10.244.2.6", "n2", false, false),
        ],
    );
    let w = World::new(
        vec![svc],
        vec![eps],
        vec![
            node("n1", &["192.168.0.1"]),
            node("n2", &["192.168.0.2"]),
            node("n3", &["192.168.0.3"]),
        ],
    );
    let (lbs, problems) = w.lbs("ns/lb");
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<&str> = lbs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "svc:ns/lb:udp",
            "svc:ns/lb:udp:gateway-local:v4",
            "svc:ns/lb:udp:nodeport:v4",
            "svc:ns/lb:udp:switches"
        ]
    );
    // Inside the cluster every ready endpoint serves, external IPs too.
    assert_eq!(
        lbs["svc:ns/lb:udp"].vips,
        m(&[("10.96.0.30:53", "10.244.1.5:5353")])
    );
    assert_eq!(
        lbs["svc:ns/lb:udp:switches"].vips,
        m(&[
            ("192.0.2.10:53", "10.244.1.5:5353"),
            ("198.51.100.7:53", "10.244.1.5:5353")
        ])
    );
    assert_eq!(
        lbs["svc:ns/lb:udp:switches"].groups,
        groups(&[GROUP_SWITCHES])
    );
    assert_eq!(
        lbs["svc:ns/lb:udp:nodeport:v4"].groups,
        groups(&[GROUP_SWITCHES])
    );
    // From outside, each node its own endpoints, the client's address kept.
    let var = "^local.ns.lb.udp.53.v4";
    let gw = &lbs["svc:ns/lb:udp:gateway-local:v4"];
    assert_eq!(
        gw.vips,
        m(&[
            ("^NODEIP_V4:30053", var),
            ("192.0.2.10:53", var),
            ("198.51.100.7:53", var)
        ])
    );
    assert_eq!(gw.groups, groups(&[GROUP_GATEWAYS]));
    assert_eq!(
        gw.options.get("skip_snat").map(String::as_str),
        Some("true")
    );
    assert_eq!(gw.options.get("ct_flush").map(String::as_str), Some("true"));
    // n2 has no ready endpoint: its serving, terminating one is used; n3
    // has none and its variable expands to nothing.
    let local = "local.ns.lb.udp.53.v4";
    assert_eq!(w.vars("n1")[local], "10.244.1.5:5353");
    assert_eq!(w.vars("n2")[local], "10.244.2.5:5353");
    assert_eq!(w.vars("n3")[local], "");
    assert_eq!(w.vars("n3")["NODEIP_V4"], "192.168.0.3");
}

#[test]
fn internal_traffic_policy_local_uses_the_node_view() {
    let svc = service(
        "itp",
        1,
        ServiceSpec {
            cluster_ips: Some(vec!["10.96.0.40".into(), "fd00:96::28".into()]),
            ports: Some(vec![port("", "TCP", 80, None)]),
            internal_traffic_policy: Some("Local".into()),
            ..Default::default()
        },
    );
    let v4 = slice(
        "itp",
        "IPv4",
        &[("", "TCP", 80)],
        &[("10.244.1.5", "n1", true, false)],
    );
    let w = World::new(vec![svc], vec![v4], vec![node("n1", &[]), node("n2", &[])]);
    let (lbs, _) = w.lbs("ns/itp");
    let names: Vec<&str> = lbs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["svc:ns/itp:tcp:local:v4", "svc:ns/itp:tcp:local:v6"]
    );
    assert_eq!(
        lbs["svc:ns/itp:tcp:local:v6"],
        Lb {
            vips: m(&[("[fd00:96::28]:80", "^local.ns.itp.tcp.80.v6")]),
            options: m(&[("template", "true"), ("address-family", "ipv6")]),
            groups: groups(&[GROUP_SWITCHES]),
        }
    );
    assert_eq!(
        w.vars("n1"),
        m(&[
            ("local.ns.itp.tcp.80.v4", "10.244.1.5:80"),
            ("local.ns.itp.tcp.80.v6", "")
        ])
    );
    assert_eq!(
        w.vars("n2"),
        m(&[
            ("local.ns.itp.tcp.80.v4", ""),
            ("local.ns.itp.tcp.80.v6", "")
        ])
    );
}

#[test]
fn client_ip_affinity_node_ports_list_every_node() {
    let svc = service(
        "sticky",
        1,
        ServiceSpec {
            type_: Some("NodePort".into()),
            cluster_ip: Some("10.96.0.50".into()),
            ports: Some(vec![port("", "TCP", 80, Some(30050))]),
            session_affinity: Some("ClientIP".into()),
            ..Default::default()
        },
    );
    let eps = slice(
        "sticky",
        "IPv4",
        &[("", "TCP", 80)],
        &[("10.244.1.5", "n1", true, false)],
    );
    let w = World::new(
        vec![svc],
        vec![eps],
        vec![
            node("n1", &["192.168.0.1", "192.168.9.1"]),
            node("n2", &["192.168.0.2"]),
        ],
    );
    let (lbs, _) = w.lbs("ns/sticky");
    let names: Vec<&str> = lbs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["svc:ns/sticky:tcp", "svc:ns/sticky:tcp:nodeport"]
    );
    let np = &lbs["svc:ns/sticky:tcp:nodeport"];
    assert_eq!(
        np.vips,
        m(&[
            ("192.168.0.1:30050", "10.244.1.5:80"),
            ("192.168.0.2:30050", "10.244.1.5:80")
        ])
    );
    assert_eq!(np.options["affinity_timeout"], "10800");
    assert_eq!(
        lbs["svc:ns/sticky:tcp"].options["affinity_timeout"],
        "10800"
    );
    assert_eq!(np.groups, groups(&[GROUP_SWITCHES, GROUP_GATEWAYS]));
    // A node's address changing re-translates the Service.
    let mut out = Vec::new();
    let change = Change::Node {
        name: "n2".into(),
        old: w.model.nodes.get("n2").cloned(),
        new: Some(std::sync::Arc::new(NodeInfo::from_node(&node(
            "n2",
            &["192.168.0.22"],
        )))),
    };
    Services.owners(&change, &w.view(), &mut out);
    assert_eq!(out, vec!["ns/sticky".to_string()]);
    out.clear();
    NodeServices.owners(&change, &w.view(), &mut out);
    assert_eq!(out, vec!["n2".to_string()]);
}

#[test]
fn conflicting_external_ips_go_to_the_older_service() {
    let spec = |ip: &str, p: i32| ServiceSpec {
        cluster_ip: Some(ip.into()),
        external_ips: Some(vec!["192.0.2.1".into()]),
        ports: Some(vec![port("", "TCP", p, None)]),
        ..Default::default()
    };
    let old = service("first", 1, spec("10.96.0.61", 80));
    let new = service("second", 2, spec("10.96.0.62", 80));
    let other_port = service("third", 3, spec("10.96.0.63", 443));
    let w = World::new(vec![old, new, other_port], vec![], vec![]);
    let (first, p1) = w.lbs("ns/first");
    assert!(p1.is_empty());
    assert!(first["svc:ns/first:tcp"].vips.contains_key("192.0.2.1:80"));
    let (second, p2) = w.lbs("ns/second");
    assert_eq!(p2, vec!["ExternalIPConflict"]);
    assert_eq!(
        second["svc:ns/second:tcp"].vips,
        m(&[("10.96.0.62:80", "")])
    );
    let (third, p3) = w.lbs("ns/third");
    assert!(p3.is_empty(), "another port of the same IP is no conflict");
    assert!(third["svc:ns/third:tcp"].vips.contains_key("192.0.2.1:443"));
    // Deleting the older one re-translates the younger claimant.
    let mut out = Vec::new();
    let change = Change::Service {
        key: "ns/first".into(),
        old: w.model.services.get("ns/first").cloned(),
        new: None,
    };
    Services.owners(&change, &w.view(), &mut out);
    out.sort();
    assert_eq!(out, vec!["ns/first", "ns/second", "ns/third"]);
}

#[test]
fn slice_changes_touch_their_service_and_only_the_nodes_they_name() {
    let local = service(
        "itp",
        1,
        ServiceSpec {
            cluster_ip: Some("10.96.0.70".into()),
            ports: Some(vec![port("", "TCP", 80, None)]),
            internal_traffic_policy: Some("Local".into()),
            ..Default::default()
        },
    );
    let plain = service(
        "plain",
        2,
        ServiceSpec {
            cluster_ip: Some("10.96.0.71".into()),
            ports: Some(vec![port("", "TCP", 80, None)]),
            ..Default::default()
        },
    );
    let w = World::new(
        vec![local, plain],
        vec![],
        vec![node("n1", &[]), node("n2", &[]), node("n3", &[])],
    );
    let s = |svc: &str| {
        std::sync::Arc::new(slice(
            svc,
            "IPv4",
            &[("", "TCP", 80)],
            &[
                ("10.244.1.5", "n1", true, false),
                ("10.244.3.5", "n3", true, false),
            ],
        ))
    };
    let change = |svc: &str| Change::EndpointSlice {
        key: format!("ns/{svc}-IPv4"),
        old: None,
        new: Some(s(svc)),
    };
    let mut out = Vec::new();
    Services.owners(&change("itp"), &w.view(), &mut out);
    assert_eq!(out, vec!["ns/itp"]);
    out.clear();
    NodeServices.owners(&change("itp"), &w.view(), &mut out);
    assert_eq!(out, vec!["n1", "n3"]);
    out.clear();
    NodeServices.owners(&change("plain"), &w.view(), &mut out);
    assert!(out.is_empty(), "no node view of a Cluster-policy Service");
}
