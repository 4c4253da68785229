//! The Kubernetes boundary: the few things the controller asks of the API
//! server, as one small trait.
//!
//! Keeping the boundary this narrow lets tests (and the e2e sandbox) drive
//! the real controller through [`memory::MemoryCluster`], while production
//! uses [`kube::KubeCluster`]. Methods take owned arguments and return
//! `'static` futures so callers can spawn them freely.
//!
//! RBAC the production implementation needs (for the manifests):
//! - `""` nodes: get, list, watch, patch
//! - `""` pods: get, list, watch, patch
//! - `events.k8s.io` events: create, patch
//! - `coordination.k8s.io` leases (in the controller's namespace): get, create, update

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};

pub mod kube;
pub mod memory;

/// What a watch reports; `Restarted` carries the complete current list (at
/// start and after every relist), so the consumer replaces what it knew.
#[derive(Clone, Debug)]
pub enum WatchEvent<K> {
    Restarted(Vec<K>),
    Applied(K),
    Deleted(K),
}

/// The object an Event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectRef {
    pub fn pod(namespace: &str, name: &str, uid: &str) -> Self {
        ObjectRef {
            kind: "Pod".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
            uid: Some(uid.into()).filter(|u: &String| !u.is_empty()),
        }
    }
    pub fn node(name: &str, uid: &str) -> Self {
        ObjectRef {
            kind: "Node".into(),
            namespace: None,
            name: name.into(),
            uid: Some(uid.into()).filter(|u: &String| !u.is_empty()),
        }
    }
}

/// A Kubernetes Event the controller reports on an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub regarding: ObjectRef,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// A CamelCase machine-readable reason, e.g. `AddressAllocationFailed`.
    pub reason: String,
    /// What the controller was doing, e.g. `Allocate`.
    pub action: String,
    pub note: String,
}

/// Why a Kubernetes request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    #[error("not found: {0}")]
    NotFound(String),
    /// A precondition (UID, resourceVersion) or create-if-absent failed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The server rejected the request as invalid; retrying will not help.
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("API error: {0}")]
    Api(String),
}

/// The controller's view of the Kubernetes API.
pub trait Cluster: Send + Sync + 'static {
    /// Nodes: a `Restarted` first, then changes; the stream may end (the
    /// caller watches again).
    fn watch_nodes(&self) -> BoxStream<'static, WatchEvent<Node>>;
    /// Pods of all namespaces, same contract as [`Cluster::watch_nodes`].
    fn watch_pods(&self) -> BoxStream<'static, WatchEvent<Pod>>;
    /// Merges `annotations` into the pod's, only if the pod still has `uid`
    /// (so a pod recreated under the same name is never given its
    /// predecessor's addresses): one request.
    fn patch_pod_annotations(
        &self,
        namespace: String,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>>;
    /// Merges `annotations` into the node's, only if it still has `uid`.
    fn patch_node_annotations(
        &self,
        name: String,
        uid: String,
        annotations: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), KubeError>>;
    fn emit_event(&self, event: EventRecord) -> BoxFuture<'static, Result<(), KubeError>>;
    fn get_lease(
        &self,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<Option<Lease>, KubeError>>;
    /// Fails with [`KubeError::Conflict`] if the lease exists.
    fn create_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>>;
    /// Fails with [`KubeError::Conflict`] unless `lease`'s resourceVersion
    /// is the stored one.
    fn replace_lease(&self, lease: Lease) -> BoxFuture<'static, Result<Lease, KubeError>>;
}
