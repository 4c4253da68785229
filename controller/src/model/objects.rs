//! The fields of each Kubernetes object that translators read, and nothing
//! else.
//!
//! A Pod from the API server is 5-20 KiB of JSON (status, container specs,
//! managed fields); the controller needs about 300 bytes of it. Objects are
//! reduced to these structs the moment they arrive, so the model's memory
//! grows with what Switchyard uses, not with what the cluster stores.
//! Kinds that are few and read almost whole (Services, EndpointSlices,
//! policies) are kept as the API types.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};

/// Annotations under this prefix are the only ones kept.
pub const ANNOTATION_PREFIX: &str = "switchyard.io/";

pub type Labels = BTreeMap<String, String>;

fn our_annotations(a: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    a.into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub labels: Labels,
    /// `spec.podCIDRs` as written (validated where used).
    pub pod_cidrs: Vec<String>,
    /// `status.addresses`: (type, address) for InternalIP and ExternalIP.
    pub addresses: Vec<(String, IpAddr)>,
    /// `switchyard.io/` annotations.
    pub annotations: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn from_node(n: &Node) -> NodeInfo {
        let m = &n.metadata;
        NodeInfo {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone(),
            labels: m.labels.clone().unwrap_or_default(),
            pod_cidrs: n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidrs.clone())
                .unwrap_or_default(),
            addresses: n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .filter_map(|a| Some((a.type_.clone(), a.address.parse().ok()?)))
                .collect(),
            annotations: our_annotations(m.annotations.as_ref()),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The node's InternalIP addresses (the ones pods and Services use).
    pub fn internal_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses
            .iter()
            .filter(|(t, _)| t == "InternalIP")
            .map(|(_, ip)| *ip)
    }
}

/// A Namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
}

impl NamespaceInfo {
    pub fn from_namespace(n: &Namespace) -> NamespaceInfo {
        let m = &n.metadata;
        NamespaceInfo {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: our_annotations(m.annotations.as_ref()),
        }
    }
}

/// A named container port: what NetworkPolicy and Services resolve by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: u16,
}

/// Where a pod is in its life, as far as its network goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    /// Succeeded or Failed: its containers are gone for good.
    Finished,
}

/// A Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    /// `spec.nodeName` once scheduled.
    pub node: Option<String>,
    pub host_network: bool,
    pub phase: Phase,
    pub labels: Labels,
    pub ports: Vec<NamedPort>,
    /// `status.podIPs` (a `hostNetwork` pod's are its node's).
    pub pod_ips: Vec<IpAddr>,
    pub annotations: BTreeMap<String, String>,
}

impl PodInfo {
    pub fn from_pod(p: &Pod) -> PodInfo {
        let m = &p.metadata;
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") | Some("Failed") => Phase::Finished,
            Some("Running") => Phase::Running,
            _ => Phase::Pending,
        };
        let mut ports: Vec<NamedPort> = spec
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone().filter(|n| !n.is_empty())?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        ports.sort();
        ports.dedup();
        PodInfo {
            namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone(),
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase,
            labels: m.labels.clone().unwrap_or_default(),
            ports,
            pod_ips: status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.ip.parse().ok())
                .collect(),
            annotations: our_annotations(m.annotations.as_ref()),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Whether the pod needs an address on the pod network: scheduled, not
    /// `hostNetwork`, not finished.
    pub fn on_pod_network(&self) -> bool {
        self.node.is_some() && !self.host_network && self.phase != Phase::Finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};

    #[test]
    fn a_pod_keeps_what_translators_read() {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.annotations = Some(
            [
                ("switchyard.io/pod-network".to_string(), "{}".to_string()),
                ("kubectl.kubernetes.io/restartedAt".to_string(), "x".into()),
            ]
            .into(),
        );
        p.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    },
                    ContainerPort {
                        container_port: 9,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        let i = PodInfo::from_pod(&p);
        assert_eq!(i.key(), "ns/web");
        assert_eq!(i.annotations.len(), 1, "only switchyard.io/ annotations");
        assert_eq!(
            i.ports,
            vec![NamedPort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        assert_eq!(i.phase, Phase::Finished);
        assert!(!i.on_pod_network());
    }
}
