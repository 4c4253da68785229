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
    fn node_subnets() {
        let s = NodeSubnets::parse(r#"["10.244.3.0/24"]"#).unwrap();
        assert_eq!(s.0.len(), 1);
        assert!(NodeSubnets::parse("[]").is_err());
        assert!(NodeSubnets::parse("x").is_err());
    }
}
