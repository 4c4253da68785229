//! The sandbox's kubelet: starts and stops pods the way a kubelet and a
//! container runtime do, as far as the network can tell.
//!
//! Starting a pod: a fresh network namespace (created in-process, as
//! container runtimes do, and named as `ip netns add` names it), then the CNI
//! ADD of every plugin of the node's conflist (the one the node agent
//! installed), executed as a separate process from the node's CNI bin
//! directory with the environment and stdin a runtime gives it (`CNI_ARGS`
//! with the pod's namespace, name, UID and infra container id). A failed ADD
//! is cleaned up with DEL and retried with backoff while the pod exists,
//! as the kubelet does. Then the first container's `command` + `args`, if
//! any, run inside the namespace. The pod turns Running/Ready once ADD has
//! returned and the process is up.
//!
//! Stopping a pod (deleted from the cluster): kill the process, CNI DEL
//! (retried until it succeeds, e.g. while a node agent restarts), delete
//! the namespace.
//!
//! The cluster is watched through the same [`Cluster`] trait the controller
//! uses, so the kubelet reacts to exactly what an API server would show.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodIP, PodStatus};
use kube_memory::MemoryCluster;
use serde_json::{json, Value};
use switchyard_controller::k8s::WatchEvent;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// What the kubelet knows about a node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub netns: String,
    pub conflist: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub host_ip: String,
    /// What a `hostNetwork` pod reports as its IPs: the node's, of the
    /// cluster's families.
    pub host_ips: Vec<String>,
}

/// A pod the kubelet runs (or is starting, or stopping).
pub struct PodSlot {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: usize,
    pub netns: String,
    /// Runs in its node's namespace (`hostNetwork: true`): no CNI, and the
    /// namespace is never the pod's to delete.
    pub host_network: bool,
    pub container_id: String,
    /// When the kubelet first saw the pod.
    pub seen: Instant,
    removed: AtomicBool,
    inner: tokio::sync::Mutex<Runtime>,
    pub state: Mutex<PodState>,
}

#[derive(Default)]
struct Runtime {
    netns_created: bool,
    /// The cached ADD result per plugin chain, passed as prevResult to DEL.
    result: Option<Value>,
    child: Option<Child>,
}

/// Observable pod state.
#[derive(Clone, Debug, Default)]
pub struct PodState {
    pub running: bool,
    pub ips: Vec<String>,
    pub last_error: Option<String>,
    pub add_attempts: u32,
    /// When CNI ADD last returned successfully.
    pub add_returned: Option<Instant>,
}

/// One pod's start, for latency figures: when the kubelet saw the pod,
/// had its network namespace, started the successful CNI ADD's plugin
/// process, and when that ADD returned.
#[derive(Clone, Debug)]
pub struct StartRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub seen: Instant,
    pub netns_ready: Instant,
    pub exec_started: Instant,
    pub add_returned: Instant,
    pub add_attempts: u32,
}

pub struct Kubelet {
    cluster: Arc<MemoryCluster>,
    nodes: Vec<NodeInfo>,
    logs: PathBuf,
    index: u8,
    serial: AtomicU64,
    pods: Mutex<HashMap<String, Arc<PodSlot>>>,
    terminating: Mutex<HashMap<String, Arc<PodSlot>>>,
    starts: Mutex<Vec<StartRecord>>,
}

impl Kubelet {
    pub fn new(
        cluster: Arc<MemoryCluster>,
        nodes: Vec<NodeInfo>,
        logs: PathBuf,
        index: u8,
    ) -> Arc<Self> {
        let _ = std::fs::create_dir_all(&logs);
        Arc::new(Kubelet {
            cluster,
            nodes,
            logs,
            index,
            serial: AtomicU64::new(0),
            pods: Mutex::default(),
            terminating: Mutex::default(),
            starts: Mutex::default(),
        })
    }

    /// Watches pods until the runtime stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            let mut stream = self.cluster.watch_pods();
            while let Some(ev) = stream.next().await {
                match ev {
                    WatchEvent::Restarted(list) => {
                        let live: std::collections::HashSet<String> =
                            list.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                        let gone: Vec<String> = lock(&self.pods)
                            .keys()
                            .filter(|u| !live.contains(*u))
                            .cloned()
                            .collect();
                        for uid in gone {
                            self.stop(&uid);
                        }
                        for pod in list {
                            self.ensure(&pod);
                        }
                    }
                    WatchEvent::Unavailable(_) => {}
                    WatchEvent::Applied(pod) => self.ensure(&pod),
                    WatchEvent::Deleted(pod) => {
                        if let Some(uid) = &pod.metadata.uid {
                            self.stop(uid);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn ensure(self: &Arc<Self>, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let Some(node) = self.nodes.iter().position(|n| n.name == node_name) else {
            return;
        };
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let mut pods = lock(&self.pods);
        if pods.contains_key(&uid) {
            return;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(PodSlot {
            netns: if host_network {
                self.nodes[node].netns.clone()
            } else {
                format!("sy{}-pod-{n}-{}", self.index, short(&name))
            },
            host_network,
            container_id: container_id(&uid, n),
            namespace,
            name,
            uid: uid.clone(),
            node,
            seen: Instant::now(),
            removed: AtomicBool::new(false),
            inner: tokio::sync::Mutex::new(Runtime::default()),
            state: Mutex::default(),
        });
        pods.insert(uid, slot.clone());
        drop(pods);
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| {
                let mut v = c.command.clone().unwrap_or_default();
                v.extend(c.args.clone().unwrap_or_default());
                v
            })
            .unwrap_or_default();
        let me = self.clone();
        tokio::spawn(async move { me.start(slot, container).await });
    }

    fn stop(self: &Arc<Self>, uid: &str) {
        let Some(slot) = lock(&self.pods).remove(uid) else {
            return;
        };
        slot.removed.store(true, Ordering::SeqCst);
        lock(&self.terminating).insert(uid.to_string(), slot.clone());
        let me = self.clone();
        tokio::spawn(async move {
            me.teardown(&slot, Duration::from_secs(120)).await;
            lock(&me.terminating).remove(&slot.uid);
        });
    }

    async fn start(self: Arc<Self>, slot: Arc<PodSlot>, container: Vec<String>) {
        let mut rt = slot.inner.lock().await;
        if slot.removed.load(Ordering::SeqCst) {
            return;
        }
        if slot.host_network {
            // The node's own namespace: no sandbox, no CNI; the pod's IPs
            // are the node's.
            if !container.is_empty() {
                match self.spawn_container(&slot, &container) {
                    Ok(child) => rt.child = Some(child),
                    Err(e) => {
                        self.fail(&slot, format!("starting the container: {e:#}"));
                        return;
                    }
                }
            }
            let ips = self.nodes[slot.node].host_ips.clone();
            {
                let mut st = lock(&slot.state);
                st.running = true;
                st.ips = ips.clone();
                st.add_returned = Some(Instant::now());
            }
            self.set_status(&slot, Some(&ips), None);
            return;
        }
        let name = slot.netns.clone();
        let created = tokio::task::spawn_blocking(move || create_netns(&name))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        if let Err(e) = created {
            self.fail(
                &slot,
                format!("creating the pod's network namespace: {e:#}"),
            );
            return;
        }
        rt.netns_created = true;
        let netns_ready = Instant::now();
        let mut backoff = Duration::from_millis(500);
        let mut exec_started;
        loop {
            if slot.removed.load(Ordering::SeqCst) {
                return;
            }
            lock(&slot.state).add_attempts += 1;
            exec_started = Instant::now();
            match self.cni_add(&slot).await {
                Ok(result) => {
                    rt.result = Some(result);
                    break;
                }
                Err(e) => {
                    self.fail(&slot, format!("CNI ADD: {e:#}"));
                    // As the kubelet does: tear the failed sandbox's network
                    // down before trying again.
                    let _ = self.cni_del(&slot, None).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(4));
                }
            }
        }
        let returned = Instant::now();
        if slot.removed.load(Ordering::SeqCst) {
            return;
        }
        let ips: Vec<String> = rt
            .result
            .as_ref()
            .and_then(|r| r["ips"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip["address"].as_str())
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
            .collect();
        if !container.is_empty() {
            match self.spawn_container(&slot, &container) {
                Ok(child) => rt.child = Some(child),
                Err(e) => {
                    self.fail(&slot, format!("starting the container: {e:#}"));
                    return;
                }
            }
        }
        let add_attempts = {
            let mut st = lock(&slot.state);
            st.running = true;
            st.ips = ips.clone();
            st.last_error = None;
            st.add_returned = Some(returned);
            st.add_attempts
        };
        lock(&self.starts).push(StartRecord {
            namespace: slot.namespace.clone(),
            name: slot.name.clone(),
            uid: slot.uid.clone(),
            seen: slot.seen,
            netns_ready,
            exec_started,
            add_returned: returned,
            add_attempts,
        });
        self.set_status(&slot, Some(&ips), None);
    }

    fn fail(&self, slot: &PodSlot, msg: String) {
        tracing::warn!(pod = %format!("{}/{}", slot.namespace, slot.name), "{msg}");
        lock(&slot.state).last_error = Some(msg.clone());
        self.set_status(slot, None, Some(msg));
    }

    fn spawn_container(&self, slot: &PodSlot, container: &[String]) -> Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(
            self.logs
                .join(format!("{}_{}.log", slot.namespace, slot.name)),
        )?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &slot.netns])
            .args(container)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {container:?}"))?;
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{container:?} exited at once ({status})");
        }
        Ok(child)
    }

    /// Writes the pod's status the way a kubelet reports it.
    fn set_status(&self, slot: &PodSlot, ips: Option<&[String]>, error: Option<String>) {
        let host_ip = self.nodes[slot.node].host_ip.clone();
        let status = match ips {
            Some(ips) => PodStatus {
                phase: Some("Running".into()),
                host_ip: Some(host_ip.clone()),
                pod_ip: ips.first().cloned(),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            None => PodStatus {
                phase: Some("Pending".into()),
                host_ip: Some(host_ip),
                message: error,
                reason: Some("ContainerCreating".into()),
                ..Default::default()
            },
        };
        self.cluster
            .update_pod_status(&slot.namespace, &slot.name, &slot.uid, status);
    }

    /// Kill, CNI DEL (retried until `timeout`), delete the namespace.
    async fn teardown(&self, slot: &PodSlot, timeout: Duration) {
        let mut rt = slot.inner.lock().await;
        if let Some(mut child) = rt.child.take() {
            let _ = child.kill().await;
        }
        lock(&slot.state).running = false;
        if !rt.netns_created {
            return;
        }
        let deadline = Instant::now() + timeout;
        let prev = rt.result.take();
        loop {
            match self.cni_del(slot, prev.as_ref()).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(pod = %slot.name, "CNI DEL failed, retrying: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::error!(pod = %slot.name, "CNI DEL failed, giving up: {e:#}");
                    break;
                }
            }
        }
        let _ = run(&["ip", "netns", "del", &slot.netns]).await;
        rt.netns_created = false;
    }

    /// Stops every pod at once without CNI DEL (sandbox teardown): kills
    /// processes and deletes namespaces, which destroys the veths.
    pub async fn kill_all(&self) {
        let slots: Vec<Arc<PodSlot>> = {
            let mut all: Vec<_> = lock(&self.pods).drain().map(|(_, s)| s).collect();
            all.extend(lock(&self.terminating).drain().map(|(_, s)| s));
            all
        };
        for slot in &slots {
            slot.removed.store(true, Ordering::SeqCst);
        }
        for slot in slots {
            // A start in progress holds the lock; do not wait for it.
            if let Ok(mut rt) = slot.inner.try_lock() {
                if let Some(mut child) = rt.child.take() {
                    let _ = child.kill().await;
                }
            }
            if !slot.host_network {
                let _ = run(&["ip", "netns", "del", &slot.netns]).await;
            }
        }
    }

    fn cni_env(&self, slot: &PodSlot, command: &str) -> Vec<(String, String)> {
        let node = &self.nodes[slot.node];
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), slot.container_id.clone()),
            ("CNI_NETNS".into(), format!("/run/netns/{}", slot.netns)),
            ("CNI_IFNAME".into(), "eth0".into()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    slot.namespace, slot.name, slot.container_id, slot.uid
                ),
            ),
            ("CNI_PATH".into(), node.cni_bin_dir.display().to_string()),
        ]
    }

    fn conflist(&self, slot: &PodSlot) -> Result<Value> {
        let path = &self.nodes[slot.node].conflist;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn cni_add(&self, slot: &PodSlot) -> Result<Value> {
        let list = self.conflist(slot)?;
        let mut prev: Option<Value> = None;
        for plugin in list["plugins"].as_array().cloned().unwrap_or_default() {
            let out = self
                .exec_plugin(slot, "ADD", &list, plugin, prev.as_ref())
                .await?;
            prev = Some(serde_json::from_str(&out).context("parsing the ADD result")?);
        }
        prev.context("the conflist has no plugins")
    }

    async fn cni_del(&self, slot: &PodSlot, prev: Option<&Value>) -> Result<()> {
        let list = self.conflist(slot)?;
        let mut plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        plugins.reverse();
        for plugin in plugins {
            self.exec_plugin(slot, "DEL", &list, plugin, prev).await?;
        }
        Ok(())
    }

    async fn exec_plugin(
        &self,
        slot: &PodSlot,
        command: &str,
        list: &Value,
        mut plugin: Value,
        prev: Option<&Value>,
    ) -> Result<String> {
        let node = &self.nodes[slot.node];
        let ty = plugin["type"]
            .as_str()
            .context("plugin without type")?
            .to_string();
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        if let Some(p) = prev {
            plugin["prevResult"] = p.clone();
        }
        let stdin = serde_json::to_vec(&plugin)?;
        let mut child = Command::new(node.cni_bin_dir.join(&ty))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.cni_env(slot, command))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("executing CNI plugin {ty}"))?;
        if let Some(mut w) = child.stdin.take() {
            w.write_all(&stdin).await?;
        }
        let out = child.wait_with_output().await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{ty} {command} failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// The pod's slot, if the kubelet runs it.
    pub fn slot(&self, namespace: &str, name: &str) -> Option<Arc<PodSlot>> {
        lock(&self.pods)
            .values()
            .find(|s| s.namespace == namespace && s.name == name)
            .cloned()
    }

    /// Pods being started or running.
    pub fn slots(&self) -> Vec<Arc<PodSlot>> {
        lock(&self.pods).values().cloned().collect()
    }

    /// Pods still being torn down.
    pub fn terminating(&self) -> usize {
        lock(&self.terminating).len()
    }

    pub fn is_terminating(&self, uid: &str) -> bool {
        lock(&self.terminating).contains_key(uid)
    }

    pub fn starts(&self) -> Vec<StartRecord> {
        lock(&self.starts).clone()
    }

    pub fn node_infos(&self) -> &[NodeInfo] {
        &self.nodes
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect()
}

/// A 64-hex-digit container id, as container runtimes use.
fn container_id(uid: &str, n: u64) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for i in 0..4u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (uid, n, i, std::process::id()).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

const NETNS_DIR: &str = "/run/netns";

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so
/// namespaces mounted there are seen from other mount namespaces.
fn prepare_netns_dir() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let dir = std::path::Path::new(NETNS_DIR);
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {NETNS_DIR}: {e}"))?;
        let shared = || {
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        match shared() {
            Ok(()) => Ok(()),
            // Not a mount point yet: bind it onto itself first.
            Err(nix::errno::Errno::EINVAL) => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("bind-mounting {NETNS_DIR}: {e}"))?;
                shared().map_err(|e| format!("making {NETNS_DIR} shared: {e}"))
            }
            Err(e) => Err(format!("making {NETNS_DIR} shared: {e}")),
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Creates the named network namespace `/run/netns/NAME` (what `ip netns
/// add NAME` does) with `lo` up, without running a process: a thread
/// unshares its network namespace, pins it with a bind mount and ends.
pub fn create_netns(name: &str) -> Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    prepare_netns_dir()?;
    let path = std::path::Path::new(NETNS_DIR).join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let target = path.clone();
    let pinned = std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("unshare(CLONE_NEWNET)")?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting the namespace on {}", target.display()))?;
        loopback_up()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netns thread panicked"))
    .and_then(|r| r);
    if let Err(e) = pinned {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    use nix::libc;
    // SAFETY: plain socket/ioctl calls on a zeroed `ifreq` whose name is
    // NUL-terminated; the descriptor is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket for lo");
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err).context("bringing lo up");
        }
    }
    Ok(())
}

async fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Used by the sandbox: the annotations a pod object carries.
pub fn annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

/// A CNI-result-shaped summary for the CLI.
pub fn describe_state(st: &PodState) -> Value {
    json!({"running": st.running, "ips": st.ips, "error": st.last_error, "attempts": st.add_attempts})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_named_netns_with_lo_up() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("needs root; skipped");
            return;
        }
        let name = format!("sy-kubelet-test-{}", std::process::id());
        create_netns(&name).unwrap();
        let out = std::process::Command::new("ip")
            .args(["-n", &name, "-o", "link", "show", "lo"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
        assert!(out.status.success(), "{text}");
        assert!(text.contains("UP"), "{text}");
        assert!(create_netns("../bad/name").is_err());
    }
}
