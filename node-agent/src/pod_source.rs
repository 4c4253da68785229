//! Where the daemon learns a pod's network (its `switchyard.io/pod-network`
//! annotation) and the node's pod subnets.
//!
//! Two implementations sit behind [`PodSource`]:
//!
//! - [`KubeSource`] (`--pod-source=kube`, the default): a kube-rs reflector
//!   watching the Pods scheduled to this node (`fieldSelector
//!   spec.nodeName=<node>`), so a CNI ADD reads a local cache rather than
//!   calling the API server; the Node is read with a GET.
//! - [`DirSource`] (`--pod-source=dir:/path`): for tests and the e2e sandbox,
//!   which run without an API server. The directory holds one JSON file per
//!   pod named `<namespace>_<name>.json`, containing the Pod object as the
//!   API server would return it (at least `metadata.uid` and
//!   `metadata.annotations["switchyard.io/pod-network"]`), and `node.json`
//!   containing this node's Node object (`spec.podCIDRs`, or the annotation
//!   `switchyard.io/node-subnets` with a JSON list of CIDRs). Files are read
//!   on every lookup, so a writer may create them at any time; write to a
//!   temporary name and rename to avoid torn reads.
//!
//! Both feed the same pure parsers ([`pod_info`], [`node_subnets`]), so the
//! sandbox exercises the production parsing.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::Value;
use switchyard_api::annotations::{NodeSubnets, NODE_SUBNETS, POD_NETWORK};

use crate::error::{Error, Result};

/// What the daemon needs from a Pod object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: Option<String>,
    /// The raw `switchyard.io/pod-network` annotation, when set.
    pub network: Option<String>,
}

/// The boundary to the Kubernetes API.
pub trait PodSource: Send + Sync {
    /// The pod, or `None` when it does not exist (yet).
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>>>;
    /// This node's pod subnets; empty when the node has none yet.
    fn node_subnets<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Vec<IpNet>>>;
}

/// Extracts [`PodInfo`] from a Pod object in its JSON form.
pub fn pod_info(pod: &Value) -> PodInfo {
    let meta = &pod["metadata"];
    PodInfo {
        uid: meta["uid"].as_str().map(str::to_string),
        network: meta["annotations"][POD_NETWORK]
            .as_str()
            .map(str::to_string),
    }
}

/// Reads a Node object's pod subnets: `spec.podCIDRs` (or the older
/// `spec.podCIDR`) first, then the Switchyard annotation.
pub fn node_subnets(node: &Value) -> Result<Vec<IpNet>> {
    let parse = |s: &str| {
        s.parse::<IpNet>()
            .map_err(|_| Error::Config(format!("node subnet {s:?} is not a CIDR")))
    };
    if let Some(list) = node["spec"]["podCIDRs"]
        .as_array()
        .filter(|l| !l.is_empty())
    {
        return list.iter().filter_map(Value::as_str).map(parse).collect();
    }
    if let Some(one) = node["spec"]["podCIDR"].as_str() {
        return Ok(vec![parse(one)?]);
    }
    if let Some(text) = node["metadata"]["annotations"][NODE_SUBNETS].as_str() {
        return NodeSubnets::parse(text)
            .map(|s| s.0)
            .map_err(|e| Error::Config(e.to_string()));
    }
    Ok(vec![])
}

/// Pods and the node as JSON files in a directory (see the module doc).
pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSource { dir: dir.into() }
    }

    async fn read_json(&self, file: &str) -> Result<Option<Value>> {
        let path = self.dir.join(file);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::PodSource(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}

impl PodSource for DirSource {
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>>> {
        Box::pin(async move {
            Ok(self
                .read_json(&format!("{namespace}_{name}.json"))
                .await?
                .map(|v| pod_info(&v)))
        })
    }

    fn node_subnets<'a>(&'a self, _node: &'a str) -> BoxFuture<'a, Result<Vec<IpNet>>> {
        Box::pin(async move {
            match self.read_json("node.json").await? {
                Some(v) => node_subnets(&v),
                None => Ok(vec![]),
            }
        })
    }
}

/// Pods on this node from a kube-rs reflector; the Node by GET.
pub struct KubeSource {
    pods: Store<Pod>,
    nodes: Api<Node>,
}

impl KubeSource {
    /// Starts the pod reflector on the current tokio runtime. Lookups before
    /// the first list completes see no pods, which ADD treats like a missing
    /// annotation: it keeps waiting until its deadline.
    pub fn start(client: kube::Client, node: &str) -> Arc<Self> {
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let stream = reflector::reflector(writer, watcher(Api::<Pod>::all(client.clone()), config))
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "pod watch error; retrying");
                }
            }
        });
        Arc::new(KubeSource {
            pods: reader,
            nodes: Api::all(client),
        })
    }
}

impl PodSource for KubeSource {
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>>> {
        Box::pin(async move {
            let key = ObjectRef::<Pod>::new(name).within(namespace);
            Ok(self.pods.get(&key).map(|pod| {
                let meta = &pod.metadata;
                PodInfo {
                    uid: meta.uid.clone(),
                    network: meta
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(POD_NETWORK).cloned()),
                }
            }))
        })
    }

    fn node_subnets<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Vec<IpNet>>> {
        Box::pin(async move {
            let node = self
                .nodes
                .get_opt(node)
                .await
                .map_err(|e| Error::PodSource(format!("reading node {node}: {e}")))?;
            match node {
                Some(n) => node_subnets(
                    &serde_json::to_value(&n).map_err(|e| Error::PodSource(e.to_string()))?,
                ),
                None => Ok(vec![]),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pods() {
        let pod = json!({"metadata": {"uid": "u1", "annotations": {POD_NETWORK: "{}"}}});
        assert_eq!(
            pod_info(&pod),
            PodInfo {
                uid: Some("u1".into()),
                network: Some("{}".into())
            }
        );
        assert_eq!(pod_info(&json!({})), PodInfo::default());
    }

    #[test]
    fn reads_node_subnets() {
        let n = json!({"spec": {"podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}});
        assert_eq!(node_subnets(&n).unwrap().len(), 2);
        let n = json!({"metadata": {"annotations": {NODE_SUBNETS: "[\"10.244.2.0/24\"]"}}});
        assert_eq!(
            node_subnets(&n).unwrap(),
            vec!["10.244.2.0/24".parse::<IpNet>().unwrap()]
        );
        assert!(node_subnets(&json!({"spec": {"podCIDRs": ["nope"]}})).is_err());
        assert!(node_subnets(&json!({})).unwrap().is_empty());
    }

    #[tokio::test]
    async fn dir_source_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = DirSource::new(dir.path());
        assert_eq!(src.pod("ns", "p").await.unwrap(), None);
        std::fs::write(dir.path().join("ns_p.json"), r#"{"metadata":{"uid":"x"}}"#).unwrap();
        assert_eq!(
            src.pod("ns", "p").await.unwrap().unwrap().uid.as_deref(),
            Some("x")
        );
        std::fs::write(dir.path().join("ns_bad.json"), "{").unwrap();
        assert!(src.pod("ns", "bad").await.is_err());
        std::fs::write(
            dir.path().join("node.json"),
            r#"{"spec":{"podCIDRs":["10.1.0.0/24"]}}"#,
        )
        .unwrap();
        assert_eq!(src.node_subnets("n").await.unwrap().len(), 1);
    }
}
