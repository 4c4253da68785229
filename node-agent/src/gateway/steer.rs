//! Which connections arriving on the uplink belong to the gateway router
//! rather than to the node's host: the Services' node ports on the node's
//! own addresses, and the LoadBalancer and external IPs routed to the
//! node. Pure data from the Services the agent watches.
//!
//! The host and the gateway router share the node IP, so without these
//! the bridge would hand a client's connection to a NodePort to the host's
//! stack, which has nothing listening (kube-proxy is absent). The gateway
//! router holds the load balancers for them (the controller attaches the
//! node-port and external groups to it), so the bridge only has to send
//! such a connection there; its replies come back out of the patch port
//! on the same conntrack entry.
//!
//! Families follow each Service's `ipFamilies`: a single-stack IPv4
//! Service's node port is steered on the node's IPv4 address only, so an
//! IPv6 connection to the same port still reaches the host.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// IP protocol numbers of the Service protocols.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;

/// What the bridge sends to the gateway router.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steering {
    /// (node address, IP protocol, node port).
    pub node_ports: BTreeSet<(IpAddr, u8, u16)>,
    /// LoadBalancer ingress IPs and external IPs: every protocol and port.
    pub vips: BTreeSet<IpAddr>,
}

fn protocol(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(TCP),
        "UDP" => Some(UDP),
        "SCTP" => Some(SCTP),
        _ => None,
    }
}

/// The steering `services` call for on a node with addresses `node_ips`.
/// Anything malformed (an unknown protocol, an unparsable IP, a port out
/// of range) is left out: the controller reports it on the Service.
pub fn steering(services: &[Service], node_ips: &[IpAddr]) -> Steering {
    let mut out = Steering::default();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !matches!(type_, "NodePort" | "LoadBalancer" | "ClusterIP") {
            continue;
        }
        let families: Vec<bool> = spec
            .ip_families
            .iter()
            .flatten()
            .map(|f| f == "IPv4")
            .collect();
        let in_family = |ip: &IpAddr| families.is_empty() || families.contains(&ip.is_ipv4());
        if type_ != "ClusterIP" {
            for port in spec.ports.iter().flatten() {
                let (Some(proto), Some(np)) = (
                    protocol(port.protocol.as_deref()),
                    port.node_port.and_then(|n| u16::try_from(n).ok()),
                ) else {
                    continue;
                };
                if np == 0 {
                    continue;
                }
                for ip in node_ips.iter().filter(|ip| in_family(ip)) {
                    out.node_ports.insert((*ip, proto, np));
                }
            }
        }
        let external = spec.external_ips.iter().flatten().map(String::as_str);
        let ingress: Vec<&str> = if type_ == "LoadBalancer" {
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref())
                .collect()
        } else {
            vec![]
        };
        for ip in external.chain(ingress) {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                // A node's own address is the host's, whatever a Service says.
                if !node_ips.contains(&ip) {
                    out.vips.insert(ip);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    #[test]
    fn node_ports_per_family_and_vips() {
        let ips: Vec<IpAddr> = vec!["198.18.0.11".parse().unwrap(), "fd00::11".parse().unwrap()];
        let services = [
            svc(serde_json::json!({"metadata": {"name": "np"}, "spec": {
                "type": "NodePort", "ipFamilies": ["IPv4"],
                "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053},
                          {"port": 9, "protocol": "BOGUS", "nodePort": 30009}]}})),
            svc(serde_json::json!({"metadata": {"name": "lb"}, "spec": {
                "type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"], "externalIPs": ["203.0.113.9", "nonsense"],
                "ports": [{"port": 443, "nodePort": 31443}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}, {"hostname": "x"}]}}})),
            svc(serde_json::json!({"metadata": {"name": "cip"}, "spec": {
                "type": "ClusterIP", "externalIPs": ["198.18.0.11", "203.0.113.10"],
                "ports": [{"port": 80}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}})),
        ];
        let s = steering(&services, &ips);
        let v4 = ips[0];
        let v6 = ips[1];
        let want: BTreeSet<(IpAddr, u8, u16)> = [
            (v4, TCP, 30080),
            (v4, UDP, 30053),
            (v4, TCP, 31443),
            (v6, TCP, 31443),
        ]
        .into();
        assert_eq!(s.node_ports, want);
        let vips: Vec<String> = s.vips.iter().map(|i| i.to_string()).collect();
        // The ClusterIP Service's status is not an ingress (only
        // LoadBalancers have one), and a node's own address stays the host's.
        assert_eq!(vips, ["192.0.2.7", "203.0.113.9", "203.0.113.10"]);
    }
}
