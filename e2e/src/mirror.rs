//! Mirrors the in-memory cluster into each node agent's `--pod-source dir:`:
//! `<namespace>_<name>.json` per pod scheduled to the node and `node.json`,
//! the objects as the API server would return them (annotations included),
//! rewritten (atomically) whenever they change.
//!
//! The node agent's `KubeSource` watches pods with
//! `fieldSelector=spec.nodeName=<node>`; this is the same view.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use switchyard_controller::k8s::memory::MemoryCluster;
use switchyard_controller::k8s::{Cluster, WatchEvent};

use crate::util::write_atomic;

/// Node name -> its pod-source directory.
pub type Dirs = Arc<HashMap<String, PathBuf>>;

fn pod_file(pod: &Pod) -> Option<(String, String)> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone()?;
    Some((node, format!("{ns}_{name}.json")))
}

/// Pod files are `<namespace>_<name>.json`; names and namespaces are DNS
/// labels, so only pod files hold an underscore (not `node.json`).
fn is_pod_file(name: &str) -> bool {
    name.ends_with(".json") && name.contains('_')
}

fn write_pod(dirs: &Dirs, pod: &Pod) {
    if let Some((node, file)) = pod_file(pod) {
        if let Some(dir) = dirs.get(&node) {
            if let Ok(bytes) = serde_json::to_vec(pod) {
                let _ = write_atomic(&dir.join(file), &bytes);
            }
        }
    }
}

fn remove_pod(dirs: &Dirs, pod: &Pod) {
    if let Some((node, file)) = pod_file(pod) {
        if let Some(dir) = dirs.get(&node) {
            let path = dir.join(file);
            // Only when the file is still this pod (not a successor with
            // the same name).
            let same = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pod>(&b).ok())
                .is_none_or(|p| p.metadata.uid == pod.metadata.uid);
            if same {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn write_node(dirs: &Dirs, node: &Node) {
    let Some(name) = node.metadata.name.as_deref() else {
        return;
    };
    if let Some(dir) = dirs.get(name) {
        if let Ok(bytes) = serde_json::to_vec(node) {
            let _ = write_atomic(&dir.join("node.json"), &bytes);
        }
    }
}

/// Mirrors pods until the runtime stops.
pub async fn pods(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    loop {
        let mut stream = cluster.watch_pods();
        while let Some(ev) = stream.next().await {
            match ev {
                WatchEvent::Restarted(list) => {
                    // Write the listed pods first, then remove the files of
                    // pods not listed: a pod that exists never vanishes from
                    // the directory, even for a moment (a node agent whose
                    // ADD saw its pod and then sees it gone stops waiting).
                    let mut keep = std::collections::HashSet::new();
                    for pod in &list {
                        write_pod(&dirs, pod);
                        if let Some((node, file)) = pod_file(pod) {
                            keep.insert((node, file));
                        }
                    }
                    for (node, dir) in dirs.iter() {
                        if let Ok(entries) = std::fs::read_dir(dir) {
                            for e in entries.flatten() {
                                let n = e.file_name().to_string_lossy().into_owned();
                                if is_pod_file(&n) && !keep.contains(&(node.clone(), n)) {
                                    let _ = std::fs::remove_file(e.path());
                                }
                            }
                        }
                    }
                }
                WatchEvent::Applied(pod) => write_pod(&dirs, &pod),
                WatchEvent::Deleted(pod) => remove_pod(&dirs, &pod),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mirrors nodes until the runtime stops.
pub async fn nodes(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    loop {
        let mut stream = cluster.watch_nodes();
        while let Some(ev) = stream.next().await {
            match ev {
                WatchEvent::Restarted(list) => list.iter().for_each(|n| write_node(&dirs, n)),
                WatchEvent::Applied(n) => write_node(&dirs, &n),
                WatchEvent::Deleted(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
