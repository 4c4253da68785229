//! Services on OVN load balancers, with kube-proxy absent.
//!
//! Two owner kinds:
//! - [`Services`] (`Service`, keyed `namespace/name`): a Service's
//!   `Load_Balancer` rows, built by [`rows`] from the Service ([`spec`])
//!   and its EndpointSlices ([`endpoints`]), hung from the cluster-wide
//!   load balancer groups;
//! - [`NodeServices`] (`NodeServices`, keyed by node name): the node's
//!   `Chassis_Template_Var` row, the per-node values that template load
//!   balancers expand on that node's chassis (its IPs, its own endpoints
//!   of `Local`-policy Services).
//!
//! The groups themselves belong to the cluster owner
//! ([`super::cluster`]); node switches and `cluster-router` hold them (see
//! [`SWITCH_GROUPS`], [`ROUTER_GROUPS`]). A gateway router `GR-<node>`
//! joins by holding [`GROUP_CLUSTER`] and [`GROUP_GATEWAYS`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use ovsdb::nb::ChassisTemplateVar;
use switchyard_api::names;

use crate::k8s::{Kind, ObjectRef};
use crate::model::{ns_key, Change, Model, NodeInfo, SERVICE_NAME_LABEL};
use crate::nb::{Col, DesiredRow, Owner, Table};

use super::{Problem, Translator, View};

pub mod endpoints;
pub mod rows;
pub mod spec;

#[cfg(test)]
mod tests;

use endpoints::{port_endpoints, Endpoint};
use spec::{Family, Issue, Spec};

/// Owner kind of a Service's load balancers (the API kind, so failures
/// become Events on the Service).
pub const KIND_SERVICE: &str = "Service";
/// Owner kind of a node's template variables.
pub const KIND_NODE_SERVICES: &str = "NodeServices";

/// Load balancers every node switch, `cluster-router` and (with issue 10)
/// every gateway router hold: ClusterIPs and external IPs of
/// `externalTrafficPolicy: Cluster` Services.
pub const GROUP_CLUSTER: &str = "svc-cluster";
/// Load balancers only node switches hold: in-cluster views (NodePorts at
/// the node's own IP, `Local` ClusterIPs, external IPs of ETP Local
/// Services with every endpoint).
pub const GROUP_SWITCHES: &str = "svc-switches";
/// Load balancers only gateway routers hold: traffic arriving from
/// outside (NodePorts, and the node-local view of ETP Local Services).
pub const GROUP_GATEWAYS: &str = "svc-gateways";
/// Every group, as the cluster owner creates them.
pub const GROUPS: [&str; 3] = [GROUP_CLUSTER, GROUP_SWITCHES, GROUP_GATEWAYS];
/// The groups a node switch holds.
pub const SWITCH_GROUPS: [&str; 2] = [GROUP_CLUSTER, GROUP_SWITCHES];
/// The groups `cluster-router` holds.
pub const ROUTER_GROUPS: [&str; 1] = [GROUP_CLUSTER];

/// The Service an EndpointSlice belongs to, `namespace/name`.
pub fn service_of(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ns_key(slice.metadata.namespace.as_deref(), Some(name)))
}

fn service_ref(key: &str, svc: &Service) -> ObjectRef {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    ObjectRef::new(
        Kind::Service,
        Some(ns),
        name,
        svc.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// A node's first InternalIP of each family (what `NODEIP_V4`/`_V6` hold).
pub fn node_ips(n: &NodeInfo) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in n.internal_ips() {
        if !out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            out.push(ip);
        }
    }
    out
}

/// The addresses a Service claims outside the cluster (externalIPs and,
/// for LoadBalancer Services, ingress IPs), unchecked: what conflicts are
/// looked for among.
fn claimed_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref());
        out.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok()),
        );
    }
    out
}

/// (protocol, port) pairs a Service serves, as the API spells them.
fn served(svc: &Service) -> BTreeSet<(String, i32)> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
        .collect()
}

/// Which of two Services claiming one address keeps it: the older, then
/// the first by key (deterministic whatever the order of events).
fn seniority(key: &str, svc: &Service) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        key.to_string(),
    )
}

/// Drops the external addresses that an older Service already serves on
/// one of the same ports: two Services cannot both own one VIP.
fn resolve_conflicts(
    key: &str,
    svc: &Service,
    spec: &mut Spec,
    model: &Model,
    issues: &mut Vec<Issue>,
) {
    if spec.external.is_empty() {
        return;
    }
    let mine = served(svc);
    let me = seniority(key, svc);
    spec.external.retain(|ip| {
        let winner = model.services.iter().find(|(k, other)| {
            k.as_str() != key
                && claimed_ips(other).contains(ip)
                && !served(other).is_disjoint(&mine)
                && seniority(k, other) < me
        });
        match winner {
            Some((k, _)) => {
                issues.push(Issue::new(
                    "ExternalIPConflict",
                    format!("{ip} is already served by Service {k} on one of the same ports; it is not programmed for this Service"),
                ));
                false
            }
            None => true,
        }
    });
}

/// Every endpoint of each of `spec`'s ports.
fn endpoints_of(model: &Model, key: &str, spec: &Spec) -> Vec<Vec<Endpoint>> {
    let slices: Vec<&EndpointSlice> = model.slices_of(key).map(|s| s.as_ref()).collect();
    spec.ports
        .iter()
        .map(|p| port_endpoints(p, slices.iter().copied()))
        .collect()
}

/// See the module doc.
pub struct Services;

impl Translator for Services {
    fn kind(&self) -> &'static str {
        KIND_SERVICE
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_CLUSTER]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::LoadBalancer]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::Service, Kind::EndpointSlice, Kind::Node]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        match change {
            Change::Service { key, old, new } => {
                out.push(key.clone());
                // A Service that lost (or won) an address to this one.
                let ips: BTreeSet<IpAddr> = [old, new]
                    .into_iter()
                    .flatten()
                    .flat_map(|s| claimed_ips(s))
                    .collect();
                if !ips.is_empty() {
                    for (k, s) in &view.model.services {
                        if k != key && claimed_ips(s).iter().any(|ip| ips.contains(ip)) {
                            out.push(k.clone());
                        }
                    }
                }
            }
            Change::EndpointSlice { old, new, .. } => {
                for s in [old, new].into_iter().flatten() {
                    if let Some(k) = service_of(s) {
                        out.push(k);
                    }
                }
            }
            Change::Node { old, new, .. } => {
                let ips = |n: &Option<std::sync::Arc<NodeInfo>>| n.as_deref().map(node_ips);
                if ips(old) == ips(new) {
                    return;
                }
                // Only ClientIP NodePorts list node IPs themselves.
                for (k, s) in &view.model.services {
                    let spec = s.spec.as_ref();
                    let affinity =
                        spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP");
                    let node_ports = spec
                        .and_then(|s| s.ports.as_ref())
                        .is_some_and(|p| p.iter().any(|p| p.node_port.unwrap_or(0) != 0));
                    if affinity && node_ports {
                        out.push(k.clone());
                    }
                }
            }
            _ => {}
        }
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model.services.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let svc = view.model.services.get(key)?;
        let mut issues = Vec::new();
        let rows = spec::read(svc, view.config, &mut issues).map(|mut spec| {
            resolve_conflicts(key, svc, &mut spec, view.model, &mut issues);
            let endpoints = endpoints_of(view.model, key, &spec);
            let node_ips: Vec<IpAddr> = if spec.affinity.is_some() && spec.has_node_ports() {
                view.model
                    .nodes
                    .values()
                    .flat_map(|n| node_ips(n))
                    .collect()
            } else {
                Vec::new()
            };
            let inputs = rows::Inputs {
                key,
                spec: &spec,
                endpoints: &endpoints,
                node_ips: &node_ips,
            };
            rows::service_rows(&inputs, &mut issues)
        });
        for i in issues {
            problems.push(Problem {
                object: service_ref(key, svc),
                reason: i.reason,
                note: i.note,
            });
        }
        rows.filter(|r| !r.is_empty())
    }
}

/// What of a Service the per-node variables depend on besides its
/// endpoints; `None` when it needs none.
fn local_view(svc: &Service, view: &View) -> Option<Spec> {
    spec::read(svc, view.config, &mut Vec::new()).filter(Spec::needs_local_view)
}

/// See the module doc.
pub struct NodeServices;

impl Translator for NodeServices {
    fn kind(&self) -> &'static str {
        KIND_NODE_SERVICES
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::ChassisTemplateVar]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::Node, Kind::Service, Kind::EndpointSlice]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        match change {
            Change::Node { name, old, new } => {
                let ips = |n: &Option<std::sync::Arc<NodeInfo>>| n.as_deref().map(node_ips);
                if ips(old) != ips(new) {
                    out.push(name.clone());
                }
            }
            Change::Service { old, new, .. } => {
                let sig = |s: &Option<std::sync::Arc<Service>>| {
                    s.as_deref()
                        .and_then(|s| local_view(s, view))
                        .map(|sp| (sp.ports, sp.families))
                };
                if sig(old) != sig(new) {
                    out.extend(view.model.nodes.keys().cloned());
                }
            }
            Change::EndpointSlice { old, new, .. } => {
                let slices: Vec<&EndpointSlice> = [old, new]
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_ref())
                    .collect();
                let local = slices.iter().filter_map(|s| service_of(s)).any(|k| {
                    view.model
                        .services
                        .get(&k)
                        .is_some_and(|s| local_view(s, view).is_some())
                });
                if !local {
                    return;
                }
                let nodes: BTreeSet<&str> = slices
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .filter_map(|e| e.node_name.as_deref())
                    .filter(|n| view.model.nodes.contains_key(*n))
                    .collect();
                out.extend(nodes.into_iter().map(str::to_string));
            }
            _ => {}
        }
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model.nodes.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let node = view.model.nodes.get(key)?;
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for ip in node_ips(node) {
            vars.insert(
                rows::node_ip_var(Family::of(ip)).to_string(),
                ip.to_string(),
            );
        }
        for (k, svc) in &view.model.services {
            if let Some(spec) = local_view(svc, view) {
                let eps = endpoints_of(view.model, k, &spec);
                rows::local_vars(k, &spec, &eps, key, &mut vars);
            }
        }
        if vars.is_empty() {
            return None;
        }
        let owner = Owner::of(KIND_NODE_SERVICES, key);
        Some(vec![DesiredRow::named(
            Table::ChassisTemplateVar,
            key,
            &owner,
        )
        .ids([(names::NODE, key)])
        .col(ChassisTemplateVar::VARIABLES, Col::Map(vars))])
    }
}
