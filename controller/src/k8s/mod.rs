//! The Kubernetes boundary: the few things the controller asks of the API
//! server, as one small trait.
//!
//! Keeping the boundary this narrow lets tests (and the e2e sandbox) drive
//! the real controller through the in-memory API server of the
//! `kube-memory` crate, while production uses [`kube::KubeCluster`].
//! Methods take owned arguments and return `'static` futures so callers can
//! spawn them freely.
//!
//! Every write is guarded: an annotation patch carries the object's UID and
//! the resourceVersion its content was decided on, so a decision made on a
//! stale view (an old leader's, a pod that changed meanwhile) is refused by
//! the server instead of overwriting a newer one.
//!
//! RBAC the production implementation needs (the manifests grant exactly
//! this; the node agent's needs are listed in its crate):
//! - `""` nodes: list, watch, patch
//! - `""` pods: list, watch, patch
//! - `""` namespaces, services: list, watch
//! - `""` services/status: patch (LoadBalancer IPs from the pool)
//! - `discovery.k8s.io` endpointslices: list, watch
//! - `networking.k8s.io` networkpolicies: list, watch
//! - `policy.networking.k8s.io` adminnetworkpolicies,
//!   baselineadminnetworkpolicies: list, watch; their `/status`: patch
//!   (the `Ready` condition)
//! - `events.k8s.io` events: create, patch
//! - `coordination.k8s.io` leases (in the controller's namespace): get, create, update

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use crate::model::objects::{NamespaceInfo, NodeInfo, PodInfo};

pub mod kube;
pub mod policy_api;
pub mod status;
pub mod wire;

pub use policy_api::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};

/// The kinds the controller watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    NetworkPolicy,
    /// A custom resource: may not be served.
    AdminNetworkPolicy,
    /// A custom resource: may not be served.
    BaselineAdminNetworkPolicy,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Node,
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
    ];

    /// The `kind` field of the objects.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::AdminNetworkPolicy => "AdminNetworkPolicy",
            Kind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// The `apiVersion` of the objects.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Node | Kind::Namespace | Kind::Pod | Kind::Service => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::AdminNetworkPolicy | Kind::BaselineAdminNetworkPolicy => {
                "policy.networking.k8s.io/v1alpha1"
            }
        }
    }

    /// The API group (`""` for the core group), as RBAC names it.
    pub fn group(self) -> &'static str {
        match self.api_version().rsplit_once('/') {
            Some((g, _)) => g,
            None => "",
        }
    }

    /// The plural resource name, as URLs and RBAC name it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::AdminNetworkPolicy => "adminnetworkpolicies",
            Kind::BaselineAdminNetworkPolicy => "baselineadminnetworkpolicies",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Node
                | Kind::Namespace
                | Kind::AdminNetworkPolicy
                | Kind::BaselineAdminNetworkPolicy
        )
    }

    /// Whether the kind comes from a CRD that a cluster may not have.
    pub fn optional(self) -> bool {
        matches!(
            self,
            Kind::AdminNetworkPolicy | Kind::BaselineAdminNetworkPolicy
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One object as the API stores it, whatever its kind (what fixtures and
/// the in-memory API server hold; the controller keeps [`Observed`]).
#[derive(Clone, Debug)]
pub enum Object {
    Node(Box<Node>),
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    NetworkPolicy(Box<NetworkPolicy>),
    AdminNetworkPolicy(Box<AdminNetworkPolicy>),
    BaselineAdminNetworkPolicy(Box<BaselineAdminNetworkPolicy>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::AdminNetworkPolicy(_) => Kind::AdminNetworkPolicy,
            Object::BaselineAdminNetworkPolicy(_) => Kind::BaselineAdminNetworkPolicy,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Node(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::AdminNetworkPolicy(o) => &o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Node(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::AdminNetworkPolicy(o) => &mut o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &mut o.metadata,
        }
    }

    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub fn key(&self) -> String {
        let m = self.meta();
        let name = m.name.as_deref().unwrap_or_default();
        match (&m.namespace, self.kind().namespaced()) {
            (Some(ns), true) => format!("{ns}/{name}"),
            _ => name.to_string(),
        }
    }
}

macro_rules! object_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Object {
            fn from(o: $t) -> Object {
                Object::$t(Box::new(o))
            }
        }
    )*};
}
object_from!(
    Node,
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    NetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy
);

/// What the controller keeps of one watched object: Nodes, Namespaces and
/// Pods reduced to the fields the model reads (decoded that way straight
/// off the wire, see [`wire`]); the kinds that are few and read almost
/// whole as their API types.
#[derive(Clone, Debug)]
pub enum Observed {
    Node(Box<NodeInfo>),
    Namespace(Box<NamespaceInfo>),
    Pod(Box<PodInfo>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    NetworkPolicy(Box<NetworkPolicy>),
    AdminNetworkPolicy(Box<AdminNetworkPolicy>),
    BaselineAdminNetworkPolicy(Box<BaselineAdminNetworkPolicy>),
}

impl Observed {
    pub fn kind(&self) -> Kind {
        match self {
            Observed::Node(_) => Kind::Node,
            Observed::Namespace(_) => Kind::Namespace,
            Observed::Pod(_) => Kind::Pod,
            Observed::Service(_) => Kind::Service,
            Observed::EndpointSlice(_) => Kind::EndpointSlice,
            Observed::NetworkPolicy(_) => Kind::NetworkPolicy,
            Observed::AdminNetworkPolicy(_) => Kind::AdminNetworkPolicy,
            Observed::BaselineAdminNetworkPolicy(_) => Kind::BaselineAdminNetworkPolicy,
        }
    }

    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub fn key(&self) -> String {
        fn ns_name(m: &ObjectMeta) -> String {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("default"),
                m.name.as_deref().unwrap_or_default()
            )
        }
        fn name(m: &ObjectMeta) -> String {
            m.name.clone().unwrap_or_default()
        }
        match self {
            Observed::Node(n) => n.name.clone(),
            Observed::Namespace(n) => n.name.clone(),
            Observed::Pod(p) => p.key(),
            Observed::Service(o) => ns_name(&o.metadata),
            Observed::EndpointSlice(o) => ns_name(&o.metadata),
            Observed::NetworkPolicy(o) => ns_name(&o.metadata),
            Observed::AdminNetworkPolicy(o) => name(&o.metadata),
            Observed::BaselineAdminNetworkPolicy(o) => name(&o.metadata),
        }
    }

    /// Decodes one object of `kind` as the API server sends it.
    pub fn decode(kind: Kind, json: &[u8]) -> serde_json::Result<Observed> {
        use wire::{NamespaceWire, NodeWire, PodWire};
        Ok(match kind {
            Kind::Node => Observed::Node(Box::new(wire::decode::<NodeWire>(json)?.into_info())),
            Kind::Namespace => {
                Observed::Namespace(Box::new(wire::decode::<NamespaceWire>(json)?.into_info()))
            }
            Kind::Pod => Observed::Pod(Box::new(wire::decode::<PodWire>(json)?.into_info())),
            Kind::Service => Observed::Service(serde_json::from_slice(json)?),
            Kind::EndpointSlice => Observed::EndpointSlice(serde_json::from_slice(json)?),
            Kind::NetworkPolicy => Observed::NetworkPolicy(serde_json::from_slice(json)?),
            Kind::AdminNetworkPolicy => Observed::AdminNetworkPolicy(serde_json::from_slice(json)?),
            Kind::BaselineAdminNetworkPolicy => {
                Observed::BaselineAdminNetworkPolicy(serde_json::from_slice(json)?)
            }
        })
    }
}

impl From<Object> for Observed {
    /// The reduction without a trip through JSON.
    fn from(o: Object) -> Observed {
        match o {
            Object::Node(n) => Observed::Node(Box::new(NodeInfo::from_node(&n))),
            Object::Namespace(n) => {
                Observed::Namespace(Box::new(NamespaceInfo::from_namespace(&n)))
            }
            Object::Pod(p) => Observed::Pod(Box::new(PodInfo::from_pod(&p))),
            Object::Service(o) => Observed::Service(o),
            Object::EndpointSlice(o) => Observed::EndpointSlice(o),
            Object::NetworkPolicy(o) => Observed::NetworkPolicy(o),
            Object::AdminNetworkPolicy(o) => Observed::AdminNetworkPolicy(o),
            Object::BaselineAdminNetworkPolicy(o) => Observed::BaselineAdminNetworkPolicy(o),
        }
    }
}

/// What a watch reports; `Restarted` carries the complete current list (at
/// start and after every relist), so the consumer replaces what it knew.
#[derive(Clone, Debug)]
pub enum WatchEvent<K> {
    Restarted(Vec<K>),
    Applied(K),
    Deleted(K),
    /// The API server does not serve this kind (an optional CRD is not
    /// installed); the stream ends after it.
    Unavailable(String),
}

/// The object a write or an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str, uid: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.into(),
            uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
        }
    }
    pub fn pod(namespace: &str, name: &str, uid: &str) -> Self {
        ObjectRef::new(Kind::Pod, Some(namespace), name, uid)
    }
    pub fn node(name: &str, uid: &str) -> Self {
        ObjectRef::new(Kind::Node, None, name, uid)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
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

/// The most bytes of an Event's `note` the API server accepts.
pub const EVENT_NOTE_LIMIT: usize = 1024;

impl EventRecord {
    /// The note cut to what the API server accepts, on a character
    /// boundary, marked as cut.
    pub fn bounded_note(&self) -> String {
        truncate(&self.note, EVENT_NOTE_LIMIT)
    }

    /// The `events.k8s.io/v1` object kube-rs's recorder creates for this
    /// record on its first occurrence: named `<object>.<hex nanoseconds>`
    /// beside the object (`default` for cluster-scoped ones). The
    /// in-memory API server builds and validates exactly this.
    pub fn to_event(&self, controller: &str, instance: &str, now: Timestamp) -> Event {
        let ns = self
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.regarding.name, now.as_nanosecond())),
                namespace: Some(ns),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(controller.into()),
            reporting_instance: Some(instance.into()),
            action: Some(self.action.clone()),
            reason: Some(self.reason.clone()),
            note: Some(self.bounded_note()),
            type_: Some(self.type_.clone()),
            regarding: Some(ObjectReference {
                api_version: Some(self.regarding.kind.api_version().into()),
                kind: Some(self.regarding.kind.name().into()),
                namespace: self.regarding.namespace.clone(),
                name: Some(self.regarding.name.clone()),
                uid: self.regarding.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn truncate(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    const MARK: &str = " ...";
    let mut end = limit - MARK.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

/// Why a Kubernetes request failed, by the status the server answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: a resourceVersion precondition failed or the object exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 422 (or 400): the request is invalid; the same request will never
    /// succeed. `field` is the first field the server named.
    #[error("invalid: {message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// 410: a watch's resourceVersion is too old.
    #[error("gone: {0}")]
    Gone(String),
    /// 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Anything else: 5xx, 429, transport failures. Worth retrying.
    #[error("API error: {0}")]
    Api(String),
}

impl KubeError {
    pub fn invalid(message: impl Into<String>, field: Option<&str>) -> Self {
        KubeError::Invalid {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    /// The HTTP status code the API server answers for this error.
    pub fn code(&self) -> u16 {
        match self {
            KubeError::NotFound(_) => 404,
            KubeError::Conflict(_) => 409,
            KubeError::Invalid { .. } => 422,
            KubeError::Gone(_) => 410,
            KubeError::Forbidden(_) => 403,
            KubeError::Api(_) => 500,
        }
    }

    /// Whether the object the request named was replaced by another with
    /// the same name: the server refuses to change an immutable UID.
    pub fn object_replaced(&self) -> bool {
        matches!(self, KubeError::Invalid { field: Some(f), .. } if f == "metadata.uid")
    }

    /// Whether sending the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, KubeError::Api(_))
    }
}

/// A write the server accepted: the object's new resourceVersion.
pub type Written = Option<String>;

/// The controller's view of the Kubernetes API.
pub trait Cluster: Send + Sync + 'static {
    /// Objects of `kind` (all namespaces): a `Restarted` first, then
    /// changes; the stream may end (the caller watches again).
    fn watch(&self, kind: Kind) -> BoxStream<'static, WatchEvent<Observed>>;
    /// Merges `annotations` into the object's (`None` removes a key) in one
    /// request, only if it still has `target.uid` and, when given, is still
    /// at `resource_version`. A replaced object is refused (see
    /// [`KubeError::object_replaced`]), a changed one answers
    /// [`KubeError::Conflict`].
    fn patch_annotations(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        annotations: BTreeMap<String, Option<String>>,
    ) -> BoxFuture<'static, Result<Written, KubeError>>;
    /// Merges `status` into the object's status through its `/status`
    /// subresource (nothing else of the object changes), guarded as
    /// [`Cluster::patch_annotations`] is: only if it still has
    /// `target.uid` and, when given, is still at `resource_version`.
    /// `status` is a JSON merge patch of the status (`null` removes).
    fn patch_status(
        &self,
        target: ObjectRef,
        resource_version: Option<String>,
        status: serde_json::Value,
    ) -> BoxFuture<'static, Result<Written, KubeError>> {
        let _ = (resource_version, status);
        let what = target.to_string();
        Box::pin(async move {
            Err(KubeError::Forbidden(format!(
                "this client does not patch status ({what})"
            )))
        })
    }
    /// Creates the Event (or counts a repeat of it, as kube's recorders
    /// do); Ok only when the server accepted it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(EVENT_NOTE_LIMIT);
        let cut = truncate(&long, EVENT_NOTE_LIMIT);
        assert!(cut.len() <= EVENT_NOTE_LIMIT);
        assert!(cut.ends_with(" ..."));
        assert_eq!(truncate("short", EVENT_NOTE_LIMIT), "short");
    }

    #[test]
    fn kinds_name_their_resources() {
        assert_eq!(Kind::EndpointSlice.group(), "discovery.k8s.io");
        assert_eq!(Kind::Pod.group(), "");
        assert!(!Kind::Node.namespaced());
        assert!(Kind::NetworkPolicy.namespaced());
        let replaced = KubeError::invalid("metadata.uid: field is immutable", Some("metadata.uid"));
        assert!(replaced.object_replaced());
        assert!(!KubeError::Conflict("x".into()).object_replaced());
    }
}
