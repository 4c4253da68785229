//! What a Service asks of the data plane, read and checked once: its
//! ports, its virtual IPs by kind, its traffic policies and affinity.
//!
//! What OVN cannot express, or what would be unsafe to program (a
//! ClusterIP outside the service CIDRs could capture any address; an
//! external IP inside the pod network would capture a pod's traffic), is
//! left out and reported as an [`Issue`]: a Warning Event on the Service,
//! with the rest of the Service (and every other one) programmed as usual.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use crate::config::Config;

/// A Service port's protocol (one OVN load balancer each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

    /// The API's spelling; absent means TCP, as the API defaults it.
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// OVN's spelling (the `protocol` column), also used in names.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn is_v6(self) -> bool {
        self == Family::V6
    }

    /// `v4` / `v6`, as names end.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// A template load balancer's `options:address-family`.
    pub fn ovn(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// One Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// `""` when unnamed (a Service with one port).
    pub name: String,
    pub proto: Proto,
    pub port: u16,
    /// For NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// A Service as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub ports: Vec<Port>,
    /// Every `clusterIPs` entry inside the service CIDRs.
    pub cluster_ips: Vec<IpAddr>,
    /// `externalIPs` and the LoadBalancer ingress IPs: the addresses
    /// `externalTrafficPolicy` governs.
    pub external: Vec<IpAddr>,
    /// The Service's IP families, primary first.
    pub families: Vec<Family>,
    pub itp_local: bool,
    pub etp_local: bool,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity: Option<u32>,
}

/// Something left out of a Service's rows, for its Warning Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub reason: &'static str,
    pub note: String,
}

impl Issue {
    pub fn new(reason: &'static str, note: impl Into<String>) -> Issue {
        Issue {
            reason,
            note: note.into(),
        }
    }
}

/// The API's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;
/// The longest affinity OVN keeps (`options:affinity_timeout`).
pub const MAX_OVN_AFFINITY_SECONDS: u32 = 65_535;

fn in_any(ip: IpAddr, nets: impl IntoIterator<Item = IpNet>) -> bool {
    nets.into_iter().any(|n| n.contains(&ip))
}

/// Reads `svc`; `None` when it gets no load balancer at all (ExternalName,
/// headless, no ports). What is left out is appended to `issues`.
pub fn read(svc: &Service, config: &Config, issues: &mut Vec<Issue>) -> Option<Spec> {
    let spec = svc.spec.as_ref()?;
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return None;
    }
    let raw_ips: Vec<&str> = match &spec.cluster_ips {
        Some(v) if !v.is_empty() => v.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    if raw_ips.contains(&"None") {
        return None;
    }
    let exposes_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let mut ports = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(proto) = Proto::parse(p.protocol.as_deref()) else {
            issues.push(Issue::new(
                "ServicePortUnsupported",
                format!(
                    "port {} has protocol {:?}, which OVN load balancers do not carry; it is left out",
                    p.port,
                    p.protocol.as_deref().unwrap_or_default()
                ),
            ));
            continue;
        };
        let Some(port) = u16::try_from(p.port).ok().filter(|n| *n != 0) else {
            issues.push(Issue::new(
                "ServicePortUnsupported",
                format!("port {} is not a port number; it is left out", p.port),
            ));
            continue;
        };
        let node_port = p
            .node_port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0 && exposes_node_ports);
        ports.push(Port {
            name: p.name.clone().unwrap_or_default(),
            proto,
            port,
            node_port,
        });
    }
    if ports.is_empty() {
        return None;
    }

    let mut cluster_ips = Vec::new();
    for s in raw_ips.iter().filter(|s| !s.is_empty()) {
        match s.parse::<IpAddr>() {
            Ok(ip) if in_any(ip, config.service_cidrs.iter().copied()) => cluster_ips.push(ip),
            Ok(ip) => issues.push(Issue::new(
                "ClusterIPOutsideServiceCIDRs",
                format!(
                    "clusterIP {ip} is outside the service CIDRs ({}); it is not programmed",
                    list(&config.service_cidrs)
                ),
            )),
            Err(_) => issues.push(Issue::new(
                "ClusterIPInvalid",
                format!("clusterIP {s:?} is not an IP address"),
            )),
        }
    }

    let mut external = Vec::new();
    let mut take = |what: &str, s: &str, issues: &mut Vec<Issue>| {
        let Ok(ip) = s.parse::<IpAddr>() else {
            issues.push(Issue::new(
                "ExternalIPInvalid",
                format!("{what} {s:?} is not an IP address"),
            ));
            return;
        };
        let pods = config.cluster_cidrs.iter().map(|c| c.cidr);
        if in_any(ip, pods) || in_any(ip, config.service_cidrs.iter().copied()) {
            issues.push(Issue::new(
                "ExternalIPInClusterNetwork",
                format!(
                    "{what} {ip} lies in the cluster's pod or service network, where it would capture \
                     other traffic; it is not programmed"
                ),
            ));
        } else if !external.contains(&ip) {
            external.push(ip);
        }
    };
    for s in spec.external_ips.iter().flatten() {
        take("externalIP", s, issues);
    }
    if ty == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        let ranges = spec.load_balancer_source_ranges.iter().flatten().count();
        for i in ingress.into_iter().flatten() {
            // With ipMode Proxy the load balancer does not deliver to the
            // IP itself; kube-proxy leaves it alone, and so do we.
            let (Some(ip), false) = (&i.ip, i.ip_mode.as_deref() == Some("Proxy")) else {
                continue;
            };
            if ranges > 0 {
                issues.push(Issue::new(
                    "LoadBalancerSourceRangesUnsupported",
                    format!(
                        "loadBalancerSourceRanges cannot be enforced by OVN load balancers; \
                         rather than open {ip} to every source it is not programmed"
                    ),
                ));
                continue;
            }
            take("LoadBalancer ingress IP", ip, issues);
        }
    }

    let mut families: Vec<Family> = Vec::new();
    for ip in &cluster_ips {
        if !families.contains(&Family::of(*ip)) {
            families.push(Family::of(*ip));
        }
    }
    if families.is_empty() {
        for f in spec.ip_families.iter().flatten() {
            let fam = if f == "IPv6" { Family::V6 } else { Family::V4 };
            if !families.contains(&fam) {
                families.push(fam);
            }
        }
    }

    // An address of a family the Service does not have has no endpoints
    // to go to (kube-proxy ignores it too).
    external.retain(|ip| {
        let ok = families.contains(&Family::of(*ip));
        if !ok {
            issues.push(Issue::new(
                "ExternalIPFamilyMismatch",
                format!("{ip} is not of the Service's IP families; it is not programmed"),
            ));
        }
        ok
    });

    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let want = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS);
        if want > MAX_OVN_AFFINITY_SECONDS {
            issues.push(Issue::new(
                "SessionAffinityTimeoutCapped",
                format!(
                    "ClientIP affinity of {want} s is longer than OVN keeps ({MAX_OVN_AFFINITY_SECONDS} s); \
                     {MAX_OVN_AFFINITY_SECONDS} s is used"
                ),
            ));
        }
        want.min(MAX_OVN_AFFINITY_SECONDS)
    });

    Some(Spec {
        ports,
        cluster_ips,
        external,
        families,
        itp_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        etp_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        affinity,
    })
}

fn list(nets: &[IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Spec {
    /// The protocols this Service uses, in a fixed order.
    pub fn protocols(&self) -> Vec<Proto> {
        Proto::ALL
            .into_iter()
            .filter(|p| self.ports.iter().any(|x| x.proto == *p))
            .collect()
    }

    /// Whether any node needs a per-node view of this Service (template
    /// variables holding the node's own endpoints).
    pub fn needs_local_view(&self) -> bool {
        (self.itp_local && !self.cluster_ips.is_empty())
            || (self.etp_local
                && (!self.external.is_empty() || self.ports.iter().any(|p| p.node_port.is_some())))
    }

    pub fn has_node_ports(&self) -> bool {
        self.ports.iter().any(|p| p.node_port.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec,
        ServiceStatus, SessionAffinityConfig,
    };

    fn config() -> Config {
        Config {
            service_cidrs: vec![
                "10.96.0.0/16".parse().unwrap(),
                "fd00:96::/112".parse().unwrap(),
            ],
            ..Config::default()
        }
    }

    fn svc(spec: ServiceSpec) -> Service {
        Service {
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn tcp(port: i32) -> ServicePort {
        ServicePort {
            port,
            ..Default::default()
        }
    }

    #[test]
    fn headless_external_name_and_portless_get_nothing() {
        let mut issues = Vec::new();
        let c = config();
        let headless = svc(ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        });
        assert!(read(&headless, &c, &mut issues).is_none());
        let name = svc(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("example.com".into()),
            ..Default::default()
        });
        assert!(read(&name, &c, &mut issues).is_none());
        let portless = svc(ServiceSpec {
            cluster_ip: Some("10.96.0.1".into()),
            ..Default::default()
        });
        assert!(read(&portless, &c, &mut issues).is_none());
        assert!(issues.is_empty());
    }

    #[test]
    fn unsafe_addresses_are_left_out_and_reported() {
        let mut issues = Vec::new();
        let s = svc(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ips: Some(vec!["10.96.0.10".into(), "10.0.0.1".into()]),
            external_ips: Some(vec!["10.244.3.3".into(), "192.0.2.1".into(), "bad".into()]),
            ports: Some(vec![ServicePort {
                protocol: Some("UDP".into()),
                node_port: Some(30053),
                ..tcp(53)
            }]),
            session_affinity: Some("ClientIP".into()),
            session_affinity_config: Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(86_400),
                }),
            }),
            ..Default::default()
        });
        let mut s = s;
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![
                    LoadBalancerIngress {
                        ip: Some("198.51.100.7".into()),
                        ..Default::default()
                    },
                    LoadBalancerIngress {
                        ip: Some("198.51.100.8".into()),
                        ip_mode: Some("Proxy".into()),
                        ..Default::default()
                    },
                ]),
            }),
            ..Default::default()
        });
        let spec = read(&s, &config(), &mut issues).unwrap();
        assert_eq!(
            spec.cluster_ips,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            spec.external,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "198.51.100.7".parse().unwrap()
            ]
        );
        assert_eq!(spec.ports[0].proto, Proto::Udp);
        assert_eq!(spec.ports[0].node_port, Some(30053));
        assert_eq!(spec.affinity, Some(MAX_OVN_AFFINITY_SECONDS));
        let reasons: Vec<&str> = issues.iter().map(|i| i.reason).collect();
        assert_eq!(
            reasons,
            vec![
                "ClusterIPOutsideServiceCIDRs",
                "ExternalIPInClusterNetwork",
                "ExternalIPInvalid",
                "SessionAffinityTimeoutCapped"
            ]
        );
    }

    #[test]
    fn source_ranges_keep_load_balancer_ips_closed() {
        let mut issues = Vec::new();
        let mut s = svc(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ip: Some("10.96.0.11".into()),
            ports: Some(vec![tcp(80)]),
            load_balancer_source_ranges: Some(vec!["203.0.113.0/24".into()]),
            ..Default::default()
        });
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("198.51.100.7".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        let spec = read(&s, &config(), &mut issues).unwrap();
        assert!(spec.external.is_empty());
        assert_eq!(issues[0].reason, "LoadBalancerSourceRangesUnsupported");
        // A NodePort on a ClusterIP Service is ignored, as kube-proxy does.
        let mut issues = Vec::new();
        let c = svc(ServiceSpec {
            cluster_ip: Some("10.96.0.12".into()),
            ports: Some(vec![ServicePort {
                node_port: Some(30001),
                ..tcp(80)
            }]),
            ..Default::default()
        });
        assert!(!read(&c, &config(), &mut issues).unwrap().has_node_ports());
    }
}
