//! Address allocation: node subnets and pod addresses decided from the
//! model, adopted from what exists before anything new is handed out.
//!
//! The engine's one task owns the allocator, so allocation takes no locks.
//! Decisions go into [`Decisions`] (what translators read) and come out as
//! [`Change::NodeSubnets`] and [`Change::PodAddresses`], so the owners whose
//! rows depend on them (a pod's port, its namespace's address set, the
//! policies that name it) are translated in the same round and committed
//! together.
//!
//! Start-up adopts, in order: `spec.podCIDRs` and node annotations, pod
//! annotations, then what the NB replica shows (a crash between an NB write
//! and the annotation patch); only then does it allocate.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use switchyard_api::annotations::{self, parse_requested_ips, NodeSubnets as NodeSubnetsAnn};
use switchyard_api::{names, PodNetwork};
use tracing::{debug, info, info_span};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::{self, IpamError, NodeAddresses};
use crate::k8s::ObjectRef;
use crate::model::{Change, Model};
use crate::nb::view::owner_of;
use crate::nb::Table;
use crate::translate::node::parse_address_string;
use crate::translate::{Assigned, Decisions, Problem};

/// What the NB replica says was assigned before.
#[derive(Default)]
pub struct Recovery {
    node_subnets: HashMap<String, Vec<IpNet>>,
    /// pod key -> (uid, mac, addresses)
    pod_ports: HashMap<String, (String, String, Vec<IpAddr>)>,
}

impl Recovery {
    pub fn from_replica(db: &ovsdb::ReplicaDb) -> Recovery {
        let mut r = Recovery::default();
        for (_, row) in db.table(Table::LogicalRouterPort.name()).iter() {
            let Some(owner) = owner_of(row).filter(|o| o.kind() == names::KIND_NODE) else {
                continue;
            };
            let mut subnets: Vec<IpNet> = row
                .get("networks")
                .map(|v| v.strings())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.parse::<IpNet>().ok())
                .map(|n| n.trunc())
                .collect();
            subnets.sort_by_key(|s| !s.addr().is_ipv4());
            r.node_subnets.insert(owner.key().to_string(), subnets);
        }
        for (_, row) in db.table(Table::LogicalSwitchPort.name()).iter() {
            let Some(owner) = owner_of(row).filter(|o| o.kind() == names::KIND_POD) else {
                continue;
            };
            let Some(uid) = row.map_get("external_ids", names::POD_UID) else {
                continue;
            };
            let parsed = row
                .get("addresses")
                .and_then(|v| v.strings().first().and_then(|s| parse_address_string(s)));
            if let Some((mac, ips)) = parsed {
                r.pod_ports
                    .insert(owner.key().to_string(), (uid.to_string(), mac, ips));
            }
        }
        r
    }
}

struct NodeAlloc {
    /// Whether Switchyard chose the subnets (and records them).
    ours: bool,
    addrs: NodeAddresses,
}

struct PodAlloc {
    uid: String,
    node: String,
    assigned: Assigned,
}

/// See [`Allocator::usage`].
pub struct Usage {
    pub addresses: (u64, u64),
    pub subnets: Vec<(IpNet, u64, u64)>,
}

/// An annotation the allocator wants an object to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub target: ObjectRef,
    pub key: String,
    pub annotation: &'static str,
    pub value: String,
}

/// See the module doc.
pub struct Allocator {
    config: Config,
    subnets: ipam::NodeSubnets,
    nodes: HashMap<String, NodeAlloc>,
    pods: HashMap<String, PodAlloc>,
    pub decisions: Decisions,
    recovery: Recovery,
    /// Before the start-up rebuild nothing is allocated.
    started: bool,
    dirty_nodes: BTreeSet<String>,
    dirty_pods: BTreeSet<String>,
    /// When each pod was first seen, for the annotation latency.
    first_seen: HashMap<String, Instant>,
}

/// The outcome of one round.
#[derive(Default)]
pub struct Round {
    pub changes: Vec<Change>,
    pub wants: Vec<Want>,
    /// Failures worth an Event; `transient` ones are retried.
    pub problems: Vec<(Problem, bool)>,
}

impl Allocator {
    pub fn new(config: Config) -> Allocator {
        Allocator {
            subnets: ipam::NodeSubnets::new(&config.cluster_cidrs),
            config,
            nodes: HashMap::new(),
            pods: HashMap::new(),
            decisions: Decisions::default(),
            recovery: Recovery::default(),
            started: false,
            dirty_nodes: BTreeSet::new(),
            dirty_pods: BTreeSet::new(),
            first_seen: HashMap::new(),
        }
    }

    /// Takes model changes: what they invalidate is released at once, what
    /// they may need is looked at in the next [`Allocator::process`].
    pub fn observe(&mut self, model: &Model, change: &Change, round: &mut Round) {
        match change {
            Change::Node {
                name, new: None, ..
            } => self.node_gone(model, name, round),
            Change::Node { name, .. } => {
                self.dirty_nodes.insert(name.clone());
            }
            Change::Pod { key, old, new } => {
                let replaced = match (old, new) {
                    (Some(o), Some(n)) => o.uid != n.uid,
                    (_, None) => true,
                    (None, Some(_)) => false,
                };
                if replaced {
                    self.release_pod(key, round);
                }
                match new {
                    Some(_) => {
                        self.first_seen
                            .entry(key.clone())
                            .or_insert_with(Instant::now);
                        self.dirty_pods.insert(key.clone());
                    }
                    None => {
                        self.first_seen.remove(key);
                    }
                }
            }
            _ => {}
        }
    }

    /// Marks an object to be looked at again (a retry, a refused patch).
    pub fn again_node(&mut self, name: &str) {
        self.dirty_nodes.insert(name.to_string());
    }

    pub fn again_pod(&mut self, key: &str) {
        self.dirty_pods.insert(key.to_string());
    }

    pub fn first_seen(&self, key: &str) -> Option<Instant> {
        self.first_seen.get(key).copied()
    }

    fn node_gone(&mut self, model: &Model, name: &str, round: &mut Round) {
        let Some(n) = self.nodes.remove(name) else {
            return;
        };
        let _span = info_span!("node", node = name).entered();
        let subnets = n.addrs.subnets();
        info!(subnets = ?subnets, "node deleted; freeing its subnets");
        self.subnets.release(name, &subnets);
        self.decisions.node_subnets.remove(name);
        round.changes.push(Change::NodeSubnets {
            name: name.to_string(),
        });
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == name)
            .map(|(k, _)| k.clone())
            .chain(model.pods_on(name).cloned())
            .collect();
        for key in keys {
            // The node's allocator is gone with it: nothing to release.
            if self.pods.remove(&key).is_some() {
                self.decisions.pod_addresses.remove(&key);
                round
                    .changes
                    .push(Change::PodAddresses { key: key.clone() });
            }
            self.dirty_pods.insert(key);
        }
    }

    fn release_pod(&mut self, key: &str, round: &mut Round) {
        let Some(p) = self.pods.remove(key) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&p.node) {
            n.addrs.release(key, &p.assigned.ips);
        }
        self.decisions.pod_addresses.remove(key);
        round.changes.push(Change::PodAddresses {
            key: key.to_string(),
        });
    }

    /// The start-up rebuild: adopt every assignment that exists before
    /// allocating anything new, so nothing is handed out twice.
    pub fn rebuild(&mut self, model: &Model, recovery: Recovery) -> Round {
        self.recovery = recovery;
        let mut round = Round::default();
        let nodes: Vec<String> = model.nodes.keys().cloned().collect();
        let mut pods: Vec<String> = model.pods.keys().cloned().collect();
        pods.sort();
        for n in &nodes {
            self.sync_node(model, n, false, &mut round);
        }
        for n in &nodes {
            self.sync_node(model, n, true, &mut round);
        }
        for k in &pods {
            self.sync_pod(model, k, false, &mut round);
        }
        for k in &pods {
            self.sync_pod(model, k, true, &mut round);
        }
        self.dirty_nodes.clear();
        self.dirty_pods.clear();
        self.recovery = Recovery::default();
        self.started = true;
        info!(
            nodes = nodes.len(),
            pods = pods.len(),
            "rebuilt allocations"
        );
        round
    }

    /// Decides everything marked: nodes first (pods need their subnets).
    pub fn process(&mut self, model: &Model, round: &mut Round) {
        if !self.started {
            return;
        }
        while let Some(name) = self.dirty_nodes.pop_first() {
            self.sync_node(model, &name, true, round);
        }
        while let Some(key) = self.dirty_pods.pop_first() {
            self.sync_pod(model, &key, true, round);
        }
    }

    fn sync_node(&mut self, model: &Model, name: &str, allocate: bool, round: &mut Round) {
        let _span = info_span!("node", node = name).entered();
        let Some(node) = model.nodes.get(name) else {
            return;
        };
        if !self.nodes.contains_key(name) {
            let chosen: Result<Option<(Vec<IpNet>, bool)>> = (|| {
                if !node.pod_cidrs.is_empty() {
                    let nets: std::result::Result<Vec<IpNet>, _> =
                        node.pod_cidrs.iter().map(|c| c.parse::<IpNet>()).collect();
                    let mut nets = nets.map_err(|_| {
                        Error::Config(format!(
                            "spec.podCIDRs {:?} is not a list of CIDRs",
                            node.pod_cidrs
                        ))
                    })?;
                    nets.sort_by_key(|s| !s.addr().is_ipv4());
                    self.subnets.reserve(name, &nets)?;
                    return Ok(Some((nets, false)));
                }
                if let Some(text) = node.annotation(annotations::NODE_SUBNETS) {
                    let mut nets = NodeSubnetsAnn::parse(text)?.0;
                    nets.sort_by_key(|s| !s.addr().is_ipv4());
                    self.subnets.reserve(name, &nets)?;
                    return Ok(Some((nets, true)));
                }
                if let Some(nets) = self
                    .recovery
                    .node_subnets
                    .get(name)
                    .filter(|n| !n.is_empty())
                {
                    self.subnets.reserve(name, nets)?;
                    return Ok(Some((nets.clone(), true)));
                }
                if !allocate {
                    return Ok(None);
                }
                Ok(Some((self.subnets.allocate(name)?, true)))
            })();
            match chosen {
                Ok(None) => return,
                Ok(Some((nets, ours))) => {
                    info!(subnets = ?nets, ours, "node subnets");
                    self.nodes.insert(
                        name.to_string(),
                        NodeAlloc {
                            ours,
                            addrs: NodeAddresses::new(&nets),
                        },
                    );
                    self.decisions.node_subnets.insert(name.to_string(), nets);
                    round.changes.push(Change::NodeSubnets {
                        name: name.to_string(),
                    });
                    self.dirty_pods.extend(model.pods_on(name).cloned());
                }
                Err(err) => {
                    let transient = err.is_transient();
                    round.problems.push((
                        Problem {
                            object: ObjectRef::node(name, &node.uid),
                            reason: "SubnetAllocationFailed",
                            note: format!("node {name}: {err}"),
                        },
                        transient,
                    ));
                    return;
                }
            }
        }
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        if n.ours {
            round.wants.push(Want {
                target: ObjectRef::node(name, &node.uid),
                key: name.to_string(),
                annotation: annotations::NODE_SUBNETS,
                value: NodeSubnetsAnn(n.addrs.subnets()).to_json(),
            });
        }
    }

    /// Decides (once) and publishes a pod's addresses and annotation. With
    /// `allocate` false only existing assignments are adopted.
    fn sync_pod(&mut self, model: &Model, key: &str, allocate: bool, round: &mut Round) {
        let Some(pod) = model.pod(key) else {
            self.release_pod(key, round);
            return;
        };
        let _span = info_span!("pod", pod = key, uid = %pod.uid).entered();
        let node_name = pod.node.clone().unwrap_or_default();
        if !pod.on_pod_network() || !self.nodes.contains_key(&node_name) {
            if self.pods.contains_key(key) {
                debug!("pod finished or left the pod network; address released");
                self.release_pod(key, round);
            }
            // Without a ready node the pod waits; it is marked again when
            // the node gets its subnets.
            return;
        }
        let obj = ObjectRef::pod(&pod.namespace, &pod.name, &pod.uid);
        if !self.pods.contains_key(key) {
            let recovered = self
                .recovery
                .pod_ports
                .get(key)
                .filter(|(u, _, _)| *u == pod.uid)
                .cloned();
            let Some(node) = self.nodes.get_mut(&node_name) else {
                return;
            };
            let addrs = &mut node.addrs;
            let result: Result<Option<Assigned>> = (|| {
                if let Some(text) = pod.annotation(annotations::POD_NETWORK) {
                    let net = PodNetwork::parse(text)?;
                    let ips: Vec<IpAddr> = net.ips.iter().map(|n| n.addr()).collect();
                    // The annotation must fit this node's subnets exactly.
                    for n in &net.ips {
                        if !addrs.subnets().iter().any(|s| s == &n.trunc()) {
                            return Err(IpamError::Outside {
                                ip: n.addr(),
                                what: format!("node {node_name}'s subnets {:?}", addrs.subnets()),
                            }
                            .into());
                        }
                    }
                    addrs.reserve(key, &ips)?;
                    return Ok(Some(Assigned {
                        ips: net.ips,
                        mac: net.mac,
                    }));
                }
                if let Some((_, mac, ips)) = recovered {
                    if addrs.reserve(key, &ips).is_ok() {
                        let subnets = addrs.subnets();
                        let nets = ips
                            .iter()
                            .filter_map(|ip| {
                                subnets
                                    .iter()
                                    .find(|s| s.contains(ip))
                                    .and_then(|s| IpNet::new(*ip, s.prefix_len()).ok())
                            })
                            .collect();
                        return Ok(Some(Assigned { ips: nets, mac }));
                    }
                }
                if !allocate {
                    return Ok(None);
                }
                let req = match pod.annotation(annotations::REQUESTED_IPS) {
                    Some(text) => parse_requested_ips(text)?,
                    None => Vec::new(),
                };
                let ips = addrs.allocate(key, &req)?;
                let mac = switchyard_api::mac::from_ip(ips[0].addr());
                Ok(Some(Assigned { ips, mac }))
            })();
            match result {
                Ok(None) => return,
                Ok(Some(a)) => {
                    debug!(ips = ?a.ips, "addresses assigned");
                    self.decisions
                        .pod_addresses
                        .insert(key.to_string(), a.clone());
                    self.pods.insert(
                        key.to_string(),
                        PodAlloc {
                            uid: pod.uid.clone(),
                            node: node_name.clone(),
                            assigned: a,
                        },
                    );
                    round.changes.push(Change::PodAddresses {
                        key: key.to_string(),
                    });
                }
                Err(err) => {
                    let transient = err.is_transient();
                    let reason = match &err {
                        Error::Annotation(_) => "InvalidAnnotation",
                        _ => "AddressAllocationFailed",
                    };
                    round.problems.push((
                        Problem {
                            object: obj,
                            reason,
                            note: format!("pod {key}: {err}"),
                        },
                        transient,
                    ));
                    return;
                }
            }
        }
        let Some(p) = self.pods.get(key).filter(|p| p.uid == pod.uid) else {
            return;
        };
        let want = crate::translate::pod::pod_network(
            &p.assigned,
            &self.config.service_cidrs,
            self.config.mtu,
        )
        .to_json();
        round.wants.push(Want {
            target: obj,
            key: key.to_string(),
            annotation: annotations::POD_NETWORK,
            value: want,
        });
    }

    /// Addresses in use and capacity over all nodes, and per cluster CIDR
    /// the subnets used and their capacity.
    pub fn usage(&self) -> Usage {
        let (mut used, mut cap) = (0, 0);
        for n in self.nodes.values() {
            let (u, c) = n.addrs.usage();
            used += u;
            cap += c;
        }
        Usage {
            addresses: (used, cap),
            subnets: self.subnets.usage(),
        }
    }

    /// Pods that need an address and have none yet.
    pub fn waiting(&self, model: &Model) -> usize {
        model
            .pods
            .iter()
            .filter(|(k, p)| p.on_pod_network() && !self.pods.contains_key(*k))
            .count()
    }
}
