//! A Service port's backends: kube-proxy's rule lives in
//! [`switchyard_api::endpoints`] (the node agent applies it too); here is
//! what the controller adds, the port it is asked for and OVN's spelling.

use std::net::SocketAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use switchyard_api::endpoints::{of_family, usable, Endpoint};

use super::spec::{Port, Proto};

/// The endpoints of `port` across `slices` (see
/// [`switchyard_api::endpoints::port_endpoints`]).
pub fn port_endpoints<'a>(
    port: &Port,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    let protocol = match port.proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
        Proto::Sctp => "SCTP",
    };
    switchyard_api::endpoints::port_endpoints(&port.name, protocol, slices)
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
