//! ACL matches and rows: a policy's rules as allow ACLs on the port group
//! of the pods it selects.
//!
//! One ACL per rule, peer part and port part: the selector and namespace
//! peers of a rule share one ACL (`ip4.src == {$a.v4, $ns.b.v4} || ...`),
//! each ip block gets its own, and numbered ports share one while each
//! number a named port resolves to gets its own. OVN wants `&&` and `||`
//! parenthesized when mixed; every term here is either atomic or
//! parenthesized, so terms can be joined with `&&` freely.

use std::collections::BTreeMap;

use ovsdb::nb::{Acl, PortGroup};
use switchyard_api::names;

use crate::model::policy::{Direction, IpBlock, Peer, PolicyInfo, Port, Rule, Scope};
use crate::model::policy_index::{has_numbered, named_ports, named_set, plain_set, PeerSet};
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};

use super::sets::port_numbers;
use super::{acl_ids, fnv64, peer_set_name, pod_set_name, Logging, ALLOW};
use crate::translate::View;

/// OVN's limit on an ACL name.
const NAME_MAX: usize = 63;

/// An ACL before it becomes a row.
pub struct AclSpec {
    /// Unique among its owner's ACLs.
    pub key: String,
    pub direction: Direction,
    pub priority: i64,
    pub matches: String,
    /// `allow-related` or `drop`.
    pub action: &'static str,
    pub name: String,
    pub ids: BTreeMap<String, String>,
    /// The log severity, when logged.
    pub log: Option<String>,
}

/// A label for an ACL: a hash of its identity, never 0 (0 means none).
pub fn label(owner: &Owner, key: &str) -> i64 {
    let h = fnv64(&format!("{owner}|{key}"));
    let l = (h ^ (h >> 32)) as u32;
    i64::from(l.max(1))
}

/// `name` within OVN's 63 characters: cut, with a hash of the whole so
/// names stay distinct.
pub fn acl_name(name: &str) -> String {
    if name.len() <= NAME_MAX {
        return name.to_string();
    }
    let mut cut = NAME_MAX - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:08x}", &name[..cut], fnv64(name) as u32)
}

/// The row of `spec`, held by `parent`.
pub fn acl_row(owner: &Owner, parent: Parent, spec: AclSpec) -> DesiredRow {
    let (dir, options) = match spec.direction {
        Direction::Ingress => ("to-lport", Col::Map(BTreeMap::new())),
        Direction::Egress => ("from-lport", Col::map([("apply-after-lb", "true")])),
    };
    let logged = spec.log.is_some();
    DesiredRow::keyed(Table::Acl, &spec.key, owner)
        .ids(spec.ids)
        .col(Acl::PRIORITY, Col::Int(spec.priority))
        .col(Acl::DIRECTION, Col::str(dir))
        .col(Acl::MATCH, Col::Str(spec.matches))
        .col(Acl::ACTION, Col::str(spec.action))
        .col(Acl::NAME, Col::opt(Some(acl_name(&spec.name))))
        .col(Acl::LOG, Col::Bool(logged))
        .col(Acl::SEVERITY, Col::opt(spec.log))
        .col(
            Acl::METER,
            Col::opt(logged.then_some(names::ACL_LOGGING_METER)),
        )
        .col(Acl::LABEL, Col::Int(label(owner, &spec.key)))
        .col(Acl::OPTIONS, options)
        .parent(parent)
}

/// `$a`, or `{$a, $b}`.
fn set_ref(sets: &[String]) -> String {
    match sets {
        [one] => format!("${one}"),
        _ => {
            let refs: Vec<String> = sets.iter().map(|s| format!("${s}")).collect();
            format!("{{{}}}", refs.join(", "))
        }
    }
}

/// Wraps a disjunction of more than one term in parentheses.
pub fn any_of(terms: Vec<String>) -> Option<String> {
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(format!("({})", terms.join(" || "))),
    }
}

/// The addresses in sets `v4`/`v6` at `field` (`src` or `dst`).
pub fn sets_term(field: &str, v4: &[String], v6: &[String]) -> Option<String> {
    let mut t = Vec::new();
    if !v4.is_empty() {
        t.push(format!("ip4.{field} == {}", set_ref(v4)));
    }
    if !v6.is_empty() {
        t.push(format!("ip6.{field} == {}", set_ref(v6)));
    }
    any_of(t)
}

fn family(b: &IpBlock) -> &'static str {
    if b.cidr.addr().is_ipv4() {
        "ip4"
    } else {
        "ip6"
    }
}

/// An ip block at `field`.
pub fn block_term(field: &str, b: &IpBlock) -> String {
    let fam = family(b);
    let base = if b.cidr.prefix_len() == 0 {
        fam.to_string()
    } else {
        format!("{fam}.{field} == {}", b.cidr)
    };
    if b.except.is_empty() {
        return base;
    }
    let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
    format!("({base} && {fam}.{field} != {{{}}})", except.join(", "))
}

/// One protocol's numbered ports in a rule.
#[derive(Default)]
struct ProtoPorts {
    /// Every port of the protocol.
    whole: bool,
    singles: Vec<u16>,
    ranges: Vec<(u16, u16)>,
}

/// The numbered ports of a rule (whole protocols, numbers, ranges); `None`
/// when it has no ports, which is every port.
pub fn numbered_term(ports: Option<&[Port]>) -> Option<String> {
    let ports = ports?;
    let mut by_proto: BTreeMap<&str, ProtoPorts> = BTreeMap::new();
    for p in ports {
        match p {
            Port::Protocol(pr) => by_proto.entry(pr.ovn()).or_default().whole = true,
            Port::Range(pr, a, b) if a == b => {
                by_proto.entry(pr.ovn()).or_default().singles.push(*a)
            }
            Port::Range(pr, a, b) => by_proto.entry(pr.ovn()).or_default().ranges.push((*a, *b)),
            Port::Named(_) => {}
        }
    }
    let mut terms = Vec::new();
    for (proto, pp) in by_proto {
        if pp.whole {
            terms.push(proto.to_string());
            continue;
        }
        match pp.singles.as_slice() {
            [] => {}
            [one] => terms.push(format!("{proto}.dst == {one}")),
            many => {
                let list: Vec<String> = many.iter().map(ToString::to_string).collect();
                terms.push(format!("{proto}.dst == {{{}}}", list.join(", ")));
            }
        }
        for (a, b) in pp.ranges {
            terms.push(format!("({proto}.dst >= {a} && {proto}.dst <= {b})"));
        }
    }
    any_of(terms)
}

pub fn and(parts: &[Option<&str>]) -> String {
    let v: Vec<&str> = parts.iter().flatten().copied().collect();
    v.join(" && ")
}

/// The address sets of a set-like peer (selectors, namespaces), per
/// family, added to `v4`/`v6`.
fn peer_sets(peer: &Peer, view: &View, v4: &mut Vec<String>, v6: &mut Vec<String>) {
    let mut namespaces = |nss: &mut dyn Iterator<Item = &String>| {
        for ns in nss {
            v4.push(names::namespace_address_set(ns, false));
            v6.push(names::namespace_address_set(ns, true));
        }
    };
    match peer {
        Peer::Namespaces(sel) => {
            let picked = view
                .model
                .select_namespaces(sel.selector())
                .unwrap_or_default();
            namespaces(&mut picked.iter());
        }
        Peer::Pods {
            scope: Scope::Namespace(ns),
            ..
        } if plain_set(peer).is_none() => {
            if view.model.namespaces.contains_key(ns) {
                namespaces(&mut std::iter::once(ns));
            }
        }
        _ => {
            if let Some(s) = plain_set(peer) {
                v4.push(peer_set_name(&s, None, false));
                v6.push(peer_set_name(&s, None, true));
            }
        }
    }
}

/// A rule's peer parts: (key, match term), `None` term for any peer.
fn peer_terms(rule: &Rule, field: &str, view: &View) -> Vec<(String, Option<String>)> {
    let Some(peers) = &rule.peers else {
        return vec![("any".into(), None)];
    };
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    let mut blocks = 0;
    for peer in peers {
        match peer {
            Peer::Block(b) => {
                out.push((format!("b{blocks}"), Some(block_term(field, b))));
                blocks += 1;
            }
            _ => peer_sets(peer, view, &mut v4, &mut v6),
        }
    }
    for l in [&mut v4, &mut v6] {
        l.sort();
        l.dedup();
    }
    if let Some(t) = sets_term(field, &v4, &v6) {
        out.insert(0, ("sets".into(), Some(t)));
    }
    out
}

/// One rule's ACLs.
struct RuleCtx<'a> {
    policy: &'a PolicyInfo,
    view: &'a View<'a>,
    owner: &'a Owner,
    pg: &'a str,
    d: Direction,
    index: usize,
    log: Option<&'a String>,
}

impl RuleCtx<'_> {
    fn acl(&self, part: &str, matches: String) -> DesiredRow {
        let p = self.policy;
        let spec = AclSpec {
            key: format!("{}:{}:{}:{part}", self.pg, self.d.as_str(), self.index),
            direction: self.d,
            priority: ALLOW,
            matches,
            action: "allow-related",
            name: format!(
                "{}/{}:{}:{}",
                p.namespace,
                p.name,
                self.d.as_str(),
                self.index
            ),
            ids: acl_ids(&p.key(), self.d, Some(self.index), "allow"),
            log: self.log.cloned(),
        };
        let parent = Parent::new(Table::PortGroup, self.pg, PortGroup::ACLS);
        acl_row(self.owner, parent, spec)
    }

    fn rows(&self, rule: &Rule, out: &mut Vec<DesiredRow>) {
        let (side, field) = match self.d {
            Direction::Ingress => (format!("outport == @{}", self.pg), "src"),
            Direction::Egress => (format!("inport == @{}", self.pg), "dst"),
        };
        let peers = peer_terms(rule, field, self.view);
        if has_numbered(rule) {
            let ports = numbered_term(rule.ports.as_deref());
            for (pk, pt) in &peers {
                let l3 = (pt.is_none() && ports.is_none()).then_some("ip");
                let m = and(&[Some(&side), pt.as_deref(), ports.as_deref(), l3]);
                out.push(self.acl(&format!("{pk}:num"), m));
            }
        }
        for pn in named_ports(rule) {
            let tag = |n: u16| format!("{}/{}/{n}", pn.protocol.as_str(), pn.name);
            let dport = |n: u16| format!("{}.dst == {n}", pn.protocol.ovn());
            let set_names = |s: &PeerSet, n: u16| {
                (
                    vec![peer_set_name(s, Some(n), false)],
                    vec![peer_set_name(s, Some(n), true)],
                )
            };
            match (self.d, &rule.peers) {
                (Direction::Ingress, _) | (Direction::Egress, None) => {
                    // One destination set; the peers (ingress) are sources.
                    let ds = named_set(self.policy, self.d, None, pn);
                    for n in port_numbers(self.view, &ds) {
                        let (v4, v6) = set_names(&ds, n);
                        let dst = sets_term("dst", &v4, &v6);
                        for (pk, pt) in &peers {
                            let m =
                                and(&[Some(&side), pt.as_deref(), dst.as_deref(), Some(&dport(n))]);
                            out.push(self.acl(&format!("{pk}:{}", tag(n)), m));
                        }
                    }
                }
                (Direction::Egress, Some(list)) => {
                    // The peers are the destinations: each one's pods with
                    // the port, per number.
                    let mut by_n: BTreeMap<u16, (Vec<String>, Vec<String>)> = BTreeMap::new();
                    let mut blocks = Vec::new();
                    for peer in list {
                        if let Peer::Block(b) = peer {
                            blocks.push(b);
                            continue;
                        }
                        let ds = named_set(self.policy, self.d, Some(peer), pn);
                        for n in port_numbers(self.view, &ds) {
                            let (v4, v6) = set_names(&ds, n);
                            let e = by_n.entry(n).or_default();
                            e.0.extend(v4);
                            e.1.extend(v6);
                        }
                    }
                    for (n, (mut v4, mut v6)) in by_n {
                        v4.sort();
                        v4.dedup();
                        v6.sort();
                        v6.dedup();
                        let dst = sets_term("dst", &v4, &v6);
                        let m = and(&[Some(&side), dst.as_deref(), Some(&dport(n))]);
                        out.push(self.acl(&format!("sets:{}", tag(n)), m));
                    }
                    if blocks.is_empty() {
                        continue;
                    }
                    let ds = PeerSet::cluster_named(pn);
                    for n in port_numbers(self.view, &ds) {
                        for (j, b) in blocks.iter().enumerate() {
                            let v6 = family(b) == "ip6";
                            let pods = format!(
                                "{}.dst == ${}",
                                family(b),
                                peer_set_name(&ds, Some(n), v6)
                            );
                            let bt = block_term("dst", b);
                            let m = and(&[Some(&side), Some(&bt), Some(&pods), Some(&dport(n))]);
                            out.push(self.acl(&format!("b{j}:{}", tag(n)), m));
                        }
                    }
                }
            }
        }
    }
}

/// Every allow ACL of `p`.
pub fn policy_rows(p: &PolicyInfo, view: &View) -> Vec<DesiredRow> {
    let logging = Logging::of(view.model, &p.namespace);
    let owner = Owner::of(names::KIND_NETWORK_POLICY, p.key());
    let pg = pod_set_name(&p.pod_set());
    let mut out = Vec::new();
    for d in Direction::BOTH {
        for (index, rule) in p.rules(d).into_iter().flatten().enumerate() {
            let ctx = RuleCtx {
                policy: p,
                view,
                owner: &owner,
                pg: &pg,
                d,
                index,
                log: logging.allow.as_ref(),
            };
            ctx.rows(rule, &mut out);
        }
    }
    out
}
