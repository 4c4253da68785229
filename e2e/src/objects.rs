//! The sandbox's API objects other than the pods' lifecycle: Kubernetes
//! YAML into the in-memory API server (which the controller watches, as it
//! watches kube-apiserver), and back out as `kubectl get` and
//! `kubectl label` show and change them.
//!
//! Pods keep their own path ([`crate::Sandbox::create_pod`]): the sandbox
//! schedules them and its kubelet runs them. Every other kind goes to the
//! in-memory API as it is, so a Service gets its ClusterIP, NodePort and
//! EndpointSlices from the API's own allocators and EndpointSlice
//! controller, and a refused object comes back with the API's message.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use switchyard_controller::k8s::{Kind, Object};

use crate::Sandbox;

/// The kind a `kubectl` argument names (`svc`, `services`, `Service`...).
pub fn kind_of(arg: &str) -> Result<Kind> {
    Ok(match arg.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => Kind::Pod,
        "node" | "nodes" | "no" => Kind::Node,
        "namespace" | "namespaces" | "ns" => Kind::Namespace,
        "service" | "services" | "svc" => Kind::Service,
        "endpointslice" | "endpointslices" => Kind::EndpointSlice,
        "networkpolicy" | "networkpolicies" | "netpol" => Kind::NetworkPolicy,
        "adminnetworkpolicy" | "adminnetworkpolicies" | "anp" => Kind::AdminNetworkPolicy,
        "baselineadminnetworkpolicy" | "baselineadminnetworkpolicies" | "banp" => {
            Kind::BaselineAdminNetworkPolicy
        }
        other => bail!(
            "the sandbox has no resource type {other:?} (pods, nodes, namespaces, services, \
             endpointslices, networkpolicies, adminnetworkpolicies, baselineadminnetworkpolicies)"
        ),
    })
}

/// A JSON object of `kind` as the typed object the API stores.
pub fn decode(kind: Kind, obj: Value) -> Result<Object> {
    fn typed<T: serde::de::DeserializeOwned + Into<Object>>(v: Value) -> Result<Object> {
        Ok(serde_json::from_value::<T>(v)?.into())
    }
    use k8s_openapi::api::{core::v1 as core, discovery::v1 as discovery};
    use switchyard_controller::k8s as admin;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match kind {
        Kind::Pod => typed::<core::Pod>(obj),
        Kind::Node => typed::<core::Node>(obj),
        Kind::Namespace => typed::<core::Namespace>(obj),
        Kind::Service => typed::<core::Service>(obj),
        Kind::EndpointSlice => typed::<discovery::EndpointSlice>(obj),
        Kind::NetworkPolicy => typed::<k8s_openapi::api::networking::v1::NetworkPolicy>(obj),
        Kind::AdminNetworkPolicy => typed::<admin::AdminNetworkPolicy>(obj),
        Kind::BaselineAdminNetworkPolicy => typed::<admin::BaselineAdminNetworkPolicy>(obj),
    }
    .with_context(|| format!("{}/{name}: not a valid {}", kind.resource(), kind.name()))
}

/// The object as `kubectl get -o json` prints it: `apiVersion` and `kind`
/// first-class members, status included.
pub fn encode(obj: &Object) -> Value {
    let v = match obj {
        Object::Node(o) => serde_json::to_value(o),
        Object::Namespace(o) => serde_json::to_value(o),
        Object::Pod(o) => serde_json::to_value(o),
        Object::Service(o) => serde_json::to_value(o),
        Object::EndpointSlice(o) => serde_json::to_value(o),
        Object::NetworkPolicy(o) => serde_json::to_value(o),
        Object::AdminNetworkPolicy(o) => serde_json::to_value(o),
        Object::BaselineAdminNetworkPolicy(o) => serde_json::to_value(o),
    };
    let mut v = v.unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        let kind = obj.kind();
        m.insert("apiVersion".into(), kind.api_version().into());
        m.insert("kind".into(), kind.name().into());
    }
    v
}

/// `kubectl label` arguments (`k=v` sets, `k-` removes) split in two.
pub fn parse_label_args(args: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            set.insert(k.to_string(), v.to_string());
        } else if let Some(k) = a.strip_suffix('-') {
            remove.push(k.to_string());
        } else {
            bail!("label {a:?}: write KEY=VALUE to set, KEY- to remove");
        }
    }
    if set.is_empty() && remove.is_empty() {
        bail!("label: nothing to change (KEY=VALUE or KEY-)");
    }
    Ok((set, remove))
}

impl Sandbox {
    /// Creates or updates one non-pod object in the API server; the
    /// kubectl line for it.
    pub(crate) fn apply_api_object(&self, kind: Kind, obj: Value) -> Result<String> {
        let typed = decode(kind, obj)?;
        let meta = typed.meta();
        let name = meta.name.clone().unwrap_or_default();
        let ns = kind
            .namespaced()
            .then(|| meta.namespace.clone().unwrap_or_else(|| "default".into()));
        let existed = self.cluster().get(kind, ns.as_deref(), &name).is_some();
        let mut typed = typed;
        if let Some(ns) = &ns {
            typed.meta_mut().namespace = Some(ns.clone());
        }
        self.cluster()
            .try_apply(typed)
            .map_err(|e| anyhow!("{}/{name}: {e}", kind.resource()))?;
        Ok(format!(
            "{}/{name} {}",
            kind.name().to_lowercase(),
            if existed { "configured" } else { "created" }
        ))
    }

    /// `kubectl get KIND [-n NS | -A] -o json`: whole objects, sorted by
    /// namespace and name; `namespace` `None` is every namespace.
    pub fn get_objects(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        let mut objs: Vec<Object> = self
            .cluster()
            .list(kind)
            .into_iter()
            .filter(|o| {
                !kind.namespaced()
                    || namespace.is_none()
                    || o.meta().namespace.as_deref() == namespace
            })
            .collect();
        objs.sort_by(|a, b| {
            (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name))
        });
        objs.iter().map(encode).collect()
    }

    /// Deletes Node `name` from the API as `kubectl delete node` does, then
    /// lets the pod garbage collector of kube-controller-manager delete the
    /// pods bound to it ([`kube_memory::podgc`]); the sandbox's kubelet
    /// then tears them down through the node's agent. The node's processes
    /// (OVS, ovn-controller, agent) keep running: the node is only gone
    /// from the API. Returns the deleted pods' UIDs; `None` when there was
    /// no such Node.
    pub fn delete_node(&self, name: &str) -> Option<Vec<String>> {
        self.cluster().delete_node(name)?;
        Some(
            self.cluster()
                .gc_orphaned_pods()
                .into_iter()
                .filter_map(|p| p.metadata.uid)
                .collect(),
        )
    }

    /// `kubectl label KIND NS/NAME k=v k-`: returns the kubectl line.
    pub fn label(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<String> {
        let ns = kind.namespaced().then_some(namespace);
        self.cluster()
            .try_label(kind, ns, name, set, remove)
            .map_err(|e| anyhow!("{}/{name}: {e}", kind.resource()))?;
        Ok(format!("{}/{name} labeled", kind.name().to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_arguments() {
        let (set, rm) = parse_label_args(&["a=1".into(), "b-".into(), "c=".into()]).expect("valid");
        assert_eq!(set.get("a").map(String::as_str), Some("1"));
        assert_eq!(set.get("c").map(String::as_str), Some(""));
        assert_eq!(rm, vec!["b".to_string()]);
        assert!(parse_label_args(&["bare".into()]).is_err());
        assert!(parse_label_args(&[]).is_err());
    }

    #[test]
    fn kinds_by_kubectl_names() {
        assert_eq!(kind_of("svc").ok(), Some(Kind::Service));
        assert_eq!(kind_of("NetworkPolicies").ok(), Some(Kind::NetworkPolicy));
        assert_eq!(kind_of("anp").ok(), Some(Kind::AdminNetworkPolicy));
        assert!(kind_of("deployments").is_err());
    }

    #[test]
    fn encoded_objects_carry_api_version_and_kind() {
        let svc = decode(
            Kind::Service,
            serde_json::json!({"metadata": {"name": "s", "namespace": "x"},
                               "spec": {"ports": [{"port": 80}]}}),
        )
        .expect("a Service");
        let v = encode(&svc);
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Service");
        assert_eq!(v["spec"]["ports"][0]["port"], 80);
        assert!(decode(Kind::Service, serde_json::json!({"spec": 3})).is_err());
    }
}
