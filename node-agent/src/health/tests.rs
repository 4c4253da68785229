use serde_json::{json, Value};

use super::*;

fn service(ns: &str, name: &str, ty: &str, policy: &str, hc: Option<i64>) -> Service {
    let mut spec = json!({"type": ty, "externalTrafficPolicy": policy, "ports": [{"port": 80}]});
    if let Some(p) = hc {
        spec["healthCheckNodePort"] = json!(p);
    }
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .expect("a Service")
}

fn lb(ns: &str, name: &str, hc: i64) -> Service {
    service(ns, name, "LoadBalancer", "Local", Some(hc))
}

/// An endpoint: (address, node, ready, serving, terminating); `None` leaves
/// the condition unset.
type Ep<'a> = (&'a str, &'a str, Option<bool>, Option<bool>, Option<bool>);

fn slice(ns: &str, service: &str, family: &str, eps: &[Ep]) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("ready", ready),
                ("serving", serving),
                ("terminating", terminating),
            ] {
                if let Some(v) = v {
                    c.insert(k.into(), json!(v));
                }
            }
            json!({"addresses": [ip], "nodeName": node, "conditions": c})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{service}-{family}"),
                     "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"port": 8080}],
    }))
    .expect("an EndpointSlice")
}

#[test]
fn only_local_traffic_load_balancers_get_a_port() {
    let key = ServiceKey {
        namespace: "web".into(),
        name: "front".into(),
    };
    assert_eq!(
        health_check(&lb("web", "front", 31000)),
        Ok(Some((key, 31000)))
    );
    let cluster = service("web", "front", "LoadBalancer", "Cluster", Some(31000));
    assert_eq!(health_check(&cluster), Ok(None));
    let node_port = service("web", "front", "NodePort", "Local", Some(31000));
    assert_eq!(health_check(&node_port), Ok(None));
    let unallocated = service("web", "front", "LoadBalancer", "Local", None);
    assert_eq!(health_check(&unallocated), Ok(None));
    let no_spec: Service =
        serde_json::from_value(json!({"metadata": {"namespace": "a", "name": "b"}})).unwrap();
    assert_eq!(health_check(&no_spec), Ok(None));
}

#[test]
fn a_port_no_listener_can_have_is_an_error() {
    for bad in [0, -1, 65536] {
        let e = health_check(&lb("web", "front", bad)).unwrap_err();
        assert!(
            e.contains("web/front") && e.contains(&bad.to_string()),
            "{e}"
        );
    }
}

#[test]
fn counts_ready_endpoints_on_this_node_only() {
    let s = slice(
        "web",
        "front",
        "IPv4",
        &[
            ("10.0.0.1", "n1", Some(true), Some(true), Some(false)),
            // Unset ready means ready.
            ("10.0.0.2", "n1", None, None, None),
            ("10.0.0.3", "n2", Some(true), Some(true), Some(false)),
            ("10.0.0.4", "n1", Some(false), Some(false), Some(false)),
        ],
    );
    assert_eq!(local_ready_endpoints([&s], "n1"), 2);
    assert_eq!(local_ready_endpoints([&s], "n2"), 1);
    assert_eq!(local_ready_endpoints([&s], "n3"), 0);
}

#[test]
fn terminating_endpoints_never_count_even_when_serving_and_alone() {
    // kube-proxy fails the health check of a node whose endpoints are all
    // terminating, so load balancers drain it.
    let s = slice(
        "web",
        "front",
        "IPv4",
        &[
            ("10.0.0.1", "n1", Some(false), Some(true), Some(true)),
            ("10.0.0.2", "n1", Some(false), Some(false), Some(true)),
        ],
    );
    assert_eq!(local_ready_endpoints([&s], "n1"), 0);
}

#[test]
fn one_endpoint_in_several_slices_counts_once() {
    // Two slices (e.g. one per port set) naming the same pod.
    let a = slice(
        "web",
        "front",
        "IPv4",
        &[("10.0.0.1", "n1", Some(true), None, None)],
    );
    let b = slice(
        "web",
        "front",
        "IPv4",
        &[("10.0.0.1", "n1", Some(true), None, None)],
    );
    let c = slice(
        "web",
        "front",
        "IPv4",
        &[("10.0.0.2", "n1", Some(true), None, None)],
    );
    assert_eq!(local_ready_endpoints([&a, &b], "n1"), 1);
    assert_eq!(local_ready_endpoints([&a, &b, &c], "n1"), 2);
}

#[test]
fn a_dual_stack_endpoint_counts_once_and_fqdn_slices_not_at_all() {
    let v4 = slice(
        "web",
        "front",
        "IPv4",
        &[
            ("10.0.0.1", "n1", Some(true), None, None),
            ("10.0.0.2", "n1", Some(true), None, None),
        ],
    );
    let v6 = slice(
        "web",
        "front",
        "IPv6",
        &[("fd00::1", "n1", Some(true), None, None)],
    );
    assert_eq!(local_ready_endpoints([&v4, &v6], "n1"), 2);
    assert_eq!(local_ready_endpoints([&v6], "n1"), 1);
    let fqdn = slice(
        "web",
        "front",
        "FQDN",
        &[("example.com", "n1", Some(true), None, None)],
    );
    assert_eq!(local_ready_endpoints([&fqdn], "n1"), 0);
}

#[test]
fn desired_joins_slices_to_their_services() {
    let services = vec![
        lb("web", "front", 31000),
        lb("web", "empty", 31001),
        lb("other", "front", 31002),
        service("web", "plain", "ClusterIP", "Cluster", None),
        lb("web", "broken", 70000),
    ];
    let slices = vec![
        slice(
            "web",
            "front",
            "IPv4",
            &[("10.0.0.1", "n1", Some(true), None, None)],
        ),
        slice(
            "web",
            "front",
            "IPv6",
            &[("fd00::1", "n1", Some(true), None, None)],
        ),
        // Same Service name in another namespace: not web/front's.
        slice(
            "other",
            "front",
            "IPv4",
            &[
                ("10.0.1.1", "n1", Some(true), None, None),
                ("10.0.1.2", "n1", Some(true), None, None),
            ],
        ),
        // A slice whose Service wants no health check.
        slice(
            "web",
            "plain",
            "IPv4",
            &[("10.0.0.9", "n1", Some(true), None, None)],
        ),
    ];
    let (want, errors) = desired(&services, &slices, "n1");
    let get = |ns: &str, name: &str| {
        want.get(&ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        })
        .copied()
    };
    assert_eq!(
        get("web", "front"),
        Some(Desired {
            port: 31000,
            local: 1
        })
    );
    assert_eq!(
        get("web", "empty"),
        Some(Desired {
            port: 31001,
            local: 0
        })
    );
    assert_eq!(
        get("other", "front"),
        Some(Desired {
            port: 31002,
            local: 2
        })
    );
    assert_eq!(want.len(), 3, "{want:?}");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("web/broken"), "{errors:?}");
}
