//! An admin policy's rows: the port group of its subject, the address
//! sets of its node peers, and one ACL per rule part at the rule's
//! priority, with the matches of every higher `Pass` rule excluded.

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

/// The address set of the subject's pods, per family (what `Pass`
/// exclusions match: OVN refuses a negated port match).
pub fn subject_set(info: &AdminInfo, v6: bool) -> String {
    format!(
        "{}.subject.{}",
        subject_group(info),
        if v6 { "v6" } else { "v4" }
    )
}

/// The subject's pods: their ports, their addresses, and a digest of
/// their identities (see [`MEMBERS`]).
struct SubjectPods {
    ports: Vec<String>,
    addrs: BTreeSet<IpAddr>,
    digest: String,
}

fn subject_pods(info: &AdminInfo, view: &View) -> SubjectPods {
    let m = view.model;
    let mut ports = Vec::new();
    let mut addrs = BTreeSet::new();
    let mut ident = String::new();
    let Some(s) = &info.subject else {
        return SubjectPods {
            ports,
            addrs,
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
            let Some(a) = view.decisions.pod_addresses.get(&k) else {
                continue;
            };
            if p.node.is_none() {
                continue;
            }
            addrs.extend(a.addrs());
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
        addrs,
        digest: format!("{:016x}", fnv64(&ident)),
    }
}

/// The addresses of the nodes `sel` picks: their status addresses and
/// their management port addresses.
fn node_addrs(view: &View, sel: &crate::model::policy::Selector) -> BTreeSet<IpAddr> {
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

/// One part of a rule: a key unique in the rule and a match.
pub type Part = (String, String);

/// How a rule's match names its subject.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// By port group: the ACL's own match.
    Ports,
    /// By address set: a `Pass` match to negate (OVN refuses a negated
    /// port match).
    Addresses,
    /// Not at all: a `Pass` match negated in the same policy's ACLs, which
    /// name the subject already.
    Omitted,
}

/// The matches of a rule (no exclusions), one per part; none when the rule
/// matches nothing.
pub fn rule_matches(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
    how: Side,
) -> Vec<Part> {
    let mut out = Vec::new();
    if r.peers.is_empty() {
        return out;
    }
    let pg = subject_group(info);
    let (port_side, field, own) = match d {
        Direction::Ingress => (format!("outport == @{pg}"), "src", "dst"),
        Direction::Egress => (format!("inport == @{pg}"), "dst", "src"),
    };
    let side = match how {
        Side::Ports => Some(port_side),
        Side::Addresses => sets_term(own, &[subject_set(info, false)], &[subject_set(info, true)]),
        Side::Omitted => None,
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
        out.push((
            "num".into(),
            and(&[side.as_deref(), Some(pt), ports.as_deref()]),
        ));
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
                    let m = and(&[
                        side.as_deref(),
                        Some(pt),
                        dst.as_deref(),
                        Some(&dport(pn, n)),
                    ]);
                    out.push((tag(pn, n), m));
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
                    let m = and(&[side.as_deref(), dst.as_deref(), Some(&dport(pn, n))]);
                    out.push((tag(pn, n), m));
                }
            }
        }
    }
    out
}

/// `&& !((m1) || (m2) ...)`: what keeps an ACL off the traffic of the
/// `Pass` rules above it.
pub fn exclusion(pass: &[String]) -> String {
    if pass.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pass.iter().map(|m| format!("({m})")).collect();
    format!(" && !({})", parts.join(" || "))
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

/// A rule's place: its priority and the matches of the `Pass` rules above
/// it in its direction.
pub struct Placed<'a> {
    pub priority: i64,
    pub pass_above: &'a [String],
}

/// Every row of one admin policy. `place(d, i)` is `None` for a rule with
/// no room in the band (reported by the caller).
pub fn policy_rows<'p>(
    info: &AdminInfo,
    kind: &'static str,
    view: &View,
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
    if info.has_pass() && view.config.admin_pass_exclusions {
        for v6 in [false, true] {
            let list: Vec<String> = subject
                .addrs
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(ToString::to_string)
                .collect();
            out.push(
                DesiredRow::named(Table::AddressSet, subject_set(info, v6), &owner)
                    .ids([(names::SELECTOR, what.as_str())])
                    .col(AddressSet::ADDRESSES, Col::set(list)),
            );
        }
    }
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
                // A Pass has no ACL: the rules below exclude its traffic,
                // which NetworkPolicy and the baseline then judge.
                Action::Pass => continue,
            };
            let Some(at) = place(d, i) else { continue };
            let excl = exclusion(at.pass_above);
            for (part, m) in rule_matches(info, d, i, r, view, Side::Ports) {
                let spec = AclSpec {
                    key: format!("{}:{i}:{part}", d.as_str()),
                    direction: d,
                    priority: at.priority,
                    matches: format!("{m}{excl}"),
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
