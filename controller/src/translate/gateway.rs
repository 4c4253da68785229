//! Every node's way out of the cluster: its gateway router `GR-<node>`,
//! bound to the node's chassis, the `join` switch between it and
//! `cluster-router`, its external switch `ext-<node>` with a localnet port
//! onto the node's gateway bridge, and the routes, NAT and policies that
//! send pod traffic there.
//!
//! Paths, per IP family:
//! - pod → outside: `cluster-router` routes by source (`policy=src-ip`,
//!   the node subnet) to the pod's own node's gateway router, which SNATs
//!   the cluster CIDR to the node IP and routes to the bridge's default
//!   next hop. Pod → pod never reaches a gateway router: the node
//!   subnets' connected routes win over source routes of the same length.
//! - pod → its own node's IP: a policy on `cluster-router` reroutes to
//!   the node's management port, so the host receives the pod's own
//!   address (no NAT) and answers through the management port. The
//!   gateway router cannot take this path: it owns the node IP itself.
//! - pod → another node's IP: out of the pod's own gateway router like
//!   any destination outside, SNATed to its node's IP. Rerouting it to
//!   the other node's management port too (as this did for every pod)
//!   broke two things: a NodePort there met a host stack with no
//!   listener (the pod's switch balances only its own node's `^NODEIP`),
//!   and the replies of an `externalTrafficPolicy: Local` endpoint to a
//!   client on a node IP (not SNATed, by definition) were rerouted into
//!   that node's host, past the gateway router that must un-DNAT them.
//! - replies from outside: the node agent steers them from the gateway
//!   bridge into the localnet port by conntrack mark; the gateway router
//!   un-SNATs and routes the cluster CIDR back over `join`.
//! - Services: the gateway router holds the cluster-wide and the
//!   gateways' load balancer groups and SNATs load-balanced traffic to its
//!   join address (`lb_force_snat_ip=router_ip`); `cluster-router` routes
//!   each join address back to its router by destination (`/32`, `/128`),
//!   ahead of the source routes. Traffic from outside reaches the router
//!   only once the node agent's flows send it there (replies today).
//!
//! Join addresses need no allocator: a node's gateway router takes the
//! join address whose index is its node subnet's index in the cluster
//! CIDR (plus two; the first host address is `cluster-router`'s), so they
//! are unique, stable across restarts, and follow the node subnets.
//!
//! Inputs are the node's annotations written by its agent:
//! `switchyard.io/chassis-id` and `switchyard.io/gateway` (MAC, IPs, next
//! hops). A node whose agent has not published them yet has no gateway;
//! one that published without an address (or next hop) of a cluster
//! family gets a Warning Event and a gateway without that family.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use ovsdb::nb::{
    LogicalRouter, LogicalRouterPolicy, LogicalRouterPort, LogicalRouterStaticRoute, LogicalSwitch,
    LogicalSwitchPort, Nat,
};
use switchyard_api::annotations::{NodeGateway, NODE_CHASSIS, NODE_GATEWAY};
use switchyard_api::{addressing, mac, names};

use crate::config::{ClusterCidr, Config};
use crate::k8s::{Kind, ObjectRef};
use crate::model::{Change, NodeInfo};
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};

use super::service::{GROUP_CLUSTER, GROUP_GATEWAYS};
use super::{Problem, Translator, View};

/// Priority of the policies that reroute a node's pods' traffic to its own
/// IPs to its management port: above anything routing alone decides.
pub const NODE_IP_POLICY_PRIORITY: i64 = 1004;

/// The key of the one [`JoinRows`] owner.
const JOIN_KEY: &str = names::JOIN_SWITCH;

/// `cluster-router`'s join address in `join` (the first host address),
/// with the join prefix length.
pub fn router_join_net(join: IpNet) -> Option<IpNet> {
    addressing::gateway_net(join)
}

/// The join address of the gateway router of the node whose subnet is
/// `subnet`, with the join prefix length: index of `subnet` in `cidr`,
/// plus two. `None` when the subnet is outside the CIDR or the join subnet
/// is too small for that index.
pub fn node_join_net(join: IpNet, cidr: &ClusterCidr, subnet: IpNet) -> Option<IpNet> {
    if !cidr.cidr.contains(&subnet.network()) || join.addr().is_ipv4() != subnet.addr().is_ipv4() {
        return None;
    }
    let bits = |ip: IpAddr| -> u128 {
        match ip {
            IpAddr::V4(v4) => u32::from(v4).into(),
            IpAddr::V6(v6) => v6.into(),
        }
    };
    let shift = u32::from(cidr.cidr.max_prefix_len() - cidr.node_prefix);
    let index = (bits(subnet.network()) - bits(cidr.cidr.network())) >> shift;
    let ip = addressing::nth(join, index.checked_add(2)?)?;
    // The broadcast address of an IPv4 join subnet is no router's.
    if let (IpNet::V4(j), IpAddr::V4(v4)) = (join, ip) {
        if v4 == j.broadcast() {
            return None;
        }
    }
    IpNet::new(ip, join.prefix_len()).ok()
}

/// What one IP family of a node's gateway is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyPlan {
    /// The cluster CIDR of the family (SNAT source, route back to pods).
    pub cluster_cidr: IpNet,
    /// The node's pod subnet (the source route's prefix).
    pub node_subnet: IpNet,
    /// The gateway router's join address, with the join prefix length.
    pub join: IpNet,
    /// `cluster-router`'s join address.
    pub router_join: IpAddr,
    /// The node IP on the gateway bridge, with its prefix length.
    pub node_ip: IpNet,
    /// The bridge's default next hop, if it has one.
    pub next_hop: Option<IpAddr>,
    /// Every address of the node in this family (the policy's match).
    pub node_ips: BTreeSet<IpAddr>,
    /// The node's management port address (the policy's next hop).
    pub mgmt_ip: IpAddr,
}

/// A node's gateway, decided: pure data for [`gateway_rows`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayPlan {
    pub node: String,
    pub chassis: String,
    /// The gateway bridge's MAC, which the external port shares.
    pub mac: String,
    /// IPv4 first.
    pub families: Vec<FamilyPlan>,
}

fn fam(v6: bool) -> &'static str {
    if v6 {
        "v6"
    } else {
        "v4"
    }
}

/// The rows of one node's gateway.
pub fn gateway_rows(plan: &GatewayPlan) -> Vec<DesiredRow> {
    let node = plan.node.as_str();
    let owner = Owner::of(names::KIND_GATEWAY, node);
    let ids = [(names::NODE, node)];
    let gr = names::gateway_router(node);
    let ext = names::external_switch(node);
    let on_gr = |column| Parent::new(Table::LogicalRouter, &gr, column);
    let on_cluster = |column| Parent::new(Table::LogicalRouter, names::CLUSTER_ROUTER, column);
    let on_ext = Parent::new(Table::LogicalSwitch, &ext, LogicalSwitch::PORTS);
    let join_mac = plan
        .families
        .first()
        .map(|f| mac::from_ip(f.join.addr()))
        .unwrap_or_default();
    let router_port = |name: String, peer: String, parent: Parent| {
        DesiredRow::named(Table::LogicalSwitchPort, name, &owner)
            .ids(ids)
            .col(LogicalSwitchPort::TYPE, Col::str("router"))
            .col(LogicalSwitchPort::ADDRESSES, Col::set(["router"]))
            .col(
                LogicalSwitchPort::OPTIONS,
                Col::map([("router-port", peer)]),
            )
            .parent(parent)
    };
    let mut rows = vec![
        DesiredRow::named(Table::LogicalRouter, &gr, &owner)
            .ids(ids)
            .col(
                LogicalRouter::OPTIONS,
                Col::map([
                    ("chassis", plan.chassis.as_str()),
                    // Neighbours on the uplink are learnt from the replies
                    // to the router's own requests, not from every ARP
                    // request a large L2 segment carries.
                    ("always_learn_from_arp_request", "false"),
                    // The other routers on `join` are resolved on demand
                    // rather than by flows for every pair.
                    ("dynamic_neigh_routers", "true"),
                    // Load-balanced traffic leaves towards its backend
                    // from the router's own join address, so a backend on
                    // another node answers through this router (the /32
                    // join routes on cluster-router) and not its own.
                    ("lb_force_snat_ip", "router_ip"),
                ]),
            )
            // The Services' load balancers a gateway router holds: the
            // cluster-wide ones and those only traffic from outside sees.
            .col(
                LogicalRouter::LOAD_BALANCER_GROUP,
                Col::refs(Table::LoadBalancerGroup, [GROUP_CLUSTER, GROUP_GATEWAYS]),
            ),
        DesiredRow::named(Table::LogicalRouterPort, names::router_to_join(&gr), &owner)
            .ids(ids)
            .col(LogicalRouterPort::MAC, Col::Str(join_mac))
            .col(
                LogicalRouterPort::NETWORKS,
                Col::set(plan.families.iter().map(|f| f.join.to_string())),
            )
            .parent(on_gr(LogicalRouter::PORTS)),
        router_port(
            names::join_to_router(&gr),
            names::router_to_join(&gr),
            Parent::new(
                Table::LogicalSwitch,
                names::JOIN_SWITCH,
                LogicalSwitch::PORTS,
            ),
        ),
        DesiredRow::named(Table::LogicalSwitch, &ext, &owner).ids(ids),
        DesiredRow::named(
            Table::LogicalRouterPort,
            names::router_to_external(node),
            &owner,
        )
        .ids(ids)
        .col(LogicalRouterPort::MAC, Col::str(plan.mac.as_str()))
        .col(
            LogicalRouterPort::NETWORKS,
            Col::set(plan.families.iter().map(|f| f.node_ip.to_string())),
        )
        .parent(on_gr(LogicalRouter::PORTS)),
        router_port(
            names::external_to_router(node),
            names::router_to_external(node),
            on_ext.clone(),
        ),
        DesiredRow::named(Table::LogicalSwitchPort, names::localnet_port(node), &owner)
            .ids(ids)
            .col(LogicalSwitchPort::TYPE, Col::str("localnet"))
            .col(LogicalSwitchPort::ADDRESSES, Col::set(["unknown"]))
            .col(
                LogicalSwitchPort::OPTIONS,
                Col::map([("network_name", names::PHYSICAL_NETWORK)]),
            )
            .parent(on_ext),
    ];
    for f in &plan.families {
        let v6 = f.node_ip.addr().is_ipv6();
        let (fam, ip) = (fam(v6), if v6 { "ip6" } else { "ip4" });
        let route = |key: String, prefix: IpNet, hop: IpAddr, port: Option<String>| {
            DesiredRow::keyed(Table::StaticRoute, key, &owner)
                .ids(ids)
                .col(
                    LogicalRouterStaticRoute::IP_PREFIX,
                    Col::Str(prefix.to_string()),
                )
                .col(LogicalRouterStaticRoute::NEXTHOP, Col::Str(hop.to_string()))
                .col(LogicalRouterStaticRoute::OUTPUT_PORT, Col::opt(port))
        };
        if let Some(hop) = f.next_hop {
            let any = IpNet::new(f.node_ip.addr(), 0)
                .map(|n| n.trunc())
                .unwrap_or(f.node_ip);
            rows.push(
                route(
                    format!("default-{fam}"),
                    any,
                    hop,
                    Some(names::router_to_external(node)),
                )
                .col(LogicalRouterStaticRoute::POLICY, Col::opt(None::<String>))
                .parent(on_gr(LogicalRouter::STATIC_ROUTES)),
            );
        }
        rows.push(
            route(
                format!("pods-{fam}"),
                f.cluster_cidr,
                f.router_join,
                Some(names::router_to_join(&gr)),
            )
            .col(LogicalRouterStaticRoute::POLICY, Col::opt(None::<String>))
            .parent(on_gr(LogicalRouter::STATIC_ROUTES)),
        );
        rows.push(
            DesiredRow::keyed(Table::Nat, format!("snat-{fam}"), &owner)
                .ids(ids)
                .col(Nat::TYPE, Col::str("snat"))
                .col(Nat::EXTERNAL_IP, Col::Str(f.node_ip.addr().to_string()))
                .col(Nat::LOGICAL_IP, Col::Str(f.cluster_cidr.to_string()))
                .parent(on_gr(LogicalRouter::NAT)),
        );
        rows.push(
            route(format!("egress-{fam}"), f.node_subnet, f.join.addr(), None)
                .col(LogicalRouterStaticRoute::POLICY, Col::opt(Some("src-ip")))
                .parent(on_cluster(LogicalRouter::STATIC_ROUTES)),
        );
        // The gateway router's own join address, by destination and more
        // specific than any source route: what a gateway router sends
        // into the cluster from its join address is answered through it.
        let host_len = if v6 { 128 } else { 32 };
        let own = IpNet::new(f.join.addr(), host_len).unwrap_or(f.join);
        rows.push(
            route(format!("join-{fam}"), own, f.join.addr(), None)
                .col(LogicalRouterStaticRoute::POLICY, Col::opt(None::<String>))
                .parent(on_cluster(LogicalRouter::STATIC_ROUTES)),
        );
        let dst: Vec<String> = f.node_ips.iter().map(IpAddr::to_string).collect();
        let dst = match dst.as_slice() {
            [one] => one.clone(),
            many => format!("{{{}}}", many.join(", ")),
        };
        rows.push(
            DesiredRow::keyed(Table::RouterPolicy, format!("node-ip-{fam}"), &owner)
                .ids(ids)
                .col(
                    LogicalRouterPolicy::PRIORITY,
                    Col::Int(NODE_IP_POLICY_PRIORITY),
                )
                .col(
                    LogicalRouterPolicy::MATCH,
                    Col::Str(format!(
                        "{ip}.src == {} && {ip}.dst == {dst}",
                        f.node_subnet
                    )),
                )
                .col(LogicalRouterPolicy::ACTION, Col::str("reroute"))
                .col(
                    LogicalRouterPolicy::NEXTHOPS,
                    Col::set([f.mgmt_ip.to_string()]),
                )
                .parent(on_cluster(LogicalRouter::POLICIES)),
        );
    }
    rows
}

/// The join switch and `cluster-router`'s port on it.
pub fn join_rows(join_subnets: &[IpNet]) -> Vec<DesiredRow> {
    let owner = Owner::of(names::KIND_JOIN, JOIN_KEY);
    let mut nets: Vec<IpNet> = join_subnets
        .iter()
        .filter_map(|j| router_join_net(*j))
        .collect();
    nets.sort_by_key(|n| n.addr().is_ipv6());
    let rtoj = names::router_to_join(names::CLUSTER_ROUTER);
    vec![
        DesiredRow::named(Table::LogicalSwitch, names::JOIN_SWITCH, &owner),
        DesiredRow::named(Table::LogicalRouterPort, &rtoj, &owner)
            .col(
                LogicalRouterPort::MAC,
                Col::Str(
                    nets.first()
                        .map(|n| mac::from_ip(n.addr()))
                        .unwrap_or_default(),
                ),
            )
            .col(
                LogicalRouterPort::NETWORKS,
                Col::set(nets.iter().map(IpNet::to_string)),
            )
            .parent(Parent::new(
                Table::LogicalRouter,
                names::CLUSTER_ROUTER,
                LogicalRouter::PORTS,
            )),
        DesiredRow::named(
            Table::LogicalSwitchPort,
            names::join_to_router(names::CLUSTER_ROUTER),
            &owner,
        )
        .col(LogicalSwitchPort::TYPE, Col::str("router"))
        .col(LogicalSwitchPort::ADDRESSES, Col::set(["router"]))
        .col(
            LogicalSwitchPort::OPTIONS,
            Col::map([("router-port", rtoj)]),
        )
        .parent(Parent::new(
            Table::LogicalSwitch,
            names::JOIN_SWITCH,
            LogicalSwitch::PORTS,
        )),
    ]
}

/// Decides a node's gateway from its annotations, its subnets and the
/// configuration, reporting what keeps a family (or all of it) out.
pub fn plan(
    node: &NodeInfo,
    subnets: &[IpNet],
    config: &Config,
    problems: &mut Vec<Problem>,
) -> Option<GatewayPlan> {
    let problem = |reason: &'static str, note: String| Problem {
        object: ObjectRef::node(&node.name, &node.uid),
        reason,
        note,
    };
    // Not published yet: the agent is starting (or runs without a gateway).
    let text = node.annotation(NODE_GATEWAY)?;
    let gw = match NodeGateway::parse(text) {
        Ok(gw) => gw,
        Err(e) => {
            problems.push(problem("GatewayInvalid", e.to_string()));
            return None;
        }
    };
    let Some(chassis) = node
        .annotation(NODE_CHASSIS)
        .map(str::trim)
        .filter(|c| !c.is_empty())
    else {
        problems.push(problem(
            "GatewayUnbound",
            format!("node {} has a gateway but no {NODE_CHASSIS}", node.name),
        ));
        return None;
    };
    let mut families = Vec::new();
    let mut cidrs: Vec<&ClusterCidr> = config.cluster_cidrs.iter().collect();
    cidrs.sort_by_key(|c| c.cidr.addr().is_ipv6());
    for cidr in cidrs {
        let v6 = cidr.cidr.addr().is_ipv6();
        let family = if v6 { "IPv6" } else { "IPv4" };
        let Some(subnet) = subnets
            .iter()
            .find(|s| s.addr().is_ipv6() == v6)
            .map(IpNet::trunc)
        else {
            continue;
        };
        let Some(node_ip) = gw.ip(v6) else {
            problems.push(problem(
                "NodeAddressMissing",
                format!(
                    "gateway bridge {} of node {} has no {family} address: its pods cannot leave the cluster over {family}",
                    gw.bridge, node.name
                ),
            ));
            continue;
        };
        let Some(join_subnet) = config
            .join_subnets
            .iter()
            .find(|j| j.addr().is_ipv6() == v6)
        else {
            problems.push(problem(
                "JoinSubnetMissing",
                format!("no {family} join subnet is configured"),
            ));
            continue;
        };
        let (Some(join), Some(router_join), Some(mgmt_ip)) = (
            node_join_net(*join_subnet, cidr, subnet),
            router_join_net(*join_subnet),
            addressing::management(subnet),
        ) else {
            problems.push(problem(
                "JoinSubnetExhausted",
                format!(
                    "join subnet {join_subnet} has no address for node subnet {subnet} of {}",
                    cidr.cidr
                ),
            ));
            continue;
        };
        let next_hop = gw.next_hop(v6);
        if next_hop.is_none() {
            problems.push(problem(
                "NoDefaultRoute",
                format!(
                    "gateway bridge {} of node {} has no {family} default route: its pods reach only {}",
                    gw.bridge,
                    node.name,
                    node_ip.trunc()
                ),
            ));
        }
        let node_ips: BTreeSet<IpAddr> = gw
            .ips
            .iter()
            .map(IpNet::addr)
            .chain(node.internal_ips())
            .filter(|ip| ip.is_ipv6() == v6)
            .collect();
        families.push(FamilyPlan {
            cluster_cidr: cidr.cidr,
            node_subnet: subnet,
            join,
            router_join: router_join.addr(),
            node_ip,
            next_hop,
            node_ips,
            mgmt_ip,
        });
    }
    if families.is_empty() {
        return None;
    }
    Some(GatewayPlan {
        node: node.name.clone(),
        chassis: chassis.to_string(),
        mac: gw.mac.to_ascii_lowercase(),
        families,
    })
}

/// Owner kind `Gateway`, one owner per node.
pub struct Gateways;

impl Translator for Gateways {
    fn kind(&self) -> &'static str {
        names::KIND_GATEWAY
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_CLUSTER, names::KIND_JOIN]
    }
    fn tables(&self) -> &'static [Table] {
        &[
            Table::LogicalRouter,
            Table::LogicalRouterPort,
            Table::LogicalSwitch,
            Table::LogicalSwitchPort,
            Table::StaticRoute,
            Table::RouterPolicy,
            Table::Nat,
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
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let node = view.model.nodes.get(key)?;
        let subnets = view.decisions.node_subnets.get(key)?;
        let plan = plan(node, subnets, view.config, problems)?;
        Some(gateway_rows(&plan))
    }
}

/// The join subnets of the families the cluster has.
fn join_subnets(config: &Config) -> Vec<IpNet> {
    config
        .join_subnets
        .iter()
        .filter(|j| {
            config
                .cluster_cidrs
                .iter()
                .any(|c| c.cidr.addr().is_ipv6() == j.addr().is_ipv6())
        })
        .copied()
        .collect()
}

/// Owner kind `Join`: the one join switch.
pub struct JoinRows;

impl Translator for JoinRows {
    fn kind(&self) -> &'static str {
        names::KIND_JOIN
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
        &[]
    }
    fn owners(&self, _: &Change, _: &View, _: &mut Vec<String>) {}
    fn all(&self, view: &View) -> Vec<String> {
        if join_subnets(view.config).is_empty() {
            Vec::new()
        } else {
            vec![JOIN_KEY.to_string()]
        }
    }
    fn rows(&self, _: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let nets = join_subnets(view.config);
        (!nets.is_empty()).then(|| join_rows(&nets))
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
