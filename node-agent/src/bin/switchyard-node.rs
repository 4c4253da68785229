//! `switchyard-node`: the node agent daemon. See `switchyard_node::daemon`
//! for what it does at start-up and per request, and
//! `switchyard_node::pod_source` for `--pod-source`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use switchyard_node::daemon::{Config, Daemon};
use switchyard_node::node_publisher::{DirPublisher, KubePublisher, NodePublisher};
use switchyard_node::pod_source::{DirSource, KubeSource, PodSource};

#[derive(Parser, Debug)]
#[command(version, about = "Switchyard node agent: the CNI plugin's server")]
struct Args {
    /// This node's name (the Kubernetes Node, OVN chassis system-id).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Unix socket the CNI shim connects to.
    #[arg(long, default_value = switchyard_node::protocol::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The node's Open vSwitch database.
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    ovs_remote: String,
    /// OVN southbound database, written as external_ids:ovn-remote.
    #[arg(long)]
    sb_remote: Option<String>,
    #[arg(long, default_value = "geneve")]
    encap_type: String,
    /// Tunnel endpoint address (external_ids:ovn-encap-ip).
    #[arg(long)]
    encap_ip: Option<String>,
    /// `netdev` for the userspace datapath, `system` for the kernel one.
    #[arg(long)]
    datapath_type: Option<String>,
    #[arg(long, default_value = "br-int")]
    bridge: String,
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Do not install the conflist and plugin binary.
    #[arg(long)]
    no_install: bool,
    /// The switchyard-cni binary to install (default: beside this binary).
    #[arg(long)]
    cni_plugin_source: Option<PathBuf>,
    #[arg(long, default_value = "switchyard")]
    network_name: String,
    /// Pod interface MTU when the annotation gives none.
    #[arg(long, default_value_t = 1400)]
    mtu: u32,
    /// Cluster pod CIDRs (comma separated), routed via the management port.
    #[arg(long, value_delimiter = ',')]
    cluster_cidrs: Vec<IpNet>,
    /// Do not create the management port.
    #[arg(long)]
    no_mgmt_port: bool,
    /// `kube` (watch the API server; annotate this Node through it) or
    /// `dir:/path` (JSON files, and `node-annotations.json` written there;
    /// tests and the e2e sandbox).
    #[arg(long, default_value = "kube")]
    pod_source: String,
    #[arg(long, default_value_t = 30_000)]
    annotation_timeout_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    ovn_install_timeout_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    startup_timeout_ms: u64,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (pods, publisher): (Arc<dyn PodSource>, Arc<dyn NodePublisher>) =
        match args.pod_source.as_str() {
            "kube" => {
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the Kubernetes API")?;
                (
                    KubeSource::start(client.clone(), &args.node_name),
                    Arc::new(KubePublisher::new(client, &args.node_name)),
                )
            }
            other => match other.strip_prefix("dir:") {
                Some(dir) if !dir.is_empty() => (
                    Arc::new(DirSource::new(dir)),
                    Arc::new(DirPublisher::new(dir)),
                ),
                _ => anyhow::bail!("--pod-source must be `kube` or `dir:/path`, not {other:?}"),
            },
        };
    let mut cfg = Config::new(args.node_name);
    cfg.socket = args.socket;
    cfg.ovs_remote = args.ovs_remote;
    cfg.sb_remote = args.sb_remote;
    cfg.encap_type = args.encap_type;
    cfg.encap_ip = args.encap_ip;
    cfg.datapath_type = args.datapath_type;
    cfg.bridge = args.bridge;
    cfg.cni_conf_dir = (!args.no_install).then_some(args.cni_conf_dir);
    cfg.cni_bin_dir = (!args.no_install).then_some(args.cni_bin_dir);
    cfg.cni_plugin_source = args.cni_plugin_source;
    cfg.network_name = args.network_name;
    cfg.mtu = args.mtu;
    cfg.cluster_cidrs = args.cluster_cidrs;
    cfg.mgmt_port = !args.no_mgmt_port;
    cfg.annotation_timeout = Duration::from_millis(args.annotation_timeout_ms);
    cfg.install_timeout = Duration::from_millis(args.ovn_install_timeout_ms);
    cfg.startup_timeout = Duration::from_millis(args.startup_timeout_ms);
    cfg.metrics_addr = args.metrics_address;
    Daemon::run(cfg, pods, publisher)
        .await
        .context("switchyard-node failed")
}
