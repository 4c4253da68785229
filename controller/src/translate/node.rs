//! A node's rows: its switch, the link to `cluster-router`, and the
//! management port its host reaches pods through.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use ovsdb::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use switchyard_api::{addressing, names};

use crate::k8s::Kind;
use crate::model::Change;
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};

use super::{Problem, Translator, View};

pub struct Nodes;

/// `MAC IP...` as OVN's `addresses` and `port_security` want it.
pub fn address_string(mac: &str, ips: impl IntoIterator<Item = IpAddr>) -> String {
    let mut s = mac.to_string();
    for ip in ips {
        s.push(' ');
        s.push_str(&ip.to_string());
    }
    s
}

/// Parses an LSP `addresses` entry `MAC IP...` back into its parts.
pub fn parse_address_string(s: &str) -> Option<(String, Vec<IpAddr>)> {
    let mut parts = s.split_whitespace();
    let mac = parts.next()?.to_string();
    let ips: Option<Vec<IpAddr>> = parts.map(|p| p.parse().ok()).collect();
    Some((mac, ips?)).filter(|(_, ips)| !ips.is_empty())
}

/// The rows of node `name` with pod subnets `subnets` (IPv4 first).
pub fn node_rows(name: &str, subnets: &[IpNet]) -> Vec<DesiredRow> {
    let owner = Owner::of(names::KIND_NODE, name);
    let node_id = [(names::NODE, name)];
    let switch = names::node_switch(name);
    let mut other = BTreeMap::new();
    for s in subnets {
        match s {
            IpNet::V4(_) => other.insert("subnet".to_string(), s.to_string()),
            // OVN wants the bare prefix; the length is always /64 for it.
            IpNet::V6(v6) => other.insert("ipv6_prefix".to_string(), v6.network().to_string()),
        };
    }
    // Node subnets are validated to hold these addresses before a node gets
    // them (ipam), so a subnet without them only loses its router port.
    let gateways: Vec<IpNet> = subnets
        .iter()
        .filter_map(|s| addressing::gateway_net(*s))
        .collect();
    let mgmt_ips: Vec<IpAddr> = subnets
        .iter()
        .filter_map(|s| addressing::management(*s))
        .collect();
    let router_mac = gateways
        .first()
        .map(|g| switchyard_api::mac::from_ip(g.addr()))
        .unwrap_or_default();
    let mgmt_mac = mgmt_ips
        .first()
        .map(|ip| switchyard_api::mac::from_ip(*ip))
        .unwrap_or_default();
    let on_switch = Parent::new(Table::LogicalSwitch, &switch, LogicalSwitch::PORTS);
    vec![
        DesiredRow::named(Table::LogicalSwitch, &switch, &owner)
            .ids(node_id)
            .col(LogicalSwitch::OTHER_CONFIG, Col::Map(other))
            // Every Service's load balancers, through their groups.
            .col(
                LogicalSwitch::LOAD_BALANCER_GROUP,
                Col::refs(Table::LoadBalancerGroup, super::service::SWITCH_GROUPS),
            ),
        DesiredRow::named(Table::LogicalRouterPort, names::router_port(name), &owner)
            .ids(node_id)
            .col(LogicalRouterPort::MAC, Col::Str(router_mac))
            .col(
                LogicalRouterPort::NETWORKS,
                Col::set(gateways.iter().map(|g| g.to_string())),
            )
            .parent(Parent::new(
                Table::LogicalRouter,
                names::CLUSTER_ROUTER,
                LogicalRouter::PORTS,
            )),
        DesiredRow::named(
            Table::LogicalSwitchPort,
            names::switch_router_port(name),
            &owner,
        )
        .ids(node_id)
        .col(LogicalSwitchPort::TYPE, Col::str("router"))
        .col(LogicalSwitchPort::ADDRESSES, Col::set(["router"]))
        .col(
            LogicalSwitchPort::PORT_SECURITY,
            Col::set(Vec::<String>::new()),
        )
        .col(
            LogicalSwitchPort::OPTIONS,
            Col::map([("router-port", names::router_port(name))]),
        )
        .parent(on_switch.clone()),
        DesiredRow::named(Table::LogicalSwitchPort, names::mgmt_port(name), &owner)
            .ids(node_id)
            .col(LogicalSwitchPort::TYPE, Col::str(""))
            .col(
                LogicalSwitchPort::ADDRESSES,
                Col::set([address_string(&mgmt_mac, mgmt_ips.iter().copied())]),
            )
            .col(
                LogicalSwitchPort::PORT_SECURITY,
                Col::set(Vec::<String>::new()),
            )
            .col(
                LogicalSwitchPort::OPTIONS,
                Col::map([("requested-chassis", name)]),
            )
            .parent(on_switch),
    ]
}

impl Translator for Nodes {
    fn kind(&self) -> &'static str {
        names::KIND_NODE
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_CLUSTER]
    }
    fn tables(&self) -> &'static [Table] {
        &[
            Table::LogicalSwitch,
            Table::LogicalRouterPort,
            Table::LogicalSwitchPort,
        ]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::Node]
    }
    fn owners(&self, change: &Change, _: &View, out: &mut Vec<String>) {
        match change {
            Change::NodeSubnets { name } | Change::Node { name, .. } => out.push(name.clone()),
            _ => {}
        }
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.decisions.node_subnets.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        view.model.nodes.get(key)?;
        let subnets = view.decisions.node_subnets.get(key)?;
        Some(node_rows(key, subnets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rows_dual_stack() {
        let rows = node_rows(
            "w1",
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
        );
        let ids: Vec<_> = rows.iter().map(|r| (r.table, r.name().unwrap())).collect();
        assert_eq!(
            ids,
            vec![
                (Table::LogicalSwitch, "node-w1"),
                (Table::LogicalRouterPort, "rtos-w1"),
                (Table::LogicalSwitchPort, "stor-w1"),
                (Table::LogicalSwitchPort, "mgmt-w1"),
            ]
        );
        assert_eq!(
            rows[0].get("other_config"),
            Some(&Col::map([
                ("subnet", "10.244.1.0/24"),
                ("ipv6_prefix", "fd00:10:244:1::")
            ]))
        );
        assert_eq!(rows[1].get("mac"), Some(&Col::str("0a:58:0a:f4:01:01")));
        assert_eq!(
            rows[1].get("networks"),
            Some(&Col::set(["10.244.1.1/24", "fd00:10:244:1::1/64"]))
        );
        assert_eq!(
            rows[1].parents,
            vec![Parent::new(Table::LogicalRouter, "cluster-router", "ports")]
        );
        assert_eq!(
            rows[3].get("addresses"),
            Some(&Col::set(["0a:58:0a:f4:01:02 10.244.1.2 fd00:10:244:1::2"]))
        );
        for r in &rows {
            let Some(Col::Map(ids)) = r.get("external_ids") else {
                panic!("no external_ids")
            };
            assert_eq!(ids[names::OWNER_KIND], "Node");
            assert_eq!(ids[names::OWNER], "w1");
            assert_eq!(ids[names::NODE], "w1");
        }
    }

    #[test]
    fn node_rows_ipv6_only() {
        let rows = node_rows("v6", &["fd00:1::/64".parse().unwrap()]);
        assert_eq!(
            rows[0].get("other_config"),
            Some(&Col::map([("ipv6_prefix", "fd00:1::")]))
        );
        assert_eq!(rows[1].get("mac"), Some(&Col::str("0a:58:00:00:00:01")));
        assert_eq!(rows[1].get("networks"), Some(&Col::set(["fd00:1::1/64"])));
    }

    #[test]
    fn address_strings_round_trip() {
        let s = address_string("0a:58:0a:f4:01:05", ["10.244.1.5".parse().unwrap()]);
        assert_eq!(parse_address_string(&s).unwrap().1.len(), 1);
        assert!(parse_address_string("router").is_none());
    }
}
