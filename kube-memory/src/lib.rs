//! An in-memory Kubernetes API server for Switchyard's tests and sandbox.
//!
//! It answers as kube-apiserver does wherever the controller can tell:
//! watches start with the full list, every write bumps the
//! resourceVersion and produces a watch event, names, labels, annotations
//! and Events are validated with the server's rules ([`validate`]), UIDs
//! and creation times are immutable (422), a stale resourceVersion is a
//! 409, a create of an existing object a 409 `AlreadyExists`, a missing
//! object a 404, and every refusal is the `Status` the real server sends
//! ([`switchyard_controller::k8s::status`]), read through the same mapping
//! production uses.
//!
//! Tests are the fixtures' callers: they create, change and delete objects
//! (`apply_pod`, `delete_pod`, ...; a namespaced object's Namespace is
//! created with it when missing, as a test would first), and read back the
//! patches and Events the controller made, with the instant each happened.
//! The controller is a client ([`MemoryCluster::client`]): each client can
//! be killed (nothing it sends afterwards arrives, as with a killed
//! process's connections) or have its writes held (a slow API server), and
//! every call it makes is recorded as the verb and resource RBAC would
//! check.
//!
//! Services get what kube-apiserver gives them ([`services`]: defaults,
//! validation, ClusterIPs, NodePorts), and Services with a selector get
//! the EndpointSlices kube-controller-manager maintains
//! ([`endpointslices`]).
//!
//! Simplifications, each one the real server's end state: deletion is
//! immediate (no graceful period or finalizers; a pod's graceful deletion
//! can be begun with [`MemoryCluster::begin_pod_deletion`] and ended with
//! [`MemoryCluster::delete_pod`]), and deleting a Namespace deletes what it
//! holds at once. Deleting a Node leaves its pods, as the API server does;
//! [`MemoryCluster::gc_orphaned_pods`] is kube-controller-manager's pod GC
//! deleting them ([`podgc`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, Pod, PodSpec, PodStatus};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use switchyard_controller::k8s::status::{self, FieldError};
use switchyard_controller::k8s::{EventRecord, Kind, KubeError, Object, WatchEvent};

mod client;
pub mod endpointslices;
pub mod podgc;
pub mod services;
pub mod validate;

pub use client::{ApiCall, MemoryClient};

/// One annotation patch a client made.
#[derive(Clone, Debug)]
pub struct PatchRecord {
    /// `Pod` or `Node`.
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    pub at: Instant,
    /// The client that sent it.
    pub client: String,
}

/// An Event as stored: the object the server accepted and how often it
/// was reported.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub record: EventRecord,
    pub object: Event,
    pub count: u32,
}

/// What a watch carries: the stored object itself; a client encodes and
/// decodes it on its own side, as the API server's JSON would reach it.
pub(crate) type Payload = Arc<Object>;

struct Watcher {
    client: String,
    tx: mpsc::UnboundedSender<WatchEvent<Payload>>,
}

/// The JSON the API server would send for `o`.
pub(crate) fn to_json(o: &Object) -> Vec<u8> {
    let bytes = match o {
        Object::Node(x) => serde_json::to_vec(x),
        Object::Namespace(x) => serde_json::to_vec(x),
        Object::Pod(x) => serde_json::to_vec(x),
        Object::Service(x) => serde_json::to_vec(x),
        Object::EndpointSlice(x) => serde_json::to_vec(x),
        Object::NetworkPolicy(x) => serde_json::to_vec(x),
        Object::AdminNetworkPolicy(x) => serde_json::to_vec(x),
        Object::BaselineAdminNetworkPolicy(x) => serde_json::to_vec(x),
    };
    // The API types always serialize.
    bytes.unwrap_or_default()
}

type Key = (String, String);

#[derive(Default)]
pub(crate) struct State {
    rv: u64,
    uid_seq: u64,
    /// Shared with the watch events that carry them, as a watch cache
    /// shares its objects.
    objects: BTreeMap<Kind, BTreeMap<Key, Arc<Object>>>,
    watchers: BTreeMap<Kind, Vec<Watcher>>,
    patches: Vec<PatchRecord>,
    events: Vec<StoredEvent>,
    leases: BTreeMap<Key, Lease>,
    created: HashMap<String, Instant>,
    fail_patches: u32,
    refuse_events: bool,
    /// Kinds whose CRD is not installed.
    unserved: std::collections::BTreeSet<Kind>,
    calls: Vec<ApiCall>,
    dead: HashSet<String>,
    /// ClusterIPs and NodePorts held by Services.
    services: services::ServiceAllocator,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn send(&mut self, kind: Kind, ev: WatchEvent<Payload>) {
        let dead = &self.dead;
        if let Some(ws) = self.watchers.get_mut(&kind) {
            ws.retain(|w| !dead.contains(&w.client) && w.tx.unbounded_send(ev.clone()).is_ok());
        }
    }

    fn get(&self, kind: Kind, key: &Key) -> Option<&Object> {
        self.objects.get(&kind)?.get(key).map(|o| o.as_ref())
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.get(Kind::Namespace, &(String::new(), ns.to_string()))
            .is_some()
    }
}

fn key_of(kind: Kind, meta: &ObjectMeta) -> Key {
    let ns = if kind.namespaced() {
        meta.namespace.clone().unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    (ns, meta.name.clone().unwrap_or_default())
}

fn invalid(kind: Kind, name: &str, errs: &[FieldError]) -> KubeError {
    status::to_error(&status::invalid_kind(kind, name, errs))
}

/// The in-memory API server; share it as `Arc<MemoryCluster>`.
pub struct MemoryCluster {
    state: Mutex<State>,
    /// Itself, so that it can hand out its default client from `&self`.
    this: std::sync::Weak<MemoryCluster>,
    default_client: std::sync::OnceLock<Arc<MemoryClient>>,
}

impl MemoryCluster {
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|this| MemoryCluster {
            state: Mutex::default(),
            this: this.clone(),
            default_client: std::sync::OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- objects, as tests create and change them ----

    /// Creates `obj`, or updates the stored one of that name: a
    /// resourceVersion in `obj` is a precondition (409 when stale); labels
    /// and annotations are merged over the stored ones, as a merge patch
    /// does; spec and (when given) status replace the stored ones; UID and
    /// creation time are kept. Validated as the server validates.
    pub fn try_apply(&self, obj: impl Into<Object>) -> Result<Object, KubeError> {
        let mut obj = obj.into();
        let kind = obj.kind();
        let mut st = self.lock();
        if st.unserved.contains(&kind) {
            return Err(status::to_error(&status::not_found(
                kind.group(),
                kind.resource(),
                obj.meta().name.as_deref().unwrap_or_default(),
            )));
        }
        let key = key_of(kind, obj.meta());
        if kind.namespaced() {
            obj.meta_mut().namespace = Some(key.0.clone());
            if !st.namespace_exists(&key.0) {
                // A test creates the namespace before what goes in it.
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(key.0.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                create(&mut st, ns.into())?;
            }
        }
        let old = st.get(kind, &key).cloned();
        let errs = validate::admin_policy(&obj);
        if !errs.is_empty() {
            let name = obj.meta().name.clone().unwrap_or_default();
            return Err(invalid(kind, &name, &errs));
        }
        if let Object::Service(svc) = &mut obj {
            services::admit(&mut st, &key, old.as_ref(), svc)?;
        }
        let labels_before = old.as_ref().and_then(|o| o.meta().labels.clone());
        let written = match old {
            None => create(&mut st, obj),
            Some(old) => update(&mut st, old, obj),
        };
        if let Ok(o) = &written {
            after_write(&mut st, o, labels_before.as_ref());
        }
        written
    }

    /// [`MemoryCluster::try_apply`] for fixtures; a refusal is a bug in the
    /// test and panics with the server's message.
    pub fn apply(&self, obj: impl Into<Object>) -> Object {
        let obj = obj.into();
        let what = obj.key();
        self.try_apply(obj)
            .unwrap_or_else(|e| panic!("the API server refused {what}: {e}"))
    }

    /// `kubectl label`: sets `set` and removes `remove` from the object's
    /// labels, as the merge patch kubectl sends does (`null` removes a
    /// key), validated as any update; 404 when there is no such object.
    pub fn try_label(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Object, KubeError> {
        let mut st = self.lock();
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        let Some(old) = st.get(kind, &key).cloned() else {
            return Err(status::to_error(&status::not_found(
                kind.group(),
                kind.resource(),
                name,
            )));
        };
        let labels_before = old.meta().labels.clone();
        let mut new = old;
        let mut labels = labels_before.clone().unwrap_or_default();
        for k in remove {
            labels.remove(k);
        }
        labels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        new.meta_mut().labels = Some(labels).filter(|l| !l.is_empty());
        let errs = validate::object_meta(kind.name(), kind.namespaced(), new.meta());
        if !errs.is_empty() {
            return Err(invalid(kind, name, &errs));
        }
        if new.meta().labels == labels_before {
            return Ok(new);
        }
        new.meta_mut().resource_version = Some(st.next_rv());
        store(&mut st, new.clone());
        after_write(&mut st, &new, labels_before.as_ref());
        Ok(new)
    }

    /// Deletes an object at once; `None` when there is none.
    pub fn delete(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Object> {
        let mut st = self.lock();
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        delete(&mut st, kind, &key)
    }

    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Object> {
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        self.lock().get(kind, &key).cloned()
    }

    pub fn list(&self, kind: Kind) -> Vec<Object> {
        self.lock()
            .objects
            .get(&kind)
            .map(|m| m.values().map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }

    /// Creates or replaces a Node.
    pub fn apply_node(&self, node: Node) -> Node {
        match self.apply(node) {
            Object::Node(n) => *n,
            _ => unreachable!("a Node was stored"),
        }
    }

    pub fn delete_node(&self, name: &str) -> Option<Node> {
        match self.delete(Kind::Node, None, name)? {
            Object::Node(n) => Some(*n),
            _ => None,
        }
    }

    /// Creates or replaces a Pod (see [`MemoryCluster::try_apply`]).
    pub fn apply_pod(&self, pod: Pod) -> Pod {
        match self.apply(pod) {
            Object::Pod(p) => *p,
            _ => unreachable!("a Pod was stored"),
        }
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        match self.delete(Kind::Pod, Some(namespace), name)? {
            Object::Pod(p) => Some(*p),
            _ => None,
        }
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
        let key = (namespace.to_string(), name.to_string());
        let Some(Object::Pod(pod)) = st.get(Kind::Pod, &key).cloned() else {
            return false;
        };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return false;
        }
        let mut pod = pod;
        pod.status = Some(status);
        pod.metadata.resource_version = Some(st.next_rv());
        let labels = pod.metadata.labels.clone();
        store(&mut st, Object::Pod(pod));
        endpointslices::on_pod(&mut st, namespace, labels.as_ref(), labels.as_ref());
        true
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        match self.get(Kind::Node, None, name)? {
            Object::Node(n) => Some(*n),
            _ => None,
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        match self.get(Kind::Pod, Some(namespace), name)? {
            Object::Pod(p) => Some(*p),
            _ => None,
        }
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.list(Kind::Node)
            .into_iter()
            .filter_map(|o| match o {
                Object::Node(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.list(Kind::Pod)
            .into_iter()
            .filter_map(|o| match o {
                Object::Pod(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// Typed watch of Pods for observers that are not the controller (the
    /// sandbox's mirror): the same events a client's watch gets.
    pub fn watch_pods(&self) -> BoxStream<'static, WatchEvent<Pod>> {
        typed(self.watch_objects(Kind::Pod), |o| match o {
            Object::Pod(p) => Some(*p),
            _ => None,
        })
    }

    /// Typed watch of Nodes; see [`MemoryCluster::watch_pods`].
    pub fn watch_nodes(&self) -> BoxStream<'static, WatchEvent<Node>> {
        typed(self.watch_objects(Kind::Node), |o| match o {
            Object::Node(n) => Some(*n),
            _ => None,
        })
    }

    /// A watch of whole objects, for observers.
    pub fn watch_objects(&self, kind: Kind) -> BoxStream<'static, WatchEvent<Object>> {
        let own = |o: Payload| Arc::unwrap_or_clone(o);
        self.watch_as("observer", kind)
            .map(move |ev| match ev {
                WatchEvent::Restarted(l) => WatchEvent::Restarted(l.into_iter().map(own).collect()),
                WatchEvent::Applied(o) => WatchEvent::Applied(own(o)),
                WatchEvent::Deleted(o) => WatchEvent::Deleted(own(o)),
                WatchEvent::Unavailable(w) => WatchEvent::Unavailable(w),
            })
            .boxed()
    }

    pub(crate) fn watch_as(
        &self,
        client: &str,
        kind: Kind,
    ) -> BoxStream<'static, WatchEvent<Payload>> {
        let mut st = self.lock();
        let (tx, rx) = mpsc::unbounded();
        if st.dead.contains(client) {
            return rx.boxed();
        }
        if st.unserved.contains(&kind) {
            // As the server answers a list of a resource no CRD defines.
            let _ = tx.unbounded_send(WatchEvent::Unavailable(format!(
                "the server could not find the requested resource ({})",
                kind.resource()
            )));
            return rx.boxed();
        }
        let list: Vec<Payload> = st
            .objects
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        // Registered under the lock with the snapshot, so no change is lost
        // or seen twice.
        let _ = tx.unbounded_send(WatchEvent::Restarted(list));
        st.watchers.entry(kind).or_default().push(Watcher {
            client: client.to_string(),
            tx,
        });
        rx.boxed()
    }

    // ---- what clients did ----

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

    /// Every Event the server accepted, oldest first (a repeat counts on
    /// the first one).
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock()
            .events
            .iter()
            .map(|e| e.record.clone())
            .collect()
    }

    /// The Events as stored, with their counts.
    pub fn stored_events(&self) -> Vec<StoredEvent> {
        self.lock().events.clone()
    }

    /// Every API call clients made, as RBAC would check them.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.lock().calls.clone()
    }

    /// When the pod with `uid` was first applied here.
    pub fn created_at(&self, uid: &str) -> Option<Instant> {
        self.lock().created.get(uid).copied()
    }

    /// Makes the next `n` annotation patches fail with a server error.
    pub fn fail_next_patches(&self, n: u32) {
        self.lock().fail_patches = n;
    }

    /// Makes the server refuse every Event (as an admission webhook or a
    /// quota might) until called with `false`.
    pub fn refuse_events(&self, refuse: bool) {
        self.lock().refuse_events = refuse;
    }

    /// Stops serving an optional kind, as a cluster without its CRD: lists
    /// answer 404 and objects of it cannot be created.
    pub fn unserve(&self, kind: Kind) {
        assert!(kind.optional(), "{kind} is built in");
        let mut st = self.lock();
        st.unserved.insert(kind);
        st.objects.remove(&kind);
    }

    /// Ends every open watch, as an API server restart would.
    pub fn close_watches(&self) {
        self.lock().watchers.clear();
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        self.lock()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Writes a lease as another party would (e.g. a replica that took
    /// it over): the stored one is replaced and its resourceVersion bumped.
    pub fn put_lease(&self, mut lease: Lease) {
        let mut st = self.lock();
        let key = key_of_lease(&lease);
        lease.metadata.resource_version = Some(st.next_rv());
        st.leases.insert(key, lease);
    }
}

fn key_of_lease(l: &Lease) -> Key {
    (
        l.metadata.namespace.clone().unwrap_or_default(),
        l.metadata.name.clone().unwrap_or_default(),
    )
}

fn typed<K: Send + 'static>(
    s: BoxStream<'static, WatchEvent<Object>>,
    f: fn(Object) -> Option<K>,
) -> BoxStream<'static, WatchEvent<K>> {
    s.filter_map(move |ev| {
        futures::future::ready(match ev {
            WatchEvent::Restarted(l) => {
                Some(WatchEvent::Restarted(l.into_iter().filter_map(f).collect()))
            }
            WatchEvent::Applied(o) => f(o).map(WatchEvent::Applied),
            WatchEvent::Deleted(o) => f(o).map(WatchEvent::Deleted),
            WatchEvent::Unavailable(w) => Some(WatchEvent::Unavailable(w)),
        })
    })
    .boxed()
}

/// Stores `obj` (already versioned) and tells the watchers.
fn store(st: &mut State, obj: Object) {
    let kind = obj.kind();
    let key = key_of(kind, obj.meta());
    let obj = Arc::new(obj);
    st.objects.entry(kind).or_default().insert(key, obj.clone());
    st.send(kind, WatchEvent::Applied(obj));
}

fn create(st: &mut State, mut obj: Object) -> Result<Object, KubeError> {
    let kind = obj.kind();
    let name = obj.meta().name.clone().unwrap_or_default();
    let errs = validate::object_meta(kind.name(), kind.namespaced(), obj.meta());
    if !errs.is_empty() {
        return Err(invalid(kind, &name, &errs));
    }
    let key = key_of(kind, obj.meta());
    if st.get(kind, &key).is_some() {
        return Err(status::to_error(&status::already_exists(
            kind.group(),
            kind.resource(),
            &name,
        )));
    }
    st.uid_seq += 1;
    let uid = obj
        .meta()
        .uid
        .clone()
        .unwrap_or_else(|| format!("{}-uid-{}", kind.name().to_lowercase(), st.uid_seq));
    st.created.entry(uid.clone()).or_insert_with(Instant::now);
    let rv = st.next_rv();
    let meta = obj.meta_mut();
    meta.uid = Some(uid);
    meta.resource_version = Some(rv);
    meta.creation_timestamp = Some(Time(Timestamp::now()));
    store(st, obj.clone());
    Ok(obj)
}

fn update(st: &mut State, old: Object, mut new: Object) -> Result<Object, KubeError> {
    let kind = old.kind();
    let name = old.meta().name.clone().unwrap_or_default();
    if let Some(rv) = &new.meta().resource_version {
        if Some(rv) != old.meta().resource_version.as_ref() {
            return Err(status::to_error(&status::conflict(
                kind.group(),
                kind.resource(),
                &name,
            )));
        }
    }
    let mut errs = validate::object_meta_update(old.meta(), new.meta());
    if let (Object::Pod(o), Object::Pod(n)) = (&old, &new) {
        errs.extend(validate::pod_update(o, n));
    }
    // Merged as a merge patch merges maps.
    let om = old.meta();
    let mut labels = om.labels.clone().unwrap_or_default();
    labels.extend(new.meta().labels.clone().unwrap_or_default());
    let mut annotations = om.annotations.clone().unwrap_or_default();
    annotations.extend(new.meta().annotations.clone().unwrap_or_default());
    let merged = ObjectMeta {
        labels: Some(labels).filter(|l| !l.is_empty()),
        annotations: Some(annotations).filter(|a| !a.is_empty()),
        ..om.clone()
    };
    errs.extend(validate::annotations(merged.annotations.as_ref()));
    if !errs.is_empty() {
        return Err(invalid(kind, &name, &errs));
    }
    // Status is kept unless the update brings one.
    match (&old, &mut new) {
        (Object::Pod(o), Object::Pod(n)) if n.status.is_none() => n.status = o.status.clone(),
        (Object::Node(o), Object::Node(n)) if n.status.is_none() => n.status = o.status.clone(),
        (Object::Service(o), Object::Service(n)) if n.status.is_none() => {
            n.status = o.status.clone()
        }
        _ => {}
    }
    let rv = st.next_rv();
    *new.meta_mut() = ObjectMeta {
        resource_version: Some(rv),
        ..merged
    };
    store(st, new.clone());
    Ok(new)
}

/// What kube-controller-manager does after a write: the EndpointSlices of
/// the Services a pod or Service change concerns.
fn after_write(st: &mut State, obj: &Object, labels_before: Option<&BTreeMap<String, String>>) {
    let m = obj.meta();
    let (ns, name) = (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    );
    match obj {
        Object::Service(_) => endpointslices::sync(st, &ns, &name),
        Object::Pod(p) => {
            endpointslices::on_pod(st, &ns, labels_before, p.metadata.labels.as_ref())
        }
        _ => {}
    }
}

fn delete(st: &mut State, kind: Kind, key: &Key) -> Option<Object> {
    let mut obj = Arc::unwrap_or_clone(st.objects.get_mut(&kind)?.remove(key)?);
    match &obj {
        Object::Service(_) => {
            st.services.release(key);
            endpointslices::sync(st, &key.0, &key.1);
        }
        Object::Pod(p) => {
            let labels = p.metadata.labels.clone();
            endpointslices::on_pod(st, &key.0, labels.as_ref(), None);
        }
        _ => {}
    }
    if kind == Kind::Namespace {
        let ns = &key.1;
        for k in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            let inside: Vec<Key> = st
                .objects
                .get(&k)
                .map(|m| m.keys().filter(|(n, _)| n == ns).cloned().collect())
                .unwrap_or_default();
            for key in inside {
                delete(st, k, &key);
            }
        }
    }
    obj.meta_mut().resource_version = Some(st.next_rv());
    st.send(kind, WatchEvent::Deleted(Arc::new(obj.clone())));
    Some(obj)
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

/// A namespace with `labels`.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .filter(|l: &BTreeMap<String, String>| !l.is_empty()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_services;
