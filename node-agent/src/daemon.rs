//! `switchyard-node`: the daemon behind the CNI shim.
//!
//! Start-up, in order: connect to the node's OVS database and write the
//! node's `Open_vSwitch` settings so ovn-controller creates `br-int`; wait
//! for `br-int`; remove ports whose veth has vanished (pods that died while
//! the daemon was down); start the management port; listen on the CNI
//! socket; install the CNI configuration and plugin binary last, because
//! their presence is what tells the kubelet the node's network is ready.
//!
//! Requests for the same container are serialised; different containers
//! proceed in parallel. No state lives only in memory: a restarted daemon
//! reads pod attachments back from OVS (`external_ids`) and the kernel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use switchyard_api::{names, PodNetwork};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::cni::{
    self, codes, CniError, CniResult, Command, IpConfig, RawRequest, Request, RouteEntry,
};
use crate::error::{Error, Result};
use crate::ethtool;
use crate::gateway::{self, Gateway, GatewayConfig};
use crate::metrics::{Metrics, ADD_PHASES};
use crate::mgmt;
use crate::naming::{self, ext};
use crate::netlink::{self, PodInterface};
use crate::node_publisher::{node_annotations, Annotations, NodePublisher, Published};
use crate::ovs::{Ovs, OvsAttachment, PortSpec};
use crate::pod_source::PodSource;
use crate::protocol::{Reply, MAX_MESSAGE};
use crate::service_source::ServiceSource;

/// How long an ADD waits for the kernel to report a pod's veth running
/// before adding its port anyway. The kernel's link watcher may hold a
/// carrier change back for up to a second (it rate-limits per device), and
/// on a busy machine its work runs later still; a port added before then
/// goes down and up in OVS, which reconfigures the bridge twice more. The
/// wait ends as soon as the link runs, so only a slow kernel pays it.
const LINK_RUNNING_WAIT: Duration = Duration::from_millis(2500);

/// How long a client may take to send its request.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a successful ADD spent its time, phase by phase (see
/// [`ADD_PHASES`]); each [`PhaseTimer::mark`] closes the phase running since
/// the previous mark (the first one since the request was parsed).
struct PhaseTimer {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
    /// Open_vSwitch transactions this request committed.
    ovs_txns: u32,
}

impl PhaseTimer {
    fn new(started: Instant) -> Self {
        PhaseTimer {
            last: started,
            done: Vec::with_capacity(ADD_PHASES.len()),
            ovs_txns: 0,
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        let took = now.saturating_duration_since(self.last);
        self.last = now;
        debug!(phase, ms = took.as_secs_f64() * 1e3, "ADD phase done");
        self.done.push((phase, took));
    }

    /// A phase that ran alongside others (inside a marked one).
    fn record(&mut self, phase: &'static str, took: Duration) {
        debug!(
            phase,
            ms = took.as_secs_f64() * 1e3,
            "ADD phase done (overlapped)"
        );
        self.done.push((phase, took));
    }

    fn ms(&self, phase: &str) -> f64 {
        self.done
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, d)| d.as_secs_f64() * 1e3)
            .sum()
    }
}

/// What the pod source last held under the name an ADD waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    /// The pod with the request's UID (or any UID, when it gave none).
    Ours,
    /// Another pod of the same name: this UID.
    Other(String),
}

/// Everything the daemon is told on its command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub node: String,
    pub socket: PathBuf,
    pub ovs_remote: String,
    /// Written as `external_ids:ovn-remote` when set.
    pub sb_remote: Option<String>,
    pub encap_type: String,
    pub encap_ip: Option<String>,
    /// `netdev` (userspace) or `system` (kernel); written as
    /// `ovn-bridge-datapath-type` when set.
    pub datapath_type: Option<String>,
    pub bridge: String,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: Option<PathBuf>,
    /// The `switchyard-cni` binary to install into `cni_bin_dir`.
    pub cni_plugin_source: Option<PathBuf>,
    pub network_name: String,
    pub mtu: u32,
    pub cluster_cidrs: Vec<IpNet>,
    /// Service CIDRs, routed via the management port like the cluster's.
    pub service_cidrs: Vec<IpNet>,
    pub mgmt_port: bool,
    /// The gateway bridge; `None` runs without one.
    pub gateway: Option<GatewayConfig>,
    pub annotation_timeout: Duration,
    pub install_timeout: Duration,
    pub startup_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    /// The per-policy counters; `None` turns them off.
    pub policy_counters: Option<crate::policy_metrics::Config>,
    /// Answer the Services' health check ports (with a Service source).
    pub health_check_ports: bool,
    /// Flush removed UDP/SCTP backends' conntrack entries (with a Service
    /// source); `None` does not.
    pub udp_flush: Option<crate::udp_flush::run::Config>,
}

impl Config {
    pub fn new(node: impl Into<String>) -> Self {
        Config {
            node: node.into(),
            socket: PathBuf::from(crate::protocol::DEFAULT_SOCKET),
            ovs_remote: "unix:/var/run/openvswitch/db.sock".into(),
            sb_remote: None,
            encap_type: "geneve".into(),
            encap_ip: None,
            datapath_type: None,
            bridge: "br-int".into(),
            cni_conf_dir: Some(PathBuf::from("/etc/cni/net.d")),
            cni_bin_dir: Some(PathBuf::from("/opt/cni/bin")),
            cni_plugin_source: None,
            network_name: "switchyard".into(),
            mtu: 1400,
            cluster_cidrs: vec![],
            service_cidrs: vec![],
            mgmt_port: true,
            gateway: None,
            annotation_timeout: Duration::from_secs(30),
            install_timeout: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(60),
            metrics_addr: None,
            policy_counters: None,
            health_check_ports: true,
            udp_flush: None,
        }
    }
}

pub struct Daemon {
    cfg: Config,
    ovs: Ovs,
    pods: Arc<dyn PodSource>,
    publisher: Arc<dyn NodePublisher>,
    /// Services and EndpointSlices for the health check ports; `None`
    /// serves none.
    services: Option<Arc<dyn ServiceSource>>,
    metrics: Metrics,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    mgmt_ready: AtomicBool,
    /// What the gateway task last learnt of the gateway bridge.
    gateway: tokio::sync::watch::Sender<Option<switchyard_api::NodeGateway>>,
}

/// Open vSwitch's run directory for a `unix:` database remote: the
/// socket's directory (`/var/run/openvswitch` for the default).
pub fn ovs_rundir(remote: &str) -> PathBuf {
    remote
        .strip_prefix("unix:")
        .and_then(|p| Path::new(p).parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/run/openvswitch"))
}

/// Creates the socket's directory, or checks the one there: it must be a
/// directory (not a symlink) owned by the daemon's own user, because
/// whoever owns it can swap the socket and 0700 then protects nothing; its
/// mode is set to 0700.
fn prepare_socket_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("inspecting {}", dir.display()), e))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || std::os::unix::fs::MetadataExt::uid(&meta) != euid {
        return Err(Error::Config(format!(
            "{} must be a directory owned by uid {euid} (not a symlink)",
            dir.display()
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

/// Writes a file atomically (temp file + rename) with `mode`.
fn install_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension("switchyard-tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("installing {}", path.display()), e))
}

impl Daemon {
    /// Runs start-up and serves until the listener fails.
    pub async fn run(
        cfg: Config,
        pods: Arc<dyn PodSource>,
        publisher: Arc<dyn NodePublisher>,
        services: Option<Arc<dyn ServiceSource>>,
    ) -> Result<()> {
        let daemon = Arc::new(Self::start(cfg, pods, publisher, services).await?);
        let listener = daemon.listen()?;
        daemon.install_cni()?;
        info!(socket = %daemon.cfg.socket.display(), "serving CNI requests");
        daemon.serve(listener).await
    }

    /// Start-up up to (not including) listening.
    pub async fn start(
        cfg: Config,
        pods: Arc<dyn PodSource>,
        publisher: Arc<dyn NodePublisher>,
        services: Option<Arc<dyn ServiceSource>>,
    ) -> Result<Daemon> {
        let ovs = Ovs::connect(&cfg.ovs_remote, cfg.startup_timeout).await?;
        let mut ids = BTreeMap::new();
        ids.insert("system-id".to_string(), cfg.node.clone());
        ids.insert("hostname".to_string(), cfg.node.clone());
        ids.insert("ovn-encap-type".to_string(), cfg.encap_type.clone());
        if let Some(sb) = &cfg.sb_remote {
            ids.insert("ovn-remote".to_string(), sb.clone());
        }
        if let Some(ip) = &cfg.encap_ip {
            ids.insert("ovn-encap-ip".to_string(), ip.clone());
        }
        if let Some(dp) = &cfg.datapath_type {
            ids.insert("ovn-bridge-datapath-type".to_string(), dp.clone());
        }
        ids.insert("ovn-bridge".to_string(), cfg.bridge.clone());
        ovs.set_node_ids(&ids).await?;
        info!(bridge = %cfg.bridge, "wrote node settings; waiting for the integration bridge");
        ovs.wait_bridge(&cfg.bridge, cfg.startup_timeout).await?;
        let daemon = Daemon {
            cfg,
            ovs,
            pods,
            publisher,
            services,
            metrics: Metrics::new(),
            locks: Mutex::new(HashMap::new()),
            mgmt_ready: AtomicBool::new(false),
            gateway: tokio::sync::watch::channel(None).0,
        };
        daemon.remove_orphans().await;
        Ok(daemon)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ports whose host veth is gone belong to pods whose namespace was
    /// destroyed while nobody was watching; running pods are left alone.
    async fn remove_orphans(&self) {
        for att in self.ovs.attachments() {
            match netlink::host_link_exists(att.name.clone()).await {
                Ok(true) => {}
                Ok(false) => {
                    info!(port = %att.name, pod = att.pod.as_deref().unwrap_or("?"), "removing port whose veth is gone");
                    if let Err(e) = self
                        .ovs
                        .remove_ports(&att.port.into_iter().collect::<Vec<_>>())
                        .await
                    {
                        warn!(port = %att.name, error = %e, "cannot remove orphaned port");
                    }
                }
                Err(e) => warn!(port = %att.name, error = %e, "cannot check veth"),
            }
        }
    }

    /// Binds the socket in a 0700 directory, itself 0600.
    pub fn listen(&self) -> Result<UnixListener> {
        let socket = &self.cfg.socket;
        if let Some(dir) = socket.parent() {
            prepare_socket_dir(dir)?;
        }
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing old {}", socket.display()), e)),
        }
        let listener = UnixListener::bind(socket)
            .map_err(|e| Error::io(format!("binding {}", socket.display()), e))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod {}", socket.display()), e))?;
        Ok(listener)
    }

    /// Installs the plugin binary, then the conflist.
    pub fn install_cni(&self) -> Result<()> {
        if let Some(bin_dir) = &self.cfg.cni_bin_dir {
            let source = match &self.cfg.cni_plugin_source {
                Some(s) => s.clone(),
                None => std::env::current_exe()
                    .map_err(|e| Error::io("finding own executable", e))?
                    .with_file_name("switchyard-cni"),
            };
            let bytes = std::fs::read(&source)
                .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
            install_file(&bin_dir.join("switchyard-cni"), &bytes, 0o755)?;
        }
        if let Some(conf_dir) = &self.cfg.cni_conf_dir {
            let conf = cni::conflist(&self.cfg.network_name, &self.cfg.socket, Some(self.cfg.mtu));
            let text =
                serde_json::to_vec_pretty(&conf).map_err(|e| Error::Config(e.to_string()))?;
            install_file(&conf_dir.join("10-switchyard.conflist"), &text, 0o644)?;
        }
        Ok(())
    }

    /// Accepts connections until the listener fails; also starts the
    /// management port, node publishing, health check port and metrics
    /// tasks.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) -> Result<()> {
        // Kernel changes: the gateway bridge and the management port are
        // looked at again when links, addresses or routes move (their
        // devices come back empty when ovs-vswitchd's datapath went).
        let kicks = match gateway::monitor::start() {
            Ok(rx) => rx,
            Err(e) => {
                warn!(error = %e, "no netlink notifications; kernel state is checked every few seconds");
                tokio::sync::watch::channel(0).1
            }
        };
        {
            let d = self.clone();
            tokio::spawn(async move { d.publish_loop().await });
        }
        if self.cfg.mgmt_port {
            let (d, kicks) = (self.clone(), kicks.clone());
            tokio::spawn(async move { d.mgmt_loop(kicks).await });
        }
        if let Some(cfg) = self.cfg.gateway.clone() {
            let gw = Gateway {
                cfg,
                ovs: self.ovs.clone(),
                out: self.gateway.clone(),
                kicks,
                services: self
                    .services
                    .clone()
                    .filter(|_| self.cfg.health_check_ports),
            };
            tokio::spawn(gw.run());
        }
        if let (Some(source), Some(cfg)) = (self.services.clone(), self.cfg.udp_flush.clone()) {
            let flusher = crate::udp_flush::run::Flusher::new(cfg, self.ovs.clone());
            tokio::spawn(crate::udp_flush::run::run(
                source,
                flusher,
                self.metrics.clone(),
            ));
        }
        if let Some(source) = self
            .services
            .clone()
            .filter(|_| self.cfg.health_check_ports)
        {
            tokio::spawn(crate::health::server::run(
                source,
                self.cfg.node.clone(),
                crate::health::server::Bind::All,
                self.metrics.clone(),
            ));
        }
        match (&self.cfg.policy_counters, self.cfg.metrics_addr) {
            (Some(pc), Some(_)) => self.metrics.policy_counters().start(pc.clone()),
            (Some(_), None) => {
                info!("per-policy counters are off: nothing serves them without --metrics-address")
            }
            (None, _) => {
                info!("per-policy counters are off: they need --nb-remote and --sb-remote")
            }
        }
        if let Some(addr) = self.cfg.metrics_addr {
            let m = self.metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = m.serve(addr).await {
                    warn!(%addr, error = %e, "metrics endpoint failed");
                }
            });
        }
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| Error::io("accepting", e))?;
            let d = self.clone();
            tokio::spawn(async move { d.connection(stream).await });
        }
    }

    async fn connection(&self, mut stream: UnixStream) {
        // Whoever may call can plumb interfaces into any namespace, so the
        // socket's mode (0600 in a 0700 directory) is not the only guard:
        // the caller's credentials, as the kernel recorded them when it
        // connected, must be root's.
        let refused = match stream.peer_cred() {
            Ok(cred) if cred.uid() == 0 => None,
            Ok(cred) => Some(format!(
                "caller uid {} (pid {})",
                cred.uid(),
                cred.pid().map_or("unknown".into(), |p| p.to_string())
            )),
            Err(e) => Some(format!("cannot read the caller's credentials: {e}")),
        };
        let mut body = Vec::new();
        // The shim sends its request at once; a peer that never finishes
        // must not hold a task forever.
        let read = tokio::time::timeout(
            REQUEST_READ_TIMEOUT,
            (&mut stream).take(MAX_MESSAGE).read_to_end(&mut body),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        // The request is read (bounded, as any) before a refusal is sent:
        // closing a unix socket with unread data resets it, and the caller
        // would see that instead of the reason.
        let reply = if let Some(why) = refused {
            warn!(caller = %why, "refused a CNI request: only root may call");
            self.metrics.observe_request(
                "refused",
                &codes::PERMISSION_DENIED.to_string(),
                Duration::ZERO,
            );
            Reply::Err(
                CniError::new(
                    codes::PERMISSION_DENIED,
                    "permission denied: only root may call switchyard-node",
                )
                .details(why),
            )
        } else {
            match read {
                Err(e) => Reply::Err(
                    CniError::new(codes::IO_FAILURE, "reading the request failed")
                        .details(e.to_string()),
                ),
                Ok(_) => match serde_json::from_slice::<RawRequest>(&body) {
                    Err(e) => Reply::Err(
                        CniError::new(codes::DECODE_FAILURE, "malformed request from the shim")
                            .details(e.to_string()),
                    ),
                    Ok(raw) => self.handle(&raw).await,
                },
            }
        };
        let out = serde_json::to_vec(&reply).unwrap_or_default();
        if let Err(e) = stream.write_all(&out).await {
            warn!(error = %e, "cannot send the reply (the shim went away?)");
        }
        let _ = stream.shutdown().await;
    }

    /// Parses, dispatches and measures one request.
    pub async fn handle(&self, raw: &RawRequest) -> Reply {
        let started = Instant::now();
        let req = match cni::parse(raw) {
            Ok(r) => r,
            Err(e) => {
                let cmd = raw
                    .env
                    .get("CNI_COMMAND")
                    .map(String::as_str)
                    .unwrap_or("unknown");
                self.metrics
                    .observe_request(cmd, &e.code.to_string(), started.elapsed());
                return Reply::Err(e);
            }
        };
        let (ns, name) = req
            .pod
            .as_ref()
            .map(|p| (p.namespace.as_str(), p.name.as_str()))
            .unwrap_or(("", ""));
        let span = info_span!("cni", command = req.command.as_str(), pod = %format!("{ns}/{name}"), container = %req.container_id, ifname = %req.ifname);
        let mut phases = PhaseTimer::new(started);
        let out = async {
            let out = match req.command {
                Command::Add => self.add(&req, &mut phases).await.map(Some),
                Command::Del => self.del(&req).await.map(|()| None),
                Command::Check => self.check(&req).await.map(|()| None),
                Command::Gc => self.gc(&req).await.map(|()| None),
                Command::Status => self.status(&req).map(|()| None),
                Command::Version => Ok(Some(cni::version_info())),
            };
            match &out {
                Ok(_) if req.command == Command::Add => {
                    for (phase, took) in &phases.done {
                        self.metrics.observe_add_phase(phase, *took);
                    }
                    // One line per ADD with the split, for the benchmarks.
                    info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        annotation_ms = phases.ms("annotation"),
                        veth_ms = phases.ms("veth"),
                        attach_ms = phases.ms("attach"),
                        pod_side_ms = phases.ms("pod_side"),
                        ovs_ms = phases.ms("ovs"),
                        ovn_installed_ms = phases.ms("ovn_installed"),
                        result_ms = phases.ms("result"),
                        ovs_txns = phases.ovs_txns,
                        "done"
                    )
                }
                Ok(_) => info!(took_ms = started.elapsed().as_millis() as u64, "done"),
                Err(e) => {
                    warn!(took_ms = started.elapsed().as_millis() as u64, error = %e, "failed")
                }
            }
            out
        }
        .instrument(span)
        .await;
        match out {
            Ok(v) => {
                self.metrics
                    .observe_request(req.command.as_str(), "ok", started.elapsed());
                Reply::Ok(v)
            }
            Err(e) => {
                let e = e.to_cni(req.version());
                self.metrics.observe_request(
                    req.command.as_str(),
                    &e.code.to_string(),
                    started.elapsed(),
                );
                Reply::Err(e)
            }
        }
    }

    fn lock_for(&self, container: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Drop entries nobody holds, so the map does not grow forever.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(container.to_string()).or_default().clone()
    }

    fn status(&self, req: &Request) -> Result<()> {
        if !self.ovs.bridge_exists(&self.cfg.bridge) {
            return Err(req
                .error(
                    codes::NOT_AVAILABLE,
                    format!("bridge {} does not exist", self.cfg.bridge),
                )
                .into());
        }
        Ok(())
    }

    /// Waits until the pod (with the runtime's UID, when it gave one)
    /// carries a network annotation: reads the pod source, then again each
    /// time it reports a change (or after its recheck interval).
    ///
    /// A pod the source does not hold (yet), or holds only as another pod
    /// of the same name (its predecessor, while the local cache lags), is
    /// waited for. Once the pod was seen, its disappearance or replacement
    /// by another UID ends the wait at once with [`Error::PodGone`]: no
    /// annotation will ever come for it.
    async fn wait_annotation(&self, ns: &str, name: &str, uid: Option<&str>) -> Result<PodNetwork> {
        let started = Instant::now();
        let deadline = started + self.cfg.annotation_timeout;
        let pod = format!("{ns}/{name}");
        let mut changes = self.pods.changes();
        let mut last = Seen::Nothing;
        loop {
            // Subscribe before reading, so a change during the read is seen.
            changes.borrow_and_update();
            let now_seen = match self.pods.pod(ns, name).await {
                Ok(Some(info)) => {
                    let same_pod = match (uid, info.uid.as_deref()) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    };
                    if let (true, Some(text)) = (same_pod, info.network) {
                        return PodNetwork::parse(&text)
                            .map_err(|source| Error::Annotation { pod, source });
                    }
                    if same_pod {
                        Seen::Ours
                    } else {
                        Seen::Other(info.uid.unwrap_or_default())
                    }
                }
                Ok(None) => Seen::Nothing,
                Err(e) => {
                    warn!(error = %e, "pod source failed; retrying");
                    last.clone()
                }
            };
            // Seen, then gone or replaced: nothing will ever annotate it.
            match (&last, &now_seen) {
                (Seen::Ours, Seen::Nothing) => {
                    return Err(Error::PodGone {
                        pod,
                        uid: uid.map(str::to_string),
                        successor: None,
                    })
                }
                (Seen::Ours, Seen::Other(other)) => {
                    return Err(Error::PodGone {
                        pod,
                        uid: uid.map(str::to_string),
                        successor: Some(other.clone()),
                    })
                }
                _ => {}
            }
            if now_seen != last {
                match &now_seen {
                    Seen::Nothing => info!("pod not in the pod source yet; waiting for it"),
                    Seen::Ours => info!("pod seen; waiting for its network annotation"),
                    Seen::Other(have) => info!(
                        other_uid = %have,
                        "the pod source holds another pod of this name; waiting for ours"
                    ),
                }
                last = now_seen;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::AnnotationTimeout {
                    pod,
                    waited_ms: started.elapsed().as_millis(),
                });
            }
            let wait = self.pods.recheck_interval().min(deadline - now);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The source stopped reporting changes: poll.
                        tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn require_netns(req: &Request) -> Result<PathBuf> {
        let netns = req.netns.clone().ok_or_else(|| {
            req.error(
                codes::INVALID_ENVIRONMENT,
                "required env variables [CNI_NETNS] missing",
            )
        })?;
        if !netns.exists() {
            return Err(req
                .error(
                    codes::UNKNOWN_CONTAINER,
                    "the container's network namespace does not exist",
                )
                .details(netns.display().to_string())
                .into());
        }
        Ok(netns)
    }

    async fn add(&self, req: &Request, phases: &mut PhaseTimer) -> Result<Value> {
        let pod = req
            .pod
            .clone()
            .ok_or_else(|| req.error(codes::INVALID_ENVIRONMENT, "CNI_ARGS must name the pod"))?;
        let netns = Self::require_netns(req)?;
        let lock = self.lock_for(&req.container_id);
        let _guard = lock.lock().await;
        let net = self
            .wait_annotation(&pod.namespace, &pod.name, pod.uid.as_deref())
            .await?;
        phases.mark("annotation");
        let mac = netlink::parse_mac(&net.mac)
            .ok_or_else(|| Error::Config(format!("annotation MAC {:?} is invalid", net.mac)))?;
        let mtu = net.mtu.or(req.conf.mtu).unwrap_or(self.cfg.mtu);
        let host = naming::host_veth(&req.container_id, &req.ifname);
        let iface_id = names::pod_port(&pod.namespace, &pod.name);

        // A retried ADD for this container, or an older sandbox of the same
        // pod, leaves ports that must go before OVN binds the new one.
        let stale: Vec<OvsAttachment> = self.ovs.attachments_where(|a| {
            a.name == host
                || (a.iface_id == Some(iface_id.as_str())
                    && a.sandbox != Some(req.container_id.as_str()))
        });

        // The port goes in as soon as the pair's link is up (the pod end is
        // brought up first thing in its namespace): ovs-vswitchd opening it
        // and ovn-controller binding it and installing its flows (the slow
        // part) overlap with the rest of the pod's configuration (addresses,
        // routes), and OVS never sees the port's link change after it has
        // it. ADD returns when both are done.
        let txns = std::sync::atomic::AtomicU32::new(0);
        let attempt = async {
            let host_mac =
                netlink::create_veth(host.clone(), netns.clone(), req.ifname.clone(), mac, mtu)
                    .await?;
            phases.mark("veth");
            // The port goes in once the pod end is up (its carrier with
            // it): OVS then sees one port appear, not one that changes.
            let (up_tx, up_rx) = tokio::sync::oneshot::channel();
            let pod_side = async {
                let t = Instant::now();
                netlink::configure_pod(
                    netns.clone(),
                    PodInterface {
                        ifname: req.ifname.clone(),
                        mac,
                        mtu,
                        ips: net.ips.clone(),
                        gateways: net.gateways.clone(),
                        routes: net.routes.iter().map(|r| (r.dest, r.next_hop)).collect(),
                    },
                    up_tx,
                )
                .await?;
                Ok::<_, Error>(t.elapsed())
            };
            let port_side = async {
                let mut ids = BTreeMap::new();
                ids.insert(ext::IFACE_ID.to_string(), iface_id.clone());
                if let Some(uid) = &pod.uid {
                    ids.insert(ext::IFACE_ID_VER.to_string(), uid.clone());
                }
                ids.insert(ext::ATTACHED_MAC.to_string(), net.mac.clone());
                ids.insert(ext::SANDBOX.to_string(), req.container_id.clone());
                ids.insert(ext::IFNAME.to_string(), req.ifname.clone());
                ids.insert(ext::NETNS.to_string(), netns.display().to_string());
                ids.insert(
                    ext::POD.to_string(),
                    format!("{}/{}", pod.namespace, pod.name),
                );
                ids.insert(ext::OWNER.to_string(), ext::OWNER_VALUE.to_string());
                let stale_ports: Vec<_> = stale.iter().filter_map(|a| a.port).collect();
                // A pod side that failed before it fails the ADD anyway.
                let _ = up_rx.await;
                // The kernel reports the carrier as running a moment after
                // the link came up (its link watcher); OVS reads it when it
                // opens the port, so wait (bounded) until it does.
                let deadline = Instant::now() + LINK_RUNNING_WAIT;
                while !ethtool::link_running(&host).unwrap_or(true) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let t = Instant::now();
                self.ovs
                    .add_port(
                        &self.cfg.bridge,
                        &PortSpec {
                            name: host.clone(),
                            iface_type: String::new(),
                            mac: None,
                            external_ids: ids,
                        },
                        &stale_ports,
                    )
                    .await?;
                txns.fetch_add(1, Ordering::Relaxed);
                let ovs = t.elapsed();
                let waiting = Instant::now();
                let installed = self
                    .ovs
                    .wait_installed(&host, self.cfg.install_timeout)
                    .await?;
                self.metrics.observe_ovn_installed_wait(waiting.elapsed());
                if !installed {
                    return Err(Error::OvnInstallTimeout {
                        port: iface_id.clone(),
                        waited_ms: waiting.elapsed().as_millis(),
                    });
                }
                Ok((ovs, waiting.elapsed()))
            };
            // The first failure wins; the other half is abandoned and
            // `undo_add` removes whatever either half created.
            let (pod_took, (ovs_took, installed_took)) = tokio::try_join!(pod_side, port_side)?;
            phases.ovs_txns += txns.load(Ordering::Relaxed);
            phases.mark("attach");
            phases.record("pod_side", pod_took);
            phases.record("ovs", ovs_took);
            phases.record("ovn_installed", installed_took);
            Ok(host_mac)
        };
        let host_mac = match attempt.await {
            Ok(m) => m,
            Err(e) => {
                self.undo_add(&host, &netns, &req.ifname).await;
                return Err(e);
            }
        };
        let old_veths: Vec<String> = stale
            .iter()
            .map(|a| a.name.clone())
            .filter(|n| *n != host)
            .collect();
        if !old_veths.is_empty() {
            if let Err(e) = netlink::delete_host_links(old_veths).await {
                warn!(error = %e, "cannot delete a stale veth");
            }
        }

        let mut result = CniResult {
            interfaces: vec![
                cni::Interface {
                    name: host.clone(),
                    mac: host_mac
                        .map(|m| netlink::format_mac(&m))
                        .unwrap_or_default(),
                    mtu: Some(mtu),
                    sandbox: None,
                },
                cni::Interface {
                    name: req.ifname.clone(),
                    mac: net.mac.clone(),
                    mtu: Some(mtu),
                    sandbox: Some(netns.display().to_string()),
                },
            ],
            ips: net
                .ips
                .iter()
                .map(|ip| IpConfig {
                    address: *ip,
                    gateway: net.gateways.iter().find(|g| ip.contains(*g)).copied(),
                    interface: Some(1),
                })
                .collect(),
            routes: vec![],
            dns: Default::default(),
        };
        for gw in &net.gateways {
            let any = match gw {
                IpAddr::V4(_) => IpNet::V4(Default::default()),
                IpAddr::V6(_) => IpNet::V6(Default::default()),
            };
            result.routes.push(RouteEntry {
                dst: any,
                gw: Some(*gw),
            });
        }
        for r in &net.routes {
            result.routes.push(RouteEntry {
                dst: r.dest,
                gw: Some(r.next_hop),
            });
        }
        if let Some(prev) = &req.conf.prev_result {
            result = result.chain_onto(prev);
        }
        let out = result.to_json(req.version());
        phases.mark("result");
        Ok(out)
    }

    /// Best-effort cleanup after a failed ADD: nothing is left behind.
    async fn undo_add(&self, host: &str, netns: &Path, ifname: &str) {
        if let Some(att) = self.ovs.interface(host) {
            if let Err(e) = self
                .ovs
                .remove_ports(&att.port.into_iter().collect::<Vec<_>>())
                .await
            {
                warn!(port = host, error = %e, "cleanup: cannot remove port");
            }
        }
        // Deleting the host end deletes the pod end with it.
        if let Err(e) = netlink::delete_host_links(vec![host.to_string()]).await {
            warn!(veth = host, error = %e, "cleanup: cannot delete veth");
        }
        let (ns, name) = (netns.to_path_buf(), ifname.to_string());
        let _ = netlink::run_in(Some(&ns), move |h| async move {
            netlink::delete_link(&h, &name).await
        })
        .await;
    }

    /// The attachments OVS records for (container, ifname).
    fn attachments_of(&self, container: &str, ifname: &str) -> Vec<OvsAttachment> {
        let host = naming::host_veth(container, ifname);
        self.ovs.attachments_where(|a| {
            a.name == host || (a.sandbox == Some(container) && a.ifname == Some(ifname))
        })
    }

    async fn teardown(&self, atts: &[OvsAttachment], extra_veth: Option<String>) -> Result<()> {
        let ports: Vec<_> = atts.iter().filter_map(|a| a.port).collect();
        self.ovs.remove_ports(&ports).await?;
        crate::testhook::pause_point(crate::testhook::TEARDOWN_BETWEEN_OVS_AND_VETH).await;
        let mut veths: Vec<String> = atts.iter().map(|a| a.name.clone()).collect();
        veths.extend(extra_veth);
        veths.sort();
        veths.dedup();
        netlink::delete_host_links(veths).await
    }

    async fn del(&self, req: &Request) -> Result<()> {
        let lock = self.lock_for(&req.container_id);
        let _guard = lock.lock().await;
        let atts = self.attachments_of(&req.container_id, &req.ifname);
        // Deleting the host end removes the pod end with it; a missing
        // namespace, port or veth is simply already done.
        self.teardown(
            &atts,
            Some(naming::host_veth(&req.container_id, &req.ifname)),
        )
        .await
    }

    async fn check(&self, req: &Request) -> Result<()> {
        let pod = req
            .pod
            .clone()
            .ok_or_else(|| req.error(codes::INVALID_ENVIRONMENT, "CNI_ARGS must name the pod"))?;
        let netns = Self::require_netns(req)?;
        let prev = req
            .conf
            .prev_result
            .clone()
            .ok_or_else(|| req.error(codes::INVALID_CONFIG, "CHECK needs prevResult"))?;
        let lock = self.lock_for(&req.container_id);
        let _guard = lock.lock().await;
        let atts = self.attachments_of(&req.container_id, &req.ifname);
        let att = atts
            .first()
            .ok_or_else(|| Error::Check("no OVS port for this container".into()))?;
        let iface_id = names::pod_port(&pod.namespace, &pod.name);
        if att.iface_id.as_deref() != Some(iface_id.as_str()) {
            return Err(Error::Check(format!(
                "port {} is bound to {:?}, not {iface_id}",
                att.name, att.iface_id
            )));
        }
        if att.port.is_none() {
            return Err(Error::Check(format!(
                "interface {} is on no bridge",
                att.name
            )));
        }
        if !att.installed {
            return Err(Error::Check(format!(
                "port {} is not ovn-installed",
                att.name
            )));
        }
        if !netlink::host_link_exists(att.name.clone()).await? {
            return Err(Error::Check(format!("host veth {} is missing", att.name)));
        }
        let state = netlink::inspect_in(netns.clone(), req.ifname.clone())
            .await?
            .ok_or_else(|| Error::Check(format!("{} is missing in the pod", req.ifname)))?;
        if !state.up {
            return Err(Error::Check(format!("{} is down", req.ifname)));
        }
        let ours = prev
            .interfaces
            .iter()
            .position(|i| i.name == req.ifname && i.sandbox.is_some());
        if let Some(i) = ours {
            let want = netlink::parse_mac(&prev.interfaces[i].mac);
            if want.is_some() && want != state.mac {
                return Err(Error::Check(format!(
                    "{} has MAC {:?}, expected {}",
                    req.ifname,
                    state.mac.map(|m| netlink::format_mac(&m)),
                    prev.interfaces[i].mac
                )));
            }
        }
        for ip in prev
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == ours)
        {
            if !state.ips.contains(&ip.address) {
                return Err(Error::Check(format!(
                    "{} lacks address {}",
                    req.ifname, ip.address
                )));
            }
        }
        Ok(())
    }

    async fn gc(&self, req: &Request) -> Result<()> {
        let valid: HashSet<(String, String)> = req
            .conf
            .valid_attachments
            .as_ref()
            .ok_or_else(|| req.error(codes::INVALID_CONFIG, "GC needs cni.dev/valid-attachments"))?
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let mut failures = Vec::new();
        for att in self.ovs.attachments() {
            let (Some(sandbox), Some(ifname)) = (att.sandbox.clone(), att.ifname.clone()) else {
                continue;
            };
            if valid.contains(&(sandbox.clone(), ifname)) {
                continue;
            }
            // An operation in progress on this container wins over GC.
            let lock = self.lock_for(&sandbox);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            info!(port = %att.name, pod = att.pod.as_deref().unwrap_or("?"), container = %sandbox, "GC: removing attachment");
            if let Err(e) = self.teardown(std::slice::from_ref(&att), None).await {
                failures.push(format!("{}: {e}", att.name));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::OvsState(format!(
                "GC failed for {}",
                failures.join("; ")
            )))
        }
    }

    /// Creates and configures the management port, retrying until the node
    /// has subnets and OVS has created the interface; then keeps it so:
    /// looks again whenever the kernel's links or addresses change (the
    /// interface comes back empty when `ovs-vswitchd`'s datapath went),
    /// and every minute.
    async fn mgmt_loop(&self, mut kicks: tokio::sync::watch::Receiver<u64>) {
        let mut logged = false;
        // The plan is read from the node's subnets (an API read with the
        // kube source): once, then every minute, never per kernel change.
        let mut plan: Option<mgmt::MgmtPlan> = None;
        loop {
            let step = async {
                if plan.is_none() {
                    let subnets = self.pods.node_subnets(&self.cfg.node).await?;
                    let routed: Vec<IpNet> = self
                        .cfg
                        .cluster_cidrs
                        .iter()
                        .chain(&self.cfg.service_cidrs)
                        .copied()
                        .collect();
                    plan = mgmt::plan(&subnets, &routed);
                }
                match &plan {
                    Some(p) => self.setup_mgmt(p).await,
                    None => Ok(false),
                }
            };
            match step.await {
                Ok(true) => {
                    if !self.mgmt_ready.swap(true, Ordering::Relaxed) {
                        info!(interface = names::MGMT_INTERFACE, "management port ready");
                    }
                    logged = false;
                    tokio::select! {
                        r = kicks.changed() => {
                            if r.is_err() {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            // A burst of changes (a pod's veth) is one look.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            kicks.borrow_and_update();
                        }
                        _ = tokio::time::sleep(Duration::from_secs(60)) => plan = None,
                    }
                    continue;
                }
                Ok(false) => plan = None,
                Err(e) if !logged => {
                    warn!(error = %e, "management port not ready; retrying");
                    logged = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes [`node_annotations`] on the node's Node: at start-up,
    /// then whenever the `Open_vSwitch` row or the gateway bridge change
    /// what they would be; failures are retried with back-off (CNI
    /// requests do not wait for this).
    async fn publish_loop(&self) {
        const BACKOFF_MIN: Duration = Duration::from_millis(200);
        const BACKOFF_MAX: Duration = Duration::from_secs(30);
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        let mut published: Option<Annotations> = None;
        let mut gateway = self.gateway.subscribe();
        loop {
            let gw = gateway.borrow_and_update().clone();
            let wanted = node_annotations(&self.ovs.node_ids(), gw.as_ref());
            if wanted.is_empty() {
                // Nothing known yet (no system-id): nothing to say.
                published = Some(wanted);
            } else if published.as_ref() != Some(&wanted) {
                match self.publisher.publish(&wanted).await {
                    Ok(what) => {
                        info!(
                            annotations = ?wanted,
                            written = what == Published::Written,
                            "node annotations published"
                        );
                        published = Some(wanted);
                        backoff = BACKOFF_MIN;
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "cannot publish node annotations; retrying");
                            failing = true;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            // Until the OVS row or the gateway says something else
            // (checked hourly too).
            let current = published.clone().unwrap_or_default();
            let gw_now = gw.clone();
            let chassis_only =
                move |ids: &BTreeMap<String, String>| node_annotations(ids, gw_now.as_ref());
            tokio::select! {
                r = self.ovs.wait_node_ids_change(Duration::from_secs(3600), &current, chassis_only) => {
                    if let Err(e) = r {
                        warn!(error = %e, "watching the Open_vSwitch row failed");
                        tokio::time::sleep(BACKOFF_MAX).await;
                    }
                }
                r = gateway.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(BACKOFF_MAX).await;
                    }
                }
            }
        }
    }

    pub fn mgmt_ready(&self) -> bool {
        self.mgmt_ready.load(Ordering::Relaxed)
    }

    /// Makes the management port as `plan` says; `Ok(false)` while OVS has
    /// not created its interface yet.
    async fn setup_mgmt(&self, plan: &mgmt::MgmtPlan) -> Result<bool> {
        let iface_id = names::mgmt_port(&self.cfg.node);
        let current = self.ovs.interface(names::MGMT_INTERFACE);
        let ok = current
            .as_ref()
            .is_some_and(|c| c.iface_id.as_deref() == Some(iface_id.as_str()) && c.port.is_some());
        if !ok {
            let stale: Vec<_> = current.iter().filter_map(|c| c.port).collect();
            let mut ids = BTreeMap::new();
            ids.insert(ext::IFACE_ID.to_string(), iface_id.clone());
            ids.insert(ext::ATTACHED_MAC.to_string(), plan.mac.clone());
            ids.insert(names::NODE.to_string(), self.cfg.node.clone());
            self.ovs
                .add_port(
                    &self.cfg.bridge,
                    &PortSpec {
                        name: names::MGMT_INTERFACE.to_string(),
                        iface_type: "internal".into(),
                        mac: Some(plan.mac.clone()),
                        external_ids: ids,
                    },
                    &stale,
                )
                .await?;
        }
        let mac = netlink::parse_mac(&plan.mac)
            .ok_or_else(|| Error::Config(format!("bad MAC {}", plan.mac)))?;
        // Already as planned: write nothing (writes are kernel changes,
        // which would bring this loop straight back here). Its routes go
        // only with its addresses, when the device is recreated.
        let name = names::MGMT_INTERFACE.to_string();
        let state = netlink::run_in(
            None,
            move |h| async move { netlink::inspect(&h, &name).await },
        )
        .await?;
        if let Some(st) = state {
            if ok
                && st.up
                && st.mac == Some(mac)
                && st.mtu == Some(self.cfg.mtu)
                && plan.addresses.iter().all(|a| st.ips.contains(a))
            {
                return Ok(true);
            }
        }
        let configured = netlink::configure_host_link(
            names::MGMT_INTERFACE.to_string(),
            mac,
            self.cfg.mtu,
            plan.addresses.clone(),
            plan.routes.clone(),
        )
        .await?;
        Ok(configured)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn socket_dir_is_made_private_and_must_be_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run").join("cni");
        prepare_socket_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // Loosened since: made private again.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare_socket_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // A symlink to a directory, even our own, is refused.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = prepare_socket_dir(&link).unwrap_err().to_string();
        assert!(err.contains("not a symlink"), "{err}");
        // Someone else's directory is refused (changing owners needs root).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            let err = prepare_socket_dir(&dir).unwrap_err().to_string();
            assert!(err.contains("owned by uid 0"), "{err}");
        }
    }
}
