//! A Service port's backends, read from its EndpointSlices the way
//! kube-proxy reads them.
//!
//! kube-proxy's rules (`pkg/proxy/endpointslicecache.go`,
//! `pkg/proxy/topology.go`), which Switchyard keeps so that a Service
//! behaves the same with kube-proxy gone:
//! - a slice port belongs to a Service port when name and protocol match
//!   (the slice resolved the port number, which for a named `targetPort`
//!   differs from pod to pod, so each slice carries its own number);
//! - an endpoint is its first address; FQDN slices are ignored;
//! - absent conditions read as `ready: true`, `serving: ready`,
//!   `terminating: false`;
//! - the ready endpoints are used; only when none is ready are the
//!   serving-and-terminating ones used, so a rolling update that leaves no
//!   ready pod still answers (KEP-1669);
//! - for a per-node view (the `Local` traffic policies) the same rule
//!   applies to the node's own endpoints alone.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::spec::{Port, Proto};

/// One endpoint of one Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// The endpoints of `port` across `slices`, one per address and port (an
/// endpoint listed by two slices during a transition counts once, ready if
/// either says so), sorted by address.
pub fn port_endpoints<'a>(
    port: &Port,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    let mut out: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let Some(number) = slice_port(slice, port) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if ip.is_ipv4() != (slice.address_type == "IPv4") {
                continue;
            }
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let e = Endpoint {
                addr: SocketAddr::new(ip, number),
                node: ep.node_name.clone().filter(|n| !n.is_empty()),
                ready,
                serving: c.and_then(|c| c.serving).unwrap_or(ready),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
            };
            match out.get(&e.addr) {
                Some(have) if have.ready || !e.ready => {}
                _ => {
                    out.insert(e.addr, e);
                }
            }
        }
    }
    out.into_values().collect()
}

/// The number `slice` resolved for `port`, if it lists the port.
fn slice_port(slice: &EndpointSlice, port: &Port) -> Option<u16> {
    slice
        .ports
        .iter()
        .flatten()
        .find(|p| {
            p.name.as_deref().unwrap_or_default() == port.name
                && Proto::parse(p.protocol.as_deref()) == Some(port.proto)
        })
        .and_then(|p| p.port)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
}

/// The backends kube-proxy would use among `eps` (of one family): the
/// ready ones, else the serving and terminating ones; only `node`'s own
/// when given.
pub fn usable(eps: &[Endpoint], node: Option<&str>) -> Vec<SocketAddr> {
    let mine = |e: &&Endpoint| node.is_none() || e.node.as_deref() == node;
    let ready: Vec<SocketAddr> = eps
        .iter()
        .filter(mine)
        .filter(|e| e.ready)
        .map(|e| e.addr)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.iter()
        .filter(mine)
        .filter(|e| e.serving && e.terminating)
        .map(|e| e.addr)
        .collect()
}

/// `eps` of one family.
pub fn of_family(eps: &[Endpoint], v6: bool) -> Vec<Endpoint> {
    eps.iter()
        .filter(|e| e.addr.is_ipv6() == v6)
        .cloned()
        .collect()
}

/// `ip:port,ip:port` (IPv6 in brackets), as OVN's `vips` values want.
pub fn backend_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{
        Endpoint as ApiEndpoint, EndpointConditions, EndpointPort,
    };

    fn port(name: &str, proto: Proto) -> Port {
        Port {
            name: name.into(),
            proto,
            port: 80,
            node_port: None,
        }
    }

    fn ep(
        ip: &str,
        node: &str,
        ready: Option<bool>,
        serving: Option<bool>,
        term: Option<bool>,
    ) -> ApiEndpoint {
        ApiEndpoint {
            addresses: vec![ip.into()],
            node_name: Some(node.into()),
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating: term,
            }),
            ..Default::default()
        }
    }

    fn slice(family: &str, ports: &[(&str, &str, i32)], eps: Vec<ApiEndpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: family.into(),
            endpoints: eps,
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
            ..Default::default()
        }
    }

    fn addrs(v: &[&str]) -> Vec<SocketAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn each_slice_resolves_its_own_port_number() {
        // Named targetPort "http": 8080 in one rollout generation, 9090 in
        // the next.
        let a = slice(
            "IPv4",
            &[("http", "TCP", 8080)],
            vec![ep("10.0.0.1", "n1", Some(true), None, None)],
        );
        let b = slice(
            "IPv4",
            &[("http", "TCP", 9090), ("metrics", "TCP", 9100)],
            vec![ep("10.0.0.2", "n2", None, None, None)],
        );
        let eps = port_endpoints(&port("http", Proto::Tcp), [&a, &b]);
        assert_eq!(
            usable(&eps, None),
            addrs(&["10.0.0.1:8080", "10.0.0.2:9090"]),
            "absent conditions read as ready"
        );
        // Another protocol of the same name is another port.
        assert!(port_endpoints(&port("http", Proto::Udp), [&a, &b]).is_empty());
        let m = port_endpoints(&port("metrics", Proto::Tcp), [&a, &b]);
        assert_eq!(usable(&m, None), addrs(&["10.0.0.2:9100"]));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let s = slice(
            "IPv4",
            &[("", "TCP", 80)],
            vec![
                ep("10.0.0.1", "n1", Some(false), Some(true), Some(true)),
                ep("10.0.0.2", "n2", Some(true), Some(true), Some(false)),
                ep("10.0.0.3", "n2", Some(false), Some(false), Some(true)),
                ep("10.0.0.4", "n1", Some(false), Some(false), Some(false)),
            ],
        );
        let eps = port_endpoints(&port("", Proto::Tcp), [&s]);
        assert_eq!(usable(&eps, None), addrs(&["10.0.0.2:80"]));
        // On n1 nothing is ready: the serving, terminating one is used;
        // a terminating one that no longer serves never is.
        assert_eq!(usable(&eps, Some("n1")), addrs(&["10.0.0.1:80"]));
        assert_eq!(usable(&eps, Some("n2")), addrs(&["10.0.0.2:80"]));
        assert!(usable(&eps, Some("n3")).is_empty());
    }

    #[test]
    fn duplicates_count_once_and_families_stay_apart() {
        let a = slice(
            "IPv4",
            &[("", "TCP", 80)],
            vec![ep("10.0.0.1", "n1", Some(false), Some(false), None)],
        );
        let b = slice(
            "IPv4",
            &[("", "TCP", 80)],
            vec![ep("10.0.0.1", "n1", Some(true), None, None)],
        );
        let v6 = slice(
            "IPv6",
            &[("", "TCP", 80)],
            vec![
                ep("fd00::1", "n1", None, None, None),
                // An IPv4 address in an IPv6 slice is invalid; skipped.
                ep("10.0.0.9", "n1", None, None, None),
            ],
        );
        let fqdn = slice(
            "FQDN",
            &[("", "TCP", 80)],
            vec![ep("example.com", "n1", None, None, None)],
        );
        let eps = port_endpoints(&port("", Proto::Tcp), [&a, &b, &v6, &fqdn]);
        assert_eq!(eps.len(), 2);
        assert!(eps[0].ready, "the ready copy wins");
        assert_eq!(
            usable(&of_family(&eps, true), None),
            addrs(&["[fd00::1]:80"])
        );
        assert_eq!(
            backend_list(&addrs(&["10.0.0.1:80", "[fd00::1]:80"])),
            "10.0.0.1:80,[fd00::1]:80"
        );
    }
}
