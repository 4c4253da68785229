//! AdminNetworkPolicies and the BaselineAdminNetworkPolicy reduced to what
//! translation reads: selectors validated and canonical (so their peers
//! share NetworkPolicy's address sets), actions, peers and ports parsed,
//! and the ANPs in evaluation order.
//!
//! A part Switchyard cannot read is a problem and matches nothing; the
//! rule keeps its index, so the rules after it keep their order. The CRD
//! validates nearly all of this; what is left is mostly selectors the CRD
//! schema cannot check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::policy::{Direction, Peer, Port, PortName, Protocol, Scope, Selector};
use super::policy_index::{plain_set, PeerSet};
use crate::k8s::policy_api::{self as api, AdminNetworkPolicy, BaselineAdminNetworkPolicy};

/// The name the one BaselineAdminNetworkPolicy must have.
pub const BASELINE_NAME: &str = "default";
/// The API's limit on rules per direction.
pub const MAX_RULES: usize = 100;

/// What a rule does with the traffic it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the lower AdminNetworkPolicy rules: NetworkPolicy decides.
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Pass => "pass",
        }
    }
}

/// One peer of an admin rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminPeer {
    /// Pods or whole namespaces ([`Peer::Pods`] or [`Peer::Namespaces`]).
    Pods(Peer),
    /// The addresses of the nodes a selector picks (egress only).
    Nodes(Selector),
    /// CIDRs (egress only).
    Networks(Vec<IpNet>),
}

/// A rule; an empty `peers` matches nothing (an unreadable rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRule {
    pub name: String,
    pub action: Action,
    pub peers: Vec<AdminPeer>,
    /// `None`: every port.
    pub ports: Option<Vec<Port>>,
}

/// The pods a policy applies to: those `pods` picks in the namespaces
/// `namespaces` picks (`None` when the subject is unreadable: no pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub namespaces: Selector,
    pub pods: Selector,
}

/// An ANP or the BANP as translation reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminInfo {
    pub name: String,
    pub uid: String,
    /// `None` for the baseline.
    pub priority: Option<i32>,
    pub subject: Option<Subject>,
    pub ingress: Vec<AdminRule>,
    pub egress: Vec<AdminRule>,
    pub problems: Vec<String>,
}

fn selector(s: Option<&LabelSelector>, what: &str, problems: &mut Vec<String>) -> Option<Selector> {
    match Selector::parse(s) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("{what}: {e}; it matches nothing"));
            None
        }
    }
}

fn pods_peer(
    nss: Option<&LabelSelector>,
    pods: Option<&LabelSelector>,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<Peer> {
    let nss = selector(nss, &format!("{what} namespaces"), problems)?;
    let pods = match pods {
        None => Selector::all(),
        Some(p) => selector(Some(p), &format!("{what} pods"), problems)?,
    };
    Some(if pods.is_all() {
        Peer::Namespaces(nss)
    } else {
        Peer::Pods {
            scope: Scope::Namespaces(nss),
            pods,
        }
    })
}

fn port_number(n: i32, what: &str, problems: &mut Vec<String>) -> Option<u16> {
    let p = u16::try_from(n).ok().filter(|p| *p > 0);
    if p.is_none() {
        problems.push(format!(
            "{what}: port {n} is out of range; it matches nothing"
        ));
    }
    p
}

fn protocol(s: &str, what: &str, problems: &mut Vec<String>) -> Option<Protocol> {
    let p = Protocol::parse(Some(s));
    if p.is_none() {
        problems.push(format!(
            "{what}: unsupported protocol {s:?}; it matches nothing"
        ));
    }
    p
}

/// The ports of a rule: `None` for every port; an empty list when every
/// port clause was unreadable (the rule matches nothing).
fn ports(
    list: Option<&Vec<api::Port>>,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<Vec<Port>> {
    let list = list.filter(|l| !l.is_empty())?;
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let what = format!("{what} port {i}");
        match (&p.port_number, &p.named_port, &p.port_range) {
            (Some(n), None, None) => {
                if let (Some(pr), Some(n)) = (
                    protocol(&n.protocol, &what, problems),
                    port_number(n.port, &what, problems),
                ) {
                    out.push(Port::Range(pr, n, n));
                }
            }
            (None, Some(name), None) => {
                // A named port names a container port of any protocol.
                for pr in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                    out.push(Port::Named(PortName {
                        protocol: pr,
                        name: name.clone(),
                    }));
                }
            }
            (None, None, Some(r)) => {
                let pr = protocol(&r.protocol, &what, problems);
                let (a, b) = (
                    port_number(r.start, &what, problems),
                    port_number(r.end, &what, problems),
                );
                match (pr, a, b) {
                    (Some(pr), Some(a), Some(b)) if a <= b => out.push(Port::Range(pr, a, b)),
                    (Some(_), Some(_), Some(_)) => problems.push(format!(
                        "{what}: range end is below its start; it matches nothing"
                    )),
                    _ => {}
                }
            }
            _ => problems.push(format!(
                "{what}: exactly one of portNumber, namedPort, portRange is needed; it matches nothing"
            )),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn action(s: &str, baseline: bool, what: &str, problems: &mut Vec<String>) -> Option<Action> {
    match s {
        "Allow" => Some(Action::Allow),
        "Deny" => Some(Action::Deny),
        "Pass" if !baseline => Some(Action::Pass),
        other => {
            problems.push(format!(
                "{what}: unknown action {other:?}; the rule is ignored"
            ));
            None
        }
    }
}

fn ingress_rule(
    i: usize,
    r: &api::IngressRule,
    baseline: bool,
    problems: &mut Vec<String>,
) -> Option<AdminRule> {
    let what = format!("ingress rule {i}");
    let action = action(&r.action, baseline, &what, problems)?;
    let mut peers = Vec::new();
    for (j, p) in r.from.iter().enumerate() {
        let pw = format!("{what} peer {j}");
        let peer = match (&p.namespaces, &p.pods) {
            (Some(ns), None) => pods_peer(Some(ns), None, &pw, problems),
            (None, Some(pp)) => pods_peer(
                Some(&pp.namespace_selector),
                Some(&pp.pod_selector),
                &pw,
                problems,
            ),
            _ => {
                problems.push(format!(
                    "{pw}: exactly one of namespaces, pods is needed; it matches nothing"
                ));
                None
            }
        };
        peers.extend(peer.map(AdminPeer::Pods));
    }
    Some(finish(
        r.name.clone(),
        i,
        action,
        peers,
        ports(r.ports.as_ref(), &what, problems),
    ))
}

fn egress_rule(
    i: usize,
    r: &api::EgressRule,
    baseline: bool,
    problems: &mut Vec<String>,
) -> Option<AdminRule> {
    let what = format!("egress rule {i}");
    let action = action(&r.action, baseline, &what, problems)?;
    let mut peers = Vec::new();
    for (j, p) in r.to.iter().enumerate() {
        let pw = format!("{what} peer {j}");
        let peer = match (&p.namespaces, &p.pods, &p.nodes, &p.networks) {
            (Some(ns), None, None, None) => {
                pods_peer(Some(ns), None, &pw, problems).map(AdminPeer::Pods)
            }
            (None, Some(pp), None, None) => pods_peer(
                Some(&pp.namespace_selector),
                Some(&pp.pod_selector),
                &pw,
                problems,
            )
            .map(AdminPeer::Pods),
            (None, None, Some(n), None) => {
                selector(Some(n), &format!("{pw} nodes"), problems).map(AdminPeer::Nodes)
            }
            (None, None, None, Some(nets)) => {
                let mut ok = Vec::new();
                for n in nets {
                    match n.parse::<IpNet>() {
                        Ok(net) => ok.push(net.trunc()),
                        Err(_) => {
                            problems.push(format!("{pw}: {n:?} is not a CIDR; it matches nothing"))
                        }
                    }
                }
                ok.sort();
                ok.dedup();
                (!ok.is_empty()).then_some(AdminPeer::Networks(ok))
            }
            _ => {
                problems.push(format!(
                    "{pw}: exactly one of namespaces, pods, nodes, networks is needed; it matches nothing"
                ));
                None
            }
        };
        peers.extend(peer);
    }
    Some(finish(
        r.name.clone(),
        i,
        action,
        peers,
        ports(r.ports.as_ref(), &what, problems),
    ))
}

fn finish(
    name: Option<String>,
    i: usize,
    action: Action,
    mut peers: Vec<AdminPeer>,
    ports: Option<Vec<Port>>,
) -> AdminRule {
    peers.sort();
    peers.dedup();
    // Every port clause unreadable: the rule matches nothing.
    if ports.as_ref().is_some_and(Vec::is_empty) {
        peers.clear();
    }
    AdminRule {
        name: name.unwrap_or_else(|| i.to_string()),
        action,
        peers,
        ports,
    }
}

fn subject(s: &api::Subject, problems: &mut Vec<String>) -> Option<Subject> {
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Some(Subject {
            namespaces: selector(Some(ns), "subject namespaces", problems)?,
            pods: Selector::all(),
        }),
        (None, Some(p)) => Some(Subject {
            namespaces: selector(Some(&p.namespace_selector), "subject namespaces", problems)?,
            pods: selector(Some(&p.pod_selector), "subject pods", problems)?,
        }),
        _ => {
            problems.push(
                "subject: exactly one of namespaces, pods is needed; it selects no pod".into(),
            );
            None
        }
    }
}

/// Rules past the API's limit are reported and dropped; unknown actions
/// too (their slots stay, so the order of the rest holds).
fn rules<R>(
    list: &[R],
    d: &str,
    problems: &mut Vec<String>,
    mut parse: impl FnMut(usize, &R, &mut Vec<String>) -> Option<AdminRule>,
) -> Vec<AdminRule> {
    if list.len() > MAX_RULES {
        problems.push(format!(
            "{} {d} rules: only the first {MAX_RULES} are enforced",
            list.len()
        ));
    }
    list.iter()
        .take(MAX_RULES)
        .enumerate()
        .map(|(i, r)| {
            parse(i, r, problems).unwrap_or(AdminRule {
                name: i.to_string(),
                action: Action::Deny,
                peers: Vec::new(),
                ports: None,
            })
        })
        .collect()
}

impl AdminInfo {
    pub fn from_anp(p: &AdminNetworkPolicy) -> AdminInfo {
        let mut problems = Vec::new();
        let s = &p.spec;
        let priority = if (0..=1000).contains(&s.priority) {
            s.priority
        } else {
            problems.push(format!(
                "priority {} is outside 0..1000; it is evaluated last",
                s.priority
            ));
            1000
        };
        let subject = subject(&s.subject, &mut problems);
        let ingress = rules(&s.ingress, "ingress", &mut problems, |i, r, pr| {
            ingress_rule(i, r, false, pr)
        });
        let egress = rules(&s.egress, "egress", &mut problems, |i, r, pr| {
            egress_rule(i, r, false, pr)
        });
        AdminInfo {
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            priority: Some(priority),
            subject,
            ingress,
            egress,
            problems,
        }
    }

    pub fn from_banp(p: &BaselineAdminNetworkPolicy) -> AdminInfo {
        let mut problems = Vec::new();
        let s = &p.spec;
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut subject = subject(&s.subject, &mut problems);
        if name != BASELINE_NAME {
            problems.push(format!(
                "a BaselineAdminNetworkPolicy must be named {BASELINE_NAME:?}; this one is ignored"
            ));
            subject = None;
        }
        let ingress = rules(&s.ingress, "ingress", &mut problems, |i, r, pr| {
            ingress_rule(i, r, true, pr)
        });
        let egress = rules(&s.egress, "egress", &mut problems, |i, r, pr| {
            egress_rule(i, r, true, pr)
        });
        AdminInfo {
            name,
            uid: p.metadata.uid.clone().unwrap_or_default(),
            priority: None,
            subject,
            ingress,
            egress,
            problems,
        }
    }

    pub fn rules(&self, d: Direction) -> &[AdminRule] {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn has_pass(&self) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .any(|r| r.action == Action::Pass)
    }

    pub fn has_node_peers(&self) -> bool {
        self.egress
            .iter()
            .any(|r| r.peers.iter().any(|p| matches!(p, AdminPeer::Nodes(_))))
    }

    pub fn has_named_ports(&self) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .any(|r| named(r).next().is_some())
    }

    /// The set of subject pods with named port `p` (where ingress named
    /// ports resolve).
    pub fn subject_named(&self, p: &PortName) -> Option<PeerSet> {
        let s = self.subject.as_ref()?;
        Some(PeerSet {
            scope: Scope::Namespaces(s.namespaces.clone()),
            pods: s.pods.clone(),
            port: Some(p.clone()),
        })
    }

    /// The NetworkPolicy peer sets its ACLs reference.
    pub fn peer_sets(&self) -> BTreeSet<PeerSet> {
        let mut out = BTreeSet::new();
        for (d, r) in Direction::BOTH
            .into_iter()
            .flat_map(|d| self.rules(d).iter().map(move |r| (d, r)))
        {
            let numbered = r
                .ports
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| !matches!(p, Port::Named(_))));
            for peer in &r.peers {
                let AdminPeer::Pods(peer) = peer else {
                    continue;
                };
                if numbered || d == Direction::Ingress {
                    out.extend(plain_set(peer));
                }
                if d == Direction::Egress {
                    for pn in named(r) {
                        out.insert(egress_named(peer, pn));
                    }
                }
            }
            if d == Direction::Ingress && !r.peers.is_empty() {
                for pn in named(r) {
                    out.extend(self.subject_named(pn));
                }
            }
        }
        out
    }
}

/// A rule's named ports.
pub fn named(r: &AdminRule) -> impl Iterator<Item = &PortName> {
    r.ports.iter().flatten().filter_map(|p| match p {
        Port::Named(n) => Some(n),
        _ => None,
    })
}

/// The pods of an egress pod peer with named port `p`.
pub fn egress_named(peer: &Peer, p: &PortName) -> PeerSet {
    let port = Some(p.clone());
    match peer {
        Peer::Pods { scope, pods } => PeerSet {
            scope: scope.clone(),
            pods: pods.clone(),
            port,
        },
        Peer::Namespaces(s) => PeerSet {
            scope: Scope::Namespaces(s.clone()),
            pods: Selector::all(),
            port,
        },
        Peer::Block(_) => PeerSet::cluster_named(p),
    }
}

/// The admin policies, parsed, with the ANPs in evaluation order.
#[derive(Default)]
pub struct AdminIndex {
    anps: BTreeMap<String, Arc<AdminInfo>>,
    baseline: Option<Arc<AdminInfo>>,
    /// (priority, name), ascending: the evaluation order.
    order: BTreeSet<(i32, String)>,
}

impl AdminIndex {
    /// Stores or removes ANP `name`; returns the old and new parsed forms.
    pub fn set_anp(
        &mut self,
        name: &str,
        p: Option<&AdminNetworkPolicy>,
    ) -> (Option<Arc<AdminInfo>>, Option<Arc<AdminInfo>>) {
        let old = self.anps.remove(name);
        if let Some(o) = &old {
            self.order
                .remove(&(o.priority.unwrap_or(1000), name.to_string()));
        }
        let new = p.map(|p| Arc::new(AdminInfo::from_anp(p)));
        if let Some(n) = &new {
            self.order
                .insert((n.priority.unwrap_or(1000), name.to_string()));
            self.anps.insert(name.to_string(), n.clone());
        }
        (old, new)
    }

    pub fn set_baseline(
        &mut self,
        p: Option<&BaselineAdminNetworkPolicy>,
    ) -> (Option<Arc<AdminInfo>>, Option<Arc<AdminInfo>>) {
        let new = p.map(|p| Arc::new(AdminInfo::from_banp(p)));
        let old = std::mem::replace(&mut self.baseline, new.clone());
        (old, new)
    }

    pub fn anp(&self, name: &str) -> Option<&Arc<AdminInfo>> {
        self.anps.get(name)
    }

    pub fn baseline(&self) -> Option<&Arc<AdminInfo>> {
        self.baseline.as_ref()
    }

    /// ANPs in evaluation order.
    pub fn ordered(&self) -> impl Iterator<Item = &Arc<AdminInfo>> + Clone {
        self.order.iter().filter_map(|(_, n)| self.anps.get(n))
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.anps.keys()
    }

    pub fn any_pass(&self) -> bool {
        self.anps.values().any(|a| a.has_pass())
    }
}
