//! From `SRC DST --port --protocol` to the microflow `ovn-trace` runs:
//! the endpoints are read from the Kubernetes objects (the pod annotation
//! the controller writes holds each pod's MAC, addresses and gateways; the
//! logical port is named as the controller names it).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Pod, Service};
use switchyard_api::{addressing, annotations, mac, names, PodNetwork};

use crate::cluster::ClusterView;
use crate::error::{Error, Result};

/// What the user named: `ns/pod`, `svc:ns/name`, `host:node` (the node's
/// host through its management port), or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pod { namespace: String, name: String },
    Host { node: String },
    Service { namespace: String, name: String },
    Ip(IpAddr),
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target> {
        let split = |t: &str| -> Result<(String, String)> {
            match t.split_once('/') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => {
                    Ok((ns.to_string(), n.to_string()))
                }
                _ => Err(Error::Invalid(format!(
                    "{s:?}: expected ns/pod, svc:ns/name or an IP address"
                ))),
            }
        };
        if let Some(rest) = s.strip_prefix("svc:") {
            let (namespace, name) = split(rest)?;
            return Ok(Target::Service { namespace, name });
        }
        if let Some(node) = s.strip_prefix("host:") {
            if node.is_empty() || node.contains('/') {
                return Err(Error::Invalid(format!("{s:?}: expected host:<node>")));
            }
            return Ok(Target::Host {
                node: node.to_string(),
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Ip(ip));
        }
        let (namespace, name) = split(s)?;
        Ok(Target::Pod { namespace, name })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As OVN's match language and Kubernetes (upper case) name it.
    pub fn ovn(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn kube(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(Error::Invalid(format!("protocol {s:?}: tcp, udp or sctp"))),
        }
    }
}

/// A pod as its annotation describes it, or a node's host as its
/// management port (`host`: `name` is the node, `namespace` empty).
#[derive(Clone, Debug)]
pub struct PodEnd {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub network: PodNetwork,
    pub host: bool,
}

impl PodEnd {
    /// The logical switch port, also the OVS `iface-id`.
    pub fn port(&self) -> String {
        if self.host {
            return names::mgmt_port(&self.node);
        }
        names::pod_port(&self.namespace, &self.name)
    }

    fn ip(&self, v6: bool) -> Option<IpAddr> {
        self.network
            .ips
            .iter()
            .map(|n| n.addr())
            .find(|a| a.is_ipv6() == v6)
    }

    fn key(&self) -> String {
        if self.host {
            return format!("host:{}", self.node);
        }
        format!("{}/{}", self.namespace, self.name)
    }
}

fn pod_end(pod: &Pod) -> Result<PodEnd> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let text = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::POD_NETWORK))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "pod {namespace}/{name} has no {} annotation (not yet allocated, or host network)",
                annotations::POD_NETWORK
            ))
        })?;
    let network = PodNetwork::parse(text)
        .map_err(|e| Error::Invalid(format!("pod {namespace}/{name}: {e}")))?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| Error::Invalid(format!("pod {namespace}/{name} is not scheduled")))?;
    Ok(PodEnd {
        namespace,
        name,
        node,
        network,
        host: false,
    })
}

/// A node's host as its management port: the management address of each
/// node subnet, the MAC derived from it, the subnet's router as gateway
/// (as the node agent configures the management interface).
async fn host_end(cluster: &dyn ClusterView, node: &str) -> Result<PodEnd> {
    let n = cluster
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .ok_or_else(|| Error::NotFound(format!("node {node}")))?;
    let subnets = crate::status::node_subnets(&n);
    let ips: Vec<_> = subnets
        .iter()
        .filter_map(|s| addressing::management_net(*s))
        .collect();
    let first = ips
        .first()
        .ok_or_else(|| Error::Invalid(format!("node {node} has no pod subnet yet")))?;
    Ok(PodEnd {
        namespace: String::new(),
        name: node.to_string(),
        node: node.to_string(),
        network: PodNetwork {
            mac: mac::from_ip(first.addr()),
            gateways: subnets
                .iter()
                .filter_map(|s| addressing::gateway(*s))
                .collect(),
            ips,
            routes: Vec::new(),
            mtu: None,
        },
        host: true,
    })
}

/// Where the packet goes.
#[derive(Clone, Debug)]
pub enum Dest {
    Pod(PodEnd),
    Service {
        namespace: String,
        name: String,
        vip: IpAddr,
        port: u16,
        /// The backend `ovn-trace` is told the load balancer picks.
        backend: Option<SocketAddr>,
    },
    External(IpAddr),
}

/// The microflow and what `ovn-trace` needs besides it.
#[derive(Clone, Debug)]
pub struct Microflow {
    pub source: PodEnd,
    pub dest: Dest,
    pub protocol: Protocol,
    pub port: u16,
    /// The logical switch the packet enters.
    pub datapath: String,
    pub flow: String,
    pub lb_dst: Option<SocketAddr>,
}

async fn pod_by_ip(cluster: &dyn ClusterView, ip: IpAddr) -> Result<Option<PodEnd>> {
    for p in cluster.pods().await? {
        if let Ok(end) = pod_end(&p) {
            if end.network.ips.iter().any(|n| n.addr() == ip) {
                return Ok(Some(end));
            }
        }
    }
    Ok(None)
}

async fn named_pod(cluster: &dyn ClusterView, ns: &str, name: &str) -> Result<PodEnd> {
    let pod = cluster
        .pod(ns, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("pod {ns}/{name}")))?;
    pod_end(&pod)
}

fn service_vip(svc: &Service, v6: Option<bool>) -> Option<IpAddr> {
    let spec = svc.spec.as_ref()?;
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    ips.extend(spec.cluster_ip.clone());
    ips.iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| v6.is_none_or(|v6| ip.is_ipv6() == v6))
}

/// The service port `port`/`protocol` names (or its first), as
/// (port, protocol, port name).
fn service_port(
    svc: &Service,
    port: Option<u16>,
    protocol: Option<Protocol>,
) -> Result<(u16, Protocol, Option<String>)> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    for p in &ports {
        let proto = match p.protocol.as_deref().unwrap_or("TCP") {
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let port_ok = port.is_none_or(|n| i32::from(n) == p.port);
        let proto_ok = protocol.is_none_or(|want| want == proto);
        if port_ok && proto_ok {
            let n = u16::try_from(p.port)
                .map_err(|_| Error::Invalid(format!("service port {} out of range", p.port)))?;
            return Ok((n, proto, p.name.clone()));
        }
    }
    Err(Error::Invalid(format!(
        "service {}/{} has no port {}{}",
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default(),
        port.map(|p| p.to_string())
            .unwrap_or_else(|| "at all".into()),
        protocol
            .map(|p| format!("/{}", p.kube()))
            .unwrap_or_default()
    )))
}

/// The first ready endpoint of the service port, from its EndpointSlices.
async fn backend(
    cluster: &dyn ClusterView,
    ns: &str,
    name: &str,
    port_name: Option<&str>,
    protocol: Protocol,
    v6: bool,
) -> Result<Option<SocketAddr>> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    for slice in cluster.endpoint_slices(ns, name).await? {
        if slice.address_type != family {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name.unwrap_or_default()
                && p.protocol.as_deref().unwrap_or("TCP") == protocol.kube()
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            let addr = ep.addresses.iter().find_map(|a| a.parse::<IpAddr>().ok());
            if let (true, Some(ip)) = (ready, addr) {
                return Ok(Some(SocketAddr::new(ip, number)));
            }
        }
    }
    Ok(None)
}

/// Resolves `src` and `dst` and builds the microflow of a new connection.
pub async fn microflow(
    cluster: &dyn ClusterView,
    src: &Target,
    dst: &Target,
    port: Option<u16>,
    protocol: Option<Protocol>,
) -> Result<Microflow> {
    let source = match src {
        Target::Pod { namespace, name } => named_pod(cluster, namespace, name).await?,
        Target::Ip(ip) => pod_by_ip(cluster, *ip)
            .await?
            .ok_or_else(|| Error::NotFound(format!("a pod with address {ip} (the source)")))?,
        Target::Host { node } => host_end(cluster, node).await?,
        Target::Service { .. } => {
            return Err(Error::Invalid(
                "the source must be a pod (ns/pod or its address) or host:<node>".into(),
            ))
        }
    };
    let (dest, proto, dport) = match dst {
        Target::Host { node } => (
            Dest::Pod(host_end(cluster, node).await?),
            protocol.unwrap_or_default(),
            port.unwrap_or(80),
        ),
        Target::Pod { namespace, name } => (
            Dest::Pod(named_pod(cluster, namespace, name).await?),
            protocol.unwrap_or_default(),
            port.unwrap_or(80),
        ),
        Target::Service { namespace, name } => {
            let svc = cluster
                .service(namespace, name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("service {namespace}/{name}")))?;
            service_dest(cluster, &source, &svc, port, protocol).await?
        }
        Target::Ip(ip) => {
            let as_pod = pod_by_ip(cluster, *ip).await?;
            let as_svc = if as_pod.is_some() {
                None
            } else {
                cluster
                    .services()
                    .await?
                    .into_iter()
                    .find(|s| service_vip(s, Some(ip.is_ipv6())) == Some(*ip))
            };
            match (as_pod, as_svc) {
                (Some(p), _) => (
                    Dest::Pod(p),
                    protocol.unwrap_or_default(),
                    port.unwrap_or(80),
                ),
                (None, Some(svc)) => service_dest(cluster, &source, &svc, port, protocol).await?,
                (None, None) => (
                    Dest::External(*ip),
                    protocol.unwrap_or_default(),
                    port.unwrap_or(80),
                ),
            }
        }
    };
    build(source, dest, proto, dport)
}

async fn service_dest(
    cluster: &dyn ClusterView,
    source: &PodEnd,
    svc: &Service,
    port: Option<u16>,
    protocol: Option<Protocol>,
) -> Result<(Dest, Protocol, u16)> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let (number, proto, port_name) = service_port(svc, port, protocol)?;
    // The family the source has, preferring IPv4.
    let vip = [false, true]
        .into_iter()
        .filter(|v6| source.ip(*v6).is_some())
        .find_map(|v6| service_vip(svc, Some(v6)))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "service {ns}/{name} has no cluster IP of the source's address family"
            ))
        })?;
    let backend = backend(
        cluster,
        &ns,
        &name,
        port_name.as_deref(),
        proto,
        vip.is_ipv6(),
    )
    .await?;
    Ok((
        Dest::Service {
            namespace: ns,
            name,
            vip,
            port: number,
            backend,
        },
        proto,
        number,
    ))
}

fn build(source: PodEnd, dest: Dest, protocol: Protocol, port: u16) -> Result<Microflow> {
    let (dst_ip, lb_dst) = match &dest {
        Dest::Pod(p) => {
            let v6 = source.ip(false).is_none();
            let ip = p
                .ip(v6)
                .or_else(|| p.ip(!v6))
                .ok_or_else(|| Error::Invalid(format!("pod {} has no address", p.key())))?;
            (ip, None)
        }
        Dest::Service { vip, backend, .. } => (*vip, *backend),
        Dest::External(ip) => (*ip, None),
    };
    let v6 = dst_ip.is_ipv6();
    let src_ip = source.ip(v6).ok_or_else(|| {
        Error::Invalid(format!(
            "pod {} has no {} address to reach {dst_ip} from",
            source.key(),
            if v6 { "IPv6" } else { "IPv4" }
        ))
    })?;
    // On the same node a pod is reached on the switch; anything else goes
    // to the router (the pod's gateway of that family).
    let same_switch = matches!(&dest, Dest::Pod(p) if p.node == source.node);
    let eth_dst = match &dest {
        Dest::Pod(p) if same_switch => p.network.mac.clone(),
        _ => {
            let gw = source
                .network
                .gateways
                .iter()
                .find(|g| g.is_ipv6() == v6)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "pod {} has no gateway of that family",
                        source.key()
                    ))
                })?;
            mac::from_ip(*gw)
        }
    };
    let fam = if v6 { "ip6" } else { "ip4" };
    let p = protocol.ovn();
    let flow = format!(
        "inport == \"{inport}\" && eth.src == {src_mac} && eth.dst == {eth_dst} && \
         {fam}.src == {src_ip} && {fam}.dst == {dst_ip} && ip.ttl == 64 && \
         {p}.src == 33333 && {p}.dst == {port}",
        inport = source.port(),
        src_mac = source.network.mac,
    );
    Ok(Microflow {
        datapath: names::node_switch(&source.node),
        source,
        dest,
        protocol,
        port,
        flow,
        lb_dst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "x/a".parse::<Target>().ok(),
            Some(Target::Pod {
                namespace: "x".into(),
                name: "a".into()
            })
        );
        assert_eq!(
            "svc:x/web".parse::<Target>().ok(),
            Some(Target::Service {
                namespace: "x".into(),
                name: "web".into()
            })
        );
        assert_eq!(
            "10.0.0.1".parse::<Target>().ok(),
            Some(Target::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            "fd00::1".parse::<Target>().ok(),
            Some(Target::Ip("fd00::1".parse().unwrap()))
        );
        assert_eq!(
            "host:n1".parse::<Target>().ok(),
            Some(Target::Host { node: "n1".into() })
        );
        for bad in [
            "x", "x/", "/a", "svc:x", "x/a/b", "svc:/a", "host:", "host:a/b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert_eq!("UDP".parse::<Protocol>().ok(), Some(Protocol::Udp));
        assert!("icmp".parse::<Protocol>().is_err());
    }
}
