//! What kube-apiserver does to a Service on create, update and delete:
//! defaults, validation, ClusterIPs from the service CIDRs (dual-stack by
//! `ipFamilyPolicy`), NodePorts from 30000-32767 and the
//! `healthCheckNodePort` of an `externalTrafficPolicy: Local` LoadBalancer.
//!
//! Refusals are the server's: 422 with its field paths and wording
//! (`failed to allocate IP 10.96.0.10: provided IP is already allocated`,
//! `provided port is already allocated`, ...). Dynamic ClusterIPs come
//! from the upper part of the range first, as the allocator does since
//! KEP-3070, so a test that asks for a low "well-known" address (the DNS
//! Service's `.10`) finds it free.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use switchyard_controller::k8s::status::{self, FieldError};
use switchyard_controller::k8s::{Kind, KubeError};

use crate::validate::{self, number_invalid};
use crate::{endpointslices, Key, MemoryCluster, State};
use switchyard_controller::k8s::Object;

/// The API's NodePort range.
pub const NODE_PORTS: (u16, u16) = (30000, 32767);

/// Addresses and ports held by Services.
#[derive(Debug)]
pub struct ServiceAllocator {
    /// The service CIDRs, primary family first.
    pub cidrs: Vec<IpNet>,
    ips: HashMap<IpAddr, Key>,
    ports: HashMap<u16, Key>,
}

impl Default for ServiceAllocator {
    fn default() -> Self {
        ServiceAllocator {
            cidrs: vec!["10.96.0.0/16".parse().expect("constant")],
            ips: HashMap::new(),
            ports: HashMap::new(),
        }
    }
}

fn invalid(name: &str, errs: &[FieldError]) -> KubeError {
    status::to_error(&status::invalid_kind(Kind::Service, name, errs))
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn needs_node_ports(s: &ServiceSpec) -> bool {
    match s.type_.as_deref() {
        Some("NodePort") => true,
        Some("LoadBalancer") => s.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

fn needs_health_check(s: &ServiceSpec) -> bool {
    s.type_.as_deref() == Some("LoadBalancer")
        && s.external_traffic_policy.as_deref() == Some("Local")
}

impl ServiceAllocator {
    fn cidr_of(&self, family: &str) -> Option<IpNet> {
        self.cidrs
            .iter()
            .copied()
            .find(|c| family_name(c.addr()) == family)
    }

    fn primary(&self) -> &'static str {
        self.cidrs
            .first()
            .map(|c| family_name(c.addr()))
            .unwrap_or("IPv4")
    }

    /// Whether `ip` may be handed out: inside the CIDR, neither its
    /// network address nor (IPv4) its broadcast address.
    fn in_range(cidr: IpNet, ip: IpAddr) -> bool {
        cidr.contains(&ip)
            && ip != cidr.network()
            && !(cidr.addr().is_ipv4() && ip == cidr.broadcast())
    }

    /// The families a Service gets, primary first (`ipFamilyPolicy`).
    fn families(&self, s: &ServiceSpec) -> Result<Vec<String>, FieldError> {
        let policy = s.ip_family_policy.as_deref().unwrap_or("SingleStack");
        let mut fams: Vec<String> = s.ip_families.clone().unwrap_or_default();
        if fams.is_empty() {
            let requested = s
                .cluster_ips
                .iter()
                .flatten()
                .chain(s.cluster_ip.iter())
                .filter_map(|ip| ip.parse::<IpAddr>().ok());
            for ip in requested {
                let f = family_name(ip).to_string();
                if !fams.contains(&f) {
                    fams.push(f);
                }
            }
        }
        if fams.is_empty() {
            fams.push(self.primary().to_string());
        }
        let dual = self.cidr_of("IPv4").is_some() && self.cidr_of("IPv6").is_some();
        match policy {
            "SingleStack" => {
                if fams.len() > 1 {
                    return Err(FieldError::invalid(
                        "spec.ipFamilies",
                        &fams.join(","),
                        "when spec.ipFamilyPolicy is SingleStack only one family may be specified",
                    ));
                }
            }
            "PreferDualStack" | "RequireDualStack" => {
                if !dual && policy == "RequireDualStack" {
                    return Err(FieldError::invalid(
                        "spec.ipFamilyPolicy",
                        policy,
                        "this cluster is not configured for dual-stack services",
                    ));
                }
                if dual && fams.len() == 1 {
                    let other = if fams[0] == "IPv4" { "IPv6" } else { "IPv4" };
                    fams.push(other.into());
                }
            }
            other => {
                return Err(FieldError {
                    field: "spec.ipFamilyPolicy".into(),
                    detail: format!(
                        "Unsupported value: {other:?}: supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""
                    ),
                })
            }
        }
        for (i, f) in fams.iter().enumerate() {
            if self.cidr_of(f).is_none() {
                return Err(FieldError::invalid(
                    &format!("spec.ipFamilies[{i}]"),
                    f,
                    "not configured on this cluster",
                ));
            }
        }
        Ok(fams)
    }

    /// A free address of `cidr`: the upper band first, then the lower.
    fn next_free(&self, cidr: IpNet) -> Option<IpAddr> {
        let size: u128 = match cidr {
            IpNet::V4(n) => 1u128 << (32 - n.prefix_len()),
            IpNet::V6(n) => 1u128 << (128 - n.prefix_len()).min(20),
        };
        let band = (size / 16).clamp(16, 256).min(size);
        let base = match cidr.network() {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let at = |off: u128| -> IpAddr {
            match cidr {
                IpNet::V4(_) => IpAddr::V4(((base + off) as u32).into()),
                IpNet::V6(_) => IpAddr::V6((base + off).into()),
            }
        };
        (band..size)
            .chain(1..band)
            .map(at)
            .find(|ip| Self::in_range(cidr, *ip) && !self.ips.contains_key(ip))
    }

    /// Decides the ClusterIPs of `s` (keeping `keep`, the ones it holds),
    /// without taking them.
    fn plan_ips(
        &self,
        key: &Key,
        s: &ServiceSpec,
        keep: &[String],
    ) -> Result<Vec<String>, KubeError> {
        let fams = self.families(s).map_err(|e| invalid(&key.1, &[e]))?;
        let requested: Vec<String> = match (&s.cluster_ips, &s.cluster_ip) {
            (Some(v), _) if !v.is_empty() => v.clone(),
            (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
            _ => keep.to_vec(),
        };
        if requested.first().map(String::as_str) == Some("None") {
            return Ok(vec!["None".into()]);
        }
        let mut out = Vec::new();
        for (i, fam) in fams.iter().enumerate() {
            let field = format!("spec.clusterIPs[{i}]");
            let cidr = self.cidr_of(fam).ok_or_else(|| {
                invalid(
                    &key.1,
                    &[FieldError::invalid(
                        &field,
                        fam,
                        "not configured on this cluster",
                    )],
                )
            })?;
            let ip = match requested.get(i).filter(|r| !r.is_empty()) {
                Some(r) => {
                    let ip: IpAddr = r.parse().map_err(|_| {
                        invalid(&key.1, &[FieldError::invalid(&field, r, "must be a valid IP address")])
                    })?;
                    if family_name(ip) != fam {
                        return Err(invalid(
                            &key.1,
                            &[FieldError::invalid(
                                &field,
                                r,
                                &format!("expected an {fam} value as indicated by `ipFamilies[{i}]`"),
                            )],
                        ));
                    }
                    let fail = |why: String| {
                        invalid(
                            &key.1,
                            &[FieldError::invalid(&field, r, &format!("failed to allocate IP {r}: {why}"))],
                        )
                    };
                    if !Self::in_range(cidr, ip) {
                        return Err(fail(format!(
                            "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
                        )));
                    }
                    if self.ips.get(&ip).is_some_and(|k| k != key) {
                        return Err(fail("provided IP is already allocated".into()));
                    }
                    ip
                }
                None => self.next_free(cidr).ok_or_else(|| {
                    KubeError::Api("Internal error occurred: failed to allocate a serviceIP: range is full (500)".into())
                })?,
            };
            out.push(ip.to_string());
        }
        Ok(out)
    }

    /// Decides the NodePorts (and health check port) of `s` in place,
    /// keeping what `old` held where `s` leaves them unset.
    fn plan_ports(
        &self,
        key: &Key,
        s: &mut ServiceSpec,
        old: Option<&ServiceSpec>,
    ) -> Result<Vec<u16>, KubeError> {
        let mut taken: Vec<u16> = Vec::new();
        let mut errs = Vec::new();
        let free = |n: u16, taken: &[u16]| {
            !taken.contains(&n) && self.ports.get(&n).is_none_or(|k| k == key)
        };
        let check = |field: String, n: i32, taken: &mut Vec<u16>, errs: &mut Vec<FieldError>| {
            let ok = u16::try_from(n)
                .ok()
                .filter(|p| (NODE_PORTS.0..=NODE_PORTS.1).contains(p));
            match ok {
                None => errs.push(number_invalid(
                    &field,
                    n,
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.0, NODE_PORTS.1
                    ),
                )),
                Some(p) if taken.contains(&p) => {}
                Some(p) if !free(p, taken) => {
                    errs.push(number_invalid(&field, n, "provided port is already allocated"))
                }
                Some(p) => taken.push(p),
            }
        };
        let old_ports = old
            .filter(|o| needs_node_ports(o))
            .and_then(|o| o.ports.as_ref());
        if needs_node_ports(s) {
            for (i, p) in s.ports.iter_mut().flatten().enumerate() {
                if p.node_port.unwrap_or(0) == 0 {
                    p.node_port = old_ports
                        .into_iter()
                        .flatten()
                        .find(|o| o.port == p.port && o.protocol == p.protocol)
                        .and_then(|o| o.node_port);
                }
                if let Some(n) = p.node_port.filter(|n| *n != 0) {
                    check(
                        format!("spec.ports[{i}].nodePort"),
                        n,
                        &mut taken,
                        &mut errs,
                    );
                }
            }
        } else {
            for p in s.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
        if needs_health_check(s) {
            if s.health_check_node_port.unwrap_or(0) == 0 {
                s.health_check_node_port = old.and_then(|o| o.health_check_node_port);
            }
            if let Some(n) = s.health_check_node_port.filter(|n| *n != 0) {
                check("spec.healthCheckNodePort".into(), n, &mut taken, &mut errs);
            }
        } else {
            s.health_check_node_port = None;
        }
        if !errs.is_empty() {
            return Err(invalid(&key.1, &errs));
        }
        // What is still unset gets the lowest free port.
        let next = |taken: &mut Vec<u16>| -> Result<i32, KubeError> {
            let p = (NODE_PORTS.0..=NODE_PORTS.1)
                .find(|p| free(*p, taken))
                .ok_or_else(|| KubeError::Api("Internal error occurred: failed to allocate a nodePort: range is full (500)".into()))?;
            taken.push(p);
            Ok(i32::from(p))
        };
        if needs_node_ports(s) {
            for p in s.ports.iter_mut().flatten() {
                if p.node_port.unwrap_or(0) == 0 {
                    p.node_port = Some(next(&mut taken)?);
                }
            }
        }
        if needs_health_check(s) && s.health_check_node_port.unwrap_or(0) == 0 {
            s.health_check_node_port = Some(next(&mut taken)?);
        }
        Ok(taken)
    }

    fn commit(&mut self, key: &Key, ips: &[String], ports: &[u16]) {
        self.release(key);
        for ip in ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
            self.ips.insert(ip, key.clone());
        }
        for p in ports {
            self.ports.insert(*p, key.clone());
        }
    }

    /// Frees what the Service `key` holds.
    pub fn release(&mut self, key: &Key) {
        self.ips.retain(|_, k| k != key);
        self.ports.retain(|_, k| k != key);
    }

    /// Admits a Service being created or updated (`old`): defaults,
    /// validates and allocates, or refuses as the server does.
    pub fn admit(
        &mut self,
        key: &Key,
        old: Option<&Service>,
        svc: &mut Service,
    ) -> Result<(), KubeError> {
        let name = key.1.clone();
        let old_spec = old.and_then(|o| o.spec.as_ref());
        let s = svc.spec.get_or_insert_with(ServiceSpec::default);
        validate::service_defaults(s);
        let errs = validate::service_spec(s);
        if !errs.is_empty() {
            return Err(invalid(&name, &errs));
        }
        if s.type_.as_deref() == Some("ExternalName") {
            s.cluster_ip = None;
            s.cluster_ips = None;
            s.ip_families = None;
            s.ip_family_policy = None;
            self.commit(key, &[], &[]);
            return Ok(());
        }
        // What the old object held and the new one leaves unset is kept
        // (the registry's `patchAllocatedValues`); a change is refused.
        let held: Vec<String> = old_spec
            .filter(|o| o.type_.as_deref() != Some("ExternalName"))
            .and_then(|o| o.cluster_ips.clone())
            .unwrap_or_default();
        if let (Some(first), Some(want)) = (
            held.first(),
            s.cluster_ip.as_ref().filter(|c| !c.is_empty()),
        ) {
            if first != want {
                return Err(invalid(
                    &name,
                    &[FieldError::invalid(
                        "spec.clusterIPs[0]",
                        want,
                        "may not change once set",
                    )],
                ));
            }
        }
        if s.ip_families.as_ref().is_none_or(|f| f.is_empty()) && !held.is_empty() {
            s.ip_families = old_spec.and_then(|o| o.ip_families.clone());
            if s.ip_family_policy.is_none() {
                s.ip_family_policy = old_spec.and_then(|o| o.ip_family_policy.clone());
            }
            if let (Some("SingleStack"), Some(f)) =
                (s.ip_family_policy.as_deref(), s.ip_families.as_mut())
            {
                f.truncate(1);
            }
        }
        let keep: Vec<String> = match s.ip_family_policy.as_deref() {
            Some("SingleStack") => held.into_iter().take(1).collect(),
            _ => held,
        };
        if s.cluster_ips.as_ref().is_none_or(|c| c.is_empty())
            && s.cluster_ip.as_deref().unwrap_or_default().is_empty()
        {
            s.cluster_ips = Some(keep.clone()).filter(|k| !k.is_empty());
        }
        let ips = self.plan_ips(key, s, &keep)?;
        let ports = self.plan_ports(key, s, old_spec)?;
        let fams: Vec<String> = ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| family_name(ip).to_string())
            .collect();
        if !fams.is_empty() {
            s.ip_families = Some(fams);
        } else if s.ip_families.as_ref().is_none_or(|f| f.is_empty()) {
            s.ip_families = Some(vec![self.primary().to_string()]);
        }
        s.ip_family_policy
            .get_or_insert_with(|| "SingleStack".into());
        s.cluster_ip = ips.first().cloned();
        s.cluster_ips = Some(ips.clone());
        self.commit(key, &ips, &ports);
        Ok(())
    }
}

/// What the registry checks before it allocates (the version
/// precondition and the metadata), then the admission itself.
pub(crate) fn admit(
    st: &mut State,
    key: &Key,
    old: Option<&Object>,
    svc: &mut Service,
) -> Result<(), KubeError> {
    let kind = Kind::Service;
    if let (Some(o), Some(rv)) = (old, &svc.metadata.resource_version) {
        if o.meta().resource_version.as_ref() != Some(rv) {
            return Err(status::to_error(&status::conflict(
                kind.group(),
                kind.resource(),
                &key.1,
            )));
        }
    }
    let errs = match old {
        None => validate::object_meta(kind.name(), true, &svc.metadata),
        Some(o) => validate::object_meta_update(o.meta(), &svc.metadata),
    };
    if !errs.is_empty() {
        return Err(invalid(&key.1, &errs));
    }
    let old_svc = match old {
        Some(Object::Service(o)) => Some((**o).clone()),
        _ => None,
    };
    st.services.admit(key, old_svc.as_ref(), svc)
}

impl MemoryCluster {
    /// Sets the service CIDRs ClusterIPs come from (primary family first;
    /// `10.96.0.0/16` until set), as kube-apiserver's
    /// `--service-cluster-ip-range`.
    pub fn set_service_cidrs(&self, cidrs: &[ipnet::IpNet]) {
        self.lock().services.cidrs = cidrs.to_vec();
    }

    /// A Service (with what the API server allocated).
    pub fn service(&self, namespace: &str, name: &str) -> Option<Service> {
        match self.get(Kind::Service, Some(namespace), name)? {
            Object::Service(s) => Some(*s),
            _ => None,
        }
    }

    /// Creates or updates a Service; see [`MemoryCluster::try_apply`].
    pub fn apply_service(&self, svc: Service) -> Service {
        match self.apply(svc) {
            Object::Service(s) => *s,
            _ => unreachable!("a Service was stored"),
        }
    }

    /// The EndpointSlices of the Service `namespace/name`.
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> Vec<EndpointSlice> {
        self.list(Kind::EndpointSlice)
            .into_iter()
            .filter_map(|o| match o {
                Object::EndpointSlice(s) => Some(*s),
                _ => None,
            })
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(endpointslices::SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(service)
            })
            .collect()
    }
}
