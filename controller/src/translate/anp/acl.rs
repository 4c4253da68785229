//! An admin policy's rows: the port group of its subject, the address
//! sets of its node peers, and one ACL per rule part at the rule's
//! priority, or, where `Pass` rules above meet the part, one per piece
//! left once they are taken out ([`super::terms`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ovsdb::nb::{AddressSet, PortGroup};
use switchyard_api::{addressing, annotations, names};

use crate::model::admin::{egress_named, named, Action, AdminInfo, AdminPeer, AdminRule};
use crate::model::policy::{Direction, IpBlock, Peer, Port, PortName};
use crate::model::policy_index::{plain_set, PeerSet};
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};
use crate::translate::policy::acl::{
    acl_row, and, any_of, block_term, numbered_term, sets_term, AclSpec,
};
use crate::translate::policy::sets::{port_numbers, MEMBERS};
use crate::translate::policy::{acl_ids, fnv64, peer_set_name, Logging};
use crate::translate::View;

use super::terms::{compile, Compiled, Pass};

/// Whether `info` is the baseline.
fn prefix(info: &AdminInfo) -> &'static str {
    if info.priority.is_none() {
        "banp"
    } else {
        "anp"
    }
}

/// The port group of a policy's subject: `anp.<name>` / `banp.<name>`
/// (a DNS subdomain: only `-` needs mapping, and `_` never occurs in one).
pub fn subject_group(info: &AdminInfo) -> String {
    format!("{}.{}", prefix(info), info.name.replace('-', "_"))
}

/// The address set of the nodes one rule names, per family.
pub fn nodes_set(info: &AdminInfo, d: Direction, rule: usize, v6: bool) -> String {
    let dir = match d {
        Direction::Ingress => "i",
        Direction::Egress => "e",
    };
    let fam = if v6 { "v6" } else { "v4" };
    format!("{}.{dir}{rule}.nodes.{fam}", subject_group(info))
}

/// The subject's pods: their ports, their addresses, and a digest of
/// their identities (see [`MEMBERS`]).
struct SubjectPods {
    ports: Vec<String>,
    digest: String,
}

fn subject_pods(info: &AdminInfo, view: &View) -> SubjectPods {
    let m = view.model;
    let mut ports = Vec::new();
    let mut ident = String::new();
    let Some(s) = &info.subject else {
        return SubjectPods {
            ports,
            digest: format!("{:016x}", fnv64("")),
        };
    };
    let nss = m
        .select_namespaces(s.namespaces.selector())
        .unwrap_or_default();
    for ns in nss {
        for k in m
            .select_pods(Some(&ns), s.pods.selector())
            .unwrap_or_default()
        {
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
    }
    SubjectPods {
        ports,
        digest: format!("{:016x}", fnv64(&ident)),
    }
}

/// The addresses of the nodes `sel` picks: their status addresses and
/// their management port addresses.
pub fn node_addrs(view: &View, sel: &crate::model::policy::Selector) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for (name, n) in &view.model.nodes {
        if !sel.matches(&n.labels) {
            continue;
        }
        out.extend(n.addresses.iter().map(|(_, ip)| *ip));
        for s in view.decisions.node_subnets.get(name).into_iter().flatten() {
            out.extend(addressing::management(*s));
        }
    }
    out
}

/// What a rule part matches on top of its peers and numbered ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// Numbered ports (or none: every port).
    Numbered,
    /// A named port that resolves to this number on some subject pods.
    IngressNamed(PortName, u16),
    /// A named port that resolves to this number on some peer pods.
    EgressNamed(PortName, u16),
}

/// One part of a rule: a key unique in the rule, its match, and the
/// pieces of that match, which `Pass` terms ([`super::terms`]) reuse for
/// the dimensions a pass leaves whole.
#[derive(Clone, Debug)]
pub struct Part {
    pub key: String,
    pub matches: String,
    /// The subject (with, for an ingress named port, its pods that have
    /// the number).
    pub side: String,
    pub peer: Option<String>,
    pub l4: Option<String>,
    pub kind: PartKind,
}

/// The matches of a rule (no exclusions), one per part; none when the rule
/// matches nothing.
pub fn rule_matches(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
) -> Vec<Part> {
    let mut out = Vec::new();
    if r.peers.is_empty() {
        return out;
    }
    let pg = subject_group(info);
    let (side, field) = match d {
        Direction::Ingress => (format!("outport == @{pg}"), "src"),
        Direction::Egress => (format!("inport == @{pg}"), "dst"),
    };
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut terms = Vec::new();
    let mut nodes = false;
    for peer in &r.peers {
        match peer {
            AdminPeer::Pods(Peer::Namespaces(sel)) => {
                for ns in view
                    .model
                    .select_namespaces(sel.selector())
                    .unwrap_or_default()
                {
                    v4.push(names::namespace_address_set(&ns, false));
                    v6.push(names::namespace_address_set(&ns, true));
                }
            }
            AdminPeer::Pods(p) => {
                if let Some(s) = plain_set(p) {
                    v4.push(peer_set_name(&s, None, false));
                    v6.push(peer_set_name(&s, None, true));
                }
            }
            AdminPeer::Nodes(_) => nodes = true,
            AdminPeer::Networks(nets) => {
                for n in nets {
                    let b = IpBlock {
                        cidr: *n,
                        except: Vec::new(),
                    };
                    terms.push(block_term(field, &b));
                }
            }
        }
    }
    for l in [&mut v4, &mut v6] {
        l.sort();
        l.dedup();
    }
    if let Some(t) = sets_term(field, &v4, &v6) {
        terms.insert(0, t);
    }
    if nodes {
        let (n4, n6) = (nodes_set(info, d, i, false), nodes_set(info, d, i, true));
        terms.extend(sets_term(field, &[n4], &[n6]));
    }
    let peer = any_of(terms);
    let numbered = r
        .ports
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| !matches!(p, Port::Named(_))));
    if let (Some(pt), true) = (&peer, numbered) {
        let ports = numbered_term(r.ports.as_deref());
        out.push(Part {
            key: "num".into(),
            matches: and(&[Some(&side), Some(pt), ports.as_deref()]),
            side: side.clone(),
            peer: Some(pt.clone()),
            l4: ports,
            kind: PartKind::Numbered,
        });
    }
    let dport = |pn: &PortName, n: u16| format!("{}.dst == {n}", pn.protocol.ovn());
    let tag = |pn: &PortName, n: u16| format!("{}/{}/{n}", pn.protocol.as_str(), pn.name);
    let set_pair = |s: &PeerSet, n: u16| {
        (
            peer_set_name(s, Some(n), false),
            peer_set_name(s, Some(n), true),
        )
    };
    for pn in named(r) {
        match d {
            Direction::Ingress => {
                let (Some(pt), Some(ds)) = (&peer, info.subject_named(pn)) else {
                    continue;
                };
                for n in port_numbers(view, &ds) {
                    let (a, b) = set_pair(&ds, n);
                    let dst = sets_term("dst", &[a], &[b]);
                    let l4 = dport(pn, n);
                    out.push(Part {
                        key: tag(pn, n),
                        matches: and(&[Some(&side), Some(pt), dst.as_deref(), Some(&l4)]),
                        side: and(&[Some(&side), dst.as_deref()]),
                        peer: Some(pt.clone()),
                        l4: Some(l4),
                        kind: PartKind::IngressNamed(pn.clone(), n),
                    });
                }
            }
            Direction::Egress => {
                // Only pods have named ports: node and network peers
                // match no named port.
                let mut by_n: BTreeMap<u16, (Vec<String>, Vec<String>)> = BTreeMap::new();
                for peer in &r.peers {
                    let AdminPeer::Pods(p) = peer else { continue };
                    let ds = egress_named(p, pn);
                    for n in port_numbers(view, &ds) {
                        let (a, b) = set_pair(&ds, n);
                        let e = by_n.entry(n).or_default();
                        e.0.push(a);
                        e.1.push(b);
                    }
                }
                for (n, (mut a, mut b)) in by_n {
                    a.sort();
                    a.dedup();
                    b.sort();
                    b.dedup();
                    let dst = sets_term("dst", &a, &b);
                    let l4 = dport(pn, n);
                    out.push(Part {
                        key: tag(pn, n),
                        matches: and(&[Some(&side), dst.as_deref(), Some(&l4)]),
                        side: side.clone(),
                        peer: dst,
                        l4: Some(l4),
                        kind: PartKind::EgressNamed(pn.clone(), n),
                    });
                }
            }
        }
    }
    out
}

/// The ACL logging the policy's own `switchyard.io/acl-logging`
/// annotation asks for (as a namespace's does for its NetworkPolicies);
/// an invalid annotation logs nothing.
fn logging(info: &AdminInfo, view: &View) -> Logging {
    let m = view.model;
    let meta = match info.priority {
        Some(_) => m
            .admin_network_policies
            .get(&info.name)
            .map(|p| &p.metadata),
        None => m
            .baseline_admin_network_policies
            .get(&info.name)
            .map(|p| &p.metadata),
    };
    meta.and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(annotations::ACL_LOGGING))
        .and_then(|t| Logging::parse(t).ok())
        .unwrap_or_default()
}

/// A rule's place: its priority and the `Pass` rules above it in its
/// direction.
pub struct Placed<'a> {
    pub priority: i64,
    pub pass_above: &'a [Pass<'a>],
}

/// Every row of one admin policy. `place(d, i)` is `None` for a rule with
/// no room in the band (reported by the caller); a rule that cannot be
/// programmed adds a note to `notes`.
pub fn policy_rows<'p>(
    info: &AdminInfo,
    kind: &'static str,
    view: &View,
    notes: &mut Vec<String>,
    mut place: impl FnMut(Direction, usize) -> Option<Placed<'p>>,
) -> Vec<DesiredRow> {
    let owner = Owner::of(kind, info.name.clone());
    let logging = logging(info, view);
    let pg = subject_group(info);
    let subject = subject_pods(info, view);
    let what = match &info.subject {
        Some(s) => format!(
            "pods {} in namespaces {}",
            s.pods.display(),
            s.namespaces.display()
        ),
        None => "no pod".to_string(),
    };
    let mut out = vec![DesiredRow::named(Table::PortGroup, &pg, &owner)
        .ids([
            (names::SELECTOR, what.as_str()),
            (MEMBERS, subject.digest.as_str()),
        ])
        .col(
            PortGroup::PORTS,
            Col::refs(Table::LogicalSwitchPort, subject.ports),
        )];
    for d in Direction::BOTH {
        for (i, r) in info.rules(d).iter().enumerate() {
            for (j, peer) in r.peers.iter().enumerate() {
                let AdminPeer::Nodes(sel) = peer else {
                    continue;
                };
                if r.peers[..j]
                    .iter()
                    .any(|p| matches!(p, AdminPeer::Nodes(_)))
                {
                    continue;
                }
                // One set pair per rule: the union of its node peers.
                let mut addrs = node_addrs(view, sel);
                for p in &r.peers[j + 1..] {
                    if let AdminPeer::Nodes(s) = p {
                        addrs.extend(node_addrs(view, s));
                    }
                }
                for v6 in [false, true] {
                    let list: Vec<String> = addrs
                        .iter()
                        .filter(|a| a.is_ipv6() == v6)
                        .map(ToString::to_string)
                        .collect();
                    out.push(
                        DesiredRow::named(Table::AddressSet, nodes_set(info, d, i, v6), &owner)
                            .ids([(names::SELECTOR, format!("nodes of rule {} {i}", d.as_str()))])
                            .col(AddressSet::ADDRESSES, Col::set(list)),
                    );
                }
            }
            let action = match r.action {
                Action::Allow => "allow-related",
                Action::Deny => "drop",
                // A Pass has no ACL: the rules below leave its traffic out
                // (see `terms`), for NetworkPolicy and the baseline.
                Action::Pass => continue,
            };
            let Some(at) = place(d, i) else { continue };
            let compiled = match compile(info, d, i, r, view, at.pass_above, &owner) {
                Ok(c) => c,
                Err(note) => {
                    notes.push(note);
                    continue;
                }
            };
            let mut acls = Vec::new();
            for c in compiled {
                match c {
                    Compiled::Whole(p) => acls.push((p.key, p.matches)),
                    Compiled::Terms(t, rows) => {
                        acls.extend(t);
                        out.extend(rows);
                    }
                }
            }
            for (part, m) in acls {
                let spec = AclSpec {
                    key: format!("{}:{i}:{part}", d.as_str()),
                    direction: d,
                    priority: at.priority,
                    matches: m,
                    action,
                    name: format!("{}:{}:{}:{}", prefix(info), info.name, d.as_str(), r.name),
                    ids: acl_ids(&info.name, d, Some(i), r.action.as_str()),
                    log: match r.action {
                        Action::Allow => logging.allow.clone(),
                        _ => logging.deny.clone(),
                    },
                };
                out.push(acl_row(
                    &owner,
                    Parent::new(Table::PortGroup, &pg, PortGroup::ACLS),
                    spec,
                ));
            }
        }
    }
    out
}
