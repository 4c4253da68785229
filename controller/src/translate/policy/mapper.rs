//! Which policy owners a change touches: those the old version of an
//! object belongs to and those the new one does, so a relabelled pod
//! leaves one set and joins another in the same commit group (and so the
//! same transaction) as its port and every other row the change moves.
//!
//! A pod counts by its labels and named ports; whether it has a port at all
//! arrives as [`Change::PodAddresses`], in the same round as the pod's own
//! change when the allocator decides at once.

use std::sync::Arc;

use switchyard_api::annotations;

use crate::model::objects::Labels;
use crate::model::policy::Scope;
use crate::model::policy_index::{named_ports, PeerSet};
use crate::model::{AdminInfo, Change, NamespaceInfo, PodInfo, PolicyInfo};
use crate::translate::View;

/// Whether a pod change can move the pod between sets (addresses move it
/// through [`Change::PodAddresses`]).
fn pod_moves(old: &Option<Arc<PodInfo>>, new: &Option<Arc<PodInfo>>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o.labels != n.labels || o.ports != n.ports,
        _ => true,
    }
}

/// The pod versions a change names, when it can move a pod.
pub fn pods_of<'a>(change: &'a Change, view: &'a View) -> Vec<&'a PodInfo> {
    match change {
        Change::Pod { old, new, .. } if pod_moves(old, new) => {
            old.iter().chain(new.iter()).map(|p| p.as_ref()).collect()
        }
        Change::PodAddresses { key } => view
            .model
            .pod(key)
            .map(|p| vec![p.as_ref()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub fn labels_of(n: &Option<Arc<NamespaceInfo>>) -> Option<&Labels> {
    n.as_ref().map(|n| &n.labels)
}

fn logging_of(n: &Option<Arc<NamespaceInfo>>) -> Option<&String> {
    n.as_ref()
        .and_then(|n| n.annotations.get(annotations::ACL_LOGGING))
}

static NO_LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::new);

pub fn namespace_labels<'a>(view: &'a View, ns: &str) -> &'a Labels {
    view.model
        .namespaces
        .get(ns)
        .map(|n| &n.labels)
        .unwrap_or(&NO_LABELS)
}

/// Whether `pod` (in a namespace labelled `ns_labels`) belongs to `set`.
pub fn in_peer_set(set: &PeerSet, pod: &PodInfo, ns_labels: &Labels) -> bool {
    let scoped = match &set.scope {
        Scope::Namespace(ns) => *ns == pod.namespace,
        Scope::Namespaces(sel) => sel.matches(ns_labels),
    };
    scoped
        && set.pods.matches(&pod.labels)
        && set.port.as_ref().is_none_or(|pn| {
            pod.ports
                .iter()
                .any(|p| p.name == pn.name && p.protocol == pn.protocol.as_str())
        })
}

/// `NetworkPolicy` owners: the policy itself; policies whose named ports a
/// pod's ports may resolve; policies listing namespaces by label when
/// labels change; a namespace's policies when its logging changes.
pub fn policies(change: &Change, view: &View, out: &mut Vec<String>) {
    let idx = &view.model.policy_index;
    match change {
        Change::NetworkPolicy { key, .. } => out.push(key.clone()),
        Change::Namespace { name, old, new } => {
            if labels_of(old) != labels_of(new) {
                out.extend(idx.with_namespace_peers().cloned());
                // Named ports across namespaces resolve on their pods.
                out.extend(idx.using_port_names().cloned());
            }
            if logging_of(old) != logging_of(new) {
                out.extend(view.model.policies_in(name).cloned());
            }
        }
        _ => {
            for pod in pods_of(change, view) {
                let own = format!("{}/", pod.namespace);
                for p in &pod.ports {
                    // Ingress resolves names on the policy's own pods, so
                    // only its namespace's policies; egress on any peer's.
                    out.extend(
                        idx.using_port_name(&p.name)
                            .filter(|k| k.starts_with(&own) || egress_named(view, k))
                            .cloned(),
                    );
                }
            }
        }
    }
}

/// Whether policy `key` resolves named ports on egress destinations.
fn egress_named(view: &View, key: &str) -> bool {
    view.model
        .policy_index
        .policy(key)
        .and_then(|p| p.egress.as_ref())
        .is_some_and(|rules| rules.iter().any(|r| named_ports(r).next().is_some()))
}

/// `PolicyPods` owners: the sets of the old and new versions of a policy;
/// the sets of its namespace a pod's old or new labels match; a
/// namespace's sets when its logging changes.
pub fn pod_sets(change: &Change, view: &View, out: &mut Vec<String>) {
    let idx = &view.model.policy_index;
    match change {
        Change::NetworkPolicy { old, new, .. } => {
            for np in old.iter().chain(new.iter()) {
                out.push(PolicyInfo::from_policy(np).pod_set().key());
            }
        }
        Change::Namespace { name, old, new } => {
            if logging_of(old) != logging_of(new) {
                out.extend(idx.pod_sets_in(name).map(|u| u.set.key()));
            }
        }
        _ => {
            for pod in pods_of(change, view) {
                for u in idx.pod_sets_in(&pod.namespace) {
                    if u.set.pods.matches(&pod.labels) {
                        out.push(u.set.key());
                    }
                }
            }
        }
    }
}

/// `PolicyPeers` owners: the sets of the old and new versions of a
/// policy; the sets a pod's old or new version belongs to; the sets
/// scoped by namespace labels a namespace's old or new labels match.
pub fn peer_sets(change: &Change, view: &View, out: &mut Vec<String>) {
    let idx = &view.model.policy_index;
    match change {
        Change::NetworkPolicy { old, new, .. } => {
            for np in old.iter().chain(new.iter()) {
                out.extend(
                    PolicyInfo::from_policy(np)
                        .peer_sets()
                        .iter()
                        .map(PeerSet::key),
                );
            }
        }
        // Only the sets an admin policy starts or stops using: one it keeps
        // has the same members (unlike a NetworkPolicy's, an admin
        // policy's sets never depend on its own namespace).
        Change::AdminNetworkPolicy { old, new, .. } => {
            let sets = |p: &Option<Arc<crate::k8s::AdminNetworkPolicy>>| {
                p.as_deref()
                    .map(|p| AdminInfo::from_anp(p).peer_sets())
                    .unwrap_or_default()
            };
            let (o, n) = (sets(old), sets(new));
            out.extend(o.symmetric_difference(&n).map(PeerSet::key));
        }
        Change::BaselineAdminNetworkPolicy { old, new, .. } => {
            let sets = |p: &Option<Arc<crate::k8s::BaselineAdminNetworkPolicy>>| {
                p.as_deref()
                    .map(|p| AdminInfo::from_banp(p).peer_sets())
                    .unwrap_or_default()
            };
            let (o, n) = (sets(old), sets(new));
            out.extend(o.symmetric_difference(&n).map(PeerSet::key));
        }
        Change::Namespace { old, new, .. } => {
            let (ol, nl) = (labels_of(old), labels_of(new));
            if ol == nl {
                return;
            }
            for u in idx.peer_sets_across() {
                let Scope::Namespaces(sel) = &u.set.scope else {
                    continue;
                };
                if ol.is_some_and(|l| sel.matches(l)) || nl.is_some_and(|l| sel.matches(l)) {
                    out.push(u.set.key());
                }
            }
        }
        _ => {
            for pod in pods_of(change, view) {
                let nsl = namespace_labels(view, &pod.namespace);
                for u in idx.peer_sets_for(&pod.namespace) {
                    if in_peer_set(&u.set, pod, nsl) {
                        out.push(u.set.key());
                    }
                }
            }
        }
    }
}

/// `PolicyHost` owners: a node whose subnets change; every node when the
/// first policy (NetworkPolicy or admin) arrives or the last one goes (a
/// create or delete is when that can happen).
pub fn hosts(change: &Change, view: &View, out: &mut Vec<String>) {
    let created_or_deleted = match change {
        Change::Node { name, .. } | Change::NodeSubnets { name } => {
            out.push(name.clone());
            false
        }
        Change::NetworkPolicy { old, new, .. } => old.is_none() || new.is_none(),
        Change::AdminNetworkPolicy { old, new, .. } => old.is_none() || new.is_none(),
        Change::BaselineAdminNetworkPolicy { old, new, .. } => old.is_none() || new.is_none(),
        _ => false,
    };
    if created_or_deleted {
        out.extend(view.decisions.node_subnets.keys().cloned())
    }
}
