//! A client of the in-memory API server: what the controller holds.
//!
//! Requests are futures that reach the server when polled, as HTTP
//! requests do, so a write that is never polled (its task was aborted)
//! never happens. A client can be killed (everything it sends afterwards
//! is lost and its watches end, as with a killed process's connections) or
//! have its writes held until released (a slow server), which is how tests
//! make an interleaving happen on purpose instead of by luck of timing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use switchyard_controller::k8s::status::{self, FieldError};
use switchyard_controller::k8s::{
    Cluster, EventRecord, Kind, KubeError, Object, ObjectRef, Observed, WatchEvent, Written,
};
use tokio::sync::watch;

use crate::{
    invalid, key_of_lease, store, validate, MemoryCluster, PatchRecord, Payload, StoredEvent,
};

/// `reportingController` of the Events clients create, as production's.
const REPORTING_CONTROLLER: &str = "switchyard.io/switchyard-controller";

/// One request as RBAC would check it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiCall {
    pub client: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`.
    pub verb: &'static str,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    /// The object the request names, as RBAC's `resourceNames` sees it:
    /// `None` for requests on a collection (list, watch, create).
    pub name: Option<String>,
}

/// A connection to the in-memory API server.
pub struct MemoryClient {
    cluster: Arc<MemoryCluster>,
    name: String,
    hold: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
}

impl MemoryCluster {
    /// A client named `name` (the name shows in [`ApiCall`]s, patches and
    /// as the `reportingInstance` of its Events).
    pub fn client(self: &Arc<Self>, name: &str) -> Arc<MemoryClient> {
        Arc::new(MemoryClient {
            cluster: self.clone(),
            name: name.to_string(),
            hold: watch::channel(false).0,
            held: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn default_client(&self) -> Arc<MemoryClient> {
        self.default_client
            .get_or_init(|| {
                let this = self
                    .this
                    .upgrade()
                    .expect("a MemoryCluster lives in an Arc");
                this.client("default")
            })
            .clone()
    }

    fn record(
        &self,
        client: &str,
        verb: &'static str,
        kind: (&str, &str),
        ns: Option<&str>,
        name: Option<&str>,
    ) {
        self.lock().calls.push(ApiCall {
            client: client.to_string(),
            verb,
            group: kind.0.to_string(),
            resource: kind.1.to_string(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
        });
    }

    fn is_dead(&self, client: &str) -> bool {
        self.lock().dead.contains(client)
    }

    fn patch_as(
        &self,
        client: &str,
        target: &ObjectRef,
        resource_version: Option<&str>,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<Written, KubeError> {
        let kind = target.kind;
        let mut st = self.lock();
        if st.dead.contains(client) {
            return Err(closed());
        }
        st.calls.push(ApiCall {
            client: client.to_string(),
            verb: "patch",
            group: kind.group().into(),
            resource: kind.resource().into(),
            namespace: target.namespace.clone(),
            name: Some(target.name.clone()),
        });
        if st.fail_patches > 0 {
            st.fail_patches -= 1;
            return Err(KubeError::Api(
                "Internal error occurred: injected (500)".into(),
            ));
        }
        let key = (
            target.namespace.clone().unwrap_or_default(),
            target.name.clone(),
        );
        let Some(mut obj) = st.get(kind, &key).cloned() else {
            return Err(status::to_error(&status::not_found(
                kind.group(),
                kind.resource(),
                &target.name,
            )));
        };
        // The patched object is checked as an update: first the
        // resourceVersion precondition (409), then validation, where a UID
        // that differs is an attempt to change an immutable field (422).
        if resource_version.is_some_and(|rv| Some(rv) != obj.meta().resource_version.as_deref()) {
            return Err(status::to_error(&status::conflict(
                kind.group(),
                kind.resource(),
                &target.name,
            )));
        }
        if let Some(uid) = &target.uid {
            if obj.meta().uid.as_ref() != Some(uid) {
                return Err(invalid(
                    kind,
                    &target.name,
                    &[FieldError::invalid(
                        "metadata.uid",
                        uid,
                        "field is immutable",
                    )],
                ));
            }
        }
        let meta = obj.meta_mut();
        let mut map = meta.annotations.take().unwrap_or_default();
        for (k, v) in annotations {
            match v {
                Some(v) => map.insert(k.clone(), v.clone()),
                None => map.remove(k),
            };
        }
        let errs = validate::annotations(Some(&map));
        if !errs.is_empty() {
            return Err(invalid(kind, &target.name, &errs));
        }
        meta.annotations = Some(map).filter(|m| !m.is_empty());
        let rv = st.next_rv();
        obj.meta_mut().resource_version = Some(rv.clone());
        let uid = obj.meta().uid.clone().unwrap_or_default();
        store(&mut st, obj);
        st.patches.push(PatchRecord {
            kind: kind.name(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            uid,
            annotations: annotations
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                .collect(),
            at: Instant::now(),
            client: client.to_string(),
        });
        Ok(Some(rv))
    }

    /// A merge patch of an object's `/status`, guarded as annotation
    /// patches are; only the status changes.
    fn patch_status_as(
        &self,
        client: &str,
        target: &ObjectRef,
        resource_version: Option<&str>,
        patch: &serde_json::Value,
    ) -> Result<Written, KubeError> {
        let kind = target.kind;
        let mut st = self.lock();
        if st.dead.contains(client) {
            return Err(closed());
        }
        st.calls.push(ApiCall {
            client: client.to_string(),
            verb: "patch",
            group: kind.group().into(),
            resource: format!("{}/status", kind.resource()),
            namespace: target.namespace.clone(),
            name: Some(target.name.clone()),
        });
        let key = (
            target.namespace.clone().unwrap_or_default(),
            target.name.clone(),
        );
        let not_found = || {
            status::to_error(&status::not_found(
                kind.group(),
                kind.resource(),
                &target.name,
            ))
        };
        let Some(mut obj) = st.get(kind, &key).cloned() else {
            return Err(not_found());
        };
        if resource_version.is_some_and(|rv| Some(rv) != obj.meta().resource_version.as_deref()) {
            return Err(status::to_error(&status::conflict(
                kind.group(),
                kind.resource(),
                &target.name,
            )));
        }
        if let Some(uid) = &target.uid {
            if obj.meta().uid.as_ref() != Some(uid) {
                return Err(invalid(
                    kind,
                    &target.name,
                    &[FieldError::invalid(
                        "metadata.uid",
                        uid,
                        "field is immutable",
                    )],
                ));
            }
        }
        let bad = |e: serde_json::Error| {
            invalid(
                kind,
                &target.name,
                &[FieldError::invalid(
                    "status",
                    &e.to_string(),
                    "cannot be decoded",
                )],
            )
        };
        match &mut obj {
            Object::Service(svc) => {
                let mut v = serde_json::to_value(&svc.status).map_err(bad)?;
                merge_patch(&mut v, patch);
                svc.status = serde_json::from_value(v).map_err(bad)?;
                let errs = validate::service_status(svc.status.as_ref());
                if !errs.is_empty() {
                    return Err(invalid(kind, &target.name, &errs));
                }
            }
            Object::Pod(pod) => {
                let mut v = serde_json::to_value(&pod.status).map_err(bad)?;
                merge_patch(&mut v, patch);
                pod.status = serde_json::from_value(v).map_err(bad)?;
            }
            Object::AdminNetworkPolicy(p) => {
                let mut v = serde_json::to_value(&p.status).map_err(bad)?;
                merge_patch(&mut v, patch);
                p.status = serde_json::from_value(v).map_err(bad)?;
            }
            Object::BaselineAdminNetworkPolicy(p) => {
                let mut v = serde_json::to_value(&p.status).map_err(bad)?;
                merge_patch(&mut v, patch);
                p.status = serde_json::from_value(v).map_err(bad)?;
            }
            _ => return Err(not_found()),
        }
        let rv = st.next_rv();
        obj.meta_mut().resource_version = Some(rv.clone());
        store(&mut st, obj);
        Ok(Some(rv))
    }

    /// What kube's recorder does: the first occurrence is created, a
    /// repeat (same object, type, reason, action and reporter) patches the
    /// first one's count.
    fn event_as(&self, client: &str, record: &EventRecord) -> Result<(), KubeError> {
        let event = record.to_event(REPORTING_CONTROLLER, client, Timestamp::now());
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let mut st = self.lock();
        if st.dead.contains(client) {
            return Err(closed());
        }
        let same = |e: &StoredEvent| {
            e.record.regarding == record.regarding
                && e.record.type_ == record.type_
                && e.record.reason == record.reason
                && e.record.action == record.action
                && e.object.reporting_instance.as_deref() == Some(client)
        };
        // A repeat patches the first occurrence by its name; a create
        // names no object (RBAC sees a request on the collection).
        let (verb, name) = match st.events.iter().find(|e| same(e)) {
            Some(first) => ("patch", first.object.metadata.name.clone()),
            None => ("create", None),
        };
        st.calls.push(ApiCall {
            client: client.to_string(),
            verb,
            group: "events.k8s.io".into(),
            resource: "events".into(),
            namespace: Some(ns.clone()),
            name,
        });
        if st.refuse_events {
            return Err(KubeError::Forbidden(format!(
                "events.events.k8s.io is forbidden: refused in namespace {ns:?}"
            )));
        }
        if let Some(e) = st.events.iter_mut().find(|e| same(e)) {
            e.count += 1;
            return Ok(());
        }
        if !st.namespace_exists(&ns) && ns != "default" {
            return Err(status::to_error(&status::not_found("", "namespaces", &ns)));
        }
        let errs = validate::event(&event);
        if !errs.is_empty() {
            let name = event.metadata.name.clone().unwrap_or_default();
            return Err(status::to_error(&status::invalid(
                "Event",
                "events.k8s.io",
                &name,
                &errs,
            )));
        }
        st.events.push(StoredEvent {
            record: record.clone(),
            object: event,
            count: 1,
        });
        Ok(())
    }

    fn get_lease_as(&self, client: &str, ns: &str, name: &str) -> Result<Option<Lease>, KubeError> {
        if self.is_dead(client) {
            return Err(closed());
        }
        self.record(client, "get", LEASES, Some(ns), Some(name));
        Ok(self.lease(ns, name))
    }

    fn create_lease_as(&self, client: &str, mut lease: Lease) -> Result<Lease, KubeError> {
        let mut st = self.lock();
        if st.dead.contains(client) {
            return Err(closed());
        }
        let key = key_of_lease(&lease);
        st.calls.push(lease_call(client, "create", &key.0, None));
        let errs = validate::object_meta("Lease", true, &lease.metadata);
        if !errs.is_empty() {
            return Err(status::to_error(&status::invalid(
                "Lease", LEASES.0, &key.1, &errs,
            )));
        }
        if st.leases.contains_key(&key) {
            return Err(status::to_error(&status::already_exists(
                LEASES.0, LEASES.1, &key.1,
            )));
        }
        lease.metadata.resource_version = Some(st.next_rv());
        st.leases.insert(key, lease.clone());
        Ok(lease)
    }

    fn replace_lease_as(&self, client: &str, mut lease: Lease) -> Result<Lease, KubeError> {
        let mut st = self.lock();
        if st.dead.contains(client) {
            return Err(closed());
        }
        let key = key_of_lease(&lease);
        st.calls
            .push(lease_call(client, "update", &key.0, Some(&key.1)));
        let Some(stored) = st.leases.get(&key) else {
            return Err(status::to_error(&status::not_found(
                LEASES.0, LEASES.1, &key.1,
            )));
        };
        if stored.metadata.resource_version != lease.metadata.resource_version {
            return Err(status::to_error(&status::conflict(
                LEASES.0, LEASES.1, &key.1,
            )));
        }
        lease.metadata.resource_version = Some(st.next_rv());
        st.leases.insert(key, lease.clone());
        Ok(lease)
    }
}

const LEASES: (&str, &str) = ("coordination.k8s.io", "leases");

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything
/// else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
    }
}

fn lease_call(client: &str, verb: &'static str, ns: &str, name: Option<&str>) -> ApiCall {
    ApiCall {
        client: client.to_string(),
        verb,
        group: LEASES.0.into(),
        resource: LEASES.1.into(),
        namespace: Some(ns.to_string()),
        name: name.map(str::to_string),
    }
}

/// What a client sees once its connection is gone.
fn closed() -> KubeError {
    KubeError::Api("connection closed".into())
}

/// Counts a write while it waits for release; uncounts it however the
/// wait ends (released, or the request's task dropped).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemoryClient {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the client: from now on nothing it sends arrives and its
    /// watches end, whatever its tasks still do.
    pub fn kill(&self) {
        let mut st = self.cluster.lock();
        st.dead.insert(self.name.clone());
        let name = &self.name;
        for ws in st.watchers.values_mut() {
            ws.retain(|w| &w.client != name);
        }
    }

    /// Holds this client's writes (patches, Events) until
    /// [`MemoryClient::release_writes`]: they wait as requests to a slow
    /// server do.
    pub fn hold_writes(&self) {
        self.hold.send_replace(true);
    }

    pub fn release_writes(&self) {
        self.hold.send_replace(false);
    }

    /// Writes waiting for release right now.
    pub fn held_writes(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Resolves once writes may go (at once unless held).
    fn gate(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.hold.subscribe();
        let held = self.held.clone();
        async move {
            if !*rx.borrow_and_update() {
                return;
            }
            held.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(held);
            while *rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Cluster for MemoryClient {
    /// Objects reach the client as JSON and are decoded on its side with
    /// the decoders production uses, so a client pays what a real watch
    /// costs and an object that would not survive the wire shows here.
    fn watch(&self, kind: Kind) -> BoxStream<'static, WatchEvent<Observed>> {
        if !self.cluster.is_dead(&self.name) {
            let ns = None;
            self.cluster.record(
                &self.name,
                "list",
                (kind.group(), kind.resource()),
                ns,
                None,
            );
            self.cluster.record(
                &self.name,
                "watch",
                (kind.group(), kind.resource()),
                ns,
                None,
            );
        }
        let decode = move |p: Payload| -> Option<Observed> {
            match Observed::decode(kind, &crate::to_json(&p)) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!(%kind, error = %e, "a watched object did not decode");
                    None
                }
            }
        };
        self.cluster
            .watch_as(&self.name, kind)
            .filter_map(move |ev| {
                futures::future::ready(match ev {
                    WatchEvent::Restarted(l) => Some(WatchEvent::Restarted(
                        l.into_iter().filter_map(decode).collect(),
                    )),
                    WatchEvent::Applied(p) => decode(p).map(WatchEvent::Applied),
                    WatchEvent::Deleted(p) => decode(p).map(WatchEvent::Deleted),
                    WatchEvent::Unavailable(w) => Some(WatchEvent::Unavailable(w)),
                })
            })
            .boxed()
    }

    fn patch_annotations(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        annotations: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        let (cluster, name, gate) = (self.cluster.clone(), self.name.clone(), self.gate());
        async move {
            gate.await;
            cluster.patch_as(&name, &target, resource_version.as_deref(), &annotations)
        }
        .boxed()
    }

    fn patch_status(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        status: serde_json::Value,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        let (cluster, name, gate) = (self.cluster.clone(), self.name.clone(), self.gate());
        async move {
            gate.await;
            cluster.patch_status_as(&name, &target, resource_version.as_deref(), &status)
        }
        .boxed()
    }

    fn emit_event(&self, event: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
        let (cluster, name, gate) = (self.cluster.clone(), self.name.clone(), self.gate());
        async move {
            gate.await;
            cluster.event_as(&name, &event)
        }
        .boxed()
    }

    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
        let (cluster, client) = (self.cluster.clone(), self.name.clone());
        async move { cluster.get_lease_as(&client, &namespace, &name) }.boxed()
    }

    fn create_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let (cluster, client) = (self.cluster.clone(), self.name.clone());
        async move { cluster.create_lease_as(&client, lease) }.boxed()
    }

    fn replace_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let (cluster, client) = (self.cluster.clone(), self.name.clone());
        async move { cluster.replace_lease_as(&client, lease) }.boxed()
    }
}

/// The cluster itself acts as one default client, for tests that need
/// only one.
impl Cluster for MemoryCluster {
    fn watch(&self, kind: Kind) -> BoxStream<'static, WatchEvent<Observed>> {
        self.default_client().watch(kind)
    }
    fn patch_annotations(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        annotations: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        self.default_client()
            .patch_annotations(target, resource_version, annotations)
    }
    fn patch_status(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        status: serde_json::Value,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        self.default_client()
            .patch_status(target, resource_version, status)
    }
    fn emit_event(&self, event: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
        self.default_client().emit_event(event)
    }
    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
        self.default_client().get_lease(namespace, name)
    }
    fn create_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        self.default_client().create_lease(lease)
    }
    fn replace_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        self.default_client().replace_lease(lease)
    }
}
