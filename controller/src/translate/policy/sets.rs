//! The shared sets: the port group of a pod set with the default denies of
//! the directions its policies isolate, and the address sets of a peer
//! set.
//!
//! Members are pods with decided addresses (the pods that have a port);
//! `hostNetwork` and finished pods have none and are never members.

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::nb::{AddressSet, PortGroup};
use switchyard_api::names;

use crate::model::policy::{Direction, Scope};
use crate::model::policy_index::{PeerSet, PodSet, Used};
use crate::model::PodInfo;
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};
use crate::translate::{Assigned, View};

use super::acl::{acl_row, AclSpec};
use super::{acl_ids, fnv64, peer_set_name, pod_set_name, Logging, DENY};

/// `external_ids` key on a pod set's port group: a digest of its members'
/// port names and UIDs. A pod recreated under its name gets a new port
/// row; the digest changes with it, so the port group is rewritten in the
/// same transaction rather than found short of the new port afterwards.
pub const MEMBERS: &str = "switchyard.io/members";

/// Calls `f` for every pod a peer set's scope and selector pick that has
/// addresses, with the number its named port resolves to (`None` for an
/// unfiltered set); pods without the named port are skipped.
fn walk(view: &View, set: &PeerSet, mut f: impl FnMut(&PodInfo, &Assigned, Option<u16>)) {
    let m = view.model;
    let picked: BTreeSet<String> = match &set.scope {
        Scope::Namespace(ns) => m
            .select_pods(Some(ns), set.pods.selector())
            .unwrap_or_default(),
        Scope::Namespaces(sel) if sel.is_all() => {
            m.select_pods(None, set.pods.selector()).unwrap_or_default()
        }
        Scope::Namespaces(sel) => m
            .select_namespaces(sel.selector())
            .unwrap_or_default()
            .iter()
            .flat_map(|ns| {
                m.select_pods(Some(ns), set.pods.selector())
                    .unwrap_or_default()
            })
            .collect(),
    };
    for key in picked {
        let (Some(pod), Some(a)) = (m.pod(&key), view.decisions.pod_addresses.get(&key)) else {
            continue;
        };
        let port = match &set.port {
            None => None,
            Some(pn) => match pod
                .ports
                .iter()
                .find(|np| np.name == pn.name && np.protocol == pn.protocol.as_str())
            {
                Some(np) => Some(np.port),
                None => continue,
            },
        };
        f(pod, a, port);
    }
}

/// A peer set's addresses per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addrs {
    pub v4: BTreeSet<String>,
    pub v6: BTreeSet<String>,
}

/// A peer set's members: addresses per port number (the one key `None`
/// for an unfiltered set, always present; for a named port only the
/// numbers some member has).
pub fn members(view: &View, set: &PeerSet) -> BTreeMap<Option<u16>, Addrs> {
    let mut out: BTreeMap<Option<u16>, Addrs> = BTreeMap::new();
    if set.port.is_none() {
        out.insert(None, Addrs::default());
    }
    walk(view, set, |_, a, port| {
        let e = out.entry(port).or_default();
        for ip in a.addrs() {
            if ip.is_ipv4() {
                e.v4.insert(ip.to_string());
            } else {
                e.v6.insert(ip.to_string());
            }
        }
    });
    out
}

/// The numbers a named peer set's port resolves to among its members.
pub fn port_numbers(view: &View, set: &PeerSet) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    walk(view, set, |_, _, port| out.extend(port));
    out
}

/// Readable form of a peer set, for `external_ids`.
pub fn describe(set: &PeerSet) -> String {
    let mut s = match &set.scope {
        Scope::Namespace(ns) => format!("pods {} in namespace {ns}", set.pods.display()),
        Scope::Namespaces(sel) => format!(
            "pods {} in namespaces {}",
            set.pods.display(),
            sel.display()
        ),
    };
    if let Some(p) = &set.port {
        s.push_str(&format!(" with port {}/{}", p.protocol.as_str(), p.name));
    }
    s
}

/// A peer set's address sets: `.v4` and `.v6`, per resolved port number
/// for a named port.
pub fn peer_set_rows(key: &str, set: &PeerSet, view: &View) -> Vec<DesiredRow> {
    let owner = Owner::of(names::KIND_POLICY_PEERS, key);
    let what = describe(set);
    let mut out = Vec::new();
    for (port, addrs) in members(view, set) {
        for (v6, list) in [(false, addrs.v4), (true, addrs.v6)] {
            out.push(
                DesiredRow::named(Table::AddressSet, peer_set_name(set, port, v6), &owner)
                    .ids([(names::SELECTOR, what.as_str())])
                    .col(AddressSet::ADDRESSES, Col::set(list)),
            );
        }
    }
    out
}

/// The ports of the pods a pod set picks, and the digest of their
/// identities.
fn pod_set_ports(view: &View, s: &PodSet) -> (Vec<String>, String) {
    let m = view.model;
    let keys = m
        .select_pods(Some(&s.namespace), s.pods.selector())
        .unwrap_or_default();
    let mut ports = Vec::new();
    let mut ident = String::new();
    for k in keys {
        let Some(p) = m.pod(&k) else { continue };
        if p.node.is_none() || !view.decisions.pod_addresses.contains_key(&k) {
            continue;
        }
        let port = names::pod_port(&p.namespace, &p.name);
        ident.push_str(&port);
        ident.push('=');
        ident.push_str(&p.uid);
        ident.push(';');
        ports.push(port);
    }
    (ports, format!("{:016x}", fnv64(&ident)))
}

/// A pod set's port group and the default deny of each direction one of
/// its policies isolates.
pub fn pod_set_rows(used: &Used<PodSet>, view: &View) -> Vec<DesiredRow> {
    let s = &used.set;
    let owner = Owner::of(names::KIND_POLICY_PODS, s.key());
    let pg = pod_set_name(s);
    let (ports, digest) = pod_set_ports(view, s);
    let mut out = vec![DesiredRow::named(Table::PortGroup, &pg, &owner)
        .ids([
            (names::SELECTOR, s.pods.display()),
            (MEMBERS, digest.as_str()),
        ])
        .col(PortGroup::PORTS, Col::refs(Table::LogicalSwitchPort, ports))];
    let logging = Logging::of(view.model, &s.namespace);
    for d in Direction::BOTH {
        let isolating: Vec<&String> = used
            .users
            .iter()
            .filter(|u| {
                view.model
                    .policy_index
                    .policy(u)
                    .is_some_and(|p| p.isolates(d))
            })
            .collect();
        let Some(first) = isolating.first() else {
            continue;
        };
        let side = match d {
            Direction::Ingress => "outport",
            Direction::Egress => "inport",
        };
        let more = match isolating.len() {
            1 => String::new(),
            n => format!("+{}", n - 1),
        };
        let users: Vec<&str> = isolating.iter().map(|s| s.as_str()).collect();
        let spec = AclSpec {
            key: format!("deny:{}", d.as_str()),
            direction: d,
            priority: DENY,
            matches: format!("{side} == @{pg} && ip"),
            action: "drop",
            name: format!("{first}{more}:{}:deny", d.as_str()),
            ids: acl_ids(&users.join(","), d, None, "deny"),
            log: logging.deny.clone(),
        };
        out.push(acl_row(
            &owner,
            Parent::new(Table::PortGroup, &pg, PortGroup::ACLS),
            spec,
        ));
    }
    out
}
