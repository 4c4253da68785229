//! Mirrors the in-memory cluster into each node agent's `--pod-source dir:`:
//! `<namespace>_<name>.json` per pod scheduled to the node and `node.json`,
//! the objects as the API server would return them (annotations included),
//! rewritten (atomically) whenever they change.
//!
//! The node agent's `KubeSource` watches pods with
//! `fieldSelector=spec.nodeName=<node>`; this is the same view.
//!
//! Every Service and EndpointSlice goes to every node's `services/` and
//! `endpointslices/` (`<namespace>_<name>.json`, the node agent's
//! `DirServiceSource`; `KubeServiceSource` watches all of them too),
//! written atomically and removed when the object goes.
//!
//! The other way, [`node_annotations`] applies what each agent publishes
//! about its node (`node-annotations.json`, written by its `DirPublisher`)
//! to its Node as the merge patch `KubePublisher` sends would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube_memory::MemoryCluster;
use switchyard_controller::k8s::Cluster;
use switchyard_controller::k8s::{Kind, Object, WatchEvent};

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

/// Mirrors pods, and alongside them Services and EndpointSlices
/// ([`services`]), until the runtime stops.
pub async fn pods(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    futures::join!(
        pod_files(cluster.clone(), dirs.clone()),
        services(cluster, dirs)
    );
}

async fn pod_files(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    loop {
        let mut stream = cluster.watch_pods();
        while let Some(ev) = stream.next().await {
            match ev {
                WatchEvent::Restarted(list) => {
                    // Write the listed pods first, then remove the files of
                    // pods not listed: a pod that exists never vanishes from
                    // the directory, even for a moment (a node agent whose
                    // ADD saw its pod and then sees it gone stops waiting).
                    let mut keep = HashSet::new();
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
                WatchEvent::Unavailable(_) => {}
                WatchEvent::Applied(pod) => write_pod(&dirs, &pod),
                WatchEvent::Deleted(pod) => remove_pod(&dirs, &pod),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node agent's `switchyard_node::service_source::{SERVICES_DIR,
/// ENDPOINT_SLICES_DIR}` (the library is not a dependency of the sandbox;
/// tests/health_check.rs fails if they differ).
pub const SERVICES_DIR: &str = "services";
pub const ENDPOINT_SLICES_DIR: &str = "endpointslices";

/// The file name of a namespaced object: `<namespace>_<name>.json`.
fn object_file(o: &Object) -> Option<String> {
    let m = o.meta();
    Some(format!(
        "{}_{}.json",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref()?
    ))
}

fn object_bytes(o: &Object) -> Option<Vec<u8>> {
    match o {
        Object::Service(s) => serde_json::to_vec(s).ok(),
        Object::EndpointSlice(s) => serde_json::to_vec(s).ok(),
        _ => None,
    }
}

/// Mirrors every object of `kind` into `<dir>/<sub>/` of every node.
async fn mirror_kind(cluster: Arc<MemoryCluster>, dirs: Dirs, kind: Kind, sub: &str) {
    for dir in dirs.values() {
        let _ = std::fs::create_dir_all(dir.join(sub));
    }
    let write = |o: &Object| {
        if let (Some(file), Some(bytes)) = (object_file(o), object_bytes(o)) {
            for dir in dirs.values() {
                let _ = write_atomic(&dir.join(sub).join(&file), &bytes);
            }
        }
    };
    loop {
        let mut stream = cluster.watch_objects(kind);
        while let Some(ev) = stream.next().await {
            match ev {
                WatchEvent::Restarted(list) => {
                    // Written first, then the files of objects not listed
                    // removed (as for pods).
                    let keep: HashSet<String> = list.iter().filter_map(object_file).collect();
                    list.iter().for_each(write);
                    for dir in dirs.values() {
                        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                            for e in entries.flatten() {
                                let n = e.file_name().to_string_lossy().into_owned();
                                if n.ends_with(".json") && !keep.contains(&n) {
                                    let _ = std::fs::remove_file(e.path());
                                }
                            }
                        }
                    }
                }
                WatchEvent::Applied(o) => write(&o),
                WatchEvent::Deleted(o) => {
                    if let Some(file) = object_file(&o) {
                        for dir in dirs.values() {
                            let _ = std::fs::remove_file(dir.join(sub).join(&file));
                        }
                    }
                }
                WatchEvent::Unavailable(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mirrors every Service and EndpointSlice to every node until the
/// runtime stops.
pub async fn services(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    futures::join!(
        mirror_kind(cluster.clone(), dirs.clone(), Kind::Service, SERVICES_DIR),
        mirror_kind(cluster, dirs, Kind::EndpointSlice, ENDPOINT_SLICES_DIR),
    );
}

/// Mirrors nodes until the runtime stops.
pub async fn nodes(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    loop {
        let mut stream = cluster.watch_nodes();
        while let Some(ev) = stream.next().await {
            match ev {
                WatchEvent::Restarted(list) => list.iter().for_each(|n| write_node(&dirs, n)),
                WatchEvent::Applied(n) => write_node(&dirs, &n),
                WatchEvent::Deleted(_) | WatchEvent::Unavailable(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The file each node agent's `DirPublisher` writes in its pod directory.
pub const NODE_ANNOTATIONS_FILE: &str = "node-annotations.json";

struct InotifyFd(nix::sys::inotify::Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The Node is not in the API (yet, or any more).
#[derive(Debug)]
struct NoNode;

impl std::fmt::Display for NoNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no such Node in the API")
    }
}

impl std::error::Error for NoNode {}

/// Merges `dir/node-annotations.json` into the Node `node`'s annotations
/// (one merge patch, only when a value differs).
fn apply_node_annotations(cluster: &MemoryCluster, node: &str, dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = dir.join(NODE_ANNOTATIONS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let wanted: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let Some(n) = cluster.node(node) else {
        // Not created yet (retried), or deleted from the API while its
        // agent runs on: nothing to patch, and nothing to warn about.
        return Err(NoNode.into());
    };
    let current = n.metadata.annotations.clone().unwrap_or_default();
    if wanted.iter().all(|(k, v)| current.get(k) == Some(v)) {
        return Ok(());
    }
    let uid = n.metadata.uid.clone().unwrap_or_default();
    let wanted = wanted.into_iter().map(|(k, v)| (k, Some(v))).collect();
    let target = switchyard_controller::k8s::ObjectRef::node(node, &uid);
    futures::executor::block_on(cluster.patch_annotations(target, None, wanted))
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("patching node {node}: {e}"))
}

/// Applies every node agent's published annotations to its Node, now and
/// whenever the file changes (inotify on each pod directory); a failed
/// patch is retried. Runs until the runtime stops.
pub async fn node_annotations(cluster: Arc<MemoryCluster>, dirs: Dirs) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use tokio::io::unix::AsyncFd;
    let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|ino| {
        let mut by_wd = HashMap::new();
        for (node, dir) in dirs.iter() {
            let wd = ino.add_watch(
                dir.as_path(),
                AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
            )?;
            by_wd.insert(wd, node.clone());
        }
        Ok((ino, by_wd))
    });
    let (fd, by_wd) = match watch {
        // SAFETY: `InotifyFd` owns the inotify descriptor and always returns
        // it; it stays open until the AsyncFd (which owns it) is dropped.
        Ok((ino, by_wd)) => match unsafe {
            AsyncFd::register_with_interest(InotifyFd(ino), tokio::io::Interest::READABLE)
        } {
            Ok(fd) => (Some(fd), by_wd),
            Err(e) => {
                let e = e.into_parts().1;
                tracing::warn!(error = %e, "cannot poll inotify; polling node annotations");
                (None, HashMap::new())
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch pod directories; polling node annotations");
            (None, HashMap::new())
        }
    };
    // Watches are in place: whatever was written before is read now.
    let mut pending: HashSet<String> = dirs.keys().cloned().collect();
    loop {
        pending.retain(|node| match dirs.get(node) {
            Some(dir) => match apply_node_annotations(&cluster, node, dir) {
                Ok(()) => false,
                Err(e) if e.is::<NoNode>() => true,
                Err(e) => {
                    tracing::warn!(%node, error = %format!("{e:#}"), "node annotations not applied; retrying");
                    true
                }
            },
            None => false,
        });
        let retry = tokio::time::sleep(Duration::from_millis(
            if pending.is_empty() && fd.is_some() {
                3_600_000
            } else {
                200
            },
        ));
        let Some(fd) = fd.as_ref() else {
            retry.await;
            pending.extend(dirs.keys().cloned());
            continue;
        };
        tokio::select! {
            _ = retry => {}
            ready = fd.readable() => {
                let Ok(mut guard) = ready else {
                    continue;
                };
                match guard.get_inner().0.read_events() {
                    Ok(events) => {
                        for ev in events {
                            let ours = ev.name.as_deref().and_then(|n| n.to_str())
                                == Some(NODE_ANNOTATIONS_FILE);
                            if let (true, Some(node)) = (ours, by_wd.get(&ev.wd)) {
                                pending.insert(node.clone());
                            }
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                    Err(e) => tracing::warn!(error = %e, "reading inotify events"),
                }
            }
        }
    }
}
