//! A pod's switch port on its node's switch, and the annotation the node
//! agent applies.

use std::net::IpAddr;

use ipnet::IpNet;
use ovsdb::nb::{LogicalSwitch, LogicalSwitchPort};
use switchyard_api::{addressing, names, PodNetwork, Route};

use crate::k8s::Kind;
use crate::model::{Change, PodInfo};
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};

use super::node::address_string;
use super::{Assigned, Problem, Translator, View};

pub struct Pods;

/// The port of `pod` with addresses `a`.
pub fn pod_rows(pod: &PodInfo, node: &str, a: &Assigned) -> Vec<DesiredRow> {
    let owner = Owner::of(names::KIND_POD, pod.key());
    let addrs = address_string(&a.mac, a.addrs());
    vec![DesiredRow::named(
        Table::LogicalSwitchPort,
        names::pod_port(&pod.namespace, &pod.name),
        &owner,
    )
    .ids([(names::NODE, node), (names::POD_UID, pod.uid.as_str())])
    .col(LogicalSwitchPort::TYPE, Col::str(""))
    .col(LogicalSwitchPort::ADDRESSES, Col::set([addrs.clone()]))
    .col(LogicalSwitchPort::PORT_SECURITY, Col::set([addrs]))
    .col(
        LogicalSwitchPort::OPTIONS,
        Col::map([
            ("requested-chassis", node),
            ("iface-id-ver", pod.uid.as_str()),
        ]),
    )
    .parent(Parent::new(
        Table::LogicalSwitch,
        names::node_switch(node),
        LogicalSwitch::PORTS,
    ))
    .identity(names::POD_UID, &pod.uid)]
}

/// The annotation the node agent applies: addresses, MAC, the node
/// subnet's gateway per family, a route to each service CIDR of a family
/// the pod has, and the MTU.
pub fn pod_network(a: &Assigned, service_cidrs: &[IpNet], mtu: Option<u32>) -> PodNetwork {
    let gateways: Vec<IpAddr> = a
        .ips
        .iter()
        .filter_map(|n| addressing::gateway(n.trunc()))
        .collect();
    let routes = service_cidrs
        .iter()
        .filter_map(|svc| {
            gateways
                .iter()
                .find(|g| g.is_ipv4() == svc.addr().is_ipv4())
                .map(|g| Route {
                    dest: *svc,
                    next_hop: *g,
                })
        })
        .collect();
    PodNetwork {
        ips: a.ips.clone(),
        mac: a.mac.clone(),
        gateways,
        routes,
        mtu,
    }
}

impl Translator for Pods {
    fn kind(&self) -> &'static str {
        names::KIND_POD
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_NODE]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::LogicalSwitchPort]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::Pod]
    }
    fn owners(&self, change: &Change, _: &View, out: &mut Vec<String>) {
        match change {
            Change::PodAddresses { key } | Change::Pod { key, .. } => out.push(key.clone()),
            _ => {}
        }
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.decisions.pod_addresses.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let pod = view.model.pod(key)?;
        let node = pod.node.as_deref()?;
        let a = view.decisions.pod_addresses.get(key)?;
        Some(pod_rows(pod, node, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> (PodInfo, Assigned) {
        (
            PodInfo {
                namespace: "default".into(),
                name: "web-0".into(),
                uid: "u-1".into(),
                node: Some("w1".into()),
                ..Default::default()
            },
            Assigned {
                ips: vec![
                    "10.244.1.5/24".parse().unwrap(),
                    "fd00:10:244:1::5/64".parse().unwrap(),
                ],
                mac: "0a:58:0a:f4:01:05".into(),
            },
        )
    }

    #[test]
    fn pod_port() {
        let (p, a) = pod();
        let rows = pod_rows(&p, "w1", &a);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.name(), Some("default_web-0"));
        assert_eq!(
            r.parents,
            vec![Parent::new(Table::LogicalSwitch, "node-w1", "ports")]
        );
        let addr = "0a:58:0a:f4:01:05 10.244.1.5 fd00:10:244:1::5";
        assert_eq!(r.get("addresses"), Some(&Col::set([addr])));
        assert_eq!(r.get("port_security"), Some(&Col::set([addr])));
        assert_eq!(
            r.get("options"),
            Some(&Col::map([
                ("requested-chassis", "w1"),
                ("iface-id-ver", "u-1")
            ]))
        );
        let Some(Col::Map(ids)) = r.get("external_ids") else {
            panic!()
        };
        assert_eq!(ids[names::OWNER], "default/web-0");
        assert_eq!(ids[names::POD_UID], "u-1");
        assert_eq!(r.identity, Some((names::POD_UID, "u-1".to_string())));
    }

    #[test]
    fn pod_annotation() {
        let (_, a) = pod();
        let svc: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap()];
        let net = pod_network(&a, &svc, Some(1400));
        assert_eq!(
            net.gateways,
            vec![
                "10.244.1.1".parse::<IpAddr>().unwrap(),
                "fd00:10:244:1::1".parse().unwrap()
            ]
        );
        assert_eq!(
            net.routes.len(),
            1,
            "only the IPv4 service CIDR has a family"
        );
        assert_eq!(net.mtu, Some(1400));
        assert_eq!(PodNetwork::parse(&net.to_json()).unwrap(), net);
    }
}
