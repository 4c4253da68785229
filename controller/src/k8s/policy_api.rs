//! `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy, from the Kubernetes network-policy-api
//! project.
//!
//! k8s-openapi carries only built-in kinds, and kube's derive macro would
//! bring a proc-macro dependency for two types, so they are written here
//! from the API's documented fields and given the traits kube needs.
//! Unknown fields are ignored, so a newer CRD version still decodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "policy.networking.k8s.io";
pub const VERSION: &str = "v1alpha1";

/// Pods by namespace and pod selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// Whom a policy applies to: namespaces, or pods in namespaces (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// A port by number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumber {
    pub protocol: String,
    pub port: i32,
}

/// A range of ports, both ends included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    #[serde(default = "tcp")]
    pub protocol: String,
    pub start: i32,
    pub end: i32,
}

fn tcp() -> String {
    "TCP".into()
}

/// One port clause (exactly one field set).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<PortNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// An ingress peer: namespaces or pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// An egress peer: namespaces, pods, nodes or networks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
}

/// An ingress rule; `action` is `Allow`, `Deny` or (ANP only) `Pass`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub from: Vec<IngressPeer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// An egress rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub to: Vec<EgressPeer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// Status both kinds report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicySpec {
    /// 0 to 1000; lower is evaluated first.
    pub priority: i32,
    #[serde(default)]
    pub subject: Subject,
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AdminNetworkPolicySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PolicyStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicySpec {
    #[serde(default)]
    pub subject: Subject,
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

/// The singleton named `default`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BaselineAdminNetworkPolicySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PolicyStatus>,
}

macro_rules! resource {
    ($t:ident, $kind:literal, $plural:literal, $list:literal) => {
        impl k8s_openapi::Resource for $t {
            const API_VERSION: &'static str = "policy.networking.k8s.io/v1alpha1";
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::ClusterResourceScope;
        }
        impl k8s_openapi::ListableResource for $t {
            const LIST_KIND: &'static str = $list;
        }
        impl k8s_openapi::Metadata for $t {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(
    AdminNetworkPolicy,
    "AdminNetworkPolicy",
    "adminnetworkpolicies",
    "AdminNetworkPolicyList"
);
resource!(
    BaselineAdminNetworkPolicy,
    "BaselineAdminNetworkPolicy",
    "baselineadminnetworkpolicies",
    "BaselineAdminNetworkPolicyList"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_shape() {
        let anp: AdminNetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy",
            "metadata": {"name": "deny-monitoring"},
            "spec": {
                "priority": 10,
                "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}},
                "ingress": [{"name": "r0", "action": "Pass", "from": [{"namespaces": {}}],
                             "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}, {"namedPort": "http"},
                                       {"portRange": {"protocol": "UDP", "start": 1000, "end": 2000}}]}],
                "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}, {"nodes": {}}]}],
                "someFutureField": true
            }
        }))
        .unwrap();
        assert_eq!(anp.spec.priority, 10);
        assert_eq!(anp.spec.ingress[0].ports.as_ref().unwrap().len(), 3);
        assert_eq!(
            anp.spec.egress[0].to[0].networks.as_ref().unwrap()[0],
            "10.0.0.0/8"
        );
        assert!(anp.spec.subject.pods.is_some());
    }
}
