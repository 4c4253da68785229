//! Which admin policies a change touches.
//!
//! An ANP's rows read its own spec, its subject's pods, the namespaces its
//! peers name, the nodes its node peers pick, and, through priorities and
//! `Pass` terms, the ANPs before it. So: an ANP change touches itself,
//! and every ANP when it moves priorities (added, removed, re-prioritised,
//! rules added or removed) or changes a `Pass` rule or the subject of an
//! ANP with one; a pod touches the policies whose subject it is in (old or
//! new labels) or whose named ports it may resolve; namespace labels touch
//! all (subjects and peers are by namespace label); node labels and
//! addresses touch those with node peers.
//!
//! Below a `Pass` the members count too ([`super::terms`] reads the pods
//! and addresses of the rule and of the passes above it): from the first
//! ANP with a `Pass` on, a pod touches every ANP whose subject or peers it
//! is in, and every ANP after one with a `Pass` whose subject or peers it
//! is in; a node change touches all of them when any names nodes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_api::annotations;

use crate::k8s::AdminNetworkPolicy;
use crate::model::admin::{AdminInfo, AdminPeer};
use crate::model::policy::{Peer, Scope};
use crate::model::{Change, NodeInfo, PodInfo};
use crate::translate::policy::mapper::{labels_of, namespace_labels, pods_of};
use crate::translate::View;

fn logging(m: &ObjectMeta) -> Option<&String> {
    m.annotations.as_ref()?.get(annotations::ACL_LOGGING)
}

fn node_moves(old: &Option<Arc<NodeInfo>>, new: &Option<Arc<NodeInfo>>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o.labels != n.labels || o.addresses != n.addresses,
        _ => true,
    }
}

/// (priority, ingress rules, egress rules): what places the ANPs.
fn shape(p: &Option<Arc<AdminNetworkPolicy>>) -> Option<(i32, usize, usize)> {
    p.as_ref()
        .map(|p| (p.spec.priority, p.spec.ingress.len(), p.spec.egress.len()))
}

/// The `Pass` rules, with their places, and the subject when there is
/// one: what the ANPs below read of this one.
fn passes(p: &Option<Arc<AdminNetworkPolicy>>) -> Vec<String> {
    let Some(p) = p else { return Vec::new() };
    let s = &p.spec;
    let subject = format!("{:?}", s.subject);
    let ingress = s
        .ingress
        .iter()
        .enumerate()
        .filter(|(_, r)| r.action == "Pass");
    let egress = s
        .egress
        .iter()
        .enumerate()
        .filter(|(_, r)| r.action == "Pass");
    let mut out: Vec<String> = ingress
        .map(|(i, r)| format!("i{i}{r:?}"))
        .chain(egress.map(|(i, r)| format!("e{i}{r:?}")))
        .collect();
    if !out.is_empty() {
        out.push(subject);
    }
    out
}

/// Whether `pod` is in `a`'s subject or among any rule's peers.
fn in_policy(a: &AdminInfo, pod: &PodInfo, view: &View) -> bool {
    let ns = namespace_labels(view, &pod.namespace);
    let subject = a
        .subject
        .as_ref()
        .is_some_and(|s| s.pods.matches(&pod.labels) && s.namespaces.matches(ns));
    subject
        || a.ingress.iter().chain(&a.egress).any(|r| {
            r.peers.iter().any(|p| match p {
                AdminPeer::Pods(Peer::Namespaces(sel)) => sel.matches(ns),
                AdminPeer::Pods(Peer::Pods { scope, pods }) => {
                    pods.matches(&pod.labels)
                        && match scope {
                            Scope::Namespace(n) => *n == pod.namespace,
                            Scope::Namespaces(sel) => sel.matches(ns),
                        }
                }
                _ => false,
            })
        })
}

/// The ANPs whose `Pass` terms a change may move (see the module doc).
fn below_passes(change: &Change, view: &View, out: &mut Vec<String>) {
    let chain: Vec<&Arc<AdminInfo>> = view
        .model
        .admin
        .ordered()
        .skip_while(|a| !a.has_pass())
        .collect();
    if chain.is_empty() {
        return;
    }
    match change {
        Change::Node { old, new, .. } if node_moves(old, new) => {
            if chain.iter().any(|a| a.has_node_peers()) {
                out.extend(chain.iter().map(|a| a.name.clone()));
            }
        }
        Change::NodeSubnets { .. } => {
            if chain.iter().any(|a| a.has_node_peers()) {
                out.extend(chain.iter().map(|a| a.name.clone()));
            }
        }
        _ => {
            for pod in pods_of(change, view) {
                let mut below = false;
                for a in &chain {
                    if below || in_policy(a, pod, view) {
                        out.push(a.name.clone());
                        below |= a.has_pass();
                    }
                }
            }
        }
    }
}

/// Whether `pod` is among the policy's subject, or may resolve its named
/// ports.
fn concerns(a: &AdminInfo, pod: &PodInfo, view: &View) -> bool {
    let subject = a.subject.as_ref().is_some_and(|s| {
        s.pods.matches(&pod.labels) && s.namespaces.matches(namespace_labels(view, &pod.namespace))
    });
    subject || (!pod.ports.is_empty() && a.has_named_ports())
}

/// The policies of `all` a change touches (see the module doc).
fn touched(change: &Change, view: &View, all: &[&Arc<AdminInfo>], out: &mut Vec<String>) {
    let all = all.iter().copied();
    match change {
        Change::Namespace { old, new, .. } => {
            if labels_of(old) != labels_of(new) {
                out.extend(all.map(|a| a.name.clone()));
            }
        }
        Change::Node { old, new, .. } if node_moves(old, new) => {
            out.extend(all.filter(|a| a.has_node_peers()).map(|a| a.name.clone()))
        }
        Change::NodeSubnets { .. } => {
            out.extend(all.filter(|a| a.has_node_peers()).map(|a| a.name.clone()))
        }
        _ => {
            for pod in pods_of(change, view) {
                out.extend(
                    all.clone()
                        .filter(|a| concerns(a, pod, view))
                        .map(|a| a.name.clone()),
                );
            }
        }
    }
}

/// `AdminNetworkPolicy` owners.
pub fn anps(change: &Change, view: &View, out: &mut Vec<String>) {
    let idx = &view.model.admin;
    let start = out.len();
    let mut every = false;
    match change {
        Change::AdminNetworkPolicy { name, old, new } => {
            // Status (our own condition) and metadata change no row.
            if let (Some(o), Some(n)) = (old, new) {
                if o.spec == n.spec && logging(&o.metadata) == logging(&n.metadata) {
                    return;
                }
            }
            out.push(name.clone());
            every = shape(old) != shape(new) || passes(old) != passes(new);
        }
        Change::BaselineAdminNetworkPolicy { .. } => {}
        _ => {
            touched(change, view, &idx.ordered().collect::<Vec<_>>(), out);
            below_passes(change, view, out);
        }
    }
    if every {
        out.truncate(start);
        out.extend(idx.names().cloned());
        if let Change::AdminNetworkPolicy { name, .. } = change {
            if idx.anp(name).is_none() {
                out.push(name.clone());
            }
        }
    }
}

/// `BaselineAdminNetworkPolicy` owners.
pub fn baseline(change: &Change, view: &View, out: &mut Vec<String>) {
    match change {
        Change::BaselineAdminNetworkPolicy { name, old, new } => {
            let same = matches!((old, new), (Some(o), Some(n))
                if o.spec == n.spec && logging(&o.metadata) == logging(&n.metadata));
            if !same {
                out.push(name.clone());
            }
        }
        Change::AdminNetworkPolicy { .. } => {}
        _ => touched(
            change,
            view,
            &view.model.admin.baseline().into_iter().collect::<Vec<_>>(),
            out,
        ),
    }
}
