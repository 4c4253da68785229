//! The production [`Cluster`]: kube-rs watchers, merge patches, Events and
//! Leases. All kube-rs specifics live in this module.
//!
//! Watches use `kube::runtime::watcher` (list, then watch from the list's
//! resourceVersion; on `410 Gone` it relists), with kube-rs's default
//! back-off between failed attempts; the relist arrives as one
//! [`WatchEvent::Restarted`]. Objects lose `managedFields` and the
//! last-applied annotation before they leave this module: the controller
//! never reads them and they are often most of an object's size.
//!
//! Events go through kube-rs's [`Recorder`], which names them
//! `<object>.<hex time>` as client-go's recorders do (a `generateName`
//! ending in `.` is refused by the API server) and turns repeats into a
//! series patch instead of a new object. RBAC is listed in [`crate::k8s`].

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use super::wire::{NamespaceWire, NodeWire, PodWire};
use super::{
    status, AdminNetworkPolicy, BaselineAdminNetworkPolicy, Cluster, EventRecord, Kind, KubeError,
    ObjectRef, Observed, WatchEvent, Written,
};

/// [`Cluster`] over a kube-rs client.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// Field manager for patches.
    manager: String,
    recorder: Recorder,
}

impl KubeCluster {
    /// `manager` names the field manager of patches and, prefixed with
    /// `switchyard.io/`, the `reportingController` of Events; `instance`
    /// is this replica (the pod name).
    pub fn new(client: Client, manager: &str, instance: &str) -> Self {
        let reporter = Reporter {
            controller: format!("switchyard.io/{manager}"),
            instance: Some(instance.to_string()),
        };
        KubeCluster {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            manager: manager.to_string(),
        }
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.manager.clone()),
            ..Default::default()
        }
    }
}

/// A kube-rs error as the controller reads it (see [`status::to_error`]).
pub fn map_err(e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) => status::to_error(&s),
        other => KubeError::Api(other.to_string()),
    }
}

/// kube-rs watcher events into [`WatchEvent`]s: `Init`/`InitApply`/`InitDone`
/// become one `Restarted` with the whole list; errors are logged (the
/// watcher recovers by itself, relisting on 410 Gone).
pub fn convert<K: Send + 'static>(
    what: String,
    s: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> BoxStream<'static, WatchEvent<K>> {
    let mut buf: Vec<K> = Vec::new();
    s.map(move |ev| match ev {
        Ok(watcher::Event::Init) => {
            buf.clear();
            None
        }
        Ok(watcher::Event::InitApply(k)) => {
            buf.push(k);
            None
        }
        Ok(watcher::Event::InitDone) => Some(WatchEvent::Restarted(std::mem::take(&mut buf))),
        Ok(watcher::Event::Apply(k)) => Some(WatchEvent::Applied(k)),
        Ok(watcher::Event::Delete(k)) => Some(WatchEvent::Deleted(k)),
        Err(e) => {
            warn!(what = %what, error = %e, "watch failed; the watcher retries");
            None
        }
    })
    .filter_map(futures::future::ready)
    .boxed()
}

/// Drops what the controller never reads before an object is kept.
fn strip<K: Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn watch_kind<K>(client: Client) -> BoxStream<'static, WatchEvent<Observed>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    Observed: From<K>,
{
    let api: Api<K> = Api::all(client);
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip::<K>);
    convert(K::plural(&()).to_string(), events)
        .map(|ev| match ev {
            WatchEvent::Restarted(list) => {
                WatchEvent::Restarted(list.into_iter().map(Observed::from).collect())
            }
            WatchEvent::Applied(k) => WatchEvent::Applied(Observed::from(k)),
            WatchEvent::Deleted(k) => WatchEvent::Deleted(Observed::from(k)),
            WatchEvent::Unavailable(why) => WatchEvent::Unavailable(why),
        })
        .boxed()
}

/// The merge patch that sets (or, with `None`, removes) annotations only if
/// the object still has `uid` and, when given, `resource_version`: the
/// server refuses a changed UID with 422 (the field is immutable) and a
/// changed resourceVersion with 409.
pub fn annotation_patch(
    uid: Option<&str>,
    resource_version: Option<&str>,
    annotations: &BTreeMap<String, Option<String>>,
) -> serde_json::Value {
    let mut meta = serde_json::Map::new();
    if let Some(uid) = uid {
        meta.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = resource_version {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    meta.insert("annotations".into(), json!(annotations));
    json!({ "metadata": meta })
}

fn patch_with<K>(
    api: Api<K>,
    pp: PatchParams,
    name: String,
    patch: serde_json::Value,
) -> BoxFuture<'static, Result<Written, KubeError>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    async move {
        api.patch(&name, &pp, &Patch::Merge(&patch))
            .await
            .map(|o| o.resource_version())
            .map_err(map_err)
    }
    .boxed()
}

fn patch_status_with<K>(
    api: Api<K>,
    pp: PatchParams,
    name: String,
    patch: serde_json::Value,
) -> BoxFuture<'static, Result<Written, KubeError>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    async move {
        api.patch_status(&name, &pp, &Patch::Merge(&patch))
            .await
            .map(|o| o.resource_version())
            .map_err(map_err)
    }
    .boxed()
}

/// The merge patch of the `/status` subresource that sets `status` only
/// if the object still has `uid` and, when given, `resource_version`
/// (refused with 422 and 409 as for [`annotation_patch`]).
pub fn status_patch(
    uid: Option<&str>,
    resource_version: Option<&str>,
    status: &serde_json::Value,
) -> serde_json::Value {
    let mut meta = serde_json::Map::new();
    if let Some(uid) = uid {
        meta.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = resource_version {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    json!({ "metadata": meta, "status": status })
}

fn namespaced<K>(client: &Client, target: &ObjectRef) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(
        client.clone(),
        target.namespace.as_deref().unwrap_or("default"),
    )
}

macro_rules! observed_from {
    ($($t:ident => $v:ident $(via $f:ident)?),* $(,)?) => {$(
        impl From<$t> for Observed {
            fn from(o: $t) -> Observed {
                observed_from!(@make $v o $($f)?)
            }
        }
    )*};
    (@make $v:ident $o:ident $f:ident) => { Observed::$v(Box::new($o.$f())) };
    (@make $v:ident $o:ident) => { Observed::$v(Box::new($o)) };
}

observed_from!(
    NodeWire => Node via into_info,
    NamespaceWire => Namespace via into_info,
    PodWire => Pod via into_info,
    Service => Service,
    EndpointSlice => EndpointSlice,
    NetworkPolicy => NetworkPolicy,
    AdminNetworkPolicy => AdminNetworkPolicy,
    BaselineAdminNetworkPolicy => BaselineAdminNetworkPolicy,
);

/// [`watch_kind`] for a kind a CRD may not provide: when the API server
/// answers the first list with 404, one [`WatchEvent::Unavailable`] and
/// the end of the stream, instead of a watcher retrying forever.
fn watch_optional<K>(client: Client) -> BoxStream<'static, WatchEvent<Observed>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    Observed: From<K>,
{
    let api: Api<K> = Api::all(client.clone());
    futures::stream::once(async move {
        api.list_metadata(&kube::api::ListParams::default().limit(1))
            .await
    })
    .flat_map(move |probe| match probe {
        Err(kube::Error::Api(s)) if s.code == 404 => futures::stream::once(async move {
            WatchEvent::Unavailable(format!("{} is not served: {}", K::plural(&()), s.message))
        })
        .boxed(),
        _ => watch_kind::<K>(client.clone()),
    })
    .boxed()
}

impl Cluster for KubeCluster {
    fn watch(&self, kind: Kind) -> BoxStream<'static, WatchEvent<Observed>> {
        let c = self.client.clone();
        match kind {
            Kind::AdminNetworkPolicy => watch_optional::<AdminNetworkPolicy>(c),
            Kind::BaselineAdminNetworkPolicy => watch_optional::<BaselineAdminNetworkPolicy>(c),
            // Decoded slim, straight into what the model keeps.
            Kind::Node => watch_kind::<NodeWire>(c),
            Kind::Namespace => watch_kind::<NamespaceWire>(c),
            Kind::Pod => watch_kind::<PodWire>(c),
            Kind::Service => watch_kind::<Service>(c),
            Kind::EndpointSlice => watch_kind::<EndpointSlice>(c),
            Kind::NetworkPolicy => watch_kind::<NetworkPolicy>(c),
        }
    }

    fn patch_annotations(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        annotations: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        let patch = annotation_patch(
            target.uid.as_deref(),
            resource_version.as_deref(),
            &annotations,
        );
        let (c, pp, name) = (&self.client, self.patch_params(), target.name.clone());
        match target.kind {
            Kind::Node => patch_with::<Node>(Api::all(c.clone()), pp, name, patch),
            Kind::Namespace => patch_with::<Namespace>(Api::all(c.clone()), pp, name, patch),
            Kind::Pod => patch_with::<Pod>(namespaced(c, &target), pp, name, patch),
            Kind::Service => patch_with::<Service>(namespaced(c, &target), pp, name, patch),
            Kind::EndpointSlice => {
                patch_with::<EndpointSlice>(namespaced(c, &target), pp, name, patch)
            }
            Kind::NetworkPolicy => {
                patch_with::<NetworkPolicy>(namespaced(c, &target), pp, name, patch)
            }
            Kind::AdminNetworkPolicy => {
                patch_with::<AdminNetworkPolicy>(Api::all(c.clone()), pp, name, patch)
            }
            Kind::BaselineAdminNetworkPolicy => {
                patch_with::<BaselineAdminNetworkPolicy>(Api::all(c.clone()), pp, name, patch)
            }
        }
    }

    fn patch_status(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        status: serde_json::Value,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        let patch = status_patch(target.uid.as_deref(), resource_version.as_deref(), &status);
        let (c, pp, name) = (&self.client, self.patch_params(), target.name.clone());
        match target.kind {
            Kind::Service => patch_status_with::<Service>(namespaced(c, &target), pp, name, patch),
            Kind::Pod => patch_status_with::<Pod>(namespaced(c, &target), pp, name, patch),
            Kind::Node => patch_status_with::<Node>(Api::all(c.clone()), pp, name, patch),
            Kind::AdminNetworkPolicy => {
                patch_status_with::<AdminNetworkPolicy>(Api::all(c.clone()), pp, name, patch)
            }
            Kind::BaselineAdminNetworkPolicy => patch_status_with::<BaselineAdminNetworkPolicy>(
                Api::all(c.clone()),
                pp,
                name,
                patch,
            ),
            other => {
                let what = format!("{other} has no status the controller writes");
                async move { Err(KubeError::Forbidden(what)) }.boxed()
            }
        }
    }

    fn emit_event(&self, e: EventRecord) -> BoxFuture<'static, Result<(), KubeError>> {
        let recorder = self.recorder.clone();
        let reference = ObjectReference {
            api_version: Some(e.regarding.kind.api_version().into()),
            kind: Some(e.regarding.kind.name().into()),
            namespace: e.regarding.namespace.clone(),
            name: Some(e.regarding.name.clone()),
            uid: e.regarding.uid.clone(),
            ..Default::default()
        };
        let event = KubeEvent {
            type_: if e.type_ == "Warning" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.clone(),
            note: Some(e.bounded_note()),
            action: e.action.clone(),
            secondary: None,
        };
        async move { recorder.publish(&event, &reference).await.map_err(map_err) }.boxed()
    }

    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &namespace);
        async move { api.get_opt(&name).await.map_err(map_err) }.boxed()
    }

    fn create_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let ns = lease.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &ns);
        async move {
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(map_err)
        }
        .boxed()
    }

    fn replace_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>> {
        let ns = lease.metadata.namespace.clone().unwrap_or_default();
        let name = lease.metadata.name.clone().unwrap_or_default();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &ns);
        async move {
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(map_err)
        }
        .boxed()
    }
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
