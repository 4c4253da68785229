//! `switchyard-node`: the node agent daemon. See `switchyard_node::daemon`
//! for what it does at start-up and per request, and
//! `switchyard_node::pod_source` for `--pod-source`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_node::cli::Args;
use switchyard_node::daemon::{ovs_rundir, Config, Daemon};
use switchyard_node::gateway::GatewayConfig;
use switchyard_node::node_publisher::{DirPublisher, KubePublisher, NodePublisher};
use switchyard_node::pod_source::{DirSource, KubeSource, PodSource};
use switchyard_node::service_source::{DirServiceSource, KubeServiceSource, ServiceSource};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Services and EndpointSlices are read for the health check ports and
    // for the conntrack flushes of removed UDP backends.
    let read_services = !args.no_health_check_ports || !args.no_udp_conntrack_flush;
    type Sources = (
        Arc<dyn PodSource>,
        Arc<dyn NodePublisher>,
        Option<Arc<dyn ServiceSource>>,
    );
    let (pods, publisher, services): Sources = match args.pod_source.as_str() {
        "kube" => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            (
                KubeSource::start(client.clone(), &args.node_name),
                Arc::new(KubePublisher::new(client.clone(), &args.node_name)),
                read_services.then(|| KubeServiceSource::start(client) as Arc<dyn ServiceSource>),
            )
        }
        other => match other.strip_prefix("dir:") {
            Some(dir) if !dir.is_empty() => (
                Arc::new(DirSource::new(dir)),
                Arc::new(DirPublisher::new(dir)),
                read_services
                    .then(|| Arc::new(DirServiceSource::new(dir)) as Arc<dyn ServiceSource>),
            ),
            _ => anyhow::bail!("--pod-source must be `kube` or `dir:/path`, not {other:?}"),
        },
    };
    let mut cfg = Config::new(args.node_name);
    cfg.socket = args.socket;
    cfg.ovs_remote = args.ovs_remote;
    cfg.policy_counters = match (&args.nb_remote, &args.sb_remote) {
        (Some(nb), Some(sb)) => Some(switchyard_node::policy_metrics::Config {
            nb_remote: nb.clone(),
            sb_remote: sb.clone(),
            ovs_rundir: args
                .ovs_rundir
                .clone()
                .unwrap_or_else(|| ovs_rundir(&cfg.ovs_remote)),
            bridge: args.bridge.clone(),
            interval: Duration::from_secs(args.policy_counters_interval.max(1)),
            tls: match (
                &args.ovn_ca_cert,
                &args.ovn_client_cert,
                &args.ovn_client_key,
            ) {
                (Some(ca), Some(cert), Some(key)) => Some(ovsdb::TlsConfig {
                    ca_cert: ca.clone(),
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
                _ => None,
            },
        }),
        _ => None,
    };
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
    cfg.service_cidrs = args.service_cidrs;
    cfg.mgmt_port = !args.no_mgmt_port;
    cfg.health_check_ports = !args.no_health_check_ports;
    cfg.udp_flush =
        (!args.no_udp_conntrack_flush).then(|| switchyard_node::udp_flush::run::Config {
            bridge: cfg.bridge.clone(),
            ovs_rundir: args
                .ovs_rundir
                .clone()
                .unwrap_or_else(|| ovs_rundir(&cfg.ovs_remote)),
        });
    cfg.gateway = (!args.no_gateway).then(|| GatewayConfig {
        node: cfg.node.clone(),
        bridge: args.gateway_bridge,
        interface: args.gateway_interface,
        integration_bridge: cfg.bridge.clone(),
        ovs_rundir: args
            .ovs_rundir
            .unwrap_or_else(|| ovs_rundir(&cfg.ovs_remote)),
        datapath_type: cfg.datapath_type.clone(),
        node_port_range: (!args.no_own_node_ports).then_some(args.service_node_port_range),
    });
    cfg.annotation_timeout = Duration::from_millis(args.annotation_timeout_ms);
    cfg.install_timeout = Duration::from_millis(args.ovn_install_timeout_ms);
    cfg.startup_timeout = Duration::from_millis(args.startup_timeout_ms);
    cfg.metrics_addr = args.metrics_address;
    Daemon::run(cfg, pods, publisher, services)
        .await
        .context("switchyard-node failed")
}
