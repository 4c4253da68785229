//! Annotation keys and the JSON shapes behind them.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Pod annotation written by the controller, read by the node agent: the
/// pod's addresses, MAC, gateways and routes ([`PodNetwork`]).
pub const POD_NETWORK: &str = "switchyard.io/pod-network";

/// Pod annotation a user sets to ask for specific addresses: a comma
/// separated list of IPs, at most one per family.
pub const REQUESTED_IPS: &str = "switchyard.io/ip-addresses";

/// Node annotation holding the node's pod subnets ([`NodeSubnets`]) when
/// Kubernetes did not set `spec.podCIDRs`.
pub const NODE_SUBNETS: &str = "switchyard.io/node-subnets";

/// Node annotation written by the node agent on its own Node: its OVN
/// chassis name (the node's Open_vSwitch `external_ids:system-id`, which is
/// the SB `Chassis` row's `name`). Republished when the system-id changes.
pub const NODE_CHASSIS: &str = "switchyard.io/chassis-id";

/// Namespace annotation switching ACL logging on for the NetworkPolicies
/// of the namespace: `{"deny":"info","allow":"info"}` (syslog severities
/// `alert`, `warning`, `notice`, `info`, `debug`; a missing key leaves that
/// action unlogged).
pub const ACL_LOGGING: &str = "switchyard.io/acl-logging";

/// Node annotation written by the node agent on its own Node: its gateway
/// bridge as the controller needs it to build the node's gateway router
/// ([`NodeGateway`]). Republished when the bridge's MAC, addresses or
/// default routes change.
pub const NODE_GATEWAY: &str = "switchyard.io/gateway";

/// A node's gateway bridge: the OVS bridge that carries the node's IP and
/// its uplink, which the node's host stack and its gateway router share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGateway {
    /// The bridge's name (mapped to [`crate::names::PHYSICAL_NETWORK`]).
    pub bridge: String,
    /// The bridge's MAC, `aa:bb:cc:dd:ee:ff`: the gateway router's
    /// external port uses it too, so the uplink sees one MAC per node IP.
    pub mac: String,
    /// The node's addresses on the bridge with their prefix lengths, the
    /// primary one of each family first.
    #[serde(default)]
    pub ips: Vec<IpNet>,
    /// The next hop of the bridge's default route, per family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_hops: Vec<IpAddr>,
}

impl NodeGateway {
    /// Parses and checks: a bridge name, a valid MAC, at most one next hop
    /// per family. Missing addresses or next hops are not errors here: the
    /// controller reports what a node lacks, naming the node.
    pub fn parse(text: &str) -> Result<Self, AnnotationError> {
        let gw: NodeGateway =
            serde_json::from_str(text).map_err(|source| AnnotationError::Json {
                key: NODE_GATEWAY,
                source,
            })?;
        let invalid = |reason: String| AnnotationError::Invalid {
            key: NODE_GATEWAY,
            reason,
        };
        if gw.bridge.trim().is_empty() {
            return Err(invalid("no bridge".into()));
        }
        if !is_mac(&gw.mac) {
            return Err(invalid(format!("{:?} is not a MAC address", gw.mac)));
        }
        let v4 = gw.next_hops.iter().filter(|h| h.is_ipv4()).count();
        if v4 > 1 || gw.next_hops.len() - v4 > 1 {
            return Err(invalid("more than one next hop per IP family".into()));
        }
        Ok(gw)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The primary address of a family.
    pub fn ip(&self, v6: bool) -> Option<IpNet> {
        self.ips.iter().find(|n| n.addr().is_ipv6() == v6).copied()
    }

    /// The default next hop of a family.
    pub fn next_hop(&self, v6: bool) -> Option<IpAddr> {
        self.next_hops.iter().find(|h| h.is_ipv6() == v6).copied()
    }
}

/// A pod's network configuration, as the node agent applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNetwork {
    /// Addresses with the subnet's prefix length, one per IP family.
    pub ips: Vec<IpNet>,
    /// The interface's MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The default gateway per family: the node subnet's router address.
    pub gateways: Vec<IpAddr>,
    /// Extra routes beyond the default route through the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Interface MTU; the node agent uses its own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// One route inside the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dest: IpNet,
    pub next_hop: IpAddr,
}

/// A node's pod subnets, one per IP family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSubnets(pub Vec<IpNet>);

/// Why an annotation could not be read; carries the key so the error names
/// what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotation {key}: invalid JSON: {source}")]
    Json {
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("annotation {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl PodNetwork {
    /// Parses and checks the annotation: at least one address, at most one
    /// per family, a gateway inside each address's subnet, a valid MAC.
    pub fn parse(text: &str) -> Result<Self, AnnotationError> {
        let net: PodNetwork =
            serde_json::from_str(text).map_err(|source| AnnotationError::Json {
                key: POD_NETWORK,
                source,
            })?;
        net.validate()?;
        Ok(net)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), AnnotationError> {
        let invalid = |reason: String| AnnotationError::Invalid {
            key: POD_NETWORK,
            reason,
        };
        if self.ips.is_empty() {
            return Err(invalid("no addresses".into()));
        }
        let v4 = self
            .ips
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .count();
        if v4 > 1 || self.ips.len() - v4 > 1 {
            return Err(invalid("more than one address per IP family".into()));
        }
        for gw in &self.gateways {
            if !self.ips.iter().any(|n| n.contains(gw)) {
                return Err(invalid(format!(
                    "gateway {gw} is outside the pod's subnets"
                )));
            }
        }
        if !is_mac(&self.mac) {
            return Err(invalid(format!("{:?} is not a MAC address", self.mac)));
        }
        Ok(())
    }
}

impl NodeSubnets {
    pub fn parse(text: &str) -> Result<Self, AnnotationError> {
        let subnets: NodeSubnets =
            serde_json::from_str(text).map_err(|source| AnnotationError::Json {
                key: NODE_SUBNETS,
                source,
            })?;
        if subnets.0.is_empty() {
            return Err(AnnotationError::Invalid {
                key: NODE_SUBNETS,
                reason: "no subnets".into(),
            });
        }
        Ok(subnets)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses the user's requested-addresses annotation.
pub fn parse_requested_ips(text: &str) -> Result<Vec<IpAddr>, AnnotationError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part.parse().map_err(|_| AnnotationError::Invalid {
            key: REQUESTED_IPS,
            reason: format!("{part:?} is not an IP address"),
        })?;
        if out.iter().any(|o: &IpAddr| o.is_ipv4() == ip.is_ipv4()) {
            return Err(AnnotationError::Invalid {
                key: REQUESTED_IPS,
                reason: "more than one address per IP family".into(),
            });
        }
        out.push(ip);
    }
    if out.is_empty() {
        return Err(AnnotationError::Invalid {
            key: REQUESTED_IPS,
            reason: "empty".into(),
        });
    }
    Ok(out)
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PodNetwork {
        PodNetwork {
            ips: vec![
                "10.244.1.5/24".parse().unwrap(),
                "fd00:10:244:1::5/64".parse().unwrap(),
            ],
            mac: "0a:58:0a:f4:01:05".into(),
            gateways: vec![
                "10.244.1.1".parse().unwrap(),
                "fd00:10:244:1::1".parse().unwrap(),
            ],
            routes: vec![Route {
                dest: "10.96.0.0/16".parse().unwrap(),
                next_hop: "10.244.1.1".parse().unwrap(),
            }],
            mtu: Some(1400),
        }
    }

    #[test]
    fn pod_network_round_trips() {
        let net = sample();
        assert_eq!(PodNetwork::parse(&net.to_json()).unwrap(), net);
        assert!(net.to_json().contains("\"nextHop\""));
    }

    #[test]
    fn rejects_malformed_pod_networks() {
        assert!(matches!(
            PodNetwork::parse("{"),
            Err(AnnotationError::Json { .. })
        ));
        let mut net = sample();
        net.gateways = vec!["192.168.0.1".parse().unwrap()];
        let err = PodNetwork::parse(&net.to_json()).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let mut net = sample();
        net.mac = "zz".into();
        assert!(PodNetwork::parse(&net.to_json()).is_err());
        let mut net = sample();
        net.ips.push("10.244.2.5/24".parse().unwrap());
        assert!(PodNetwork::parse(&net.to_json()).is_err());
        let mut net = sample();
        net.ips.clear();
        assert!(PodNetwork::parse(&net.to_json()).is_err());
    }

    #[test]
    fn requested_ips() {
        assert_eq!(parse_requested_ips("10.0.0.1, fd00::1").unwrap().len(), 2);
        assert!(parse_requested_ips("10.0.0.1,10.0.0.2").is_err());
        assert!(parse_requested_ips("nope").is_err());
        assert!(parse_requested_ips("").is_err());
    }

    #[test]
    fn node_gateway_round_trips_and_rejects_bad_input() {
        let gw = NodeGateway {
            bridge: "br-phy".into(),
            mac: "02:00:00:00:00:0b".into(),
            ips: vec![
                "198.18.0.11/24".parse().unwrap(),
                "2001:db8:18::11/64".parse().unwrap(),
            ],
            next_hops: vec!["198.18.0.1".parse().unwrap()],
        };
        let text = gw.to_json();
        assert!(text.contains("\"nextHops\""), "{text}");
        assert_eq!(NodeGateway::parse(&text).unwrap(), gw);
        assert_eq!(gw.ip(false), Some("198.18.0.11/24".parse().unwrap()));
        assert_eq!(gw.ip(true), Some("2001:db8:18::11/64".parse().unwrap()));
        assert_eq!(gw.next_hop(true), None);
        // Addresses and next hops may be missing: the controller says so.
        let bare = NodeGateway::parse(r#"{"bridge":"b","mac":"02:00:00:00:00:01"}"#).unwrap();
        assert!(bare.ips.is_empty() && bare.next_hops.is_empty());
        assert!(NodeGateway::parse(r#"{"bridge":"","mac":"02:00:00:00:00:01"}"#).is_err());
        assert!(NodeGateway::parse(r#"{"bridge":"b","mac":"nope"}"#).is_err());
        assert!(NodeGateway::parse(
            r#"{"bridge":"b","mac":"02:00:00:00:00:01","nextHops":["1.1.1.1","2.2.2.2"]}"#
        )
        .is_err());
        assert!(NodeGateway::parse("[").is_err());
    }

    #[test]
    fn node_subnets() {
        let s = NodeSubnets::parse(r#"["10.244.3.0/24"]"#).unwrap();
        assert_eq!(s.0.len(), 1);
        assert!(NodeSubnets::parse("[]").is_err());
        assert!(NodeSubnets::parse("x").is_err());
    }
}
