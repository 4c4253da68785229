//! Conntrack entries of removed UDP (and SCTP) Service backends: the agent
//! flushes them itself, so that a client streaming datagrams to a Service
//! moves to the remaining backends (upstream's "should be able to preserve
//! UDP traffic when server pod cycles").
//!
//! # Why the agent, when OVN has `ct_flush`
//!
//! The controller sets `options:ct_flush=true` on UDP load balancers, and
//! ovn-controller (23.03) does flush a removed backend's entries when it
//! reprograms br-int. But the datapath's cached flows (megaflows) of before
//! the change are revalidated asynchronously after the OpenFlow change: a
//! datagram arriving right after ovn-controller's flush can still meet a
//! cached flow that load-balances to the gone backend, which re-creates the
//! entry; the stream's next datagrams keep it alive (UDP entries live as
//! long as traffic flows), so the client never reaches the new backend.
//! A flush has to come again once the datapath has settled.
//!
//! # When the agent flushes ([`SCHEDULE`])
//!
//! On every change of the Services and EndpointSlices, a backend that
//! served some UDP/SCTP Service port and no longer does ([`removed`]) is
//! flushed right away and then again at fixed delays after the change
//! ([`SCHEDULE`]: 0, 0.3, 1, 2.5 and 6 s). The agent's watch and the
//! path that reprograms br-int (controller, NB, northd, SB,
//! ovn-controller) have independent latencies, and the datapath's
//! revalidation follows the latter: in the e2e sandbox (2 loaded cores)
//! the agent saw the change within 15 ms of ovn-controller's own flush,
//! either first, so the immediate flush races the same window as OVN's,
//! and the later rounds are what removes an entry re-created from not yet
//! revalidated datapath flows; on a real cluster the control plane can
//! take seconds, which the last rounds cover. A stale entry the stream keeps alive is therefore gone at the
//! first round after the datapath settled. The cost: per round, one
//! message per zone and backend, each a walk of the conntrack table of
//! that zone. A backend that serves again before its schedule ends is
//! no longer flushed (its new entries are live).
//!
//! # What is flushed
//!
//! Entries whose reply direction comes from the backend's address and
//! port with the Service port's protocol, in every conntrack zone of
//! br-int: OVN gives each logical port and each router's SNAT/DNAT their
//! own zone (`ct-zone-*` keys in br-int's `external_ids`, [`ct_zones`]),
//! and `NXT_CT_FLUSH` with a tuple flushes one zone only (zone 0 when none
//! is given, `man ovs-ofctl`, `ct-flush`), so one message per zone and
//! backend ([`flushes`]). The reply-direction source is the backend for
//! every load-balanced entry (whatever VIP the client used: ClusterIP,
//! node port, external IP) and for direct connections to the backend.
//!
//! # Which backends count as serving (the controller's rule)
//!
//! The same choice as the controller's `translate::service::endpoints`
//! (kube-proxy's): a Service gets load balancers unless it is
//! `ExternalName`, headless or portless; a slice port belongs to a Service
//! port when name and protocol match; an endpoint is its first address;
//! absent conditions read as `ready: true`, `serving: ready`,
//! `terminating: false`; the ready endpoints are used, else the serving
//! and terminating ones, per family, cluster-wide and, for a Service with
//! a `Local` traffic policy, per node. A backend is serving when any of
//! those views holds it, so it is flushed only once no load balancer can
//! send to it. (The code is the controller's rule written again: the
//! controller's copy is private to it and works on its own types.)
//!
//! # Start and errors
//!
//! There is no previous snapshot when the agent starts: the first one is
//! only remembered, nothing is flushed (entries of backends removed while
//! the agent was down are left to ovn-controller's flush and to conntrack
//! timeouts). A snapshot with read errors is not compared (a Service or
//! slice that could not be read would look removed). An endpoint that
//! moves between two slices of its Service may be seen in neither for a
//! moment and be flushed while live: its next datagram makes a new entry
//! (to a backend the load balancer picks), as after any flush.

pub mod run;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use openflow::{CtFlush, CtTuple};
use switchyard_api::endpoints;

use crate::health::{slice_service, ServiceKey};

/// The delays after a change at which a removed backend is flushed (see
/// the module doc).
pub const SCHEDULE: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(6),
];

/// The connectionless protocols whose entries outlive their backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Udp,
    Sctp,
}

impl Proto {
    /// The Service port's protocol, when it is one of ours (absent is TCP).
    fn parse(s: Option<&str>) -> Option<Proto> {
        match s {
            Some("UDP") => Some(Proto::Udp),
            Some("SCTP") => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn ip_proto(self) -> u8 {
        match self {
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

/// A backend of some Service port: protocol, address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub proto: Proto,
    pub addr: SocketAddr,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.proto {
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        };
        write!(f, "{}/{p}", self.addr)
    }
}

/// A UDP/SCTP Service port: name (`""` when unnamed) and protocol.
type PortKey = (String, Proto);

/// The UDP/SCTP ports of a Service that gets load balancers (the
/// controller's `spec::read`: not `ExternalName`, not headless, a valid
/// port number), and whether it has per-node views (a `Local` traffic
/// policy).
fn lb_ports(svc: &Service) -> (Vec<PortKey>, bool) {
    let Some(spec) = &svc.spec else {
        return (vec![], false);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return (vec![], false);
    }
    let headless = match &spec.cluster_ips {
        Some(v) if !v.is_empty() => v.iter().any(|ip| ip == "None"),
        _ => spec.cluster_ip.as_deref() == Some("None"),
    };
    if headless {
        return (vec![], false);
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| u16::try_from(p.port).is_ok_and(|n| n != 0))
        .filter_map(|p| {
            let proto = Proto::parse(p.protocol.as_deref())?;
            Some((p.name.clone().unwrap_or_default(), proto))
        })
        .collect();
    let local = spec.internal_traffic_policy.as_deref() == Some("Local")
        || spec.external_traffic_policy.as_deref() == Some("Local");
    (ports, local)
}

/// Every backend some load balancer of a UDP/SCTP Service port may send
/// to (the rule in the module doc).
pub fn serving(services: &[Service], slices: &[EndpointSlice]) -> BTreeSet<Backend> {
    let mut by_service: BTreeMap<ServiceKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let Some(key) = slice_service(slice) {
            by_service.entry(key).or_default().push(slice);
        }
    }
    let mut out = BTreeSet::new();
    for svc in services {
        let Some(name) = svc.metadata.name.clone() else {
            continue;
        };
        let key = ServiceKey {
            namespace: svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name,
        };
        let Some(slices) = by_service.get(&key) else {
            continue;
        };
        let (ports, local) = lb_ports(svc);
        for port in ports {
            let protocol = match port.1 {
                Proto::Udp => "UDP",
                Proto::Sctp => "SCTP",
            };
            let eps = endpoints::port_endpoints(&port.0, protocol, slices.iter().copied());
            for v6 in [false, true] {
                let family = endpoints::of_family(&eps, v6);
                // The cluster-wide view, and each node's own with a
                // `Local` policy.
                let mut views: BTreeSet<Option<&str>> = BTreeSet::from([None]);
                if local {
                    views.extend(family.iter().filter_map(|e| e.node.as_deref()).map(Some));
                }
                for node in views {
                    out.extend(
                        endpoints::usable(&family, node)
                            .into_iter()
                            .map(|addr| Backend {
                                proto: port.1,
                                addr,
                            }),
                    );
                }
            }
        }
    }
    out
}

/// The backends serving in `before` and not in `after`.
pub fn removed(before: &BTreeSet<Backend>, after: &BTreeSet<Backend>) -> BTreeSet<Backend> {
    before.difference(after).copied().collect()
}

/// The conntrack zones OVN uses on the integration bridge, from its
/// `external_ids` (`ct-zone-<port or datapath>` = zone number), plus zone
/// 0 (the default zone, where anything outside OVN's zones lands).
pub fn ct_zones(bridge_external_ids: &BTreeMap<String, String>) -> BTreeSet<u16> {
    bridge_external_ids
        .iter()
        .filter(|(k, _)| k.starts_with("ct-zone-"))
        .filter_map(|(_, v)| v.parse::<u16>().ok())
        .chain(std::iter::once(0))
        .collect()
}

/// The `NXT_CT_FLUSH` messages that remove `backend`'s entries from
/// `zones`: by reply-direction source address and port.
pub fn flushes(backend: &Backend, zones: &BTreeSet<u16>) -> Vec<CtFlush> {
    zones
        .iter()
        .map(|z| CtFlush {
            zone: Some(*z),
            ip_proto: backend.proto.ip_proto(),
            orig: CtTuple::default(),
            reply: CtTuple {
                src: Some(backend.addr.ip()),
                src_port: backend.addr.port(),
                ..CtTuple::default()
            },
        })
        .collect()
}
