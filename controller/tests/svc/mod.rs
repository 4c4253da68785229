//! Fixtures of the Service tests, and NB read back as load balancers,
//! groups and template variables. The expected backends come from the
//! EndpointSlices by a rule written here independently of the
//! controller's code.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeAddress, NodeStatus, Pod, PodCondition, PodIP, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_memory::MemoryCluster;

use crate::common::{annotation, eventually, Env};

pub const T: Duration = Duration::from_secs(60);
pub const NS: &str = "ns";

/// A node with InternalIPs.
pub fn node(name: &str, ips: &[&str]) -> Node {
    let mut n = kube_memory::node(name);
    n.status = Some(NodeStatus {
        addresses: Some(
            ips.iter()
                .map(|ip| NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.to_string(),
                })
                .collect(),
        ),
        ..Default::default()
    });
    n
}

pub fn service(name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A port forwarding to the pods' port named `target` (or a number).
pub fn port(name: &str, proto: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()).filter(|n: &String| !n.is_empty()),
        protocol: Some(proto.into()),
        port,
        target_port: Some(match target.parse::<i32>() {
            Ok(n) => IntOrString::Int(n),
            Err(_) => IntOrString::String(target.into()),
        }),
        ..Default::default()
    }
}

pub fn selector(app: &str) -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([("app".to_string(), app.to_string())]))
}

/// A pod labelled `app` whose container port `http` is `http`.
pub fn backend(name: &str, node: &str, app: &str, http: i32) -> Pod {
    let mut p = kube_memory::pod(NS, name, node);
    p.metadata.labels = selector(app);
    p.spec.as_mut().unwrap().containers = vec![Container {
        name: "c".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: http,
            ..Default::default()
        }]),
        ..Default::default()
    }];
    p
}

/// Reports the pod Running with the addresses Switchyard gave it, Ready
/// or not, as its kubelet would once CNI ADD returned.
pub fn set_status(c: &MemoryCluster, name: &str, ready: bool) -> Vec<IpAddr> {
    let p = c.pod(NS, name).expect("pod");
    let net = annotation(&p).expect("annotated");
    let ips: Vec<IpAddr> = net.ips.iter().map(|n| n.addr()).collect();
    let status = PodStatus {
        phase: Some("Running".into()),
        pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
        pod_ip: ips.first().map(|ip| ip.to_string()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let uid = p.metadata.uid.unwrap_or_default();
    assert!(c.update_pod_status(NS, name, &uid, status));
    ips
}

/// Creates the pod, waits for its addresses, reports it Ready.
pub async fn ready_backend(c: &MemoryCluster, pod: Pod) -> Vec<IpAddr> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    c.apply_pod(pod);
    eventually(T, "pod annotated", || {
        c.pod(NS, &name)
            .and_then(|p| annotation(&p))
            .map(|_| ())
            .ok_or(format!("{name} not annotated"))
    })
    .await;
    set_status(c, &name, true)
}

/// A load balancer as NB holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbLb {
    pub protocol: String,
    pub vips: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

fn string_map(v: Option<&ovsdb::Value>) -> BTreeMap<String, String> {
    v.and_then(|v| v.as_map())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every Load_Balancer, by name.
pub fn load_balancers(env: &Env) -> BTreeMap<String, NbLb> {
    env.replica.with(|db| {
        db.table("Load_Balancer")
            .iter()
            .map(|(_, r)| {
                (
                    r.str("name").unwrap_or_default().to_string(),
                    NbLb {
                        protocol: r
                            .get("protocol")
                            .and_then(|v| v.strings().first().map(|s| s.to_string()))
                            .unwrap_or_default(),
                        vips: string_map(r.get("vips")),
                        options: string_map(r.get("options")),
                    },
                )
            })
            .collect()
    })
}

/// Load_Balancer rows (names may repeat while a row is being replaced).
pub fn load_balancer_rows(env: &Env) -> usize {
    env.replica.with(|db| db.table("Load_Balancer").len())
}

/// Group name -> the names of its load balancers.
pub fn group_members(env: &Env) -> BTreeMap<String, BTreeSet<String>> {
    env.replica.with(|db| {
        let lbs = db.table("Load_Balancer");
        db.table("Load_Balancer_Group")
            .iter()
            .map(|(_, g)| {
                let members = g
                    .get("load_balancer")
                    .map(|v| v.atoms().to_vec())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.as_uuid())
                    .filter_map(|u| lbs.get(&u)?.str("name").map(str::to_string))
                    .collect();
                (g.str("name").unwrap_or_default().to_string(), members)
            })
            .collect()
    })
}

/// The group names a switch or router holds.
pub fn groups_of(env: &Env, table: &str, name: &str) -> BTreeSet<String> {
    env.replica.with(|db| {
        let groups = db.table("Load_Balancer_Group");
        db.table(table)
            .by_name(name)
            .and_then(|(_, r)| r.get("load_balancer_group").map(|v| v.atoms().to_vec()))
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.as_uuid())
            .filter_map(|u| groups.get(&u)?.str("name").map(str::to_string))
            .collect()
    })
}

/// Chassis -> template variables.
pub fn template_vars(env: &Env) -> BTreeMap<String, BTreeMap<String, String>> {
    env.replica.with(|db| {
        db.table("Chassis_Template_Var")
            .iter()
            .map(|(_, r)| {
                (
                    r.str("chassis").unwrap_or_default().to_string(),
                    string_map(r.get("variables")),
                )
            })
            .collect()
    })
}

/// The backends of Service port `port_name` of one family by the rule
/// kube-proxy documents, read from the Service's EndpointSlices: ready
/// endpoints, else serving and terminating ones; `node` limits them to
/// one node's.
pub fn expected_backends(
    c: &MemoryCluster,
    svc: &str,
    port_name: &str,
    v6: bool,
    node: Option<&str>,
) -> String {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for s in c.endpoint_slices(NS, svc) {
        let Some(p) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in &s.endpoints {
            let ip: IpAddr = e.addresses[0].parse().unwrap();
            if ip.is_ipv6() != v6 || (node.is_some() && e.node_name.as_deref() != node) {
                continue;
            }
            let c = e.conditions.clone().unwrap_or_default();
            let addr = SocketAddr::new(ip, p as u16);
            if c.ready.unwrap_or(true) {
                ready.insert(addr);
            } else if c.serving.unwrap_or(false) && c.terminating.unwrap_or(false) {
                terminating.insert(addr);
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `ip:port` as a VIP key.
pub fn vip(ip: &str, port: u16) -> String {
    SocketAddr::new(ip.parse().unwrap(), port).to_string()
}

/// The ClusterIPs of a Service, primary first.
pub fn cluster_ips(c: &MemoryCluster, name: &str) -> Vec<String> {
    c.service(NS, name)
        .and_then(|s| s.spec?.cluster_ips)
        .unwrap_or_default()
}

/// The NodePort of a Service's first port.
pub fn node_port(c: &MemoryCluster, name: &str) -> u16 {
    c.service(NS, name)
        .and_then(|s| s.spec?.ports?.first()?.node_port)
        .unwrap_or_default() as u16
}

/// A node's management address and MAC, and its gateway's MAC, from
/// the subnet Switchyard gave it: what its host sends from.
pub fn host_side(c: &MemoryCluster, node: &str) -> (IpAddr, String, String) {
    let n = c.node(node).expect("node");
    let text = n.metadata.annotations.expect("annotated")
        [switchyard_api::annotations::NODE_SUBNETS]
        .clone();
    let subnet = switchyard_api::NodeSubnets::parse(&text)
        .expect("subnets")
        .0[0];
    let mgmt = switchyard_api::addressing::management(subnet).unwrap();
    let gw = switchyard_api::addressing::gateway(subnet).unwrap();
    (
        mgmt,
        switchyard_api::mac::from_ip(mgmt),
        switchyard_api::mac::from_ip(gw),
    )
}
