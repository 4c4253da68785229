//! What kube-apiserver validates for the objects tests create and the
//! controller writes, with the server's field paths and wording
//! (apimachinery's `api/validation` and `util/validation`, and the
//! per-kind `validation.go` files).
//!
//! Only the rules an object Switchyard reads or writes can break are here;
//! each is a rule the real server enforces, so the in-memory API is never
//! easier than the server it stands in for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ClientIPConfig, Pod, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_controller::k8s::status::FieldError;
use switchyard_controller::k8s::{Kind, Object};

/// apimachinery's `TotalAnnotationSizeLimitB`.
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;
/// A generated name's random suffix (`names.SimpleNameGenerator`).
pub const GENERATED_SUFFIX: usize = 5;
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";

fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if s.is_empty() || !s.split('.').all(label_ok) {
        return Some(DNS1123_SUBDOMAIN_MSG.into());
    }
    None
}

/// `IsDNS1123Label`.
pub fn dns1123_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    (!label_ok(s)).then(|| DNS1123_LABEL_MSG.into())
}

/// `IsDNS1035Label`.
pub fn dns1035_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let starts_alpha = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    (!label_ok(s) || !starts_alpha).then(|| DNS1035_LABEL_MSG.into())
}

/// The name rule kube-apiserver applies to each kind.
pub fn name_rule(kind: &str) -> fn(&str) -> Option<String> {
    match kind {
        "Namespace" => dns1123_label,
        "Service" => dns1035_label,
        _ => dns1123_subdomain,
    }
}

/// `IsQualifiedName`: label and annotation keys.
pub fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Some("prefix part must be non-empty".into());
        }
        if let Some(e) = dns1123_subdomain(p) {
            return Some(format!("prefix part {e}"));
        }
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    (!ok).then(|| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into()
    })
}

/// `IsValidLabelValue`.
pub fn label_value(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    let ok = v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    (!ok).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into())
}

/// `ValidateObjectMeta` for a new object of `kind`.
pub fn object_meta(kind: &str, namespaced: bool, meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rule = name_rule(kind);
    match (&meta.name, &meta.generate_name) {
        (Some(n), _) if !n.is_empty() => {
            if let Some(e) = rule(n) {
                errs.push(FieldError::invalid("metadata.name", n, &e));
            }
        }
        (_, Some(g)) if !g.is_empty() => {
            // As apimachinery does for a prefix: only a trailing '-' is
            // forgiven, so "web." is refused and "web-" is not.
            let masked = match g.strip_suffix('-') {
                Some(s) => format!("{s}a"),
                None => g.clone(),
            };
            if let Some(e) = rule(&masked) {
                errs.push(FieldError::invalid("metadata.generateName", g, &e));
            }
        }
        _ => errs.push(FieldError {
            field: "metadata.name".into(),
            detail: "Required value: name or generateName is required".into(),
        }),
    }
    if namespaced {
        match meta.namespace.as_deref() {
            None | Some("") => errs.push(FieldError::required("metadata.namespace")),
            Some(ns) => {
                if let Some(e) = dns1123_label(ns) {
                    errs.push(FieldError::invalid("metadata.namespace", ns, &e));
                }
            }
        }
    } else if let Some(ns) = meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            &format!("not allowed on this type (got {ns:?})"),
        ));
    }
    errs.extend(labels(meta.labels.as_ref()));
    errs.extend(annotations(meta.annotations.as_ref()));
    errs
}

fn labels(labels: Option<&BTreeMap<String, String>>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        if let Some(e) = qualified_name(k) {
            errs.push(FieldError::invalid("metadata.labels", k, &e));
        }
        if let Some(e) = label_value(v) {
            errs.push(FieldError::invalid("metadata.labels", v, &e));
        }
    }
    errs
}

/// `ValidateAnnotations`: qualified keys, 256 KiB in all.
pub fn annotations(annotations: Option<&BTreeMap<String, String>>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        if let Some(e) = qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", k, &e));
        }
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_LIMIT {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            ANNOTATIONS_LIMIT,
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: what may never change.
pub fn object_meta_update(old: &ObjectMeta, new: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if new.uid.is_some() && new.uid != old.uid {
        errs.push(FieldError::invalid(
            "metadata.uid",
            new.uid.as_deref().unwrap_or_default(),
            "field is immutable",
        ));
    }
    if new.creation_timestamp.is_some() && new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            "metadata.creationTimestamp",
            "",
            "field is immutable",
        ));
    }
    errs.extend(labels(new.labels.as_ref()));
    errs.extend(annotations(new.annotations.as_ref()));
    errs
}

/// The part of `ValidatePodUpdate` the sandbox and tests can trip: a pod
/// stays where it was bound and keeps its network mode and ports.
pub fn pod_update(old: &Pod, new: &Pod) -> Vec<FieldError> {
    let (Some(o), Some(n)) = (old.spec.as_ref(), new.spec.as_ref()) else {
        return Vec::new();
    };
    let bound = o.node_name.as_deref().filter(|s| !s.is_empty());
    let ports = |s: &k8s_openapi::api::core::v1::PodSpec| {
        s.containers
            .iter()
            .map(|c| (c.name.clone(), c.ports.clone()))
            .collect::<Vec<_>>()
    };
    let changed = (bound.is_some() && n.node_name.as_deref() != bound)
        || o.host_network != n.host_network
        || ports(o) != ports(n);
    if changed {
        vec![FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, \
             `spec.tolerations` (only additions to existing tolerations), \
             `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        )]
    } else {
        Vec::new()
    }
}

/// `ValidateEventCreate` for `events.k8s.io/v1`.
pub fn event(ev: &Event) -> Vec<FieldError> {
    let mut errs = object_meta("Event", true, &ev.metadata);
    if ev.event_time.is_none() {
        errs.push(FieldError::required("eventTime"));
    }
    match ev.type_.as_deref() {
        Some("Normal") | Some("Warning") => {}
        other => errs.push(FieldError::invalid(
            "type",
            other.unwrap_or_default(),
            "has invalid value: must be one of Normal, Warning",
        )),
    }
    for (field, v) in [
        ("reportingController", &ev.reporting_controller),
        ("reportingInstance", &ev.reporting_instance),
        ("action", &ev.action),
        ("reason", &ev.reason),
    ] {
        match v.as_deref() {
            None | Some("") => errs.push(FieldError::required(field)),
            Some(s) if s.len() > 128 => errs.push(FieldError::too_long(field, 128)),
            _ => {}
        }
    }
    if let Some(c) = ev.reporting_controller.as_deref() {
        if let Some(e) = qualified_name(c) {
            errs.push(FieldError::invalid("reportingController", c, &e));
        }
    }
    if ev.note.as_deref().is_some_and(|n| n.len() > 1024) {
        errs.push(FieldError::too_long("note", 1024));
    }
    // The Event lives beside what it is about; a cluster-scoped object's
    // Events go to `default`.
    let ns = ev.metadata.namespace.as_deref().unwrap_or_default();
    match ev.regarding.as_ref() {
        None => errs.push(FieldError::required("regarding")),
        Some(r) => match r.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(rns) if rns != ns => errs.push(FieldError::invalid(
                "regarding.namespace",
                rns,
                "does not match event.namespace",
            )),
            None if !ns.is_empty() && ns != "default" => errs.push(FieldError::invalid(
                "metadata.namespace",
                ns,
                "not allowed for cluster-scoped involved object",
            )),
            _ => {}
        },
    }
    errs
}

/// `ValidateLoadBalancerStatus`: ingress entries name valid IPs (and
/// `ipMode` only with an IP).
pub fn service_status(
    status: Option<&k8s_openapi::api::core::v1::ServiceStatus>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ingress = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        let f = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = &ing.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                errs.push(FieldError::invalid(
                    &format!("{f}.ip"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
        match ing.ip_mode.as_deref() {
            None => {}
            Some(_) if ing.ip.is_none() => errs.push(FieldError::forbidden(
                &format!("{f}.ipMode"),
                "may not be specified when `ip` is not",
            )),
            Some("VIP" | "Proxy") => {}
            Some(m) => errs.push(FieldError {
                field: format!("{f}.ipMode"),
                detail: format!("Unsupported value: {m:?}: supported values: \"Proxy\", \"VIP\""),
            }),
        }
    }
    errs
}

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// `field: Invalid value: 30080: detail` (numbers are not quoted).
pub fn number_invalid(field: &str, n: i32, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        detail: format!("Invalid value: {n}: {detail}"),
    }
}

/// `SetDefaults_Service` and the registry's defaulting.
pub fn service_defaults(s: &mut ServiceSpec) {
    let ty = s.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
    if s.session_affinity.is_none() {
        s.session_affinity = Some("None".into());
    }
    if s.session_affinity.as_deref() == Some("ClientIP") {
        let c = s
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default)
            .client_ip
            .get_or_insert_with(ClientIPConfig::default);
        c.timeout_seconds.get_or_insert(10_800);
    }
    for p in s.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
        if p.target_port.is_none() {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if ty == "ExternalName" {
        return;
    }
    if (ty == "NodePort" || ty == "LoadBalancer") && s.external_traffic_policy.is_none() {
        s.external_traffic_policy = Some("Cluster".into());
    }
    s.internal_traffic_policy
        .get_or_insert_with(|| "Cluster".into());
    if ty == "LoadBalancer" {
        s.allocate_load_balancer_node_ports.get_or_insert(true);
    }
}

/// `IsValidPortName` (IANA_SVC_NAME), for a named `targetPort`.
fn port_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// The part of `ValidateService` a Service in these tests can break.
pub fn service_spec(s: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = s.type_.as_deref().unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError {
            field: "spec.type".into(),
            detail: format!(
                "Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
        });
    }
    let headless = s.cluster_ip.as_deref() == Some("None");
    let ports = s.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports"));
    }
    let mut names = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let name = p.name.as_deref().unwrap_or_default();
        if name.is_empty() && ports.len() > 1 {
            errs.push(FieldError::required(&format!("{f}.name")));
        } else if !name.is_empty() {
            if let Some(e) = dns1123_label(name) {
                errs.push(FieldError::invalid(&format!("{f}.name"), name, &e));
            } else if !names.insert(name) {
                errs.push(FieldError {
                    field: format!("{f}.name"),
                    detail: format!("Duplicate value: {name:?}"),
                });
            }
        }
        if !(1..=65535).contains(&p.port) {
            errs.push(number_invalid(
                &format!("{f}.port"),
                p.port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push(FieldError {
                field: format!("{f}.protocol"),
                detail: format!(
                    "Unsupported value: {proto:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""
                ),
            });
        } else if !pairs.insert((p.port, proto)) {
            errs.push(FieldError {
                field: f.clone(),
                detail: format!(
                    "Duplicate value: {{\"port\": {}, \"protocol\": {proto:?}}}",
                    p.port
                ),
            });
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => errs.push(number_invalid(
                &format!("{f}.targetPort"),
                *n,
                "must be between 1 and 65535, inclusive",
            )),
            Some(IntOrString::String(n)) if !port_name_ok(n) => errs.push(FieldError::invalid(
                &format!("{f}.targetPort"),
                n,
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )),
            _ => {}
        }
        if p.node_port.unwrap_or(0) != 0 && ty == "ClusterIP" {
            errs.push(FieldError::forbidden(
                &format!("{f}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    for (i, ip) in s.external_ips.iter().flatten().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                &format!("spec.externalIPs[{i}]"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    for (field, v) in [
        ("spec.externalTrafficPolicy", &s.external_traffic_policy),
        ("spec.internalTrafficPolicy", &s.internal_traffic_policy),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !["Cluster", "Local"].contains(v)) {
            errs.push(FieldError {
                field: field.into(),
                detail: format!(
                    "Unsupported value: {v:?}: supported values: \"Cluster\", \"Local\""
                ),
            });
        }
    }
    if s.external_traffic_policy.is_some()
        && !matches!(ty, "NodePort" | "LoadBalancer")
        && s.external_ips.iter().flatten().next().is_none()
    {
        errs.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            s.external_traffic_policy.as_deref().unwrap_or_default(),
            "may only be set for externally-accessible services",
        ));
    }
    if let Some(t) = s
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
    {
        if !(1..=86_400).contains(&t) {
            errs.push(number_invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                t,
                "must be greater than 0 and less than 86400",
            ));
        }
    }
    if headless && ty != "ClusterIP" {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            "may not be set to 'None' for LoadBalancer services",
        ));
    }
    errs
}

/// Which kinds' objects may be stored here (the watched kinds plus what
/// tests create around them).
pub fn known(kind: Kind) -> bool {
    Kind::ALL.contains(&kind)
}

/// What the AdminNetworkPolicy and BaselineAdminNetworkPolicy CRDs'
/// schemas check that the controller relies on: the priority range, at
/// most 100 rules per direction, the actions, and the baseline's name
/// (a CEL rule on the object). Messages as kube-apiserver words them.
pub fn admin_policy(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut rules =
        |dir: &str, actions: &mut dyn Iterator<Item = &str>, n: usize, allowed: &[&str]| {
            if n > 100 {
                errs.push(FieldError {
                    field: format!("spec.{dir}"),
                    detail: format!("Too many: {n}: must have at most 100 items"),
                });
            }
            for (i, a) in actions.enumerate() {
                if !allowed.contains(&a) {
                    let list: Vec<String> = allowed.iter().map(|v| format!("{v:?}")).collect();
                    errs.push(FieldError {
                        field: format!("spec.{dir}[{i}].action"),
                        detail: format!(
                            "Unsupported value: {a:?}: supported values: {}",
                            list.join(", ")
                        ),
                    });
                }
            }
        };
    match obj {
        Object::AdminNetworkPolicy(p) => {
            let s = &p.spec;
            let all = ["Allow", "Deny", "Pass"];
            rules(
                "ingress",
                &mut s.ingress.iter().map(|r| r.action.as_str()),
                s.ingress.len(),
                &all,
            );
            rules(
                "egress",
                &mut s.egress.iter().map(|r| r.action.as_str()),
                s.egress.len(),
                &all,
            );
            if !(0..=1000).contains(&s.priority) {
                let bound = if s.priority < 0 {
                    "greater than or equal to 0"
                } else {
                    "less than or equal to 1000"
                };
                errs.push(number_invalid(
                    "spec.priority",
                    s.priority,
                    &format!("spec.priority in body should be {bound}"),
                ));
            }
        }
        Object::BaselineAdminNetworkPolicy(p) => {
            let s = &p.spec;
            let two = ["Allow", "Deny"];
            rules(
                "ingress",
                &mut s.ingress.iter().map(|r| r.action.as_str()),
                s.ingress.len(),
                &two,
            );
            rules(
                "egress",
                &mut s.egress.iter().map(|r| r.action.as_str()),
                s.egress.len(),
                &two,
            );
            if p.metadata.name.as_deref() != Some("default") {
                errs.push(FieldError::invalid(
                    "<nil>",
                    "object",
                    "there is one BaselineAdminNetworkPolicy and it is named default",
                ));
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_server_rules() {
        assert!(dns1123_subdomain("web-0.x").is_none());
        assert!(dns1123_subdomain("churn_p1").is_some());
        assert!(dns1123_subdomain("Web").is_some());
        assert!(dns1123_label("a.b").is_some());
        assert!(dns1035_label("1abc").is_some());
        assert!(dns1035_label("abc").is_none());
        assert!(qualified_name("switchyard.io/pod-network").is_none());
        assert!(qualified_name("bad key").is_some());
        assert!(qualified_name("/x").is_some());
    }

    #[test]
    fn generate_name_forgives_only_a_trailing_dash() {
        let meta = |g: &str| ObjectMeta {
            generate_name: Some(g.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        };
        let errs = object_meta("Event", true, &meta("badip."));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.generateName");
        assert!(errs[0].detail.contains("RFC 1123 subdomain"));
        assert!(object_meta("Event", true, &meta("badip-")).is_empty());
    }

    #[test]
    fn annotations_are_bounded() {
        let big: BTreeMap<String, String> = [("k".to_string(), "v".repeat(300_000))].into();
        assert_eq!(annotations(Some(&big))[0].field, "metadata.annotations");
    }
}
