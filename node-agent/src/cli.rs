//! `switchyard-node`'s command line, in the library so that tools and tests
//! (the manifests' tests run it on the DaemonSet's arguments) parse exactly
//! what the binary parses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ipnet::IpNet;

/// The daemon's flags (see `--help`).
#[derive(Parser, Debug)]
#[command(version, about = "Switchyard node agent: the CNI plugin's server")]
pub struct Args {
    /// This node's name (the Kubernetes Node, OVN chassis system-id).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Unix socket the CNI shim connects to.
    #[arg(long, default_value = crate::protocol::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The node's Open vSwitch database.
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    pub ovs_remote: String,
    /// OVN southbound database, written as external_ids:ovn-remote.
    #[arg(long)]
    pub sb_remote: Option<String>,
    /// OVN northbound database (the controller's), read for the policy
    /// counters on /metrics (`switchyard_networkpolicy_*`); without it
    /// (or without --sb-remote) they are off.
    #[arg(long)]
    pub nb_remote: Option<String>,
    /// CA certificate, client certificate and client key for `ssl:`
    /// --nb-remote/--sb-remote connections of the policy counters (all
    /// three, or none).
    #[arg(long, requires_all = ["ovn_client_cert", "ovn_client_key"])]
    pub ovn_ca_cert: Option<PathBuf>,
    #[arg(long, requires_all = ["ovn_ca_cert", "ovn_client_key"])]
    pub ovn_client_cert: Option<PathBuf>,
    #[arg(long, requires_all = ["ovn_ca_cert", "ovn_client_cert"])]
    pub ovn_client_key: Option<PathBuf>,
    /// Seconds between collections of the policy counters (scrapes also
    /// refresh them, at most once a second).
    #[arg(long, default_value_t = 10)]
    pub policy_counters_interval: u64,
    #[arg(long, default_value = "geneve")]
    pub encap_type: String,
    /// Tunnel endpoint address (external_ids:ovn-encap-ip).
    #[arg(long)]
    pub encap_ip: Option<String>,
    /// `netdev` for the userspace datapath, `system` for the kernel one.
    #[arg(long)]
    pub datapath_type: Option<String>,
    #[arg(long, default_value = "br-int")]
    pub bridge: String,
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// Do not install the conflist and plugin binary.
    #[arg(long)]
    pub no_install: bool,
    /// The switchyard-cni binary to install (default: beside this binary).
    #[arg(long)]
    pub cni_plugin_source: Option<PathBuf>,
    #[arg(long, default_value = "switchyard")]
    pub network_name: String,
    /// Pod interface MTU when the annotation gives none.
    #[arg(long, default_value_t = 1400)]
    pub mtu: u32,
    /// Cluster pod CIDRs (comma separated), routed via the management port.
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidrs: Vec<IpNet>,
    /// Service CIDRs (comma separated), routed via the management port too,
    /// so the node's host reaches ClusterIPs (its connections enter the
    /// node switch, whose load balancers hold them).
    #[arg(long, value_delimiter = ',')]
    pub service_cidrs: Vec<IpNet>,
    /// The API server's `--service-node-port-range`: the host's own
    /// connections to these ports on its addresses are routed to OVN's
    /// load balancers through the management port (policy routing rules
    /// ahead of the `local` table's, whose rule moves from preference 0 to
    /// 100).
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: (u16, u16),
    /// Leave the host's connections to NodePorts on its own addresses (and
    /// its routing rules) alone.
    #[arg(long)]
    pub no_own_node_ports: bool,
    /// Do not create the management port.
    #[arg(long)]
    pub no_mgmt_port: bool,
    /// The gateway bridge: the OVS bridge carrying the node IP and uplink,
    /// shared with the node's gateway router (default: the OVS bridge the
    /// default route leaves through).
    #[arg(long)]
    pub gateway_bridge: Option<String>,
    /// The gateway bridge's uplink port; when the bridge does not exist,
    /// the interface it is created from (taking its addresses and routes).
    #[arg(long)]
    pub gateway_interface: Option<String>,
    /// Run without a gateway bridge (pods cannot leave the cluster).
    #[arg(long)]
    pub no_gateway: bool,
    /// Open vSwitch's run directory, where `<bridge>.mgmt` OpenFlow sockets
    /// are (default: the directory of a `unix:` --ovs-remote).
    #[arg(long)]
    pub ovs_rundir: Option<PathBuf>,
    /// `kube` (watch the API server; annotate this Node through it) or
    /// `dir:/path` (JSON files, and `node-annotations.json` written there;
    /// tests and the e2e sandbox).
    #[arg(long, default_value = "kube")]
    pub pod_source: String,
    #[arg(long, default_value_t = 30_000)]
    pub annotation_timeout_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    pub ovn_install_timeout_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    pub startup_timeout_ms: u64,
    /// Do not answer Services' health check ports (`healthCheckNodePort`
    /// of `externalTrafficPolicy: Local` LoadBalancers), e.g. where
    /// kube-proxy still runs and answers them.
    #[arg(long)]
    pub no_health_check_ports: bool,
    /// Do not flush the conntrack entries of removed UDP/SCTP Service
    /// backends (OVN's own flush of them still happens; see
    /// `switchyard_node::udp_flush`). With --no-health-check-ports too,
    /// the agent reads no Services or EndpointSlices.
    #[arg(long)]
    pub no_udp_conntrack_flush: bool,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long)]
    pub metrics_address: Option<SocketAddr>,
}

/// Parses a command line (`args[0]` is the program name) without exiting
/// the process: `--help` and `--version` come back as errors of their kind.
pub fn parse_args<I, T>(args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Args::try_parse_from(args)
}

/// `FIRST-LAST`, as kube-apiserver's `--service-node-port-range` reads.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range such as 30000-32767");
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod port_range_tests {
    use super::parse_port_range;

    #[test]
    fn reads_the_api_servers_form() {
        assert_eq!(parse_port_range("30000-32767"), Ok((30000, 32767)));
        assert_eq!(parse_port_range(" 20000 - 20010 "), Ok((20000, 20010)));
        for bad in ["", "30000", "2-1", "0-5", "a-b", "30000-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }
}
