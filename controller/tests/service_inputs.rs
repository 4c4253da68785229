//! What the controller does with what it is given besides backends: bad
//! input (an Event on that Service, nothing else disturbed) and the
//! LoadBalancer IP pool, against real NB and ovn-northd.

mod common;
mod svc;

use common::{eventually, Env};
use k8s_openapi::api::core::v1::ServiceSpec;
use svc::*;
use switchyard_controller::k8s::Kind;

fn dual_stack_env_config(env: &mut Env) {
    env.config.service_cidrs = vec![
        "10.96.0.0/16".parse().unwrap(),
        "fd00:96::/112".parse().unwrap(),
    ];
    env.cluster.set_service_cidrs(&env.config.service_cidrs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_an_event_on_that_service_and_nothing_else_changes() {
    let mut env = Env::new(&[]).await;
    // The API server's range is wider than the controller's.
    env.cluster
        .set_service_cidrs(&["10.96.0.0/12".parse().unwrap()]);
    env.config.service_cidrs = vec!["10.96.0.0/16".parse().unwrap()];
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1"]));
    let running = env.start();
    ready_backend(&c, backend("b1", "n1", "app", 8080)).await;
    let with = |spec: ServiceSpec| ServiceSpec {
        selector: selector("app"),
        ports: Some(vec![port("", "TCP", 80, "http")]),
        ..spec
    };
    c.apply_service(service("good", with(ServiceSpec::default())));
    c.apply_service(service(
        "outside",
        with(ServiceSpec {
            cluster_ip: Some("10.100.0.5".into()),
            ..Default::default()
        }),
    ));
    c.apply_service(service(
        "first",
        with(ServiceSpec {
            external_ips: Some(vec!["192.0.2.1".into()]),
            ..Default::default()
        }),
    ));
    c.apply_service(service(
        "second",
        with(ServiceSpec {
            external_ips: Some(vec!["192.0.2.1".into()]),
            ..Default::default()
        }),
    ));
    c.apply_service(service(
        "podnet",
        with(ServiceSpec {
            external_ips: Some(vec!["10.244.0.77".into()]),
            ..Default::default()
        }),
    ));
    let reason_on = |name: &str, reason: &str| {
        c.events().iter().any(|e| {
            e.regarding.kind == Kind::Service
                && e.regarding.name == name
                && e.reason == reason
                && e.type_ == "Warning"
        })
    };
    eventually(T, "the Warning Events", || {
        let all = [
            ("outside", "ClusterIPOutsideServiceCIDRs"),
            ("second", "ExternalIPConflict"),
            ("podnet", "ExternalIPInClusterNetwork"),
        ];
        all.iter()
            .all(|(n, r)| reason_on(n, r))
            .then_some(())
            .ok_or(format!("{:?}", c.events()))
    })
    .await;
    assert!(
        !reason_on("first", "ExternalIPConflict"),
        "the older Service keeps its address"
    );
    eventually(T, "everything else programmed", || {
        let lbs = load_balancers(&env);
        let good = lbs
            .get("svc:ns/good:tcp")
            .is_some_and(|l| l.vips.len() == 1);
        let first = lbs
            .get("svc:ns/first:tcp")
            .is_some_and(|l| l.vips.contains_key("192.0.2.1:80"));
        let second = lbs
            .get("svc:ns/second:tcp")
            .is_some_and(|l| l.vips.len() == 1 && !l.vips.contains_key("192.0.2.1:80"));
        let podnet = lbs
            .get("svc:ns/podnet:tcp")
            .is_some_and(|l| l.vips.len() == 1);
        let outside = !lbs.contains_key("svc:ns/outside:tcp");
        (good && first && second && podnet && outside)
            .then_some(())
            .ok_or(format!("{lbs:#?}"))
    })
    .await;
    // The older one goes: the younger gets the address.
    c.delete(Kind::Service, Some(NS), "first");
    eventually(T, "the address moves to the younger Service", || {
        load_balancers(&env)
            .get("svc:ns/second:tcp")
            .filter(|l| l.vips.contains_key("192.0.2.1:80"))
            .map(|_| ())
            .ok_or("not yet".into())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_ips_come_from_the_pool_and_go_back_to_it() {
    let mut env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    dual_stack_env_config(&mut env);
    // Two IPv4 addresses (a /30), one IPv6 address short of a /126.
    env.config.load_balancer_pool = vec![
        "198.51.100.0/30".parse().unwrap(),
        "2001:db8:1::/126".parse().unwrap(),
    ];
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1", "fd00:192::1"]));
    let running = env.start();
    let lb = |name: &str, class: Option<&str>, policy: &str| {
        service(
            name,
            ServiceSpec {
                type_: Some("LoadBalancer".into()),
                load_balancer_class: class.map(str::to_string),
                ip_family_policy: Some(policy.into()),
                selector: selector("app"),
                ports: Some(vec![port("", "TCP", 443, "8443")]),
                ..Default::default()
            },
        )
    };
    let ingress = |name: &str| -> Vec<String> {
        c.service(NS, name)
            .and_then(|s| s.status?.load_balancer?.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect()
    };
    c.apply_service(lb("a", None, "PreferDualStack"));
    c.apply_service(lb("b", Some("switchyard.io/load-balancer"), "SingleStack"));
    c.apply_service(lb("other", Some("example.com/other"), "SingleStack"));
    eventually(T, "addresses assigned", || {
        (ingress("a") == vec!["198.51.100.1", "2001:db8:1::1"]
            && ingress("b") == vec!["198.51.100.2"])
        .then_some(())
        .ok_or(format!("a {:?} b {:?}", ingress("a"), ingress("b")))
    })
    .await;
    assert!(
        ingress("other").is_empty(),
        "another class is another controller's"
    );
    eventually(T, "and programmed", || {
        let lbs = load_balancers(&env);
        lbs.get("svc:ns/a:tcp")
            .filter(|l| {
                l.vips.contains_key("198.51.100.1:443")
                    && l.vips.contains_key("[2001:db8:1::1]:443")
            })
            .map(|_| ())
            .ok_or(format!("{lbs:#?}"))
    })
    .await;
    // The pool is empty now: a third waits with a Warning.
    c.apply_service(lb("c", None, "SingleStack"));
    eventually(T, "an exhausted pool is an Event", || {
        c.events()
            .iter()
            .any(|e| e.regarding.name == "c" && e.reason == "LoadBalancerPoolExhausted")
            .then_some(())
            .ok_or("no Event".into())
    })
    .await;
    // "a" stops being a LoadBalancer: its status is cleared and "c" gets
    // its IPv4 address.
    let mut cip = c.service(NS, "a").unwrap();
    cip.metadata.resource_version = None;
    cip.status = None;
    let spec = cip.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.external_traffic_policy = None;
    for p in spec.ports.iter_mut().flatten() {
        p.node_port = None;
    }
    c.apply_service(cip);
    eventually(T, "the address moves", || {
        (ingress("a").is_empty() && ingress("c") == vec!["198.51.100.1"])
            .then_some(())
            .ok_or(format!("a {:?} c {:?}", ingress("a"), ingress("c")))
    })
    .await;
    eventually(T, "the old VIP gone from NB", || {
        let lbs = load_balancers(&env);
        let a_has = lbs
            .get("svc:ns/a:tcp")
            .is_some_and(|l| l.vips.keys().any(|k| k.starts_with("198.51.100.")));
        let c_has = lbs
            .get("svc:ns/c:tcp")
            .is_some_and(|l| l.vips.contains_key("198.51.100.1:443"));
        (!a_has && c_has).then_some(()).ok_or(format!("{lbs:#?}"))
    })
    .await;
    // Deleted: freed for the next one.
    c.delete(Kind::Service, Some(NS), "b");
    c.apply_service(lb("d", None, "SingleStack"));
    eventually(T, "d gets b's address", || {
        (ingress("d") == vec!["198.51.100.2"])
            .then_some(())
            .ok_or(format!("{:?}", ingress("d")))
    })
    .await;
    let status_patches = c
        .calls()
        .iter()
        .filter(|a| a.resource == "services/status")
        .count();
    assert!(
        status_patches <= 6,
        "{status_patches} status patches for 5 decisions"
    );
    running.stop().await;
}
