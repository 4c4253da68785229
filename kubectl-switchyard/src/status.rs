//! `status`: per node, what the agent published and what OVN knows of the
//! node; the controller's leader; the NB and SB database clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use switchyard_api::{addressing, annotations, names, NodeSubnets};

use crate::cluster::ClusterView;
use crate::error::Result;
use crate::ovn::{self, Member, NB_DB, SB_DB};

/// Where to look.
#[derive(Clone, Debug)]
pub struct StatusOptions {
    pub nb: String,
    pub sb: String,
    /// The controller's leader election Lease.
    pub lease_namespace: String,
    pub lease_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    /// The kubelet's `Ready` condition.
    pub ready: Option<bool>,
    /// The chassis the node agent published (`switchyard.io/chassis-id`):
    /// absent until the agent has run on the node.
    pub chassis: Option<String>,
    /// Whether SB has that chassis (its ovn-controller registered).
    pub chassis_registered: bool,
    /// VIF ports bound on the chassis.
    pub bound_ports: usize,
    /// The node's pod subnets and their gateway (the router port address).
    pub subnets: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    /// Whether NB has the node's switch (the controller translated it).
    pub switch_in_nb: bool,
    /// The gateway bridge the node agent published
    /// (`switchyard.io/gateway`): bridge and node addresses.
    pub bridge: Option<String>,
    /// Whether NB has the node's gateway router `GR-<node>`.
    pub gateway_router_in_nb: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderStatus {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    /// Renewed longer ago than the lease's duration.
    pub expired: bool,
}

#[derive(Clone, Debug)]
pub struct Status {
    pub nodes: Vec<NodeStatus>,
    pub leader: Option<LeaderStatus>,
    pub nb: Vec<Member>,
    pub sb: Vec<Member>,
    /// Why NB or SB rows could not be read (status still reports the rest).
    pub errors: Vec<String>,
}

/// A node's pod subnets: `spec.podCIDRs`, else Switchyard's annotation.
pub(crate) fn node_subnets(node: &Node) -> Vec<IpNet> {
    let from_spec: Vec<IpNet> = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !from_spec.is_empty() {
        return from_spec;
    }
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::NODE_SUBNETS))
        .and_then(|t| NodeSubnets::parse(t).ok())
        .map(|s| s.0)
        .unwrap_or_default()
}

/// What OVN says about chassis and switches.
#[derive(Default)]
struct OvnFacts {
    /// chassis name -> bound VIF ports.
    chassis: BTreeMap<String, usize>,
    switches: BTreeSet<String>,
    routers: BTreeSet<String>,
}

async fn ovn_facts(opts: &StatusOptions) -> Result<OvnFacts> {
    let mut facts = OvnFacts::default();
    let sb = ovn::connect(&opts.sb).await?;
    let mut by_uuid = BTreeMap::new();
    for row in ovn::select(&sb, &opts.sb, SB_DB, "Chassis", &["name"]).await? {
        let name = row.str("name").unwrap_or_default().to_string();
        if let Some(u) = row.uuid() {
            by_uuid.insert(u, name.clone());
        }
        facts.chassis.insert(name, 0);
    }
    for row in ovn::select(&sb, &opts.sb, SB_DB, "Port_Binding", &["chassis", "type"]).await? {
        if row.str("type").unwrap_or_default() != "" {
            continue;
        }
        let bound = row.get("chassis").map(|v| v.uuids()).unwrap_or_default();
        for u in bound {
            if let Some(n) = by_uuid.get(&u).and_then(|name| facts.chassis.get_mut(name)) {
                *n += 1;
            }
        }
    }
    let nb = ovn::connect(&opts.nb).await?;
    for row in ovn::select(&nb, &opts.nb, NB_DB, "Logical_Switch", &["name"]).await? {
        facts
            .switches
            .insert(row.str("name").unwrap_or_default().to_string());
    }
    for row in ovn::select(&nb, &opts.nb, NB_DB, "Logical_Router", &["name"]).await? {
        facts
            .routers
            .insert(row.str("name").unwrap_or_default().to_string());
    }
    Ok(facts)
}

/// Gathers the status; OVN that cannot be reached is reported, not fatal.
pub async fn status(cluster: &dyn ClusterView, opts: &StatusOptions) -> Result<Status> {
    let mut errors = Vec::new();
    let facts = match ovn_facts(opts).await {
        Ok(f) => f,
        Err(e) => {
            errors.push(e.to_string());
            OvnFacts::default()
        }
    };
    let mut nodes = Vec::new();
    for n in cluster.nodes().await? {
        let name = n.metadata.name.clone().unwrap_or_default();
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True");
        let chassis = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::NODE_CHASSIS))
            .cloned();
        let bound = chassis.as_ref().and_then(|c| facts.chassis.get(c)).copied();
        let bridge = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::NODE_GATEWAY))
            .map(|t| match annotations::NodeGateway::parse(t) {
                Ok(gw) => format!(
                    "{} {}",
                    gw.bridge,
                    gw.ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Err(e) => format!("INVALID ({e})"),
            });
        let subnets = node_subnets(&n);
        nodes.push(NodeStatus {
            ready,
            chassis_registered: bound.is_some(),
            bound_ports: bound.unwrap_or(0),
            gateways: subnets
                .iter()
                .filter_map(|s| addressing::gateway(*s))
                .collect(),
            subnets,
            switch_in_nb: facts.switches.contains(&names::node_switch(&name)),
            gateway_router_in_nb: facts.routers.contains(&names::gateway_router(&name)),
            bridge,
            chassis,
            name,
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let leader = cluster
        .lease(&opts.lease_namespace, &opts.lease_name)
        .await?
        .and_then(|l| l.spec)
        .map(|s| {
            let renewed = s.renew_time.map(|t| t.0);
            let duration = i64::from(s.lease_duration_seconds.unwrap_or(0));
            let expired =
                renewed.is_none_or(|r| r.as_second() + duration < Timestamp::now().as_second());
            LeaderStatus {
                holder: s.holder_identity.filter(|h| !h.is_empty()),
                renewed,
                expired,
            }
        });
    Ok(Status {
        nodes,
        leader,
        nb: ovn::cluster_health(&opts.nb, NB_DB).await?,
        sb: ovn::cluster_health(&opts.sb, SB_DB).await?,
        errors,
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn members(db: &str, members: &[Member]) -> Vec<String> {
    let (_, summary) = ovn::health_summary(members);
    let mut out = vec![format!("{db} {summary}")];
    for m in members {
        out.push(match &m.state {
            Ok(s) => format!(
                "  {}: {}{}{}",
                m.remote,
                if s.leader { "leader" } else { "follower" },
                if s.connected { "" } else { ", DISCONNECTED" },
                s.sid
                    .as_deref()
                    .map(|id| format!(", server {id}"))
                    .unwrap_or_default()
            ),
            Err(e) => format!("  {}: unreachable: {e}", m.remote),
        });
    }
    out
}

impl Status {
    /// Whether everything reports healthy.
    pub fn healthy(&self) -> bool {
        self.errors.is_empty()
            && self
                .nodes
                .iter()
                .all(|n| n.ready != Some(false) && n.chassis_registered && n.switch_in_nb)
            && self
                .leader
                .as_ref()
                .is_some_and(|l| l.holder.is_some() && !l.expired)
            && ovn::health_summary(&self.nb).0
            && ovn::health_summary(&self.sb).0
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out =
            vec!["NODE  READY  AGENT (CHASSIS)  IN SB  BOUND PORTS  SWITCH  GATEWAY  GATEWAY BRIDGE  GATEWAY ROUTER".to_string()];
        for n in &self.nodes {
            out.push(format!(
                "{}  {}  {}  {}  {}  {}  {}  {}  {}",
                n.name,
                n.ready.map(yes).unwrap_or("unknown"),
                n.chassis
                    .as_deref()
                    .map(|c| format!("reporting ({c})"))
                    .unwrap_or_else(|| "NOT REPORTING".into()),
                yes(n.chassis_registered),
                n.bound_ports,
                if n.switch_in_nb {
                    names::node_switch(&n.name)
                } else {
                    "MISSING".into()
                },
                if n.gateways.is_empty() {
                    "none (no subnet)".to_string()
                } else {
                    n.gateways
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
                n.bridge.as_deref().unwrap_or("none published"),
                if n.gateway_router_in_nb {
                    names::gateway_router(&n.name)
                } else {
                    "none".into()
                },
            ));
        }
        out.push(match &self.leader {
            Some(LeaderStatus {
                holder: Some(h),
                renewed,
                expired,
            }) => format!(
                "controller leader: {h} (renewed {}{})",
                renewed
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "never".into()),
                if *expired { ", EXPIRED" } else { "" }
            ),
            _ => "controller leader: NONE".to_string(),
        });
        out.extend(members("NB", &self.nb));
        out.extend(members("SB", &self.sb));
        for e in &self.errors {
            out.push(format!("error: {e}"));
        }
        out
    }
}
