//! NetworkPolicies reduced to what translation reads: selectors validated
//! and in a canonical form (equal forms select the same objects, so the
//! sets built from them can be shared), `policyTypes` defaulted, peers and
//! ports parsed.
//!
//! Every part Switchyard cannot enforce is listed as a problem and dropped
//! so that it matches *nothing*, never so that it matches everything: an
//! invalid peer leaves the other peers of its rule; a rule whose peers (or
//! ports) were all invalid is dropped whole, since an empty list would mean
//! "any"; an invalid `podSelector` makes the policy select every pod of its
//! namespace with no rule at all. A policy is therefore never weaker than
//! what its author wrote, and the pods it names stay isolated.

use std::fmt::Write as _;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{self, SelectorError};
use super::objects::Labels;

/// A validated label selector with its canonical text.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
    sel: LabelSelector,
}

impl PartialEq for Selector {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}
impl Eq for Selector {}
impl PartialOrd for Selector {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Selector {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.text.cmp(&o.text)
    }
}
impl std::hash::Hash for Selector {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.text.hash(h)
    }
}

fn label_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Selector {
    /// The selector that selects everything (`{}`).
    pub fn all() -> Selector {
        Selector {
            text: String::new(),
            sel: LabelSelector::default(),
        }
    }

    /// Validates `sel` (absent selects everything) and computes its
    /// canonical form: `matchLabels` entries become `In` requirements, and
    /// requirements are sorted with sorted values, so `{a: b}` and
    /// `a In [b]` are one selector.
    pub fn parse(sel: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        let Some(sel) = sel else {
            return Ok(Selector::all());
        };
        labels::validate(sel)?;
        let mut reqs: Vec<(String, String, Vec<String>)> = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push((k.clone(), "In".into(), vec![v.clone()]));
        }
        for r in sel.match_expressions.iter().flatten() {
            let mut values = r.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            reqs.push((r.key.clone(), r.operator.clone(), values));
        }
        for (k, _, values) in &reqs {
            if !label_key_ok(k) {
                return Err(SelectorError(format!("{k:?} is not a label key")));
            }
            if let Some(v) = values.iter().find(|v| !label_value_ok(v)) {
                return Err(SelectorError(format!("{v:?} is not a label value")));
            }
        }
        reqs.sort();
        reqs.dedup();
        let mut text = String::new();
        for (i, (k, op, values)) in reqs.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = match (op.as_str(), values.len()) {
                ("In", 1) => write!(text, "{k}={}", values[0]),
                ("In", _) => write!(text, "{k} in ({})", values.join(",")),
                ("NotIn", _) => write!(text, "{k} notin ({})", values.join(",")),
                ("Exists", _) => write!(text, "{k}"),
                _ => write!(text, "!{k}"),
            };
        }
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(
                reqs.into_iter()
                    .map(|(key, operator, values)| LabelSelectorRequirement {
                        key,
                        operator,
                        values: Some(values).filter(|v| !v.is_empty()),
                    })
                    .collect::<Vec<_>>(),
            )
            .filter(|v| !v.is_empty()),
        };
        Ok(Selector { text, sel })
    }

    /// The canonical text (`app=web,tier in (a,b),!legacy`); empty for
    /// the selector that selects everything.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text as a user reads it: `{}` for everything.
    pub fn display(&self) -> &str {
        if self.text.is_empty() {
            "{}"
        } else {
            &self.text
        }
    }

    pub fn selector(&self) -> &LabelSelector {
        &self.sel
    }

    pub fn is_all(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether `labels` satisfy the selector (validated, so never an
    /// error).
    pub fn matches(&self, l: &Labels) -> bool {
        labels::matches(&self.sel, l).unwrap_or(false)
    }
}

/// A transport protocol a policy port names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// As Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// As an OVN match names it.
    pub fn ovn(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A port name on a protocol, resolved on each destination pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortName {
    pub protocol: Protocol,
    pub name: String,
}

/// A policy port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// Every port of a protocol.
    Protocol(Protocol),
    /// `first..=last` (one port when equal).
    Range(Protocol, u16, u16),
    Named(PortName),
}

/// Where the pods of a peer live.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The policy's own namespace (a `podSelector` alone).
    Namespace(String),
    /// The namespaces a selector picks.
    Namespaces(Selector),
}

/// An `ipBlock`: a CIDR less its exceptions (those inside it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

/// One peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Pods a selector picks in a scope.
    Pods {
        scope: Scope,
        pods: Selector,
    },
    /// Every pod of the namespaces a selector picks.
    Namespaces(Selector),
    Block(IpBlock),
}

/// A rule: `None` peers or ports mean any (the field was absent or empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<Port>>,
}

/// A direction of traffic relative to the selected pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// A NetworkPolicy as translation reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pods it selects in its namespace (all of them when its selector
    /// is invalid).
    pub pods: Selector,
    /// The rules of each direction it isolates; `None` when it does not
    /// isolate that direction.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// What could not be enforced, one line each.
    pub problems: Vec<String>,
}

/// IANA service names, as container port names are: at most 15 lowercase
/// letters, digits and `-`, with a letter.
fn port_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

fn parse_port(p: &NetworkPolicyPort) -> Result<Port, String> {
    let proto = Protocol::parse(p.protocol.as_deref())
        .ok_or_else(|| format!("unsupported protocol {:?}", p.protocol))?;
    match (&p.port, p.end_port) {
        (None, None) => Ok(Port::Protocol(proto)),
        (None, Some(_)) => Err("endPort without port".into()),
        (Some(IntOrString::Int(n)), end) => {
            let first = u16::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("port {n} is out of range"))?;
            let last = match end {
                None => first,
                Some(e) => u16::try_from(e)
                    .ok()
                    .filter(|e| *e >= first)
                    .ok_or_else(|| format!("endPort {e} is out of range or below port {n}"))?,
            };
            Ok(Port::Range(proto, first, last))
        }
        (Some(IntOrString::String(s)), None) if port_name_ok(s) => Ok(Port::Named(PortName {
            protocol: proto,
            name: s.clone(),
        })),
        (Some(IntOrString::String(s)), None) => Err(format!("{s:?} is not a port name")),
        (Some(IntOrString::String(s)), Some(_)) => Err(format!("endPort with named port {s:?}")),
    }
}

fn parse_block(b: &IPBlock) -> Result<IpBlock, String> {
    let cidr = b
        .cidr
        .parse::<IpNet>()
        .map_err(|_| format!("ipBlock cidr {:?} is not a CIDR", b.cidr))?
        .trunc();
    let mut except = Vec::new();
    for e in b.except.iter().flatten() {
        let net = e
            .parse::<IpNet>()
            .map_err(|_| format!("ipBlock except {e:?} is not a CIDR"))?
            .trunc();
        // Only exceptions inside the block remove anything.
        if cidr.contains(&net) {
            except.push(net);
        }
    }
    except.sort();
    except.dedup();
    Ok(IpBlock { cidr, except })
}

fn parse_peer(ns: &str, p: &NetworkPolicyPeer) -> Result<Peer, String> {
    let sel = |s: Option<&LabelSelector>| Selector::parse(s).map_err(|e| e.to_string());
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(b), None, None) => Ok(Peer::Block(parse_block(b)?)),
        (Some(_), _, _) => Err("ipBlock together with a selector".into()),
        (None, None, None) => Err("a peer with no selector and no ipBlock".into()),
        (None, None, Some(pods)) => Ok(Peer::Pods {
            scope: Scope::Namespace(ns.to_string()),
            pods: sel(Some(pods))?,
        }),
        (None, Some(nss), None) => Ok(Peer::Namespaces(sel(Some(nss))?)),
        (None, Some(nss), Some(pods)) => {
            let (nss, pods) = (sel(Some(nss))?, sel(Some(pods))?);
            // Every pod of the chosen namespaces: the namespace sets do.
            if pods.is_all() {
                Ok(Peer::Namespaces(nss))
            } else {
                Ok(Peer::Pods {
                    scope: Scope::Namespaces(nss),
                    pods,
                })
            }
        }
    }
}

/// One rule's peers and ports; `None` when the rule can match nothing.
fn parse_rule(
    ns: &str,
    what: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    problems: &mut Vec<String>,
) -> Option<Rule> {
    let mut rule = Rule::default();
    let mut dropped = false;
    if let Some(list) = peers.filter(|l| !l.is_empty()) {
        let mut ok = Vec::new();
        for (i, p) in list.iter().enumerate() {
            match parse_peer(ns, p) {
                Ok(p) => ok.push(p),
                Err(e) => problems.push(format!("{what} peer {i}: {e}; it matches nothing")),
            }
        }
        dropped |= ok.is_empty();
        ok.sort();
        ok.dedup();
        rule.peers = Some(ok);
    }
    if let Some(list) = ports.filter(|l| !l.is_empty()) {
        let mut ok = Vec::new();
        for (i, p) in list.iter().enumerate() {
            match parse_port(p) {
                Ok(p) => ok.push(p),
                Err(e) => problems.push(format!("{what} port {i}: {e}; it matches nothing")),
            }
        }
        dropped |= ok.is_empty();
        ok.sort();
        ok.dedup();
        rule.ports = Some(ok);
    }
    if dropped {
        problems.push(format!("{what} allows nothing"));
        return None;
    }
    Some(rule)
}

impl PolicyInfo {
    pub fn from_policy(np: &NetworkPolicy) -> PolicyInfo {
        let m = &np.metadata;
        let namespace = m.namespace.clone().unwrap_or_else(|| "default".into());
        let spec = np.spec.clone().unwrap_or_default();
        let mut problems = Vec::new();
        let (pods, valid) = match Selector::parse(spec.pod_selector.as_ref()) {
            Ok(s) => (s, true),
            Err(e) => {
                problems.push(format!(
                    "podSelector: {e}; the policy isolates every pod of its namespace and allows nothing"
                ));
                (Selector::all(), false)
            }
        };
        let egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        let (mut ingress, mut egress) = (false, false);
        match spec.policy_types.as_deref() {
            None | Some([]) => {
                ingress = true;
                egress = egress_rules;
            }
            Some(types) => {
                for t in types {
                    match t.as_str() {
                        "Ingress" => ingress = true,
                        "Egress" => egress = true,
                        other => {
                            problems.push(format!(
                                "policyTypes: unknown type {other:?}; both directions are isolated"
                            ));
                            ingress = true;
                            egress = true;
                        }
                    }
                }
            }
        }
        let ns = namespace.as_str();
        let ingress = ingress.then(|| {
            spec.ingress
                .iter()
                .flatten()
                .enumerate()
                .filter(|_| valid)
                .filter_map(|(i, r)| {
                    let what = format!("ingress rule {i}");
                    parse_rule(ns, &what, r.from.as_ref(), r.ports.as_ref(), &mut problems)
                })
                .collect()
        });
        let egress = egress.then(|| {
            spec.egress
                .iter()
                .flatten()
                .enumerate()
                .filter(|_| valid)
                .filter_map(|(i, r)| {
                    let what = format!("egress rule {i}");
                    parse_rule(ns, &what, r.to.as_ref(), r.ports.as_ref(), &mut problems)
                })
                .collect()
        });
        PolicyInfo {
            namespace,
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            pods,
            ingress,
            egress,
            problems,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The rules of `d`, when the policy isolates that direction.
    pub fn rules(&self, d: Direction) -> Option<&[Rule]> {
        match d {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    pub fn isolates(&self, d: Direction) -> bool {
        self.rules(d).is_some()
    }

    /// Every rule of every direction it isolates.
    pub fn all_rules(&self) -> impl Iterator<Item = (Direction, usize, &Rule)> {
        Direction::BOTH.into_iter().flat_map(move |d| {
            self.rules(d)
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, r)| (d, i, r))
        })
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
