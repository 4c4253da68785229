//! The cluster model: typed, indexed stores of every watched kind, kept by
//! applying watch events, and the changes each event made.
//!
//! Translators read the model; mappers read the [`Change`]s to decide which
//! owners an event touches. Objects are held behind `Arc` so a change can
//! carry the old and the new version without copying either.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::k8s::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, Kind, Observed, WatchEvent};

pub mod admin;
pub mod labels;
pub mod objects;
pub mod policy;
pub mod policy_index;

pub use admin::{AdminIndex, AdminInfo};
pub use labels::{LabelIndex, SelectorError};
pub use objects::{NamedPort, NamespaceInfo, NodeInfo, Phase, PodInfo};
pub use policy::PolicyInfo;
pub use policy_index::PolicyIndex;

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one event (or one allocation decision) changed.
#[derive(Clone, Debug)]
pub enum Change {
    Node {
        name: String,
        old: Option<Arc<NodeInfo>>,
        new: Option<Arc<NodeInfo>>,
    },
    Namespace {
        name: String,
        old: Option<Arc<NamespaceInfo>>,
        new: Option<Arc<NamespaceInfo>>,
    },
    Pod {
        key: String,
        old: Option<Arc<PodInfo>>,
        new: Option<Arc<PodInfo>>,
    },
    Service {
        key: String,
        old: Option<Arc<Service>>,
        new: Option<Arc<Service>>,
    },
    EndpointSlice {
        key: String,
        old: Option<Arc<EndpointSlice>>,
        new: Option<Arc<EndpointSlice>>,
    },
    NetworkPolicy {
        key: String,
        old: Option<Arc<NetworkPolicy>>,
        new: Option<Arc<NetworkPolicy>>,
    },
    AdminNetworkPolicy {
        name: String,
        old: Option<Arc<AdminNetworkPolicy>>,
        new: Option<Arc<AdminNetworkPolicy>>,
    },
    BaselineAdminNetworkPolicy {
        name: String,
        old: Option<Arc<BaselineAdminNetworkPolicy>>,
        new: Option<Arc<BaselineAdminNetworkPolicy>>,
    },
    /// The allocator decided, changed or dropped a pod's addresses.
    PodAddresses { key: String },
    /// The allocator decided or dropped a node's subnets.
    NodeSubnets { name: String },
}

/// How an admin policy is named among the users of NetworkPolicy's
/// shared sets (NetworkPolicy users are `namespace/name`, never with `:`).
pub fn admin_user(kind: Kind, name: &str) -> String {
    format!("{kind}:{name}")
}

/// `namespace/name` of a namespaced object.
pub fn ns_key(ns: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", ns.unwrap_or("default"), name.unwrap_or_default())
}

/// Splits `namespace/name`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Every watched object, indexed.
#[derive(Default)]
pub struct Model {
    pub nodes: BTreeMap<String, Arc<NodeInfo>>,
    pub namespaces: BTreeMap<String, Arc<NamespaceInfo>>,
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub services: BTreeMap<String, Arc<Service>>,
    pub endpoint_slices: BTreeMap<String, Arc<EndpointSlice>>,
    pub network_policies: BTreeMap<String, Arc<NetworkPolicy>>,
    pub admin_network_policies: BTreeMap<String, Arc<AdminNetworkPolicy>>,
    pub baseline_admin_network_policies: BTreeMap<String, Arc<BaselineAdminNetworkPolicy>>,
    /// NetworkPolicies as translation reads them, and the sets they share.
    pub policy_index: PolicyIndex,
    /// AdminNetworkPolicies and the baseline as translation reads them.
    pub admin: AdminIndex,
    pods_by_node: HashMap<String, BTreeSet<String>>,
    pods_by_namespace: HashMap<String, BTreeSet<String>>,
    pod_labels: LabelIndex<String>,
    slices_by_service: HashMap<String, BTreeSet<String>>,
    /// Kinds whose first list arrived.
    listed: BTreeSet<Kind>,
    /// Kinds the API server does not serve.
    unavailable: BTreeSet<Kind>,
}

fn index_add(idx: &mut HashMap<String, BTreeSet<String>>, by: &str, key: &str) {
    idx.entry(by.to_string())
        .or_default()
        .insert(key.to_string());
}

fn index_remove(idx: &mut HashMap<String, BTreeSet<String>>, by: &str, key: &str) {
    if let Some(s) = idx.get_mut(by) {
        s.remove(key);
        if s.is_empty() {
            idx.remove(by);
        }
    }
}

fn service_of(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ns_key(slice.metadata.namespace.as_deref(), Some(name)))
}

/// Whether a new version differs from the stored one; a relist hands
/// back every object, and most are unchanged.
fn same_version(old: Option<&str>, new: Option<&str>) -> bool {
    old.is_some() && old == new
}

type Replaced<T> = (Option<Arc<T>>, Option<Arc<T>>);

/// Stores a kind kept whole; `None` when the stored one is that version.
fn replace<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    map: &mut BTreeMap<String, Arc<T>>,
    key: &str,
    new: Box<T>,
) -> Option<Replaced<T>> {
    let old = map.get(key).cloned();
    let old_rv = old
        .as_ref()
        .and_then(|o| o.metadata().resource_version.as_deref());
    if same_version(old_rv, new.metadata().resource_version.as_deref()) {
        return None;
    }
    let new: Arc<T> = Arc::from(new);
    map.insert(key.to_string(), new.clone());
    Some((old, Some(new)))
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Whether every kind in `kinds` has been listed (or is not served).
    pub fn listed(&self, kinds: &[Kind]) -> bool {
        kinds
            .iter()
            .all(|k| self.listed.contains(k) || self.unavailable.contains(k))
    }

    pub fn is_unavailable(&self, kind: Kind) -> bool {
        self.unavailable.contains(&kind)
    }

    /// Applies one watch event of `kind`, appending what changed.
    pub fn apply(&mut self, kind: Kind, ev: WatchEvent<Observed>, out: &mut Vec<Change>) {
        match ev {
            WatchEvent::Restarted(list) => {
                self.listed.insert(kind);
                self.unavailable.remove(&kind);
                let present: BTreeSet<String> = list.iter().map(Observed::key).collect();
                for gone in self.keys(kind).difference(&present) {
                    self.remove(kind, gone, out);
                }
                for o in list {
                    self.upsert(o, out);
                }
            }
            WatchEvent::Applied(o) => self.upsert(o, out),
            WatchEvent::Deleted(o) => self.remove(kind, &o.key(), out),
            WatchEvent::Unavailable(_) => {
                self.unavailable.insert(kind);
                for k in self.keys(kind) {
                    self.remove(kind, &k, out);
                }
            }
        }
    }

    fn keys(&self, kind: Kind) -> BTreeSet<String> {
        match kind {
            Kind::Node => self.nodes.keys().cloned().collect(),
            Kind::Namespace => self.namespaces.keys().cloned().collect(),
            Kind::Pod => self.pods.keys().cloned().collect(),
            Kind::Service => self.services.keys().cloned().collect(),
            Kind::EndpointSlice => self.endpoint_slices.keys().cloned().collect(),
            Kind::NetworkPolicy => self.network_policies.keys().cloned().collect(),
            Kind::AdminNetworkPolicy => self.admin_network_policies.keys().cloned().collect(),
            Kind::BaselineAdminNetworkPolicy => self
                .baseline_admin_network_policies
                .keys()
                .cloned()
                .collect(),
        }
    }

    fn upsert(&mut self, o: Observed, out: &mut Vec<Change>) {
        let key = o.key();
        match o {
            Observed::Node(n) => {
                let old = self.nodes.get(&key).cloned();
                let rv = n.resource_version.as_deref();
                if same_version(old.as_ref().and_then(|o| o.resource_version.as_deref()), rv) {
                    return;
                }
                let new: Arc<NodeInfo> = Arc::from(n);
                self.nodes.insert(key.clone(), new.clone());
                out.push(Change::Node {
                    name: key,
                    old,
                    new: Some(new),
                });
            }
            Observed::Namespace(n) => {
                let new: Arc<NamespaceInfo> = Arc::from(n);
                let old = self.namespaces.insert(key.clone(), new.clone());
                if old.as_deref() != Some(&*new) {
                    out.push(Change::Namespace {
                        name: key,
                        old,
                        new: Some(new),
                    });
                }
            }
            Observed::Pod(p) => {
                let old = self.pods.get(&key).cloned();
                let rv = p.resource_version.as_deref();
                if same_version(old.as_ref().and_then(|o| o.resource_version.as_deref()), rv) {
                    return;
                }
                let new: Arc<PodInfo> = Arc::from(p);
                if let Some(o) = &old {
                    self.unindex_pod(&key, o);
                }
                self.index_pod(&key, &new);
                self.pods.insert(key.clone(), new.clone());
                out.push(Change::Pod {
                    key,
                    old,
                    new: Some(new),
                });
            }
            Observed::Service(o) => {
                if let Some((old, new)) = replace(&mut self.services, &key, o) {
                    out.push(Change::Service { key, old, new });
                }
            }
            Observed::EndpointSlice(o) => {
                let Some((old, new)) = replace(&mut self.endpoint_slices, &key, o) else {
                    return;
                };
                if let Some(svc) = old.as_deref().and_then(service_of) {
                    index_remove(&mut self.slices_by_service, &svc, &key);
                }
                if let Some(svc) = new.as_deref().and_then(service_of) {
                    index_add(&mut self.slices_by_service, &svc, &key);
                }
                out.push(Change::EndpointSlice { key, old, new });
            }
            Observed::NetworkPolicy(o) => {
                if let Some((old, new)) = replace(&mut self.network_policies, &key, o) {
                    self.policy_index.set(&key, new.as_deref());
                    out.push(Change::NetworkPolicy { key, old, new });
                }
            }
            Observed::AdminNetworkPolicy(o) => {
                if let Some((old, new)) = replace(&mut self.admin_network_policies, &key, o) {
                    self.set_admin(&key, new.as_deref());
                    out.push(Change::AdminNetworkPolicy {
                        name: key,
                        old,
                        new,
                    });
                }
            }
            Observed::BaselineAdminNetworkPolicy(o) => {
                if let Some((old, new)) =
                    replace(&mut self.baseline_admin_network_policies, &key, o)
                {
                    self.set_baseline(&key, new.as_deref());
                    out.push(Change::BaselineAdminNetworkPolicy {
                        name: key,
                        old,
                        new,
                    });
                }
            }
        }
    }

    fn remove(&mut self, kind: Kind, key: &str, out: &mut Vec<Change>) {
        let key_s = key.to_string();
        match kind {
            Kind::Node => {
                if let Some(old) = self.nodes.remove(key) {
                    out.push(Change::Node {
                        name: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::Namespace => {
                if let Some(old) = self.namespaces.remove(key) {
                    out.push(Change::Namespace {
                        name: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(key) {
                    self.unindex_pod(key, &old);
                    out.push(Change::Pod {
                        key: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::Service => {
                if let Some(old) = self.services.remove(key) {
                    out.push(Change::Service {
                        key: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::EndpointSlice => {
                if let Some(old) = self.endpoint_slices.remove(key) {
                    if let Some(svc) = service_of(&old) {
                        index_remove(&mut self.slices_by_service, &svc, key);
                    }
                    out.push(Change::EndpointSlice {
                        key: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::NetworkPolicy => {
                if let Some(old) = self.network_policies.remove(key) {
                    self.policy_index.set(key, None);
                    out.push(Change::NetworkPolicy {
                        key: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::AdminNetworkPolicy => {
                if let Some(old) = self.admin_network_policies.remove(key) {
                    self.set_admin(key, None);
                    out.push(Change::AdminNetworkPolicy {
                        name: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
            Kind::BaselineAdminNetworkPolicy => {
                if let Some(old) = self.baseline_admin_network_policies.remove(key) {
                    self.set_baseline(key, None);
                    out.push(Change::BaselineAdminNetworkPolicy {
                        name: key_s,
                        old: Some(old),
                        new: None,
                    });
                }
            }
        }
    }

    fn set_admin(&mut self, name: &str, p: Option<&AdminNetworkPolicy>) {
        let (_, new) = self.admin.set_anp(name, p);
        let sets = new.map(|n| n.peer_sets()).unwrap_or_default();
        self.policy_index
            .set_admin_sets(&admin_user(Kind::AdminNetworkPolicy, name), sets);
    }

    fn set_baseline(&mut self, name: &str, p: Option<&BaselineAdminNetworkPolicy>) {
        // Only the singleton counts; another name is reported by its
        // translator and enforces nothing.
        if name != admin::BASELINE_NAME {
            return;
        }
        let (_, new) = self.admin.set_baseline(p);
        let sets = new.map(|n| n.peer_sets()).unwrap_or_default();
        self.policy_index
            .set_admin_sets(&admin_user(Kind::BaselineAdminNetworkPolicy, name), sets);
    }

    fn index_pod(&mut self, key: &str, p: &PodInfo) {
        if let Some(n) = &p.node {
            index_add(&mut self.pods_by_node, n, key);
        }
        index_add(&mut self.pods_by_namespace, &p.namespace, key);
        self.pod_labels.insert(&key.to_string(), &p.labels);
    }

    fn unindex_pod(&mut self, key: &str, p: &PodInfo) {
        if let Some(n) = &p.node {
            index_remove(&mut self.pods_by_node, n, key);
        }
        index_remove(&mut self.pods_by_namespace, &p.namespace, key);
        self.pod_labels.remove(&key.to_string(), &p.labels);
    }

    pub fn pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(key)
    }

    /// Keys of the pods scheduled to `node`.
    pub fn pods_on(&self, node: &str) -> impl Iterator<Item = &String> {
        self.pods_by_node.get(node).into_iter().flatten()
    }

    /// Keys of the pods in `namespace`.
    pub fn pods_in(&self, namespace: &str) -> impl Iterator<Item = &String> {
        self.pods_by_namespace.get(namespace).into_iter().flatten()
    }

    /// Keys of the NetworkPolicies in `namespace`.
    pub fn policies_in(&self, namespace: &str) -> impl Iterator<Item = &String> {
        // Keys are `namespace/name`; '0' follows '/'.
        let range = format!("{namespace}/")..format!("{namespace}0");
        self.network_policies.range(range).map(|(k, _)| k)
    }

    /// Keys of the EndpointSlices of the Service `namespace/name`.
    pub fn slices_of(&self, service: &str) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.slices_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|k| self.endpoint_slices.get(k))
    }

    /// Keys of the pods `sel` picks, in `namespace` when given.
    pub fn select_pods(
        &self,
        namespace: Option<&str>,
        sel: &LabelSelector,
    ) -> Result<BTreeSet<String>, SelectorError> {
        labels::validate(sel)?;
        let keep = |k: &String| -> Result<bool, SelectorError> {
            let Some(p) = self.pods.get(k) else {
                return Ok(false);
            };
            if namespace.is_some_and(|ns| p.namespace != ns) {
                return Ok(false);
            }
            labels::matches(sel, &p.labels)
        };
        let mut out = BTreeSet::new();
        match self.pod_labels.candidates(sel) {
            Some(c) => {
                for k in c {
                    if keep(&k)? {
                        out.insert(k);
                    }
                }
            }
            None => {
                let all: Box<dyn Iterator<Item = &String>> = match namespace {
                    Some(ns) => Box::new(self.pods_in(ns)),
                    None => Box::new(self.pods.keys()),
                };
                for k in all {
                    if keep(k)? {
                        out.insert(k.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Names of the namespaces `sel` picks.
    pub fn select_namespaces(
        &self,
        sel: &LabelSelector,
    ) -> Result<BTreeSet<String>, SelectorError> {
        let mut out = BTreeSet::new();
        for (name, ns) in &self.namespaces {
            if labels::matches(sel, &ns.labels)? {
                out.insert(name.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};

    fn pod(ns: &str, name: &str, node: &str, rv: &str, app: &str) -> Observed {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(rv.into());
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p.spec = Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        });
        Observed::from(crate::k8s::Object::from(p))
    }

    #[test]
    fn events_keep_stores_and_indexes_and_say_what_changed() {
        let mut m = Model::new();
        let mut out = Vec::new();
        m.apply(
            Kind::Pod,
            WatchEvent::Restarted(vec![
                pod("a", "p1", "n1", "1", "web"),
                pod("a", "p2", "n2", "1", "db"),
            ]),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(m.listed(&[Kind::Pod]));
        assert_eq!(m.pods_on("n1").collect::<Vec<_>>(), vec!["a/p1"]);
        let web = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: None,
        };
        assert_eq!(m.select_pods(Some("a"), &web).unwrap().len(), 1);
        // The same version again is no change; a relabel is, and moves the
        // pod in the label index.
        out.clear();
        m.apply(
            Kind::Pod,
            WatchEvent::Applied(pod("a", "p1", "n1", "1", "web")),
            &mut out,
        );
        assert!(out.is_empty());
        m.apply(
            Kind::Pod,
            WatchEvent::Applied(pod("a", "p1", "n1", "2", "db")),
            &mut out,
        );
        assert!(
            matches!(&out[0], Change::Pod { old: Some(o), new: Some(n), .. }
            if o.labels["app"] == "web" && n.labels["app"] == "db")
        );
        assert!(m.select_pods(None, &web).unwrap().is_empty());
        // A relist without p2 deletes it.
        out.clear();
        m.apply(
            Kind::Pod,
            WatchEvent::Restarted(vec![pod("a", "p1", "n1", "2", "db")]),
            &mut out,
        );
        assert!(matches!(&out[..], [Change::Pod { key, new: None, .. }] if key == "a/p2"));
        assert_eq!(m.pods_on("n2").count(), 0);
    }

    #[test]
    fn an_unserved_kind_counts_as_listed_and_empty() {
        let mut m = Model::new();
        let mut out = Vec::new();
        m.apply(
            Kind::NetworkPolicy,
            WatchEvent::Unavailable("404".into()),
            &mut out,
        );
        assert!(m.listed(&[Kind::NetworkPolicy]));
        assert!(m.is_unavailable(Kind::NetworkPolicy));
    }
}
