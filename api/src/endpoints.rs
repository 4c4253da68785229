//! A Service port's backends, read from its EndpointSlices the way
//! kube-proxy reads them: the controller's load balancers and the node
//! agent's conntrack flushes must agree on which endpoints are live, so
//! the rule lives here once.
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

/// One endpoint of one Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// The endpoints of the Service port named `name` (`""` when unnamed) with
/// `protocol` (the API's spelling: `TCP`, `UDP`, `SCTP`) across `slices`,
/// one per address and port (an endpoint listed by two slices during a
/// transition counts once, ready if either says so), sorted by address.
pub fn port_endpoints<'a>(
    name: &str,
    protocol: &str,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    let mut out: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let Some(number) = slice_port(slice, name, protocol) else {
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

/// The number `slice` resolved for the port, if it lists it (an absent
/// protocol is TCP, as the API defaults it).
fn slice_port(slice: &EndpointSlice, name: &str, protocol: &str) -> Option<u16> {
    slice
        .ports
        .iter()
        .flatten()
        .find(|p| {
            p.name.as_deref().unwrap_or_default() == name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
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
