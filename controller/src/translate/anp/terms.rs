//! `Pass` compiled exactly and without negation: an ANP rule part below
//! `Pass` rules (same direction) becomes the disjoint cubes of
//! [`super::algebra`] that are left when every pass cube is taken out,
//! each one ACL at the rule's priority with the rule's action.
//!
//! Each cube dimension that a pass did not touch keeps the rule's own
//! match (the subject's port group, the shared peer sets, the port
//! clause); a touched one becomes a row of this policy: a port group
//! `<pg>.<d><rule>.p<part>.t<term>` of the remaining subject pods, address
//! sets `….v4/.v6` of the remaining peer CIDRs, or a list of port ranges
//! (with `ip.proto` ranges for "any other protocol"). A part that no pass
//! meets is compiled as before, with no extra row. The rows are the
//! policy's own, rewritten in the transaction that carries the membership
//! change that moved them.
//!
//! Terms multiply with overlapping passes, so a rule needing more than
//! [`MAX_TERMS`] is not programmed at all (its traffic falls to
//! NetworkPolicy, as if passed) and the policy reports it.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use ovsdb::nb::{AddressSet, PortGroup};
use switchyard_api::names;

use crate::model::admin::{egress_named, AdminInfo, AdminPeer, AdminRule};
use crate::model::policy::{Direction, Peer, Port, PortName, Protocol, Scope, Selector};
use crate::model::policy_index::{plain_set, PeerSet};
use crate::nb::{Col, DesiredRow, Owner, Table};
use crate::translate::policy::acl::{and, any_of, sets_term};
use crate::translate::policy::fnv64;
use crate::translate::policy::sets::{members, MEMBERS};
use crate::translate::View;

use super::acl::{node_addrs, rule_matches, subject_group, Part, PartKind};
use super::algebra::{
    exclude, l4_any, l4_ports, Cube, IpSet, Ranges, OTHER, PROTOCOLS, PROTOCOL_NUMBERS,
};

/// Most ACLs one rule may take once the passes above it are excluded.
pub const MAX_TERMS: usize = 64;

/// The subject's pods: port name → (uid, named ports as
/// (name, protocol, number)).
type Pods = BTreeMap<String, (String, Vec<(String, String, u16)>)>;

fn subject(info: &AdminInfo, view: &View) -> Pods {
    let m = view.model;
    let mut out = Pods::new();
    let Some(s) = &info.subject else { return out };
    for ns in m
        .select_namespaces(s.namespaces.selector())
        .unwrap_or_default()
    {
        for k in m
            .select_pods(Some(&ns), s.pods.selector())
            .unwrap_or_default()
        {
            let Some(p) = m.pod(&k) else { continue };
            if p.node.is_none() || !view.decisions.pod_addresses.contains_key(&k) {
                continue;
            }
            let ports = p
                .ports
                .iter()
                .map(|np| (np.name.clone(), np.protocol.clone(), np.port))
                .collect();
            out.insert(
                names::pod_port(&p.namespace, &p.name),
                (p.uid.clone(), ports),
            );
        }
    }
    out
}

fn addrs_of(view: &View, set: &PeerSet, n: Option<u16>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Some(a) = members(view, set).get(&n) {
        out.extend(
            a.v4.iter()
                .chain(&a.v6)
                .filter_map(|s| s.parse::<IpAddr>().ok()),
        );
    }
    out
}

/// Every address a rule's peers name.
fn peers(r: &AdminRule, view: &View) -> IpSet {
    let mut nets = Vec::new();
    for p in &r.peers {
        match p {
            AdminPeer::Pods(Peer::Namespaces(sel)) => {
                let set = PeerSet {
                    scope: Scope::Namespaces(sel.clone()),
                    pods: Selector::all(),
                    port: None,
                };
                nets.extend(addrs_of(view, &set, None).into_iter().map(IpNet::from));
            }
            AdminPeer::Pods(p) => {
                if let Some(s) = plain_set(p) {
                    nets.extend(addrs_of(view, &s, None).into_iter().map(IpNet::from));
                }
            }
            AdminPeer::Nodes(sel) => {
                nets.extend(node_addrs(view, sel).into_iter().map(IpNet::from))
            }
            AdminPeer::Networks(ns) => nets.extend(ns.iter().copied()),
        }
    }
    IpSet::from_nets(nets)
}

fn proto(p: Protocol) -> usize {
    PROTOCOLS.iter().position(|n| *n == p.ovn()).unwrap_or(0)
}

/// The numbered ports of a rule on the L4 line (`None`: every packet).
fn numbered(ports: Option<&[Port]>) -> Ranges {
    let Some(ports) = ports else { return l4_any() };
    let mut out = Ranges::default();
    for p in ports {
        let r = match p {
            Port::Protocol(pr) => l4_ports(proto(*pr), 0, u16::MAX),
            Port::Range(pr, a, b) => l4_ports(proto(*pr), *a, *b),
            Port::Named(_) => continue,
        };
        out = out.union(&r);
    }
    out
}

fn has_port(ports: &[(String, String, u16)], pn: &PortName, n: u16) -> bool {
    ports
        .iter()
        .any(|(name, pr, num)| *name == pn.name && pr == pn.protocol.as_str() && *num == n)
}

/// A rule's parts with their cubes, computed as far as needed: the peers
/// only when some pass meets the subject.
struct Rule<'a> {
    r: &'a AdminRule,
    pods: &'a Pods,
    view: &'a View<'a>,
    peers: Option<IpSet>,
}

impl Rule<'_> {
    fn subject(&self, k: &PartKind) -> BTreeSet<String> {
        self.pods
            .iter()
            .filter(|(_, (_, ports))| match k {
                PartKind::IngressNamed(pn, n) => has_port(ports, pn, *n),
                _ => true,
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn cube(&mut self, k: &PartKind, subject: BTreeSet<String>) -> Cube {
        let peer = match k {
            PartKind::EgressNamed(pn, n) => {
                let mut nets = Vec::new();
                for p in &self.r.peers {
                    let AdminPeer::Pods(p) = p else { continue };
                    let set = egress_named(p, pn);
                    nets.extend(addrs_of(self.view, &set, Some(*n)));
                }
                IpSet::from_addrs(nets)
            }
            _ => self
                .peers
                .get_or_insert_with(|| peers(self.r, self.view))
                .clone(),
        };
        let l4 = match k {
            PartKind::Numbered => numbered(self.r.ports.as_deref()),
            PartKind::IngressNamed(pn, n) | PartKind::EgressNamed(pn, n) => {
                l4_ports(proto(pn.protocol), *n, *n)
            }
        };
        Cube { subject, peer, l4 }
    }
}

/// A `Pass` rule above the rules being compiled (rule `i` of `info` in
/// direction `d`): its subject's pods at once, its cubes only once a part
/// below meets those pods.
///
/// Why lazy: a pass's cubes read the concrete members of its peers
/// (thousands of pod addresses for a namespace), and every ANP below
/// reads every pass above it, in its rows and again in its `Ready`
/// condition; most passes meet no part below (their subjects differ), and
/// a pass whose subject misses a part leaves it whole, so its peers are
/// never needed there. The cubes, once read, are kept for the other rules
/// of the same translation; nothing outlives it, so nothing can go stale.
pub struct Pass<'a> {
    info: &'a AdminInfo,
    d: Direction,
    i: usize,
    r: &'a AdminRule,
    pods: Pods,
    cubes: OnceCell<Vec<Cube>>,
}

impl<'a> Pass<'a> {
    pub fn new(
        info: &'a AdminInfo,
        d: Direction,
        i: usize,
        r: &'a AdminRule,
        view: &View,
    ) -> Pass<'a> {
        Pass {
            info,
            d,
            i,
            r,
            pods: subject(info, view),
            cubes: OnceCell::new(),
        }
    }

    /// Whether some pod of `s` is among the pass's subject pods (every
    /// cube of the pass has a subset of them).
    fn meets(&self, s: &BTreeSet<String>) -> bool {
        if s.len() <= self.pods.len() {
            s.iter().any(|p| self.pods.contains_key(p))
        } else {
            self.pods.keys().any(|p| s.contains(p))
        }
    }

    /// The non-empty cubes of the pass, one per part of its rule.
    fn cubes(&self, view: &View) -> &[Cube] {
        self.cubes.get_or_init(|| {
            let mut rule = Rule {
                r: self.r,
                pods: &self.pods,
                view,
                peers: None,
            };
            rule_matches(self.info, self.d, self.i, self.r, view)
                .into_iter()
                .map(|p| {
                    let s = rule.subject(&p.kind);
                    rule.cube(&p.kind, s)
                })
                .filter(|c| !c.is_empty())
                .collect()
        })
    }
}

/// What one rule part compiles to.
pub enum Compiled {
    /// The part's own match: no pass meets it.
    Whole(Part),
    /// The pieces left once the passes are out: (key, match) and rows.
    Terms(Vec<(String, String)>, Vec<DesiredRow>),
}

/// A part and, when some pass meets it, its cube and the pieces left.
type Pieces = Vec<(Part, Option<(Cube, Vec<Cube>)>)>;

/// The parts of rule `i` of `info` minus `passes`, with the subject's
/// pods; `Err` with a note past [`MAX_TERMS`].
fn pieces(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
    passes: &[Pass],
) -> Result<(Pods, Pieces), String> {
    let parts = rule_matches(info, d, i, r, view);
    if passes.is_empty() {
        return Ok((Pods::new(), parts.into_iter().map(|p| (p, None)).collect()));
    }
    let pods = subject(info, view);
    let mut rule = Rule {
        r,
        pods: &pods,
        view,
        peers: None,
    };
    let mut out = Vec::new();
    let mut count = 0;
    for part in parts {
        let s = rule.subject(&part.kind);
        // Only the cubes that meet the part's subject: one that misses it
        // leaves every piece as it is (`Cube::minus`), so the pieces are
        // those of all the passes, in the same order.
        let meeting: Vec<&Cube> = passes
            .iter()
            .filter(|p| p.meets(&s))
            .flat_map(|p| p.cubes(view))
            .filter(|c| !c.subject.is_disjoint(&s))
            .collect();
        if meeting.is_empty() {
            count += 1;
            out.push((part, None));
            continue;
        }
        let cube = rule.cube(&part.kind, s);
        let terms = exclude(&cube, meeting, MAX_TERMS).map_err(|n| too_many(d, r, n))?;
        count += terms.len();
        if count > MAX_TERMS {
            return Err(too_many(d, r, count));
        }
        if terms.len() == 1 && terms[0] == cube {
            out.push((part, None));
        } else {
            out.push((part, Some((cube, terms))));
        }
    }
    Ok((pods, out))
}

/// The note [`compile`] gives for rule `i`, if any, without its rows.
pub fn check(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
    passes: &[Pass],
) -> Option<String> {
    if fits(info, d, i, r, view, passes) {
        return None;
    }
    pieces(info, d, i, r, view, passes).err()
}

/// Whether rule `i` surely stays within [`MAX_TERMS`], known without
/// reading its own peers: a cube that `k` pass cubes meet falls into at
/// most `3^k` pieces (`Cube::minus` cuts one into at most three), and a
/// part no pass meets is one ACL. Why: the `Ready` condition asks this of
/// every rule below a `Pass` each time it is evaluated, and the rule's
/// peers are the costly read (every pod's address for "every namespace").
fn fits(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
    passes: &[Pass],
) -> bool {
    if passes.is_empty() {
        return true;
    }
    let pods = subject(info, view);
    let rule = Rule {
        r,
        pods: &pods,
        view,
        peers: None,
    };
    let mut most = 0usize;
    for part in rule_matches(info, d, i, r, view) {
        let s = rule.subject(&part.kind);
        let k = passes
            .iter()
            .filter(|p| p.meets(&s))
            .flat_map(|p| p.cubes(view))
            .filter(|c| !c.subject.is_disjoint(&s))
            .count();
        let pieces = match k {
            0 => 1,
            k => 3usize.saturating_pow(u32::try_from(k).unwrap_or(u32::MAX)),
        };
        most = most.saturating_add(pieces);
        if most > MAX_TERMS {
            return false;
        }
    }
    true
}

/// The parts of rule `i` of `info`, excluding `passes`; `Err` with a note
/// when it needs more than [`MAX_TERMS`] ACLs.
pub fn compile(
    info: &AdminInfo,
    d: Direction,
    i: usize,
    r: &AdminRule,
    view: &View,
    passes: &[Pass],
    owner: &Owner,
) -> Result<Vec<Compiled>, String> {
    let (pods, pieces) = pieces(info, d, i, r, view, passes)?;
    let mut out = Vec::new();
    for (j, (part, cut)) in pieces.into_iter().enumerate() {
        let Some((cube, terms)) = cut else {
            out.push(Compiled::Whole(part));
            continue;
        };
        let stem = format!("{}.{}{i}.p{j}", subject_group(info), dir_letter(d));
        let mut acls = Vec::new();
        let mut rows = Vec::new();
        for (k, t) in terms.iter().enumerate() {
            let name = format!("{stem}.t{k}");
            let m = render(&part, &cube, t, d, &name, &pods, owner, &mut rows);
            acls.push((format!("{}:t{k}", part.key), m));
        }
        out.push(Compiled::Terms(acls, rows));
    }
    Ok(out)
}

fn too_many(d: Direction, r: &AdminRule, n: usize) -> String {
    format!(
        "{} rule {:?} needs {n} or more ACLs to leave out the Pass rules above it, more than {MAX_TERMS}; it is not enforced",
        d.as_str(),
        r.name
    )
}

fn dir_letter(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "i",
        Direction::Egress => "e",
    }
}

/// The match of term `t` of `part` (whose whole cube is `cube`), with the
/// rows it names pushed to `rows`.
#[allow(clippy::too_many_arguments)]
fn render(
    part: &Part,
    cube: &Cube,
    t: &Cube,
    d: Direction,
    name: &str,
    pods: &Pods,
    owner: &Owner,
    rows: &mut Vec<DesiredRow>,
) -> String {
    let (port_field, field) = match d {
        Direction::Ingress => ("outport", "src"),
        Direction::Egress => ("inport", "dst"),
    };
    let side = if t.subject == cube.subject {
        part.side.clone()
    } else {
        let mut ident = String::new();
        for p in &t.subject {
            let uid = pods.get(p).map_or("", |(u, _)| u.as_str());
            ident.push_str(&format!("{p}={uid};"));
        }
        let digest = format!("{:016x}", fnv64(&ident));
        rows.push(
            DesiredRow::named(Table::PortGroup, name, owner)
                .ids([
                    (names::SELECTOR, "subject pods a Pass above leaves"),
                    (MEMBERS, digest.as_str()),
                ])
                .col(
                    PortGroup::PORTS,
                    Col::refs(Table::LogicalSwitchPort, t.subject.iter().cloned()),
                ),
        );
        format!("{port_field} == @{name}")
    };
    let peer = if t.peer == cube.peer {
        part.peer.clone()
    } else {
        let mut fams: [Vec<String>; 2] = Default::default();
        for (k, v6) in [false, true].into_iter().enumerate() {
            let cidrs: Vec<String> = t.peer.cidrs(v6).iter().map(ToString::to_string).collect();
            if cidrs.is_empty() {
                continue;
            }
            let set = format!("{name}.{}", if v6 { "v6" } else { "v4" });
            rows.push(
                DesiredRow::named(Table::AddressSet, &set, owner)
                    .ids([(names::SELECTOR, "peers a Pass above leaves")])
                    .col(AddressSet::ADDRESSES, Col::set(cidrs)),
            );
            fams[k].push(set);
        }
        sets_term(field, &fams[0], &fams[1])
    };
    let l4 = if t.l4 == cube.l4 {
        part.l4.clone()
    } else {
        l4_term(&t.l4)
    };
    and(&[Some(side.as_str()), peer.as_deref(), l4.as_deref()])
}

/// `field == {…}` of single values and `>=`/`<=` pairs of ranges, over
/// `spans` in `0..=max`.
fn numbers(field: &str, spans: &[(u128, u128)], max: u128, out: &mut Vec<String>) {
    let mut singles = Vec::new();
    for &(a, b) in spans {
        match (a, b) {
            (a, b) if a == b => singles.push(a.to_string()),
            (0, b) => out.push(format!("{field} <= {b}")),
            (a, b) if b == max => out.push(format!("{field} >= {a}")),
            (a, b) => out.push(format!("({field} >= {a} && {field} <= {b})")),
        }
    }
    match singles.len() {
        0 => {}
        1 => out.push(format!("{field} == {}", singles[0])),
        _ => out.push(format!("{field} == {{{}}}", singles.join(", "))),
    }
}

/// A positive match of the L4 points `l4`; `None` for every packet.
pub fn l4_term(l4: &Ranges) -> Option<String> {
    if *l4 == l4_any() {
        return None;
    }
    let mut terms = Vec::new();
    let mut whole = [false; 3];
    for (k, p) in PROTOCOLS.iter().enumerate() {
        let base = (k as u128) << 16;
        let dom = Ranges::span(base, base + 65535);
        let have = l4.and(&dom);
        if have == dom {
            whole[k] = true;
            continue;
        }
        let spans: Vec<(u128, u128)> = have
            .spans()
            .iter()
            .map(|(a, b)| (a - base, b - base))
            .collect();
        numbers(&format!("{p}.dst"), &spans, 65535, &mut terms);
    }
    if l4.contains(OTHER) {
        // Every IP protocol but the port-filtered ones, value by value:
        // `ip.proto` is nominal (OVN takes only `==`/`!=` on it), and a
        // list of constants is positive and bounded (at most 256 flows).
        let partial = PROTOCOL_NUMBERS
            .iter()
            .zip(whole)
            .filter(|(_, w)| !w)
            .map(|(n, _)| (u128::from(*n), u128::from(*n)));
        let nums = Ranges::span(0, 255).minus(&Ranges::from_spans(partial));
        let list: Vec<String> = nums
            .spans()
            .iter()
            .flat_map(|(a, b)| *a..=*b)
            .map(|n| n.to_string())
            .collect();
        terms.push(format!("ip.proto == {{{}}}", list.join(", ")));
    } else {
        for (k, p) in PROTOCOLS.iter().enumerate() {
            if whole[k] {
                terms.push(p.to_string());
            }
        }
    }
    any_of(terms)
}
