//! kube-controller-manager's EndpointSlice controller, for Services with a
//! selector: their slices follow the pods they select, synchronously with
//! every write here (the real controller lags by a few milliseconds;
//! nothing reading the API may rely on either).
//!
//! As the real controller (`pkg/controller/endpointslice`,
//! `staging/.../endpointslice/utils.go`) does:
//! - one slice per address family and per set of resolved ports (a named
//!   `targetPort` resolves per pod, so pods of two rollout generations
//!   land in two slices), at most 100 endpoints each;
//! - an endpoint per pod that has an IP of the family and is not finished;
//!   `ready` = `publishNotReadyAddresses` or (pod Ready and not
//!   terminating), `serving` = pod Ready, `terminating` = deletion begun;
//!   `nodeName`, `zone` from the node's `topology.kubernetes.io/zone`,
//!   `targetRef` the pod;
//! - `hostNetwork` pods are endpoints at their `podIPs`, which the kubelet
//!   reports as the node's addresses;
//! - labels `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//!   owned by the Service; a Service that selects nothing keeps one empty
//!   placeholder slice.
//!
//! Slices are named `<service>-<hash of family and ports>[-<n>]` instead
//! of the real controller's random suffix, so tests can name them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_controller::k8s::{Kind, Object};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::{store, Key, MemoryCluster, State};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Whether `labels` satisfy a Service's (equality-only) selector.
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The port `target` resolves to on `pod` (a named port by its container
/// port of that name and protocol).
fn resolve(target: Option<&IntOrString>, port: i32, proto: &str, pod: &Pod) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == proto
            })
            .map(|p| p.container_port),
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The slices `svc` should have given the pods of its namespace (it picks
/// those it selects) and the zones of the nodes.
pub fn desired(
    svc: &Service,
    pods: &[&Pod],
    zones: &BTreeMap<String, String>,
) -> Vec<EndpointSlice> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() || spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let families: Vec<String> = spec
        .ip_families
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".into()]);
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    type PortSet = Vec<(String, String, i32, Option<String>)>;
    let mut groups: BTreeMap<(String, PortSet), Vec<(String, Endpoint)>> = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| selects(&selector, p.metadata.labels.as_ref()))
    {
        let status = pod.status.as_ref();
        if matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|v| v.iter().map(|p| p.ip.clone()).collect())
            .filter(|v: &Vec<String>| !v.is_empty())
            .or_else(|| status.and_then(|s| s.pod_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default();
        let ports: PortSet = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                let n = resolve(p.target_port.as_ref(), p.port, &proto, pod)?;
                Some((
                    p.name.clone().unwrap_or_default(),
                    proto,
                    n,
                    p.app_protocol.clone(),
                ))
            })
            .collect();
        let serving = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let conditions = EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        };
        for fam in &families {
            let want_v4 = fam == "IPv4";
            let Some(ip) = ips.iter().find(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_ipv4() == want_v4)
            }) else {
                continue;
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let ep = Endpoint {
                addresses: vec![ip.clone()],
                conditions: Some(conditions.clone()),
                node_name: Some(node.clone()),
                zone: zones.get(&node).cloned(),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some(ns.clone()),
                    name: Some(pod_name.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            groups
                .entry((fam.clone(), ports.clone()))
                .or_default()
                .push((pod_name, ep));
        }
    }
    let slice = |name: String, fam: &str, ports: Option<Vec<EndpointPort>>, eps: Vec<Endpoint>| {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([
                    (
                        SERVICE_NAME_LABEL.to_string(),
                        svc.metadata.name.clone().unwrap_or_default(),
                    ),
                    (MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Service".into(),
                    name: svc.metadata.name.clone().unwrap_or_default(),
                    uid: svc.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            address_type: fam.to_string(),
            endpoints: eps,
            ports,
        }
    };
    let mut out = Vec::new();
    for ((fam, ports), mut eps) in groups {
        eps.sort_by(|a, b| a.0.cmp(&b.0));
        let api_ports: Vec<EndpointPort> = ports
            .iter()
            .map(|(n, proto, port, app)| EndpointPort {
                name: Some(n.clone()),
                protocol: Some(proto.clone()),
                port: Some(*port),
                app_protocol: app.clone(),
            })
            .collect();
        let hash = fnv(&format!("{fam}{ports:?}"));
        let chunks: Vec<Vec<Endpoint>> = eps
            .chunks(MAX_ENDPOINTS_PER_SLICE)
            .map(|c| c.iter().map(|(_, e)| e.clone()).collect())
            .collect();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let suffix = if i == 0 {
                String::new()
            } else {
                format!("-{i}")
            };
            out.push(slice(
                format!("{name}-{hash:08x}{suffix}"),
                &fam,
                Some(api_ports.clone()),
                chunk,
            ));
        }
    }
    if out.is_empty() {
        out.push(slice(
            format!("{name}-placeholder"),
            &families[0],
            None,
            Vec::new(),
        ));
    }
    out
}

fn same(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports == b.ports
        && a.metadata.labels == b.metadata.labels
}

/// Brings the slices of the Service `ns/name` up to date.
pub(crate) fn sync(st: &mut State, ns: &str, name: &str) {
    let svc = match st.get(Kind::Service, &(ns.to_string(), name.to_string())) {
        Some(Object::Service(s)) => Some((**s).clone()),
        _ => None,
    };
    let want = match &svc {
        Some(s) => {
            let pods: Vec<&Pod> = in_namespace(st, Kind::Pod, ns)
                .filter_map(|o| match o {
                    Object::Pod(p) => Some(&**p),
                    _ => None,
                })
                .collect();
            let zones: BTreeMap<String, String> = st
                .objects
                .get(&Kind::Node)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|o| {
                    let m = o.meta();
                    Some((m.name.clone()?, m.labels.as_ref()?.get(ZONE_LABEL)?.clone()))
                })
                .collect();
            desired(s, &pods, &zones)
        }
        None => Vec::new(),
    };
    let have: Vec<EndpointSlice> = in_namespace(st, Kind::EndpointSlice, ns)
        .filter_map(|o| match o {
            Object::EndpointSlice(s) => Some((**s).clone()),
            _ => None,
        })
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(name)
                && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str)
                    == Some(CONTROLLER_NAME)
        })
        .collect();
    let wanted: BTreeSet<String> = want
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    for old in &have {
        let n = old.metadata.name.clone().unwrap_or_default();
        if !wanted.contains(&n) {
            crate::delete(st, Kind::EndpointSlice, &(ns.to_string(), n));
        }
    }
    for mut s in want {
        let n = s.metadata.name.clone().unwrap_or_default();
        match have
            .iter()
            .find(|h| h.metadata.name.as_deref() == Some(n.as_str()))
        {
            Some(h) if same(h, &s) => {}
            Some(h) => {
                let meta = h.metadata.clone();
                s.metadata = ObjectMeta {
                    resource_version: Some(st.next_rv()),
                    ..meta
                };
                crate::store(st, s.into());
            }
            None => {
                // Validated and versioned as any created object.
                let _ = crate::create(st, s.into());
            }
        }
    }
}

fn in_namespace<'a>(st: &'a State, kind: Kind, ns: &str) -> impl Iterator<Item = &'a Object> + 'a {
    let from: Key = (ns.to_string(), String::new());
    let ns = ns.to_string();
    st.objects
        .get(&kind)
        .into_iter()
        .flat_map(move |m| m.range(from.clone()..))
        .take_while(move |((n, _), _)| *n == ns)
        .map(|(_, o)| o.as_ref())
}

/// After a pod of `ns` changed from `old` labels to `new` ones: the
/// Services selecting it before or after.
pub(crate) fn on_pod(
    st: &mut State,
    ns: &str,
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) {
    let services: Vec<String> = in_namespace(st, Kind::Service, ns)
        .filter_map(|o| match o {
            Object::Service(s) => {
                let sel = s.spec.as_ref()?.selector.as_ref()?;
                (selects(sel, old) || selects(sel, new)).then(|| s.metadata.name.clone())?
            }
            _ => None,
        })
        .collect();
    for s in services {
        sync(st, ns, &s);
    }
}

impl MemoryCluster {
    /// Begins a pod's graceful deletion, as `kubectl delete` does before
    /// the kubelet has stopped it: `deletionTimestamp` is set and its
    /// endpoints turn terminating. [`MemoryCluster::delete_pod`] ends it.
    pub fn begin_pod_deletion(&self, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let Some(Object::Pod(mut pod)) = st.get(Kind::Pod, &key).cloned() else {
            return false;
        };
        if pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
            pod.metadata.deletion_grace_period_seconds = Some(30);
            pod.metadata.resource_version = Some(st.next_rv());
            let labels = pod.metadata.labels.clone();
            store(&mut st, Object::Pod(pod));
            on_pod(&mut st, namespace, labels.as_ref(), labels.as_ref());
        }
        true
    }
}
