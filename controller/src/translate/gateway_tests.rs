use std::collections::BTreeMap;

use super::*;

fn cidr(s: &str) -> ClusterCidr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn config(cidrs: &[&str]) -> Config {
    Config {
        cluster_cidrs: cidrs.iter().map(|c| cidr(c)).collect(),
        ..Config::default()
    }
}

fn node(name: &str, gateway: Option<&str>, chassis: Option<&str>) -> NodeInfo {
    let mut annotations = BTreeMap::new();
    if let Some(g) = gateway {
        annotations.insert(NODE_GATEWAY.to_string(), g.to_string());
    }
    if let Some(c) = chassis {
        annotations.insert(NODE_CHASSIS.to_string(), c.to_string());
    }
    NodeInfo {
        name: name.into(),
        uid: format!("uid-{name}"),
        annotations,
        ..Default::default()
    }
}

const DUAL_GW: &str = r#"{"bridge":"br-phy","mac":"02:AA:00:00:00:0b",
    "ips":["198.18.0.11/24","2001:db8:18::11/64"],
    "nextHops":["198.18.0.1","2001:db8:18::1"]}"#;

fn cols(r: &DesiredRow, c: &str) -> Col {
    r.get(c)
        .cloned()
        .unwrap_or_else(|| panic!("no {c} in {r:?}"))
}

fn keyed<'a>(rows: &'a [DesiredRow], table: Table, key: &str) -> &'a DesiredRow {
    rows.iter()
        .find(|r| r.table == table && r.id.as_str() == key)
        .unwrap_or_else(|| panic!("no {table:?} {key}"))
}

#[test]
fn join_addresses_follow_the_node_subnet_index() {
    let v4 = cidr("10.244.0.0/16/24");
    let join = net("100.64.0.0/16");
    assert_eq!(router_join_net(join), Some(net("100.64.0.1/16")));
    assert_eq!(
        node_join_net(join, &v4, net("10.244.0.0/24")),
        Some(net("100.64.0.2/16"))
    );
    assert_eq!(
        node_join_net(join, &v4, net("10.244.7.0/24")),
        Some(net("100.64.0.9/16"))
    );
    // Outside the cluster CIDR, another family, or past the join subnet.
    assert_eq!(node_join_net(join, &v4, net("10.245.0.0/24")), None);
    assert_eq!(
        node_join_net(net("fd98::/64"), &v4, net("10.244.1.0/24")),
        None
    );
    let small = net("100.64.0.0/29");
    assert_eq!(
        node_join_net(small, &v4, net("10.244.4.0/24")),
        Some(net("100.64.0.6/29"))
    );
    assert_eq!(
        node_join_net(small, &v4, net("10.244.5.0/24")),
        None,
        "broadcast"
    );
    assert_eq!(node_join_net(small, &v4, net("10.244.6.0/24")), None);
    let v6 = cidr("fd00:10:244::/48/64");
    assert_eq!(
        node_join_net(net("fd98::/64"), &v6, net("fd00:10:244:3::/64")),
        Some(net("fd98::5/64"))
    );
}

#[test]
fn dual_stack_gateway_rows() {
    let cfg = config(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]);
    let mut problems = Vec::new();
    let n = node("w1", Some(DUAL_GW), Some("chassis-w1"));
    let subnets = [net("10.244.1.0/24"), net("fd00:10:244:1::/64")];
    let p = plan(&n, &subnets, &cfg, &mut problems).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(p.mac, "02:aa:00:00:00:0b");
    let rows = gateway_rows(&p);
    let named: Vec<(Table, &str)> = rows
        .iter()
        .filter_map(|r| Some((r.table, r.name()?)))
        .collect();
    assert_eq!(
        named,
        vec![
            (Table::LogicalRouter, "GR-w1"),
            (Table::LogicalRouterPort, "rtoj-GR-w1"),
            (Table::LogicalSwitchPort, "jtor-GR-w1"),
            (Table::LogicalSwitch, "ext-w1"),
            (Table::LogicalRouterPort, "rtoe-GR-w1"),
            (Table::LogicalSwitchPort, "etor-GR-w1"),
            (Table::LogicalSwitchPort, "lnet-w1"),
        ]
    );
    let gr = &rows[0];
    let Col::Map(opts) = cols(gr, "options") else {
        panic!()
    };
    assert_eq!(opts["chassis"], "chassis-w1");
    assert_eq!(opts["lb_force_snat_ip"], "router_ip");
    assert_eq!(
        cols(gr, "load_balancer_group"),
        Col::refs(Table::LoadBalancerGroup, ["svc-cluster", "svc-gateways"])
    );
    let own = keyed(&rows, Table::StaticRoute, "join-v6");
    assert_eq!(cols(own, "ip_prefix"), Col::str("fd98::3/128"));
    assert_eq!(cols(own, "nexthop"), Col::str("fd98::3"));
    assert_eq!(cols(own, "policy"), Col::set(Vec::<String>::new()));
    assert_eq!(
        cols(&rows[1], "networks"),
        Col::set(["100.64.0.3/16", "fd98::3/64"])
    );
    assert_eq!(cols(&rows[1], "mac"), Col::str("0a:58:64:40:00:03"));
    assert_eq!(
        rows[2].parents,
        vec![Parent::new(Table::LogicalSwitch, "join", "ports")]
    );
    assert_eq!(
        cols(&rows[4], "networks"),
        Col::set(["198.18.0.11/24", "2001:db8:18::11/64"])
    );
    assert_eq!(cols(&rows[4], "mac"), Col::str("02:aa:00:00:00:0b"));
    assert_eq!(cols(&rows[6], "type"), Col::str("localnet"));
    assert_eq!(
        cols(&rows[6], "options"),
        Col::map([("network_name", "physnet")])
    );

    // Per family: default route out, pods back over join, SNAT, the
    // source route on cluster-router and the node IP policy.
    let d4 = keyed(&rows, Table::StaticRoute, "default-v4");
    assert_eq!(cols(d4, "ip_prefix"), Col::str("0.0.0.0/0"));
    assert_eq!(cols(d4, "nexthop"), Col::str("198.18.0.1"));
    assert_eq!(cols(d4, "output_port"), Col::set(["rtoe-GR-w1"]));
    let d6 = keyed(&rows, Table::StaticRoute, "default-v6");
    assert_eq!(cols(d6, "ip_prefix"), Col::str("::/0"));
    let back = keyed(&rows, Table::StaticRoute, "pods-v6");
    assert_eq!(cols(back, "ip_prefix"), Col::str("fd00:10:244::/48"));
    assert_eq!(cols(back, "nexthop"), Col::str("fd98::1"));
    let snat = keyed(&rows, Table::Nat, "snat-v4");
    assert_eq!(cols(snat, "type"), Col::str("snat"));
    assert_eq!(cols(snat, "external_ip"), Col::str("198.18.0.11"));
    assert_eq!(cols(snat, "logical_ip"), Col::str("10.244.0.0/16"));
    assert_eq!(
        snat.parents,
        vec![Parent::new(Table::LogicalRouter, "GR-w1", "nat")]
    );
    let egress = keyed(&rows, Table::StaticRoute, "egress-v4");
    assert_eq!(cols(egress, "ip_prefix"), Col::str("10.244.1.0/24"));
    assert_eq!(cols(egress, "nexthop"), Col::str("100.64.0.3"));
    assert_eq!(cols(egress, "policy"), Col::set(["src-ip"]));
    assert_eq!(
        egress.parents,
        vec![Parent::new(
            Table::LogicalRouter,
            "cluster-router",
            "static_routes"
        )]
    );
    let pol = keyed(&rows, Table::RouterPolicy, "node-ip-v6");
    assert_eq!(
        cols(pol, "match"),
        Col::str("ip6.src == fd00:10:244:1::/64 && ip6.dst == 2001:db8:18::11")
    );
    assert_eq!(cols(pol, "nexthops"), Col::set(["fd00:10:244:1::2"]));
    assert_eq!(cols(pol, "action"), Col::str("reroute"));
    for r in &rows {
        let Some(Col::Map(ids)) = r.get("external_ids") else {
            panic!("no external_ids")
        };
        assert_eq!(ids[names::OWNER_KIND], "Gateway");
        assert_eq!(ids[names::OWNER], "w1");
        assert_eq!(ids[names::NODE], "w1");
    }
}

#[test]
fn node_ips_from_status_join_the_policy_match() {
    let cfg = config(&["10.244.0.0/16/24"]);
    let mut n = node(
        "w2",
        Some(
            r#"{"bridge":"br-ex","mac":"02:00:00:00:00:02","ips":["192.0.2.2/24"],"nextHops":["192.0.2.1"]}"#,
        ),
        Some("c2"),
    );
    n.addresses = vec![
        ("InternalIP".into(), "192.0.2.9".parse().unwrap()),
        ("InternalIP".into(), "2001:db8::9".parse().unwrap()),
    ];
    let p = plan(&n, &[net("10.244.2.0/24")], &cfg, &mut Vec::new()).unwrap();
    let rows = gateway_rows(&p);
    let pol = keyed(&rows, Table::RouterPolicy, "node-ip-v4");
    assert_eq!(
        cols(pol, "match"),
        Col::str("ip4.src == 10.244.2.0/24 && ip4.dst == {192.0.2.2, 192.0.2.9}")
    );
    assert!(rows.iter().all(|r| !r.id.as_str().ends_with("-v6")));
}

#[test]
fn missing_inputs_are_reported_on_the_node() {
    let cfg = config(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]);
    let subnets = [net("10.244.1.0/24"), net("fd00:10:244:1::/64")];
    // Not published yet: no rows, nothing to say.
    let mut problems = Vec::new();
    assert!(plan(&node("a", None, Some("c")), &subnets, &cfg, &mut problems).is_none());
    assert!(problems.is_empty());
    // Published but unparsable.
    assert!(plan(
        &node("a", Some("{"), Some("c")),
        &subnets,
        &cfg,
        &mut problems
    )
    .is_none());
    assert_eq!(problems[0].reason, "GatewayInvalid");
    assert_eq!(problems[0].object, ObjectRef::node("a", "uid-a"));
    // No chassis to bind to.
    problems.clear();
    assert!(plan(
        &node("a", Some(DUAL_GW), None),
        &subnets,
        &cfg,
        &mut problems
    )
    .is_none());
    assert_eq!(problems[0].reason, "GatewayUnbound");
    // IPv4 only on the bridge, no default route: IPv6 is left out and
    // both are said.
    problems.clear();
    let v4_only = r#"{"bridge":"br-phy","mac":"02:00:00:00:00:01","ips":["198.18.0.11/24"]}"#;
    let p = plan(
        &node("a", Some(v4_only), Some("c")),
        &subnets,
        &cfg,
        &mut problems,
    )
    .unwrap();
    let reasons: Vec<&str> = problems.iter().map(|p| p.reason).collect();
    assert_eq!(reasons, ["NoDefaultRoute", "NodeAddressMissing"]);
    assert!(problems[1].note.contains("IPv6"), "{}", problems[1].note);
    let rows = gateway_rows(&p);
    assert!(rows
        .iter()
        .all(|r| r.id.as_str() != "default-v4" && !r.id.as_str().ends_with("-v6")));
    assert_eq!(cols(&rows[1], "networks"), Col::set(["100.64.0.3/16"]));
    // No address at all: no gateway.
    problems.clear();
    let none = r#"{"bridge":"br-phy","mac":"02:00:00:00:00:01","ips":[]}"#;
    assert!(plan(
        &node("a", Some(none), Some("c")),
        &subnets,
        &cfg,
        &mut problems
    )
    .is_none());
    assert_eq!(problems.len(), 2);
}

#[test]
fn ipv6_only_gateway() {
    let cfg = config(&["fd00:10:244::/48/64"]);
    let gw = r#"{"bridge":"br-phy","mac":"02:00:00:00:00:01","ips":["198.18.0.11/24","2001:db8:18::11/64"],"nextHops":["2001:db8:18::1"]}"#;
    let mut problems = Vec::new();
    let p = plan(
        &node("v6", Some(gw), Some("c")),
        &[net("fd00:10:244::/64")],
        &cfg,
        &mut problems,
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let rows = gateway_rows(&p);
    assert_eq!(cols(&rows[1], "networks"), Col::set(["fd98::2/64"]));
    assert_eq!(cols(&rows[4], "networks"), Col::set(["2001:db8:18::11/64"]));
    assert_eq!(
        cols(keyed(&rows, Table::Nat, "snat-v6"), "external_ip"),
        Col::str("2001:db8:18::11")
    );
}

#[test]
fn join_rows_hang_from_cluster_router() {
    let rows = join_rows(&[net("fd98::/64"), net("100.64.0.0/16")]);
    assert_eq!(rows[0].name(), Some("join"));
    assert_eq!(rows[1].name(), Some("rtoj-cluster-router"));
    assert_eq!(
        cols(&rows[1], "networks"),
        Col::set(["100.64.0.1/16", "fd98::1/64"])
    );
    assert_eq!(cols(&rows[1], "mac"), Col::str("0a:58:64:40:00:01"));
    assert_eq!(
        cols(&rows[2], "options"),
        Col::map([("router-port", "rtoj-cluster-router")])
    );
}
