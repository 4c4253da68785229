//! Which admin policies a change touches.
//!
//! An ANP's rows read its own spec, its subject's pods, the namespaces its
//! peers name, the nodes its node peers pick, and, through priorities and
//! `Pass` exclusions, the ANPs before it. So: an ANP change touches itself,
//! and every ANP when it moves priorities (added, removed, re-prioritised,
//! rules added or removed) or changes a `Pass` rule; a pod touches
//! the policies whose subject it is in (old or new labels) or whose named
//! ports it may resolve; namespace labels touch all (subjects and peers are
//! by namespace label); node labels and addresses touch those with node
//! peers.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_api::annotations;

use crate::k8s::AdminNetworkPolicy;
use crate::model::admin::{named, Action, AdminInfo};
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

/// The `Pass` rules, with their places: what the ANPs below read of this
/// one (its subject they name by a set whose members are its own rows).
fn passes(p: &Option<Arc<AdminNetworkPolicy>>) -> Vec<String> {
    let Some(p) = p else { return Vec::new() };
    let s = &p.spec;
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
    ingress
        .map(|(i, r)| format!("i{i}{r:?}"))
        .chain(egress.map(|(i, r)| format!("e{i}{r:?}")))
        .collect()
}

/// Whether a pod can change the match of one of `a`'s `Pass` rules: only
/// through the numbers its named ports resolve to.
fn pass_moves_with_pods(a: &AdminInfo) -> bool {
    a.ingress
        .iter()
        .chain(&a.egress)
        .any(|r| r.action == Action::Pass && named(r).next().is_some())
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
            let compiled = view.config.admin_pass_exclusions;
            every = shape(old) != shape(new) || (compiled && passes(old) != passes(new));
        }
        Change::BaselineAdminNetworkPolicy { .. } => {}
        _ => {
            touched(change, view, &idx.ordered().collect::<Vec<_>>(), out);
            every = view.config.admin_pass_exclusions
                && out[start..]
                    .iter()
                    .any(|n| idx.anp(n).is_some_and(|a| pass_moves_with_pods(a)));
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
