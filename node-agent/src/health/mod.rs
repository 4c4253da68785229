//! Service health checks: the agent answers each Service's
//! `spec.healthCheckNodePort` the way kube-proxy does, since Switchyard
//! replaces kube-proxy and cloud load balancers probe that port to learn
//! which nodes hold endpoints of an `externalTrafficPolicy: Local` Service.
//!
//! - this module: pure data: which Services want a health check port
//!   ([`health_check`]) and how many local endpoints each has on this node
//!   ([`local_ready_endpoints`], [`desired`]);
//! - [`server`]: the listeners and the HTTP responder;
//! - [`crate::service_source`]: where Services and EndpointSlices come from.
//!
//! # What counts as a local endpoint (kube-proxy's rule)
//!
//! kube-proxy (`EndpointsMap.LocalReadyEndpoints` in
//! `pkg/proxy/endpointschangetracker.go`) counts, per Service, the distinct
//! IPs of endpoints that are *ready* and on this node; terminating
//! endpoints never count, even when they are still serving and nothing is
//! ready, so that load balancers drain a node whose endpoints are all
//! going away. We do the same:
//!
//! - an endpoint is local when its `nodeName` is this node's name;
//! - ready when `conditions.ready` is true or unset (an unset condition
//!   means ready, as the EndpointSlice API documents and kube-proxy reads
//!   it); `serving` and `terminating` are not looked at;
//! - its first address identifies it (kube-proxy uses `addresses[0]`);
//!   the same IP in two slices of one Service (one per port set) is one
//!   endpoint;
//! - `FQDN` slices are ignored (kube-proxy ignores them).
//!
//! kube-proxy runs one proxier per IP family, each counting only its own
//! family's slices, so a dual-stack pod is one endpoint, not two. One
//! answer serves both families here, so the count is the larger of the
//! per-family counts: a dual-stack pod counts once, and a single-stack
//! Service counts as its family's proxier would.
//!
//! Which Services: kube-proxy gives a Service a health check port only
//! when it needs one (`type: LoadBalancer` with
//! `externalTrafficPolicy: Local`); the API server allocates
//! `healthCheckNodePort` for exactly those.

pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What one Service's health check port should answer on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    pub port: u16,
    /// Local ready endpoints (see the module doc).
    pub local: usize,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ServiceKey> {
    Some(ServiceKey {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone()?,
    })
}

/// The Service's health check port, when it needs one: `None` for a
/// Service kube-proxy would not serve one for; an error for one that asks
/// for a port no listener can have.
pub fn health_check(svc: &Service) -> Result<Option<(ServiceKey, u16)>, String> {
    let Some(key) = key_of(&svc.metadata) else {
        return Err("a Service without a name".into());
    };
    let Some(spec) = &svc.spec else {
        return Ok(None);
    };
    let wants = spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local");
    match (wants, spec.health_check_node_port) {
        (false, _) | (true, None) => Ok(None),
        (true, Some(p)) => match u16::try_from(p) {
            Ok(port) if port != 0 => Ok(Some((key, port))),
            _ => Err(format!(
                "Service {key}: healthCheckNodePort {p} is not a TCP port"
            )),
        },
    }
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name`
/// label, in its namespace).
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ServiceKey {
        namespace: slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: name.clone(),
    })
}

/// Local ready endpoints among one Service's slices on node `node` (the
/// rule in the module doc).
pub fn local_ready_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: &str,
) -> usize {
    let mut by_family: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
    for slice in slices {
        let family = slice.address_type.as_str();
        if family != "IPv4" && family != "IPv6" {
            continue;
        }
        for ep in &slice.endpoints {
            let local = ep.node_name.as_deref() == Some(node);
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let ip = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok());
            if let (true, true, Some(ip)) = (local, ready, ip) {
                by_family.entry(family).or_default().insert(ip);
            }
        }
    }
    by_family.values().map(BTreeSet::len).max().unwrap_or(0)
}

/// Every health check port this node should serve, with its local endpoint
/// count, and a message for each Service that cannot have one (the others
/// are served all the same).
pub fn desired(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &str,
) -> (BTreeMap<ServiceKey, Desired>, Vec<String>) {
    let mut errors = Vec::new();
    let mut ports = BTreeMap::new();
    for svc in services {
        match health_check(svc) {
            Ok(Some((key, port))) => {
                ports.insert(key, port);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let mut by_service: BTreeMap<ServiceKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let Some(key) = slice_service(slice).filter(|k| ports.contains_key(k)) {
            by_service.entry(key).or_default().push(slice);
        }
    }
    let out = ports
        .into_iter()
        .map(|(key, port)| {
            let local = by_service
                .get(&key)
                .map_or(0, |s| local_ready_endpoints(s.iter().copied(), node));
            (key, Desired { port, local })
        })
        .collect();
    (out, errors)
}

#[cfg(test)]
mod tests;
