use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::run::Pending;
use super::*;
use crate::health::SERVICE_NAME_LABEL;

/// A Service `ns/name` with `ports` (name, protocol, port) and extra spec
/// fields.
fn service(name: &str, ports: &[(&str, &str, i64)], extra: Value) -> Service {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, port)| json!({"name": n, "protocol": p, "port": port}))
        .collect();
    let mut spec = json!({"clusterIP": "10.96.0.10", "ports": ports});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": name}, "spec": spec}))
        .expect("a Service")
}

fn udp(name: &str) -> Service {
    service(name, &[("dns", "UDP", 53)], json!({}))
}

/// An endpoint: address, node, ready, serving, terminating (`None`: unset).
type Ep<'a> = (&'a str, &'a str, Option<bool>, Option<bool>, Option<bool>);

fn ep(ip: &str) -> Ep<'_> {
    (ip, "n1", None, None, None)
}

/// A slice of Service `svc` with `ports` (name, protocol, number).
fn slice(svc: &str, family: &str, ports: &[(&str, &str, i64)], eps: &[Ep]) -> EndpointSlice {
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
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, port)| json!({"name": n, "protocol": p, "port": port}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": format!("{svc}-{family}"),
                     "labels": {SERVICE_NAME_LABEL: svc}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports,
    }))
    .expect("an EndpointSlice")
}

fn dns_slice(svc: &str, eps: &[Ep]) -> EndpointSlice {
    slice(svc, "IPv4", &[("dns", "UDP", 5353)], eps)
}

fn b(proto: Proto, s: &str) -> Backend {
    Backend {
        proto,
        addr: s.parse().expect("address"),
    }
}

fn set(v: &[Backend]) -> BTreeSet<Backend> {
    v.iter().copied().collect()
}

#[test]
fn a_deleted_or_unready_udp_endpoint_is_removed() {
    let svcs = [udp("dns")];
    let before = serving(
        &svcs,
        &[dns_slice(
            "dns",
            &[ep("10.1.0.1"), ep("10.1.0.2"), ep("10.1.0.3")],
        )],
    );
    assert_eq!(
        before,
        set(&[
            b(Proto::Udp, "10.1.0.1:5353"),
            b(Proto::Udp, "10.1.0.2:5353"),
            b(Proto::Udp, "10.1.0.3:5353")
        ]),
        "the slice's port number, not the Service's"
    );
    let after = serving(
        &svcs,
        &[dns_slice(
            "dns",
            &[ep("10.1.0.1"), ("10.1.0.2", "n1", Some(false), None, None)],
        )],
    );
    assert_eq!(
        removed(&before, &after),
        set(&[
            b(Proto::Udp, "10.1.0.2:5353"),
            b(Proto::Udp, "10.1.0.3:5353")
        ])
    );
    // The Service deleted: all of its backends.
    assert_eq!(removed(&after, &serving(&[], &[])), after);
}

#[test]
fn terminating_endpoints_serve_only_while_nothing_is_ready() {
    let svcs = [udp("dns")];
    let term = ("10.1.0.2", "n2", Some(false), Some(true), Some(true));
    let alone = serving(&svcs, &[dns_slice("dns", &[term])]);
    assert_eq!(alone, set(&[b(Proto::Udp, "10.1.0.2:5353")]));
    // A ready one appears: the terminating one is no longer used.
    let with_ready = serving(&svcs, &[dns_slice("dns", &[term, ep("10.1.0.1")])]);
    assert_eq!(
        removed(&alone, &with_ready),
        set(&[b(Proto::Udp, "10.1.0.2:5353")])
    );
    // Unless a node's own view (a Local policy) still needs it.
    let local = [service(
        "dns",
        &[("dns", "UDP", 53)],
        json!({"internalTrafficPolicy": "Local"}),
    )];
    let local_view = serving(&local, &[dns_slice("dns", &[term, ep("10.1.0.1")])]);
    assert!(local_view.contains(&b(Proto::Udp, "10.1.0.2:5353")));
    // Terminating and no longer serving: never used.
    let gone = ("10.1.0.2", "n2", Some(false), Some(false), Some(true));
    assert!(serving(&local, &[dns_slice("dns", &[gone])]).is_empty());
}

#[test]
fn only_udp_and_sctp_ports_of_load_balanced_services_count() {
    let ports = [("dns", "UDP", 53), ("web", "TCP", 80), ("sig", "SCTP", 9)];
    let slice_ports = [
        ("dns", "UDP", 5353),
        ("web", "TCP", 8080),
        ("sig", "SCTP", 99),
    ];
    let slices = [slice("mixed", "IPv4", &slice_ports, &[ep("10.1.0.1")])];
    assert_eq!(
        serving(&[service("mixed", &ports, json!({}))], &slices),
        set(&[
            b(Proto::Udp, "10.1.0.1:5353"),
            b(Proto::Sctp, "10.1.0.1:99")
        ])
    );
    for extra in [
        json!({"clusterIP": "None"}),
        json!({"clusterIPs": ["None"]}),
        json!({"type": "ExternalName", "externalName": "example.com"}),
    ] {
        let svc = service("mixed", &ports, extra.clone());
        assert!(serving(&[svc], &slices).is_empty(), "{extra}");
    }
    // A slice port of the same name but another protocol is another port.
    let tcp_dns = [slice(
        "dns",
        "IPv4",
        &[("dns", "TCP", 5353)],
        &[ep("10.1.0.1")],
    )];
    assert!(serving(&[udp("dns")], &tcp_dns).is_empty());
    // A slice of another Service, or without the label, serves nothing.
    assert!(serving(&[udp("dns")], &[dns_slice("other", &[ep("10.1.0.1")])]).is_empty());
}

#[test]
fn a_backend_still_serving_another_service_is_not_removed() {
    let svcs = [udp("a"), udp("b")];
    let both = [
        dns_slice("a", &[ep("10.1.0.1")]),
        dns_slice("b", &[ep("10.1.0.1")]),
    ];
    let only_b = [dns_slice("a", &[]), dns_slice("b", &[ep("10.1.0.1")])];
    assert!(removed(&serving(&svcs, &both), &serving(&svcs, &only_b)).is_empty());
}

#[test]
fn families_and_duplicates() {
    let svcs = [udp("dns")];
    let slices = [
        dns_slice("dns", &[("10.1.0.1", "n1", Some(false), None, None)]),
        slice(
            "dns",
            "IPv4",
            &[("dns", "UDP", 5353)],
            &[ep("10.1.0.1"), ep("10.1.0.2")],
        ),
        slice(
            "dns",
            "IPv6",
            &[("dns", "UDP", 5353)],
            &[ep("fd00::1"), ep("10.1.0.9")],
        ),
        slice("dns", "FQDN", &[("dns", "UDP", 5353)], &[ep("example.com")]),
    ];
    assert_eq!(
        serving(&svcs, &slices),
        set(&[
            b(Proto::Udp, "10.1.0.1:5353"),
            b(Proto::Udp, "10.1.0.2:5353"),
            b(Proto::Udp, "[fd00::1]:5353"),
        ]),
        "the ready copy wins; an IPv4 address in an IPv6 slice and FQDN slices are ignored"
    );
}

#[test]
fn zones_and_messages() {
    let ids: BTreeMap<String, String> = [
        ("ct-zone-pod-a", "3"),
        ("ct-zone-7f1e_dnat", "11"),
        ("ct-zone-bad", "x"),
        ("ovn-nb-cfg", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let zones = ct_zones(&ids);
    assert_eq!(zones, BTreeSet::from([0, 3, 11]));
    let f = flushes(&b(Proto::Udp, "10.1.0.2:5353"), &zones);
    assert_eq!(f.len(), 3);
    assert_eq!(f[1].zone, Some(3));
    assert_eq!(f[1].ip_proto, 17);
    assert_eq!(f[1].orig, CtTuple::default());
    assert_eq!(f[1].reply.src, Some("10.1.0.2".parse().unwrap()));
    assert_eq!(f[1].reply.src_port, 5353);
    assert_eq!(f[1].reply.dst, None);
    assert_eq!(
        flushes(&b(Proto::Sctp, "[fd00::1]:9"), &zones)[0].ip_proto,
        132
    );
}

#[test]
fn the_schedule_repeats_and_stops_for_a_backend_serving_again() {
    let t0 = tokio::time::Instant::now();
    let (x, y) = (b(Proto::Udp, "10.1.0.1:53"), b(Proto::Udp, "10.1.0.2:53"));
    let mut p = Pending::default();
    p.removed([x, y], t0);
    assert_eq!(p.take_due(t0), vec![x, y]);
    assert_eq!(p.next_due(), Some(t0 + SCHEDULE[1]));
    assert!(p.take_due(t0 + Duration::from_millis(1)).is_empty());
    p.still_serving(&set(&[y]));
    let mut rounds = 1;
    while let Some(at) = p.next_due() {
        assert_eq!(p.take_due(at), vec![x]);
        rounds += 1;
    }
    assert_eq!(rounds, SCHEDULE.len());
    assert!(p.is_empty());
}

/// An endpoint of the property test: address index, node index, ready,
/// serving, terminating.
type DrawnEp = (u8, u8, Option<bool>, Option<bool>, Option<bool>);

/// One Service, one UDP port: endpoints drawn from a few addresses with
/// any conditions, on two nodes.
fn endpoints() -> impl Strategy<Value = Vec<DrawnEp>> {
    let cond = || proptest::option::of(any::<bool>());
    proptest::collection::vec((0u8..6, 0u8..2, cond(), cond(), cond()), 0..6)
}

fn snapshot(eps: &[DrawnEp]) -> Vec<EndpointSlice> {
    let owned: Vec<(String, String, _, _, _)> = eps
        .iter()
        .map(|(ip, node, r, s, t)| (format!("10.1.0.{ip}"), format!("n{node}"), *r, *s, *t))
        .collect();
    let eps: Vec<Ep> = owned
        .iter()
        .map(|(ip, node, r, s, t)| (ip.as_str(), node.as_str(), *r, *s, *t))
        .collect();
    vec![dns_slice("dns", &eps)]
}

proptest! {
    #[test]
    fn removed_backends_are_exactly_those_no_view_uses_any_more(
        before in endpoints(),
        after in endpoints(),
        local in any::<bool>(),
    ) {
        let extra = if local { json!({"internalTrafficPolicy": "Local"}) } else { json!({}) };
        let svcs = [service("dns", &[("dns", "UDP", 53)], extra)];
        let was = serving(&svcs, &snapshot(&before));
        let is = serving(&svcs, &snapshot(&after));
        let gone = removed(&was, &is);
        for g in &gone {
            prop_assert!(was.contains(g) && !is.contains(g));
        }
        for w in &was {
            prop_assert!(is.contains(w) || gone.contains(w));
        }
        // A ready endpoint is never flushed.
        for (ip, _, ready, _, _) in &after {
            if ready.unwrap_or(true) {
                let ready_b = b(Proto::Udp, &format!("10.1.0.{ip}:5353"));
                prop_assert!(!gone.contains(&ready_b));
            }
        }
        // Nothing changed, nothing removed.
        prop_assert!(removed(&was, &serving(&svcs, &snapshot(&before))).is_empty());
    }
}
