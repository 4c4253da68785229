//! Pods, Nodes and Namespaces decoded straight from the API server's JSON
//! into what the model keeps.
//!
//! A Pod as the API server sends it is 5-20 KiB of JSON: container specs,
//! status conditions, `managedFields`, often a last-applied annotation. The
//! controller reads about 300 bytes of it. Decoding the full k8s-openapi
//! type allocates all of it before the model throws it away; against a real
//! API server with 10,000 pods that was most of the controller's CPU and
//! memory. These types declare only the fields the model reads, so serde
//! skips the rest while parsing (no allocation), and annotations other
//! than Switchyard's are skipped without being stored.
//!
//! kube-rs watches these types directly (they implement `kube::Resource`
//! for the same API paths as the full types), and the in-memory API server
//! decodes its objects through them too when asked to behave like the wire.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::model::objects::{NamespaceInfo, NodeInfo, PodInfo, ANNOTATION_PREFIX};
use crate::model::{NamedPort, Phase};

/// Annotations under [`ANNOTATION_PREFIX`] only; other values are skipped
/// while parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OurAnnotations(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for OurAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OurAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> Result<OurAnnotations, E> {
                Ok(OurAnnotations::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OurAnnotations, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    if k.starts_with(ANNOTATION_PREFIX) {
                        out.insert(k.into_owned(), m.next_value::<String>()?);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(OurAnnotations(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The metadata the model reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    annotations: OurAnnotations,
}

impl Meta {
    /// What `kube::Resource::meta` shows of it.
    fn object_meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            resource_version: self.resource_version.clone(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    #[serde(default)]
    name: Option<String>,
    container_port: i32,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Container {
    #[serde(default, deserialize_with = "null_default")]
    ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    host_network: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    containers: Vec<Container>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct PodIp {
    ip: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default, rename = "podIPs", deserialize_with = "null_default")]
    pod_ips: Vec<PodIp>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct PodRaw {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

/// A Pod as the model reads it off the wire.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "PodRaw")]
pub struct PodWire {
    raw: PodRaw,
    /// What kube-rs reads (name, namespace, uid, resourceVersion).
    meta: ObjectMeta,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSpec {
    #[serde(default, rename = "podCIDRs", deserialize_with = "null_default")]
    pod_cidrs: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAddress {
    #[serde(rename = "type")]
    type_: String,
    address: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NodeStatus {
    #[serde(default, deserialize_with = "null_default")]
    addresses: Vec<NodeAddress>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NodeRaw {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<NodeSpec>,
    #[serde(default)]
    status: Option<NodeStatus>,
}

/// A Node as the model reads it off the wire.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "NodeRaw")]
pub struct NodeWire {
    raw: NodeRaw,
    meta: ObjectMeta,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NamespaceRaw {
    #[serde(default)]
    metadata: Meta,
}

/// A Namespace as the model reads it off the wire.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "NamespaceRaw")]
pub struct NamespaceWire {
    raw: NamespaceRaw,
    meta: ObjectMeta,
}

impl PodWire {
    pub fn into_info(self) -> PodInfo {
        let PodRaw {
            metadata: m,
            spec,
            status,
        } = self.raw;
        let spec = spec.unwrap_or_default();
        let status = status.unwrap_or_default();
        let mut ports: Vec<NamedPort> = spec
            .containers
            .into_iter()
            .flat_map(|c| c.ports)
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.filter(|n| !n.is_empty())?,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        ports.sort();
        ports.dedup();
        PodInfo {
            namespace: m.namespace.unwrap_or_else(|| "default".into()),
            name: m.name.unwrap_or_default(),
            uid: m.uid.unwrap_or_default(),
            resource_version: m.resource_version,
            node: spec.node_name.filter(|n| !n.is_empty()),
            host_network: spec.host_network.unwrap_or(false),
            phase: match status.phase.as_deref() {
                Some("Succeeded") | Some("Failed") => Phase::Finished,
                Some("Running") => Phase::Running,
                _ => Phase::Pending,
            },
            labels: m.labels,
            ports,
            pod_ips: status
                .pod_ips
                .iter()
                .filter_map(|p| p.ip.parse().ok())
                .collect(),
            annotations: m.annotations.0,
        }
    }
}

impl NodeWire {
    pub fn into_info(self) -> NodeInfo {
        let NodeRaw {
            metadata: m,
            spec,
            status,
        } = self.raw;
        NodeInfo {
            name: m.name.unwrap_or_default(),
            uid: m.uid.unwrap_or_default(),
            resource_version: m.resource_version,
            labels: m.labels,
            pod_cidrs: spec.map(|s| s.pod_cidrs).unwrap_or_default(),
            addresses: status
                .map(|s| s.addresses)
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .filter_map(|a| Some((a.type_, a.address.parse().ok()?)))
                .collect(),
            annotations: m.annotations.0,
        }
    }
}

impl NamespaceWire {
    pub fn into_info(self) -> NamespaceInfo {
        let m = self.raw.metadata;
        NamespaceInfo {
            name: m.name.unwrap_or_default(),
            uid: m.uid.unwrap_or_default(),
            labels: m.labels,
            annotations: m.annotations.0,
        }
    }
}

/// Decodes `json` as the API server would have sent it.
pub fn decode<T: serde::de::DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(json)
}

macro_rules! wire_resource {
    ($t:ident, $raw:ident, $kind:literal, $plural:literal, $scope:ty) => {
        impl From<$raw> for $t {
            fn from(raw: $raw) -> $t {
                $t {
                    meta: raw.metadata.object_meta(),
                    raw,
                }
            }
        }

        impl kube::Resource for $t {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("")
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.meta
            }
        }
    };
}

wire_resource!(
    PodWire,
    PodRaw,
    "Pod",
    "pods",
    k8s_openapi::NamespaceResourceScope
);
wire_resource!(
    NodeWire,
    NodeRaw,
    "Node",
    "nodes",
    k8s_openapi::ClusterResourceScope
);
wire_resource!(
    NamespaceWire,
    NamespaceRaw,
    "Namespace",
    "namespaces",
    k8s_openapi::ClusterResourceScope
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pod_decodes_to_what_the_model_reads() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {
                    "switchyard.io/pod-network": "{\"ips\":[]}",
                    "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(10_000)
                },
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}],
                                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                          {"containerPort": 9}]}]
            },
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.0.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let w: PodWire = decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(kube::Resource::meta(&w).uid.as_deref(), Some("u1"));
        let p = w.into_info();
        assert_eq!(p.key(), "ns/web");
        assert_eq!(p.node.as_deref(), Some("n1"));
        assert_eq!(p.phase, Phase::Running);
        assert_eq!(
            p.annotations.len(),
            1,
            "only switchyard.io/ annotations kept"
        );
        assert_eq!(p.ports.len(), 1);
        assert_eq!(p.pod_ips.len(), 1);
        assert_eq!(p.labels["app"], "web");
    }

    #[test]
    fn the_wire_and_the_full_type_agree() {
        // What kube-memory hands its clients by either path is the same.
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        pod.metadata.name = Some("a".into());
        pod.metadata.namespace = Some("b".into());
        pod.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some("n".into()),
            host_network: Some(true),
            ..Default::default()
        });
        let json = serde_json::to_vec(&pod).unwrap();
        let w: PodWire = decode(&json).unwrap();
        assert_eq!(w.into_info(), PodInfo::from_pod(&pod));
        let mut node = k8s_openapi::api::core::v1::Node::default();
        node.metadata.name = Some("n".into());
        node.metadata.annotations =
            Some([("switchyard.io/chassis-id".to_string(), "c".to_string())].into());
        let w: NodeWire = decode(&serde_json::to_vec(&node).unwrap()).unwrap();
        assert_eq!(w.into_info(), NodeInfo::from_node(&node));
    }

    #[test]
    fn nulls_and_missing_fields_are_empty() {
        let w: PodWire = decode(br#"{"metadata":{"name":"x","labels":null,"annotations":null},"spec":{"containers":null},"status":null}"#).unwrap();
        let p = w.into_info();
        assert!(p.labels.is_empty() && p.annotations.is_empty() && p.ports.is_empty());
        assert!(decode::<PodWire>(b"[1,2]").is_err());
    }
}
