//! An in-memory Kubernetes API for tests and the e2e sandbox.
//!
//! It behaves like the API server where the controller can tell: watches
//! start with the full list, patches produce watch events, UID and
//! resourceVersion preconditions are enforced. Callers add, change and
//! delete Nodes and Pods, and read back the patches and Events the
//! controller made, with the instant each happened (for latency figures).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Cluster, EventRecord, KubeError, WatchEvent};

/// One annotation patch the controller made.
#[derive(Clone, Debug)]
pub struct PatchRecord {
    /// `Pod` or `Node`.
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid_seq: u64,
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<(String, String), Pod>,
    node_watchers: Vec<mpsc::UnboundedSender<WatchEvent<Node>>>,
    pod_watchers: Vec<mpsc::UnboundedSender<WatchEvent<Pod>>>,
    patches: Vec<PatchRecord>,
    events: Vec<EventRecord>,
    leases: BTreeMap<(String, String), Lease>,
    created: HashMap<String, Instant>,
    fail_patches: u32,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }
    fn send_node(&mut self, ev: WatchEvent<Node>) {
        self.node_watchers
            .retain(|w| w.unbounded_send(ev.clone()).is_ok());
    }
    fn send_pod(&mut self, ev: WatchEvent<Pod>) {
        self.pod_watchers
            .retain(|w| w.unbounded_send(ev.clone()).is_ok());
    }
}

/// The in-memory cluster; share it as `Arc<MemoryCluster>`.
#[derive(Default)]
pub struct MemoryCluster {
    state: Mutex<State>,
}

impl MemoryCluster {
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryCluster::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces a Node (a UID is assigned when absent).
    pub fn apply_node(&self, mut node: Node) -> Node {
        let mut st = self.lock();
        let name = node.metadata.name.clone().unwrap_or_default();
        if node.metadata.uid.is_none() {
            node.metadata.uid = st
                .nodes
                .get(&name)
                .and_then(|n| n.metadata.uid.clone())
                .or_else(|| {
                    st.uid_seq += 1;
                    Some(format!("node-uid-{}", st.uid_seq))
                });
        }
        node.metadata.resource_version = Some(st.next_rv());
        st.nodes.insert(name, node.clone());
        st.send_node(WatchEvent::Applied(node.clone()));
        node
    }

    pub fn delete_node(&self, name: &str) -> Option<Node> {
        let mut st = self.lock();
        let node = st.nodes.remove(name)?;
        st.send_node(WatchEvent::Deleted(node.clone()));
        Some(node)
    }

    /// Creates or replaces a Pod. A new pod gets a fresh UID unless it
    /// carries one; replacing keeps the stored UID.
    pub fn apply_pod(&self, mut pod: Pod) -> Pod {
        let mut st = self.lock();
        let key = (
            pod.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        pod.metadata.namespace = Some(key.0.clone());
        if pod.metadata.uid.is_none() {
            pod.metadata.uid = st
                .pods
                .get(&key)
                .and_then(|p| p.metadata.uid.clone())
                .or_else(|| {
                    st.uid_seq += 1;
                    Some(format!("pod-uid-{}", st.uid_seq))
                });
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        st.created.entry(uid).or_insert_with(Instant::now);
        pod.metadata.resource_version = Some(st.next_rv());
        st.pods.insert(key, pod.clone());
        st.send_pod(WatchEvent::Applied(pod.clone()));
        pod
    }

    /// Replaces only the status of the pod `namespace/name` if it is still
    /// the incarnation `uid`, as the API server's status subresource does: a
    /// kubelet reporting status never overwrites annotations written
    /// meanwhile. Returns whether the pod was updated.
    pub fn update_pod_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status: PodStatus,
    ) -> bool {
        let mut st = self.lock();
        let rv = st.next_rv();
        let key = (namespace.to_string(), name.to_string());
        let Some(pod) = st.pods.get_mut(&key) else {
            return false;
        };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return false;
        }
        pod.status = Some(status);
        pod.metadata.resource_version = Some(rv);
        let pod = pod.clone();
        st.send_pod(WatchEvent::Applied(pod));
        true
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let mut st = self.lock();
        let pod = st.pods.remove(&(namespace.to_string(), name.to_string()))?;
        st.send_pod(WatchEvent::Deleted(pod.clone()));
        Some(pod)
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        self.lock().nodes.get(name).cloned()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock()
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.lock().nodes.values().cloned().collect()
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.lock().pods.values().cloned().collect()
    }

    /// Every annotation patch so far, oldest first.
    pub fn patches(&self) -> Vec<PatchRecord> {
        self.lock().patches.clone()
    }

    pub fn patch_count(&self) -> usize {
        self.lock().patches.len()
    }

    /// Pod annotation patches so far (in `namespace` when given), without
    /// copying them: cheap enough to poll.
    pub fn pod_patch_count(&self, namespace: Option<&str>) -> usize {
        self.lock()
            .patches
            .iter()
            .filter(|p| p.kind == "Pod")
            .filter(|p| namespace.is_none() || p.namespace.as_deref() == namespace)
            .count()
    }

    /// Every Event so far, oldest first.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock().events.clone()
    }

    /// When the pod with `uid` was first applied here.
    pub fn created_at(&self, uid: &str) -> Option<Instant> {
        self.lock().created.get(uid).copied()
    }

    /// Makes the next `n` annotation patches fail with an API error.
    pub fn fail_next_patches(&self, n: u32) {
        self.lock().fail_patches = n;
    }

    /// Ends every open watch, as an API server restart would.
    pub fn close_watches(&self) {
        let mut st = self.lock();
        st.node_watchers.clear();
        st.pod_watchers.clear();
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        self.lock()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn patch(
        &self,
        kind: &'static str,
        namespace: Option<String>,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), KubeError> {
        let mut st = self.lock();
        if st.fail_patches > 0 {
            st.fail_patches -= 1;
            return Err(KubeError::Api("injected failure".into()));
        }
        let rv = st.next_rv();
        let what = format!(
            "{kind} {}{name}",
            namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default()
        );
        let check = |meta: &mut ObjectMeta| -> Result<(), KubeError> {
            if meta.uid.as_deref() != Some(uid.as_str()) {
                return Err(KubeError::Conflict(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta.uid.as_deref().unwrap_or("")
                )));
            }
            let map = meta.annotations.get_or_insert_with(BTreeMap::new);
            map.extend(annotations.clone());
            meta.resource_version = Some(rv);
            Ok(())
        };
        match kind {
            "Pod" => {
                let key = (namespace.clone().unwrap_or_default(), name.clone());
                let pod = st
                    .pods
                    .get_mut(&key)
                    .ok_or_else(|| KubeError::NotFound(what.clone()))?;
                check(&mut pod.metadata)?;
                let pod = pod.clone();
                st.send_pod(WatchEvent::Applied(pod));
            }
            _ => {
                let node = st
                    .nodes
                    .get_mut(&name)
                    .ok_or_else(|| KubeError::NotFound(what.clone()))?;
                check(&mut node.metadata)?;
                let node = node.clone();
                st.send_node(WatchEvent::Applied(node));
            }
        }
        st.patches.push(PatchRecord {
            kind,
            namespace,
            name,
            uid,
            annotations,
            at: Instant::now(),
        });
        Ok(())
    }
}

impl Cluster for MemoryCluster {
    fn watch_nodes(&self) -> BoxStream<'static, WatchEvent<Node>> {
        let mut st = self.lock();
        let (tx, rx) = mpsc::unbounded();
        // Registered under the lock with the snapshot, so no change is lost
        // or seen twice.
        let _ = tx.unbounded_send(WatchEvent::Restarted(st.nodes.values().cloned().collect()));
        st.node_watchers.push(tx);
        rx.boxed()
    }

    fn watch_pods(&self) -> BoxStream<'static, WatchEvent<Pod>> {
        let mut st = self.lock();
        let (tx, rx) = mpsc::unbounded();
        let _ = tx.unbounded_send(WatchEvent::Restarted(st.pods.values().cloned().collect()));
        st.pod_watchers.push(tx);
        rx.boxed()
    }

    fn patch_pod_annotations(
        &self,
        namespace: String,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>> {
        let r = self.patch("Pod", Some(namespace), name, uid, annotations);
        async move { r }.boxed()
    }

    fn patch_node_annotations(
        &self,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>> {
        let r = self.patch("Node", None, name, uid, annotations);
        async move { r }.boxed()
    }

    fn emit_event(&self, event: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
        self.lock().events.push(event);
        async { Ok(()) }.boxed()
    }

    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
        let l = self.lease(&namespace, &name);
        async move { Ok(l) }.boxed()
    }

    fn create_lease(&self, mut lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let mut st = self.lock();
        let key = (
            lease.metadata.namespace.clone().unwrap_or_default(),
            lease.metadata.name.clone().unwrap_or_default(),
        );
        let r = if st.leases.contains_key(&key) {
            Err(KubeError::Conflict(format!(
                "lease {}/{} exists",
                key.0, key.1
            )))
        } else {
            lease.metadata.resource_version = Some(st.next_rv());
            st.leases.insert(key, lease.clone());
            Ok(lease)
        };
        async move { r }.boxed()
    }

    fn replace_lease(&self, mut lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let mut st = self.lock();
        let key = (
            lease.metadata.namespace.clone().unwrap_or_default(),
            lease.metadata.name.clone().unwrap_or_default(),
        );
        let stored_rv = st
            .leases
            .get(&key)
            .map(|l| l.metadata.resource_version.clone());
        let r = match stored_rv {
            None => Err(KubeError::NotFound(format!("lease {}/{}", key.0, key.1))),
            Some(rv) if rv != lease.metadata.resource_version => Err(KubeError::Conflict(format!(
                "lease {}/{}: resourceVersion changed",
                key.0, key.1
            ))),
            Some(_) => {
                lease.metadata.resource_version = Some(st.next_rv());
                st.leases.insert(key, lease.clone());
                Ok(lease)
            }
        };
        async move { r }.boxed()
    }
}

/// A Ready node named `name` without `spec.podCIDRs` (Switchyard allocates).
pub fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        ..Default::default()
    }
}

/// A running pod `namespace/name` scheduled on `node`.
pub fn pod(namespace: &str, name: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_updates_keep_annotations_and_respect_the_uid() {
        let cluster = MemoryCluster::new();
        let mut p = pod("ns", "a", "n1");
        p.metadata.annotations = Some([("k".to_string(), "v".to_string())].into());
        let uid = cluster.apply_pod(p).metadata.uid.unwrap();
        let running = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        assert!(!cluster.update_pod_status("ns", "a", "another-uid", running.clone()));
        assert!(!cluster.update_pod_status("ns", "missing", &uid, running.clone()));
        assert!(cluster.update_pod_status("ns", "a", &uid, running));
        let stored = cluster.pod("ns", "a").unwrap();
        assert_eq!(stored.status.unwrap().phase.as_deref(), Some("Running"));
        assert_eq!(
            stored
                .metadata
                .annotations
                .unwrap()
                .get("k")
                .map(String::as_str),
            Some("v")
        );
    }
}
