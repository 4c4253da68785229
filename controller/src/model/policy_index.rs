//! The sets NetworkPolicies share, indexed by the policies that use them.
//!
//! Policies that select the same pods share one port group, and policies
//! naming the same peers share one pair of address sets: 1,000 policies
//! over 10 namespaces make as many sets as they have *distinct*
//! selectors. A shared set exists while some policy uses it; this index
//! answers "who uses it" and "which sets could a pod or a namespace change
//! touch" without scanning every policy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::policy::{Direction, Peer, PolicyInfo, Port, PortName, Rule, Scope, Selector};

/// The pods one selector picks in one namespace: a port group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodSet {
    pub namespace: String,
    pub pods: Selector,
}

impl PodSet {
    /// `namespace/selector`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.pods.text())
    }
}

/// The addresses of the pods a selector picks in a scope, optionally only
/// those with a named port (one set per port number the name resolves to):
/// a pair of address sets (or a few pairs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerSet {
    pub scope: Scope,
    pub pods: Selector,
    pub port: Option<PortName>,
}

impl PeerSet {
    /// `ns:<namespace>|<selector>` or `nsel:<selector>|<selector>`, and
    /// `|<PROTOCOL>/<port name>` when filtered by a named port.
    pub fn key(&self) -> String {
        let mut k = match &self.scope {
            Scope::Namespace(ns) => format!("ns:{ns}|{}", self.pods.text()),
            Scope::Namespaces(s) => format!("nsel:{}|{}", s.text(), self.pods.text()),
        };
        if let Some(p) = &self.port {
            k.push('|');
            k.push_str(p.protocol.as_str());
            k.push('/');
            k.push_str(&p.name);
        }
        k
    }

    /// Every pod of every namespace with the named port `p`.
    pub fn cluster_named(p: &PortName) -> PeerSet {
        PeerSet {
            scope: Scope::Namespaces(Selector::all()),
            pods: Selector::all(),
            port: Some(p.clone()),
        }
    }
}

/// The set a peer's addresses come from when it is a source (ingress) or
/// a destination matched by port number (egress); `None` for peers matched
/// otherwise: namespaces (their namespaces' own sets) and ip blocks.
pub fn plain_set(peer: &Peer) -> Option<PeerSet> {
    match peer {
        Peer::Pods {
            scope: Scope::Namespace(_),
            pods,
        } if pods.is_all() => None,
        Peer::Pods { scope, pods } => Some(PeerSet {
            scope: scope.clone(),
            pods: pods.clone(),
            port: None,
        }),
        Peer::Namespaces(_) | Peer::Block(_) => None,
    }
}

/// The set of destinations a named port resolves on: for ingress the
/// policy's own pods; for egress the peer's pods (every pod, for an ip
/// block or for a rule without peers, since only pods have named ports).
pub fn named_set(policy: &PolicyInfo, d: Direction, peer: Option<&Peer>, p: &PortName) -> PeerSet {
    let port = Some(p.clone());
    match (d, peer) {
        (Direction::Ingress, _) => PeerSet {
            scope: Scope::Namespace(policy.namespace.clone()),
            pods: policy.pods.clone(),
            port,
        },
        (Direction::Egress, Some(Peer::Pods { scope, pods })) => PeerSet {
            scope: scope.clone(),
            pods: pods.clone(),
            port,
        },
        (Direction::Egress, Some(Peer::Namespaces(s))) => PeerSet {
            scope: Scope::Namespaces(s.clone()),
            pods: Selector::all(),
            port,
        },
        (Direction::Egress, Some(Peer::Block(_)) | None) => PeerSet::cluster_named(p),
    }
}

/// Whether a rule has a part matched by port number or protocol (or no
/// ports at all, which is every port).
pub fn has_numbered(rule: &Rule) -> bool {
    rule.ports
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| !matches!(p, Port::Named(_))))
}

/// A rule's named ports.
pub fn named_ports(rule: &Rule) -> impl Iterator<Item = &PortName> {
    rule.ports.iter().flatten().filter_map(|p| match p {
        Port::Named(n) => Some(n),
        _ => None,
    })
}

impl PolicyInfo {
    /// Its pods' set.
    pub fn pod_set(&self) -> PodSet {
        PodSet {
            namespace: self.namespace.clone(),
            pods: self.pods.clone(),
        }
    }

    /// Every peer set its ACLs reference.
    pub fn peer_sets(&self) -> BTreeSet<PeerSet> {
        let mut out = BTreeSet::new();
        for (d, _, rule) in self.all_rules() {
            let peers = rule.peers.as_deref();
            if d == Direction::Ingress || has_numbered(rule) {
                out.extend(peers.into_iter().flatten().filter_map(plain_set));
            }
            for p in named_ports(rule) {
                match (d, peers) {
                    (Direction::Egress, Some(peers)) => {
                        out.extend(peers.iter().map(|peer| named_set(self, d, Some(peer), p)))
                    }
                    _ => {
                        out.insert(named_set(self, d, None, p));
                    }
                }
            }
        }
        out
    }

    /// Whether some rule names whole namespaces by selector (its ACLs list
    /// those namespaces' sets, so they follow namespace labels).
    pub fn has_namespace_peers(&self) -> bool {
        self.all_rules().any(|(_, _, r)| {
            r.peers
                .iter()
                .flatten()
                .any(|p| matches!(p, Peer::Namespaces(_)))
        })
    }

    /// The port names its rules use.
    pub fn port_names(&self) -> BTreeSet<&str> {
        self.all_rules()
            .flat_map(|(_, _, r)| named_ports(r).map(|p| p.name.as_str()))
            .collect()
    }
}

/// A shared set and the policies using it.
#[derive(Clone, Debug)]
pub struct Used<T> {
    pub set: T,
    pub users: BTreeSet<String>,
}

/// See the module doc.
#[derive(Default)]
pub struct PolicyIndex {
    policies: HashMap<String, Arc<PolicyInfo>>,
    pod_sets: BTreeMap<String, Used<PodSet>>,
    peer_sets: BTreeMap<String, Used<PeerSet>>,
    /// Namespace -> keys of the pod sets and the peer sets scoped to it.
    pod_sets_in: HashMap<String, BTreeSet<String>>,
    peer_sets_in: HashMap<String, BTreeSet<String>>,
    /// Keys of peer sets scoped by a namespace selector.
    peer_sets_across: BTreeSet<String>,
    /// Port name -> policies using it.
    by_port_name: HashMap<String, BTreeSet<String>>,
    /// Policies with whole-namespace peers.
    namespace_peers: BTreeSet<String>,
    /// Admin policy user -> the peer sets it uses.
    admin_sets: HashMap<String, BTreeSet<PeerSet>>,
}

fn add<T>(map: &mut BTreeMap<String, Used<T>>, key: String, set: T, user: &str) -> bool {
    let e = map.entry(key).or_insert_with(|| Used {
        set,
        users: BTreeSet::new(),
    });
    let fresh = e.users.is_empty();
    e.users.insert(user.to_string());
    fresh
}

fn drop_user<T>(map: &mut BTreeMap<String, Used<T>>, key: &str, user: &str) -> bool {
    let Some(e) = map.get_mut(key) else {
        return false;
    };
    e.users.remove(user);
    if e.users.is_empty() {
        map.remove(key);
        return true;
    }
    false
}

fn link(idx: &mut HashMap<String, BTreeSet<String>>, by: &str, key: &str) {
    idx.entry(by.to_string())
        .or_default()
        .insert(key.to_string());
}

fn unlink(idx: &mut HashMap<String, BTreeSet<String>>, by: &str, key: &str) {
    if let Some(s) = idx.get_mut(by) {
        s.remove(key);
        if s.is_empty() {
            idx.remove(by);
        }
    }
}

impl PolicyIndex {
    /// Stores (or replaces) the policy `key`; `None` removes it.
    pub fn set(&mut self, key: &str, np: Option<&NetworkPolicy>) {
        if let Some(old) = self.policies.remove(key) {
            self.forget(key, &old);
        }
        if let Some(np) = np {
            let info = Arc::new(PolicyInfo::from_policy(np));
            self.learn(key, &info);
            self.policies.insert(key.to_string(), info);
        }
    }

    /// Replaces the peer sets an admin policy (`user`) uses.
    pub fn set_admin_sets(&mut self, user: &str, sets: BTreeSet<PeerSet>) {
        for s in self.admin_sets.remove(user).unwrap_or_default() {
            self.drop_peer_set(&s, user);
        }
        for s in &sets {
            self.add_peer_set(s.clone(), user);
        }
        if !sets.is_empty() {
            self.admin_sets.insert(user.to_string(), sets);
        }
    }

    fn add_peer_set(&mut self, s: PeerSet, user: &str) {
        let k = s.key();
        match &s.scope {
            Scope::Namespace(ns) => link(&mut self.peer_sets_in, ns, &k),
            Scope::Namespaces(_) => {
                self.peer_sets_across.insert(k.clone());
            }
        }
        add(&mut self.peer_sets, k, s, user);
    }

    fn drop_peer_set(&mut self, s: &PeerSet, user: &str) {
        let k = s.key();
        if drop_user(&mut self.peer_sets, &k, user) {
            match &s.scope {
                Scope::Namespace(ns) => unlink(&mut self.peer_sets_in, ns, &k),
                Scope::Namespaces(_) => {
                    self.peer_sets_across.remove(&k);
                }
            }
        }
    }

    fn learn(&mut self, key: &str, p: &PolicyInfo) {
        let ps = p.pod_set();
        let k = ps.key();
        link(&mut self.pod_sets_in, &ps.namespace, &k);
        add(&mut self.pod_sets, k, ps, key);
        for s in p.peer_sets() {
            self.add_peer_set(s, key);
        }
        for n in p.port_names() {
            link(&mut self.by_port_name, n, key);
        }
        if p.has_namespace_peers() {
            self.namespace_peers.insert(key.to_string());
        }
    }

    fn forget(&mut self, key: &str, p: &PolicyInfo) {
        let ps = p.pod_set();
        let k = ps.key();
        if drop_user(&mut self.pod_sets, &k, key) {
            unlink(&mut self.pod_sets_in, &ps.namespace, &k);
        }
        for s in p.peer_sets() {
            self.drop_peer_set(&s, key);
        }
        for n in p.port_names() {
            unlink(&mut self.by_port_name, n, key);
        }
        self.namespace_peers.remove(key);
    }

    pub fn policy(&self, key: &str) -> Option<&Arc<PolicyInfo>> {
        self.policies.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn pod_set(&self, key: &str) -> Option<&Used<PodSet>> {
        self.pod_sets.get(key)
    }

    pub fn peer_set(&self, key: &str) -> Option<&Used<PeerSet>> {
        self.peer_sets.get(key)
    }

    pub fn pod_sets(&self) -> impl Iterator<Item = (&String, &Used<PodSet>)> {
        self.pod_sets.iter()
    }

    pub fn peer_sets(&self) -> impl Iterator<Item = (&String, &Used<PeerSet>)> {
        self.peer_sets.iter()
    }

    /// Pod sets of a namespace.
    pub fn pod_sets_in(&self, ns: &str) -> impl Iterator<Item = &Used<PodSet>> {
        self.pod_sets_in
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pod_sets.get(k))
    }

    /// Peer sets that may hold pods of namespace `ns`: those scoped to it
    /// and those scoped by a namespace selector.
    pub fn peer_sets_for(&self, ns: &str) -> impl Iterator<Item = &Used<PeerSet>> {
        self.peer_sets_in
            .get(ns)
            .into_iter()
            .flatten()
            .chain(self.peer_sets_across.iter())
            .filter_map(|k| self.peer_sets.get(k))
    }

    /// Peer sets scoped by a namespace selector.
    pub fn peer_sets_across(&self) -> impl Iterator<Item = &Used<PeerSet>> {
        self.peer_sets_across
            .iter()
            .filter_map(|k| self.peer_sets.get(k))
    }

    /// Policies whose rules use the port name `name`.
    pub fn using_port_name(&self, name: &str) -> impl Iterator<Item = &String> {
        self.by_port_name.get(name).into_iter().flatten()
    }

    /// Policies whose rules use any port name.
    pub fn using_port_names(&self) -> impl Iterator<Item = &String> {
        self.by_port_name.values().flatten()
    }

    /// Policies with whole-namespace peers.
    pub fn with_namespace_peers(&self) -> impl Iterator<Item = &String> {
        self.namespace_peers.iter()
    }
}
