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
//!   temporary name and rename to avoid torn reads. An inotify watch on
//!   the directory tells waiters when to read again. The agent's
//!   [`crate::node_publisher::DirPublisher`] writes `node-annotations.json`
//!   into the same directory (the way back to the Node). Its `services/`
//!   and `endpointslices/` subdirectories are read by
//!   [`crate::service_source::DirServiceSource`].
//!
//! Both report changes through [`PodSource::changes`], so an ADD waiting
//! for its pod's annotation reads again the moment something changed
//! instead of polling.
//!
//! Both feed the same pure parsers ([`pod_info`], [`node_subnets`]), so the
//! sandbox exercises the production parsing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::Value;
use switchyard_api::annotations::{NodeSubnets, NODE_SUBNETS, POD_NETWORK};
use tokio::sync::watch;

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
    /// Marked changed whenever a pod may have changed. Waiters subscribe
    /// before reading, then await a change and read again.
    fn changes(&self) -> watch::Receiver<()>;
    /// How often a waiter reads again without being told of a change: a
    /// safety net when change notification is exact, the poll interval
    /// when there is none.
    fn recheck_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
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
    changes: watch::Receiver<()>,
    /// Whether the inotify watch is in place (else waiters poll).
    watching: bool,
}

/// Re-checks every 50 ms when the directory cannot be watched.
const DIR_POLL: Duration = Duration::from_millis(50);

impl DirSource {
    /// Watches `dir` with inotify from a thread of its own (when the
    /// directory exists and inotify is available; otherwise waiters poll).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = dir.into();
        let (tx, changes) = watch::channel(());
        let watch = Inotify::init(InitFlags::IN_CLOEXEC).and_then(|ino| {
            ino.add_watch(
                &dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MODIFY,
            )
            .map(|_| ino)
        });
        let watching = match watch {
            Ok(ino) => std::thread::Builder::new()
                .name("pod-dir-watch".into())
                .spawn(move || {
                    // Blocks in read(2); ends with the process, or when
                    // every receiver is gone.
                    while let Ok(events) = ino.read_events() {
                        if !events.is_empty() && tx.send(()).is_err() {
                            break;
                        }
                    }
                })
                .is_ok(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the pod directory; polling it");
                false
            }
        };
        DirSource {
            dir,
            changes,
            watching,
        }
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

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.clone()
    }

    fn recheck_interval(&self) -> Duration {
        if self.watching {
            Duration::from_secs(1)
        } else {
            DIR_POLL
        }
    }
}

/// Pods on this node from a kube-rs reflector; the Node by GET.
pub struct KubeSource {
    pods: Store<Pod>,
    nodes: Api<Node>,
    changes: watch::Receiver<()>,
}

impl KubeSource {
    /// Starts the pod reflector on the current tokio runtime. Lookups before
    /// the first list completes see no pods, which ADD treats like a pod
    /// not created yet: it keeps waiting until its deadline. A re-list
    /// swaps the store only once complete, so a pod that exists never
    /// vanishes from it for a moment (an ADD that saw its pod and then sees
    /// it gone stops waiting).
    pub fn start(client: kube::Client, node: &str) -> Arc<Self> {
        let (reader, writer) = reflector::store();
        let (tx, changes) = watch::channel(());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let stream = reflector::reflector(writer, watcher(Api::<Pod>::all(client.clone()), config))
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    // The store is updated before the event is yielded.
                    Ok(_) => {
                        let _ = tx.send(());
                    }
                    Err(e) => tracing::warn!(error = %e, "pod watch error; retrying"),
                }
            }
        });
        Arc::new(KubeSource {
            pods: reader,
            nodes: Api::all(client),
            changes,
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

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.clone()
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

    #[tokio::test]
    async fn dir_source_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = DirSource::new(dir.path());
        assert_eq!(src.recheck_interval(), Duration::from_secs(1));
        let mut rx = src.changes();
        rx.borrow_and_update();
        let tmp = dir.path().join("ns_p.json.tmp");
        std::fs::write(&tmp, r#"{"metadata":{"uid":"x"}}"#).unwrap();
        std::fs::rename(&tmp, dir.path().join("ns_p.json")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a change within 5 s")
            .unwrap();
        assert!(src.pod("ns", "p").await.unwrap().is_some());
        // A directory that does not exist is polled instead.
        let missing = DirSource::new(dir.path().join("missing"));
        assert_eq!(missing.recheck_interval(), DIR_POLL);
    }
}
