//! Exact rows for every Service type and policy, from a model built by
//! watch events as the engine builds it: the types here, the traffic
//! policies, affinity and conflicts in [`policies`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

mod policies;
use crate::config::Config;
use crate::k8s::{Object, Observed, WatchEvent};
use crate::translate::Decisions;

fn config() -> Config {
    Config {
        service_cidrs: vec![
            "10.96.0.0/16".parse().unwrap(),
            "fd00:96::/112".parse().unwrap(),
        ],
        ..Config::default()
    }
}

fn meta(ns: &str, name: &str, rv: u32) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some(rv.to_string()),
        creation_timestamp: Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + i64::from(rv)).unwrap(),
        )),
        ..Default::default()
    }
}

fn port(name: &str, proto: &str, port: i32, node_port: Option<i32>) -> ServicePort {
    ServicePort {
        name: Some(name.into()).filter(|n: &String| !n.is_empty()),
        protocol: Some(proto.into()),
        port,
        node_port,
        ..Default::default()
    }
}

fn service(name: &str, rv: u32, spec: ServiceSpec) -> Service {
    Service {
        metadata: meta("ns", name, rv),
        spec: Some(spec),
        status: None,
    }
}

fn slice(
    svc: &str,
    family: &str,
    ports: &[(&str, &str, i32)],
    eps: &[(&str, &str, bool, bool)],
) -> EndpointSlice {
    let mut m = meta("ns", &format!("{svc}-{family}"), 1);
    m.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: family.into(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p, num)| EndpointPort {
                    name: Some(n.to_string()),
                    protocol: Some(p.to_string()),
                    port: Some(*num),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: eps
            .iter()
            .map(|(ip, node, ready, terminating)| Endpoint {
                addresses: vec![ip.to_string()],
                node_name: Some(node.to_string()),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    serving: Some(*ready || *terminating),
                    terminating: Some(*terminating),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn node(name: &str, ips: &[&str]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(
                ips.iter()
                    .map(|ip| NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct World {
    model: Model,
    decisions: Decisions,
    config: Config,
}

impl World {
    fn new(services: Vec<Service>, slices: Vec<EndpointSlice>, nodes: Vec<Node>) -> World {
        let mut model = Model::new();
        let mut out = Vec::new();
        model.apply(
            Kind::Service,
            WatchEvent::Restarted(
                services
                    .into_iter()
                    .map(|o| Observed::from(Object::from(o)))
                    .collect(),
            ),
            &mut out,
        );
        model.apply(
            Kind::EndpointSlice,
            WatchEvent::Restarted(
                slices
                    .into_iter()
                    .map(|o| Observed::from(Object::from(o)))
                    .collect(),
            ),
            &mut out,
        );
        model.apply(
            Kind::Node,
            WatchEvent::Restarted(
                nodes
                    .into_iter()
                    .map(|o| Observed::from(Object::from(o)))
                    .collect(),
            ),
            &mut out,
        );
        World {
            model,
            decisions: Decisions::default(),
            config: config(),
        }
    }

    fn view(&self) -> View<'_> {
        View {
            model: &self.model,
            decisions: &self.decisions,
            config: &self.config,
        }
    }

    /// name -> (vips, options, groups), and the problems' reasons.
    fn lbs(&self, key: &str) -> (BTreeMap<String, Lb>, Vec<&'static str>) {
        let mut problems = Vec::new();
        let rows = Services
            .rows(key, &self.view(), &mut problems)
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for r in rows {
            assert_eq!(r.table, Table::LoadBalancer);
            let map = |c: &str| match r.get(c) {
                Some(Col::Map(m)) => m.clone(),
                other => panic!("{c}: {other:?}"),
            };
            let groups: Vec<String> = r.parents.iter().map(|p| p.name.clone()).collect();
            assert_eq!(
                map("external_ids").get(rows::GROUPS_KEY),
                Some(&groups.join(",")),
                "the identity names the groups"
            );
            out.insert(
                r.name().unwrap().to_string(),
                Lb {
                    vips: map("vips"),
                    options: map("options"),
                    groups,
                },
            );
        }
        (out, problems.iter().map(|p| p.reason).collect())
    }

    fn vars(&self, node: &str) -> BTreeMap<String, String> {
        let rows = NodeServices
            .rows(node, &self.view(), &mut Vec::new())
            .unwrap_or_default();
        match rows.first().and_then(|r| r.get("variables")) {
            Some(Col::Map(m)) => m.clone(),
            _ => BTreeMap::new(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Lb {
    vips: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
    groups: Vec<String>,
}

fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn groups(g: &[&str]) -> Vec<String> {
    g.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cluster_ip_dual_stack_multi_port_mixed_protocols() {
    let svc = service(
        "web",
        1,
        ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: Some(vec!["10.96.0.10".into(), "fd00:96::a".into()]),
            ports: Some(vec![
                port("http", "TCP", 80, None),
                port("dns", "UDP", 53, None),
                port("sig", "SCTP", 9000, None),
            ]),
            ..Default::default()
        },
    );
    let v4 = slice(
        "web",
        "IPv4",
        &[
            ("http", "TCP", 8080),
            ("dns", "UDP", 5353),
            ("sig", "SCTP", 9000),
        ],
        &[
            ("10.244.1.5", "n1", true, false),
            ("10.244.2.5", "n2", true, false),
        ],
    );
    let v6 = slice(
        "web",
        "IPv6",
        &[("http", "TCP", 8080)],
        &[("fd00:10:244:1::5", "n1", true, false)],
    );
    let w = World::new(vec![svc], vec![v4, v6], vec![]);
    let (lbs, problems) = w.lbs("ns/web");
    assert!(problems.is_empty(), "{problems:?}");
    let explicit = m(&[("reject", "true")]);
    let mut udp_opts = explicit.clone();
    udp_opts.insert("ct_flush".into(), "true".into());
    let want = BTreeMap::from([
        (
            "svc:ns/web:tcp".to_string(),
            Lb {
                vips: m(&[
                    ("10.96.0.10:80", "10.244.1.5:8080,10.244.2.5:8080"),
                    ("[fd00:96::a]:80", "[fd00:10:244:1::5]:8080"),
                ]),
                options: explicit.clone(),
                groups: groups(&[GROUP_CLUSTER]),
            },
        ),
        (
            "svc:ns/web:udp".to_string(),
            Lb {
                // The IPv6 slice does not carry the UDP port: no backend,
                // so the VIP rejects.
                vips: m(&[
                    ("10.96.0.10:53", "10.244.1.5:5353,10.244.2.5:5353"),
                    ("[fd00:96::a]:53", ""),
                ]),
                options: udp_opts,
                groups: groups(&[GROUP_CLUSTER]),
            },
        ),
        (
            "svc:ns/web:sctp".to_string(),
            Lb {
                vips: m(&[
                    ("10.96.0.10:9000", "10.244.1.5:9000,10.244.2.5:9000"),
                    ("[fd00:96::a]:9000", ""),
                ]),
                options: explicit,
                groups: groups(&[GROUP_CLUSTER]),
            },
        ),
    ]);
    assert_eq!(lbs, want);
    // Only explicit load balancers: no per-node variables.
    let w2 = World::new(vec![], vec![], vec![node("n1", &["192.168.0.11"])]);
    assert_eq!(w2.vars("n1"), m(&[("NODEIP_V4", "192.168.0.11")]));
}

#[test]
fn headless_external_name_and_unbacked_get_no_rows() {
    let headless = service(
        "db",
        1,
        ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: Some(vec![port("", "TCP", 5432, None)]),
            ..Default::default()
        },
    );
    let external = service(
        "ext",
        2,
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            ..Default::default()
        },
    );
    let w = World::new(vec![headless, external], vec![], vec![]);
    assert!(w.lbs("ns/db").0.is_empty());
    assert!(w.lbs("ns/ext").0.is_empty());
    assert!(w.lbs("ns/missing").0.is_empty());
}

#[test]
fn node_port_is_one_template_whatever_the_node_count() {
    let spec = ServiceSpec {
        type_: Some("NodePort".into()),
        cluster_ip: Some("10.96.0.20".into()),
        ports: Some(vec![port("", "TCP", 80, Some(30080))]),
        external_traffic_policy: Some("Cluster".into()),
        ..Default::default()
    };
    let eps = slice(
        "np",
        "IPv4",
        &[("", "TCP", 8080)],
        &[("10.244.1.5", "n1", true, false)],
    );
    let three: Vec<Node> = (0..3)
        .map(|i| node(&format!("n{i}"), &[&format!("192.168.0.{i}")]))
        .collect();
    let hundred: Vec<Node> = (0..100)
        .map(|i| node(&format!("n{i}"), &[&format!("192.168.1.{i}")]))
        .collect();
    let small = World::new(
        vec![service("np", 1, spec.clone())],
        vec![eps.clone()],
        three,
    );
    let big = World::new(vec![service("np", 1, spec)], vec![eps], hundred);
    let (lbs, _) = small.lbs("ns/np");
    assert_eq!(lbs, big.lbs("ns/np").0, "rows do not depend on the nodes");
    assert_eq!(lbs.len(), 2);
    assert_eq!(
        lbs["svc:ns/np:tcp:nodeport:v4"],
        Lb {
            vips: m(&[("^NODEIP_V4:30080", "10.244.1.5:8080")]),
            options: m(&[("template", "true"), ("address-family", "ipv4")]),
            groups: groups(&[GROUP_SWITCHES, GROUP_GATEWAYS]),
        }
    );
    assert_eq!(
        lbs["svc:ns/np:tcp"].vips,
        m(&[("10.96.0.20:80", "10.244.1.5:8080")])
    );
    assert_eq!(small.vars("n2"), m(&[("NODEIP_V4", "192.168.0.2")]));
}
