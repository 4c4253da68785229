//! Which admin policies a change touches.
//!
//! An ANP's rows read its own spec, its subject's pods, the namespaces its
//! peers name, the nodes its node peers pick, and, through priorities and
//! `Pass` exclusions, the ANPs before it. So: an ANP change touches itself,
//! and every ANP when it moves priorities (added, removed, re-prioritised,
//! rules added or removed) or when any `Pass` is involved; a pod touches
//! the policies whose subject it is in (old or new labels) or whose named
//! ports it may resolve; namespace labels touch all (subjects and peers are
//! by namespace label); node labels and addresses touch those with node
//! peers.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_api::annotations;

use crate::k8s::AdminNetworkPolicy;
use crate::model::admin::AdminInfo;
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

fn has_pass(p: &Option<Arc<AdminNetworkPolicy>>) -> bool {
    p.as_ref().is_some_and(|p| {
        p.spec.ingress.iter().any(|r| r.action == "Pass")
            || p.spec.egress.iter().any(|r| r.action == "Pass")
    })
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
            every = shape(old) != shape(new) || has_pass(old) || has_pass(new);
        }
        Change::BaselineAdminNetworkPolicy { .. } => {}
        _ => touched(change, view, &idx.ordered().collect::<Vec<_>>(), out),
    }
    every |= out[start..]
        .iter()
        .any(|n| idx.anp(n).is_some_and(|a| a.has_pass()));
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
