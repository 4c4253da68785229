//! The sandbox: OVN central, N nodes, the controller, the kubelets, and the
//! in-memory Kubernetes API that ties them together.
//!
//! Everything the sandbox creates outside its state directory is named so
//! it can be found again: network namespaces `sy<INDEX>-underlay`,
//! `sy<INDEX>-pod-*` and the nodes' `node-<K>-<PID>-*`; every one of them
//! and every daemon pid is also listed in `STATE/state.json`, which
//! [`cleanup_state_dir`] uses when the owning process died without
//! tearing down.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube_memory::{self as memory, MemoryCluster};
use ovn_testbed::OvnCentral;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_api::annotations::{NODE_CHASSIS, NODE_GATEWAY, NODE_SUBNETS, POD_NETWORK};
use switchyard_controller::config::ClusterCidr;
use switchyard_controller::k8s::{Kind, Object};
use switchyard_controller::Config;

use crate::central::{Central, CentralShape};
use crate::controller::ControllerSet;
use crate::kubelet::{lock, Kubelet, NodeInfo};
use crate::node::{AgentSettings, Node};
use crate::underlay::Underlay;
use crate::util::{self, binaries, delete_netns, netns_exists, wait_for};

/// Which IP families pods get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

impl FromStr for IpFamily {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ipv4" => IpFamily::Ipv4,
            "ipv6" => IpFamily::Ipv6,
            "dual" => IpFamily::Dual,
            other => bail!("ip family must be ipv4, ipv6 or dual, not {other:?}"),
        })
    }
}

impl IpFamily {
    pub fn cluster_cidrs(self) -> Vec<&'static str> {
        match self {
            IpFamily::Ipv4 => vec!["10.244.0.0/16"],
            IpFamily::Ipv6 => vec!["fd00:10:244::/48"],
            IpFamily::Dual => vec!["10.244.0.0/16", "fd00:10:244::/48"],
        }
    }
    fn service_cidrs(self) -> Vec<&'static str> {
        match self {
            IpFamily::Ipv4 => vec!["10.96.0.0/16"],
            IpFamily::Ipv6 => vec!["fd00:10:96::/112"],
            IpFamily::Dual => vec!["10.96.0.0/16", "fd00:10:96::/112"],
        }
    }
}

/// How to build a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub nodes: usize,
    pub ip_family: IpFamily,
    /// Every file the sandbox writes goes here.
    pub state_dir: PathBuf,
    /// The sandbox index (underlay 198.18.INDEX.0/24); the first free one
    /// when `None`.
    pub index: Option<u8>,
    /// Where `switchyard-node` and `switchyard-cni` are; see
    /// [`util::binaries`] for where they are looked for otherwise.
    pub bin_dir: Option<PathBuf>,
    /// Serve NB and SB over TLS only (besides the unix sockets ovn-northd
    /// uses): a generated CA, server and client certificates in
    /// `STATE/pki`; the controller and every ovn-controller connect with
    /// the client certificate.
    pub tls: bool,
    /// NB and SB as RAFT clusters of this many members; the controller,
    /// ovn-northd and every ovn-controller are given all members.
    pub raft: Option<usize>,
    /// Controller replicas; more than one elect a leader through a Lease.
    pub controllers: usize,
    /// The controller's LoadBalancer IP pool (CIDRs, at most one per
    /// family): what it hands out to `type: LoadBalancer` Services. Empty:
    /// no pool, as the controller's default. Nothing routes these
    /// addresses to the nodes by itself: a test adds the external host's
    /// route to the node it wants them to arrive at.
    pub load_balancer_pool: Vec<String>,
}

impl SandboxOptions {
    pub fn new(nodes: usize, state_dir: impl Into<PathBuf>) -> Self {
        SandboxOptions {
            nodes,
            ip_family: IpFamily::Ipv4,
            state_dir: state_dir.into(),
            index: None,
            bin_dir: None,
            tls: false,
            raft: None,
            controllers: 1,
            load_balancer_pool: Vec::new(),
        }
    }
}

/// What `get pods` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub phase: String,
    pub ready: bool,
    pub ips: Vec<String>,
    /// The pod's network namespace while the kubelet runs it.
    pub netns: Option<String>,
    pub message: Option<String>,
    /// Seconds since the pod was created.
    #[serde(default)]
    pub age_secs: u64,
}

/// Written to `STATE/state.json`: enough to clean up without the owner.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub pid: u32,
    pub index: u8,
    pub nodes: usize,
    pub ip_family: IpFamily,
    pub netns: Vec<String>,
    pub pids: Vec<u32>,
}

pub const STATE_FILE: &str = "state.json";

pub struct Sandbox {
    opts: SandboxOptions,
    state_dir: PathBuf,
    index: u8,
    cluster: Arc<MemoryCluster>,
    rt: Option<tokio::runtime::Runtime>,
    kubelet: Arc<Kubelet>,
    controller: Mutex<ControllerSet>,
    nodes: Mutex<Vec<Node>>,
    node_netns: Vec<String>,
    underlay: Option<Underlay>,
    central: Option<Central>,
    /// The external host's echo server ([`crate::probe::echo_server_command`],
    /// named `external`).
    external_server: Mutex<Option<std::process::Child>>,
    down: bool,
}

impl Sandbox {
    /// Starts everything; returns once every node agent serves, every node
    /// has its subnets and its management port is bound.
    pub fn up(opts: SandboxOptions) -> Result<Sandbox> {
        if opts.nodes == 0 || opts.nodes > 200 {
            bail!("--nodes must be between 1 and 200");
        }
        std::fs::create_dir_all(&opts.state_dir)
            .with_context(|| format!("creating {}", opts.state_dir.display()))?;
        let state_dir = opts.state_dir.canonicalize()?;
        if let Some(st) = read_state(&state_dir) {
            if ovn_testbed::pid_alive(st.pid) {
                bail!(
                    "a sandbox is already running in {} (pid {}, index {}); \
                     run `switchyard-sandbox down` first, or use another --state-dir",
                    state_dir.display(),
                    st.pid,
                    st.index
                );
            }
            eprintln!(
                "switchyard-sandbox: cleaning up after a sandbox (pid {}) that died in {}",
                st.pid,
                state_dir.display()
            );
            cleanup_state_dir(&state_dir)?;
        }
        for stale in ["central", "pods"]
            .iter()
            .map(|d| state_dir.join(d))
            .chain((1..=opts.nodes).map(|k| state_dir.join(node_name(k))))
        {
            if stale.exists() {
                std::fs::remove_dir_all(&stale)
                    .with_context(|| format!("removing stale {}", stale.display()))?;
            }
        }
        let bins = binaries(opts.bin_dir.as_deref())?;
        let underlay = Underlay::create(opts.index)?;
        let index = underlay.index;
        // From here on a failure drops what exists, in reverse order.
        let mut partial = Partial::default();
        partial.underlay = Some(underlay);
        write_state(
            &state_dir,
            &StateFile {
                pid: std::process::id(),
                index,
                nodes: opts.nodes,
                ip_family: opts.ip_family,
                netns: vec![
                    crate::underlay::netns_name(index),
                    crate::underlay::external_netns_name(index),
                ],
                pids: vec![],
            },
        )?;
        let central_dir = state_dir.join("central");
        std::fs::create_dir_all(&central_dir)?;
        let tls = if opts.tls {
            let files = ovn_testbed::TlsFiles::generate(&state_dir.join("pki"))
                .context("generating certificates")?;
            let ul = partial.underlay.as_ref().context("underlay")?;
            ul.attach_host()?;
            Some((files, ul.host_ip().to_string()))
        } else {
            None
        };
        let shape = CentralShape {
            tls: tls.clone(),
            raft: opts.raft,
        };
        let central = Central::start(&central_dir, &shape).context("starting OVN central")?;
        let nb_remote = central.nb_client_remote().to_string();
        let sb_remote = central.sb_client_remote().to_string();
        let tls = tls.map(|t| t.0);
        partial.central = Some(central);

        let cluster = MemoryCluster::new();
        let names: Vec<String> = (1..=opts.nodes).map(node_name).collect();
        {
            let ul = partial.underlay.as_ref().context("underlay")?;
            for (k, name) in names.iter().enumerate() {
                // As a kubelet reports them: the node's InternalIPs.
                let mut node = memory::node(name);
                node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
                    addresses: Some(
                        [
                            ul.node_ip(k + 1).to_string(),
                            ul.node_ip6(k + 1).to_string(),
                        ]
                        .into_iter()
                        .map(|a| k8s_openapi::api::core::v1::NodeAddress {
                            type_: "InternalIP".into(),
                            address: a,
                        })
                        .collect(),
                    ),
                    ..Default::default()
                });
                cluster.apply_node(node);
            }
        }
        let mut config = Config {
            nb_remote: nb_remote.clone(),
            nb_tls: tls
                .as_ref()
                .map(|t| switchyard_controller::config::TlsFiles {
                    ca_cert: t.ca_cert.clone(),
                    client_cert: t.client_cert.clone(),
                    client_key: t.client_key.clone(),
                }),
            http_addr: None,
            mtu: Some(MTU),
            ..Config::default()
        };
        config.cluster_cidrs = opts
            .ip_family
            .cluster_cidrs()
            .iter()
            .map(|c| c.parse::<ClusterCidr>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        config.service_cidrs = opts
            .ip_family
            .service_cidrs()
            .iter()
            .map(|c| c.parse())
            .collect::<std::result::Result<_, _>>()?;
        config.load_balancer_pool = opts
            .load_balancer_pool
            .iter()
            .map(|c| c.parse())
            .collect::<std::result::Result<_, _>>()
            .context("load balancer pool")?;
        // The API server allocates ClusterIPs from the ranges the
        // controller programs.
        cluster.set_service_cidrs(&config.service_cidrs);
        let controller = ControllerSet::start(config, opts.controllers, cluster.clone())?;
        partial.controller = Some(controller);

        let settings = AgentSettings {
            sb_remote,
            nb_remote: Some(nb_remote),
            cluster_cidrs: opts
                .ip_family
                .cluster_cidrs()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            service_cidrs: opts
                .ip_family
                .service_cidrs()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            mtu: MTU,
            tls: tls.clone(),
        };
        let underlay_ref = partial.underlay.as_ref().context("underlay")?;
        // Nodes start in parallel: each takes a second or two.
        let started: Vec<Result<Node>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let (settings, bins, dir) = (settings.clone(), bins.clone(), &state_dir);
                    s.spawn(move || Node::start(dir, k + 1, name, underlay_ref, settings, bins))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("node start panicked")))
                })
                .collect()
        });
        for n in started {
            partial.nodes.push(n?);
        }
        let node_netns: Vec<String> = partial
            .nodes
            .iter()
            .map(|n| n.netns().to_string())
            .collect();
        let mut st = read_state(&state_dir).unwrap_or_default();
        st.netns.extend(node_netns.iter().cloned());
        st.pids = partial.nodes.iter().flat_map(Node::pids).collect();
        st.pids
            .extend(partial.central.iter().flat_map(Central::pids));
        write_state(&state_dir, &st)?;

        let infos: Vec<NodeInfo> = partial
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                netns: n.netns().to_string(),
                conflist: n.conflist(),
                cni_bin_dir: n.cni_bin_dir(),
                host_ip: n.ip.clone(),
                host_ips: match opts.ip_family {
                    IpFamily::Ipv4 => vec![n.ip.clone()],
                    IpFamily::Ipv6 => vec![n.ip6.clone()],
                    IpFamily::Dual => vec![n.ip.clone(), n.ip6.clone()],
                },
            })
            .collect();
        let dirs: crate::mirror::Dirs = Arc::new(
            partial
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.pods_dir()))
                .collect(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandbox")
            .enable_all()
            .build()?;
        let kubelet = Kubelet::new(cluster.clone(), infos, state_dir.join("pods"), index);
        rt.spawn(crate::mirror::pods(cluster.clone(), dirs.clone()));
        rt.spawn(crate::mirror::nodes(cluster.clone(), dirs.clone()));
        rt.spawn(crate::mirror::node_annotations(cluster.clone(), dirs));
        rt.spawn(kubelet.clone().run());

        let mut sandbox = Sandbox {
            opts: opts.clone(),
            state_dir,
            index,
            cluster,
            rt: Some(rt),
            kubelet,
            controller: Mutex::new(partial.controller.take().context("controller")?),
            nodes: Mutex::new(std::mem::take(&mut partial.nodes)),
            node_netns,
            underlay: partial.underlay.take(),
            central: partial.central.take(),
            external_server: Mutex::default(),
            down: false,
        };
        let server = util::in_netns(
            &sandbox.external_netns(),
            &crate::probe::echo_server_command("external")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the external host's echo server")?;
        *lock(&sandbox.external_server) = Some(server);
        sandbox.wait_nodes_ready(Duration::from_secs(90))?;
        Ok(sandbox)
    }

    fn wait_nodes_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for node in lock(&self.nodes).iter_mut() {
            node.wait_ready(deadline.saturating_duration_since(Instant::now()))?;
        }
        let names: Vec<String> = lock(&self.nodes).iter().map(|n| n.name.clone()).collect();
        for name in names {
            wait_for(
                deadline.saturating_duration_since(Instant::now()),
                &format!("the controller to give {name} its subnets"),
                || {
                    let node = self.cluster.node(&name)?;
                    node.metadata
                        .annotations
                        .as_ref()?
                        .get(NODE_SUBNETS)
                        .map(drop)
                },
            )?;
            wait_for(
                deadline.saturating_duration_since(Instant::now()),
                &format!("the node agent of {name} to publish its chassis"),
                || {
                    let node = self.cluster.node(&name)?;
                    node.metadata
                        .annotations
                        .as_ref()?
                        .get(NODE_CHASSIS)
                        .map(drop)
                },
            )?;
            wait_for(
                deadline.saturating_duration_since(Instant::now()),
                &format!("the node agent of {name} to publish its gateway bridge"),
                || {
                    let node = self.cluster.node(&name)?;
                    node.metadata
                        .annotations
                        .as_ref()?
                        .get(NODE_GATEWAY)
                        .map(drop)
                },
            )?;
            let port = switchyard_api::names::mgmt_port(&name);
            wait_for(
                deadline.saturating_duration_since(Instant::now()),
                &format!("{port} to be bound (up) in NB"),
                || {
                    self.nbctl(&["--if-exists", "get", "Logical_Switch_Port", &port, "up"])
                        .ok()
                        .filter(|s| s.trim() == "true")
                        .map(drop)
                },
            )?;
        }
        Ok(())
    }

    pub fn index(&self) -> u8 {
        self.index
    }
    pub fn options(&self) -> &SandboxOptions {
        &self.opts
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    pub fn cluster(&self) -> &Arc<MemoryCluster> {
        &self.cluster
    }
    pub fn kubelet(&self) -> &Arc<Kubelet> {
        &self.kubelet
    }
    pub fn node_names(&self) -> Vec<String> {
        lock(&self.nodes).iter().map(|n| n.name.clone()).collect()
    }
    pub fn node_count(&self) -> usize {
        self.node_netns.len()
    }
    /// Node `i`'s (0-based) network namespace, its "host".
    pub fn node_netns(&self, i: usize) -> &str {
        &self.node_netns[i]
    }

    /// The standalone NB and SB. Panics in a RAFT sandbox: see
    /// [`ovn`](Self::ovn).
    pub fn central(&self) -> &OvnCentral {
        self.ovn()
            .standalone()
            .expect("the databases are RAFT clusters: use Sandbox::ovn")
    }

    /// OVN central, standalone or clustered, with ovn-northd.
    pub fn ovn(&self) -> &Central {
        self.central.as_ref().expect("central runs until down")
    }

    /// Node `i`'s chassis directory: its `conf.db`, daemons' logs, pid
    /// files and unixctl sockets (`ovs-vswitchd.ctl`,
    /// `ovn-controller.PID.ctl`).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        lock(&self.nodes)[i].chassis().dir().to_path_buf()
    }

    /// Node `i`'s Open vSwitch database (`unix:...`).
    pub fn node_ovs_remote(&self, i: usize) -> String {
        lock(&self.nodes)[i].chassis().ovs_remote()
    }

    /// `ovn-nbctl --db=NB ARGS`.
    pub fn nbctl(&self, args: &[&str]) -> Result<String> {
        self.ovn().ctl(crate::central::Db::Nb, args)
    }

    /// `ovs-vsctl` against node `i`'s database.
    pub fn vsctl(&self, i: usize, args: &[&str]) -> Result<String> {
        Ok(lock(&self.nodes)[i].chassis().vsctl(args)?)
    }

    /// Takes Kubernetes YAML (multi-document; `kind: List` too) into the
    /// cluster. Returns one line per object, kubectl style.
    pub fn apply_yaml(&self, text: &str) -> Result<Vec<String>> {
        let objects = parse_yaml(text)?;
        let mut out = Vec::new();
        for obj in objects {
            out.push(self.apply_object(obj)?);
        }
        Ok(out)
    }

    fn apply_object(&self, obj: Value) -> Result<String> {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .context("object without metadata.name")?
            .to_string();
        match kind.as_str() {
            "Pod" => {
                let mut pod: Pod = serde_json::from_value(obj)
                    .with_context(|| format!("pod {name}: invalid Pod"))?;
                let ns = pod
                    .metadata
                    .namespace
                    .get_or_insert_with(|| "default".into())
                    .clone();
                let existing = self.cluster.pod(&ns, &name);
                if let Some(old) = &existing {
                    // Like the API server: spec.nodeName and status stay.
                    let node = old.spec.as_ref().and_then(|s| s.node_name.clone());
                    if let Some(spec) = pod.spec.as_mut() {
                        spec.node_name = spec.node_name.clone().or(node);
                    }
                    pod.status = old.status.clone();
                    pod.metadata.uid = old.metadata.uid.clone();
                    let mut ann = old.metadata.annotations.clone().unwrap_or_default();
                    ann.extend(pod.metadata.annotations.take().unwrap_or_default());
                    pod.metadata.annotations = Some(ann);
                    // Validated as the API server validates (names, fields
                    // that may not change), so a bad file is refused here.
                    self.cluster
                        .try_apply(pod)
                        .with_context(|| format!("pod/{name}"))?;
                    return Ok(format!("pod/{name} configured"));
                }
                self.create_pod(pod)?;
                Ok(format!("pod/{name} created"))
            }
            "Node" => bail!("node/{name}: the sandbox's nodes are made by `up --nodes N`"),
            other => {
                let kind = crate::objects::kind_of(other)
                    .with_context(|| format!("{name}: kind {other:?}"))?;
                self.apply_api_object(kind, obj)
            }
        }
    }

    /// Creates a pod; one without `spec.nodeName` goes to the node with the
    /// fewest pods.
    pub fn create_pod(&self, mut pod: Pod) -> Result<Pod> {
        let spec = pod.spec.get_or_insert_with(Default::default);
        if spec.node_name.is_none() {
            spec.node_name = Some(self.schedule());
        }
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        pod.metadata.uid = None;
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self.cluster.try_apply(pod) {
            Ok(Object::Pod(p)) => Ok(*p),
            Ok(_) => bail!("pod/{name}: the API server stored another kind"),
            Err(e) => Err(e).with_context(|| format!("pod/{name}")),
        }
    }

    fn schedule(&self) -> String {
        // Only nodes the API still has (a deleted node's processes run on).
        let names: Vec<String> = self
            .node_names()
            .into_iter()
            .filter(|n| self.cluster.node(n).is_some())
            .collect();
        let mut counts: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
        for p in self.cluster.pods() {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                if let Some(c) = counts.get_mut(n) {
                    *c += 1;
                }
            }
        }
        names
            .iter()
            .min_by_key(|n| counts[n.as_str()])
            .cloned()
            .unwrap_or_default()
    }

    /// Deletes what the YAML names.
    pub fn delete_yaml(&self, text: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for obj in parse_yaml(text)? {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let deleted = self.delete(kind, ns, name)?;
            out.push(format!(
                "{}/{name} {}",
                kind.to_lowercase(),
                if deleted { "deleted" } else { "not found" }
            ));
        }
        Ok(out)
    }

    /// Deletes one object; pods are torn down (CNI DEL) before this
    /// returns. A Namespace takes its pods with it. Returns whether it
    /// existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<bool> {
        let kind = canonical_kind(kind)?;
        match kind {
            "Pod" => {
                let Some(pod) = self.cluster.delete_pod(namespace, name) else {
                    return Ok(false);
                };
                let uid = pod.metadata.uid.unwrap_or_default();
                self.wait_torn_down(&[uid], Duration::from_secs(120))?;
                Ok(true)
            }
            "Namespace" => {
                let existed = self.cluster.get(Kind::Namespace, None, name).is_some();
                let mut uids = Vec::new();
                for p in self.cluster.pods() {
                    if p.metadata.namespace.as_deref() == Some(name) {
                        let pname = p.metadata.name.clone().unwrap_or_default();
                        if let Some(p) = self.cluster.delete_pod(name, &pname) {
                            uids.push(p.metadata.uid.unwrap_or_default());
                        }
                    }
                }
                let any = existed || !uids.is_empty();
                self.wait_torn_down(&uids, Duration::from_secs(120))?;
                // The API server takes everything else in it along.
                self.cluster.delete(Kind::Namespace, None, name);
                Ok(any)
            }
            "Node" => {
                let Some(uids) = self.delete_node(name) else {
                    return Ok(false);
                };
                self.wait_torn_down(&uids, Duration::from_secs(120))?;
                Ok(true)
            }
            other => {
                let kind = crate::objects::kind_of(other)?;
                let ns = kind.namespaced().then_some(namespace);
                Ok(self.cluster.delete(kind, ns, name).is_some())
            }
        }
    }

    /// Deletes pods without waiting for their teardown.
    pub fn delete_pod_nowait(&self, namespace: &str, name: &str) -> Option<String> {
        self.cluster
            .delete_pod(namespace, name)
            .and_then(|p| p.metadata.uid)
    }

    /// Waits until the kubelet has torn down the pods with these UIDs.
    pub fn wait_torn_down(&self, uids: &[String], timeout: Duration) -> Result<()> {
        wait_for(timeout, "pods to be torn down", || {
            uids.iter()
                .all(|u| {
                    !self.kubelet.is_terminating(u)
                        && !self.kubelet.slots().iter().any(|s| &s.uid == u)
                })
                .then_some(())
        })
    }

    /// Every pod, sorted by namespace and name.
    pub fn pods(&self) -> Vec<PodSummary> {
        let mut pods: Vec<PodSummary> = self
            .cluster
            .pods()
            .into_iter()
            .map(|p| {
                let namespace = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                let status = p.status.clone().unwrap_or_default();
                let slot = self.kubelet.slot(&namespace, &name);
                PodSummary {
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                    node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    phase: status.phase.clone().unwrap_or_else(|| "Pending".into()),
                    ready: status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True"),
                    ips: status
                        .pod_ips
                        .iter()
                        .flatten()
                        .map(|i| i.ip.clone())
                        .collect(),
                    netns: slot.map(|s| s.netns.clone()),
                    message: status.message.clone(),
                    age_secs: p
                        .metadata
                        .uid
                        .as_deref()
                        .and_then(|u| self.cluster.created_at(u))
                        .map(|t| t.elapsed().as_secs())
                        .unwrap_or_default(),
                    namespace,
                    name,
                }
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// Every Node object as the API server would return it, by name.
    pub fn nodes(&self) -> Vec<k8s_openapi::api::core::v1::Node> {
        let mut nodes = self.cluster.nodes();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        nodes
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodSummary> {
        self.pods()
            .into_iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// Waits until every pod in the cluster is Running and Ready and no
    /// pod is still being torn down.
    pub fn wait_pods_ready(&self, timeout: Duration) -> Result<()> {
        let r = wait_for(timeout, "every pod to be Running", || {
            let pods = self.pods();
            (pods.iter().all(|p| p.ready) && self.kubelet.terminating() == 0).then_some(())
        });
        r.map_err(|e| {
            let pending: Vec<String> = self
                .pods()
                .into_iter()
                .filter(|p| !p.ready)
                .take(5)
                .map(|p| {
                    format!(
                        "{}/{} ({}: {})",
                        p.namespace,
                        p.name,
                        p.phase,
                        p.message.unwrap_or_default()
                    )
                })
                .collect();
            anyhow!("{e}; not ready: {pending:?}")
        })
    }

    /// The pod's network namespace.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> Result<String> {
        self.kubelet
            .slot(namespace, name)
            .map(|s| s.netns.clone())
            .with_context(|| format!("pod {namespace}/{name} is not running"))
    }

    /// `CMD...` inside the pod's network namespace, as a command to run.
    pub fn exec_command(&self, namespace: &str, name: &str, cmd: &[&str]) -> Result<Command> {
        let netns = self.pod_netns(namespace, name)?;
        if cmd.is_empty() {
            bail!("exec: empty command");
        }
        Ok(util::in_netns(&netns, cmd))
    }

    /// Runs `CMD...` inside the pod's network namespace.
    pub fn exec(&self, namespace: &str, name: &str, cmd: &[&str]) -> Result<Output> {
        Ok(self
            .exec_command(namespace, name, cmd)?
            .stdin(Stdio::null())
            .output()?)
    }

    /// Runs `CMD...` on node `i`'s host (its network namespace).
    pub fn node_host_exec(&self, i: usize, cmd: &[&str]) -> Result<Output> {
        util::netns_output(self.node_netns(i), cmd)
    }

    /// Node `i`'s (0-based) underlay addresses, IPv4 and IPv6: the
    /// gateway bridge's, its InternalIPs.
    pub fn node_ips(&self, i: usize) -> Vec<IpAddr> {
        let nodes = lock(&self.nodes);
        [&nodes[i].ip, &nodes[i].ip6]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// The external host's network namespace.
    pub fn external_netns(&self) -> String {
        crate::underlay::external_netns_name(self.index)
    }

    /// The external host's addresses: underlay IPv4 and IPv6, then the
    /// "internet" ones behind it.
    pub fn external_ips(&self) -> Vec<IpAddr> {
        self.underlay
            .as_ref()
            .map(|u| u.external_ips().to_vec())
            .unwrap_or_default()
    }

    /// Runs `CMD...` on the external host.
    pub fn external_exec(&self, cmd: &[&str]) -> Result<Output> {
        util::netns_output(&self.external_netns(), cmd)
    }

    /// Restarts node `i`'s `ovs-vswitchd`.
    pub fn restart_vswitchd(&self, i: usize) -> Result<()> {
        let r = lock(&self.nodes)[i].restart_vswitchd();
        self.update_state_pids();
        r
    }

    /// The pod's IPs as addresses.
    pub fn pod_ips(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        self.pod(namespace, name)
            .map(|p| p.ips.iter().filter_map(|i| i.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Index of the node a pod runs on.
    pub fn pod_node_index(&self, namespace: &str, name: &str) -> Option<usize> {
        let node = self.pod(namespace, name)?.node?;
        self.node_names().iter().position(|n| *n == node)
    }

    /// Kills every controller replica.
    pub fn kill_controller(&self) {
        lock(&self.controller).kill_all();
    }

    /// Restarts every controller replica.
    pub fn restart_controller(&self) -> Result<()> {
        let mut set = lock(&self.controller);
        set.kill_all();
        for i in 0..set.len() {
            set.restart(i)?;
        }
        Ok(())
    }

    /// The controller replicas.
    pub fn controllers(&self) -> std::sync::MutexGuard<'_, ControllerSet> {
        lock(&self.controller)
    }

    /// The leading controller's metrics.
    pub fn controller_metrics(&self) -> Option<switchyard_controller::Metrics> {
        lock(&self.controller).metrics()
    }

    pub fn kill_node_agent(&self, i: usize) {
        lock(&self.nodes)[i].kill_agent();
        self.update_state_pids();
    }

    pub fn restart_node_agent(&self, i: usize) -> Result<()> {
        let r = lock(&self.nodes)[i].restart_agent(Duration::from_secs(60));
        self.update_state_pids();
        r
    }

    /// Cuts node `i` (0-based) off the underlay, or joins it back.
    pub fn set_underlay_link(&self, i: usize, up: bool) -> Result<()> {
        let ul = self.underlay.as_ref().context("the underlay is gone")?;
        let k = lock(&self.nodes)
            .get(i)
            .map(|n| n.index)
            .context("no such node")?;
        ul.set_node_link(k, up)
    }

    /// Runs `f` on node `i` (0-based).
    pub fn with_node<T>(&self, i: usize, f: impl FnOnce(&mut Node) -> Result<T>) -> Result<T> {
        let mut nodes = lock(&self.nodes);
        let n = nodes.len();
        f(nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}: {n} nodes"))?)
    }

    /// Records the daemons' current pids in the state file (after a fault).
    pub fn refresh_state_pids(&self) {
        self.update_state_pids();
    }

    fn update_state_pids(&self) {
        if let Some(mut st) = read_state(&self.state_dir) {
            st.pids = lock(&self.nodes).iter().flat_map(Node::pids).collect();
            st.pids.extend(self.central.iter().flat_map(Central::pids));
            let _ = write_state(&self.state_dir, &st);
        }
    }

    /// Pids of every daemon the sandbox runs (not pods' processes).
    pub fn pids(&self) -> Vec<u32> {
        let mut p: Vec<u32> = lock(&self.nodes).iter().flat_map(Node::pids).collect();
        p.extend(self.central.iter().flat_map(Central::pids));
        p
    }

    /// Each node agent's log file (`STATE/node-K/agent.log`), by node.
    pub fn agent_logs(&self) -> Vec<PathBuf> {
        lock(&self.nodes)
            .iter()
            .map(|n| n.dir.join("agent.log"))
            .collect()
    }

    /// Whether every pod's annotation is present (the controller caught up).
    pub fn all_annotated(&self) -> bool {
        self.cluster.pods().iter().all(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(POD_NETWORK))
        })
    }

    /// Stops everything and removes every namespace and process.
    pub fn down(mut self) -> Result<()> {
        self.shutdown();
        let leftovers: Vec<String> = self
            .node_netns
            .iter()
            .cloned()
            .chain([
                crate::underlay::netns_name(self.index),
                crate::underlay::external_netns_name(self.index),
            ])
            .filter(|n| netns_exists(n))
            .collect();
        if !leftovers.is_empty() {
            bail!("network namespaces left behind: {leftovers:?}");
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        if self.down {
            return;
        }
        self.down = true;
        if let Some(rt) = self.rt.take() {
            let kubelet = self.kubelet.clone();
            rt.block_on(async move { kubelet.kill_all().await });
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        self.kill_controller();
        if let Some(mut c) = lock(&self.external_server).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for node in lock(&self.nodes).iter_mut() {
            node.stop();
        }
        lock(&self.nodes).clear();
        // Pod namespaces whose start was still in progress.
        for ns in list_netns() {
            if ns.starts_with(&format!("sy{}-pod-", self.index)) {
                delete_netns(&ns);
            }
        }
        if let Some(mut u) = self.underlay.take() {
            u.delete();
        }
        self.central = None;
        let _ = std::fs::remove_file(self.state_dir.join(STATE_FILE));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The pod MTU: the 1500-byte underlay minus Geneve over IPv4 (58), rounded
/// down.
pub const MTU: u32 = 1400;

pub fn node_name(k: usize) -> String {
    format!("node-{k}")
}

#[derive(Default)]
struct Partial {
    nodes: Vec<Node>,
    controller: Option<ControllerSet>,
    central: Option<Central>,
    underlay: Option<Underlay>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        self.nodes.clear();
        self.controller = None;
        self.central = None;
        self.underlay = None;
    }
}

fn canonical_kind(kind: &str) -> Result<&'static str> {
    Ok(crate::objects::kind_of(kind)?.name())
}

/// Multi-document YAML (and `kind: List`) into JSON objects.
pub fn parse_yaml(text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).context("invalid YAML")?;
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

pub fn read_state(dir: &Path) -> Option<StateFile> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(dir: &Path, st: &StateFile) -> Result<()> {
    util::write_atomic(&dir.join(STATE_FILE), &serde_json::to_vec_pretty(st)?)?;
    Ok(())
}

/// Every named network namespace.
pub fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Cleans up after a sandbox whose owning process is gone: kills the
/// daemons and pod processes it recorded, deletes its namespaces, removes
/// the state file.
pub fn cleanup_state_dir(dir: &Path) -> Result<()> {
    let Some(st) = read_state(dir) else {
        return Ok(());
    };
    let prefix = format!("sy{}-", st.index);
    let mut spaces: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    spaces.extend(st.netns.iter().cloned());
    spaces.sort();
    spaces.dedup();
    let mut pids = st.pids.clone();
    for ns in &spaces {
        if let Ok(out) = util::sh(&["ip", "netns", "pids", ns]) {
            pids.extend(out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = wait_for(Duration::from_secs(5), "processes to exit", || {
        pids.iter()
            .all(|p| !ovn_testbed::pid_alive(*p))
            .then_some(())
    });
    for ns in &spaces {
        delete_netns(ns);
    }
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    Ok(())
}

/// A Pod object `namespace/name` whose one container runs `command`
/// (empty: no process), on `node` or wherever the sandbox schedules it.
pub fn pod_spec(namespace: &str, name: &str, node: Option<&str>, command: Vec<String>) -> Pod {
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            containers: vec![Container {
                name: "main".into(),
                image: Some("sandbox".into()),
                command: (!command.is_empty()).then_some(command),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_and_lists() {
        let docs = parse_yaml(
            "kind: Namespace\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- {kind: Pod, metadata: {name: p}}\n- {kind: Pod, metadata: {name: q}}\n",
        )
        .unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "Pod", "Pod"]);
        assert!(parse_yaml("a: [").is_err());
    }

    #[test]
    fn kinds_and_families() {
        assert_eq!(canonical_kind("po").unwrap(), "Pod");
        assert_eq!(canonical_kind("NetworkPolicy").unwrap(), "NetworkPolicy");
        assert!(canonical_kind("deployment").is_err());
        assert_eq!("dual".parse::<IpFamily>().unwrap().cluster_cidrs().len(), 2);
        assert!("ipv5".parse::<IpFamily>().is_err());
    }
}
