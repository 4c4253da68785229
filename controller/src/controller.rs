//! The controller proper: cluster model in, addresses allocated, desired NB
//! rows published, pod and node annotations patched.
//!
//! One task owns all state (nodes, pods, allocators), so allocation needs no
//! locks and is never racy. It drains whatever watch events are ready,
//! processes the affected objects (nodes before pods), and hands desired
//! rows to the NB writer ([`crate::reconcile`]) and annotation patches to
//! spawned requests; it never waits on either, so a pod's annotation is not
//! delayed by a large NB transaction.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use switchyard_api::annotations::{self, parse_requested_ips, NodeSubnets as NodeSubnetsAnn};
use switchyard_api::{names, PodNetwork};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, info_span, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::{self, IpamError, NodeAddresses};
use crate::k8s::{Cluster, EventRecord, Kind, KubeError, Object, ObjectRef, WatchEvent, Written};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::reconcile::{DesiredStore, NbWriter};
use crate::translate::{self, Owner, PodModel, Table};

/// What the NB replica says was assigned before (crash between an NB
/// write and the matching annotation patch).
#[derive(Default)]
pub(crate) struct Recovery {
    node_subnets: HashMap<String, Vec<IpNet>>,
    /// pod key -> (uid, mac, addresses)
    pod_ports: HashMap<String, (String, String, Vec<IpAddr>)>,
}

impl Recovery {
    fn from_replica(db: &ovsdb::ReplicaDb) -> Recovery {
        let mut r = Recovery::default();
        for (_, row) in db.table(Table::LogicalRouterPort.name()).iter() {
            if row.map_get("external_ids", names::OWNER_KIND) != Some(names::KIND_NODE) {
                continue;
            }
            let Some(node) = row.map_get("external_ids", names::OWNER) else {
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
            r.node_subnets.insert(node.to_string(), subnets);
        }
        for (_, row) in db.table(Table::LogicalSwitchPort.name()).iter() {
            if row.map_get("external_ids", names::OWNER_KIND) != Some(names::KIND_POD) {
                continue;
            }
            let (Some(key), Some(uid)) = (
                row.map_get("external_ids", names::OWNER),
                row.map_get("external_ids", names::POD_UID),
            ) else {
                continue;
            };
            let parsed = row.get("addresses").and_then(|v| {
                v.strings()
                    .first()
                    .and_then(|s| translate::parse_address_string(s))
            });
            if let Some((mac, ips)) = parsed {
                r.pod_ports
                    .insert(key.to_string(), (uid.to_string(), mac, ips));
            }
        }
        r
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WorkKind {
    Node,
    Pod,
}

type Work = (WorkKind, String);

struct NodeEntry {
    uid: String,
    pod_cidrs: Vec<String>,
    annotation: Option<String>,
    subnets: Vec<IpNet>,
    /// Whether Switchyard chose the subnets (and must record them).
    ours: bool,
    addrs: Option<NodeAddresses>,
    /// The resourceVersion the entry reflects: a patch is sent on this
    /// view only, so a decision made on an older one is refused.
    rv: Option<String>,
    inflight: bool,
}

struct Assigned {
    ips: Vec<IpNet>,
    mac: String,
}

struct PodEntry {
    uid: String,
    node: Option<String>,
    /// Scheduled, not hostNetwork, not finished.
    active: bool,
    requested: Option<String>,
    annotation: Option<String>,
    assigned: Option<Assigned>,
    first_seen: Instant,
    /// See [`NodeEntry::rv`].
    rv: Option<String>,
    inflight: bool,
    latency_recorded: bool,
}

pub(crate) struct PatchDone {
    kind: WorkKind,
    key: String,
    uid: String,
    value: String,
    /// The resourceVersion the patch was decided on.
    rv_sent: Option<String>,
    result: std::result::Result<Written, KubeError>,
}

/// All controller state, owned by one task.
pub(crate) struct State {
    config: Config,
    cluster: Arc<dyn Cluster>,
    metrics: Metrics,
    store: Arc<DesiredStore>,
    subnets: ipam::NodeSubnets,
    nodes: HashMap<String, NodeEntry>,
    pods: HashMap<String, PodEntry>,
    pods_by_node: HashMap<String, BTreeSet<String>>,
    dirty_nodes: BTreeSet<String>,
    dirty_pods: BTreeSet<String>,
    retries: BinaryHeap<Reverse<(Instant, Work)>>,
    attempts: HashMap<Work, u32>,
    last_event: HashMap<String, String>,
    patch_tx: mpsc::UnboundedSender<PatchDone>,
    /// Every API request of this leadership term; closed when it ends.
    outbox: Outbox,
    recovery: Recovery,
    /// Whether the initial rebuild is done; before it nothing is allocated.
    started: bool,
    last_gauges: Instant,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl State {
    pub(crate) fn new(
        config: Config,
        cluster: Arc<dyn Cluster>,
        metrics: Metrics,
        store: Arc<DesiredStore>,
        patch_tx: mpsc::UnboundedSender<PatchDone>,
    ) -> State {
        State {
            subnets: ipam::NodeSubnets::new(&config.cluster_cidrs),
            outbox: Outbox::new(cluster.clone(), metrics.clone(), config.patch_concurrency),
            config,
            cluster,
            metrics,
            store,
            nodes: HashMap::new(),
            pods: HashMap::new(),
            pods_by_node: HashMap::new(),
            dirty_nodes: BTreeSet::new(),
            dirty_pods: BTreeSet::new(),
            retries: BinaryHeap::new(),
            attempts: HashMap::new(),
            last_event: HashMap::new(),
            patch_tx,
            recovery: Recovery::default(),
            started: false,
            last_gauges: Instant::now(),
        }
    }

    // ---- model updates from watches ----

    fn on_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let uid = node.metadata.uid.clone().unwrap_or_default();
        let pod_cidrs = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default();
        let annotation = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::NODE_SUBNETS).cloned());
        let e = self.nodes.entry(name.clone()).or_insert_with(|| NodeEntry {
            uid: uid.clone(),
            pod_cidrs: Vec::new(),
            annotation: None,
            subnets: Vec::new(),
            ours: false,
            addrs: None,
            rv: None,
            inflight: false,
        });
        e.uid = uid;
        e.rv = node.metadata.resource_version.clone();
        e.pod_cidrs = pod_cidrs;
        e.annotation = annotation;
        self.dirty_nodes.insert(name);
    }

    fn on_node_deleted(&mut self, name: &str) {
        let Some(e) = self.nodes.remove(name) else {
            return;
        };
        let _span = info_span!("node", node = name).entered();
        info!(subnets = ?e.subnets, "node deleted; freeing its subnets");
        self.subnets.release(name, &e.subnets);
        self.store.set(Owner::Node(name.to_string()), None);
        for key in self.pods_by_node.get(name).cloned().unwrap_or_default() {
            if let Some(p) = self.pods.get_mut(&key) {
                p.assigned = None;
            }
            self.store.set(Owner::Pod(key.clone()), None);
            self.dirty_pods.insert(key);
        }
        self.attempts.remove(&(WorkKind::Node, name.to_string()));
    }

    fn on_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.pods.get(&key).is_some_and(|p| p.uid != uid) {
            // Same name, new object: the old one is gone.
            self.forget_pod(&key);
        }
        let spec = pod.spec.as_ref();
        let node = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
        let anns = pod.metadata.annotations.as_ref();
        let entry = self.pods.entry(key.clone()).or_insert_with(|| PodEntry {
            uid: uid.clone(),
            node: None,
            active: false,
            requested: None,
            annotation: None,
            assigned: None,
            first_seen: Instant::now(),
            rv: None,
            inflight: false,
            latency_recorded: false,
        });
        entry.rv = pod.metadata.resource_version.clone();
        if entry.node != node {
            if let Some(old) = &entry.node {
                if let Some(s) = self.pods_by_node.get_mut(old) {
                    s.remove(&key);
                }
            }
            if let Some(n) = &node {
                self.pods_by_node
                    .entry(n.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        entry.node = node.clone();
        entry.active = node.is_some() && !host_network && !finished;
        entry.requested = anns.and_then(|a| a.get(annotations::REQUESTED_IPS).cloned());
        entry.annotation = anns.and_then(|a| a.get(annotations::POD_NETWORK).cloned());
        self.dirty_pods.insert(key);
    }

    fn on_pod_deleted(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self
            .pods
            .get(&key)
            .is_some_and(|p| p.uid == uid || uid.is_empty())
        {
            self.forget_pod(&key);
        }
    }

    fn forget_pod(&mut self, key: &str) {
        let Some(p) = self.pods.remove(key) else {
            return;
        };
        if let Some(n) = &p.node {
            if let Some(s) = self.pods_by_node.get_mut(n) {
                s.remove(key);
            }
        }
        self.release_pod(key, &p);
        self.store.set(Owner::Pod(key.to_string()), None);
        self.attempts.remove(&(WorkKind::Pod, key.to_string()));
        self.last_event.remove(&format!("Pod/{key}"));
    }

    fn release_pod(&mut self, key: &str, p: &PodEntry) {
        if let (Some(a), Some(n)) = (&p.assigned, &p.node) {
            if let Some(addrs) = self.nodes.get_mut(n).and_then(|e| e.addrs.as_mut()) {
                addrs.release(key, &a.ips);
            }
        }
    }

    /// A relist: objects missing from it were deleted while we did not look.
    fn on_nodes_restarted(&mut self, list: &[Node]) {
        let names: HashSet<&str> = list
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        for n in gone {
            self.on_node_deleted(&n);
        }
        for n in list {
            self.on_node(n);
        }
    }

    fn on_pods_restarted(&mut self, list: &[Pod]) {
        let present: HashMap<String, String> = list
            .iter()
            .map(|p| (pod_key(p), p.metadata.uid.clone().unwrap_or_default()))
            .collect();
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, e)| present.get(*k) != Some(&e.uid))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.forget_pod(&k);
        }
        for p in list {
            self.on_pod(p);
        }
    }

    // ---- processing ----

    /// Processes everything dirty: nodes first (pods need their subnets).
    fn process(&mut self) {
        while let Some(name) = self.dirty_nodes.pop_first() {
            self.sync_node(&name, true);
        }
        while let Some(key) = self.dirty_pods.pop_first() {
            self.sync_pod(&key, true);
        }
        if self.last_gauges.elapsed() >= Duration::from_millis(100) {
            self.update_gauges();
        }
    }

    fn update_gauges(&mut self) {
        self.last_gauges = Instant::now();
        let (mut used, mut cap) = (0, 0);
        for n in self.nodes.values() {
            if let Some(a) = &n.addrs {
                let (u, c) = a.usage();
                used += u;
                cap += c;
            }
        }
        self.metrics.pod_addresses_used.set(used as i64);
        self.metrics.pod_addresses_capacity.set(cap as i64);
        for (cidr, u, c) in self.subnets.usage() {
            let l = vec![("cidr".to_string(), cidr.to_string())];
            self.metrics
                .node_subnets_used
                .get_or_create(&l)
                .set(u as i64);
            self.metrics
                .node_subnets_capacity
                .get_or_create(&l)
                .set(c as i64);
        }
        let waiting = self
            .pods
            .values()
            .filter(|p| p.active && (p.assigned.is_none() || p.inflight))
            .count();
        self.metrics.pod_queue_depth.set(waiting as i64);
    }

    fn schedule_retry(&mut self, work: Work) {
        let n = self.attempts.entry(work.clone()).or_insert(0);
        *n += 1;
        let delay = (Duration::from_millis(250) * 2u32.saturating_pow((*n).min(8) - 1))
            .min(Duration::from_secs(30));
        self.retries.push(Reverse((Instant::now() + delay, work)));
    }

    fn run_due_retries(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, _))) = self.retries.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, work))) = self.retries.pop() else {
                break;
            };
            self.mark_dirty(work);
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retries.peek().map(|Reverse((t, _))| *t)
    }

    /// Logs an error on the object and emits a Warning Event, once per
    /// distinct message (retries do not flood the API server).
    fn report(&mut self, obj: ObjectRef, reason: &str, note: String) {
        let key = format!(
            "{}/{}{}",
            obj.kind.name(),
            obj.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            obj.name
        );
        error!(object = %key, reason, "{note}");
        let sig = format!("{reason}: {note}");
        if self.last_event.get(&key) == Some(&sig) {
            return;
        }
        self.last_event.insert(key, sig);
        self.outbox.event(EventRecord {
            regarding: obj,
            type_: "Warning".into(),
            reason: reason.into(),
            action: "Allocate".into(),
            note,
        });
    }

    /// Chooses (once) and publishes a node's subnets and rows. With
    /// `allocate` false only existing assignments are adopted, which is how
    /// the start-up rebuild learns every taken subnet before handing out
    /// any.
    fn sync_node(&mut self, name: &str, allocate: bool) {
        let _span = info_span!("node", node = name).entered();
        let Some(e) = self.nodes.get(name) else {
            return;
        };
        let obj = ObjectRef::node(name, &e.uid);
        if e.subnets.is_empty() {
            let chosen: Result<Option<(Vec<IpNet>, bool)>> = (|| {
                if !e.pod_cidrs.is_empty() {
                    let nets: std::result::Result<Vec<IpNet>, _> =
                        e.pod_cidrs.iter().map(|c| c.parse::<IpNet>()).collect();
                    let mut nets = nets.map_err(|_| {
                        Error::Config(format!(
                            "spec.podCIDRs {:?} is not a list of CIDRs",
                            e.pod_cidrs
                        ))
                    })?;
                    nets.sort_by_key(|s| !s.addr().is_ipv4());
                    self.subnets.reserve(name, &nets)?;
                    return Ok(Some((nets, false)));
                }
                if let Some(text) = &e.annotation {
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
                Ok(None) => {
                    self.dirty_nodes.insert(name.to_string());
                    return;
                }
                Ok(Some((nets, ours))) => {
                    info!(subnets = ?nets, ours, "node subnets");
                    let e = self.nodes.get_mut(name).expect("checked above");
                    e.addrs = Some(NodeAddresses::new(&nets));
                    e.subnets = nets;
                    e.ours = ours;
                    self.attempts.remove(&(WorkKind::Node, name.to_string()));
                    self.last_event.remove(&format!("Node/{name}"));
                    for key in self.pods_by_node.get(name).cloned().unwrap_or_default() {
                        self.dirty_pods.insert(key);
                    }
                }
                Err(err) => {
                    let transient = err.is_transient();
                    self.report(obj, "SubnetAllocationFailed", format!("node {name}: {err}"));
                    if transient {
                        self.schedule_retry((WorkKind::Node, name.to_string()));
                    }
                    return;
                }
            }
        }
        let Some(e) = self.nodes.get_mut(name) else {
            return;
        };
        let model = translate::NodeModel {
            name: name.to_string(),
            subnets: e.subnets.clone(),
        };
        self.store.set(
            Owner::Node(name.to_string()),
            Some(translate::node_rows(&model)),
        );
        if e.ours {
            let want = NodeSubnetsAnn(e.subnets.clone()).to_json();
            if e.annotation.as_deref() != Some(want.as_str()) && !e.inflight {
                e.inflight = true;
                let target = ObjectRef::node(name, &e.uid);
                let rv = e.rv.clone();
                self.send_patch(WorkKind::Node, target, rv, annotations::NODE_SUBNETS, want);
            }
        }
    }

    /// Decides (once) and publishes a pod's addresses, port and annotation.
    /// With `allocate` false only existing assignments are adopted.
    fn sync_pod(&mut self, key: &str, allocate: bool) {
        let Some(p) = self.pods.get(key) else {
            self.store.set(Owner::Pod(key.to_string()), None);
            return;
        };
        let _span = info_span!("pod", pod = key, uid = %p.uid).entered();
        let (ns, name) = split_key(key);
        let obj = ObjectRef::pod(ns, name, &p.uid);
        let node_ready = p
            .node
            .as_ref()
            .and_then(|n| self.nodes.get(n))
            .is_some_and(|n| n.addrs.is_some());
        if !p.active || !node_ready {
            if p.assigned.is_some() {
                if let Some(p) = self.pods.remove(key) {
                    self.release_pod(key, &p);
                    let mut p = p;
                    if !p.active {
                        debug!("pod finished or left the pod network; address released");
                    }
                    p.assigned = None;
                    self.pods.insert(key.to_string(), p);
                }
            }
            // Without a ready node the pod waits; it is dirtied again when
            // the node gets its subnets.
            self.store.set(Owner::Pod(key.to_string()), None);
            return;
        }
        let node_name = p.node.clone().unwrap_or_default();
        if p.assigned.is_none() {
            let uid = p.uid.clone();
            let annotation = p.annotation.clone();
            let requested = p.requested.clone();
            let recovered = self
                .recovery
                .pod_ports
                .get(key)
                .filter(|(u, _, _)| *u == uid)
                .cloned();
            let addrs = self
                .nodes
                .get_mut(&node_name)
                .and_then(|n| n.addrs.as_mut())
                .expect("node readiness checked above");
            let result: Result<Option<Assigned>> = (|| {
                if let Some(text) = annotation {
                    let net = PodNetwork::parse(&text)?;
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
                let req = match &requested {
                    Some(text) => parse_requested_ips(text)?,
                    None => Vec::new(),
                };
                let ips = addrs.allocate(key, &req)?;
                let mac = switchyard_api::mac::from_ip(ips[0].addr());
                Ok(Some(Assigned { ips, mac }))
            })();
            match result {
                Ok(None) => {
                    self.dirty_pods.insert(key.to_string());
                    return;
                }
                Ok(Some(a)) => {
                    debug!(ips = ?a.ips, "addresses assigned");
                    if let Some(p) = self.pods.get_mut(key) {
                        p.assigned = Some(a);
                    }
                    self.attempts.remove(&(WorkKind::Pod, key.to_string()));
                    self.last_event.remove(&format!("Pod/{key}"));
                }
                Err(err) => {
                    let transient = err.is_transient();
                    let reason = match &err {
                        Error::Annotation(_) => "InvalidAnnotation",
                        _ => "AddressAllocationFailed",
                    };
                    self.report(obj, reason, format!("pod {key}: {err}"));
                    if transient {
                        self.schedule_retry((WorkKind::Pod, key.to_string()));
                    }
                    self.store.set(Owner::Pod(key.to_string()), None);
                    return;
                }
            }
        }
        let Some(p) = self.pods.get_mut(key) else {
            return;
        };
        let Some(a) = &p.assigned else {
            return;
        };
        let model = PodModel {
            namespace: ns.to_string(),
            name: name.to_string(),
            uid: p.uid.clone(),
            node: node_name,
            ips: a.ips.clone(),
            mac: a.mac.clone(),
        };
        self.store.set(
            Owner::Pod(key.to_string()),
            Some(translate::pod_rows(&model)),
        );
        let want =
            translate::pod_network(&model, &self.config.service_cidrs, self.config.mtu).to_json();
        // Level-triggered: whatever the pod carries (an operator's edit, a
        // stale writer's patch), it gets this controller's decision back.
        if p.annotation.as_deref() == Some(want.as_str()) || p.inflight {
            return;
        }
        p.inflight = true;
        let target = ObjectRef::pod(ns, name, &p.uid);
        let rv = p.rv.clone();
        self.send_patch(WorkKind::Pod, target, rv, annotations::POD_NETWORK, want);
    }

    /// Sets one annotation, guarded by the object's UID and by the
    /// resourceVersion the decision was made on.
    fn send_patch(
        &self,
        kind: WorkKind,
        target: ObjectRef,
        rv: Option<String>,
        annotation: &str,
        value: String,
    ) {
        let key = match &target.namespace {
            Some(ns) => format!("{ns}/{}", target.name),
            None => target.name.clone(),
        };
        let uid = target.uid.clone().unwrap_or_default();
        let map = BTreeMap::from([(annotation.to_string(), Some(value.clone()))]);
        let request = self.cluster.patch_annotations(target, rv.clone(), map);
        let tx = self.patch_tx.clone();
        self.outbox.send(request, move |result| {
            let _ = tx.send(PatchDone {
                kind,
                key,
                uid,
                value,
                rv_sent: rv,
                result,
            });
        });
    }

    fn on_patch_done(&mut self, d: PatchDone) {
        let work = (d.kind, d.key.clone());
        // The entry the patch was for, if it is still that object.
        let entry = match d.kind {
            WorkKind::Pod => self
                .pods
                .get_mut(&d.key)
                .filter(|p| p.uid == d.uid)
                .map(|p| (&mut p.annotation, &mut p.rv, &mut p.inflight)),
            WorkKind::Node => self
                .nodes
                .get_mut(&d.key)
                .filter(|n| n.uid == d.uid)
                .map(|n| (&mut n.annotation, &mut n.rv, &mut n.inflight)),
        };
        let Some((annotation, rv, inflight)) = entry else {
            return;
        };
        *inflight = false;
        let seen_change = *rv != d.rv_sent;
        match d.result {
            Ok(new_rv) => {
                // The server holds exactly this now; its watch event follows.
                *annotation = Some(d.value);
                *rv = new_rv;
                self.attempts.remove(&work);
                if d.kind == WorkKind::Pod {
                    self.record_annotation_latency(&d.key);
                }
            }
            // Deleted, or replaced by another object of the same name: the
            // watch events that say so follow.
            Err(KubeError::NotFound(_)) => {}
            Err(e) if e.object_replaced() => {}
            Err(KubeError::Conflict(_)) => {
                // Changed since the decision. When that change was seen
                // meanwhile, decide again now; otherwise its event marks
                // the object dirty when it arrives.
                if seen_change {
                    self.mark_dirty(work);
                }
            }
            Err(e) if e.is_transient() => {
                warn!(object = %d.key, error = %e, "annotation patch failed; retrying");
                self.schedule_retry(work);
            }
            Err(e) => {
                let (ns, name) = split_key(&d.key);
                let obj = match d.kind {
                    WorkKind::Pod => ObjectRef::pod(ns, name, &d.uid),
                    WorkKind::Node => ObjectRef::node(&d.key, &d.uid),
                };
                self.report(
                    obj,
                    "AnnotationRejected",
                    format!("the API server refused the annotation patch: {e}"),
                );
            }
        }
    }

    fn record_annotation_latency(&mut self, key: &str) {
        if let Some(p) = self.pods.get_mut(key) {
            if !p.latency_recorded {
                p.latency_recorded = true;
                self.metrics
                    .pod_annotation_latency
                    .observe(p.first_seen.elapsed().as_secs_f64());
            }
        }
    }

    fn mark_dirty(&mut self, (kind, key): Work) {
        match kind {
            WorkKind::Node => self.dirty_nodes.insert(key),
            WorkKind::Pod => self.dirty_pods.insert(key),
        };
    }

    /// The start-up rebuild: adopt every assignment that exists (node
    /// annotations and podCIDRs, pod annotations, NB rows) before allocating
    /// anything new, so nothing is handed out twice.
    fn rebuild(&mut self, recovery: Recovery) {
        self.recovery = recovery;
        let mut names: Vec<String> = self.nodes.keys().cloned().collect();
        names.sort();
        self.dirty_nodes.clear();
        for n in &names {
            self.sync_node(n, false);
        }
        self.dirty_nodes.clear();
        for n in &names {
            self.sync_node(n, true);
        }
        let mut keys: Vec<String> = self.pods.keys().cloned().collect();
        keys.sort();
        self.dirty_pods.clear();
        for k in &keys {
            self.sync_pod(k, false);
        }
        self.dirty_pods.clear();
        for k in &keys {
            self.sync_pod(k, true);
        }
        self.dirty_nodes.clear();
        self.dirty_pods.clear();
        self.recovery = Recovery::default();
        self.started = true;
        self.update_gauges();
        info!(
            nodes = self.nodes.len(),
            pods = self.pods.len(),
            "rebuilt allocations"
        );
    }
}

/// Runs the controller as leader until `stop` turns true.
pub(crate) async fn lead(
    config: Config,
    cluster: Arc<dyn Cluster>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let client = crate::nb::connect(&config).await?;
    let replica = crate::nb::monitor(&client).await?;
    info!(remote = %config.nb_remote, "connected to northbound");
    let store = Arc::new(DesiredStore::default());
    let (patch_tx, mut patch_rx) = mpsc::unbounded_channel();
    let mut state = State::new(
        config.clone(),
        cluster.clone(),
        metrics.clone(),
        store.clone(),
        patch_tx,
    );
    let mut nodes = watch_nodes(&cluster);
    let mut pods = watch_pods(&cluster);

    // The initial lists, before anything is decided.
    let mut have_nodes = false;
    let mut have_pods = false;
    while !(have_nodes && have_pods) {
        tokio::select! {
            ev = nodes.next() => match ev {
                Some(WatchEvent::Restarted(list)) => { state.on_nodes_restarted(&list); have_nodes = true; }
                Some(ev) => apply_node_event(&mut state, ev),
                None => nodes = watch_nodes(&cluster),
            },
            ev = pods.next() => match ev {
                Some(WatchEvent::Restarted(list)) => { state.on_pods_restarted(&list); have_pods = true; }
                Some(ev) => apply_pod_event(&mut state, ev),
                None => pods = watch_pods(&cluster),
            },
            _ = stop.changed() => return Ok(()),
        }
    }
    let recovery = replica.with(Recovery::from_replica);
    state
        .store
        .set(Owner::Cluster, Some(translate::cluster_rows()));
    state.rebuild(recovery);

    let (synced_tx, mut synced_rx) = watch::channel(false);
    let writer = NbWriter {
        client,
        replica,
        store,
        metrics: metrics.clone(),
        outbox: state.outbox.clone(),
        max_batch: config.max_batch_owners,
        full_resync_interval: config.full_resync_interval,
    };
    let writer_task = tokio::spawn(writer.run(stop.clone(), synced_tx));
    metrics.health.set_alive(true);
    // Gauges are refreshed at most every 100 ms while busy; this tick
    // catches the last change of a burst.
    let mut gauge_tick = tokio::time::interval(Duration::from_millis(500));
    gauge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let retry_at = state.next_retry();
        let retry_sleep = async move {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = synced_rx.changed() => {
                if r.is_ok() && *synced_rx.borrow() {
                    metrics.health.set_synced(true);
                }
            }
            Some(d) = patch_rx.recv() => state.on_patch_done(d),
            ev = nodes.next() => match ev {
                Some(ev) => apply_node_event(&mut state, ev),
                None => { warn!("node watch ended; watching again"); nodes = watch_nodes(&cluster); }
            },
            ev = pods.next() => match ev {
                Some(ev) => apply_pod_event(&mut state, ev),
                None => { warn!("pod watch ended; watching again"); pods = watch_pods(&cluster); }
            },
            _ = retry_sleep => state.run_due_retries(),
            _ = gauge_tick.tick() => state.update_gauges(),
        }
        // Take whatever else is ready, so a burst is processed as one batch.
        for _ in 0..10_000 {
            let mut progressed = false;
            if let Some(Some(ev)) = nodes.next().now_or_never() {
                apply_node_event(&mut state, ev);
                progressed = true;
            }
            if let Some(Some(ev)) = pods.next().now_or_never() {
                apply_pod_event(&mut state, ev);
                progressed = true;
            }
            while let Ok(d) = patch_rx.try_recv() {
                state.on_patch_done(d);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        state.run_due_retries();
        state.process();
    }
    metrics.health.set_synced(false);
    // Nothing decided in this term may reach the API server after it.
    state.outbox.close().await;
    let _ = writer_task.await;
    Ok(())
}

fn typed<K: Send + 'static>(
    s: futures::stream::BoxStream<'static, WatchEvent<Object>>,
    f: fn(Object) -> Option<K>,
) -> futures::stream::BoxStream<'static, WatchEvent<K>> {
    s.filter_map(move |ev| {
        futures::future::ready(match ev {
            WatchEvent::Restarted(l) => {
                Some(WatchEvent::Restarted(l.into_iter().filter_map(f).collect()))
            }
            WatchEvent::Applied(o) => f(o).map(WatchEvent::Applied),
            WatchEvent::Deleted(o) => f(o).map(WatchEvent::Deleted),
            WatchEvent::Unavailable(w) => Some(WatchEvent::Unavailable(w)),
        })
    })
    .boxed()
}

fn watch_nodes(c: &Arc<dyn Cluster>) -> futures::stream::BoxStream<'static, WatchEvent<Node>> {
    typed(c.watch(Kind::Node), |o| match o {
        Object::Node(n) => Some(*n),
        _ => None,
    })
}

fn watch_pods(c: &Arc<dyn Cluster>) -> futures::stream::BoxStream<'static, WatchEvent<Pod>> {
    typed(c.watch(Kind::Pod), |o| match o {
        Object::Pod(p) => Some(*p),
        _ => None,
    })
}

fn apply_node_event(state: &mut State, ev: WatchEvent<Node>) {
    match ev {
        WatchEvent::Unavailable(_) => {}
        WatchEvent::Restarted(list) => state.on_nodes_restarted(&list),
        WatchEvent::Applied(n) => state.on_node(&n),
        WatchEvent::Deleted(n) => {
            if let Some(name) = n.metadata.name.as_deref() {
                state.on_node_deleted(name);
            }
        }
    }
}

fn apply_pod_event(state: &mut State, ev: WatchEvent<Pod>) {
    match ev {
        WatchEvent::Unavailable(_) => {}
        WatchEvent::Restarted(list) => state.on_pods_restarted(&list),
        WatchEvent::Applied(p) => state.on_pod(&p),
        WatchEvent::Deleted(p) => state.on_pod_deleted(&p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use futures::stream::BoxStream;
    use k8s_openapi::api::coordination::v1::Lease;

    /// A cluster that is never called on the paths tested here.
    struct Unreachable;
    impl Cluster for Unreachable {
        fn watch(&self, _: Kind) -> BoxStream<'static, WatchEvent<Object>> {
            futures::stream::empty().boxed()
        }
        fn patch_annotations(
            &self,
            _: ObjectRef,
            _: Option<String>,
            _: BTreeMap<String, Option<String>>,
        ) -> BoxFuture<'static, std::result::Result<Written, KubeError>> {
            async { Err(KubeError::Api("unreachable".into())) }.boxed()
        }
        fn emit_event(
            &self,
            _: EventRecord,
        ) -> BoxFuture<'static, std::result::Result<(), KubeError>> {
            async { Ok(()) }.boxed()
        }
        fn get_lease(
            &self,
            _: String,
            _: String,
        ) -> BoxFuture<'static, std::result::Result<Option<Lease>, KubeError>> {
            async { Ok(None) }.boxed()
        }
        fn create_lease(
            &self,
            l: Lease,
        ) -> BoxFuture<'static, std::result::Result<Lease, KubeError>> {
            async { Ok(l) }.boxed()
        }
        fn replace_lease(
            &self,
            l: Lease,
        ) -> BoxFuture<'static, std::result::Result<Lease, KubeError>> {
            async { Ok(l) }.boxed()
        }
    }

    fn state() -> State {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut s = State::new(
            Config::default(),
            Arc::new(Unreachable),
            Metrics::new(),
            Arc::new(DesiredStore::default()),
            tx,
        );
        let mut p = kube_pod("ns", "web");
        p.metadata.resource_version = Some("5".into());
        s.on_pod(&p);
        s.dirty_pods.clear();
        s.pods.get_mut("ns/web").unwrap().inflight = true;
        s
    }

    fn kube_pod(ns: &str, name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some("u1".into());
        p
    }

    fn done(result: std::result::Result<Written, KubeError>) -> PatchDone {
        PatchDone {
            kind: WorkKind::Pod,
            key: "ns/web".into(),
            uid: "u1".into(),
            value: "{}".into(),
            rv_sent: Some("5".into()),
            result,
        }
    }

    #[tokio::test]
    async fn a_replaced_pod_is_not_patched_again() {
        // The server's answer to a patch whose UID is not the pod's any more.
        let mut s = state();
        s.on_patch_done(done(Err(KubeError::invalid(
            "Pod \"web\" is invalid: metadata.uid: Invalid value: \"u1\": field is immutable",
            Some("metadata.uid"),
        ))));
        assert!(s.retries.is_empty(), "a 422 for a replaced pod was retried");
        assert!(s.dirty_pods.is_empty());
        assert!(!s.pods["ns/web"].inflight);
        // A server error, by contrast, is retried.
        let mut s = state();
        s.on_patch_done(done(Err(KubeError::Api("etcd timeout".into()))));
        assert_eq!(s.retries.len(), 1);
    }

    #[tokio::test]
    async fn a_conflict_waits_for_the_change_it_was_refused_for() {
        let mut s = state();
        s.on_patch_done(done(Err(KubeError::Conflict("modified".into()))));
        assert!(
            s.dirty_pods.is_empty() && s.retries.is_empty(),
            "the change's own event re-triggers the pod"
        );
        // The change was already seen: decide again at once.
        let mut s = state();
        s.pods.get_mut("ns/web").unwrap().rv = Some("6".into());
        s.on_patch_done(done(Err(KubeError::Conflict("modified".into()))));
        assert!(s.dirty_pods.contains("ns/web"));
    }

    #[tokio::test]
    async fn an_accepted_patch_is_what_the_pod_holds() {
        let mut s = state();
        s.on_patch_done(done(Ok(Some("6".into()))));
        let p = &s.pods["ns/web"];
        assert_eq!(p.annotation.as_deref(), Some("{}"));
        assert_eq!(p.rv.as_deref(), Some("6"));
    }
}
