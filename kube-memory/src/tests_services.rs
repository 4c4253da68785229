//! Services and EndpointSlices as kube-apiserver and
//! kube-controller-manager handle them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodIP, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_controller::k8s::{Cluster, ObjectRef};

use super::*;

fn svc(name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn tcp(port: i32) -> ServicePort {
    ServicePort {
        port,
        ..Default::default()
    }
}

fn dual() -> Arc<MemoryCluster> {
    let c = MemoryCluster::new();
    c.set_service_cidrs(&[
        "10.96.0.0/16".parse().unwrap(),
        "fd00:96::/112".parse().unwrap(),
    ]);
    c
}

fn message(c: &MemoryCluster, s: Service) -> String {
    match c.try_apply(s).unwrap_err() {
        KubeError::Invalid { message, .. } => message,
        other => panic!("not a 422: {other:?}"),
    }
}

#[test]
fn cluster_ips_come_from_the_service_cidrs_by_family_policy() {
    let c = dual();
    let single = c.apply_service(svc(
        "a",
        ServiceSpec {
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    ));
    let s = single.spec.unwrap();
    assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(s.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(s.ip_families, Some(vec!["IPv4".to_string()]));
    let ip: std::net::IpAddr = s.cluster_ip.unwrap().parse().unwrap();
    assert!("10.96.0.0/16"
        .parse::<ipnet::IpNet>()
        .unwrap()
        .contains(&ip));
    assert_ne!(
        ip.to_string(),
        "10.96.0.10",
        "dynamic addresses come from the upper band"
    );
    assert_eq!(s.internal_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(s.ports.unwrap()[0].target_port, Some(IntOrString::Int(80)));

    let both = c.apply_service(svc(
        "b",
        ServiceSpec {
            ip_family_policy: Some("PreferDualStack".into()),
            ip_families: Some(vec!["IPv6".into()]),
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    ));
    let s = both.spec.unwrap();
    assert_eq!(
        s.ip_families,
        Some(vec!["IPv6".to_string(), "IPv4".to_string()])
    );
    let ips = s.cluster_ips.unwrap();
    assert!(ips[0].contains(':') && !ips[1].contains(':'), "{ips:?}");
    assert_eq!(s.cluster_ip.as_ref(), Some(&ips[0]));

    // A requested address: free, taken, outside.
    let want = |name: &str, ip: &str| {
        svc(
            name,
            ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(vec![tcp(53)]),
                ..Default::default()
            },
        )
    };
    c.apply_service(want("dns", "10.96.0.10"));
    assert_eq!(
        message(&c, want("dns2", "10.96.0.10")),
        "Service \"dns2\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.96.0.10\": \
         failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    assert_eq!(
        message(&c, want("far", "10.0.0.1")),
        "Service \"far\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.0.0.1\": \
         failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. \
         The range of valid IPs is 10.96.0.0/16"
    );
    // Freed on delete.
    c.delete(Kind::Service, Some("ns"), "dns");
    c.apply_service(want("dns2", "10.96.0.10"));

    let v4only = MemoryCluster::new();
    let require = svc(
        "r",
        ServiceSpec {
            ip_family_policy: Some("RequireDualStack".into()),
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    );
    assert!(message(&v4only, require.clone()).contains(
        "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    ));
    let mut prefer = require;
    prefer.spec.as_mut().unwrap().ip_family_policy = Some("PreferDualStack".into());
    let s = v4only.apply_service(prefer).spec.unwrap();
    assert_eq!(s.cluster_ips.unwrap().len(), 1);
}

#[test]
fn cluster_ips_are_immutable_and_kept_when_omitted() {
    let c = MemoryCluster::new();
    let first = c.apply_service(svc(
        "a",
        ServiceSpec {
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    ));
    let ip = first.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    // An update that leaves the address out keeps it.
    let again = c.apply_service(svc(
        "a",
        ServiceSpec {
            ports: Some(vec![tcp(81)]),
            ..Default::default()
        },
    ));
    assert_eq!(again.spec.unwrap().cluster_ip, Some(ip.clone()));
    let moved = svc(
        "a",
        ServiceSpec {
            cluster_ip: Some("10.96.0.99".into()),
            ports: Some(vec![tcp(81)]),
            ..Default::default()
        },
    );
    assert!(message(&c, moved)
        .contains("spec.clusterIPs[0]: Invalid value: \"10.96.0.99\": may not change once set"));
}

#[test]
fn node_ports_are_allocated_refused_and_released() {
    let c = MemoryCluster::new();
    let np = |name: &str, port: Option<i32>| {
        svc(
            name,
            ServiceSpec {
                type_: Some("NodePort".into()),
                ports: Some(vec![ServicePort {
                    node_port: port,
                    ..tcp(80)
                }]),
                ..Default::default()
            },
        )
    };
    let a = c.apply_service(np("a", None));
    let a_port = a.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap();
    assert!((30000..=32767).contains(&a_port));
    assert_eq!(
        a.spec.unwrap().external_traffic_policy.as_deref(),
        Some("Cluster")
    );
    assert_eq!(
        message(&c, np("b", Some(a_port))),
        format!("Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: {a_port}: provided port is already allocated")
    );
    assert_eq!(
        message(&c, np("b", Some(40000))),
        "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // Changing to ClusterIP drops and frees the port.
    let cip = c.apply_service(svc(
        "a",
        ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    ));
    assert_eq!(cip.spec.unwrap().ports.unwrap()[0].node_port, None);
    c.apply_service(np("b", Some(a_port)));
    // An ETP Local LoadBalancer gets a health check port.
    let lb = c.apply_service(svc(
        "lb",
        ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            ports: Some(vec![tcp(443)]),
            ..Default::default()
        },
    ));
    let s = lb.spec.unwrap();
    let hc = s.health_check_node_port.unwrap();
    assert!((30000..=32767).contains(&hc));
    assert_ne!(Some(hc), s.ports.unwrap()[0].node_port);
}

#[test]
fn services_are_validated_as_the_server_does() {
    let c = MemoryCluster::new();
    let two_unnamed = svc(
        "x",
        ServiceSpec {
            ports: Some(vec![tcp(80), tcp(81)]),
            ..Default::default()
        },
    );
    assert!(message(&c, two_unnamed).contains("spec.ports[0].name: Required value"));
    let bad_proto = svc(
        "x",
        ServiceSpec {
            ports: Some(vec![ServicePort {
                protocol: Some("ICMP".into()),
                ..tcp(80)
            }]),
            ..Default::default()
        },
    );
    assert!(message(&c, bad_proto).contains(
        "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
    ));
    let no_ports = svc("x", ServiceSpec::default());
    assert!(message(&c, no_ports).contains("spec.ports: Required value"));
    let bad_name = svc(
        "x",
        ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("HTTP".into()),
                ..tcp(80)
            }]),
            ..Default::default()
        },
    );
    assert!(message(&c, bad_name).contains("spec.ports[0].name: Invalid value: \"HTTP\""));
    assert!(c.list(Kind::Service).is_empty());
    // Headless and ExternalName Services get no address.
    let headless = c.apply_service(svc(
        "h",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        },
    ));
    assert_eq!(
        headless.spec.unwrap().cluster_ips,
        Some(vec!["None".to_string()])
    );
    let name = c.apply_service(svc(
        "e",
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            ..Default::default()
        },
    ));
    assert_eq!(name.spec.unwrap().cluster_ip, None);
}

fn ready_pod(name: &str, node: &str, ip: &str, app: &str, port: Option<(&str, i32)>) -> Pod {
    let mut p = pod("ns", name, node);
    p.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
    if let Some((pname, n)) = port {
        p.spec.as_mut().unwrap().containers = vec![Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some(pname.into()),
                container_port: n,
                ..Default::default()
            }]),
            ..Default::default()
        }];
    }
    p.status = Some(ready_status(ip, true));
    p
}

fn ready_status(ip: &str, ready: bool) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        pod_ips: Some(vec![PodIP { ip: ip.into() }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn endpoints(
    c: &MemoryCluster,
    service: &str,
) -> BTreeMap<String, (String, Option<i32>, bool, bool, bool)> {
    let mut out = BTreeMap::new();
    for s in c.endpoint_slices("ns", service) {
        let port = s
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.port);
        for e in &s.endpoints {
            let cond = e.conditions.clone().unwrap_or_default();
            out.insert(
                e.addresses[0].clone(),
                (
                    e.node_name.clone().unwrap_or_default(),
                    port,
                    cond.ready.unwrap(),
                    cond.serving.unwrap(),
                    cond.terminating.unwrap(),
                ),
            );
        }
    }
    out
}

#[test]
fn endpoint_slices_follow_the_selected_pods() {
    let c = MemoryCluster::new();
    let web = c.apply_service(svc(
        "web",
        ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ports: Some(vec![ServicePort {
                target_port: Some(IntOrString::String("http".into())),
                ..tcp(80)
            }]),
            ..Default::default()
        },
    ));
    // Nothing selected yet: one empty placeholder.
    let slices = c.endpoint_slices("ns", "web");
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty());
    let labels = slices[0].metadata.labels.clone().unwrap();
    assert_eq!(
        labels[endpointslices::MANAGED_BY_LABEL],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slices[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        web.metadata.uid.unwrap()
    );

    // Two rollout generations name their port differently: two slices.
    c.apply_pod(ready_pod(
        "w1",
        "n1",
        "10.244.1.5",
        "web",
        Some(("http", 8080)),
    ));
    c.apply_pod(ready_pod(
        "w2",
        "n2",
        "10.244.2.5",
        "web",
        Some(("http", 9090)),
    ));
    c.apply_pod(ready_pod(
        "other",
        "n2",
        "10.244.2.6",
        "db",
        Some(("http", 5432)),
    ));
    let mut hostnet = ready_pod("h1", "n3", "192.168.0.3", "web", Some(("http", 10250)));
    hostnet.spec.as_mut().unwrap().host_network = Some(true);
    c.apply_pod(hostnet);
    let names: Vec<_> = c
        .endpoint_slices("ns", "web")
        .iter()
        .map(|s| (s.metadata.name.clone(), s.endpoints.len(), s.ports.clone()))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let eps = endpoints(&c, "web");
    assert_eq!(
        eps["10.244.1.5"],
        ("n1".into(), Some(8080), true, true, false)
    );
    assert_eq!(
        eps["10.244.2.5"],
        ("n2".into(), Some(9090), true, true, false)
    );
    assert_eq!(
        eps["192.168.0.3"],
        ("n3".into(), Some(10250), true, true, false)
    );
    assert!(!eps.contains_key("10.244.2.6"));

    // Not ready; then terminating while still serving.
    let uid = |n: &str| c.pod("ns", n).unwrap().metadata.uid.unwrap();
    c.update_pod_status("ns", "w2", &uid("w2"), ready_status("10.244.2.5", false));
    assert_eq!(
        endpoints(&c, "web")["10.244.2.5"],
        ("n2".into(), Some(9090), false, false, false)
    );
    c.begin_pod_deletion("ns", "w1");
    assert_eq!(
        endpoints(&c, "web")["10.244.1.5"],
        ("n1".into(), Some(8080), false, true, true)
    );
    c.delete_pod("ns", "w1");
    assert!(!endpoints(&c, "web").contains_key("10.244.1.5"));
    // Relabelled away.
    let mut h1 = c.pod("ns", "h1").unwrap();
    h1.metadata.labels = Some(BTreeMap::from([("app".to_string(), "gone".to_string())]));
    c.apply_pod(h1);
    assert!(!endpoints(&c, "web").contains_key("192.168.0.3"));
    // The Service goes, its slices with it.
    c.delete(Kind::Service, Some("ns"), "web");
    assert!(c.endpoint_slices("ns", "web").is_empty());
}

#[test]
fn publish_not_ready_addresses_marks_every_endpoint_ready() {
    let c = MemoryCluster::new();
    c.apply_pod(ready_pod("p", "n1", "10.244.1.7", "db", None));
    let uid = c.pod("ns", "p").unwrap().metadata.uid.unwrap();
    c.update_pod_status("ns", "p", &uid, ready_status("10.244.1.7", false));
    c.apply_service(svc(
        "db",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([("app".to_string(), "db".to_string())])),
            ports: Some(vec![tcp(5432)]),
            ..Default::default()
        },
    ));
    assert_eq!(
        endpoints(&c, "db")["10.244.1.7"],
        ("n1".into(), Some(5432), true, false, false)
    );
}

#[tokio::test]
async fn status_patches_are_guarded_and_change_only_the_status() {
    let c = MemoryCluster::new();
    let s = c.apply_service(svc(
        "lb",
        ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![tcp(80)]),
            ..Default::default()
        },
    ));
    let uid = s.metadata.uid.clone().unwrap();
    let rv = s.metadata.resource_version.clone();
    let target = ObjectRef::new(Kind::Service, Some("ns"), "lb", &uid);
    let ingress = serde_json::json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}});
    c.patch_status(target.clone(), rv.clone(), ingress.clone())
        .await
        .unwrap();
    let now = c.service("ns", "lb").unwrap();
    assert_eq!(
        now.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .as_deref(),
        Some("198.51.100.7")
    );
    assert_eq!(now.spec, s.spec);
    // Stale version: 409; another incarnation: 422; not an IP: 422.
    assert_eq!(
        c.patch_status(target.clone(), rv, ingress.clone())
            .await
            .unwrap_err()
            .code(),
        409
    );
    let other = ObjectRef::new(Kind::Service, Some("ns"), "lb", "someone-else");
    assert!(c
        .patch_status(other, None, ingress)
        .await
        .unwrap_err()
        .object_replaced());
    let bad = serde_json::json!({"loadBalancer": {"ingress": [{"ip": "nope"}]}});
    assert_eq!(
        c.patch_status(target.clone(), None, bad)
            .await
            .unwrap_err()
            .code(),
        422
    );
    // null clears.
    let clear = serde_json::json!({"loadBalancer": {"ingress": null}});
    c.patch_status(target, None, clear).await.unwrap();
    let lb = c
        .service("ns", "lb")
        .unwrap()
        .status
        .unwrap()
        .load_balancer
        .unwrap();
    assert!(lb.ingress.is_none());
    assert!(c
        .calls()
        .iter()
        .any(|a| a.verb == "patch" && a.resource == "services/status"));
}
