//! Pure translation: the cluster model into the northbound rows it needs,
//! keyed by owner, and the pod annotation.
//!
//! Nothing here does I/O, so every rule about names, columns and ownership
//! is a unit test away. The reconciler diffs these rows against the NB
//! replica; only the columns listed here are managed (an operator's own
//! columns, e.g. `enabled`, are left alone).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use switchyard_api::{addressing, names};
use switchyard_api::{PodNetwork, Route};

/// The northbound tables the controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    LogicalRouter,
    LogicalSwitch,
    LogicalRouterPort,
    LogicalSwitchPort,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::LogicalRouter,
        Table::LogicalSwitch,
        Table::LogicalRouterPort,
        Table::LogicalSwitchPort,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::LogicalRouter => "Logical_Router",
            Table::LogicalSwitch => "Logical_Switch",
            Table::LogicalRouterPort => "Logical_Router_Port",
            Table::LogicalSwitchPort => "Logical_Switch_Port",
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Ports are not root rows in the NB schema: they exist only while a
    /// parent's `ports` column references them.
    pub fn parent(self) -> Option<Table> {
        match self {
            Table::LogicalRouterPort => Some(Table::LogicalRouter),
            Table::LogicalSwitchPort => Some(Table::LogicalSwitch),
            _ => None,
        }
    }

    /// The columns the controller manages (besides `name` and the parent's
    /// `ports`), i.e. what the NB monitor must fetch.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::LogicalRouter => &["name", "external_ids", "ports"],
            Table::LogicalSwitch => &["name", "external_ids", "other_config", "ports"],
            Table::LogicalRouterPort => &["name", "external_ids", "mac", "networks"],
            Table::LogicalSwitchPort => &[
                "name",
                "external_ids",
                "type",
                "addresses",
                "port_security",
                "options",
            ],
        }
    }
}

/// A column value in the three shapes the controller writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Col {
    Str(String),
    /// Kept sorted so comparison is order-free.
    Set(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl Col {
    pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Col {
        let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
        v.sort();
        v.dedup();
        Col::Set(v)
    }
    pub fn map<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(items: I) -> Col {
        Col::Map(
            items
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Who a row belongs to, as written in its `external_ids`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Cluster,
    Node(String),
    /// `namespace/name`.
    Pod(String),
}

impl Owner {
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Cluster => names::KIND_CLUSTER,
            Owner::Node(_) => names::KIND_NODE,
            Owner::Pod(_) => names::KIND_POD,
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Owner::Cluster => names::CLUSTER_ROUTER,
            Owner::Node(n) | Owner::Pod(n) => n,
        }
    }
    /// The owner named by a row's `external_ids`, if it is one of ours.
    pub fn from_external_ids(kind: Option<&str>, owner: Option<&str>) -> Option<Owner> {
        let owner = owner?;
        match kind? {
            names::KIND_CLUSTER => Some(Owner::Cluster),
            names::KIND_NODE => Some(Owner::Node(owner.to_string())),
            names::KIND_POD => Some(Owner::Pod(owner.to_string())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind(), self.key())
    }
}

/// One row as the controller wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRow {
    pub table: Table,
    pub name: String,
    /// Managed columns other than `name` (always including `external_ids`).
    pub cols: Vec<(&'static str, Col)>,
    /// The parent whose `ports` must reference this row.
    pub parent: Option<(Table, String)>,
    /// An `external_ids` key whose value fixes the row's identity: a row
    /// with another value is replaced, not updated (a pod recreated under
    /// the same name gets a fresh port).
    pub identity: Option<(&'static str, String)>,
}

impl DesiredRow {
    pub fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|(c, _)| *c == name).map(|(_, v)| v)
    }
}

/// A node as translation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeModel {
    pub name: String,
    /// One per family, IPv4 first.
    pub subnets: Vec<IpNet>,
}

/// A pod with its addresses decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodModel {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// With the node subnet's prefix length, IPv4 first.
    pub ips: Vec<IpNet>,
    pub mac: String,
}

impl PodModel {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn owner_ids(owner: &Owner, node: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(names::OWNER_KIND.to_string(), owner.kind().to_string());
    m.insert(names::OWNER.to_string(), owner.key().to_string());
    if let Some(n) = node {
        m.insert(names::NODE.to_string(), n.to_string());
    }
    m
}

/// The distributed router every node switch hangs off.
pub fn cluster_rows() -> Vec<DesiredRow> {
    vec![DesiredRow {
        table: Table::LogicalRouter,
        name: names::CLUSTER_ROUTER.into(),
        cols: vec![("external_ids", Col::Map(owner_ids(&Owner::Cluster, None)))],
        parent: None,
        identity: None,
    }]
}

/// `MAC IP...` as OVN's `addresses` and `port_security` want it.
pub fn address_string(mac: &str, ips: impl IntoIterator<Item = IpAddr>) -> String {
    let mut s = mac.to_string();
    for ip in ips {
        s.push(' ');
        s.push_str(&ip.to_string());
    }
    s
}

/// A node's switch, its link to `cluster-router` and its management port.
pub fn node_rows(node: &NodeModel) -> Vec<DesiredRow> {
    let owner = Owner::Node(node.name.clone());
    let ids = Col::Map(owner_ids(&owner, Some(&node.name)));
    let switch = names::node_switch(&node.name);
    let mut other = BTreeMap::new();
    for s in &node.subnets {
        match s {
            IpNet::V4(_) => other.insert("subnet".to_string(), s.to_string()),
            // OVN wants the bare prefix; the length is always /64 for it.
            IpNet::V6(v6) => other.insert("ipv6_prefix".to_string(), v6.network().to_string()),
        };
    }
    // Node subnets are validated to hold these addresses before a node gets
    // them (ipam), so a subnet without them only loses its router port.
    let gateways: Vec<IpNet> = node
        .subnets
        .iter()
        .filter_map(|s| addressing::gateway_net(*s))
        .collect();
    let mgmt_ips: Vec<IpAddr> = node
        .subnets
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
    let parent = Some((Table::LogicalSwitch, switch.clone()));
    vec![
        DesiredRow {
            table: Table::LogicalSwitch,
            name: switch.clone(),
            cols: vec![
                ("external_ids", ids.clone()),
                ("other_config", Col::Map(other)),
            ],
            parent: None,
            identity: None,
        },
        DesiredRow {
            table: Table::LogicalRouterPort,
            name: names::router_port(&node.name),
            cols: vec![
                ("external_ids", ids.clone()),
                ("mac", Col::Str(router_mac)),
                ("networks", Col::set(gateways.iter().map(|g| g.to_string()))),
            ],
            parent: Some((Table::LogicalRouter, names::CLUSTER_ROUTER.into())),
            identity: None,
        },
        DesiredRow {
            table: Table::LogicalSwitchPort,
            name: names::switch_router_port(&node.name),
            cols: vec![
                ("external_ids", ids.clone()),
                ("type", Col::Str("router".into())),
                ("addresses", Col::set(["router"])),
                ("port_security", Col::set(Vec::<String>::new())),
                (
                    "options",
                    Col::map([("router-port", names::router_port(&node.name))]),
                ),
            ],
            parent: parent.clone(),
            identity: None,
        },
        DesiredRow {
            table: Table::LogicalSwitchPort,
            name: names::mgmt_port(&node.name),
            cols: vec![
                ("external_ids", ids),
                ("type", Col::Str(String::new())),
                (
                    "addresses",
                    Col::set([address_string(&mgmt_mac, mgmt_ips.iter().copied())]),
                ),
                ("port_security", Col::set(Vec::<String>::new())),
                (
                    "options",
                    Col::map([("requested-chassis", node.name.clone())]),
                ),
            ],
            parent,
            identity: None,
        },
    ]
}

/// A pod's switch port on its node's switch.
pub fn pod_rows(pod: &PodModel) -> Vec<DesiredRow> {
    let owner = Owner::Pod(pod.key());
    let mut ids = owner_ids(&owner, Some(&pod.node));
    ids.insert(names::POD_UID.to_string(), pod.uid.clone());
    let addrs = address_string(&pod.mac, pod.ips.iter().map(|n| n.addr()));
    vec![DesiredRow {
        table: Table::LogicalSwitchPort,
        name: names::pod_port(&pod.namespace, &pod.name),
        cols: vec![
            ("external_ids", Col::Map(ids)),
            ("type", Col::Str(String::new())),
            ("addresses", Col::set([addrs.clone()])),
            ("port_security", Col::set([addrs])),
            (
                "options",
                Col::map([
                    ("requested-chassis", pod.node.clone()),
                    ("iface-id-ver", pod.uid.clone()),
                ]),
            ),
        ],
        parent: Some((Table::LogicalSwitch, names::node_switch(&pod.node))),
        identity: Some((names::POD_UID, pod.uid.clone())),
    }]
}

/// The annotation the node agent applies: addresses, MAC, the node
/// subnet's gateway per family, a route to each service CIDR of a family
/// the pod has, and the MTU.
pub fn pod_network(pod: &PodModel, service_cidrs: &[IpNet], mtu: Option<u32>) -> PodNetwork {
    let gateways: Vec<IpAddr> = pod
        .ips
        .iter()
        .filter_map(|n| addressing::gateway(n.trunc()))
        .collect();
    let routes = service_cidrs
        .iter()
        .filter_map(|svc| {
            gateways
                .iter()
                .find(|g| g.is_ipv4() == svc.addr().is_ipv4())
                .map(|g| Route {
                    dest: *svc,
                    next_hop: *g,
                })
        })
        .collect();
    PodNetwork {
        ips: pod.ips.clone(),
        mac: pod.mac.clone(),
        gateways,
        routes,
        mtu,
    }
}

/// Parses an LSP `addresses` entry `MAC IP...` back into its parts.
pub fn parse_address_string(s: &str) -> Option<(String, Vec<IpAddr>)> {
    let mut parts = s.split_whitespace();
    let mac = parts.next()?.to_string();
    let ips: Option<Vec<IpAddr>> = parts.map(|p| p.parse().ok()).collect();
    Some((mac, ips?)).filter(|(_, ips)| !ips.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual_node() -> NodeModel {
        NodeModel {
            name: "w1".into(),
            subnets: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn node_rows_dual_stack() {
        let rows = node_rows(&dual_node());
        let names: Vec<_> = rows.iter().map(|r| (r.table, r.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (Table::LogicalSwitch, "node-w1"),
                (Table::LogicalRouterPort, "rtos-w1"),
                (Table::LogicalSwitchPort, "stor-w1"),
                (Table::LogicalSwitchPort, "mgmt-w1"),
            ]
        );
        assert_eq!(
            rows[0].col("other_config"),
            Some(&Col::map([
                ("subnet", "10.244.1.0/24"),
                ("ipv6_prefix", "fd00:10:244:1::")
            ]))
        );
        assert_eq!(
            rows[1].col("mac"),
            Some(&Col::Str("0a:58:0a:f4:01:01".into()))
        );
        assert_eq!(
            rows[1].col("networks"),
            Some(&Col::set(["10.244.1.1/24", "fd00:10:244:1::1/64"]))
        );
        assert_eq!(
            rows[1].parent,
            Some((Table::LogicalRouter, "cluster-router".into()))
        );
        assert_eq!(
            rows[2].col("options"),
            Some(&Col::map([("router-port", "rtos-w1")]))
        );
        assert_eq!(rows[2].col("addresses"), Some(&Col::set(["router"])));
        assert_eq!(
            rows[3].col("addresses"),
            Some(&Col::set(["0a:58:0a:f4:01:02 10.244.1.2 fd00:10:244:1::2"]))
        );
        for r in &rows {
            let Some(Col::Map(ids)) = r.col("external_ids") else {
                panic!("no external_ids")
            };
            assert_eq!(ids[names::OWNER_KIND], "Node");
            assert_eq!(ids[names::OWNER], "w1");
            assert_eq!(ids[names::NODE], "w1");
        }
    }

    #[test]
    fn node_rows_ipv6_only() {
        let n = NodeModel {
            name: "v6".into(),
            subnets: vec!["fd00:1::/64".parse().unwrap()],
        };
        let rows = node_rows(&n);
        assert_eq!(
            rows[0].col("other_config"),
            Some(&Col::map([("ipv6_prefix", "fd00:1::")]))
        );
        assert_eq!(
            rows[1].col("mac"),
            Some(&Col::Str("0a:58:00:00:00:01".into()))
        );
        assert_eq!(rows[1].col("networks"), Some(&Col::set(["fd00:1::1/64"])));
    }

    fn pod() -> PodModel {
        PodModel {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: "u-1".into(),
            node: "w1".into(),
            ips: vec![
                "10.244.1.5/24".parse().unwrap(),
                "fd00:10:244:1::5/64".parse().unwrap(),
            ],
            mac: "0a:58:0a:f4:01:05".into(),
        }
    }

    #[test]
    fn pod_port() {
        let rows = pod_rows(&pod());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.name, "default_web-0");
        assert_eq!(r.parent, Some((Table::LogicalSwitch, "node-w1".into())));
        let addr = "0a:58:0a:f4:01:05 10.244.1.5 fd00:10:244:1::5";
        assert_eq!(r.col("addresses"), Some(&Col::set([addr])));
        assert_eq!(r.col("port_security"), Some(&Col::set([addr])));
        assert_eq!(
            r.col("options"),
            Some(&Col::map([
                ("requested-chassis", "w1"),
                ("iface-id-ver", "u-1")
            ]))
        );
        let Some(Col::Map(ids)) = r.col("external_ids") else {
            panic!()
        };
        assert_eq!(ids[names::OWNER], "default/web-0");
        assert_eq!(ids[names::POD_UID], "u-1");
        assert_eq!(r.identity, Some((names::POD_UID, "u-1".to_string())));
        assert_eq!(parse_address_string(addr).unwrap().1.len(), 2);
        assert!(parse_address_string("router").is_none());
    }

    #[test]
    fn pod_annotation() {
        let svc: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap()];
        let net = pod_network(&pod(), &svc, Some(1400));
        assert_eq!(
            net.gateways,
            vec![
                "10.244.1.1".parse::<IpAddr>().unwrap(),
                "fd00:10:244:1::1".parse().unwrap()
            ]
        );
        assert_eq!(
            net.routes.len(),
            1,
            "only the IPv4 service CIDR has a family"
        );
        assert_eq!(
            net.routes[0].next_hop,
            "10.244.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(net.mtu, Some(1400));
        // What the node agent will parse must validate.
        assert_eq!(PodNetwork::parse(&net.to_json()).unwrap(), net);
    }

    #[test]
    fn owners_round_trip() {
        for o in [
            Owner::Cluster,
            Owner::Node("a".into()),
            Owner::Pod("ns/p".into()),
        ] {
            assert_eq!(
                Owner::from_external_ids(Some(o.kind()), Some(o.key())),
                Some(o.clone())
            );
        }
        assert_eq!(Owner::from_external_ids(Some("Other"), Some("x")), None);
        assert_eq!(Owner::from_external_ids(None, Some("x")), None);
    }
}
